"""torch.hub entry points: one per registered cpnet preset, each ``create_model(name, pretrained=..., **kwargs)``.

    model = torch.hub.load("path/to/cpnet", "cpnet_r34", source="local", pretrained="cpnet_r34.safetensors")

``pretrained`` is a cpnet checkpoint or a ``.safetensors`` file from ``cpnet export --format safetensors`` (none:
random initialisation); ``num_classes`` and any preset option (``width=16``, ``cp_k=4``, …) pass through. The entry
points are real module-level functions generated from the registry, so ``torch.hub.list`` (the callables of this
module not starting with ``_``) names every preset and a new preset needs no edit here.
"""

from __future__ import annotations

from collections.abc import Callable as _Callable  # private names: torch.hub.list lists every public callable
from pathlib import Path as _Path
from typing import Any as _Any

import torch.nn as nn

import cpnet

# What torch.hub checks before calling an entry point (the import names of cpnet's runtime dependencies that
# building and loading a model touch).
dependencies = ["torch", "numpy", "safetensors"]


def _entry(name: str) -> _Callable[..., nn.Module]:
    """The entry point of preset ``name``, documented with the preset's own docstring."""
    preset = getattr(cpnet.models.presets, name, None)  # None: a preset registered outside cpnet.models.presets

    def entry(pretrained: str | _Path | None = None, **kwargs: _Any) -> nn.Module:
        return cpnet.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"cpnet preset {name!r}: cpnet.create_model({name!r}, pretrained=pretrained, **kwargs).\n\n"
                     f"pretrained: a cpnet checkpoint or .safetensors file of {name} (None: random weights).\n\n"
                     f"{(preset.__doc__ if preset is not None else None) or ''}")
    return entry


for _name in cpnet.list_models():
    globals()[_name] = _entry(_name)
del _name
