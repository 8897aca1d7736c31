"""``seqlab report``: the HTML page of a tiny real output, parsed back and checked against the
tables it was made from."""

from __future__ import annotations

import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import BAD_ROWS, make_corpus
from tests.helpers import read_output

VOID = {"meta", "br", "img", "link", "input", "hr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self, skip: set[str] = frozenset()) -> str:
        """The text inside, leaving out elements with a class in ``skip``."""
        return "".join(c if isinstance(c, str) else c.text(skip) for c in self.children
                       if isinstance(c, str) or not c.classes & skip)

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes)
                        and all(child.attrs.get(k.replace("_", "-")) == v
                                for k, v in attrs.items())):
                    found.append(child)
                found += child.find(tag, cls, **attrs)
        return found

    def has(self, attr: str) -> list[Node]:
        return [n for n in self.find() if attr in n.attrs]


class Tree(HTMLParser):
    """The page as a tree of Nodes (html.parser gives events, not a tree)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.at = Node("#root", {}, None)
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag: str) -> None:
        node = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None, f"</{tag}> closes nothing"
        self.at = node.parent

    def handle_data(self, data: str) -> None:
        self.at.children.append(data)


def write_corpus(path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(make_corpus(30) + BAD_ROWS), path, row_group_size=8)
    return path


@pytest.fixture(scope="module")
def ner_out(tmp_path_factory, ner_model) -> Path:
    from seqlab import annotate

    tmp = tmp_path_factory.mktemp("report-ner")
    out = tmp / "out"
    annotate(str(write_corpus(tmp / "corpus.parquet")), str(out), model=str(ner_model),
             id_column="id", max_length=64, stride=16, rows_per_part=12, device="cpu")
    return out


@pytest.fixture(scope="module")
def ner_page(ner_out, tmp_path_factory) -> tuple[Node, str]:
    from seqlab.report.html import write_report

    path = tmp_path_factory.mktemp("report-page") / "report.html"
    write_report(str(ner_out), path, sample=8)
    page = path.read_text(encoding="utf-8")
    return Tree(page).root, page


def _labels(tables: dict) -> list[str]:
    return sorted(set(tables["aggregates"].column("label").to_pylist()))


def test_status_counts_are_the_manifests(ner_out, ner_page):
    root, _ = ner_page
    manifest = json.loads((ner_out / "_manifest.json").read_text())
    shown = {row.attrs["data-status"]: int(row.find("td", cls="n")[0].attrs["data-count"])
             for row in root.find("tr") if "data-status" in row.attrs}
    counted = {k.removeprefix("status."): v for k, v in manifest["counts"].items()
               if k.startswith("status.")}
    assert {k: v for k, v in shown.items() if v} == counted
    assert {"ok", "empty", "too_long", "failed", "bad_record", "bad_encoding",
            "bad_type"} <= set(shown)


def test_labels_and_top_entities_are_the_aggregates(ner_out, ner_page):
    root, _ = ner_page
    tables = read_output(ner_out)
    aggregates = tables["aggregates"].to_pylist()
    labels = _labels(tables)
    assert len(labels) >= 2
    section = root.find("section", id="labels")[0]
    for label in labels:
        row = section.find("tr", data_label=label)[0]
        mentions = sum(a["mentions"] for a in aggregates if a["label"] == label)
        assert int(row.find("td", cls="n")[0].attrs["data-count"]) == mentions
    top = root.find("section", id="top-entities")[0]
    for label in labels:
        rows = sorted((a for a in aggregates if a["label"] == label),
                      key=lambda a: (-a["mentions"], a["text"]))[:15]
        card = top.find("div", cls="card", data_label=label)[0]
        shown = [[td.text() for td in tr.find("td")] for tr in card.find("tr")[1:]]
        assert shown == [[a["text"], f"{a['mentions']:,}", f"{a['documents']:,}",
                          f"{a['score_sum'] / a['mentions']:.3f}"] for a in rows]


def test_histograms_hold_every_mention(ner_out, ner_page):
    root, _ = ner_page
    mentions = Counter(read_output(ner_out)["mentions"].column("label").to_pylist())
    section = root.find("section", id="scores")[0]
    for label, n in mentions.items():
        card = section.find("div", cls="card", data_label=label)[0]
        bars = card.find("div", cls="hist")[0].find("div")
        assert len(bars) == 10
        assert sum(int(bar.attrs["data-count"]) for bar in bars) == n


def test_documents_with_the_most_entities(ner_out, ner_page):
    root, _ = ner_page
    documents = read_output(ner_out)["documents"].to_pylist()
    counts = {d["doc_id"]: len(d["entities"] or []) for d in documents}
    rows = root.find("section", id="top-documents")[0].find("tr")[1:]
    shown = {tr.find("td")[0].text(): int(tr.find("td")[1].text().replace(",", ""))
             for tr in rows}
    assert len(shown) == 10
    assert all(counts[doc_id] == n for doc_id, n in shown.items())
    assert min(shown.values()) >= sorted(counts.values(), reverse=True)[9]


def test_the_sample_highlights_each_documents_entities(ner_out, ner_page):
    root, _ = ner_page
    # the first ok documents with entities, in the order the manifest lists the parts
    manifest = json.loads((ner_out / "_manifest.json").read_text())
    documents = [row for part in manifest["tables"]["documents"]
                 for row in pq.read_table(ner_out / part["path"]).to_pylist()]
    expected = [d for d in documents if d["status"] == "ok" and d["entities"]][:8]
    articles = root.find("article", cls="doc")
    assert [a.attrs["data-doc-id"] for a in articles] == [d["doc_id"] for d in expected]
    cut = 0
    for article, document in zip(articles, expected):
        marks = [m.text(skip={"tag"}) for m in article.find("mark", cls="ent")]
        entities = sorted(document["entities"], key=lambda e: e["start_char"])
        assert marks == [e["text"] for e in entities[:len(marks)]]
        assert [m.find("span", cls="tag")[0].text() for m in article.find("mark", cls="ent")] \
            == [e["label"] for e in entities[:len(marks)]]
        text = article.find("div", cls="text")[0].text(skip={"tag", "note"})
        assert document["text"].startswith(text)
        if len(document["text"]) > 3000:
            cut += 1
            assert len(text) <= 3000 and len(marks) < len(entities)
            assert "more characters" in article.find("div", cls="text")[0].text()
        else:
            assert text == document["text"] and len(marks) == len(entities)
    assert cut, "the sample should hold a long document, cut"
    ids = {a.attrs["id"] for a in articles}
    links = {n.attrs["href"][1:] for a in articles for n in a.find("a")}
    assert links <= ids | {"sample"} and len(ids) == 8


def test_the_page_fetches_nothing(ner_page):
    root, page = ner_page
    for node in root.has("src") + root.has("href"):
        value = node.attrs.get("src") or node.attrs.get("href") or ""
        assert not re.match(r"(https?:)?//", value), value
    assert not root.find("link") and not [s for s in root.find("script") if "src" in s.attrs]
    assert "@import" not in page and "url(" not in page


def test_the_command_line(ner_out, tmp_path, capsys):
    from seqlab.cli.main import main

    html = tmp_path / "r.html"
    assert main(["report", str(ner_out), "--html", str(html), "--sample", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {html}"
    assert len(Tree(html.read_text()).root.find("article", cls="doc")) == 3


def test_any_fsspec_url(ner_out):
    import fsspec

    from seqlab.report.gather import gather

    fs = fsspec.filesystem("memory")
    fs.put(str(ner_out), "/report-copy", recursive=True)
    try:
        remote, local = gather("memory://report-copy", sample=4), gather(str(ner_out), sample=4)
    finally:
        fs.rm("/report-copy", recursive=True)
    assert remote.statuses == local.statuses and remote.labels == local.labels
    assert remote.sample == local.sample and remote.top_entities == local.top_entities


def test_an_output_without_manifest(tmp_path, capsys):
    from seqlab.cli.main import main
    from seqlab.errors import OutputError
    from seqlab.report.gather import gather

    with pytest.raises(OutputError, match="no _manifest.json") as caught:
        gather(str(tmp_path))
    assert caught.value.fix == "run seqlab annotate first, or wait for it to finish"
    assert main(["report", str(tmp_path), "--html", str(tmp_path / "r.html")]) == 2
    assert "fix: run seqlab annotate first" in capsys.readouterr().err


def test_a_tags_model_shows_its_tags(tmp_path, pos_model):
    from seqlab import annotate
    from seqlab.report.html import write_report

    out = tmp_path / "out"
    annotate(str(write_corpus(tmp_path / "corpus.parquet")), str(out), model=str(pos_model),
             id_column="id", max_length=64, stride=16, device="cpu")
    write_report(str(out), tmp_path / "r.html", sample=5)
    root = Tree((tmp_path / "r.html").read_text()).root
    documents = read_output(out)["documents"].to_pylist()
    tags = Counter(t["label"] for d in documents if d["status"] == "ok" for t in d["tokens"])
    section = root.find("section", id="labels")[0]
    assert section.find("h2")[0].text() == "Tags"
    shown = {tr.attrs["data-label"]: int(tr.find("td", cls="n")[0].attrs["data-count"])
             for tr in section.find("tr") if "data-label" in tr.attrs}
    assert shown == dict(tags)
    assert not root.find("section", id="top-entities")
    assert not root.find("section", id="top-documents")
    articles = root.find("article", cls="doc")
    assert len(articles) == 5
    by_id = {d["doc_id"]: d for d in documents}
    for article in articles:
        tokens = by_id[article.attrs["data-doc-id"]]["tokens"]
        marks = [m.text(skip={"tag"}) for m in article.find("mark", cls="ent")]
        assert marks == [t["text"] for t in tokens[:len(marks)]] and marks


def test_a_run_without_text_shows_texts_rebuilt_from_tokens(tmp_path, ner_model):
    from seqlab import annotate
    from seqlab.report.gather import gather

    out = tmp_path / "out"
    rows = [{"id": "a", "text": "john smith said the bank of new york was in london"},
            {"id": "b", "text": "mary went to paris with the university"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    annotate(str(tmp_path / "in.parquet"), str(out), model=str(ner_model), id_column="id",
             max_length=64, stride=16, keep_text=False, device="cpu")
    entities = {d["doc_id"]: d["entities"] for d in read_output(out)["documents"].to_pylist()}
    report = gather(str(out))
    assert report.sample, "the tiny model finds some entities in these words"
    for document in report.sample:
        source = next(r["text"] for r in rows if r["id"] == document["doc_id"])
        assert document["text"] == source  # single spaces: the rebuilt text is the text
        assert [s["text"] for s in document["spans"]] == [e["text"] for e in
                                                        entities[document["doc_id"]]]


# ------------------------------------------------------------ a run of several models


@pytest.fixture(scope="module")
def several_page(several_out, tmp_path_factory) -> Node:
    from seqlab.report.html import write_report

    path = tmp_path_factory.mktemp("several-page") / "report.html"
    write_report(str(several_out), path, sample=4)
    return Tree(path.read_text(encoding="utf-8")).root


def _cells(row: Node) -> list[str]:
    return [td.text().strip() for td in row.find("td")]


def test_a_header_per_model(several_out, several_page):
    manifest = json.loads((several_out / "_manifest.json").read_text())
    cards = several_page.find("div", cls="model")
    assert [c.attrs["data-model"] for c in cards] == ["ner", "upos", "srl"]
    for card, model in zip(cards, manifest["models"]):
        fields = dict(zip((dt.text() for dt in card.find("dt")),
                          (dd.text() for dd in card.find("dd"))))
        assert fields["scheme"] == model["scheme"] and fields["decoder"] == model["decoder"]
        assert fields["labels"] == str(len(model["labels"]))
        # each model's own precision and backend, as the engine recorded them
        recorded = manifest["tagging"]["models"][model["key"]]
        assert fields["precision"] == f"{recorded['precision']} ({recorded['backend']})"
        assert fields["columns"] == ", ".join(model["columns"])
        assert fields.get("predicates") == (model.get("predicates") or {}).get("name")
    assert [c.find("span", cls="note")[0].text() for c in cards] == ["entities", "tags",
                                                                    "frames"]
    assert several_page.find("h1")[0].text() == "seqlab report · ner · upos · srl"


def test_the_tags_section_counts_every_word_of_the_tagging_model(several_out, several_page):
    documents = pq.read_table(several_out / "documents").to_pylist()
    ok = [d for d in documents if d["status"] == "ok"]
    tags = Counter(t["label"] for d in ok for t in d["upos_tokens"])
    section = several_page.find("section", id="pos-upos")[0]
    shown = {tr.attrs["data-tag"]: int(tr.find("td", cls="n")[0].attrs["data-count"])
             for tr in section.find("tr") if "data-tag" in tr.attrs}
    assert shown == dict(tags) and len(shown) >= 3
    # the sentence: the first ok document's words, up to its first sentence end
    manifest = json.loads((several_out / "_manifest.json").read_text())
    first = next(row for part in manifest["tables"]["documents"]
                 for row in pq.read_table(several_out / part["path"]).to_pylist()
                 if row["status"] == "ok")
    words = section.find("div", cls="words")[0]
    assert words.attrs["data-doc-id"] == first["doc_id"]
    pairs = [(w.find("b")[0].text(), w.find("span", cls="chip")[0].text())
             for w in words.find("span", cls="word")]
    assert pairs == [(t["text"], t["label"]) for t in first["upos_tokens"][:len(pairs)]]
    assert pairs[-1][0] in ".!?" or len(pairs) == 40
    # the entity model keeps its own sections beside it
    assert several_page.find("section", id="top-entities")


def _frames_figures(section: Node) -> dict[str, str]:
    return {tile.attrs["data-figure"]: tile.find("b")[0].text()
            for tile in section.find("div", cls="tile")}


def test_the_frames_section_counts_every_frame(several_out, several_page):
    frames = pq.read_table(several_out / "frames").to_pylist()
    section = several_page.find("section", id="srl-srl")[0]
    figures = _frames_figures(section)
    assert figures["frames"] == f"{len(frames):,}"
    assert figures["documents with frames"] == str(len({f["doc_id"] for f in frames}))
    predicates = Counter(f["predicate"]["text"].lower() for f in frames)
    assert figures["distinct predicates"] == str(len(predicates))
    rows = [tr for tr in section.find("tr") if "data-predicate" in tr.attrs]
    shown = {tr.attrs["data-predicate"]: int(tr.find("td", cls="n")[0].attrs["data-count"])
             for tr in rows}
    assert len(shown) == min(20, len(predicates))
    assert all(predicates[p] == n for p, n in shown.items())
    assert min(shown.values()) >= max(n for p, n in predicates.items() if p not in shown)
    roles = Counter(a["role"] for f in frames for a in f["arguments"])
    assert {tr.attrs["data-role"]: int(tr.find("td", cls="n")[0].attrs["data-count"])
            for tr in section.find("tr") if "data-role" in tr.attrs} == dict(roles)
    # the sample: the first document with a frame that has arguments, its frames in order
    first = next(f["doc_id"] for f in frames if f["arguments"])
    listed = section.find("ol", cls="frames")[0]
    assert listed.attrs["data-doc-id"] == first
    expected = [f for f in frames if f["doc_id"] == first and f["arguments"]][:12]
    items = listed.find("li")
    assert [li.attrs["data-predicate"] for li in items] == [
        f["predicate"]["text"] for f in expected]
    for li, frame in zip(items, expected):
        assert li.find("b", cls="v")[0].text() == frame["predicate"]["text"]
        marks = li.find("mark", cls="ent")
        assert {m.find("span", cls="tag")[0].text() for m in marks} <= {
            a["role"] for a in frame["arguments"]}


def test_frames_without_arguments_are_counted_apart(bare_out, tmp_path):
    from seqlab.report.html import write_report

    write_report(str(bare_out), tmp_path / "r.html", sample=2)
    section = Tree((tmp_path / "r.html").read_text()).root.find("section", id="srl-srl")[0]
    frames = pq.read_table(bare_out / "frames").to_pylist()
    bare = Counter(f["predicate"]["text"].lower() for f in frames if not f["arguments"])
    assert _frames_figures(section)["without arguments"] == (
        f"{sum(bare.values()):,} ({100 * sum(bare.values()) / len(frames):.1f}%)")
    for tr in section.find("tr"):
        if "data-predicate" in tr.attrs:
            assert int(_cells(tr)[2].replace(",", "")) == bare[tr.attrs["data-predicate"]]
    first = next(f["doc_id"] for f in frames if f["arguments"])
    shown = section.find("ol", cls="frames")[0].find("li")
    assert len(shown) == min(12, sum(1 for f in frames if f["doc_id"] == first
                                     and f["arguments"]))
    assert "frames without arguments" in section.find("ol", cls="frames")[0].parent.text()


def test_a_role_labeller_alone_has_no_entity_sections(srl_model, tmp_path):
    from seqlab import annotate
    from seqlab.report.html import write_report
    from tests.seqlab import SMALL, rows, write_parquet

    write_parquet(tmp_path / "in.parquet", rows(6))
    annotate(str(tmp_path / "in.parquet"), str(tmp_path / "out"), model=str(srl_model),
             id_column="id", **SMALL)
    write_report(str(tmp_path / "out"), tmp_path / "r.html")
    root = Tree((tmp_path / "r.html").read_text()).root
    ids = [s.attrs["id"] for s in root.find("section")]
    assert ids == ["run", "statuses", f"srl-{srl_model.name}"]
    frames = pq.read_table(tmp_path / "out" / "frames").num_rows
    assert _frames_figures(root.find("section", id=ids[-1])[0])["frames"] == str(frames)


# ------------------------------------------------------------------------- speed


def test_rates_are_precise_however_slow(ner_out, ner_page):
    from seqlab.report.run_info import per_second

    assert per_second(20, 488, "document") == ("24.4 s", "per document")
    assert per_second(41, 1000, "document") == ("24.4 s", "per document")
    assert per_second(3, 2, "word") == ("1.50", "words/s")
    manifest = json.loads((ner_out / "_manifest.json").read_text())
    root, _ = ner_page
    tiles = {t.attrs["data-figure"]: t.find("b")[0].text() for t in root.find("div", cls="tile")}
    shown = {k: v for k, v in tiles.items() if k.endswith("/s") or k.startswith("per ")}
    assert len(shown) == 2
    expected = [per_second(manifest["counts"][key], manifest["elapsed_s"], what)
                for key, what in (("documents", "document"), ("tokens", "word"))]
    assert shown == {unit: value for value, unit in expected}
    assert "0.0" not in shown.values()


def test_a_resumed_runs_speed_is_each_attempts_own(ner_out):
    from dataclasses import replace
    from types import SimpleNamespace

    from seqlab.report.run_html import run_section
    from seqlab.report.run_info import model_headers, rates
    from seqlab.store.manifest import Attempt, Manifest

    manifest = Manifest.from_dict(json.loads((ner_out / "_manifest.json").read_text()))
    docs, words = manifest.counts["documents"], manifest.counts["tokens"]
    # a second attempt that records nothing of its own: the whole run over the wall clock
    resumed = replace(manifest, attempts=(Attempt("local", "2026-01-01T10:00:00+00:00"),
                                          Attempt("local", "2026-01-01T11:00:00+00:00")),
                      finished_at="2026-01-01T11:00:30+00:00", elapsed_s=30.0)
    last, whole = rates(resumed)
    assert (last.documents, last.seconds) == (None, 30.0) and last.note
    assert (whole.documents, whole.words, whole.seconds) == (docs, words, 3630.0)
    # the manifest's attempt section: the last attempt's own rows over its own time
    counted = replace(resumed, extra={**resumed.extra, "attempt": {
        "number": 2, "seconds": 30.0, "documents": 3, "words": 100, "characters": 500}})
    last, whole = rates(counted)
    assert (last.scope, last.documents, last.words, last.seconds) == (
        "last attempt (2 of 2)", 3, 100, 30.0)
    assert (whole.documents, whole.seconds) == (docs, 3630.0)
    # attempts that each record their seconds: all rows over the summed times
    timed = replace(counted, attempts=tuple(
        SimpleNamespace(engine=a.engine, started_at=a.started_at, seconds=s)
        for a, s in zip(counted.attempts, (400.0, 30.0))))
    assert rates(timed)[1].seconds == 430.0
    body = Tree(run_section(timed, model_headers(timed))[2]).root
    rows = [tr for tr in body.find("tr") if "data-scope" in tr.attrs]
    assert docs == 33  # 3 documents in 30 s, 33 in 430 s: both under one a second
    assert [_cells(tr)[3] for tr in rows] == ["10 s per document", "13 s per document"]
    assert [_cells(tr)[4] for tr in rows] == ["3.33 words/s", f"{words / 430:.1f} words/s"]
