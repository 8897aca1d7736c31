"""The tag stage: batched forward passes and the per-token softmax head.

The windows of all documents in a batch are flattened, sorted by length and run in
micro-batches that hold at most ``batch_tokens`` padded tokens, so a batch of short tweets and
a batch holding one 25,000-word article cost the same memory. Each window is padded to a
multiple of ``PAD_MULTIPLE`` tokens and a micro-batch holds windows of one padded length only:
the kernels then see the same shapes per row whatever the window's batch neighbours are, so a
document gets bit-identical scores however an engine batches it: padding a window to a longer
neighbour's length moves its probabilities, while the number of rows in a batch does not.
Tensor cores prefer such shapes too.

On CPU a micro-batch runs in slices of at most ``CPU_RUN_TOKENS`` padded tokens (whole
windows): the number of rows in a forward pass moves no score on CPU, and a slice's
activations are what the allocator (and ONNX Runtime's arena, which keeps the largest run's
memory) holds for the rest of the run, so the slice, not the micro-batch, sets the peak
memory (the README's Performance section has the measurements). On GPU a micro-batch is one
forward pass.

Models trained with ``case_feature`` (``seqlab.json``) also get BERT's token type ids: the
casing of each subword of the original text (all-capital runs read as the document writes
their words elsewhere), computed from the character offsets as training computed them
(``seqlab.stages.casing.case_types``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from seqlab import schema
from seqlab.models.load import LoadedModel
from seqlab.stages.casing import case_types
from seqlab.stages.decode import stitch_windows
from seqlab.stages.tokenize import special_affixes

log = logging.getLogger(__name__)

PAD_MULTIPLE = 16  # every window is padded to a multiple of this many tokens
# Padded tokens per forward pass on CPU (a micro-batch runs in slices of whole windows).
CPU_RUN_TOKENS = 4096


@dataclass(frozen=True)
class Window:
    row: int
    index: int  # window number inside its document
    ids: np.ndarray  # content subword ids, no special tokens
    types: np.ndarray | None = None  # their case types, for models trained with case_feature


class Tagger:
    """Callable stage holding the model: adds the stitched ``_probs`` column to a batch."""

    def __init__(self, loaded: LoadedModel, batch_tokens: int = 16384,
                 temperature: float | None = None, logits: bool = False) -> None:
        """``temperature``: divides the logits before the softmax (default: the one fitted
        on the model's dev set, ``seqlab.json`` ``calibration``, else 1). ``logits``: the
        ``_probs`` column holds the scaled logits instead of probabilities (what
        ``seqlab.models.calibration`` fits a temperature on)."""
        self.loaded = loaded
        self.temperature = loaded.metadata.temperature if temperature is None \
            else float(temperature)
        self.logits = logits
        self.model = loaded.model
        self.device = loaded.device
        self.n_labels = len(loaded.labels.labels)
        self.batch_tokens = batch_tokens
        self.prefix, self.suffix = special_affixes(loaded.tokenizer)
        self.pad_id = loaded.tokenizer.pad_token_id or 0
        self.case_feature = loaded.metadata.case_feature
        self.run_tokens = CPU_RUN_TOKENS if torch.device(self.device).type == "cpu" else None
        self.windows_run = 0
        # what the forward passes ran (special tokens and padding included), and the text
        # subwords among them (a subword in two overlapping windows counts twice)
        self.padded_tokens_run = 0
        self.content_tokens_run = 0

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        status = batch.column(schema.STATUS).to_pylist()
        error = batch.column(schema.ERROR).to_pylist()
        windows = self._windows(batch, status)
        outputs: dict[tuple[int, int], np.ndarray] = {}
        for group in self._micro_batches(windows):
            for window, result in zip(group, self._run_safely(group)):
                if isinstance(result, Exception):
                    status[window.row] = schema.FAILED
                    error[window.row] = f"tagging failed: {type(result).__name__}: {result}"
                else:
                    outputs[(window.row, window.index)] = result
        probs: list[np.ndarray | None] = [None] * batch.num_rows
        starts_col = batch.column(schema.WIN_STARTS)
        n_sub = batch.column(schema.IDS).value_lengths().to_numpy(zero_copy_only=False)
        for row in range(batch.num_rows):
            if status[row] != schema.OK:
                continue
            starts = starts_col[row].values.to_numpy()
            parts = [outputs[(row, w)] for w in range(len(starts))]
            probs[row] = stitch_windows(parts, starts, int(n_sub[row])).reshape(-1)
        out = batch.drop_columns([schema.STATUS, schema.ERROR])
        out = out.append_column(schema.STATUS, pa.array(status, pa.string()))
        out = out.append_column(schema.ERROR, pa.array(error, pa.string()))
        return out.append_column(schema.TAGGED[0], pa.array(probs, schema.TAGGED[0].type))

    def _windows(self, batch: pa.RecordBatch, status: list[str]) -> list[Window]:
        ids_col = batch.column(schema.IDS)
        starts_col, lens_col = batch.column(schema.WIN_STARTS), batch.column(schema.WIN_LENS)
        windows = []
        for row in range(batch.num_rows):
            if status[row] != schema.OK:
                continue
            ids = ids_col[row].values.to_numpy()
            types = self._case_types(batch, row) if self.case_feature else None
            starts = starts_col[row].values.to_numpy()
            lens = lens_col[row].values.to_numpy()
            for w, (start, length) in enumerate(zip(starts, lens)):
                end = start + length
                windows.append(Window(row, w, ids[start:end],
                                      None if types is None else types[start:end]))
        return windows

    @staticmethod
    def _case_types(batch: pa.RecordBatch, row: int) -> np.ndarray:
        text = batch.column(schema.TEXT)[row].as_py()
        return case_types(text, batch.column(schema.STARTS)[row].values.to_numpy(),
                          batch.column(schema.ENDS)[row].values.to_numpy())

    def _padded_length(self, window: Window) -> int:
        n = len(self.prefix) + len(window.ids) + len(self.suffix)
        return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE

    def _micro_batches(self, windows: list[Window]) -> list[list[Window]]:
        """Group length-sorted windows of one padded length, rows x length within the budget."""
        ordered = sorted(windows, key=lambda w: (self._padded_length(w), w.row, w.index))
        groups: list[list[Window]] = []
        current: list[Window] = []
        for window in ordered:
            length = self._padded_length(window)
            if current and (self._padded_length(current[0]) != length
                            or (len(current) + 1) * length > self.batch_tokens):
                groups.append(current)
                current = []
            current.append(window)
        if current:
            groups.append(current)
        return groups

    def _run_safely(self, group: list[Window]) -> list[np.ndarray | Exception]:
        """Run a micro-batch; if it fails, run its windows one by one so only bad ones fail."""
        try:
            return self.forward(group)
        except Exception as exc:  # noqa: BLE001 - a failed batch must not end the run
            if len(group) == 1:
                log.warning("window %s of row %s failed: %s", group[0].index, group[0].row, exc)
                return [exc]
            log.warning("a batch of %d windows failed (%s); retrying one by one", len(group), exc)
            return [result for window in group for result in self._run_safely([window])]

    @torch.inference_mode()
    def forward(self, group: list[Window]) -> list[np.ndarray]:
        """Softmax probabilities ``u_i = softmax(W h_i / T)`` for the content tokens of each
        window: ``T`` is the model's calibrated temperature (1 when it has none), which
        changes the scores, never their order, so greedy labels stay those of ``T = 1``."""
        length = max(self._padded_length(w) for w in group)
        input_ids = np.full((len(group), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(group), length), dtype=np.int64)
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        if self.case_feature:
            inputs["token_type_ids"] = np.zeros((len(group), length), dtype=np.int64)
        lead = len(self.prefix)
        for i, window in enumerate(group):
            row = np.concatenate([self.prefix, window.ids, self.suffix])
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            if window.types is not None:
                inputs["token_type_ids"][i, lead : lead + len(window.types)] = window.types
        step = len(group) if self.run_tokens is None else max(1, self.run_tokens // length)
        runs = [self.model(**{name: torch.from_numpy(value[i:i + step]).to(self.device)
                              for name, value in inputs.items()}).logits
                for i in range(0, len(group), step)]
        scaled = (runs[0] if len(runs) == 1 else torch.cat(runs)).float()
        if self.temperature != 1.0:  # left alone at 1, so uncalibrated scores stay bit for bit
            scaled = scaled / self.temperature
        probs = (scaled if self.logits else torch.softmax(scaled, dim=-1)).cpu().numpy()
        self.windows_run += len(group)
        self.padded_tokens_run += int(input_ids.size)
        self.content_tokens_run += sum(len(w.ids) for w in group)
        return [probs[i, lead : lead + len(w.ids)] for i, w in enumerate(group)]
