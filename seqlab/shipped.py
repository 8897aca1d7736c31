"""Models shipped inside the package, addressed by a short name (``--model ner``)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_ROOT = Path(__file__).parent / "models"
# Names reserved for models that ship with the package, installed or not.
RESERVED = ("ner", "upos")


def shipped_names() -> list[str]:
    if not SHIPPED_ROOT.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_ROOT.iterdir() if (p / "config.json").is_file())


def shipped_model_dir(name: str) -> Path | None:
    """The directory of a shipped model, or None when ``name`` is not one."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    path = SHIPPED_ROOT / name
    if (path / "config.json").is_file():
        return path
    if name in RESERVED:
        from seqlab.errors import ModelError

        raise ModelError(
            f"the shipped model {name!r} is not installed in this copy of seqlab",
            fix="pass --model with a model directory, hub id or fsspec URL "
            "(examples/build_example_model.py builds a small one)",
        )
    return None
