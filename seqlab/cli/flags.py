"""Flags that several commands share (``seqlab annotate``, ``evaluate``, ``show``...)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object given on the command line.

    >>> json_object('{"endpoint_url": "http://127.0.0.1:9000"}')
    {'endpoint_url': 'http://127.0.0.1:9000'}
    """
    try:
        value = json.loads(text)
        problem = None if isinstance(value, dict) else f"got {text!r}"
    except json.JSONDecodeError as exc:
        problem = str(exc)
    if problem:
        raise argparse.ArgumentTypeError(
            f"not a JSON object ({problem}); fix: pass one in single quotes, e.g. "
            """'{"endpoint_url": "http://127.0.0.1:9000"}'""")
    return value


def add_storage_flag(p: argparse.ArgumentParser, where: str = "INPUT and OUTPUT") -> None:
    p.add_argument("--storage-options", type=json_object, metavar="JSON",
                   help=f"fsspec options for {where} as a JSON object, e.g. "
                   """'{"endpoint_url": "http://127.0.0.1:9000"}' for an S3-compatible """
                   "server (credentials are better left to the environment, e.g. AWS_*)")


def add_precision_flag(p: argparse.ArgumentParser) -> None:
    """``--precision``, with ``--dtype`` as its older name (``seqlab annotate`` and
    ``seqlab evaluate``)."""
    p.add_argument("--precision", "--dtype", dest="precision", metavar="P",
                   help="what the model runs in: auto, fp32, bf16, fp16 or int8 (int8: CPU "
                   "only, on ONNX Runtime (see seqlab.models.quantize); --dtype names such as "
                   "float32 also work). "
                   "Default auto: bf16 on GPU; on CPU int8 where the model's seqlab.json "
                   "records that int8 was measured not to lose, else fp32")
