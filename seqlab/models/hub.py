"""Names on the Hugging Face hub: whether a name can only be a path, whether the hub (or its
cache, offline) has the model, and the errors, with the likely fix, for names that are no model
anywhere. One quick request decides, rather than transformers' minute of retries.

huggingface_hub is imported by the functions that ask it, so a run on a local model never
imports it.
"""

from __future__ import annotations

import difflib
import logging
import os
from functools import lru_cache
from pathlib import Path

from seqlab.errors import ModelError
from seqlab.models.shipped import shipped_names

log = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

# The one request that tells whether a hub model exists: a hub that has not answered in this
# long counts as out of reach.
HUB_TIMEOUT = 5.0


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a local path, not a hub id (``name`` or ``org/name``): it
    starts as paths do, breaks the hub's rules for ids (more than one ``/``, a space, ``--``),
    or its first part is a directory here (``models/ner-v2`` with ``models/`` present).

    >>> [looks_like_path(n) for n in ("nerr", "dslim/bert-base-NER", "./m", "../m", "/m", "~/m")]
    [False, False, True, True, True, True]
    >>> looks_like_path("runs/2024/ner"), looks_like_path("my model"), looks_like_path("C:/m")
    (True, True, True)
    """
    if name.startswith(("/", "~", ".")) or not is_hub_id(name):
        return True
    return "/" in name and os.path.isdir(name.split("/")[0])


def is_hub_id(name: str) -> bool:
    """Whether the hub would take ``name`` as a model id (its own rules, not a lookup)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def missing_directory(path: str) -> ModelError:
    """The error for a model path that does not exist: which part is missing, and the name
    that part most likely has."""
    wanted = Path(path)
    missing = next(p for p in (wanted, *wanted.parents) if p.parent.exists())
    where = "" if missing == wanted else f": there is no {missing}"
    siblings = [p.name for p in missing.parent.iterdir() if p.is_dir()] \
        if missing.parent.is_dir() else []
    close = difflib.get_close_matches(missing.name, siblings, n=1)
    fix = f"did you mean {missing.with_name(close[0])}? " if close else ""
    return ModelError(f"the model directory {path} does not exist{where}",
                      fix=fix + "pass an existing directory (it holds config.json and the "
                      f"weights), a shipped name ({', '.join(shipped_names())}), a hub id or an "
                      "fsspec URL")


def hub_offline() -> bool:
    """Whether the hub is off limits: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set (now, or
    when huggingface_hub read them at import)."""
    from huggingface_hub import constants as hf_constants

    return hf_constants.HF_HUB_OFFLINE or any(
        os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for name in OFFLINE_VARIABLES)


def hub_model(name: str, revision: str | None) -> str:
    """``name`` as a hub id once one quick request (or the cache, offline) says it can be had.

    Left to transformers, a name on an unreachable hub costs most of a minute of retries before
    the error, and a mistyped name offline is reported as a missing connection.
    """
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    cached = cached if isinstance(cached, str) else None
    if hub_offline():
        if cached:
            return name
        raise unknown_model(name, "a model in the hub cache (the hub is not asked: "
                            "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)",
                            "or unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE to download it")
    status, detail = hub_status(name, revision)
    if status == "found":
        return name
    if status == "unreachable" and cached:
        log.warning("the hub cannot be reached (%s): %s loads from the cache", detail, name)
        return str(Path(cached).parent)
    if status == "unreachable":
        raise unknown_model(name, f"a cached hub model, and {hf_constants.ENDPOINT} "
                            f"cannot be reached ({detail})",
                            "or check the network connection (proxies, HF_ENDPOINT)")
    if status == "no_revision":
        raise ModelError(f"the hub model {name} has no revision {revision!r}",
                         fix="pass --model-revision with a branch, tag or commit of it")
    raise unknown_model(name, "a model on the hub",
                        "or check the hub id (org/name); a private model needs `hf auth login`")


@lru_cache(maxsize=32)
def hub_status(name: str, revision: str | None) -> tuple[str, str]:
    """``("found" | "missing" | "no_revision" | "unreachable", detail)`` from one request to
    the hub, without retries, remembered for the process (a run resolves its model several
    times). An answer other than not-found (gated, rate-limited, server error) counts as found:
    transformers reports those better."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        HfApi().model_info(name, revision=revision, timeout=HUB_TIMEOUT)
    except GatedRepoError:
        return "found", "gated"
    except RepositoryNotFoundError:
        return "missing", ""
    except RevisionNotFoundError:
        return "no_revision", ""
    except HfHubHTTPError as exc:
        return "found", str(exc)
    except Exception as exc:  # noqa: BLE001 - a failure of any kind to get an answer
        return "unreachable", str(exc) or type(exc).__name__
    return "found", ""


def unknown_model(name: str, reason: str, otherwise: str) -> ModelError:
    """The error for a name that is no model anywhere, with the shipped name it is close to."""
    names = shipped_names()
    close = difflib.get_close_matches(name.lower(), names, n=1)
    fix = f"did you mean {close[0]!r}? " if close else ""
    return ModelError(
        f"{name!r} is not a shipped model ({', '.join(names)}), a local directory or {reason}",
        fix=fix + "pass a shipped name, a model directory, a hub id or an fsspec URL, "
        + otherwise)
