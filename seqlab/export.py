"""The old path of ``seqlab.models.export``, kept for one release so that existing imports
(``from seqlab.export import export_low_rank_model``) go on working; it warns on import.
Use ``seqlab.models.export``, or the ``seqlab export`` command."""

from __future__ import annotations

import warnings

from seqlab.models.export import export_adapter_model, export_low_rank_model

__all__ = ["export_adapter_model", "export_low_rank_model"]

warnings.warn("seqlab.export moved to seqlab.models.export (or run `seqlab export TRAINED "
              "TARGET`); the old path goes in the next release", DeprecationWarning,
              stacklevel=2)
