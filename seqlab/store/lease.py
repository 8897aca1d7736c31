"""One writer per output or table: a lease file, ``OUT/_lease.json``, held while a run goes.

A run takes the lease before it touches the output, by creating the file only if it is absent
(fsspec's exclusive mode ``"xb"``: ``O_EXCL`` on a local disk, a conditional put on S3
(``If-None-Match``) and GCS (``ifGenerationMatch=0``), so two runs started at once cannot both
win). It holds the run id, the engine, host and pid, and when it started; a thread renews its
``heartbeat_at`` while the run goes, and the run removes the file when it ends, finished or
failed. A second run is refused at once, naming the holder.

A lease whose holder is gone is taken over: at once where the holder ran on this host and its
process has ended (a ``kill -9``, a crash), and with ``take_over`` where its heartbeat has
stopped for longer than ``STALE_AFTER`` (a lost node: seqlab cannot tell from here whether a
process elsewhere still runs). The take-over is recorded in the new lease.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from seqlab.errors import ConfigError, OutputError
from seqlab.store.manifest import file_name
from seqlab.store.outdir import OutputDir

log = logging.getLogger(__name__)

LEASE = "_lease.json"
HEARTBEAT_S = 30.0  # how often a holder renews its lease
STALE_AFTER_S = 300.0  # a heartbeat older than this may be taken over with take_over
EMPTY_READS, EMPTY_WAIT_S = 40, 0.05  # an empty lease is read again for up to 2 s
# Stores whose exclusive create is atomic (fsspec's "x" mode maps to it); elsewhere fsspec
# checks for the file and then writes, which two runs can both pass.
ATOMIC_CREATE = ("file", "local", "s3", "s3a", "gs", "gcs", "memory")


@dataclass(frozen=True)
class Holder:
    """Who holds the lease: a run on an engine, in one process on one host."""

    holder: str  # unique per acquisition: a rerun in the same process is another holder
    engine: str
    host: str
    pid: int
    started_at: str
    heartbeat_at: str
    run_id: str | None = None
    taken_over_from: dict | None = None  # the holder this one replaced, as it was

    def describe(self, now: datetime) -> str:
        run = f"run {self.run_id}" if self.run_id else "a run"
        age = (now - datetime.fromisoformat(self.heartbeat_at)).total_seconds()
        return (f"{run} on the {self.engine} engine (host {self.host}, pid {self.pid}, "
                f"started {self.started_at}, last heartbeat {age:.0f} s ago)")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Lease:
    """A held lease: renew it while the run goes, release it when the run ends."""

    def __init__(self, out: OutputDir, holder: Holder, created: bool = False) -> None:
        self.out = out
        self.holder = holder
        self.created = created  # the lease created the output folder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.out.path(LEASE)

    def renew(self, run_id: str | None = None) -> None:
        """Write a new heartbeat (and the run id, once the plan has settled it), unless
        another run took the lease over: that is logged, and this run no longer writes it."""
        current = read_holder(self.out)
        if current is None or current.holder != self.holder.holder:
            log.error("the lease of %s was taken over by %s; this run no longer holds it",
                      self.out.url, current.describe(_now()) if current else "nobody")
            self._stop.set()
            return
        self.holder = replace(self.holder, heartbeat_at=_now().isoformat(),
                              run_id=run_id or self.holder.run_id)
        _write(self.out, self.holder, exclusive=False)

    def start_heartbeat(self, every: float = HEARTBEAT_S) -> None:
        def beat() -> None:
            while not self._stop.wait(every):
                try:
                    self.renew()
                except Exception:  # noqa: BLE001 - a missed heartbeat must not end the run
                    log.warning("could not renew the lease of %s", self.out.url,
                                exc_info=True)

        self._thread = threading.Thread(target=beat, name="seqlab-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and remove the lease, if this run still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = read_holder(self.out)
        if current is not None and current.holder == self.holder.holder:
            self.out.fs.rm(self.path)
        if self.created:  # a run refused before any work leaves nothing behind
            try:
                if not self.out.fs.ls(self.out.root):
                    self.out.fs.rmdir(self.out.root)
            except OSError:  # object stores have no folders to remove
                pass


def read_holder(out: OutputDir) -> Holder | None:
    """The lease's holder, None where no run holds the output."""
    path = out.path(LEASE)
    data = b""
    for _ in range(EMPTY_READS):
        if not out.fs.exists(path):
            return None
        data = out.fs.cat_file(path)
        if data.strip():
            break
        # on a local disk the exclusive create makes the file before the holder is written
        # into it: an empty lease is a run taking it at this moment
        time.sleep(EMPTY_WAIT_S)
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError) as exc:
        raise OutputError(
            f"{file_name(out.fs, path)} is not a readable seqlab lease ({exc})",
            fix="if no seqlab run is writing this output, remove the file and rerun; "
            "otherwise wait for the run to end") from exc


def acquire(out: OutputDir, engine: str, take_over: bool = False, tries: int = 3) -> Lease:
    """Take the output's lease, or refuse naming the run that holds it."""
    protocols = (out.fs.protocol,) if isinstance(out.fs.protocol, str) else out.fs.protocol
    if not set(protocols) & set(ATOMIC_CREATE):
        raise ConfigError(
            f"{out.url} is on {protocols[0]}://, which cannot create a file only if it is "
            "absent, so seqlab cannot keep a second run from writing it at the same time",
            fix="write the output to a local disk, S3 or GCS (s3://, gs://)")
    out.check_folder()
    created = not out.fs.exists(out.root)
    out.fs.makedirs(out.root, exist_ok=True)
    now = _now().isoformat()
    mine = Holder(uuid.uuid4().hex, engine, socket.gethostname(), os.getpid(), now, now)
    try:
        _write(out, mine, exclusive=True)
        return Lease(out, mine, created)
    except FileExistsError:
        pass
    current = read_holder(out)
    if current is None and tries > 1:  # released between our write and our read
        return acquire(out, engine, take_over, tries - 1)
    if current is None:
        raise OutputError(f"the lease of {out.url} changed hands while this run tried to "
                          "take it", fix="rerun the command")
    reason = _takeable(current, take_over)
    if reason is None:
        raise OutputError(
            f"{out.url} is being written by {current.describe(_now())}",
            fix="wait for that run to end (two runs into one output would mix their files); "
            f"if it is gone, rerun with --take-over once its heartbeat is {STALE_AFTER_S:.0f} s "
            f"old, or remove {file_name(out.fs, out.path(LEASE))} if you know no run writes")
    log.warning("taking over the lease of %s: %s", out.url, reason)
    mine = replace(mine, taken_over_from=asdict(current))
    _write(out, mine, exclusive=False)
    return Lease(out, mine)


def _takeable(current: Holder, take_over: bool) -> str | None:
    """Why the lease of ``current`` may be taken over, None where it may not."""
    if current.host == socket.gethostname() and not _alive(current.pid):
        return f"its holder (pid {current.pid} on this host) has ended"
    if current.host == socket.gethostname() and current.pid == os.getpid():
        return "its holder, an earlier run in this process, ended without releasing it"
    age = (_now() - datetime.fromisoformat(current.heartbeat_at)).total_seconds()
    if take_over and age > STALE_AFTER_S:
        return f"--take-over, and its heartbeat is {age:.0f} s old"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _write(out: OutputDir, holder: Holder, exclusive: bool) -> None:
    with out.fs.open(out.path(LEASE), "xb" if exclusive else "wb") as handle:
        handle.write((json.dumps(asdict(holder), indent=2) + "\n").encode())


@contextmanager
def held(out: OutputDir, engine: str, take_over: bool = False,
         heartbeat: float = HEARTBEAT_S) -> Iterator[Lease]:
    """The output's lease, renewed every ``heartbeat`` seconds and released on exit."""
    lease = acquire(out, engine, take_over)
    lease.start_heartbeat(heartbeat)
    try:
        yield lease
    finally:
        lease.release()
