"""seqlab.stages.tag: micro-batches within --batch-tokens, scores independent of batch
neighbours."""

import random

import numpy as np
import pyarrow as pa
import pytest

from seqlab import schema
from seqlab.run.read import Reader
from seqlab.run.sources import discover
from seqlab.stages.tag import CPU_RUN_TOKENS, PAD_MULTIPLE, Tagger
from seqlab.stages.tokenize import Tokenizer, WindowSpec
from tests.conftest import make_text
from tests.seqlab import shared_tagger, write_parquet

# words per document: several windows of 64 subwords, one, and a few words
LENGTHS = [150, 12, 40, 3, 90, 7, 25, 60, 1, 33]


@pytest.fixture(scope="module")
def read_batch(tmp_path_factory, ner_model):
    """The documents of LENGTHS, as read (one batch)."""
    folder = tmp_path_factory.mktemp("tag")
    rng = random.Random(3)
    texts = [make_text(rng, n) for n in LENGTHS]
    write_parquet(folder / "in" / "a.parquet",
                  [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    fs, fragments = discover(str(folder / "in"))
    [batch] = Reader(fs, fragments, id_column="id", batch_rows=100).read(fragments[0])
    return batch


@pytest.fixture(scope="module")
def tokenized(read_batch, ner_model):
    """Tokenized batches by document: ``tokenized(i, j, ...)`` is documents i, j... together,
    in windows of 64 subwords."""
    whole = tokenize(read_batch, ner_model, WindowSpec(64, 16))
    assert set(whole.column(schema.STATUS).to_pylist()) == {schema.OK}
    assert max(len(s) for s in whole.column(schema.WIN_STARTS).to_pylist()) >= 3

    def select(*indices: int) -> pa.RecordBatch:
        return whole.take(pa.array(indices))

    return select


def tokenize(batch: pa.RecordBatch, model, spec: WindowSpec) -> pa.RecordBatch:
    return Tokenizer(shared_tagger(str(model)).loaded.tokenizer, spec)(batch)


def tagger(model, batch_tokens: int) -> Tagger:
    return Tagger(shared_tagger(str(model)).loaded, batch_tokens)


def probs(tagged: pa.RecordBatch, row: int) -> np.ndarray:
    return tagged.column(schema.PROBS)[row].values.to_numpy()


def run_recording_shapes(stage: Tagger, batch: pa.RecordBatch):
    """``stage(batch)`` and the (rows, length) of every forward pass it made."""
    shapes = []
    hook = stage.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True)
    try:
        return stage(batch), shapes
    finally:
        hook.remove()


def test_micro_batches_never_exceed_batch_tokens(tokenized, ner_model):
    stage = tagger(ner_model, 256)
    batch = tokenized(*range(len(LENGTHS)))
    tagged, shapes = run_recording_shapes(stage, batch)
    windows = sum(len(s) for s in batch.column(schema.WIN_STARTS).to_pylist())
    assert len(shapes) > 1 and sum(rows for rows, _ in shapes) == windows
    assert all(rows * length <= 256 and length % PAD_MULTIPLE == 0 for rows, length in shapes)
    assert stage.windows_run == windows
    # the counts are of what the forward passes ran, and of the text subwords in them
    assert stage.padded_tokens_run == sum(rows * length for rows, length in shapes)
    assert stage.content_tokens_run == sum(map(sum, batch.column(schema.WIN_LENS).to_pylist()))
    n_labels = len(stage.loaded.labels.labels)
    for row, ids in enumerate(batch.column(schema.IDS).to_pylist()):
        assert probs(tagged, row).shape == (len(ids) * n_labels,)


def test_on_cpu_a_micro_batch_runs_in_passes_of_whole_windows_with_the_same_scores(
        tokenized, ner_model):
    stage = tagger(ner_model, 16384)
    assert stage.run_tokens == CPU_RUN_TOKENS
    batch = tokenized(*range(len(LENGTHS)))
    stage.run_tokens = None  # a micro-batch in one pass, as on GPU
    whole, whole_shapes = run_recording_shapes(stage, batch)
    stage.run_tokens = 64
    sliced, shapes = run_recording_shapes(stage, batch)
    assert len(shapes) > len(whole_shapes)
    assert all(rows * length <= max(64, length) for rows, length in shapes)
    assert sum(rows for rows, _ in shapes) == sum(rows for rows, _ in whole_shapes)
    for row in range(batch.num_rows):
        assert np.array_equal(probs(sliced, row), probs(whole, row))


def test_one_full_window_fits_the_smallest_batch_tokens_a_plan_allows(read_batch, ner_model):
    # plan_run refuses --batch-tokens below one padded window (tests/seqlab/run/test_run.py)
    stage = tagger(ner_model, 112)
    _, shapes = run_recording_shapes(stage, tokenize(read_batch.slice(0, 1), ner_model,
                                                     WindowSpec(100, 25, cuts="fixed")))
    assert max(length for _, length in shapes) == 112  # a full window, padded
    assert all(rows * length <= 112 for rows, length in shapes)


@pytest.mark.parametrize("batch_tokens", [1024, 16384])
def test_scores_do_not_depend_on_the_other_documents_of_the_batch(tokenized, ner_model,
                                                                  batch_tokens):
    stage = tagger(ner_model, batch_tokens)
    for doc in (1, 2, 0):  # one window (short, longer), several windows
        alone = probs(stage(tokenized(doc)), 0)
        with_others = stage(tokenized(4, doc, 3, 7, 9))
        assert np.array_equal(probs(with_others, 1), alone), (
            f"document {doc}: max difference "
            f"{np.abs(probs(with_others, 1) - alone).max():.3g}")


def test_a_window_that_fails_fails_only_its_document(tokenized, ner_model):
    stage = tagger(ner_model, 16384)
    batch = tokenized(1, 0, 2)
    clean = stage(batch)
    forward = stage.forward

    def failing(group):
        if any(window.row == 1 for window in group):
            raise RuntimeError("CUDA out of memory")
        return forward(group)

    stage.forward = failing
    tagged = stage(batch)
    assert tagged.column(schema.STATUS).to_pylist() == [schema.OK, schema.FAILED, schema.OK]
    assert tagged.column(schema.ERROR)[1].as_py() == \
        "tagging failed: RuntimeError: CUDA out of memory"
    assert tagged.column(schema.PROBS)[1].as_py() is None
    for row in (0, 2):
        assert np.array_equal(probs(tagged, row), probs(clean, row))


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_probabilities_are_the_softmax_of_the_logits_over_the_temperature(tokenized, ner_model,
                                                                          temperature):
    import torch

    batch = tokenized(0, 1, 3)
    loaded = shared_tagger(str(ner_model)).loaded
    logits = Tagger(loaded, 1024, temperature=1.0, logits=True)(batch)
    scaled = Tagger(loaded, 1024, temperature=temperature)(batch)
    n = len(loaded.labels.labels)
    for row in range(batch.num_rows):
        z = torch.from_numpy(probs(logits, row).reshape(-1, n).copy())
        expected = torch.softmax(z / temperature, dim=-1).numpy()
        got = probs(scaled, row).reshape(-1, n)
        if temperature == 1.0:  # no calibration: the plain softmax, bit for bit
            assert np.array_equal(got, torch.softmax(z, dim=-1).numpy())
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert np.array_equal(got.argmax(axis=1), z.numpy().argmax(axis=1))


def texts_length(batch: pa.RecordBatch) -> int:
    return sum(len(t) for t in batch.column(schema.TEXT).to_pylist())


def test_each_forward_pass_reports_the_text_its_windows_first_cover(tokenized, ner_model):
    stage = tagger(ner_model, 256)
    stage.run_tokens = 64  # on CPU: a pass per window here, a report per pass
    reported: list[int] = []
    stage.on_tagged = reported.append
    batch = tokenized(*range(len(LENGTHS)))
    _, shapes = run_recording_shapes(stage, batch)
    assert 1 < len(reported) <= len(shapes) and all(n > 0 for n in reported)
    assert sum(reported) == texts_length(batch)  # overlapping windows counted once
    # a document's windows: each covers the text up to its last subword, the last to its end
    row = 0
    starts = batch.column(schema.WIN_STARTS)[row].values.to_numpy()
    lens = batch.column(schema.WIN_LENS)[row].values.to_numpy()
    ends = batch.column(schema.ENDS)[row].values.to_numpy()
    shares = Tagger._characters(batch, row, starts, lens)
    assert len(shares) >= 3 and all(n > 0 for n in shares)
    reach = np.cumsum(shares)
    assert list(reach[:-1]) == [ends[s + n - 1] for s, n in zip(starts[:-1], lens[:-1])]
    assert reach[-1] == len(batch.column(schema.TEXT)[row].as_py())


def test_a_micro_batch_retried_window_by_window_is_reported_once(tokenized, ner_model):
    stage = tagger(ner_model, 16384)
    stage.run_tokens = 64  # its passes report before the micro-batch fails
    reported: list[int] = []
    stage.on_tagged = reported.append
    batch = tokenized(1, 0, 2)
    forward = stage.forward

    def failing(group):
        result = forward(group)
        if len(group) > 1:  # the whole micro-batch fails at its end, its windows alone pass
            raise RuntimeError("CUDA out of memory")
        return result

    stage.forward = failing
    tagged = stage(batch)
    assert set(tagged.column(schema.STATUS).to_pylist()) == {schema.OK}
    assert sum(reported) == texts_length(batch)
    stage.on_tagged = None
    stage(batch)  # without a listener nothing is counted
    assert sum(reported) == texts_length(batch)
