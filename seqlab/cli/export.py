"""``seqlab export``: the compact form of a ``seqlab train`` output, the form the shipped
models take (``seqlab.models.export``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from seqlab.cli.commands import command

DEFAULT_RANK = 128  # the shipped ner, upos and srl: rank 128 loses 0.4 F1 on SRL, less on ner


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    size = sum(f.stat().st_size for f in Path(target).rglob("*") if f.is_file())
    print(f"exported {trained} to {target} ({kind}, {size / 1e6:.1f} MB)")
    return 0
