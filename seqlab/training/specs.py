"""What ``seqlab train --train`` says about each set of a training mixture.

A spec is ``PATH[:OPTION]...``, each option:

- a format (``conll``, ``wnut``, ``conllu``, ``uner``, ``parquet``), or ``format=NAME``;
- a label mapping, named (``conll2003``, ``uner``, ``wnut17``) or written out
  (``labels=person=PER,group=ORG,product=?``): each of the set's types becomes a model type,
  ``O`` (its spans count as outside) or ``?`` (an entity of a type the set cannot tell); a
  named mapping and pairs combine (``labels=wnut17,group=?``); the ``uner`` format maps with
  ``uner`` unless told otherwise;
- ``weight=W``: how often each of the set's documents is seen per epoch: 2 twice, 0.5 a seeded
  half of them (the same half all run long).

Segments after the path's last ``/`` that follow a ``:`` are options, so URLs (``s3://...``)
keep their scheme; a file whose name holds ``:`` is taken whole when it exists. Parsing is
cheap and reads no data: the configuration checks specs here before any work starts, and
``seqlab.training.mixture`` reads the sets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from seqlab.errors import ConfigError
from seqlab.training.formats import FORMATS, format_of
from seqlab.training.partial import UNKNOWN

# Named label mappings of public sets. WNUT-17's ``group`` (sports teams, bands, parties,
# leagues, agencies: "Green Day", "#Steelers", "GOP", "NBA") is what CoNLL-2003 and Universal NER
# tag ORG; its ``product`` and ``creative-work`` would be CoNLL's MISC or nothing: unknown.
MAPPINGS: dict[str, dict[str, str]] = {
    "conll2003": {},
    "uner": {"OTH": UNKNOWN},
    "wnut17": {"person": "PER", "location": "LOC", "corporation": "ORG", "group": "ORG",
               "product": UNKNOWN, "creative-work": UNKNOWN},
}
# the mapping a format implies when the spec names none
FORMAT_MAPPINGS = {"uner": "uner"}
KEYS = ("format", "labels", "weight")
_UNKNOWN_WORDS = (UNKNOWN, "unknown")


@dataclass(frozen=True)
class TrainSet:
    """One labelled set of a mixture: where it is, how to read it and how much to use it."""

    path: str
    format: str | None = None
    mapping: tuple[tuple[str, str], ...] = ()  # (its type, model type / "O" / "?")
    weight: float = 1.0
    options: bool = False  # whether the spec carried any option

    @classmethod
    def parse(cls, spec: str, flag: str = "--train") -> TrainSet:
        """``PATH[:OPTION]...`` (see the module docstring).

        >>> TrainSet.parse("data/train.iob2:weight=0.5").mapping
        (('OTH', '?'),)
        >>> s = TrainSet.parse("s3://b/wnut.conll:wnut:wnut17,group=?")
        >>> s.path, s.format, dict(s.mapping)["group"]
        ('s3://b/wnut.conll', 'wnut', '?')
        """
        path, options = _split(spec)
        values: dict[str, str] = {}
        for option in options:
            key, value = _option(f"{flag} {spec}", option)
            values[key] = value
        fmt = values.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise ConfigError(f"{flag} {spec}: unknown format {fmt!r}",
                              fix=f"use one of {', '.join(FORMATS)}")
        default = FORMAT_MAPPINGS.get(format_of(path, fmt), "")
        mapping = parse_mapping(values.get("labels", default), f"{flag} {spec}")
        try:
            weight = float(values.get("weight", 1.0))
        except ValueError:
            weight = -1.0
        if not weight > 0 or weight == float("inf"):
            raise ConfigError(f"{flag} {spec}: weight {values['weight']!r} is not a number "
                              "above 0", fix="pass weight=1 (each document once an epoch), "
                              "weight=2 (twice) or weight=0.5 (half of them)")
        return cls(path, fmt, tuple(mapping.items()), weight, bool(options))


def _split(spec: str) -> tuple[str, list[str]]:
    """The path and the options after it: segments after the last ``:`` are options until one
    holds a ``/`` or ``\\`` (a URL's ``s3://...``) or the whole spec is an existing file."""
    if os.path.exists(spec):
        return spec, []
    parts = spec.split(":")
    options: list[str] = []
    while len(parts) > 1 and not any(c in parts[-1] for c in "/\\"):
        options.insert(0, parts.pop())
    return ":".join(parts), options


def _option(where: str, option: str) -> tuple[str, str]:
    key, equals, value = option.partition("=")
    if equals and key in KEYS:
        return key, value
    if option in FORMATS:
        return "format", option
    if option.split(",")[0] in MAPPINGS:
        return "labels", option
    raise ConfigError(f"{where}: {option!r} is neither a format, a label mapping nor "
                      f"one of {'=, '.join(KEYS)}=",
                      fix=f"use a format ({', '.join(FORMATS)}), a label mapping "
                      f"({', '.join(MAPPINGS)}) or labels=TYPE=TARGET,... (a path whose file "
                      "name holds ':' is taken whole only when the file exists)")


def parse_mapping(text: str, where: str = "--train") -> dict[str, str]:
    """Named mappings and ``TYPE=TARGET`` pairs, comma separated, later ones winning.

    >>> parse_mapping("uner,PROD=unknown,EVENT=O")
    {'OTH': '?', 'PROD': '?', 'EVENT': 'O'}
    """
    mapping: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        if item in MAPPINGS:
            mapping.update(MAPPINGS[item])
        elif "=" in item:
            source, _, target = item.partition("=")
            mapping[source.strip()] = UNKNOWN if target.strip() in _UNKNOWN_WORDS \
                else target.strip()
        else:
            raise ConfigError(f"{where}: label mapping {item!r} is neither a named "
                              "mapping nor TYPE=TARGET",
                              fix=f"use one of {', '.join(MAPPINGS)} or pairs such as "
                              "person=PER,product=? (? : a type the set cannot tell, O: none)")
    return mapping


def is_mixture(train: str | Sequence[str]) -> bool:
    """Whether ``--train`` names a mixture: several sets, or one with options."""
    if isinstance(train, str):
        return False
    return len(train) > 1 or any(TrainSet.parse(spec).options for spec in train)
