"""The state an incremental table's history leaves, built synthetically, and the time to plan a
no-op run over it.

``write_table_state(root, inputs, runs)`` writes what ``runs`` daily runs over ``inputs`` input
files leave: the first run annotates every file, each later run annotates ``changed`` of them
again (superseding their earlier files), so the live table is the same ``inputs`` files after 2
runs as after 365 while the history grows. It writes the run manifests (with their files in
the JSON, as every seqlab wrote them before ``files.parquet``, or split), the table's index
(``_index/``), ``_runs/latest.json`` and the live files themselves (empty: planning lists them,
never reads them). ``plan_seconds(state)`` times ``seqlab.store.incremental.plan_increment``
for a run that finds every file unchanged.

    python benchmarks/table_state.py --inputs 3000 --runs 2,30,365
    python benchmarks/table_state.py --inputs 3000 --runs 2,365 --manifests json --no-index

Whichever seqlab is first on the path is measured (``PYTHONPATH=/path/to/other/checkout``,
run from outside the repository), so an older checkout that reads only JSON manifests and has
no index can be timed on the same state (``--manifests json --no-index``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

TABLES = ("documents", "mentions", "aggregates")
CONFIG_KEY = "0123456789abcdef"
TABLE = {"documents_schema": ["doc_id: string", "text: string"], "table_format": "parquet"}


class TableState:
    """What ``write_table_state`` wrote: where, and what a no-op run gives planning. (A plain
    class: the benchmarks are also loaded as files, outside ``sys.modules``, where a dataclass
    cannot resolve its annotations.)"""

    def __init__(self, root: str, inputs: int, runs: int) -> None:
        self.root, self.inputs, self.runs = root, inputs, runs
        self.identities: dict[str, tuple[int, str]] = {}  # input -> identity
        self.manifest_bytes = 0  # the run manifests' JSON and Parquet, all runs
        self.next_date = ""

    def fragments(self) -> list:
        """The input files as ``seqlab.run.sources.discover`` would find them, unchanged."""
        from seqlab.run.sources import Fragment

        return [Fragment(i, f"/corpus/{name}", name, "parquet", identity)
                for i, (name, identity) in enumerate(sorted(self.identities.items()))]


def write_table_state(root: str | Path, inputs: int, runs: int, changed: int | None = None,
                      manifests: str = "split", index: bool = True,
                      first_date: str = "2026-01-01") -> TableState:
    """Write the state of an incremental table after ``runs`` daily runs over ``inputs`` input
    files, each run after the first annotating ``changed`` files again (default 1% of them).
    ``manifests``: "split" (summary JSON and ``files.parquet``) or "json" (files in the JSON);
    ``index``: also write the table's index, as the last run's end writes it."""
    root = Path(root)
    changed = max(1, inputs // 100) if changed is None else changed
    state = TableState(str(root), inputs, runs)
    live: dict[str, list[dict]] = {}
    generation: dict[str, int] = {}
    day = date.fromisoformat(first_date)
    for number in range(runs):
        run_date = (day + timedelta(days=number)).isoformat()
        run_id = f"{run_date.replace('-', '')}T000000Z-{number:08x}"
        if number == 0:
            todo = [f"f{i:06d}.parquet" for i in range(inputs)]
        else:
            start = (number - 1) * changed
            todo = [f"f{(start + k) % inputs:06d}.parquet" for k in range(changed)]
        superseded, entries, replaced = [], [], []
        for position, name in enumerate(todo):
            superseded += [p["path"] for p in live.get(name, [])]
            replaced += [name] if name in live else []
            generation[name] = generation.get(name, -1) + 1
            state.identities[name] = (1000 + int(name[1:7]), f"v{generation[name]}")
            parts = {t: [_part(t, run_date, run_id, position)] for t in TABLES}
            live[name] = [p for listed in parts.values() for p in listed]
            entries.append({"fragment": name, "rows": 1, "parts": parts,
                            "identity": list(state.identities[name])})
        manifest = _manifest(run_id, run_date, entries, replaced, sorted(superseded),
                             inputs - len(todo))
        state.manifest_bytes += _write_manifest(root, manifest, manifests)
    _write_live(root, live)
    _write_latest(root, manifest)
    if index:
        _write_index(root, live, state, manifest)
    state.next_date = (day + timedelta(days=runs)).isoformat()
    return state


def _part(table: str, run_date: str, run_id: str, position: int) -> dict:
    row = "" if table == "aggregates" else "-0000000000"
    path = f"{table}/run_date={run_date}/part-{run_id}-{position:05d}{row}.parquet"
    return {"path": path, "rows": 1, "bytes": 0, "sha256": "0" * 64}


def _manifest(run_id: str, run_date: str, entries: list[dict], replaced: list[str],
              superseded: list[str], unchanged: int) -> dict:
    tables = {t: [p for e in entries for p in e["parts"][t]] for t in TABLES}
    finished = f"{run_date}T01:00:00+00:00"
    return {
        "run_id": run_id, "seqlab_version": "bench", "schema_version": 2, "complete": True,
        "engine": "local", "attempts": [{"engine": "local", "started_at": finished}],
        "model": {"name": "bench", "revision": "r", "scheme": "iob2", "labels": ["O"]},
        "config": {"model": "bench"}, "resume": {"must_match": [], "may_change": []},
        "processed_at": finished, "finished_at": finished, "elapsed_s": 1.0,
        "rows": {"in": len(entries), "out": len(entries)}, "counts": {},
        "inputs": entries, "failed_inputs": [], "tables": tables,
        "aggregates": tables["aggregates"], "run_date": run_date, "table": TABLE,
        "incremental": {"config_key": CONFIG_KEY, "unchanged": unchanged,
                        "replaced": sorted(replaced),
                        "pruned": [], "superseded": superseded},
    }


def _write_manifest(root: Path, manifest: dict, form: str) -> int:
    folder = root / "_runs" / manifest["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    if form == "split":
        import pyarrow.parquet as pq

        from seqlab.store import runfiles

        manifest, listing = runfiles.split(manifest)
        pq.write_table(listing, folder / runfiles.FILES, compression="zstd")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "_SUCCESS").touch()
    return sum(f.stat().st_size for f in folder.iterdir())


def _write_live(root: Path, live: dict[str, list[dict]]) -> None:
    for parts in live.values():
        for part in parts:
            path = root / part["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def _write_latest(root: Path, manifest: dict) -> None:
    (root / "_runs" / "latest.json").write_text(json.dumps({
        "run_id": manifest["run_id"], "run_date": manifest["run_date"], "complete": True,
        "manifest": f"_runs/{manifest['run_id']}/manifest.json",
        "finished_at": manifest["finished_at"]}))


def _write_index(root: Path, live: dict[str, list[dict]], state: TableState,
                 last: dict) -> None:
    from seqlab.store.index import Entry, TableIndex, write_index
    from seqlab.store.outdir import OutputDir
    from seqlab.store.parts import PartInfo

    index = TableIndex(version=state.runs - 1, last_run=last["run_id"])
    for name, parts in live.items():
        run_id = parts[0]["path"].split("part-")[1][:25]
        index.add(Entry(name, state.identities[name], run_id, CONFIG_KEY),
                  {p["path"].split("/")[0]: [PartInfo(p["path"], 1, 0, "0" * 64)]
                   for p in parts})
    write_index(OutputDir(str(root)), index, last["run_id"])


def plan_seconds(state: TableState, repeat: int = 3) -> float:
    """The median time to plan a run that finds every input file unchanged."""
    from seqlab.store.incremental import plan_increment
    from seqlab.store.outdir import OutputDir

    fragments = state.fragments()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        increment = plan_increment(OutputDir(state.root), fragments, CONFIG_KEY,
                                   state.next_date, False, TABLE)
        times.append(time.perf_counter() - started)
        assert not increment.inputs and increment.unchanged == state.inputs
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default="3000", help="live input files, comma-separated")
    parser.add_argument("--runs", default="2,365", help="daily runs, comma-separated")
    parser.add_argument("--changed", type=int, help="files each later run annotates again")
    parser.add_argument("--manifests", choices=["split", "json"], default="split")
    parser.add_argument("--no-index", dest="index", action="store_false")
    parser.add_argument("--repeat", type=int, default=3, help="plans timed (the median)")
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    import seqlab

    for inputs in (int(float(n)) for n in args.inputs.split(",")):
        for runs in (int(n) for n in args.runs.split(",")):
            with tempfile.TemporaryDirectory(dir=args.work) as scratch:
                started = time.perf_counter()
                state = write_table_state(Path(scratch) / "table", inputs, runs, args.changed,
                                          args.manifests, args.index)
                built = time.perf_counter() - started
                print(json.dumps({
                    "seqlab": os.path.dirname(seqlab.__file__), "inputs": inputs, "runs": runs,
                    "manifests": args.manifests, "index": args.index,
                    "manifest_mb": round(state.manifest_bytes / 1e6, 2),
                    "built_s": round(built, 1),
                    "plan_s": round(plan_seconds(state, args.repeat), 3)}),
                    flush=True)


if __name__ == "__main__":
    main()
