"""int8 on CPU: dynamic quantization of a BERT-family tagger's linear layers.

Each ``nn.Linear`` of the encoder but the skipped ones becomes torch's dynamically quantized
linear (fbgemm/x86 kernels): weights int8 with one scale per output channel, activations
quantized on the fly with one scale per micro-batch. Layers named in the model's recipe
(``seqlab.json`` ``precision.int8.skip``: regular expressions searched in the module names;
default ``SKIP``) stay in fp32: the ones where int8 costs the most accuracy, measured on the
shipped models' dev sets (``benchmarks/precision.py``).

Windows, stitching and decoding are those of fp32, and every input row still gives one row.
What differs from fp32 beyond the int8 rounding: the activation scale is taken over a whole
micro-batch, so a window's scores move slightly with its batch neighbours (as kernel choices
make them move on GPU); labels rarely do. A scale per window would remove that but runs one
kernel call per window.

Nothing is calibrated or stored: any BERT-family checkpoint quantizes at load time, in well
under a second.
"""

from __future__ import annotations

import logging
import re
import warnings

import torch
from torch import nn

log = logging.getLogger(__name__)

# Patterns (re.search in module names) of the linear layers left in fp32 unless the model's
# recipe says otherwise: the classification head, and the two projections that write into the
# residual stream (attention output, feed-forward output), whose inputs carry the outliers
# that a single activation scale handles worst. Measured on the shipped ner (CoNLL-2003 dev,
# Viterbi, fp32 0.9376): every linear in int8 0.9311, all but the head 0.9315, all but these
# 0.9363 (benchmarks/precision.py).
SKIP: tuple[str, ...] = ("classifier", r"\.output\.dense$")


def int8_recipe(metadata: dict) -> dict:
    """The model's int8 recipe (``seqlab.json`` ``precision.int8``), else the default.

    >>> int8_recipe({})["skip"] == list(SKIP), int8_recipe({"precision": {"int8": {"skip": []}}})
    (True, {'skip': []})
    """
    recipe = dict((metadata.get("precision") or {}).get("int8") or {})
    recipe["skip"] = list(recipe.get("skip", SKIP))
    return recipe


def quantizable_layers(model: nn.Module, skip: list[str] | tuple[str, ...]) -> list[str]:
    """Names of the ``nn.Linear`` modules of ``model`` that no pattern of ``skip`` matches."""
    patterns = [re.compile(pattern) for pattern in skip]
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(p.search(name) for p in patterns)]


def quantize_model(model: nn.Module, metadata: dict | None = None,
                   inplace: bool = False) -> nn.Module:
    """``model`` (fp32, on CPU, in eval mode) with its linear layers in int8, following the
    model's recipe (``int8_recipe``). ``inplace``: convert ``model`` itself rather than a copy
    (no second copy of the weights in memory while converting)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    recipe = int8_recipe(metadata or {})
    names = quantizable_layers(model, recipe["skip"])
    if torch.backends.quantized.engine not in ("x86", "fbgemm"):
        torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in names},
                                     dtype=torch.qint8, inplace=inplace)
    log.info("int8: %d linear layers quantized, %s left in fp32", len(names),
             ", ".join(recipe["skip"]) or "none")
    return quantized.eval()
