"""Model registry: a dict of preset builders filled by the ``register_model`` decorator."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name; a second model of the same name is refused."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered preset, sorted."""
    _ensure_presets()
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = 400, **overrides) -> nn.Module:
    """Build the preset ``name`` with ``num_classes`` outputs; ``overrides`` replace the preset's settings."""
    _ensure_presets()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (available: {', '.join(sorted(_MODELS))})")
    return _MODELS[name](num_classes=num_classes, **overrides)


def _ensure_presets() -> None:
    # Presets register themselves on import; importing here keeps `cpnet.models.registry` free of cycles.
    import cpnet.models.presets  # noqa: F401
