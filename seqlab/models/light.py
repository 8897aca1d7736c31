"""What a run needs of a model before its forward passes, read without torch or transformers.

Importing torch and transformers' model code takes seconds, which a run on ONNX Runtime's
int8 graph (``seqlab.models.quantize``) never uses once the graph is cached. So that such a
run starts in a fraction of that time, the plan and the load read from a local model directory:

- its ``config.json`` as JSON (the labels, and the commit of a hub cache snapshot), as
  transformers' ``AutoConfig`` reads them;
- its tokenizer as transformers built it: the first load through transformers stores the fast
  tokenizer's full definition and the few settings annotating asks for (special tokens,
  padding id, length limit) under ``$SEQLAB_CACHE/tokenizers``, keyed by the tokenizer files
  and the versions of transformers and tokenizers; later loads read that back with the
  tokenizers library alone (``CachedTokenizer``);
- whether a CUDA device can exist here, from the driver's device files, so that
  ``--device auto`` on a machine without a GPU settles on CPU without asking torch.

Hub ids, ``--trust-remote-code`` and slow tokenizers take the transformers path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# The files a tokenizer (and transformers' choice of its class) is built from.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                   "sentencepiece.bpe.model", "spiece.model", "config.json")
# Bumped when what the cache holds changes.
TOKENIZER_FORMAT = 1
# Files only a machine with a GPU driver has: NVIDIA's, ROCm's, WSL's GPU bridge.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version",
                    "/dev/kfd", "/dev/dxg")


def cuda_possible() -> bool:
    """Whether torch could see a CUDA device here, told without importing torch: on Linux a
    GPU needs its driver's device files; macOS has no CUDA; elsewhere only torch can tell.

    >>> isinstance(cuda_possible(), bool)
    True
    """
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(path) for path in GPU_DEVICE_FILES)


def read_config(source: str) -> SimpleNamespace | None:
    """The labels and commit hash of the model directory ``source`` as transformers reads
    them from its ``config.json`` (``id2label`` with integer ids; without it ``num_labels``
    labels named ``LABEL_i``); None when ``source`` is not a local directory with one."""
    path = Path(source) / "config.json"
    if not path.is_file():
        return None
    values = json.loads(path.read_text())
    id2label = values.get("id2label")
    if id2label:
        id2label = {int(i): label for i, label in id2label.items()}
    else:
        id2label = {i: f"LABEL_{i}" for i in range(int(values.get("num_labels", 2)))}
    return SimpleNamespace(id2label=id2label, _commit_hash=snapshot_commit(path),
                           values=values)


def snapshot_commit(path: Path) -> str | None:
    """The commit of a file inside a hub cache snapshot (``.../snapshots/COMMIT/...``), as
    transformers gives it to a config it reads there; None elsewhere.

    >>> snapshot_commit(Path("/c/models--a--b/snapshots/" + "0" * 40 + "/config.json"))
    '0000000000000000000000000000000000000000'
    >>> snapshot_commit(Path("/models/ner/config.json")) is None
    True
    """
    found = re.search(r"snapshots/([^/]+)/", path.as_posix())
    commit = found.group(1) if found else None
    return commit if commit and re.fullmatch(r"[0-9a-f]{40}", commit) else None


class CachedTokenizer:
    """A fast tokenizer as transformers built it, read back with the tokenizers library
    alone. It answers what annotating asks of a tokenizer (``seqlab.stages.tokenize``, the
    tag stage's padding and special tokens): ``backend_tokenizer``, ``is_fast``,
    ``num_special_tokens_to_add``, ``pad_token_id`` and ``model_max_length``."""

    is_fast = True

    def __init__(self, record: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_str(record["definition"])
        self.pad_token_id: int | None = record["pad_token_id"]
        self.model_max_length: int | None = record["model_max_length"]
        self.special_tokens = record["special_tokens"]  # added to one sequence, to a pair

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.special_tokens[1 if pair else 0]


def tokenizer_key(source: str) -> str | None:
    """The cache key of the tokenizer of the model directory ``source``: its tokenizer files
    and the versions of what builds the tokenizer; None when ``source`` is no directory."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256(json.dumps({"format": TOKENIZER_FORMAT,
                                        "transformers": _version("transformers"),
                                        "tokenizers": _version("tokenizers")}).encode())
    for name in TOKENIZER_FILES:
        file = folder / name
        if file.is_file():
            digest.update(name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:24]


def cached_tokenizer(cache: Path, source: str) -> CachedTokenizer | None:
    """The tokenizer of ``source`` from the cache, or None when it holds none."""
    key = tokenizer_key(source)
    path = cache / f"{key}.json"
    if key is None or not path.is_file():
        return None
    try:
        return CachedTokenizer(json.loads(path.read_text()))
    except Exception:  # noqa: BLE001 - a damaged entry of any kind is built again
        return None


def remember_tokenizer(cache: Path, source: str, tokenizer: Any) -> None:
    """Store what annotating needs of ``tokenizer`` (transformers' fast tokenizer of the
    directory ``source``) for ``cached_tokenizer``. A cache that cannot be written is
    skipped: the next load goes through transformers again."""
    key = tokenizer_key(source)
    if key is None or not getattr(tokenizer, "is_fast", False):
        return
    record = {"definition": tokenizer.backend_tokenizer.to_str(),
              "pad_token_id": tokenizer.pad_token_id,
              "model_max_length": tokenizer.model_max_length,
              "special_tokens": [tokenizer.num_special_tokens_to_add(pair=False),
                                 tokenizer.num_special_tokens_to_add(pair=True)]}
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f"{key}.{os.getpid()}.partial"
        partial.write_text(json.dumps(record))
        partial.replace(cache / f"{key}.json")  # whole or absent, with concurrent writers
    except OSError:
        pass


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"
