"""``seqlab show``: documents of a tiny output directory written here with pyarrow."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from seqlab.cli.main import main
from seqlab.report.show import load_documents, print_documents

ADA = "Ada Lovelace worked with Charles Babbage in London."


def _entity(text: str, part: str, label: str) -> dict:
    start = text.index(part)
    return {"text": part, "label": label, "start_char": start, "end_char": start + len(part),
            "score": 0.9}


def _tokens(text: str) -> list[dict]:
    tokens, at = [], 0
    for word in text.split():
        start = text.index(word, at)
        at = start + len(word)
        tokens.append({"text": word, "start_char": start, "end_char": at, "label": "O",
                       "score": 1.0})
    return tokens


def _row(doc_id: str, text: str | None, status: str = "ok",
         entities: tuple[tuple[str, str], ...] = (), keep_text: bool = True) -> dict:
    ok = status == "ok"
    return {"doc_id": doc_id, "text": text if keep_text else None, "status": status,
            "error": None if ok else f"text is {status}",
            "n_tokens": len(text.split()) if ok else 0,
            "tokens": _tokens(text) if ok else None,
            "entities": [_entity(text, part, label) for part, label in entities] if ok else None}


ROWS = [
    _row("d1", ADA, entities=(("Ada Lovelace", "PER"), ("Charles Babbage", "PER"),
                              ("London", "LOC"))),
    _row("d2", None, status="empty"),
    _row("d3", "Vienna lies on the Danube.", entities=(("Vienna", "LOC"), ("Danube", "LOC"))),
    _row("d4", "Nothing to see here."),
]


@pytest.fixture
def out(tmp_path):
    (tmp_path / "out" / "documents").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "out" / "documents" / "part-0.parquet")
    return tmp_path / "out"


def test_piped_output_marks_entities_in_the_text(out, capsys):
    assert main(["show", str(out), "--limit", "1"]) == 0
    shown = capsys.readouterr().out
    assert "\x1b[" not in shown
    assert shown.splitlines() == [
        "d1  status=ok",
        "[Ada Lovelace](PER) worked with [Charles Babbage](PER) in [London](LOC)."]


def test_limit_and_chars(out, capsys):
    assert main(["show", str(out), "--limit", "2", "--chars", "20"]) == 0
    shown = capsys.readouterr().out
    # two ok documents (the empty one is passed over), each cut at 20 characters; an entity
    # the cut goes through is not marked
    assert "d1  status=ok\n[Ada Lovelace](PER) worked \n… (31 more characters)" in shown
    assert "d3  status=ok\n[Vienna](LOC) lies on the D\n… (6 more characters)" in shown
    assert "d4" not in shown


def test_a_document_by_id_with_its_status(out, capsys):
    assert main(["show", str(out), "--doc", "d2"]) == 0
    assert capsys.readouterr().out.startswith("d2  status=empty  error=text is empty")
    assert main(["show", str(out), "--doc", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no document 'nope'" in err and "--list" in err


def test_list_prints_ids_statuses_entity_counts_and_errors(out, capsys):
    assert main(["show", str(out), "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "doc_id\tstatus\tentities\tframes\terror", "d1\tok\t3\t0",
        "d2\tempty\t0\t0\ttext is empty", "d3\tok\t2\t0", "d4\tok\t0\t0"]
    assert main(["show", str(out), "--list", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_html_page_holds_every_document_shown(out, tmp_path, capsys):
    page = tmp_path / "page.html"
    assert main(["show", str(out), "--limit", "2", "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert html.count("<section>") == 2
    # one mark per entity plus one per label in each document's legend
    assert html.count("<mark") == (3 + 2) + (2 + 1)


def test_terminal_output_is_coloured():
    console = Console(record=True, force_terminal=True, width=100)
    print_documents([ROWS[0]], console)
    shown = console.export_text(styles=True, clear=False)
    assert "\x1b[" in shown and "[Ada Lovelace](PER)" not in shown
    assert "Ada Lovelace worked with Charles Babbage in London." in console.export_text()


def test_text_is_rebuilt_for_runs_without_text(tmp_path, capsys):
    (tmp_path / "documents").mkdir()
    row = _row("d1", ADA, entities=(("London", "LOC"),), keep_text=False)
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "documents" / "part-0.parquet")
    assert load_documents(str(tmp_path))[0]["text"] == ADA
    assert main(["show", str(tmp_path)]) == 0
    assert "Charles Babbage in [London](LOC)." in capsys.readouterr().out


def test_not_an_output_directory(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "no documents/ table" in capsys.readouterr().err


def _span(text: str, part: str, **fields) -> dict:
    start = text.index(part)
    return {"text": part, "start_char": start, "end_char": start + len(part), "score": 0.8,
            **fields}


def _several_models_row() -> dict:
    """A documents row of ``--model ner,srl``: each model's columns behind its key."""
    row = _row("d1", ADA)
    entities = row.pop("entities")
    row["ner_tokens"], row["ner_entities"] = row.pop("tokens"), entities + [
        _entity(ADA, "London", "LOC")]
    row["srl_frames"] = [{"frame": 0, "predicate": _span(ADA, "worked"), "arguments": [
        _span(ADA, "Ada Lovelace", role="ARG0"),
        _span(ADA, "with Charles Babbage", role="ARG1"), _span(ADA, "in London",
                                                               role="ARGM-LOC")]},
        {"frame": 1, "predicate": _span(ADA, "worked"), "arguments": []}]
    return row


@pytest.fixture
def several(tmp_path):
    (tmp_path / "out" / "documents").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_several_models_row()]),
                   tmp_path / "out" / "documents" / "part-0.parquet")
    return tmp_path / "out"


def test_frames_and_every_models_entities_are_shown(several, tmp_path, capsys):
    assert main(["show", str(several), "--doc", "d1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "d1  status=ok", "Ada Lovelace worked with Charles Babbage in [London](LOC).",
        'frame 0  worked: ARG0="Ada Lovelace" ARG1="with Charles Babbage" '
        'ARGM-LOC="in London"',
        "not shown: 1 frames without arguments (--all-frames)"]
    assert main(["show", str(several), "--doc", "d1", "--all-frames"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "frame 1  worked:"
    assert main(["show", str(several), "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "d1\tok\t1\t2"
    page = tmp_path / "page.html"
    assert main(["show", str(several), "--doc", "d1", "--html", str(page)]) == 0
    html = page.read_text()
    assert "1 frames" in html and '<b class="v" title="predicate 0.800">worked</b>' in html
    assert "not shown: 1 frames without arguments (--all-frames)" in html
    # one mark per argument, per entity and per legend label
    assert html.count("<mark") == 3 + 1 + 1
    assert "with Charles Babbage<sup>ARG1</sup></mark>" in html


def test_tags_without_a_manifest_are_told_from_span_labels(tmp_path, capsys):
    """A run that has not ended has no manifest: a tokens column whose labels are tags (not O
    or B-PER) is a tagging model's."""
    row = _row("d1", ADA, entities=(("London", "LOC"),))
    row["upos_tokens"] = [{**t, "label": "PROPN" if t["text"][0].isupper() else "VERB"}
                          for t in row["tokens"]]
    (tmp_path / "documents").mkdir()
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "documents" / "part-0.parquet")
    assert main(["show", str(tmp_path), "--doc", "d1"]) == 0
    rows = _interlinear(capsys.readouterr().out)
    assert rows == {"word": ADA.split(), "upos": [t["label"] for t in row["upos_tokens"]]}


# -------------------------------------------------- a real run of ner, upos and srl


def _interlinear(shown: str) -> dict[str, list[str]]:
    """The words and tags rows of ``seqlab show``'s tag blocks, joined across blocks."""
    rows: dict[str, list[str]] = {}
    for line in shown.splitlines():
        if line.startswith(("word ", "upos ")):
            name, *cells = line.split()
            rows.setdefault(name, []).extend(cells)
    return rows


def _documents(out) -> list[dict]:
    import pyarrow.dataset as ds

    return ds.dataset(out / "documents", format="parquet").to_table().to_pylist()


def test_show_alone_prints_a_short_overview(several_out, capsys):
    import json

    assert main(["show", str(several_out)]) == 0
    shown = capsys.readouterr().out
    lines = shown.splitlines()
    counts = json.loads((several_out / "_manifest.json").read_text())["counts"]
    assert lines[0] == (f"{several_out}: {counts['documents']} documents "
                        f"({counts['status.ok']} ok, {counts['status.empty']} empty)")
    assert [line.split()[:2] for line in lines[1:4]] == [["model", "ner"], ["model", "upos"],
                                                         ["model", "srl"]]
    documents = _documents(several_out)
    listed = lines[lines.index(next(x for x in lines if x.startswith("doc_id"))) + 1:][:6]
    assert [line.split()[0] for line in listed[:5]] == [d["doc_id"] for d in documents[:5]]
    assert listed[5] == f"… and {len(documents) - 5} more (--list prints every one)"
    first = next(d for d in documents if d["status"] == "ok")
    assert f"{first['doc_id']}  status=ok" in lines
    assert f"… ({len(first['text']) - 300:,} more characters)" in lines
    assert _interlinear(shown)["word"] == [t["text"] for t in first["upos_tokens"]
                                           if t["end_char"] <= 300]
    assert all(flag in shown for flag in ("--doc ID", "--list", "--chars N", "--all-frames"))
    assert len(shown) < 12_000 < sum(len(d["text"] or "") for d in documents)


def test_chars_bounds_the_text_and_what_is_inside_it(several_out, capsys):
    document = max(_documents(several_out), key=lambda d: len(d["text"] or ""))
    assert main(["show", str(several_out), "--doc", document["doc_id"], "--chars", "400"]) == 0
    shown = capsys.readouterr().out
    marked = [e for e in document["ner_entities"] if e["end_char"] <= 400]
    assert shown.count("](") == len(marked) > 0
    rows = _interlinear(shown)
    inside = [t for t in document["upos_tokens"] if t["end_char"] <= 400]
    assert rows == {"word": [t["text"] for t in inside], "upos": [t["label"] for t in inside]}
    frames = document["srl_frames"]
    within = [f for f in frames if max(s["end_char"] for s in [f["predicate"], *f["arguments"]])
              <= 400]
    printed = [int(line.split()[1]) for line in shown.splitlines() if line.startswith("frame ")]
    assert printed == [f["frame"] for f in within if f["arguments"]]
    assert len(within) < len(frames)
    assert f"not shown: {len(frames) - len(within)} frames after character 400" in shown


def test_frames_without_arguments_are_hidden_unless_asked(bare_out, capsys):
    document = next(d for d in _documents(bare_out)
                    if any(not f["arguments"] for f in d["srl_frames"] or []))
    bare = [f["frame"] for f in document["srl_frames"] if not f["arguments"]]
    assert main(["show", str(bare_out), "--doc", document["doc_id"]]) == 0
    shown = capsys.readouterr().out
    printed = [int(line.split()[1]) for line in shown.splitlines() if line.startswith("frame ")]
    assert printed == [f["frame"] for f in document["srl_frames"] if f["arguments"]]
    assert shown.rstrip().endswith(f"{len(bare)} frames without arguments (--all-frames)")
    assert main(["show", str(bare_out), "--doc", document["doc_id"], "--all-frames"]) == 0
    shown = capsys.readouterr().out
    printed = [int(line.split()[1]) for line in shown.splitlines() if line.startswith("frame ")]
    assert printed == [f["frame"] for f in document["srl_frames"]]
    assert "not shown" not in shown


def test_html_page_names_the_models_and_tags_the_words(several_out, tmp_path, capsys):
    document = next(d for d in _documents(several_out) if d["status"] == "ok")
    page = tmp_path / "page.html"
    assert main(["show", str(several_out), "--doc", document["doc_id"], "--chars", "200",
                 "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count("<tr>") == 1 + 3  # the models table: its head and a row per model
    inside = [t for t in document["upos_tokens"] if t["end_char"] <= 200]
    assert html.count('<span class="word">') == len(inside)
    assert html.count('<small style=') == len(inside)
    assert f'<span class="word"><span>{inside[0]["text"]}</span>' in html
