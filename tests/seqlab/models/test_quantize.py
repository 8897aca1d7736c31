"""seqlab.models.quantize and --precision: int8 keeps the pipeline's windows, rows and
invariants, and stays close to fp32 on a tiny model built offline; its ONNX Runtime graph is
built once per model revision and recipe and then read from the cache."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

import seqlab.models.load
import seqlab.models.metadata
from seqlab import schema
from seqlab.errors import ConfigError, ModelError
from seqlab.models.load import ModelSpec, load_model, resolve_precision
from seqlab.models.metadata import ModelMetadata, read_metadata, write_metadata
from seqlab.models.quantize import OnnxTagger, graph_key, int8_graph, int8_recipe, quantize_model
from seqlab.stages.tag import Tagger
from seqlab.stages.tokenize import Tokenizer, WindowSpec
from tests.conftest import make_text
from tests.seqlab import write_jsonl, write_parquet
from tests.tiny import build_tiny_model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """A cache directory of this module's own, so every int8 graph here is built by it."""
    saved = seqlab.models.load.CACHE_DIR
    seqlab.models.load.CACHE_DIR = tmp_path_factory.mktemp("cache")
    yield seqlab.models.load.CACHE_DIR
    seqlab.models.load.CACHE_DIR = saved


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("quantize") / "m", seed=4)


@pytest.fixture(scope="module")
def models(directory):
    """The same tiny model loaded in fp32 and in int8."""
    return (load_model(ModelSpec(str(directory), device="cpu", precision="fp32")),
            load_model(ModelSpec(str(directory), device="cpu", precision="int8")))


@pytest.fixture(scope="module")
def batch(models, tmp_path_factory):
    import random

    from seqlab.run.read import Reader
    from seqlab.run.sources import discover

    rng = random.Random(5)
    folder = tmp_path_factory.mktemp("docs")
    write_parquet(folder / "a.parquet", [{"id": f"d{i}", "text": make_text(rng, n)}
                                         for i, n in enumerate([200, 30, 5, 90, 1])])
    fs, fragments = discover(str(folder))
    [read] = Reader(fs, fragments, id_column="id", batch_rows=100).read(fragments[0])
    return Tokenizer(models[0].tokenizer, WindowSpec(64, 16))(read)


def test_int8_runs_an_onnx_graph_with_every_linear_but_the_head_in_int8(models):
    fp32, int8 = models
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert isinstance(int8.model, OnnxTagger) and int8.revision == fp32.revision
    assert int8.model.config.id2label == fp32.model.config.id2label
    graph = onnx.load(int8.model.path)
    ops = [node.op_type for node in graph.graph.node]
    # 2 layers x (query, key, value, attention output, intermediate, output) in int8; the
    # head's weight stays a float MatMul
    assert ops.count("MatMulInteger") == 12
    heads = [n for n in graph.graph.node if n.op_type == "MatMul" and "classifier" in n.name]
    assert len(heads) == 1


def test_the_int8_graph_is_cached_by_revision_and_recipe(models, directory, cache, monkeypatch):
    _, int8 = models
    recipe = int8_recipe(ModelMetadata())
    assert int8.model.path == str(cache / "onnx" / graph_key(int8.revision, recipe)
                                  / "model.int8.onnx")
    assert graph_key(int8.revision, {"skip": []}) != graph_key(int8.revision, recipe)
    assert graph_key("sha256:other", recipe) != graph_key(int8.revision, recipe)

    def no_weights(*args, **kwargs):
        raise AssertionError("a cached graph loads without the torch weights")

    monkeypatch.setattr(seqlab.models.load, "load_torch_model", no_weights)
    again = load_model(ModelSpec(str(directory), device="cpu", precision="int8"))
    assert again.model.path == int8.model.path and again.revision == int8.revision


def test_a_graph_another_process_built_first_is_kept(models, tmp_path):
    fp32, _ = models
    recipe = int8_recipe({})
    def fresh():
        return load_model(ModelSpec(fp32.name, device="cpu", precision="fp32")).model

    def build_while_another_finishes():
        int8_graph(tmp_path, "rev", recipe, fresh)  # the other builder, done first
        return fresh()

    graph = int8_graph(tmp_path, "rev", recipe, build_while_another_finishes)
    assert graph.is_file() and [p.name for p in tmp_path.iterdir()] == [graph.parent.name]


def test_without_onnxruntime_int8_names_the_extra_and_auto_falls_back(directory, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="ONNX Runtime") as error:
        load_model(ModelSpec(str(directory), device="cpu", precision="int8"))
    assert "pip install onnxruntime onnx" in error.value.fix
    assert resolve_precision("auto", cpu, {"precision": {"cpu": "int8"}}) == "fp32"
    torch_recipe = {"precision": {"cpu": "int8", "int8": {"backend": "torch"}}}
    assert resolve_precision("auto", cpu, torch_recipe) == "int8"


def test_the_torch_backend_quantizes_the_linear_layers_but_the_skipped_ones(models, tmp_path):
    fp32, _ = models
    model = quantize_model(fp32.model)
    quantized = [n for n, m in model.named_modules() if isinstance(m, DynamicLinear)]
    linear = [n for n, m in fp32.model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(quantized) == sorted(n for n in linear if "classifier" not in n
                                       and not n.endswith(".output.dense"))
    assert len(quantized) == 8 and isinstance(model.classifier, torch.nn.Linear)
    directory = build_tiny_model(tmp_path / "m", seed=4)
    write_metadata(directory, {"precision": {"int8": {"backend": "torch"}}})
    loaded = load_model(ModelSpec(str(directory), device="cpu", precision="int8"))
    assert isinstance(loaded.model.bert.encoder.layer[0].intermediate.dense, DynamicLinear)


def test_a_recipe_names_the_layers_left_in_fp32(models):
    fp32, _ = models
    skip = ModelMetadata(precision={"int8": {"skip": ["classifier",
                                                      r"layer\.\d+\.output\.dense$"]}})
    model = quantize_model(fp32.model, skip)
    kept = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    assert sorted(kept) == ["bert.encoder.layer.0.output.dense",
                            "bert.encoder.layer.1.output.dense", "classifier"]
    assert int8_recipe({})["skip"] == ["classifier"]
    assert int8_recipe({"precision": {"int8": {"backend": "torch"}}})["skip"] == \
        ["classifier", r"\.output\.dense$"]
    with pytest.raises(ModelError, match="precision.int8.backend is 'tensorrt'"):
        int8_recipe({"precision": {"int8": {"backend": "tensorrt"}}})
    # the fp32 model itself is left as it was
    assert all(type(m) is not DynamicLinear for m in fp32.model.modules())


def test_the_onnx_recipe_leaves_the_named_layers_in_fp32(models, tmp_path):
    fp32, _ = models
    recipe = {"skip": ["classifier", r"\.output\.dense$"]}
    def fresh():
        return load_model(ModelSpec(fp32.name, device="cpu", precision="fp32")).model
    graph = onnx.load(str(int8_graph(tmp_path, "rev", recipe, fresh)))
    assert [n.op_type for n in graph.graph.node].count("MatMulInteger") == 8


def test_token_type_ids_reach_the_graph_and_missing_inputs_run_as_zeros(models):
    fp32, int8 = models
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (3, 16), generator=generator)
    types = torch.randint(0, 2, ids.shape, generator=generator)
    mask = torch.ones_like(ids)
    missing = int8.model(input_ids=ids, attention_mask=mask).logits
    zeros = int8.model(input_ids=ids, attention_mask=mask,
                       token_type_ids=torch.zeros_like(ids)).logits
    typed = int8.model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    with torch.inference_mode():
        reference = fp32.model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert typed.shape == reference.shape and typed.dtype == torch.float32
    assert torch.equal(missing, zeros) and not torch.allclose(zeros, typed)
    assert (typed.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9


def test_a_micro_batch_runs_in_session_runs_of_whole_windows_on_cpu(models, batch):
    _, int8 = models
    stage = Tagger(int8, 16384)
    whole = stage(batch)
    runs = []
    run = int8.model.session.run
    int8.model.session.run = lambda names, feeds: runs.append(feeds["input_ids"].shape) \
        or run(names, feeds)
    stage.run_tokens = 32
    try:
        sliced = stage(batch)
    finally:
        int8.model.session.run = run
    assert len(runs) > 1 and all(rows * length <= max(32, length) for rows, length in runs)
    assert sliced.column(schema.STATUS).to_pylist() == whole.column(schema.STATUS).to_pylist()
    n = len(int8.labels.labels)
    for row in range(batch.num_rows):
        p = whole.column(schema.PROBS)[row].values.to_numpy().reshape(-1, n)
        q = sliced.column(schema.PROBS)[row].values.to_numpy().reshape(-1, n)
        assert p.shape == q.shape and (p.argmax(-1) == q.argmax(-1)).mean() > 0.95


def test_int8_gives_the_same_windows_and_rows_and_close_scores(models, batch):
    fp32, int8 = models
    a, b = Tagger(fp32, 1024)(batch), Tagger(int8, 1024)(batch)
    assert a.column(schema.STATUS).to_pylist() == b.column(schema.STATUS).to_pylist()
    n = len(fp32.labels.labels)
    agree = total = 0
    for row in range(batch.num_rows):
        p = a.column(schema.PROBS)[row].values.to_numpy().reshape(-1, n)
        q = b.column(schema.PROBS)[row].values.to_numpy().reshape(-1, n)
        assert p.shape == q.shape and np.allclose(q.sum(-1), 1, atol=1e-5)
        assert np.abs(p - q).max() < 0.1
        agree += int((p.argmax(-1) == q.argmax(-1)).sum())
        total += len(p)
    assert agree / total > 0.95


def test_int8_windows_score_alike_alone_and_in_a_batch(models, batch):
    """The activation scale is per micro-batch: a document's scores move a little with its
    neighbours, its labels (here) not at all."""
    _, int8 = models
    stage = Tagger(int8, 16384)
    together = stage(batch)
    n = len(int8.labels.labels)
    for row in range(batch.num_rows):
        alone = stage(batch.slice(row, 1)).column(schema.PROBS)[0].values.to_numpy()
        within = together.column(schema.PROBS)[row].values.to_numpy()
        assert np.abs(alone - within).max() < 0.05
        assert (alone.reshape(-1, n).argmax(-1) == within.reshape(-1, n).argmax(-1)).mean() > 0.95


def test_auto_picks_int8_on_cpu_only_where_the_model_records_it(tmp_path):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, ModelMetadata()) == "fp32"
    assert resolve_precision("auto", cpu, ModelMetadata(precision={"cpu": "int8"})) == "int8"
    assert resolve_precision("auto", cpu, {"precision": {"cpu": "int8"}}) == "int8"  # a dict
    assert resolve_precision("float32", cpu, {"precision": {"cpu": "int8"}}) == "fp32"
    with pytest.raises(ConfigError, match="int8 runs on CPU only"):
        resolve_precision("int8", cuda, {})
    with pytest.raises(ConfigError, match="unknown --precision"):
        resolve_precision("int4", cpu, {})
    directory = build_tiny_model(tmp_path / "m")
    write_metadata(directory, {"precision": {"cpu": "int8"}})
    assert load_model(ModelSpec(str(directory), device="cpu")).precision == "int8"


@pytest.mark.parametrize("flags,expected", [([], "auto"), (["--precision", "int8"], "int8"),
                                            (["--dtype", "bfloat16"], "bf16"),
                                            (["--dtype", "float32"], "fp32")])
def test_precision_flag_and_its_dtype_alias(flags, expected):
    from seqlab.cli.annotate import ENGINE_FLAGS, annotate_options
    from seqlab.cli.main import build_parser
    from seqlab.config import build_config, normalize_precision

    args = build_parser().parse_args(["annotate", "in", "out", *flags])
    assert build_config(**annotate_options(args, ENGINE_FLAGS)).precision == expected
    assert build_config(input="in", output="out", dtype="float16").precision == "fp16"
    evaluate = build_parser().parse_args(["evaluate", "ner", "dev.conll", *flags])
    assert normalize_precision(evaluate.precision) == expected
    with pytest.raises(ConfigError, match="unknown --precision"):
        build_config(input="in", output="out", precision="int4")


def test_the_shipped_models_run_int8_on_onnx_runtime_by_default_on_cpu():
    """ONNX Runtime comes with seqlab, so ``--precision auto`` on CPU runs int8 wherever a
    model's seqlab.json records it: every shipped model (the SRL model's predicate labeller
    too) records int8 on ONNX Runtime."""
    from seqlab.models.shipped import SHIPPED_ROOT

    pyproject = (Path(__file__).parents[3] / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S).group(1)
    base = re.findall(r'^\s*"([A-Za-z0-9_.-]+)', dependencies, re.M)
    assert {"onnxruntime", "onnx"} <= set(base)
    folders = [SHIPPED_ROOT / name for name in ("ner", "upos", "srl", "srl/predicates")]
    for folder in folders:
        metadata = read_metadata(str(folder))
        assert int8_recipe(metadata)["backend"] == "onnxruntime", folder
        assert resolve_precision("auto", "cpu", metadata) == "int8", folder
        assert resolve_precision("auto", torch.device("cpu"), metadata) == "int8", folder


# Annotates with the Python API in a fresh interpreter and says which of the heavy packages
# the run imported.
FRESH_RUN = """
import json, sys
import seqlab.api
manifest = seqlab.api.annotate(sys.argv[1], sys.argv[2], model=sys.argv[3], device="cpu",
                               id_column="id")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "onnx"))
print(json.dumps({"heavy": heavy, "tagging": manifest.get("tagging"),
                  "ok": manifest["counts"]["status.ok"]}))
"""


def test_a_cached_int8_graph_annotates_without_torch_or_transformers(tmp_path, cache):
    """The fast start: once a model's int8 graph and tokenizer are cached, a run imports
    neither torch nor transformers (nor onnx, which only builds graphs)."""
    import random

    directory = build_tiny_model(tmp_path / "m", seed=6, case_feature=True)
    write_metadata(directory, {"precision": {"cpu": "int8"}})
    first = load_model(ModelSpec(str(directory), device="cpu"))  # builds and caches both
    assert first.precision == "int8" and first.backend == "onnxruntime"
    rng = random.Random(3)
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": make_text(rng, n)}
                                                 for i, n in enumerate([300, 40, 7])])
    env = {**os.environ, "SEQLAB_CACHE": str(cache), "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run([sys.executable, "-c", FRESH_RUN, str(source),
                             str(tmp_path / "out"), str(directory)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["heavy"] == [] and found["ok"] == 3
    assert found["tagging"]["precision"] == "int8" and found["tagging"]["windows"] >= 3
