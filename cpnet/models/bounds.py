"""Size bounds for models built from options that may come from a file (a config, a checkpoint's ``model.options``).

A checkpoint names its model by preset and options, so ``width=10**6`` or ``num_classes=10**9`` in one would make
the loading process try to allocate terabytes. :func:`cpnet.models.create_model` therefore counts the parameters of
the model it is asked for on PyTorch's meta device (shapes only, no storage: milliseconds) and refuses one above
:func:`max_params` with a ValueError naming the options, before anything is allocated. ``VideoResNet`` also refuses
more than :data:`MAX_BLOCKS` residual blocks, as the count itself builds every block's modules.

The limit is the operator's, not the file's: only the environment variable ``CPNET_MAX_PARAMS`` raises (or lowers)
it, so no config or checkpoint option can lift it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn as nn

from cpnet.models.params import count_params

__all__ = ["MAX_BLOCKS", "MAX_PARAMS", "PARAMS_ENV", "max_params", "params_on_meta"]

MAX_PARAMS = 2**30  # 1,073,741,824 parameters (4 GiB in float32): 24× the largest preset, cpnet_r101's 44.3 M
MAX_BLOCKS = 1000  # residual blocks over the four stages: 30× the deepest preset (R101, 33 blocks)
PARAMS_ENV = "CPNET_MAX_PARAMS"


def max_params() -> int:
    """The largest parameter count ``create_model`` builds: ``$CPNET_MAX_PARAMS`` when set, else :data:`MAX_PARAMS`."""
    raw = os.environ.get(PARAMS_ENV, "").strip()
    if not raw:
        return MAX_PARAMS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{PARAMS_ENV} must be a positive integer (a parameter count), got {raw!r}")
    return value


def params_on_meta(build: Callable[[], nn.Module], what: str = "the model") -> int:
    """Parameters of the model ``build()`` makes, counted on the meta device (no storage is allocated).

    A model too large for PyTorch to even lay out (a tensor size overflowing int64) is a ValueError naming ``what``.
    """
    try:
        with torch.device("meta"):
            model = build()
    except (RuntimeError, OverflowError) as err:
        raise ValueError(f"{what} cannot be laid out: {err}") from err
    return count_params(model)
