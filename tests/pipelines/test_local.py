import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqlab
from seqlab import schema
from seqlab.errors import ConfigError, ModelError, OutputError
from tests.conftest import BAD_ROWS, make_corpus
from tests.helpers import comparable, read_output

SMALL = dict(max_length=64, stride=16, batch_docs=8, batch_tokens=1024)


def run(inp, out, model, **options):
    return seqlab.annotate(str(inp), str(out), model=str(model), **{**SMALL, **options})


def test_every_row_lands_once_with_correct_offsets(corpus_parquet, corpus_rows, ner_model,
                                                   tmp_path):
    manifest = run(corpus_parquet, tmp_path / "out", ner_model, id_column="id")
    tables = read_output(tmp_path / "out")
    docs = tables["documents"]
    assert manifest["rows"] == {"in": len(corpus_rows), "out": len(corpus_rows)}
    assert sorted(docs.column("doc_id").to_pylist()) == sorted(r["id"] for r in corpus_rows)
    by_id = {r["id"]: r for r in corpus_rows}
    long_docs = 0
    for doc in docs.to_pylist():
        source = by_id[doc["doc_id"]]
        assert doc["title"] == source["title"] and doc["year"] == source["year"]
        if doc["doc_id"].startswith("bad-"):
            assert doc["status"] == schema.EMPTY and doc["error"]
            assert doc["tokens"] is None and doc["entities"] is None
            continue
        assert doc["status"] == schema.OK and doc["error"] is None
        text = source["text"]
        assert doc["n_tokens"] == len(doc["tokens"]) > 0
        for token in doc["tokens"]:
            assert text[token["start_char"]:token["end_char"]] == token["text"]
            assert 0.0 < token["score"] <= 1.0
        for entity in doc["entities"]:
            assert text[entity["start_char"]:entity["end_char"]] == entity["text"]
        # tokens cover every non-space character, in order, without overlap
        covered = "".join(t["text"] for t in doc["tokens"])
        assert covered == "".join(text.split())
        long_docs += len(doc["tokens"]) > 64
    assert long_docs >= 4  # windows were stitched for the long documents


def test_mentions_and_aggregates_add_up(corpus_parquet, ner_model, tmp_path):
    run(corpus_parquet, tmp_path / "out", ner_model, id_column="id")
    tables = read_output(tmp_path / "out")
    entities = [(d["doc_id"], e["start_char"], e["end_char"], e["label"], e["score"])
                for d in tables["documents"].to_pylist() for e in d["entities"] or []]
    mentions = [(m["doc_id"], m["start_char"], m["end_char"], m["label"], m["score"])
                for m in tables["mentions"].to_pylist()]
    assert len(entities) > 100
    assert sorted(entities) == sorted(mentions)
    aggregates = tables["aggregates"].to_pylist()
    assert sum(a["mentions"] for a in aggregates) == len(mentions)
    assert sum(a["score_sum"] for a in aggregates) == pytest.approx(sum(m[4] for m in mentions))
    per_key_docs = Counter()
    for key in {(m["doc_id"], m["label"], " ".join(m["text"].split()).casefold())
                for m in tables["mentions"].to_pylist()}:
        per_key_docs[key[1:]] += 1
    assert {(a["label"], a["text"]): a["documents"] for a in aggregates} == dict(per_key_docs)
    counts = tables["manifest"]["counts"]
    assert counts["entities"] == len(mentions)
    assert counts["status.ok"] == 50 and counts["status.empty"] == 3


def test_second_run_is_identical(corpus_parquet, ner_model, tmp_path):
    run(corpus_parquet, tmp_path / "a", ner_model)
    run(corpus_parquet, tmp_path / "b", ner_model, batch_docs=5, batch_tokens=4096)
    first, second = read_output(tmp_path / "a"), read_output(tmp_path / "b")
    assert comparable(first) == comparable(second)
    assert first["manifest"]["run_id"] != second["manifest"]["run_id"]


def test_output_schemas_are_the_declared_ones(corpus_parquet, ner_model, tmp_path):
    run(corpus_parquet, tmp_path / "out", ner_model, id_column="id")
    out = tmp_path / "out"
    passthrough = pa.schema([("title", pa.string()), ("year", pa.int64())])
    documents = pq.read_schema(next((out / "documents").glob("*.parquet")))
    assert documents.equals(schema.documents_schema(passthrough))
    assert pq.read_schema(next((out / "mentions").glob("*.parquet"))).equals(schema.MENTIONS)
    assert pq.read_schema(next((out / "aggregates").glob("*.parquet"))).equals(schema.AGGREGATES)
    manifest = json.loads((out / "_manifest.json").read_text())
    parts = manifest["inputs"][0]["parts"]["documents"]
    assert sum(p["rows"] for p in parts) == 53 and len(parts[0]["sha256"]) == 64
    assert not (out / "_progress").exists()
    assert not list(out.rglob(".tmp-*"))


def test_bad_rows_in_jsonl_never_crash(ner_model, tmp_path):
    lines = [json.dumps({"text": "john smith went to london", "n": 1}),
             "{not json",
             json.dumps({"text": 42, "n": 2}),
             json.dumps({"text": None, "n": 3}),
             json.dumps(["a", "list"]),
             json.dumps({"text": "x" * 500, "n": 4}),
             json.dumps({"text": "bad \ud800 surrogate", "n": 5}),
             json.dumps({"text": "the bank", "n": "not a number"})]
    raw = "\n".join(lines).encode() + b"\n" + b'{"text": "caf\xe9", "n": 6}\n'
    (tmp_path / "in.jsonl").write_bytes(raw)
    run(tmp_path / "in.jsonl", tmp_path / "out", ner_model, max_chars=100)
    docs = read_output(tmp_path / "out")["documents"].to_pylist()
    status = {d["doc_id"]: d["status"] for d in docs}
    assert status == {
        "in.jsonl:0": "ok", "in.jsonl:1": "bad_record", "in.jsonl:2": "bad_type",
        "in.jsonl:3": "empty", "in.jsonl:4": "bad_record", "in.jsonl:5": "too_long",
        "in.jsonl:6": "bad_encoding", "in.jsonl:7": "ok", "in.jsonl:8": "bad_encoding",
    }
    # a column whose sampled values mix types lands as JSON text
    assert [d["n"] for d in docs][:3] == ["1", None, "2"]
    errors = {d["doc_id"]: d["error"] for d in docs}
    assert "not valid JSON" in errors["in.jsonl:1"] and "expected a string" in errors["in.jsonl:2"]
    assert "--max-chars 100" in errors["in.jsonl:5"] and "UTF-8" in errors["in.jsonl:8"]


def test_resume_skips_finished_fragments(ner_model, tmp_path, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        rows = make_corpus(6, seed=i, long_every=0) + BAD_ROWS[:1]
        pq.write_table(pa.Table.from_pylist(rows).drop_columns(["id"]), inputs / f"f{i}.parquet")
    import pipelines.local as local

    calls = []
    real = local.read_slices

    def crash_on_third(plan, item):
        calls.append(item.fragment.name)
        if item.fragment.index == 2 and len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real(plan, item)

    monkeypatch.setattr(local, "read_slices", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(inputs, tmp_path / "out", ner_model)
    assert not (tmp_path / "out" / "_manifest.json").exists()
    run(inputs, tmp_path / "out", ner_model)
    assert calls == ["f0.parquet", "f1.parquet", "f2.parquet", "f2.parquet"]
    resumed = read_output(tmp_path / "out")
    run(inputs, tmp_path / "fresh", ner_model)
    fresh = read_output(tmp_path / "fresh")
    assert comparable(resumed) == comparable(fresh)
    ids = resumed["documents"].column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == 21 and "f1.parquet:6" in ids


def test_configuration_mistakes_fail_before_work(corpus_parquet, ner_model, tmp_path):
    with pytest.raises(ConfigError, match="--text-column"):
        run(corpus_parquet, tmp_path / "o1", ner_model, text_column="body")
    with pytest.raises(ConfigError, match="--stride"):
        run(corpus_parquet, tmp_path / "o2", ner_model, stride=62)
    with pytest.raises(ConfigError, match="one of iob1"):
        run(corpus_parquet, tmp_path / "o3", ner_model, scheme="bilux")
    with pytest.raises(ModelError):
        run(corpus_parquet, tmp_path / "o4", tmp_path / "no-model")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3", "o4"))
    run(corpus_parquet, tmp_path / "done", ner_model)
    with pytest.raises(OutputError, match="--overwrite"):
        run(corpus_parquet, tmp_path / "done", ner_model)
    run(corpus_parquet, tmp_path / "done", ner_model, overwrite=True)


def test_slow_tokenizer_is_refused(ner_model, tmp_path):
    from transformers import BertTokenizerLegacy as BertTokenizer  # the pure-Python one

    from seqlab.stages.tokenize import Tokenizer, WindowSpec

    with pytest.raises(ConfigError, match="fast"):
        Tokenizer(BertTokenizer(vocab_file=str(ner_model / "vocab.txt")), WindowSpec())


def test_plain_tags_have_tokens_but_no_entities(corpus_parquet, pos_model, tmp_path):
    manifest = run(corpus_parquet, tmp_path / "out", pos_model, limit=10, keep_text=False)
    tables = read_output(tmp_path / "out")
    assert manifest["model"]["scheme"] == "tags" and manifest["rows"]["in"] == 10
    assert "text" not in tables["documents"].column_names
    labels = {t["label"] for d in tables["documents"].to_pylist() for t in d["tokens"]}
    assert len(labels) > 3 and labels <= {"NOUN", "VERB", "ADJ", "ADP", "DET", "PROPN",
                                          "PUNCT", "NUM", "PRON", "X"}
    assert tables["mentions"].num_rows == 0 and tables["aggregates"].num_rows == 0


@pytest.mark.parametrize("decoder", ["greedy", "viterbi"])
def test_viterbi_output_is_always_valid_bio(corpus_parquet, ner_model, tmp_path, decoder):
    from seqlab.labels import LabelSet

    run(corpus_parquet, tmp_path / "out", ner_model, decoder=decoder, limit=20)
    labels = LabelSet(("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC",
                       "I-MISC"), "iob2")
    index = {label: i for i, label in enumerate(labels.labels)}
    start, transition, _ = labels.allowed_transitions()
    invalid = 0
    for doc in read_output(tmp_path / "out")["documents"].to_pylist():
        seq = [index[t["label"]] for t in doc["tokens"] or []]
        invalid += bool(seq) and not start[seq[0]]
        invalid += sum(not transition[a, b] for a, b in zip(seq, seq[1:]))
    assert (invalid == 0) if decoder == "viterbi" else (invalid > 0)


def test_memory_filesystem_and_directories(ner_model, corpus_rows):
    import fsspec

    fs = fsspec.filesystem("memory")
    for i in range(2):
        with fs.open(f"/corpus/part-{i}.parquet", "wb") as handle:
            pq.write_table(pa.Table.from_pylist(corpus_rows[i * 20:(i + 1) * 20]), handle)
    with fs.open("/corpus/_SUCCESS", "wb") as handle:
        handle.write(b"")
    manifest = seqlab.annotate("memory://corpus", "memory://out", model=str(ner_model),
                               id_column="id", **SMALL)
    assert manifest["rows"] == {"in": 40, "out": 40}
    assert [i["fragment"] for i in manifest["inputs"]] == ["part-0.parquet", "part-1.parquet"]
    assert fs.exists("/out/_manifest.json") and fs.glob("/out/mentions/*.parquet")


def test_tokenizer_settings_saved_with_the_model_do_not_truncate(ner_model, tmp_path):
    """Checkpoints often save tokenizer.json with truncation and padding on (to 128)."""
    import shutil

    from tokenizers import Tokenizer

    model = tmp_path / "model"
    shutil.copytree(ner_model, model)
    backend = Tokenizer.from_file(str(model / "tokenizer.json"))
    backend.enable_truncation(max_length=16)
    backend.enable_padding(length=16)
    backend.save(str(model / "tokenizer.json"))
    text = " ".join(["john smith went to london"] * 20)
    pq.write_table(pa.table({"text": [text]}), tmp_path / "in.parquet")
    run(tmp_path / "in.parquet", tmp_path / "out", model)
    doc = read_output(tmp_path / "out")["documents"].to_pylist()[0]
    assert doc["n_tokens"] == 100 and doc["tokens"][-1]["end_char"] == len(text)


def test_a_25000_word_document_goes_through_in_bounded_batches(ner_model, tmp_path,
                                                                monkeypatch):
    import random

    from seqlab.stages.tag import Tagger
    from tests.conftest import make_text

    text = make_text(random.Random(5), 25_000)
    pq.write_table(pa.table({"text": [text, "short one"]}), tmp_path / "in.parquet")
    shapes = []
    real_forward = Tagger.forward

    def recording(self, group):
        shapes.append(len(group) * max(self._padded_length(w) for w in group))
        return real_forward(self, group)

    monkeypatch.setattr(Tagger, "forward", recording)
    seqlab.annotate(str(tmp_path / "in.parquet"), str(tmp_path / "out"), model=str(ner_model),
                    max_length=512, stride=128, batch_tokens=4096)
    doc = read_output(tmp_path / "out")["documents"].to_pylist()[0]
    assert doc["status"] == "ok" and doc["tokens"][-1]["end_char"] == len(text.rstrip())
    assert doc["n_tokens"] >= 25_000
    assert len(shapes) >= 10 and max(shapes) <= 4096


def test_a_document_that_breaks_the_model_fails_alone(corpus_parquet, ner_model, tmp_path,
                                                       monkeypatch):
    from seqlab.stages.tag import Tagger

    real_forward = Tagger.forward

    def flaky(self, group):  # windows of some lengths break the model
        if any(len(w.ids) % 7 == 3 for w in group):
            raise RuntimeError("device-side assert")
        return real_forward(self, group)

    monkeypatch.setattr(Tagger, "forward", flaky)
    manifest = run(corpus_parquet, tmp_path / "out", ner_model, id_column="id")
    docs = read_output(tmp_path / "out")["documents"].to_pylist()
    failed = [d for d in docs if d["status"] == "failed"]
    assert manifest["rows"]["out"] == 53 and 0 < len(failed) < 40
    assert all("device-side assert" in d["error"] and d["tokens"] is None for d in failed)
    assert sum(d["status"] == "ok" for d in docs) == 50 - len(failed)


def test_casing_reaches_models_trained_with_the_case_feature(ner_model, cased_ner_model,
                                                             tmp_path):
    """Models trained with casing get it as token type ids (1 on subwords holding a capital);
    other models see the lower-cased text only, as their tokenizer gives it."""
    rows = [{"id": "upper", "text": "John SMITH went to Paris"},
            {"id": "lower", "text": "john smith went to paris"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")

    def scores(model) -> dict[str, list[float]]:
        out = tmp_path / model.name
        run(tmp_path / "in.parquet", out, model, id_column="id")
        docs = read_output(out)["documents"].to_pylist()
        return {d["doc_id"]: [t["score"] for t in d["tokens"]] for d in docs}

    plain, cased = scores(ner_model), scores(cased_ner_model)
    assert plain["upper"] == plain["lower"]
    assert cased["lower"] == plain["lower"]  # no capital: all token types are 0
    assert cased["upper"] != cased["lower"]
    # an upper-case word changes its own score, not only its neighbours'
    assert all(cased["upper"][i] != cased["lower"][i] for i in (0, 1, 4))
