"""Committing runs to Iceberg tables: pyiceberg's SQL catalog on SQLite with a warehouse in
tmp_path, configured through environment variables as a pyiceberg user would; the files are
seqlab's own Parquet (``seqlab.store.parts.write_table``, the declared schemas), read back
through pyiceberg's scans."""

from __future__ import annotations

import datetime
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqlab.errors import ConfigError, RunError
from seqlab.schema import AGGREGATES, MENTIONS, documents_schema
from seqlab.store import iceberg
from seqlab.store.iceberg import TableChange, commit_run
from seqlab.store.parts import write_table

pytest.importorskip("sqlalchemy", reason="pyiceberg's SQL catalog: pip install "
                    "'pyiceberg[sql-sqlite]'")
SqlCatalog = pytest.importorskip("pyiceberg.catalog.sql").SqlCatalog
CommitFailedException = pytest.importorskip("pyiceberg.exceptions").CommitFailedException

pytestmark = pytest.mark.timeout(120)

DOCUMENTS = documents_schema(pa.schema([("title", pa.string()), ("year", pa.int64())]))
SCHEMAS = {"documents": DOCUMENTS, "mentions": MENTIONS, "aggregates": AGGREGATES}
NAMES = {"Reuters": "ORG", "London": "LOC", "Mary": "PER", "Zürich": "LOC"}


def url_of(path: Path) -> str:
    """A file URL as fsspec spells it (``Path.as_uri`` would quote the ``=`` of Hive folders,
    and pyiceberg takes a path literally)."""
    return f"file://{path}"


class Output:
    """An incremental output folder: parts of each run under Hive-style run_date folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fs = fsspec.filesystem("file")
        self.rows: dict[str, list[dict]] = {}  # file URL -> its rows

    def land(self, table: str, run: str, name: str, rows: list[dict]) -> str:
        relpath = f"{table}/run_date=2026-12-0{run[-1]}/{name}-{run}.parquet"
        write_table(self.fs, str(self.root), relpath,
                    pa.Table.from_pylist(rows, schema=SCHEMAS[table]))
        url = url_of(self.root / relpath)
        self.rows[url] = rows
        return url

    def land_run(self, run: str, docs: list[tuple[str, str]], part: str) -> dict[str, str]:
        """Land documents, mentions and aggregates of ``docs`` (id, text) as one part each."""
        documents = [document(doc_id, text, run, top=i % 2 == 0)
                     for i, (doc_id, text) in enumerate(docs)]
        mentions = [{"doc_id": d["doc_id"], **{k: e[k] for k in
                                              ("start_char", "end_char", "text", "label",
                                               "score")},
                     **provenance(run)} for d in documents for e in d["entities"]]
        return {"documents": self.land("documents", run, part, documents),
                "mentions": self.land("mentions", run, part, mentions),
                "aggregates": self.land("aggregates", run, part, aggregates(mentions))}

    def rows_of(self, urls) -> list[dict]:
        return [row for url in urls for row in self.rows[url]]


def provenance(run: str) -> dict:
    return {"run_id": run, "model": "ner", "model_revision": "sha256:4d10f95",
            "processed_at": datetime.datetime(2026, 12, 1, 23, 59, 59, 250000,
                                              tzinfo=datetime.timezone.utc)}


def document(doc_id: str, text: str, run: str, top: bool) -> dict:
    """A documents row as annotate lands it: words with offsets, labels, scores, K best
    labels (``--top-k``) on some documents, entities of one word each."""
    tokens, entities, start = [], [], 0
    for word in text.split():
        start = text.index(word, start)
        end = start + len(word)
        label = f"B-{NAMES[word]}" if word in NAMES else "O"
        score = 0.5 + len(word) / 64
        best = [{"label": label, "score": score}, {"label": "O" if label != "O" else "B-MISC",
                                                   "score": 1 - score}]
        tokens.append({"text": word, "start_char": start, "end_char": end, "label": label,
                       "score": score, "top": best if top else None})
        if word in NAMES:
            entities.append({"text": word, "label": NAMES[word], "start_char": start,
                             "end_char": end, "score": score})
        start = end
    return {"doc_id": doc_id, "title": f"Title of {doc_id}", "year": 2026, "text": text,
            "status": "ok" if tokens else "empty", "error": None, "n_tokens": len(tokens),
            "tokens": tokens, "entities": entities, **provenance(run)}


def aggregates(mentions: list[dict]) -> list[dict]:
    sums: dict[tuple, dict] = {}
    for m in mentions:
        row = sums.setdefault((m["label"], m["text"].casefold()),
                              {"label": m["label"], "text": m["text"].casefold(),
                               "mentions": 0, "documents": 0, "score_sum": 0.0})
        row["mentions"] += 1
        row["documents"] += 1
        row["score_sum"] += m["score"]
    return list(sums.values())


def changes(added: dict[str, str], removed: dict[str, str] | None = None,
            only=("documents", "mentions", "aggregates")) -> dict[str, TableChange]:
    removed = removed or {}
    return {t: TableChange(SCHEMAS[t], [added[t]] if t in added else [],
                           [removed[t]] if t in removed else []) for t in only}


def catalog(name: str = "lake") -> SqlCatalog:
    return iceberg.load(name)


def scan_rows(table, key: str = "doc_id") -> list[dict]:
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda r: (r[key], str(r)))


def file_rows(table, key: str = "doc_id") -> list[dict]:
    """The rows of the table's current data files, read as any Parquet reader reads them."""
    rows = [row for path in sorted(file_paths(table))
            for row in pq.read_table(path.removeprefix("file://")).to_pylist()]
    return sorted(rows, key=lambda r: (r[key], str(r)))


def as_pyiceberg_scans(rows: list[dict]) -> list[dict]:
    """Documents rows as pyiceberg's scan returns them: null lists of structs as []
    (apache/iceberg-python#3833, see the test below)."""
    def tokens(row):
        return [{**t, "top": t["top"] if t["top"] is not None else []} for t in row["tokens"]]
    return [{**row, "tokens": tokens(row) if row["tokens"] is not None else [],
             "entities": row["entities"] if row["entities"] is not None else []}
            for row in rows]


def file_paths(table) -> set[str]:
    return set(table.inspect.files().column("file_path").to_pylist())


def run_snapshots(table, run_id: str) -> list:
    return [s for s in table.snapshots() if s.summary[iceberg.RUN_ID] == run_id]


RUN1 = [("news-001", "Reuters reported from London on Tuesday ."),
        ("news-002", "Mary flew to Zürich and back to London"),
        ("news-003", "")]  # an empty document: status empty, no tokens, no mentions
RUN2_NEW = [("news-004", "Mary met Reuters in Zürich")]
RUN2_CHANGED = [("news-001", "Reuters reported from London on Wednesday , and Mary too .")]


def test_first_commit_creates_the_tables_and_reads_back_exactly_the_rows(lake, tmp_path):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")

    result = commit_run(lake, "nlp", "run1", changes(files), {"seqlab.model": "ner"})

    assert result["run_id"] == "run1"
    for name in ("documents", "mentions", "aggregates"):
        info = result["tables"][name]
        assert info["status"] == "committed" and info["operation"] == "append"
        assert info["added_files"] == info["total_files"] == 1
        assert info["added_records"] == info["total_records"] == len(out.rows[files[name]])
        table = catalog().load_table(f"nlp.{name}")
        assert table.spec().is_unpartitioned()
        assert table.metadata.name_mapping() is not None
        # pyiceberg's own retry is off only for seqlab's transaction, not in the table
        assert "commit.retry.num-retries" not in table.properties
        assert file_paths(table) == {files[name]}
        (snapshot,) = table.snapshots()
        assert snapshot.snapshot_id == info["snapshot_id"]
        assert snapshot.summary[iceberg.RUN_ID] == "run1"
        assert snapshot.summary["seqlab.model"] == "ner"
    documents = catalog().load_table("nlp.documents")
    expected = sorted(out.rows[files["documents"]], key=lambda r: r["doc_id"])
    assert file_rows(documents) == expected
    # nested list<struct> with required fields, read through the name mapping
    assert scan_rows(documents) == as_pyiceberg_scans(expected)
    assert documents.scan().to_arrow().num_rows == 3
    tokens = documents.schema().find_field("tokens")
    assert tokens.required is False and tokens.field_type.element_required is True
    assert documents.schema().find_field("tokens.element.top.element.score").required
    mentions = scan_rows(catalog().load_table("nlp.mentions"), key="start_char")
    assert mentions == sorted(out.rows[files["mentions"]], key=lambda r: (r["start_char"], str(r)))
    assert len(mentions) == 5


def test_a_second_run_replaces_what_it_supersedes_in_the_same_snapshot(lake, tmp_path):
    out = Output(tmp_path / "out")
    first = out.land_run("run1", RUN1[:1], "part-00000-0000000000")
    kept = out.land_run("run1", RUN1[1:], "part-00001-0000000000")
    one = commit_run(lake, "nlp", "run1", {
        t: TableChange(SCHEMAS[t], [first[t], kept[t]], []) for t in ("documents", "mentions")})
    # run 2: a new input file and a changed one, whose earlier part it supersedes
    new = out.land_run("run2", RUN2_NEW, "part-00002-0000000000")
    changed = out.land_run("run2", RUN2_CHANGED, "part-00000-0000000000")
    two = commit_run(lake, "nlp", "run2", {
        t: TableChange(SCHEMAS[t], [new[t], changed[t]], [first[t]])
        for t in ("documents", "mentions")})

    for name in ("documents", "mentions"):
        info = two["tables"][name]
        assert info["status"] == "committed" and info["operation"] == "overwrite"
        assert (info["added_files"], info["removed_files"], info["total_files"]) == (2, 1, 3)
        table = catalog().load_table(f"nlp.{name}")
        live = {kept[name], new[name], changed[name]}
        assert file_paths(table) == live
        assert len(table.snapshots()) == 2
        assert info["total_records"] == len(out.rows_of(live))
        # the first snapshot still reads as run 1 left it
        before = table.scan(snapshot_id=one["tables"][name]["snapshot_id"]).to_arrow()
        assert before.num_rows == len(out.rows_of([first[name], kept[name]]))
    documents = scan_rows(catalog().load_table("nlp.documents"))
    assert [d["doc_id"] for d in documents] == ["news-001", "news-002", "news-003", "news-004"]
    expected = sorted(out.rows_of([kept["documents"], new["documents"], changed["documents"]]),
                      key=lambda r: r["doc_id"])
    assert file_rows(catalog().load_table("nlp.documents")) == expected
    assert documents == as_pyiceberg_scans(expected)
    assert documents[0]["run_id"] == "run2" and "Wednesday" in documents[0]["text"]
    mentions = catalog().load_table("nlp.mentions").scan().to_arrow().to_pylist()
    assert sorted((m["doc_id"], m["start_char"]) for m in mentions) == sorted(
        (m["doc_id"], m["start_char"])
        for m in out.rows_of([kept["mentions"], new["mentions"], changed["mentions"]]))


def test_a_run_without_entities_commits_its_empty_parts(lake, tmp_path):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", [("memo-1", "nothing to see here")], "part-00000-0000000000")
    assert out.rows[files["mentions"]] == out.rows[files["aggregates"]] == []

    result = commit_run(lake, "nlp", "run1", changes(files))

    for name in ("mentions", "aggregates"):
        assert result["tables"][name]["status"] == "committed"
        assert result["tables"][name]["total_records"] == 0
        table = catalog().load_table(f"nlp.{name}")
        assert file_paths(table) == {files[name]}
        assert table.scan().to_arrow().num_rows == 0
    assert result["tables"]["documents"]["total_records"] == 1


def test_a_table_the_run_leaves_alone_gets_no_snapshot(lake, tmp_path):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")
    commit_run(lake, "nlp", "run1", changes(files))
    result = commit_run(lake, "nlp", "run2", {
        "documents": TableChange(DOCUMENTS, [], []),
        "aggregates": TableChange(AGGREGATES, [out.land_run("run2", RUN2_NEW, "p")["aggregates"]],
                                  [])})
    assert result["tables"]["documents"] == {"table": "nlp.documents", "status": "unchanged"}
    assert len(catalog().load_table("nlp.documents").snapshots()) == 1
    assert len(catalog().load_table("nlp.aggregates").snapshots()) == 2


def test_committing_a_run_again_commits_nothing(lake, tmp_path):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")
    first = commit_run(lake, "nlp", "run1", changes(files))

    again = commit_run(lake, "nlp", "run1", changes(files))

    for name in ("documents", "mentions", "aggregates"):
        table = catalog().load_table(f"nlp.{name}")
        assert len(table.snapshots()) == 1
        assert file_paths(table) == {files[name]}
        assert again["tables"][name]["status"] == "already_committed"
        assert again["tables"][name]["snapshot_id"] == first["tables"][name]["snapshot_id"]
        assert again["tables"][name]["added_records"] == first["tables"][name]["added_records"]


def test_a_rerun_after_a_crash_between_tables_commits_only_what_is_missing(lake, tmp_path):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")
    commit_run(lake, "nlp", "run1", changes(files, only=("documents",)))  # then it crashed

    rerun = commit_run(lake, "nlp", "run1", changes(files))

    assert {n: t["status"] for n, t in rerun["tables"].items()} == {
        "documents": "already_committed", "mentions": "committed", "aggregates": "committed"}
    for name in ("documents", "mentions", "aggregates"):
        table = catalog().load_table(f"nlp.{name}")
        assert len(table.snapshots()) == 1 and file_paths(table) == {files[name]}


def test_pyiceberg_scans_read_a_null_list_of_structs_as_an_empty_list(lake, tmp_path):
    # apache/iceberg-python#3833: pyiceberg's scan rebuilds list<struct> arrays without
    # their validity, so a null ``tokens[].top`` (no --top-k) reads as []; the files hold the
    # null and readers of the files themselves (Spark, Trino, DuckDB, pyarrow) see it. When
    # this fails, pyiceberg is fixed: drop ``as_pyiceberg_scans``.
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1[:2], "part-00000-0000000000")  # news-002: no top
    commit_run(lake, "nlp", "run1", changes(files, only=("documents",)))
    table = catalog().load_table("nlp.documents")
    assert {t["top"] is None for t in file_rows(table)[1]["tokens"]} == {True}
    scanned = scan_rows(table)
    assert {t["top"] == [] for t in scanned[1]["tokens"]} == {True}
    assert scanned[0]["tokens"][0]["top"] == file_rows(table)[0]["tokens"][0]["top"]


def conflict_once(monkeypatch, before_first_commit) -> list[str]:
    """Make the first commit of the test lose a race: ``before_first_commit`` commits as
    another writer would, and then the real commit meets the changed table."""
    original = SqlCatalog.commit_table
    calls: list[str] = []

    def commit_table(self, table, requirements, updates):
        calls.append(".".join(table.name()))
        if len(calls) == 1:
            before_first_commit()
        return original(self, table, requirements, updates)

    monkeypatch.setattr(SqlCatalog, "commit_table", commit_table)
    return calls


def test_a_commit_that_meets_a_concurrent_commit_is_retried_once(lake, tmp_path, monkeypatch):
    out = Output(tmp_path / "out")
    first = out.land_run("run1", RUN1, "part-00000-0000000000")
    commit_run(lake, "nlp", "run1", changes(first, only=("documents",)))
    ours = out.land_run("run2", RUN2_NEW, "part-00002-0000000000")
    theirs = out.land("documents", "run3", "part-00009-0000000000",
                      [document("other-1", "London calling", "run3", top=False)])

    def other_writer():
        catalog().load_table("nlp.documents").add_files([theirs])

    calls = conflict_once(monkeypatch, other_writer)
    result = commit_run(lake, "nlp", "run2", changes(ours, only=("documents",)))

    info = result["tables"]["documents"]
    assert info["status"] == "committed" and info["attempts"] == 2
    assert len(calls) == 3  # ours (lost), theirs, ours again
    table = catalog().load_table("nlp.documents")
    assert len(run_snapshots(table, "run2")) == 1
    assert len(table.snapshots()) == 3
    assert file_paths(table) == {first["documents"], ours["documents"], theirs}
    assert [d["doc_id"] for d in scan_rows(table)] == [
        "news-001", "news-002", "news-003", "news-004", "other-1"]


def test_a_conflict_with_another_attempt_of_the_same_run_commits_it_once(lake, tmp_path,
                                                                         monkeypatch):
    # two attempts of one run racing: when ours loses, the run is already in the table, and
    # the retry must not append the same files again
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")

    calls = conflict_once(monkeypatch, lambda: catalog().load_table("nlp.mentions").add_files(
        [files["mentions"]], snapshot_properties={iceberg.RUN_ID: "run1"}))
    result = commit_run(lake, "nlp", "run1", changes(files, only=("mentions",)))

    assert result["tables"]["mentions"]["status"] == "already_committed"
    assert result["tables"]["mentions"]["attempts"] == 2
    assert len(calls) == 2
    table = catalog().load_table("nlp.mentions")
    assert len(table.snapshots()) == 1
    assert table.scan().to_arrow().num_rows == len(out.rows[files["mentions"]])


def test_conflicts_that_never_end_are_a_run_error_and_leave_the_table(lake, tmp_path,
                                                                      monkeypatch):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")
    iceberg.ensure_namespace(catalog(), "nlp")
    iceberg.ensure_table(catalog(), "nlp.documents", DOCUMENTS)

    def always_conflicts(self, table, requirements, updates):
        raise CommitFailedException("Table has been updated by another process")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SqlCatalog, "commit_table", always_conflicts)
        with pytest.raises(RunError) as error:
            commit_run(lake, "nlp", "run1", changes(files, only=("documents",)))

    assert f"failed {iceberg.ATTEMPTS} times" in error.value.message
    assert "rerun the same command" in error.value.fix
    table = catalog().load_table("nlp.documents")
    assert table.snapshots() == [] and table.scan().to_arrow().num_rows == 0


def test_a_missing_catalog_is_a_config_error_naming_how_to_configure_it(lake):
    with pytest.raises(ConfigError) as error:
        commit_run("warehouse", "nlp", "run1", {})
    assert "no Iceberg catalog named 'warehouse'" in error.value.message
    assert "PYICEBERG_CATALOG__WAREHOUSE__URI" in error.value.fix
    assert ".pyiceberg.yaml" in error.value.fix


def test_a_misconfigured_catalog_is_a_config_error(lake, monkeypatch, tmp_path):
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__URI", "mysql://nowhere/lake")
    with pytest.raises(ConfigError) as error:
        commit_run(lake, "nlp", "run1", {})
    assert "mysql://nowhere/lake" in error.value.message
    assert "PYICEBERG_CATALOG__LAKE__URI" in error.value.fix


def test_the_catalog_can_come_from_pyiceberg_yaml(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pyiceberg.yaml").write_text(
        f"catalog:\n  prod:\n    uri: sqlite:///{tmp_path}/prod.db\n"
        f"    warehouse: {(tmp_path / 'wh').as_uri()}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PYICEBERG_HOME", raising=False)
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")
    result = commit_run("prod", "nlp", "run1", changes(files, only=("aggregates",)))
    assert result["tables"]["aggregates"]["status"] == "committed"
    assert iceberg.load("prod").load_table("nlp.aggregates").scan().to_arrow().num_rows == 4


def test_superseding_a_file_the_table_does_not_hold_is_refused(lake, tmp_path):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")
    commit_run(lake, "nlp", "run1", changes(files, only=("documents",)))
    new = out.land_run("run2", RUN2_NEW, "part-00002-0000000000")
    stranger = url_of(tmp_path / "out" / "documents" / "never-committed.parquet")

    with pytest.raises(RunError, match="does not hold 1 of the files") as error:
        commit_run(lake, "nlp", "run2", {"documents": TableChange(
            DOCUMENTS, [new["documents"]], [stranger])})

    assert "inspect.files()" in error.value.fix
    assert len(catalog().load_table("nlp.documents").snapshots()) == 1


def test_a_file_of_another_schema_is_a_config_error(lake, tmp_path):
    out = Output(tmp_path / "out")
    files = out.land_run("run1", RUN1, "part-00000-0000000000")
    commit_run(lake, "nlp", "run1", changes(files, only=("aggregates",)))
    # a mentions part committed to the aggregates table
    with pytest.raises(ConfigError, match="does not fit the table"):
        commit_run(lake, "nlp", "run2", {"aggregates": TableChange(
            AGGREGATES, [files["mentions"]], [])})
    assert len(catalog().load_table("nlp.aggregates").snapshots()) == 1


@pytest.mark.parametrize("tables, message", [
    ({"entities": TableChange(MENTIONS, ["file:///a.parquet"], [])}, "unknown tables"),
    ({"mentions": TableChange(MENTIONS, ["file:///a.parquet"] * 2, [])}, "listed twice"),
    ({"mentions": TableChange(MENTIONS, ["file:///a.parquet"], ["file:///a.parquet"])},
     "both added and removed"),
])
def test_changes_that_cannot_be_committed_are_refused_before_the_catalog(tables, message):
    with pytest.raises(ConfigError, match=message):
        commit_run("not-even-configured", "nlp", "run1", tables)


def test_the_run_id_cannot_be_overridden_by_properties(lake):
    with pytest.raises(ConfigError, match="leave seqlab.run_id out"):
        commit_run(lake, "nlp", "run1", {}, {iceberg.RUN_ID: "run0"})
