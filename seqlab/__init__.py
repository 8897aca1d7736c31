"""seqlab: annotate large text corpora with fine-tuned BERT sequence labellers.

>>> import seqlab
>>> summary = seqlab.annotate("corpus.parquet", "out/", model="path/to/model")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from seqlab.api import annotate  # noqa: E402

__all__ = ["annotate", "__version__"]
