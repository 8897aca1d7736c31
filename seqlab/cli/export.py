"""``seqlab export``: the compact form of a ``seqlab train`` output, the form the shipped
models take (``seqlab.models.export``)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from seqlab.cli.commands import command

DEFAULT_RANK = 128  # the shipped ner, upos and srl: rank 128 loses 0.4 F1 on SRL, less on ner


def add_commands(sub: argparse._SubParsersAction) -> None:
    from seqlab.models.metadata import CPU_PRECISIONS, INT8_BACKENDS
    from seqlab.stages.decode import DECODERS

    p = sub.add_parser("export", help="build the compact form of a trained model",
                       description="Write TARGET, a model directory that stores only what "
                       "training changed over the base encoder, whose weights it pins by hash: "
                       "a --lora-r training output keeps its adapter, a full fine-tune is "
                       "stored as a low-rank factorisation of each changed matrix.")
    p.add_argument("trained", help="directory `seqlab train --out` wrote")
    p.add_argument("target", help="directory of the compact model (annotate loads it with "
                   "--model TARGET)")
    p.add_argument("--rank", type=int, default=DEFAULT_RANK,
                   help="a full fine-tune: rank of each matrix's factorisation")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8,
                   help="a full fine-tune: int8 factors with one scale per row, or fp16")
    recipe = p.add_argument_group(
        "recipe", "what TARGET's seqlab.json recommends to annotate and evaluate (each one "
        "can still be overridden there by its own flag)")
    recipe.add_argument("--decoder", choices=DECODERS,
                        help="the decoder --decoder auto picks (measure both with seqlab "
                        "evaluate --decoder first)")
    recipe.add_argument("--cpu-precision", choices=CPU_PRECISIONS,
                        help="what --precision auto runs on CPU; int8 only where seqlab "
                        "evaluate --precision int8 loses no more than you accept against fp32")
    recipe.add_argument("--int8-backend", choices=INT8_BACKENDS,
                        help="the int8 backend (default onnxruntime)")
    recipe.add_argument("--predicates", metavar="DIR",
                        help="SRL: an exported predicate labeller (task predicates), copied "
                        "into TARGET/predicates and used when no gold predicates are given")
    recipe.add_argument("--core-once", action=argparse.BooleanOptionalAction,
                        help="SRL: each core role on one span of a frame at most")


@command("export")
def export_cli(args: argparse.Namespace) -> int:
    from seqlab.errors import ModelError
    from seqlab.models.export import export_adapter_model, export_low_rank_model
    from seqlab.models.metadata import read_metadata
    from seqlab.models.shipped import ADAPTER_CONFIG, BASE_HUB_ID, base_encoder

    trained = Path(args.trained)
    if not trained.is_dir():
        raise ModelError(f"{trained} is not a directory",
                         fix="pass the directory `seqlab train --out` wrote")
    if args.rank < 1:
        raise ModelError(f"--rank {args.rank} is not a rank", fix="pass --rank 1 or more")
    base = read_metadata(str(trained)).base
    if base is None or not base.sha256:
        raise ModelError(f"{trained}/seqlab.json records no base encoder with its sha256",
                         fix="export a model that `seqlab train` wrote (its seqlab.json pins "
                         "the base it was tuned from)")
    # over the shipped models' base, the pin names its package and hub id, so the model loads
    # wherever seqlab is installed; over another base, the name it was trained from
    shipped = base.name in (base_encoder(), BASE_HUB_ID)
    pins = {"hub_id": "default", "package": "default"} if shipped else \
        {"hub_id": None, "package": None}
    if (trained / "adapter" / ADAPTER_CONFIG).is_file():
        target = export_adapter_model(trained, args.target, **pins)
        kind = "LoRA adapter"
    else:
        target = export_low_rank_model(trained, args.target, rank=args.rank, bits=args.bits,
                                       **pins)
        kind = f"rank-{args.rank} factorisation, {'int8' if args.bits == 8 else 'fp16'} factors"
    recorded = record_recipe(Path(target), decoder=args.decoder, cpu=args.cpu_precision,
                             backend=args.int8_backend, predicates=args.predicates,
                             core_once=args.core_once)
    size = sum(f.stat().st_size for f in Path(target).rglob("*") if f.is_file())
    print(f"exported {trained} to {target} ({kind}, {size / 1e6:.1f} MB)"
          + (f"; recipe: {', '.join(recorded)}" if recorded else ""))
    return 0


def record_recipe(target: Path, decoder: str | None = None, cpu: str | None = None,
                  backend: str | None = None, predicates: str | None = None,
                  core_once: bool | None = None) -> list[str]:
    """Record in ``target``'s seqlab.json what it recommends to annotate and evaluate; return
    the entries set, as ``key=value``. A predicate labeller is copied in beside it."""
    from seqlab.errors import ModelError
    from seqlab.models.metadata import read_metadata, write_metadata

    metadata = read_metadata(str(target))
    entries: dict = {}
    if decoder:
        entries["decoder"] = decoder
    if cpu or backend:
        precision = dict(metadata.precision)
        if cpu:
            precision["cpu"] = cpu
        if backend or cpu == "int8":
            precision["int8"] = {**precision.get("int8", {}),
                                 "backend": backend or "onnxruntime"}
        entries["precision"] = precision
    if predicates:
        source = Path(predicates)
        labeller = read_metadata(str(source)) if source.is_dir() else None
        if labeller is None or labeller.task != "predicates":
            raise ModelError(f"--predicates {predicates} is not a predicate labeller",
                             fix="pass the directory seqlab export wrote for a model trained "
                             "with seqlab train --task predicates")
        if metadata.task != "srl":
            raise ModelError(f"--predicates applies to SRL models; {target} is "
                             f"{metadata.task or 'untyped'}", fix="leave --predicates out")
        shutil.copytree(source, target / "predicates", dirs_exist_ok=True)
        entries["predicates"] = "predicates"
    if core_once is not None:
        if metadata.task != "srl":
            raise ModelError(f"--core-once applies to SRL models; {target} is "
                             f"{metadata.task or 'untyped'}", fix="leave --core-once out")
        entries["core_once"] = core_once
    if entries:
        write_metadata(target, metadata.updated(**entries))
    return [f"{key}={value if key != 'precision' else value.get('cpu', '-')}"
            for key, value in entries.items()]
