"""Parameter counts: all parameters, and the CPNet supplement's convention."""

from __future__ import annotations

import torch.nn as nn

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def count_params(model: nn.Module) -> int:
    """Number of scalars in every parameter (BN affine and biases included; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_params_paper(model: nn.Module) -> float:
    """The supplement's count, in units of 2^20: conv weights + fc weight + fc bias.

    "Conv weights" are the weights of every conv and linear map inside the network (the CP module's MLP and the
    non-local embeddings are 1×1 convs in the original code), without their biases and without BN; the
    classifier ``model.fc`` adds its bias too. C2D-R18 reads 10.84 and C3D-R18 31.81 with 400 classes.
    """
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, _WEIGHTED))
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear) and fc.bias is not None:
        total += fc.bias.numel()
    return total / 2**20
