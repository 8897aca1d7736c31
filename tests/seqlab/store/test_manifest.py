"""seqlab.store.manifest: the manifest and run state of real runs read back and written again
byte for byte, unknown keys kept, and a damaged file refused naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from seqlab.errors import OutputError
from seqlab.run.finish import finish_run
from seqlab.store import runfiles
from seqlab.store.manifest import Manifest, RunState, read_manifest, read_run_state
from seqlab.store.outdir import OutputDir, check_resumable
from tests.seqlab import drive, make_plan, rows, truncate, write_parquet

FS = fsspec.filesystem("file")
TAGGING = {"windows": 3, "padded_tokens": 96, "content_tokens": 40, "precision": "fp32"}


def finished(input: Path, output: Path, model: Path, **options) -> dict:
    """A real run of the tiny model over ``input``, ended by ``finish_run``."""
    plan = make_plan(input, output, model, id_column="id", **options)
    drive(plan)
    return finish_run(plan, engine="test", extra={"tagging": TAGGING})


@pytest.fixture(scope="module")
def single(tmp_path_factory, ner_model) -> Path:
    """A single run's OUTPUT: two input files and a truncated one (failed_inputs)."""
    root = tmp_path_factory.mktemp("single")
    write_parquet(root / "in" / "a.parquet", rows(3, "a"))
    write_parquet(root / "in" / "b.parquet", rows(5, "b"))
    truncate(write_parquet(root / "in" / "c.parquet", rows(4, "c")))
    finished(root / "in", root / "out", ner_model)
    return root / "out"


@pytest.fixture(scope="module")
def table(tmp_path_factory, ner_model) -> Path:
    """An incremental table after two runs, the second annotating a changed file again."""
    root = tmp_path_factory.mktemp("table")
    write_parquet(root / "in" / "a.parquet", rows(3, "a"))
    finished(root / "in", root / "out", ner_model, incremental=True, run_date="2026-12-01")
    write_parquet(root / "in" / "a.parquet", rows(4, "a"))
    write_parquet(root / "in" / "b.parquet", rows(2, "b"))
    finished(root / "in", root / "out", ner_model, incremental=True, run_date="2026-12-02")
    return root / "out"


def manifests(single: Path, table: Path) -> list[Path]:
    return [single / "_manifest.json", *sorted(table.glob("_runs/*/manifest.json"))]


def written(data: dict) -> str:
    """The JSON as OutputDir.write_json writes it."""
    return json.dumps(data, indent=2, default=str) + "\n"


def test_real_manifests_round_trip_byte_for_byte(single, table):
    paths = manifests(single, table)
    assert len(paths) == 3
    for path in paths:
        text = path.read_text()
        manifest = read_manifest(FS, str(path))
        if runfiles.LISTING in json.loads(text):  # an incremental run's: its files in Parquet
            assert written(runfiles.split(manifest.to_dict())[0]) == text
        else:
            assert written(manifest.to_dict()) == text
            assert written(Manifest.from_dict(json.loads(text)).to_dict()) == text
    one = read_manifest(FS, str(paths[0]))
    assert not one.complete and [f.fragment for f in one.failed_inputs] == ["c.parquet"]
    assert one.rows.read == one.rows.written == 8 and one.extra == {"tagging": TAGGING}
    assert one.incremental is None and one.run_date is None and "run_date" not in one.to_dict()
    assert [m.key for m in one.models] == ["ner"] and one.model.labels[0] == "O"
    assert one.files() == [p for parts in json.loads(paths[0].read_text())["tables"].values()
                           for p in (part["path"] for part in parts)]
    second = max((read_manifest(FS, str(p)) for p in paths[1:]), key=lambda m: m.run_date)
    assert second.run_date == "2026-12-02" and second.incremental.replaced == ("a.parquet",)
    assert second.incremental.superseded and all(i.identity for i in second.inputs)
    assert list(second.to_dict())[-4:] == ["tagging", "run_date", "table", "incremental"]


def test_finish_run_returns_what_the_file_holds(tmp_path, ner_model):
    write_parquet(tmp_path / "in" / "a.parquet", rows(3, "a"))
    manifest = finished(tmp_path / "in", tmp_path / "out", ner_model)
    assert written(manifest) == (tmp_path / "out" / "_manifest.json").read_text()
    assert manifest["rows"] == {"in": 3, "out": 3} and manifest["complete"]
    assert OutputDir(str(tmp_path / "out")).manifest() == Manifest.from_dict(manifest)


def test_the_run_state_round_trips(single):
    path = single / "_progress" / "_run.json"  # kept: its failed input waits for a rerun
    state = read_run_state(FS, str(path))
    assert written(state.to_dict()) == path.read_text()
    assert state.attempts[0].engine == "local" and "model" in state.fingerprint
    assert OutputDir(str(single)).state() == state


def test_unknown_keys_are_kept_and_nested_ones_tolerated(single):
    data = json.loads((single / "_manifest.json").read_text())
    data["lineage"] = {"job": "nightly"}
    data["rows"]["skipped"] = 0
    data["inputs"][0]["parts"]["documents"][0]["crc32c"] = "AAAAAA=="
    manifest = Manifest.from_dict(data)
    assert manifest.extra == {"tagging": TAGGING, "lineage": {"job": "nightly"}}
    assert manifest.to_dict()["lineage"] == {"job": "nightly"}
    assert manifest.rows.written == 8
    state = json.loads((single / "_progress" / "_run.json").read_text())
    assert RunState.from_dict({**state, "lease": "w-1"}).to_dict()["lease"] == "w-1"


def test_a_manifest_from_before_models_reads_and_writes_back_without_them(single):
    data = json.loads((single / "_manifest.json").read_text())
    del data["models"]
    manifest = Manifest.from_dict(data)
    assert manifest.models is None and manifest.to_dict() == data


def damaged(single: Path, tmp_path: Path, change) -> Path:
    """A copy of the single run's OUTPUT whose manifest ``change`` edits (text -> text)."""
    out = tmp_path / "out"
    out.mkdir()
    path = out / "_manifest.json"
    path.write_text(change((single / "_manifest.json").read_text()))
    return path


def test_a_truncated_manifest_names_the_file(single, tmp_path):
    path = damaged(single, tmp_path, lambda text: text[: len(text) // 2])
    for read in (lambda: read_manifest(FS, str(path)), OutputDir(str(path.parent)).manifest,
                 lambda: check_resumable(OutputDir(str(path.parent)), {}, overwrite=False)):
        with pytest.raises(OutputError, match="is not readable JSON") as error:
            read()
        assert str(path) in error.value.message and "restore the file" in error.value.fix


def edited(key_path: str, value: object = None, delete: bool = False):
    """An edit of a manifest's text: the field at ``a.b.0.c`` set to ``value`` or deleted."""
    def change(text: str) -> str:
        data = json.loads(text)
        node = data
        *parents, last = key_path.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if delete:
            del node[last]
        else:
            node[last] = value
        return json.dumps(data, indent=2)

    return change


@pytest.mark.parametrize("key_path, field, delete, value, found", [
    ("rows.out", "rows.out", True, None, "has no field 'rows.out'"),
    ("tables", "tables", True, None, "has no field 'tables'"),
    ("inputs.0.parts.documents.0.sha256", "inputs[0].parts.documents[0].sha256", True, None,
     "has no field"),
    ("complete", "complete", False, "yes", "is a string, not true or false"),
    ("attempts.0.started_at", "attempts[0].started_at", False, 5, "is an integer, not a string"),
    ("counts.entities", "counts.entities", False, 1.5, "is a number, not an integer"),
])
def test_a_missing_or_mistyped_field_names_the_file_and_the_field(single, tmp_path, key_path,
                                                                  field, delete, value, found):
    path = damaged(single, tmp_path, edited(key_path, value, delete))
    with pytest.raises(OutputError) as error:
        OutputDir(str(path.parent)).manifest()
    message = error.value.message
    assert str(path) in message and repr(field) in message and found in message
    assert error.value.fix and "--overwrite" in error.value.fix


def test_a_damaged_run_state_names_the_file_and_the_field(single, tmp_path):
    out = OutputDir(str(tmp_path / "out"))
    state = json.loads((single / "_progress" / "_run.json").read_text())
    del state["fingerprint"]
    path = tmp_path / "out" / "_progress" / "_run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(state))
    with pytest.raises(OutputError, match=r"has no field 'fingerprint'") as error:
        check_resumable(out, {}, overwrite=False)
    assert str(path) in error.value.message and "--overwrite" in error.value.fix
    path.write_text("{\"run_id\": ")
    with pytest.raises(OutputError, match="is not readable JSON"):
        out.state()
    path.write_text(json.dumps({**state, "fingerprint": {}, "attempts": {}}))
    with pytest.raises(OutputError, match=r"field 'attempts' is an object, not a list"):
        out.state()
