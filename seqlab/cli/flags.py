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


def file_size(text: str) -> int:
    """An argparse type: a size in bytes, as ``512MB``, ``1GiB`` or ``200000000``."""
    from seqlab.config import parse_size
    from seqlab.errors import ConfigError

    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}; fix: {exc.fix}") from None


def add_target_size_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--target-file-size`` (``seqlab compact``, ``seqlab annotate --compact``)."""
    p.add_argument("--target-file-size", type=file_size, metavar="SIZE",
                   help="the size compacted files are cut at, e.g. 512MB, 1GiB or 200000000 "
                   "(bytes); files below half of it are rewritten (default: 512MiB, "
                   "Iceberg's write.target-file-size-bytes)")


def add_precision_flag(p: argparse.ArgumentParser) -> None:
    """``--precision``, with ``--dtype`` as its older name (``seqlab annotate`` and
    ``seqlab evaluate``)."""
    p.add_argument("--precision", "--dtype", dest="precision", metavar="P",
                   help="what the model runs in: auto, fp32, bf16, fp16 or int8 (int8: CPU "
                   "only, on ONNX Runtime (see seqlab.models.quantize); --dtype names such as "
                   "float32 also work). "
                   "Default auto: bf16 on GPU; on CPU int8 where the model's seqlab.json "
                   "records that int8 was measured not to lose, else fp32")


def add_metrics_flags(p: argparse.ArgumentParser) -> None:
    """``--metrics-pushgateway`` and ``--metrics-job`` (``seqlab annotate``), in a group of
    their own."""
    group = p.add_argument_group("run metrics (Prometheus)")
    group.add_argument("--metrics-pushgateway", metavar="URL",
                       help="when the command ends, push the run's metrics (duration, "
                       "documents by status, words, entities, words/s, input files, failure "
                       "and the last success's time) to this Prometheus Pushgateway, e.g. "
                       "http://pushgateway:9091; a failed push only warns (needs "
                       "'seqlab[metrics]')")
    group.add_argument("--metrics-job", metavar="NAME",
                       help="the job label of the pushed metrics (default: seqlab); the "
                       "group is also keyed by the output table (label table)")


def add_lineage_flags(p: argparse.ArgumentParser) -> None:
    """``--lineage``, ``--lineage-job`` and ``--lineage-parent`` (``seqlab annotate``), in a
    group of their own."""
    group = p.add_argument_group("OpenLineage events (docs/lineage.md)")
    group.add_argument("--lineage", action="store_true", default=None,
                       help="send the run's OpenLineage events (START, then COMPLETE, FAIL or "
                       "ABORT) where OpenLineage's configuration says (OPENLINEAGE_URL, "
                       "OPENLINEAGE_CONFIG or openlineage.yml), and fail without one (that "
                       "configuration alone turns them on; needs 'seqlab[lineage]')")
    group.add_argument("--lineage-job", metavar="NAMESPACE/NAME",
                       help="the job of the events (default: namespace seqlab, or "
                       "OPENLINEAGE_NAMESPACE, and the name annotate:OUTPUT)")
    group.add_argument("--lineage-parent", metavar="NAMESPACE/JOB/RUN_ID",
                       help="the run that started this one, e.g. from Airflow's "
                       "{{ macros.OpenLineageProviderPlugin.lineage_parent_id(task_instance) }} "
                       "(default: OPENLINEAGE_PARENT_ID)")
