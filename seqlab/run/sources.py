"""Input discovery: the files under a URL, their formats and identities (``Fragment``)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import fsspec

from seqlab.errors import ConfigError, InputError

PARQUET = "parquet"

JSONL = "jsonl"

SUFFIXES = {".parquet": PARQUET, ".pq": PARQUET, ".jsonl": JSONL, ".json": JSONL,
            ".ndjson": JSONL}

COMPRESSIONS = (".gz", ".bz2", ".zst", ".xz")


class FragmentError(InputError):
    """One input file that cannot be read; the run goes on with the others."""


@dataclass(frozen=True)
class Fragment:
    """One input file. ``name`` is its path relative to the input root: stable across runs."""

    index: int
    path: str
    name: str
    format: str
    # (size, version): what tells a changed file from the one an earlier run annotated. The
    # version is the storage's ETag or generation where it has one, else the modification time.
    identity: tuple[int, str] | None = None


VERSION_KEYS = ("ETag", "etag", "generation", "md5Hash", "VersionId", "mtime", "LastModified",
                "last_modified", "updated", "created")


def identity(info: dict) -> tuple[int, str]:
    """A file's (size, version) from an fsspec ``info`` entry, whichever storage it is on.

    >>> identity({"name": "a", "size": 10, "ETag": '"9b2cf535"', "LastModified": "..."})
    (10, '"9b2cf535"')
    >>> identity({"name": "a", "size": 10, "mtime": 1764633600.5})
    (10, '1764633600.5')
    """
    version = next((info[k] for k in VERSION_KEYS if info.get(k) not in (None, "")), "")
    return int(info.get("size") or 0), str(version)


def file_format(path: str) -> str | None:
    base = path.lower()
    for suffix in COMPRESSIONS:
        base = base.removesuffix(suffix)
    return SUFFIXES.get(posixpath.splitext(base)[1])


def discover(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem,
                                                                        list[Fragment]]:
    """Resolve a file, directory or glob URL to its Parquet/JSONL files, sorted by path."""
    try:
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"cannot open {url!r}: {exc}",
            fix="for s3:// or gs:// install the cloud extra: pip install 'seqlab[cloud]'",
        ) from exc
    try:
        if fsspec.core.has_magic(root):
            paths = fs.glob(root, detail=True)
            base = root[: min(root.find(c) for c in "*?[" if c in root)].rsplit("/", 1)[0]
        elif fs.isdir(root):
            paths = fs.find(root, detail=True)
            base = root.rstrip("/")
        elif fs.exists(root):
            paths, base = {root: fs.info(root)}, posixpath.dirname(root)
        else:
            raise InputError(f"input {url!r} does not exist", fix="check the path or URL")
    except (OSError, PermissionError) as exc:
        raise InputError(f"cannot list input {url!r}: {exc}",
                         fix="check the URL and your credentials") from exc
    files = sorted(p for p in paths if file_format(p) and not _hidden(p, base))
    if not files:
        raise InputError(
            f"no Parquet or JSON Lines files at {url!r}",
            fix=f"point INPUT at files ending in {', '.join(SUFFIXES)} or a directory of them",
        )
    fragments = [
        Fragment(i, p, p[len(base) + 1 :] if base and p.startswith(base + "/") else p,
                 file_format(p) or "", identity(paths[p]))
        for i, p in enumerate(files)
    ]
    return fs, fragments


def _hidden(path: str, base: str) -> bool:
    """Whether a file or a folder on its way below the input root starts with ``_`` or ``.``:
    markers (``_SUCCESS``), staging folders of other tools (``_temporary/``, ``.spark-staging/``,
    ``_delta_log/``), as ``pyarrow.dataset`` skips them.

    >>> _hidden("in/_temporary/0/part-0.parquet", "in"), _hidden("in/a/b.parquet", "in")
    (True, False)
    """
    relative = path[len(base) + 1:] if base and path.startswith(base + "/") else \
        posixpath.basename(path)
    return any(part.startswith(("_", ".")) for part in relative.split("/"))
