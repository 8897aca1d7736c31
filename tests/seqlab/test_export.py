"""seqlab.export: the old path of seqlab.models.export still imports, with a warning."""

import importlib
import sys

import pytest

import seqlab.models.export


def test_the_old_export_path_warns_and_gives_the_same_functions(monkeypatch):
    monkeypatch.delitem(sys.modules, "seqlab.export", raising=False)
    with pytest.warns(DeprecationWarning, match="seqlab.export moved to seqlab.models.export"):
        old = importlib.import_module("seqlab.export")
    assert old.export_low_rank_model is seqlab.models.export.export_low_rank_model
    assert old.export_adapter_model is seqlab.models.export.export_adapter_model
