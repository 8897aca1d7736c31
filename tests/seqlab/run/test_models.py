"""seqlab.run.models: several models in one run, and semantic role labellers in annotate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import BertTokenizerFast

import seqlab
from seqlab import schema
from seqlab.config import build_config
from seqlab.errors import ConfigError, ModelError
from seqlab.models.metadata import read_metadata, write_metadata
from seqlab.run.annotator import FAULT_ENV
from seqlab.run.models import merge_tagging, model_names, plan_models, tagging_record
from tests.seqlab import SMALL, make_plan, rows, write_parquet
from tests.tiny import build_tiny_srl

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def srl_model(tmp_path_factory) -> Path:
    return build_tiny_srl(tmp_path_factory.mktemp("models") / "srl")


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_parquet(tmp_path / "in" / "a.parquet", rows(12))


def annotate(corpus: Path, out: Path, model: str, **options) -> dict:
    return seqlab.annotate(str(corpus), str(out), model=model, id_column="id",
                           **{**SMALL, **options})


def documents(out: Path) -> dict[str, dict]:
    return {d["doc_id"]: d for d in pq.read_table(out / "documents").to_pylist()}


def test_model_keys_must_be_distinct_column_names():
    assert model_names("ner, upos,srl") == [("ner", "ner"), ("upos", "upos"), ("srl", "srl")]
    with pytest.raises(ConfigError, match="KEY=MODEL"):
        model_names("/a/ner,/b/ner")
    assert model_names("a=/a/ner,b=/b/ner") == [("a", "/a/ner"), ("b", "/b/ner")]
    with pytest.raises(ConfigError, match="column names"):
        model_names("Bad Key=/a/ner")
    with pytest.raises(ConfigError, match="names no model"):
        model_names(" , ")


def test_each_model_fills_its_own_columns(ner_model, pos_model, srl_model, tmp_path):
    config = build_config(input="in", output="out",
                          model=f"{ner_model},{pos_model},{srl_model}")
    plans = plan_models(config)
    assert [[f.name for f in p.fields] for p in plans] == [
        ["ner_tokens", "ner_entities"], ["pos_tokens"], ["srl_frames"]]
    assert plans[2].predicates.name == str(srl_model / "predicates")
    alone = plan_models(build_config(input="in", output="out", model=str(srl_model)))
    assert [f.name for f in alone[0].fields] == ["frames"]
    alone = plan_models(build_config(input="in", output="out", model=str(pos_model)))
    assert [f.name for f in alone[0].fields] == ["tokens", "entities"]  # as ever


def test_mixes_that_cannot_share_a_run_are_refused(ner_model, pos_model, srl_model, tmp_path):
    def plan(model, **options):
        return plan_models(build_config(input="in", output="out", model=model, **options))

    with pytest.raises(ConfigError, match="--model-revision"):
        plan(f"{ner_model},{pos_model}", model_revision="main")
    with pytest.raises(ConfigError, match="--predicates verbs applies"):
        plan(str(ner_model), predicates="verbs")
    cased = Path(shutil.copytree(pos_model, tmp_path / "cased-pos"))
    BertTokenizerFast(vocab=str(cased / "vocab.txt"), do_lower_case=False).save_pretrained(cased)
    with pytest.raises(ConfigError, match="different tokenizers") as refused:
        plan(f"{ner_model},{cased}")
    assert "separate seqlab annotate runs" in refused.value.fix
    bare = Path(shutil.copytree(srl_model, tmp_path / "bare-srl"))
    meta = read_metadata(str(bare))
    write_metadata(bare, meta.updated(predicates=None))
    with pytest.raises(ConfigError, match="names no predicate labeller") as refused:
        plan(str(bare))
    assert "--predicate-model" in refused.value.fix
    assert plan(str(bare), predicate_model=str(srl_model / "predicates"))[0].predicates
    with pytest.raises(ModelError, match="not a predicate labeller"):
        plan(str(bare), predicate_model=str(srl_model))
    write_metadata(bare, meta.updated(predicate_encoding="segment"))
    with pytest.raises(ModelError, match="indicator encoding"):
        plan(str(bare))


def test_the_models_run_in_the_shortest_window_any_was_trained_on(ner_model, pos_model,
                                                                 corpus, tmp_path):
    short = Path(shutil.copytree(pos_model, tmp_path / "short-pos"))
    write_metadata(short, {"window": 64})
    manifest = annotate(corpus, tmp_path / "out", f"{ner_model},{short}",
                        max_length=None, stride=None)
    assert (manifest["config"]["max_length"], manifest["config"]["stride"]) == (64, 16)


def test_one_run_of_several_models_lands_what_separate_runs_land(
        ner_model, pos_model, srl_model, corpus, tmp_path):
    several = annotate(corpus, tmp_path / "all", f"{ner_model},{pos_model},{srl_model}")
    alone = {name: annotate(corpus, tmp_path / name, str(model)) for name, model in
             (("ner", ner_model), ("pos", pos_model), ("srl", srl_model))}
    together, apart = documents(tmp_path / "all"), {k: documents(tmp_path / k) for k in alone}
    assert set(together) == set(apart["ner"]) and len(together) == 12
    for doc_id, row in together.items():
        assert row["ner_tokens"] == apart["ner"][doc_id]["tokens"]
        assert row["ner_entities"] == apart["ner"][doc_id]["entities"]
        assert row["pos_tokens"] == apart["pos"][doc_id]["tokens"]
        assert row["srl_frames"] == apart["srl"][doc_id]["frames"]
        assert row["n_tokens"] == apart["ner"][doc_id]["n_tokens"]
    assert several["counts"]["entities"] == alone["ner"]["counts"]["entities"] > 0
    assert several["counts"]["frames"] == alone["srl"]["counts"]["frames"] > 0
    assert [m["key"] for m in several["models"]] == ["ner", "pos", "srl"]
    assert several["models"][2]["predicates"]["task"] == "predicates"
    # the spans say which model found them; the documents rows name every model
    mentions = pq.read_table(tmp_path / "all" / "mentions")
    assert set(mentions.column("model").to_pylist()) == {str(ner_model)}
    frames = pq.read_table(tmp_path / "all" / "frames")
    assert set(frames.column("model").to_pylist()) == {str(srl_model)}
    assert frames.num_rows == several["counts"]["frames"]
    assert set(pq.read_table(tmp_path / "all" / "documents").column("model").to_pylist()) == {
        f"{ner_model},{pos_model},{srl_model}"}
    # one tokenization: the windows of three models, but the text read and split once
    assert several["tagging"]["windows"] == sum(a["tagging"]["windows"] for a in alone.values())


def test_frames_hold_offsets_into_the_text(srl_model, corpus, tmp_path):
    manifest = annotate(corpus, tmp_path / "out", str(srl_model))
    texts = {d["doc_id"]: d["text"] for d in documents(tmp_path / "out").values()}
    frames = pq.read_table(tmp_path / "out" / "frames")
    assert frames.schema.remove_metadata().equals(schema.FRAMES)
    assert frames.num_rows == manifest["counts"]["frames"] > 0
    for frame in frames.to_pylist():
        text = texts[frame["doc_id"]]
        spans = [frame["predicate"], *frame["arguments"]]
        assert all(text[s["start_char"]:s["end_char"]] == s["text"] for s in spans)
        assert all(a["role"] != "V" for a in frame["arguments"])
    numbers = {}
    for frame in frames.to_pylist():
        numbers.setdefault(frame["doc_id"], []).append(frame["frame"])
    assert all(sorted(n) == list(range(len(n))) for n in numbers.values())
    verbs = annotate(corpus, tmp_path / "verbs", str(srl_model), predicates="verbs")
    verbal = pq.read_table(tmp_path / "verbs" / "frames").to_pylist()
    assert 0 < verbs["counts"]["frames"] < manifest["counts"]["frames"]
    every = {(f["doc_id"], f["predicate"]["start_char"]): f["arguments"]
             for f in frames.to_pylist()}
    assert all(every[(f["doc_id"], f["predicate"]["start_char"])] == f["arguments"]
               for f in verbal)


def test_a_model_that_fails_a_row_fails_it_for_every_model(ner_model, pos_model, corpus,
                                                           tmp_path, monkeypatch):
    doomed = rows(12)[4]["id"]
    monkeypatch.setenv(FAULT_ENV, f"decode:{doomed}")
    manifest = annotate(corpus, tmp_path / "out", f"{ner_model},{pos_model}")
    docs = documents(tmp_path / "out")
    assert manifest["rows"] == {"in": 12, "out": 12}
    failed = docs[doomed]
    assert failed["status"] == schema.FAILED and failed["error"].startswith("decode (ner) failed")
    assert failed["ner_tokens"] is None and failed["pos_tokens"] is None
    assert failed["n_tokens"] == 0
    assert all(d["ner_tokens"] and d["pos_tokens"] for k, d in docs.items() if k != doomed)


def test_the_tagging_record_names_how_each_model_ran(tmp_path, corpus, ner_model, pos_model,
                                                     srl_model, monkeypatch):
    """The manifest's ``tagging`` per model key, a semantic role labeller's predicate labeller
    included: the precision, backend and int8 recipe each model ran in; the counters of
    several workers add up."""
    import seqlab.models.load
    from seqlab.run.annotator import Annotator
    from seqlab.run.work import read_slices

    monkeypatch.setattr(seqlab.models.load, "CACHE_DIR", tmp_path / "cache")
    pos = shutil.copytree(pos_model, tmp_path / "pos")
    write_metadata(pos, {"precision": {"cpu": "int8"}})
    plan = make_plan(corpus, tmp_path / "out", f"ner={ner_model},pos={pos},srl={srl_model}",
                     device="cpu", id_column="id")
    annotate = Annotator(plan)
    annotate(next(read_slices(plan, plan.work[0])))
    record = tagging_record(annotate)
    ran = {key: (m["precision"], m["backend"], m["recipe"])
           for key, m in record["models"].items()}
    assert ran == {"ner": ("fp32", "torch", None),
                   "pos": ("int8", "onnxruntime", {"backend": "onnxruntime",
                                                   "skip": ["classifier"]}),
                   "srl_predicates": ("fp32", "torch", None), "srl": ("fp32", "torch", None)}
    assert record["models"]["pos"]["name"] == str(pos)
    assert (record["precision"], record["backend"]) == ("fp32,int8", "torch,onnxruntime")
    assert record["windows"] > 0
    merged = merge_tagging([record, record])
    assert merged["windows"] == 2 * record["windows"]
    assert merged["padded_tokens"] == 2 * record["padded_tokens"]
    assert (merged["precision"], merged["models"]) == (record["precision"], record["models"])
