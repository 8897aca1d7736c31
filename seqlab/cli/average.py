"""``seqlab average``: one model from several fine-tunes of one base, the mean of their weights
(``seqlab.training.average``)."""

from __future__ import annotations

import argparse

from seqlab.cli.commands import command


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average", help="average the weights of several fine-tunes into one model",
        description="Write TARGET, a model whose weights are the element-wise mean of the "
        "MODELs' (a uniform model soup): fine-tunes of one base encoder on one label set, "
        "typically the same recipe with different --seed. TARGET is a plain checkpoint like a "
        "`seqlab train` output: score it with `seqlab evaluate`, store it compactly with "
        "`seqlab export`. It annotates as fast as one of them.")
    p.add_argument("target", help="directory of the averaged model")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="`seqlab train` outputs or compact models (two or more)")


@command("average")
def average_cli(args: argparse.Namespace) -> int:
    from seqlab.training.average import average_models

    soup = average_models(args.models, args.target)
    seeds = ", ".join(str(entry.get("seed")) for entry in soup["averaged_from"])
    print(f"averaged {len(args.models)} models (seeds {seeds}) into {args.target}; score it "
          f"with: seqlab evaluate {args.target} DEV")
    return 0
