"""A model's ``seqlab.json``: what it was trained on and how it wants to be run.

``seqlab train`` writes it next to the checkpoint; the loaders, the tag stage, the SRL frame
tagger, ``seqlab evaluate`` and the export and calibration tools read it. It is read in one
place, ``read_metadata``, into a ``ModelMetadata``: every entry seqlab acts on becomes a
typed attribute, checked once when the file is read, so that a hand-edited or corrupted file
fails there, naming the file, the entry and the fix, rather than deep inside a forward pass.

The file is shared across seqlab versions (a shipped model outlives the code that trained it),
so ``ModelMetadata`` keeps the whole dict it read: entries this version does not know survive
a read-modify-write (``updated`` or ``dataclasses.replace``, then ``write_metadata``).
``write_metadata`` is the one writer and checks what it writes the same way.

Plain Hugging Face checkpoints have no ``seqlab.json``: they read as an empty
``ModelMetadata``, whose attributes all hold their defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.errors import ModelError
from seqlab.labels import SCHEME_ALIASES, SCHEMES
from seqlab.stages.decode import DECODERS

METADATA_FILE = "seqlab.json"

# How an SRL frame's predicate reaches the encoder (``seqlab.srl.examples.ENCODINGS``, which
# imports torch; a test keeps the two equal).
PREDICATE_ENCODINGS = ("indicator", "segment")
# What ``precision.cpu`` may record, and the int8 backends of ``seqlab.models.quantize``.
CPU_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
INT8_BACKENDS = ("onnxruntime", "torch")

_CALIBRATE_FIX = ("refit it with `seqlab evaluate MODEL DEV --calibrate`, or remove the "
                  "calibration entry")


@dataclass(frozen=True)
class BasePin:
    """The base encoder a model was trained over (``seqlab.json`` ``base``).

    Adapter models store only their difference from the base, so the base's weights are
    pinned by ``sha256``; ``seqlab.models.shipped.resolve_base`` refuses other weights.
    """

    name: str | None = None  # directory or hub id it was trained from
    sha256: str | None = None  # hex sha256 of ``file``; None: the weights were not local
    hub_id: str | None = None  # where to fetch it when it is not installed
    package: str | None = None  # the pip package that ships it
    file: str = "model.safetensors"  # the weights file the hash covers

    def to_dict(self) -> dict[str, Any]:
        """The pin as ``seqlab.json`` holds it."""
        return {"name": self.name, "hub_id": self.hub_id, "package": self.package,
                "file": self.file, "sha256": self.sha256}


class _Invalid(Exception):
    """A value that is not what an entry must hold: what it should be, and how to fix it.
    ``key`` names the nested entry (``temperature`` of ``calibration``)."""

    def __init__(self, wanted: str, *, key: str = "", value: Any = None,
                 fix: str | None = None) -> None:
        super().__init__(wanted)
        self.wanted, self.key, self.value, self.fix = wanted, key, value, fix


def _is(test: Callable[[Any], bool], wanted: str, fix: str | None = None,
        convert: Callable[[Any], Any] = lambda value: value) -> Callable[[Any], Any]:
    """A check: values passing ``test`` become their attribute (``convert``), others fail."""
    def check(value: Any) -> Any:
        if not test(value):
            raise _Invalid(wanted, fix=fix)
        return convert(value)
    return check


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], Any]:
    return _is(lambda value: value in choices, f"one of {', '.join(choices)}")


_text = _is(lambda value: isinstance(value, str) and value != "", "a non-empty string")
_flag = _is(lambda value: isinstance(value, bool), "true or false")
_object = _is(lambda value: isinstance(value, dict), "a JSON object")
_strings = _is(lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
               "a list of strings", convert=tuple)
_objects = _is(lambda value: isinstance(value, list) and all(isinstance(v, dict) for v in value),
               "a list of JSON objects", convert=tuple)
_scheme = _is(lambda value: isinstance(value, str) and SCHEME_ALIASES.get(
    value.lower(), value.lower()) in SCHEMES, f"one of {', '.join(SCHEMES)}")
_window = _is(lambda value: _integer(value) and value > 0, "a positive integer",
              fix="set it to the max_length (subwords) the model was trained with")
_seconds = _is(lambda value: _number(value) and value >= 0, "a number of seconds, 0 or more",
               convert=float)
_temperature = _is(lambda value: _number(value) and value > 0, "a number above 0",
                   fix=_CALIBRATE_FIX, convert=float)


def _counts(value: Any) -> dict[str, int]:
    for key, count in _object(value).items():
        if not _integer(count) or count < 0:
            raise _Invalid("a count, 0 or more", key=key, value=count)
    return value


def _optional(value: dict, key: str, check: Callable[[Any], Any]) -> Any:
    """``value[key]`` checked, None when absent; its errors name the nested key."""
    if value.get(key) is None:
        return None
    try:
        return check(value[key])
    except _Invalid as invalid:
        invalid.key, invalid.value = key, value[key]
        raise


def _base(value: Any) -> BasePin:
    value = _object(value)
    sha = _optional(value, "sha256", _text)
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise _Invalid("64 lower-case hex digits", key="sha256", value=sha,
                       fix="set it to the sha256 of the base encoder's weights file")
    return BasePin(_optional(value, "name", _text), sha, _optional(value, "hub_id", _text),
                   _optional(value, "package", _text),
                   _optional(value, "file", _text) or "model.safetensors")


def _calibration(value: Any) -> dict:
    _optional(_object(value), "temperature", _temperature)
    return value


def _skip(value: Any) -> tuple[str, ...]:
    patterns = _strings(value)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _Invalid(f"a list of regular expressions ({pattern!r}: {exc})") from exc
    return patterns


def _precision(value: Any) -> dict:
    _optional(_object(value), "cpu", _one_of(CPU_PRECISIONS))
    try:
        recipe = _optional(value, "int8", _object) or {}
        _optional(recipe, "backend", _one_of(INT8_BACKENDS))
        _optional(recipe, "skip", _skip)
    except _Invalid as invalid:
        invalid.key = "int8." + invalid.key if invalid.key != "int8" else "int8"
        raise
    return value


# How each entry is checked and turned into its attribute (JSON null counts as absent).
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "task": _text, "scheme": _scheme, "labels": _strings, "base": _base, "data": _object,
    "hyper_parameters": _object, "window": _window, "case_feature": _flag,
    "decoder": _one_of(DECODERS), "calibration": _calibration, "precision": _precision,
    "predicates": _text, "predicate_encoding": _one_of(PREDICATE_ENCODINGS),
    "core_once": _flag, "frames": _counts, "form": _text, "dev_metrics": _object,
    "dev_history": _objects, "dev_scores": _object, "train_seconds": _seconds,
    "train_steps": _object, "versions": _object, "averaged_from": _objects,
}


def _where(path: str | None) -> str:
    return path or f"the model's {METADATA_FILE}"


def _parse(data: Mapping[str, Any], path: str | None) -> dict[str, Any]:
    """The attributes of ``data`` (a ``seqlab.json`` dict), every known entry checked."""
    values: dict[str, Any] = {}
    for key, check in _CHECKS.items():
        if data.get(key) is None:
            continue
        try:
            values[key] = check(data[key])
        except _Invalid as invalid:
            name = f"{key}.{invalid.key}" if invalid.key else key
            value = invalid.value if invalid.key else data[key]
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise ModelError(
                f"{_where(path)}: {name} is {shown}, not {invalid.wanted}",
                fix=invalid.fix or f'set "{name}" in {_where(path)} to {invalid.wanted}, or '
                "remove the entry") from None
    return values


def _plain(value: Any) -> Any:
    """An attribute value as JSON holds it."""
    if isinstance(value, BasePin):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, eq=False)
class ModelMetadata(Mapping[str, Any]):
    """A model's ``seqlab.json``, checked: its entries as typed attributes, and the whole dict.

    Change it with ``updated`` (any entry, unknown ones included) or ``dataclasses.replace``
    (attributes): either way ``to_dict`` is the dict that was read with the changes applied.
    It is also a read-only ``Mapping`` of that dict (``meta["window"]``, ``{**meta}``), for
    code that reads ``seqlab.json`` as plain JSON; seqlab's own code uses the attributes.
    The container attributes share the dict's values: treat them as read-only.
    """

    task: str | None = None  # ner, upos (the CoNLL-U column), tagging, srl or predicates
    scheme: str | None = None  # the label scheme the model predicts (iob2, tags...)
    labels: tuple[str, ...] = ()  # its labels, in id order
    base: BasePin | None = None  # the base encoder, pinned by hash in adapter models
    data: Mapping[str, Any] = field(default_factory=dict)  # train/dev files, hashes, counts
    hyper_parameters: Mapping[str, Any] = field(default_factory=dict)  # the TrainConfig's
    window: int | None = None  # subwords per training example: annotate's default window
    case_feature: bool = False  # the tag stage passes each subword's casing as token type
    decoder: str | None = None  # the decoder it recommends (seqlab.stages.decode.DECODERS)
    calibration: Mapping[str, Any] = field(default_factory=dict)  # fitted temperature, ECE
    precision: Mapping[str, Any] = field(default_factory=dict)  # {cpu: ..., int8: recipe}
    predicates: str | None = None  # SRL: its predicate labeller, relative to its directory
    predicate_encoding: str | None = None  # SRL: indicator or segment
    core_once: bool = False  # SRL: each core role on one span of a frame at most
    frames: Mapping[str, int] = field(default_factory=dict)  # SRL: train/dev frame counts
    form: str | None = None  # how the weights are stored (adapter, low-rank factorisation)
    dev_metrics: Mapping[str, Any] = field(default_factory=dict)  # the kept epoch's dev scores
    dev_history: tuple[Mapping[str, Any], ...] = ()  # dev scores after each epoch
    averaged_from: tuple[Mapping[str, Any], ...] = ()  # seqlab average: what it is the mean of
    dev_scores: Mapping[str, Any] = field(default_factory=dict)  # measured after training
    train_seconds: float | None = None
    train_steps: Mapping[str, Any] = field(default_factory=dict)  # steps, seconds, steps/s
    versions: Mapping[str, Any] = field(default_factory=dict)  # seqlab, transformers, torch
    path: str | None = field(default=None, repr=False)  # the file it was read from
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)  # the dict as read

    def __post_init__(self) -> None:
        """Fold changed attributes into a copy of ``raw`` and check the result; attributes
        left as ``raw`` has them keep the entry exactly as it was written."""
        data, read = self.raw, _parse(self.raw, self.path)
        changed = {}
        for f in dataclasses.fields(self):
            unset = f.default_factory() if f.default is dataclasses.MISSING else f.default
            if f.name in _CHECKS and getattr(self, f.name) != read.get(f.name, unset):
                changed[f.name] = getattr(self, f.name)
        if changed:
            data = copy.deepcopy(dict(data))
            for key, value in changed.items():
                if value is None or (isinstance(value, (Mapping, tuple, list)) and not value):
                    data.pop(key, None)
                else:
                    data[key] = _plain(value)
            for key, value in _parse(data, self.path).items():
                object.__setattr__(self, key, value)
        object.__setattr__(self, "_data", data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = None) -> ModelMetadata:
        """``data`` (a ``seqlab.json`` dict) checked; ``path`` names it in errors."""
        if not isinstance(data, Mapping):
            raise ModelError(f"{_where(path)} holds {type(data).__name__}, not a JSON object",
                             fix=f"write {METADATA_FILE} as one JSON object, or remove it")
        data = copy.deepcopy(dict(data))
        return cls(**_parse(data, path), path=path, raw=data)

    @classmethod
    def of(cls, value: ModelMetadata | Mapping[str, Any] | None,
           path: str | None = None) -> ModelMetadata:
        """``value`` as ``ModelMetadata``: itself, a plain dict checked, or empty for None."""
        if isinstance(value, ModelMetadata):
            return value
        return cls() if value is None else cls.from_dict(value, path)

    def updated(self, **entries: Any) -> ModelMetadata:
        """A copy with ``entries`` set (None removes one), checked; other entries kept."""
        data = copy.deepcopy(dict(self._data))
        for key, value in entries.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = _plain(value)
        return ModelMetadata.from_dict(data, self.path)

    def to_dict(self) -> dict[str, Any]:
        """The dict as read, unknown entries included, with the changes made since."""
        return copy.deepcopy(dict(self._data))

    @property
    def temperature(self) -> float:
        """The softmax temperature fitted on the dev set (``calibration.temperature``), else
        1: the tag stage's probabilities are ``softmax(logits / T)``."""
        return float(self.calibration.get("temperature") or 1.0)

    @property
    def cpu_precision(self) -> str | None:
        """What ``--precision auto`` runs on CPU (``precision.cpu``): int8 where it was
        measured to stay close to fp32 on the dev set."""
        return self.precision.get("cpu")

    @property
    def int8(self) -> Mapping[str, Any]:
        """The int8 recipe as written (``precision.int8``: backend, skip, measurements);
        ``seqlab.models.quantize.int8_recipe`` fills in the defaults."""
        return self.precision.get("int8") or {}

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        shown = [f"{k}={getattr(self, k)!r}" for k in _CHECKS
                 if isinstance(getattr(self, k), (str, int, float))]
        return f"ModelMetadata({', '.join(shown + [f'path={self.path!r}'] * bool(self.path))})"


def read_metadata(source: str | Path) -> ModelMetadata:
    """The checked ``seqlab.json`` of the model directory ``source``; empty where it has
    none (plain Hugging Face checkpoints, hub ids). Raises ``ModelError`` naming the file and
    the entry for a file that is no JSON object or holds a value seqlab cannot use."""
    path = Path(source) / METADATA_FILE
    if not path.is_file():
        return ModelMetadata()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} cannot be read as JSON: {exc}",
                         fix=f"repair {path} (or remove it to run the model without "
                         "seqlab's metadata)") from exc
    return ModelMetadata.from_dict(data, str(path))


def write_metadata(directory: str | Path, metadata: ModelMetadata | Mapping[str, Any]) -> None:
    """Write ``metadata`` as ``directory``'s ``seqlab.json``, checked first (a plain dict
    is accepted too): a value no reader could use is refused before it reaches the file."""
    path = Path(directory) / METADATA_FILE
    checked = ModelMetadata.of(metadata, str(path))
    if checked.path is None or Path(checked.path) != path:
        checked = ModelMetadata.from_dict(checked.to_dict(), str(path))
    path.write_text(json.dumps(checked.to_dict(), indent=2, sort_keys=False) + "\n")


def trained_window(metadata: ModelMetadata | Mapping[str, Any]) -> int | None:
    """The example length a seqlab-trained model learned on: its natural annotate window.

    A model trained on 256-subword examples tags worse in 512-subword windows (positions it
    never learned from), so annotate and evaluate default to this length when it is known.

    >>> trained_window(ModelMetadata(window=256)), trained_window(ModelMetadata())
    (256, None)
    """
    return ModelMetadata.of(metadata).window


def model_temperature(metadata: ModelMetadata | Mapping[str, Any]) -> float:
    """The softmax temperature fitted on the model's dev set (``seqlab.json`` ``calibration``,
    written by ``seqlab evaluate --calibrate``), else 1: the tag stage's probabilities are
    ``softmax(logits / T)``. A temperature of 0 or less is refused when the file is read.

    >>> model_temperature(ModelMetadata(calibration={"temperature": 1.25}))
    1.25
    >>> model_temperature(ModelMetadata())
    1.0
    """
    return ModelMetadata.of(metadata).temperature


def recommended_decoder(metadata: ModelMetadata | Mapping[str, Any]) -> str | None:
    """The decoder the model's ``seqlab.json`` recommends (``"decoder"``), if any.

    >>> recommended_decoder(ModelMetadata(decoder="viterbi")), recommended_decoder({})
    ('viterbi', None)
    """
    return ModelMetadata.of(metadata).decoder
