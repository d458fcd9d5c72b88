"""Parameter counts: all parameters, the CPNet supplement's convention, and the supplement's own figures.

The supplement (Table 1, ResNet-18 on Kinetics, 400 classes) prints counts in its own convention, in units of 2^20
and truncated to two decimals: C2D 10.84, C3D 31.81, ARTNet 31.81, NL 10.88, CPNet 10.86 (``SUPPLEMENT_TABLE1``).
Ours: C2D 10.84 and C3D 31.81 are reproduced exactly. NL-R18 (an NL block after all six blocks of res3–res5)
counts 12.15 and CPNet-R18 (six CP modules) 11.58: the printed figures are C2D plus **one** res3 module each — a CP
module with MLP [32, 64] at C = 128 is (2·128+3)·32 + 32·64 + 64·128 = 18,528 weights (+0.0177: 10.8630 → 10.86)
and an NL block at C = 128 is 3·128·64 + 64·128 = 32,768 (+0.0313: 10.8765, which the truncation that gives C2D's
10.84 prints as 10.87, rounding as 10.88). ``ONE_MODULE_VARIANTS`` builds those single-module models, so the match
is measured rather than asserted. ARTNet-R18 with the faithful SMART block counts 33.55 (see
:mod:`cpnet.models.smart`).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

# Supplement, Table 1: parameter counts in its convention (2^20 units, two decimals), ResNet-18, 400 classes. The
# supplement prints no count for the other presets.
SUPPLEMENT_TABLE1: dict[str, float] = {"c2d_r18": 10.84, "c3d_r18": 31.81, "artnet_r18": 31.81, "nl_r18": 10.88,
                                       "cpnet_r18": 10.86}

# The supplement's NL-R18 and CPNet-R18 figures read as C2D-R18 + one module at res3 (block 0; block 1 has the same
# size): the preset with only that module, and the base model it extends.
ONE_MODULE_VARIANTS: dict[str, dict[str, Any]] = {
    "cpnet_r18": {"base": "c2d_r18", "options": {"cp_at": {"layer2": (0,)}}},
    "nl_r18": {"base": "c2d_r18", "options": {"nl_at": {"layer2": (0,)}}},
}


def count_params(model: nn.Module) -> int:
    """Number of scalars in every parameter (BN affine and biases included; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_weights_paper(model: nn.Module) -> int:
    """The supplement's count as an integer: conv weights + fc weight + fc bias.

    "Conv weights" are the weights of every conv and linear map inside the network (the CP module's MLP and the
    non-local embeddings are 1×1 convs in the original code), without their biases and without BN; the
    classifier ``model.fc`` adds its bias too. Fixed (non-learned) weights, such as the SMART block's pair
    pooling, are buffers and are not counted.
    """
    total = sum(m.weight.numel() for m in model.modules()
                if isinstance(m, _WEIGHTED) and isinstance(m.weight, nn.Parameter))
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear) and fc.bias is not None:
        total += fc.bias.numel()
    return total


def count_params_paper(model: nn.Module) -> float:
    """The supplement's count in its units of 2^20 (:func:`count_weights_paper`). C2D-R18 reads 10.84 and C3D-R18
    31.81 with 400 classes (truncated to two decimals, as the supplement prints them)."""
    return count_weights_paper(model) / 2**20
