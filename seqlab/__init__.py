"""seqlab: annotate large text corpora with fine-tuned BERT sequence labellers.

>>> import seqlab
>>> manifest = seqlab.annotate("corpus.parquet", "out/", model="ner")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["annotate", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: stage workers that only need pyarrow code (mentions,
    # aggregates) then never pay for importing torch and transformers.
    if name == "annotate":
        from seqlab.api import annotate

        return annotate
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")
