"""Typed run configuration, from command-line flags, a YAML file, or Python keywords."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from seqlab.engine import check_engine
from seqlab.errors import ConfigError
from seqlab.labels import normalize_scheme
from seqlab.stages import WINDOW_CUTS
from seqlab.stages.decode import AGGREGATIONS, DECODERS, check_choice

TABLE_FORMATS = ("parquet", "iceberg", "delta")
# the size ``seqlab compact`` rewrites an incremental table's small files into: Iceberg's
# write.target-file-size-bytes default, 512 MiB
DEFAULT_TARGET_FILE_SIZE = 512 * 2**20
SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}

DEFAULT_MODEL = "ner"
DEFAULT_WINDOW = 512
# What an option is, beside what lands (``AnnotateConfig`` marks its fields with them):
# RESUMABLE options may change when an unfinished run is resumed (where and how fast it runs,
# how its files are cut; every other option changes what lands, so a resumed run must match
# it), TABLE options say where an incremental table is kept rather than what is annotated.
RESUME = {"resumable": True}
TABLE = {"table": True}
# What the forward pass runs in (seqlab.models.load.resolve_precision); --dtype's names map
# onto them
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

_PRECISION_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "qint8": "int8"}


ANNOTATE_PREDICATES = ("all", "verbs")  # which predicates an SRL model labels in annotate


def normalize_precision(precision: str) -> str:
    """``precision`` in the names ``--precision`` takes (``--dtype``'s names map onto them).

    >>> normalize_precision("bfloat16"), normalize_precision("INT8")
    ('bf16', 'int8')
    """
    key = _PRECISION_NAMES.get(str(precision).lower(), str(precision).lower())
    if key not in PRECISIONS:
        raise ConfigError(f"unknown --precision {precision!r}",
                          fix=f"use one of {', '.join(PRECISIONS)}")
    return key


def parse_size(size: int | str) -> int:
    """A number of bytes from ``512MB``, ``1GiB``, ``200000000`` (MB: 10**6, MiB: 2**20).

    >>> parse_size("512MB"), parse_size("1GiB"), parse_size("200000000"), parse_size(64)
    (512000000, 1073741824, 200000000, 64)
    """
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        text = str(size).strip().replace(" ", "")
        number = text.rstrip("kKmMgGtTiIbB")
        unit = text[len(number):].upper()
        try:
            value = round(float(number) * SIZE_UNITS[unit])
        except (KeyError, ValueError):
            raise ConfigError(f"{size!r} is not a size",
                              fix="give a size such as 512MB, 1GiB or 200000000 (bytes)") \
                from None
    if value <= 0:
        raise ConfigError(f"a size must be positive, not {size!r}",
                          fix="give a size such as 512MB, 1GiB or 200000000 (bytes)")
    return value


# Python keywords spelled as the command line's flags (``--drop-text``), and older names
ALIASES = {"drop_text": ("keep_text", lambda value: not value),
           "dtype": ("precision", normalize_precision)}


def settle_window(max_length: int | None, stride: int | None, trained: int | None,
                  limit: int | None = None) -> tuple[int, int]:
    """The window and stride to use: the ones asked for, else the length the model was trained
    on (else 512, capped at the tokenizer's ``limit`` when known) and a quarter of the window.

    >>> settle_window(None, None, 256)
    (256, 64)
    >>> settle_window(128, 0, 256)
    (128, 0)
    >>> settle_window(None, None, None, limit=128)
    (128, 32)
    """
    default = trained or DEFAULT_WINDOW
    if limit:
        default = min(default, limit)
    max_length = max_length or default
    return max_length, stride if stride is not None else max_length // 4


def settle_decoder(asked: str | None, recommended: str | None) -> str:
    """The decoder to use: the one asked for, else the model's recommendation, else greedy.

    >>> settle_decoder(None, "viterbi"), settle_decoder("greedy", "viterbi")
    ('viterbi', 'greedy')
    """
    if asked is not None:
        return check_choice(asked, DECODERS, "--decoder")
    if recommended is None:
        return "greedy"
    if recommended not in DECODERS:
        raise ConfigError(f"the model recommends the decoder {recommended!r}, which this "
                          "seqlab does not know",
                          fix=f"pass --decoder ({', '.join(DECODERS)}), or fix \"decoder\" in "
                          "the model's seqlab.json")
    return recommended


@dataclass
class AnnotateConfig:
    """Everything ``seqlab annotate`` needs. Field names match the CLI flags."""

    input: str
    output: str
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    engine: str = field(default="local", metadata=RESUME)
    text_column: str = "text"
    id_column: str | None = None
    # None: the window the model was trained on (seqlab.json "window"), else 512; stride 1/4
    max_length: int | None = None
    stride: int | None = None
    # longer texts land as too_long rows. A document's windows are tagged in bounded passes,
    # so memory grows slowly with its length and the default lets books through (the Iliad is
    # 1.06 M characters): peak RSS 0.7 GB for a 1.06 M-character document, 1.5 GB for 6.1 M
    # (int8 on CPU, about 150 MB per million characters), so about 2 GB at the limit
    max_chars: int = 10_000_000
    batch_tokens: int = field(default=16384, metadata=RESUME)
    batch_docs: int = field(default=256, metadata=RESUME)
    rows_per_part: int = field(default=100_000, metadata=RESUME)
    # None: the decoder the model recommends (seqlab.json "decoder"), else greedy
    decoder: str | None = None
    aggregation: str = "first"
    # entities scoring below this are left out of entities, mentions and aggregates
    min_score: float | None = None
    # each token also carries its top_k most probable labels (0: none, the column is null)
    top_k: int = 0
    scheme: str | None = None
    device: str = field(default="auto", metadata=RESUME)
    # auto: bf16 on GPU; on CPU int8 where the model records it loses nothing, else fp32
    precision: str = "auto"
    # sentence: windows end where sentences do, without overlap; fixed: every window overlaps
    window_cuts: str = "sentence"
    # semantic role labellers: the frames of all predicates the predicate labeller finds, or
    # of its verbal ones only (CoNLL-2005-style verbal SRL)
    predicates: str = "all"
    # semantic role labellers: their predicate labeller (None: the one seqlab.json names)
    predicate_model: str | None = None
    limit: int | None = None
    keep_text: bool = True
    overwrite: bool = field(default=False, metadata=RESUME)
    # take over the output's lease from a run whose heartbeat stopped (seqlab.store.lease)
    take_over: bool = field(default=False, metadata=RESUME)
    trust_remote_code: bool = False
    # OUTPUT as a table root that accumulates runs: only new or changed input files are
    # annotated; parts land in run_date=YYYY-MM-DD partitions (seqlab.store.incremental)
    incremental: bool = False
    # with incremental: the rows of input files that are gone leave the live table too
    prune: bool = field(default=False, metadata=RESUME)
    # with incremental: the run's partition, YYYY-MM-DD (None: today, UTC). A resumed run
    # keeps the date it started with.
    run_date: str | None = field(default=None, metadata=RESUME)
    # parquet: the partitioned folders are the table; iceberg: each run is also committed to
    # Iceberg tables through pyiceberg (catalog as configured for pyiceberg); delta: to Delta
    # Lake tables whose roots are the table folders (seqlab.store.delta)
    table_format: str = field(default="parquet", metadata=TABLE)
    catalog: str | None = field(default=None, metadata=TABLE)
    namespace: str = field(default="seqlab", metadata=TABLE)
    # with incremental: compact the table after the run (seqlab.store.compact), its small
    # files rewritten into files of target_file_size bytes (None: DEFAULT_TARGET_FILE_SIZE)
    compact: bool = field(default=False, metadata=RESUME)
    target_file_size: int | str | None = field(default=None, metadata=RESUME)
    # push the run's metrics to this Prometheus Pushgateway when the command ends, under the
    # job metrics_job (None: seqlab), grouped by the output table (seqlab.run.metrics)
    metrics_pushgateway: str | None = field(default=None, metadata=RESUME)
    metrics_job: str | None = field(default=None, metadata=RESUME)
    # OpenLineage events for each run (seqlab.run.lineage): lineage asks for them (OpenLineage's
    # own configuration turns them on too); lineage_job: NAMESPACE/NAME or NAME of their job;
    # lineage_parent: NAMESPACE/JOB/RUN_ID of the run that started this one
    lineage: bool = field(default=False, metadata=RESUME)
    lineage_job: str | None = field(default=None, metadata=RESUME)
    lineage_parent: str | None = field(default=None, metadata=RESUME)
    storage_options: dict[str, Any] = field(default_factory=dict, metadata=RESUME)
    # engine-specific settings (e.g. Ray's address and actor counts), read by that engine
    engine_options: dict[str, Any] = field(default_factory=dict, metadata=RESUME)

    def __post_init__(self) -> None:
        check_engine(self.engine)  # any engine an entry point registers
        if self.decoder is not None:
            check_choice(self.decoder, DECODERS, "--decoder")
        check_choice(self.aggregation, AGGREGATIONS, "--aggregation")
        self.precision = normalize_precision(self.precision)
        check_choice(self.window_cuts, WINDOW_CUTS, "--window-cuts")
        check_choice(self.predicates, ANNOTATE_PREDICATES, "--predicates")
        if self.scheme:
            self.scheme = normalize_scheme(self.scheme)
        for name in ("max_length", "max_chars", "batch_tokens", "batch_docs", "rows_per_part"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive",
                                  fix=f"pass a positive --{name.replace('_', '-')}")
        if self.limit is not None and self.limit < 0:
            raise ConfigError("--limit must be 0 or more", fix="pass a non-negative --limit")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be 0 or more, not {self.top_k}",
                              fix="pass --top-k 0 (off) or the number of labels to keep")
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"--min-score {self.min_score} is not a probability",
                              fix="pass a --min-score between 0 and 1 (entity scores are "
                              "softmax probabilities)")
        self._check_incremental()
        if self.metrics_pushgateway is not None or self.metrics_job is not None:
            from seqlab.run.metrics import check_options

            self.metrics_pushgateway = check_options(self.metrics_pushgateway, self.metrics_job)

    def _check_incremental(self) -> None:
        check_choice(self.table_format, TABLE_FORMATS, "--table-format")
        if self.target_file_size is not None:
            if not self.compact:
                raise ConfigError("--target-file-size sizes the files of --compact",
                                  fix="add --compact, or drop --target-file-size")
            self.target_file_size = parse_size(self.target_file_size)
        if not self.incremental:
            given = [flag for flag, on in (("--prune", self.prune),
                                           ("--compact", self.compact),
                                           ("--run-date", self.run_date is not None),
                                           (f"--table-format {self.table_format}",
                                            self.table_format != "parquet"))
                     if on]
            if given:
                raise ConfigError(f"{', '.join(given)} only applies to incremental runs",
                                  fix="add --incremental (OUTPUT becomes a table root that "
                                  "accumulates runs)")
            return
        if self.overwrite:
            raise ConfigError("--overwrite replaces a single run, and an incremental OUTPUT "
                              "keeps every run",
                              fix="drop --overwrite; to start the table over, delete OUTPUT")
        if self.limit is not None:
            raise ConfigError("--limit leaves input files half annotated, which an "
                              "incremental table would then count as done",
                              fix="drop --limit, or try the options on a separate OUTPUT "
                              "without --incremental")
        if self.run_date is not None:
            try:
                date.fromisoformat(self.run_date)
            except ValueError:
                raise ConfigError(f"--run-date {self.run_date!r} is not a date",
                                  fix="pass --run-date YYYY-MM-DD") from None
        if self.table_format == "iceberg" and not self.catalog:
            raise ConfigError("--table-format iceberg needs the catalog to commit to",
                              fix="pass --catalog NAME, configured as pyiceberg reads it "
                              "(~/.pyiceberg.yaml or PYICEBERG_CATALOG__NAME__URI=...)")
        if self.table_format == "delta" and self.catalog:
            raise ConfigError("--catalog names an Iceberg catalog; the Delta tables of "
                              "--table-format delta are the table folders themselves",
                              fix="drop --catalog (or use --table-format iceberg)")

    def with_window(self, trained: int | None) -> AnnotateConfig:
        """This config with the window settled: ``--max-length``, else the length the model
        was trained on, else 512; ``--stride``, else a quarter of the window.

        >>> AnnotateConfig("in", "out").with_window(256).stride
        64
        >>> AnnotateConfig("in", "out", max_length=128).with_window(256).max_length
        128
        """
        max_length, stride = settle_window(self.max_length, self.stride, trained)
        return dataclasses.replace(self, max_length=max_length, stride=stride)

    def with_decoder(self, recommended: str | None) -> AnnotateConfig:
        """This config with the decoder settled: ``--decoder``, else the one the model
        recommends (``seqlab.json`` ``"decoder"``, see
        ``seqlab.models.metadata.recommended_decoder``), else greedy.

        >>> AnnotateConfig("in", "out").with_decoder("viterbi").decoder
        'viterbi'
        >>> AnnotateConfig("in", "out", decoder="greedy").with_decoder("viterbi").decoder
        'greedy'
        >>> AnnotateConfig("in", "out").with_decoder(None).decoder
        'greedy'
        """
        decoder = settle_decoder(self.decoder, recommended)
        return dataclasses.replace(self, decoder=decoder)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the output: a resumed run must match them."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RESUMABLE}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _marked(kind: dict[str, bool]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(AnnotateConfig)
                 if kind.items() <= f.metadata.items())


RESUMABLE = _marked(RESUME)  # options a resumed run may change
TABLE_OPTIONS = _marked(TABLE)  # where an incremental table is kept


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Options from a YAML file (keys as in ``AnnotateConfig``, dashes or underscores)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}",
                          fix="pass a readable YAML file to --config") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} is not a mapping",
                          fix="write the options as 'key: value' lines")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(**options: Any) -> AnnotateConfig:
    """An ``AnnotateConfig`` from keywords, refusing unknown ones with the valid names.

    >>> build_config(input="in", output="out", drop_text=True).keep_text
    False
    """
    for alias, (name, convert) in ALIASES.items():
        if alias in options:
            options[name] = convert(options.pop(alias))
    known = {f.name for f in dataclasses.fields(AnnotateConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown options {unknown}",
                          fix=f"valid options are {', '.join(sorted(known | set(ALIASES)))}")
    return AnnotateConfig(**options)
