"""``seqlab verify``: check that an output (one run, or an incremental table) holds exactly
what its manifests say, and move what they do not list out of the way.

The checks, each reported as one finding naming the file:

- every live file exists with the size and sha256 its manifest lists (``quick``: sizes only);
  an incremental table's live files are those its index lists (``seqlab.store.index``);
- an incremental table's index equals the fold of its run manifests: the same input files,
  each with the identity, run, configuration and rows the manifests give it;
- no file in the table folders is left unlisted (a crashed write's temporary file, a part an
  interrupted run left, a file copied in by hand);
- the rows of every mentions and frames part name documents rows of the documents part they
  landed with (parts land in pairs under one part name);
- the aggregates hold exactly the sums the live mentions give (in integer score micro-units,
  as every engine sums them), and a single run's K aggregates files each hold only the keys
  of their bucket, once each;
- an Iceberg table's current snapshot holds exactly the table's live files.

``repair`` moves unlisted files to ``_quarantine/`` (their paths kept below it) and never
deletes a file. The references are checked one part pair at a time; the aggregate sums are
recomputed in one process, in memory that grows with the distinct (label, text) keys.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqlab import schema
from seqlab.errors import OutputError
from seqlab.stages import aggregate
from seqlab.store import incremental
from seqlab.store.index import TableIndex, compare, from_manifests, read_index, read_version
from seqlab.store.index import version_path as index_version_path
from seqlab.store.layout import MANIFEST, ROW_TABLES, TABLES
from seqlab.store.manifest import Manifest, Part, RunState
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import read_table

log = logging.getLogger(__name__)

SHOWN_KEYS = 5  # differing aggregate keys reported by name; the rest are counted
BUCKET_FILE = re.compile(r"^aggregates/part-(\d{5})\.parquet$")  # a single run's bucket file


@dataclass(frozen=True)
class Finding:
    """One thing that does not hold: the file (relative to the output root) and what."""

    path: str
    problem: str

    def line(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class Verification:
    """What ``verify`` checked and found."""

    url: str
    runs: list[str]  # the run ids whose manifests list the live files
    files: int  # live files checked
    findings: list[Finding] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    unfinished: str | None = None  # the run id of a run that has not ended, if any

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {"output": self.url, "ok": self.ok, "runs": self.runs, "files": self.files,
                "unfinished_run": self.unfinished,
                "findings": [{"path": f.path, "problem": f.problem} for f in self.findings],
                "quarantined": self.quarantined}


def verify(url: str, storage_options: dict | None = None, quick: bool = False,
           repair: bool = False) -> Verification:
    """Check the output at ``url``; with ``repair``, quarantine its unlisted files."""
    out = OutputDir(url, storage_options)
    manifests = _manifests(out)
    state = out.state()
    index, findings = _check_index(out, manifests, state)
    live = _live_parts(manifests, index)
    result = Verification(out.url, [m.run_id for m in manifests], len(live),
                          unfinished=state.run_id if state is not None else None)
    result.findings += findings + _check_files(out, live, quick)
    unlisted = _unlisted(out, {path for m in manifests for path in m.files()} | set(live))
    while_running = f" (the unfinished run {state.run_id} may be writing it)" if state else ""
    result.findings += [Finding(path, f"no manifest lists it{while_running}")
                        for path in unlisted]
    flagged = {f.path for f in result.findings}
    present = {path: part for path, part in live.items() if path not in flagged}
    # a file whose sha256 matched is the file written; sizes alone leave its bytes unchecked
    unreadable = _unreadable(out, present) if quick else []
    result.findings += unreadable
    present = {path: part for path, part in present.items()
               if path not in {f.path for f in unreadable}}
    result.findings += _check_references(out, present)
    if not unreadable:
        result.findings += _check_aggregates(out, present)
    result.findings += _check_iceberg(out, manifests, live)
    result.findings += _check_delta(out, manifests, live)
    if repair and unlisted:
        if state is not None:
            raise OutputError(
                f"{out.url} has an unfinished run (run {state.run_id}): its files are not "
                "listed yet, so --repair cannot tell them from stray ones",
                fix="finish the run first (rerun its command), then run seqlab verify --repair")
        result.quarantined = [out.quarantine(path, "no manifest lists it")
                              for path in unlisted]
    return result


def _manifests(out: OutputDir) -> list[Manifest]:
    if out.incremental():
        manifests = incremental.run_manifests(out)
    else:
        manifest = out.read_manifest(MANIFEST)
        manifests = [manifest] if manifest is not None else []
    if not manifests:
        raise OutputError(f"{out.url} holds no finished seqlab annotate run",
                          fix="pass the OUTPUT of a seqlab annotate run that ended (an "
                          "interrupted run resumes when its command is run again)")
    return manifests


def _check_index(out: OutputDir, manifests: list[Manifest], state: RunState | None
                 ) -> tuple[TableIndex | None, list[Finding]]:
    """An incremental table's index (None for a single run's output), checked against the
    fold of its run manifests. A table written before it had an index is the fold itself; an
    unfinished run that wrote the next version before its manifest is checked on the one
    before."""
    if manifests[0].incremental is None:
        return None, []
    folded = from_manifests(manifests)
    index = read_index(out)
    if index is not None and state is not None and index.last_run == state.run_id:
        index = read_version(out, index.version - 1) if index.version > 1 else None
    if index is None:
        return folded, []
    written = {path for m in manifests for path in m.files()}
    where = index_version_path(index.version)
    return index, [Finding(where, f"{subject}: {problem}")
                   for subject, problem in compare(index, folded, written)]


def _live_parts(manifests: list[Manifest], index: TableIndex | None) -> dict[str, Part]:
    """The files a reader of the output sees, with what their manifests (an incremental
    table's index) list for them."""
    if index is not None:
        return {path: Part(path, info.rows, info.bytes, info.sha256)
                for path, (_, info) in index.files.items()}
    return {part.path: part for manifest in manifests
            for parts in manifest.tables.values() for part in parts}


def _check_files(out: OutputDir, live: dict[str, Part], quick: bool) -> list[Finding]:
    findings = []
    for path, part in sorted(live.items()):
        full = out.path(path)
        if not out.fs.exists(full):
            findings.append(Finding(path, "listed by the manifest but missing"))
            continue
        size = out.fs.size(full)
        if size != part.bytes:
            findings.append(Finding(path, f"holds {size} bytes, the manifest lists "
                                    f"{part.bytes}"))
        elif not quick and _sha256(out, full) != part.sha256:
            findings.append(Finding(path, "its sha256 differs from the manifest's"))
    return findings


def _sha256(out: OutputDir, path: str) -> str:
    digest = hashlib.sha256()
    with out.fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _unlisted(out: OutputDir, listed: set[str]) -> list[str]:
    """Files in the table folders that no manifest lists. An incremental table's replaced
    files move under ``_superseded/``, outside them, or, in an Iceberg table, stay where its
    earlier snapshots read them: listed, though no longer live."""
    return sorted(out.table_files() - listed)


def _unreadable(out: OutputDir, present: dict[str, Part]) -> list[Finding]:
    """Parts whose Parquet footer cannot be read (with ``quick``, a changed file of the same
    size gets this far)."""
    findings = []
    for path in sorted(present):
        try:
            with out.fs.open(out.path(path), "rb") as handle:
                pq.ParquetFile(handle).metadata  # noqa: B018 - reads and checks the footer
        except (OSError, pa.ArrowException) as exc:
            findings.append(Finding(path, f"is not a readable Parquet file ({exc})"))
    return findings


def _pairs(present: dict[str, Part]) -> Iterator[tuple[str, str]]:
    """Each live mentions or frames part with the documents part it landed with."""
    for path in sorted(present):
        table, _, rest = path.partition("/")
        if table in ROW_TABLES[1:] and present[path].rows:
            yield path, f"documents/{rest}"


def _check_references(out: OutputDir, present: dict[str, Part]) -> list[Finding]:
    findings = []
    for path, documents in _pairs(present):
        if documents not in present:
            findings.append(Finding(path, f"its rows belong to {documents}, which is not a "
                                    "live documents part"))
            continue
        ids = read_table(out.fs, out.path(documents), [schema.DOC_ID]).column(schema.DOC_ID)
        named = read_table(out.fs, out.path(path), [schema.DOC_ID]).column(schema.DOC_ID)
        orphans = pc.unique(pc.filter(named, pc.invert(pc.is_in(named, value_set=ids))))
        if len(orphans):
            findings.append(Finding(path, f"{len(orphans)} doc_id(s) not in {documents}, "
                                    f"e.g. {orphans[0].as_py()!r}"))
    return findings


def _check_aggregates(out: OutputDir, present: dict[str, Part]) -> list[Finding]:
    """The live aggregates, summed per key, against the sums of the live mentions."""
    mentions = [p for p in sorted(present) if p.startswith("mentions/")]
    sums = [p for p in sorted(present) if p.startswith("aggregates/")]
    if not mentions and not sums:
        return []
    expected = aggregate.fold(aggregate.partials(read_table(out.fs, out.path(p)))
                              for p in mentions)
    tables = {p: read_table(out.fs, out.path(p)) for p in sums}
    findings = _check_buckets(tables)
    landed = aggregate.merge([_as_partial(table) for table in tables.values()])
    keys = aggregate.KEYS
    joined = expected.join(landed, keys, join_type="full outer", left_suffix="_mentions",
                           right_suffix="_aggregates", coalesce_keys=True)
    differ = pa.array([False] * joined.num_rows)
    for column in aggregate.SUMS:  # a key on one side only compares as null: it differs
        differ = pc.or_(differ, pc.fill_null(pc.not_equal(joined[f"{column}_mentions"],
                                                          joined[f"{column}_aggregates"]), True))
    wrong = joined.filter(differ).sort_by([(k, "ascending") for k in keys])
    if not wrong.num_rows:
        return findings
    shown = "; ".join(f"{r['label']} {r['text']!r}: mentions {r['mentions_aggregates']} "
                      f"(the mentions give {r['mentions_mentions']})"
                      for r in wrong.slice(0, SHOWN_KEYS).to_pylist())
    more = f" and {wrong.num_rows - SHOWN_KEYS} more" if wrong.num_rows > SHOWN_KEYS else ""
    return findings + [Finding("aggregates/", f"{wrong.num_rows} key(s) differ from the sums "
                               f"of the live mentions: {shown}{more}")]


def _check_buckets(landed: dict[str, pa.Table]) -> list[Finding]:
    """A single run's aggregates files are ``part-00000`` to ``part-{K-1}``, each holding its
    bucket's keys (``aggregate.buckets``: the key hash modulo K) once each."""
    numbered = {int(m.group(1)): path for path in landed if (m := BUCKET_FILE.match(path))}
    count = len(numbered)
    if not count:
        return []  # an incremental table's: one per input file
    if sorted(numbered) != list(range(count)):
        return [Finding("aggregates/", f"{count} aggregates files, not numbered 0 to "
                        f"{count - 1}: {sorted(numbered)[:SHOWN_KEYS]}...")]
    findings = []
    for bucket, path in sorted(numbered.items()):
        table = landed[path]
        if not table.num_rows:
            continue
        misplaced = int((aggregate.buckets(table, count) != bucket).sum())
        repeated = table.num_rows - table.group_by(aggregate.KEYS).aggregate([]).num_rows
        if misplaced or repeated:
            findings.append(Finding(path, f"{misplaced} key(s) of another of the {count} "
                                    f"buckets and {repeated} repeated key(s)"))
    return findings


def _as_partial(landed: pa.Table) -> pa.Table:
    """A landed aggregates part back in the partial form (score sums in micro-units)."""
    micros = np.rint(landed.column("score_sum").to_numpy() * aggregate.MICRO).astype(np.int64)
    return pa.table({"label": landed.column("label"), "text": landed.column("text"),
                     "mentions": landed.column("mentions"),
                     "documents": landed.column("documents"),
                     "score_micros": pa.array(micros, pa.int64())})


def _check_iceberg(out: OutputDir, manifests: list[Manifest],
                   live: dict[str, Part]) -> list[Finding]:
    """The current snapshot of each Iceberg table the last run committed to, against the
    live files of that table."""
    last = manifests[-1]
    if not last.iceberg:
        return []
    from seqlab.store import iceberg  # pyiceberg only for tables that are committed to it

    catalog = iceberg.load(last.iceberg["catalog"])
    findings = []
    for name, committed in sorted(last.iceberg.get("tables", {}).items()):
        files = set(iceberg.live_files(catalog.load_table(committed["table"])))
        wanted = {out.url_of(p): p for p in live if p.startswith(name + "/")}
        for url in sorted(set(wanted) - files):
            findings.append(Finding(wanted[url], f"live, but not in the current snapshot of "
                                    f"the Iceberg table {committed['table']}"))
        for url in sorted(files - set(wanted)):
            findings.append(Finding(url, f"in the current snapshot of the Iceberg table "
                                    f"{committed['table']}, but not live"))
    return findings


def _check_delta(out: OutputDir, manifests: list[Manifest],
                 live: dict[str, Part]) -> list[Finding]:
    """Each Delta table of a ``--table-format delta`` table (``OUT/<table>/_delta_log/``):
    the files its current version holds, against the live files of that table."""
    if (manifests[-1].table or {}).get("table_format") != "delta":
        return []
    from seqlab.store import delta  # deltalake only for tables that are committed to it

    findings = []
    for name in TABLES:
        held = delta.live_files(out, name)
        wanted = {p for p in live if p.startswith(name + "/")}
        for path in sorted(wanted - held):
            findings.append(Finding(path, f"live, but not in the current version of the Delta "
                                    f"table {out.url_of(name)}"))
        for path in sorted(held - wanted):
            findings.append(Finding(path, f"in the current version of the Delta table "
                                    f"{out.url_of(name)}, but not live"))
    return findings
