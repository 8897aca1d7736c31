"""A model's ``seqlab.json``: what it was trained on and how it wants to be run."""

from __future__ import annotations

import json
from pathlib import Path

from seqlab.errors import ModelError

METADATA_FILE = "seqlab.json"


def read_metadata(source: str) -> dict:
    path = Path(source) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def trained_window(metadata: dict) -> int | None:
    """The example length a seqlab-trained model learned on: its natural annotate window.

    A model trained on 256-subword examples tags worse in 512-subword windows (positions it
    never learned from), so annotate and evaluate default to this length when it is known.
    """
    window = metadata.get("window")
    return int(window) if window else None


def model_temperature(metadata: dict) -> float:
    """The softmax temperature fitted on the model's dev set (``seqlab.json`` ``calibration``,
    written by ``seqlab evaluate --calibrate``), else 1: the tag stage's probabilities are
    ``softmax(logits / T)``.

    >>> model_temperature({"calibration": {"temperature": 1.25}}), model_temperature({})
    (1.25, 1.0)
    """
    temperature = float((metadata.get("calibration") or {}).get("temperature") or 1.0)
    if not temperature > 0:
        raise ModelError(f"the model's seqlab.json has calibration temperature {temperature}",
                         fix="refit it with `seqlab evaluate MODEL DEV --calibrate`, or remove "
                         "the calibration entry")
    return temperature


def recommended_decoder(metadata: dict) -> str | None:
    """The decoder the model's ``seqlab.json`` recommends (``"decoder"``), if any.

    >>> recommended_decoder({"decoder": "viterbi"}), recommended_decoder({})
    ('viterbi', None)
    """
    return metadata.get("decoder") or None


def write_metadata(directory: str | Path, metadata: dict) -> None:
    path = Path(directory) / METADATA_FILE
    path.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")
