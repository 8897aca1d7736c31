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
