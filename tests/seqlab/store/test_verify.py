"""seqlab.store.verify and ``seqlab verify``: a run's and a table's files against their
manifests, each kind of damage found and named, unlisted files quarantined, never deleted."""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from seqlab.cli.main import main
from seqlab.errors import OutputError
from seqlab.run.finish import finish_run
from seqlab.store.outdir import QUARANTINE, OutputDir
from seqlab.store.verify import verify
from tests import require
from tests.seqlab import drive, make_plan, rows, write_parquet


def annotate(input: Path, output: Path, model: Path, **options) -> dict:
    plan = make_plan(input, output, model, id_column="id", **options)
    drive(plan)
    return finish_run(plan, engine="test")


@pytest.fixture
def single(tmp_path, ner_model) -> Path:
    write_parquet(tmp_path / "in" / "a.parquet", rows(6, "a"))
    write_parquet(tmp_path / "in" / "b.parquet", rows(5, "b"))
    manifest = annotate(tmp_path / "in", tmp_path / "out", ner_model)
    assert manifest["counts"]["entities"] > 0  # the checks below need mentions
    return tmp_path / "out"


def listed(out: Path, table: str) -> list[dict]:
    return json.loads((out / "_manifest.json").read_text())["tables"][table]


def rewrite(out: Path, path: str, table) -> None:
    """Replace a listed part with ``table`` and list it as the manifest would: the damage
    then lies in the rows, not in the file's size or hash."""
    pq.write_table(table, out / path)
    manifest = json.loads((out / "_manifest.json").read_text())
    data = (out / path).read_bytes()
    for entry in manifest["tables"][path.split("/")[0]]:
        if entry["path"] == path:
            entry.update(rows=table.num_rows, bytes=len(data),
                         sha256=hashlib.sha256(data).hexdigest())
    (out / "_manifest.json").write_text(json.dumps(manifest))


def test_a_clean_run_verifies(single, capsys):
    result = verify(str(single))
    assert result.ok and result.files == sum(len(listed(single, t)) for t in
                                             ("documents", "mentions", "aggregates"))
    assert main(["verify", str(single)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_missing_truncated_and_changed_files_are_named(single):
    documents = [p["path"] for p in listed(single, "documents")]
    (single / documents[0]).unlink()
    data = (single / documents[1]).read_bytes()
    (single / documents[1]).write_bytes(data[: len(data) // 2])
    mention = listed(single, "mentions")[0]["path"]
    data = bytearray((single / mention).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (single / mention).write_bytes(bytes(data))
    problems = {f.path: f.problem for f in verify(str(single)).findings}
    assert problems[documents[0]] == "listed by the manifest but missing"
    assert "bytes, the manifest lists" in problems[documents[1]]
    assert problems[mention] == "its sha256 differs from the manifest's"
    quick = {f.path: f.problem for f in verify(str(single), quick=True).findings}
    assert "sha256" not in quick.get(mention, "")  # sizes only: the hash is not read


def test_unlisted_files_are_found_and_quarantined_never_deleted(single, capsys):
    stray = single / "mentions" / ".tmp-0a1b.parquet"
    stray.write_bytes(b"left by a crashed write")
    assert main(["verify", str(single)]) == 1
    assert "mentions/.tmp-0a1b.parquet: no manifest lists it" in capsys.readouterr().out
    result = verify(str(single), repair=True)
    assert result.quarantined == [f"{QUARANTINE}/mentions/.tmp-0a1b.parquet"]
    assert not stray.exists()
    assert (single / QUARANTINE / "mentions" / ".tmp-0a1b.parquet").read_bytes() == \
        b"left by a crashed write"
    assert verify(str(single)).ok


def test_mentions_that_name_no_documents_row_are_found(single):
    mentions = {p["path"] for p in listed(single, "mentions") if p["rows"]}
    path = sorted(mentions)[0]
    documents = "documents/" + path.split("/", 1)[1]
    kept = pq.read_table(single / documents)
    named = set(pq.read_table(single / path).column("doc_id").to_pylist())
    rewrite(single, documents, kept.filter([d not in named for d in
                                            kept.column("doc_id").to_pylist()]))
    [finding] = [f for f in verify(str(single)).findings if f.path == path]
    assert f"not in {documents}" in finding.problem


def test_aggregates_that_differ_from_the_mentions_are_found(single):
    [part] = [p["path"] for p in listed(single, "aggregates")]
    sums = pq.read_table(single / part)
    counts = sums.column("mentions").to_pylist()
    counts[0] += 1
    rewrite(single, part, sums.set_column(sums.schema.get_field_index("mentions"),
                                          "mentions", [counts]))
    [finding] = verify(str(single)).findings
    first = sums.slice(0, 1).to_pylist()[0]
    assert finding.path == "aggregates/"
    assert f"{first['label']} {first['text']!r}: mentions {counts[0]} (the mentions give " \
        f"{counts[0] - 1})" in finding.problem


def test_an_incremental_table_verifies_with_its_replaced_files_set_aside(table):
    second = OutputDir(str(table)).manifest()
    assert second.incremental.superseded  # the changed file's first parts moved aside
    result = verify(str(table))
    assert result.ok and len(result.runs) == 2


def test_repair_waits_for_an_unfinished_run(tmp_path, ner_model, single):
    (single / "documents" / "stray.parquet").write_bytes(b"x")
    (single / "_progress").mkdir()
    (single / "_progress" / "_run.json").write_text(json.dumps(
        {"run_id": "r2", "fingerprint": {}, "processed_at": "2026-12-05T00:00:00+00:00",
         "attempts": []}))
    result = verify(str(single))
    assert result.unfinished == "r2"
    assert "the unfinished run r2 may be writing it" in result.findings[0].problem
    with pytest.raises(OutputError, match="unfinished run"):
        verify(str(single), repair=True)
    assert (single / "documents" / "stray.parquet").exists()


def test_an_output_without_a_finished_run_is_refused(tmp_path):
    with pytest.raises(OutputError, match="holds no finished seqlab annotate run"):
        verify(str(tmp_path))


def test_an_iceberg_snapshot_that_differs_from_the_live_files_is_found(tmp_path, ner_model,
                                                                     lake):
    require("sqlalchemy", "iceberg")
    from seqlab import schema
    from seqlab.store import iceberg

    source = tmp_path / "in"
    write_parquet(source / "a.parquet", rows(4, "a"))
    write_parquet(source / "b.parquet", rows(3, "b"))
    out = tmp_path / "table"
    options = {"incremental": True, "table_format": "iceberg", "catalog": lake}
    annotate(source, out, ner_model, run_date="2026-12-01", **options)
    write_parquet(source / "b.parquet", rows(2, "b", start=10))
    second = annotate(source, out, ner_model, run_date="2026-12-02", **options)
    assert all((out / p).exists() for p in second["incremental"]["superseded"])
    assert verify(str(out)).ok  # replaced files stay for older snapshots: listed, not live
    stray = out / "mentions" / "extra.parquet"
    pq.write_table(schema.MENTIONS.empty_table(), stray)
    iceberg.commit_run(lake, "seqlab", "by-hand", {"mentions": iceberg.TableChange(
        schema.MENTIONS, [f"file://{stray}"])})
    problems = {f.path: f.problem for f in verify(str(out)).findings}
    assert "no manifest lists it" in problems["mentions/extra.parquet"]
    assert "in the current snapshot of the Iceberg table seqlab.mentions, but not live" in \
        problems[f"file://{stray}"]


@pytest.fixture
def table(tmp_path, ner_model) -> Path:
    source = tmp_path / "in"
    write_parquet(source / "a.parquet", rows(4, "a"))
    write_parquet(source / "b.parquet", rows(3, "b"))
    out = tmp_path / "table"
    annotate(source, out, ner_model, incremental=True, run_date="2026-12-01")
    write_parquet(source / "b.parquet", rows(2, "b", start=10))  # changed
    annotate(source, out, ner_model, incremental=True, run_date="2026-12-02")
    assert verify(str(out)).ok
    return out


def rewrite_index(out: Path, change) -> str:
    """Write the index again, changed by ``change(index)``, as the current version."""
    from seqlab.store.index import read_index, version_path, write_index
    from seqlab.store.outdir import OutputDir

    index = read_index(OutputDir(str(out)))
    change(index)
    index.version -= 1  # the same version, rewritten
    return version_path(write_index(OutputDir(str(out)), index, index.last_run))


def test_an_index_that_differs_from_the_run_manifests_is_found(table):
    def lose_and_revive(index):
        index.drop("a.parquet")
        index.inputs["b.parquet"].run_id = "R0"

    version = rewrite_index(table, lose_and_revive)
    problems = {f.problem for f in verify(str(table)).findings if f.path == version}
    assert problems == {"a.parquet: input held by the run manifests, not by the index",
                        f"b.parquet: the index has run_id 'R0', the run manifests "
                        f"{json.loads((table / '_runs' / 'latest.json').read_text())['run_id']!r}"}


def test_a_live_file_the_index_lists_is_checked_against_its_sha256(table):
    from seqlab.store.parts import PartInfo

    damaged = []

    def damage(index):
        path = min(p for p in index.files if p.startswith("documents/"))
        kind, info = index.files[path]
        index.files[path] = (kind, PartInfo(path, info.rows, info.bytes, "0" * 64))
        damaged.append(path)

    rewrite_index(table, damage)
    problems = {f.path: f.problem for f in verify(str(table)).findings}
    assert problems[damaged[0]] == "its sha256 differs from the manifest's"
    (table / next(iter(sorted(table.glob("documents/*/*.parquet"))))).unlink()
    assert "listed by the manifest but missing" in {f.problem for f in verify(str(table)).findings}
