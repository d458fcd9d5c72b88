"""Fine-tuning controls that work on any model, by module name: freeze parameters, freeze BatchNorm statistics.

Names are module-name prefixes as ``model.named_modules()`` gives them (``"layer1"``, ``"conv1"``); ``""`` is the
whole model. The application maps its stage names (``stem``, ``layer1`` … ``layer4``) onto them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from cpnet.engine.distributed import unwrap


def _matches(name: str, prefixes: Sequence[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def freeze(model: nn.Module, prefixes: Sequence[str]) -> int:
    """Stop training the parameters under ``prefixes`` (``requires_grad=False``); returns how many scalars. An
    unknown prefix is an error naming it (a typo would otherwise train everything)."""
    model = unwrap(model)
    names = [name for name, _ in model.named_modules()]
    for prefix in prefixes:
        if prefix and not any(n == prefix or n.startswith(prefix + ".") for n in names):
            top = sorted({n.split(".")[0] for n in names if n})
            raise ValueError(f"no module {prefix!r} to freeze; the model's top-level modules are {', '.join(top)}")
    frozen = 0
    for name, param in model.named_parameters():
        if _matches(name, prefixes):  # "layer1.0.conv1.weight" is under "layer1"
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def hold_batchnorm_statistics(model: nn.Module, prefixes: Sequence[str]) -> int:
    """Put the BatchNorms under ``prefixes`` in eval mode, so training uses and keeps their running statistics (call
    after every ``model.train()``); returns how many. Their affine parameters still train unless frozen."""
    held = 0
    for name, module in unwrap(model).named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and _matches(name, prefixes):
            module.eval()
            held += 1
    return held
