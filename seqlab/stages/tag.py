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
forward pass. int8 on ONNX Runtime (``seqlab.models.quantize.OnnxTagger``) runs on numpy
arrays, softmax included, so that path never imports torch.

Models trained with ``case_feature`` (``seqlab.json``) also get BERT's token type ids: the
casing of each subword of the original text (all-capital runs read as the document writes
their words elsewhere), computed from the character offsets as training computed them
(``seqlab.stages.casing.case_types``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

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
    characters: int = 0  # characters of text it is the first of its document's windows to cover


def _inference_mode(forward: Callable) -> Callable:
    """torch's inference mode around a forward pass that torch runs (ONNX Runtime's need no
    torch)."""
    @functools.wraps(forward)
    def run(tagger: Tagger, *args, **kwargs):
        if tagger.numpy:
            return forward(tagger, *args, **kwargs)
        import torch

        with torch.inference_mode():
            return forward(tagger, *args, **kwargs)

    return run


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
        self.run_tokens = CPU_RUN_TOKENS if str(self.device).split(":")[0] == "cpu" else None
        # ONNX Runtime's int8 session runs on numpy arrays: no torch on that path
        self.numpy = loaded.backend == "onnxruntime"
        self.windows_run = 0
        # what the forward passes ran (special tokens and padding included), and the text
        # subwords among them (a subword in two overlapping windows counts twice)
        self.padded_tokens_run = 0
        self.content_tokens_run = 0
        # called with the characters of text each forward pass covered, before its batch's
        # rows land (run progress); None: nothing is counted
        self.on_tagged: Callable[[int], None] | None = None
        self._unreported = 0  # characters of the running micro-batch not reported yet

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        status = batch.column(schema.STATUS).to_pylist()
        error = batch.column(schema.ERROR).to_pylist()
        windows = self._windows(batch, status)
        outputs: dict[tuple[int, int], np.ndarray] = {}
        for group in self._micro_batches(windows):
            self._unreported = sum(w.characters for w in group) if self.on_tagged else 0
            results = self._run_safely(group)
            self._report(self._unreported)  # what its passes left (a retried window's share)
            for window, result in zip(group, results):
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
            shares = self._characters(batch, row, starts, lens) if self.on_tagged \
                else [0] * len(starts)
            for w, (start, length) in enumerate(zip(starts, lens)):
                end = start + length
                windows.append(Window(row, w, ids[start:end],
                                      None if types is None else types[start:end], shares[w]))
        return windows

    @staticmethod
    def _characters(batch: pa.RecordBatch, row: int, starts: np.ndarray,
                    lens: np.ndarray) -> list[int]:
        """The characters each window of a document is the first to cover, from its subwords'
        character spans: up to its last subword's end (the last window's: to the end of the
        text). Overlapping windows count their overlap once, and a document's windows add up
        to its length in characters, whichever order they run in."""
        ends = batch.column(schema.ENDS)[row].values.to_numpy()
        reach = [int(ends[start + length - 1]) if length else 0
                 for start, length in zip(starts, lens)]
        if reach and schema.TEXT in batch.schema.names:
            reach[-1] = max(reach[-1], len(batch.column(schema.TEXT)[row].as_py() or ""))
        covered, shares = 0, []
        for end in reach:
            shares.append(max(0, end - covered))
            covered = max(covered, end)
        return shares

    def _report(self, characters: int) -> None:
        """Tell ``on_tagged`` of characters tagged, within what the micro-batch holds."""
        characters = min(characters, self._unreported)
        if characters > 0 and self.on_tagged is not None:
            self._unreported -= characters
            self.on_tagged(characters)

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

    @_inference_mode
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
        runs = []
        for i in range(0, len(group), step):
            runs.append(self._pass({name: value[i:i + step] for name, value in inputs.items()}))
            self._report(sum(w.characters for w in group[i:i + step]))
        probs = self._probabilities(runs)
        self.windows_run += len(group)
        self.padded_tokens_run += int(input_ids.size)
        self.content_tokens_run += sum(len(w.ids) for w in group)
        return [probs[i, lead : lead + len(w.ids)] for i, w in enumerate(group)]

    def _pass(self, inputs: dict[str, np.ndarray]):
        """One forward pass's logits: a numpy array from ONNX Runtime, else a torch tensor on
        the model's device."""
        if self.numpy:
            return self.model.run(inputs)
        import torch

        return self.model(**{name: torch.from_numpy(value).to(self.device)
                             for name, value in inputs.items()}).logits

    def _probabilities(self, runs: list) -> np.ndarray:
        """The passes' logits divided by the temperature, softmaxed unless ``logits``."""
        if self.numpy:
            scaled = (runs[0] if len(runs) == 1 else np.concatenate(runs)).astype(
                np.float32, copy=False)
            if self.temperature != 1.0:  # left alone at 1, so uncalibrated scores stay as is
                scaled = scaled / np.float32(self.temperature)
            return scaled if self.logits else softmax(scaled)
        import torch

        scaled = (runs[0] if len(runs) == 1 else torch.cat(runs)).float()
        if self.temperature != 1.0:  # left alone at 1, so uncalibrated scores stay bit for bit
            scaled = scaled / self.temperature
        return (scaled if self.logits else torch.softmax(scaled, dim=-1)).cpu().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in the logits' dtype.

    >>> softmax(np.array([[0.0, np.log(3.0)]], dtype=np.float32)).round(3).tolist()
    [[0.25, 0.75]]
    """
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
