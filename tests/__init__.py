"""seqlab's tests: ``tests/seqlab`` mirrors ``seqlab/``, ``tests/pipelines`` the engines,
``tests/deploy`` the deployment files."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

# Where every extra is installed (CI sets it), a missing or broken optional package fails the
# tests that need it instead of skipping them, so a broken engine install cannot pass unseen.
REQUIRE_EXTRAS = "SEQLAB_REQUIRE_EXTRAS"


def require(module: str, extra: str) -> ModuleType:
    """``module``, or a skip naming the extra that installs it; with SEQLAB_REQUIRE_EXTRAS=1
    its import error fails the test (or the collection of the module that calls this)."""
    if os.environ.get(REQUIRE_EXTRAS):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"pip install 'seqlab[{extra}]'")
