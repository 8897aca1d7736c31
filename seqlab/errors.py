"""The exception tree. Every message says what was wrong and how to fix it.

``os_error`` turns the OSErrors a user fixes on their side (a read-only file system, a missing
permission, a full disk) into these errors, wherever in a run they were raised.
"""

from __future__ import annotations

import errno
import os


class SeqlabError(Exception):
    """Base class of every error seqlab raises on purpose."""

    exit_code = 2  # the command line's exit status: a mistake to fix before rerunning

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}; {fix}" if fix else message)


class ConfigError(SeqlabError):
    """A configuration or schema mistake, found before any work starts."""


class InputError(SeqlabError):
    """An input that cannot be found or read at all (bad rows never raise: they get a status)."""


class OutputError(SeqlabError):
    """An output location that cannot take this run (e.g. it already holds a finished run)."""


class StorageFullError(SeqlabError):
    """The storage ran out of space (or quota) mid-run: not a mistake in the command, which
    resumes where it stopped once space is freed."""

    exit_code = 1


class ModelError(SeqlabError):
    """A model that cannot be loaded or is unfit for token classification."""


class RunError(SeqlabError):
    """A run that broke one of its invariants (e.g. rows in != rows out)."""


def missing_extra(package: str, extra: str) -> ConfigError:
    """The error for an optional dependency that is not installed."""
    return ConfigError(
        f"{package} is not installed",
        fix=f"install it with: pip install 'seqlab[{extra}]'",
    )


READ_ONLY = (errno.EROFS,)
DENIED = (errno.EACCES, errno.EPERM)
FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # quota: not on every OS
NOT_A_FOLDER = (errno.ENOTDIR,)


def os_error(exc: BaseException | None, output: str | None = None,
             resumes: bool = False) -> SeqlabError | None:
    """The error that says what an OSError means, for the errnos a user fixes on their side:
    a read-only file system, a missing permission, a full disk or quota, a file where a folder
    should be. ``exc`` may also be an error raised from (or while handling) such an OSError.
    None for every other error (a network or endpoint failure among them).

    ``output`` is the OUTPUT being written: the path named when the OSError names none, and
    the fix speaks of OUTPUT when the path is in it. ``resumes``: rerunning the same command
    resumes the work (``seqlab annotate``'s runs do).

    >>> full = os_error(OSError(errno.ENOSPC, "No space left on device", "out/x.parquet"))
    >>> full.exit_code, full.message.startswith("no space left on the device writing out/x")
    (1, True)
    >>> os_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")) is None
    True
    """
    found = _os_error_in(exc)
    if found is None:
        return None
    path = str(found.filename) if found.filename is not None else output
    shown = path if path is not None else "the output"
    ours = output is None or path is None or _inside(path, output)
    local = _local_path(path, output)
    if found.errno in READ_ONLY:
        if ours:
            return OutputError(f"cannot write {shown}: it is on a read-only file system",
                               fix="choose an OUTPUT on a writable file system (or remount "
                               "this one read-write)")
        return ConfigError(f"cannot write {shown}: it is on a read-only file system",
                           fix="remount that file system read-write, or point seqlab at a "
                           "writable location instead")
    if found.errno in DENIED or isinstance(found, PermissionError):
        folder = _folder_of(local) or "it"
        if ours:
            return OutputError(f"permission denied on {shown}",
                               fix=f"give this user write permission on {folder} (chmod u+rwx "
                               "or chown), or choose an OUTPUT it may write to (on object "
                               "storage: credentials allowed to write there)")
        return ConfigError(f"permission denied on {shown}",
                           fix=f"give this user access to {folder} (chmod or chown)")
    if found.errno in FULL:
        what = "no space left" if found.errno == errno.ENOSPC else "disk quota exceeded"
        mount = _mount_point(local)
        on = f" (the file system mounted at {mount})" if mount else ""
        again = ": it resumes (input files already done are kept)" if resumes else ""
        return StorageFullError(f"{what} on the device writing {shown}{on}",
                                fix=f"free space and rerun the same command{again}")
    if found.errno in NOT_A_FOLDER:
        return OutputError(f"cannot write {shown}: a folder on its path is a file",
                           fix="choose an OUTPUT whose folders are folders, or move that "
                           "file away")
    return None


def _os_error_in(exc: BaseException | None) -> OSError | None:
    """The first OSError with a known errno among ``exc`` and the errors it came from (an
    object store's refusal is a PermissionError without one; a Ray task's error carries the
    worker's as ``cause``)."""
    known = (*READ_ONLY, *DENIED, *FULL, *NOT_A_FOLDER)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, PermissionError) or isinstance(exc, OSError) and exc.errno in known:
            return exc
        cause = getattr(exc, "cause", None)
        exc = exc.__cause__ or exc.__context__ or (cause if isinstance(cause, BaseException)
                                                   else None)
    return None


def _local(path: str) -> str | None:
    """``path`` as a local path, None for another file system's (``s3://...``)."""
    if path.startswith("file://"):
        return path.removeprefix("file://")
    return None if "://" in path else path


def _inside(path: str, output: str) -> bool:
    """Whether ``path`` is ``output`` or within it (local paths compared absolute).

    >>> _inside("/data/out/documents/x", "file:///data/out/"), _inside("/data/in", "/data/out")
    (True, False)
    """
    mine, theirs = _local(path), _local(output)
    if mine is not None and theirs is not None:
        mine, theirs = os.path.abspath(mine), os.path.abspath(theirs)
    else:  # another file system's paths may come without the protocol (bucket/key)
        mine, theirs = path.split("://")[-1].rstrip("/"), output.split("://")[-1].rstrip("/")
    return mine == theirs or mine.startswith(theirs.rstrip("/") + "/")


def _local_path(path: str | None, output: str | None) -> str | None:
    """``path`` as an absolute local path, None where it is another file system's. A relative
    path counts as local only when OUTPUT is (an object store's keys come relative)."""
    local = _local(path) if path else None
    if local is None:
        return None
    if os.path.isabs(local):
        return local
    return os.path.abspath(local) if output is None or _local(output) is not None else None


def _folder_of(local: str | None) -> str | None:
    """The folder whose permissions decide whether a local path can be written: the path
    itself if it is a folder, else the nearest existing folder above it."""
    if local is None:
        return None
    while not os.path.isdir(local) and local != os.path.dirname(local):
        local = os.path.dirname(local)
    return local


def _mount_point(local: str | None) -> str | None:
    """The mount point of the file system holding a local path."""
    if local is None:
        return None
    while not os.path.ismount(local):
        local = os.path.dirname(local)
    return local
