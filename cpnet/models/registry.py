"""Model registry: a dict of preset builders filled by the ``register_model`` decorator, and the two functions that
read it.

This module imports no preset. ``cpnet/models/__init__.py`` imports ``cpnet.models.presets``, which registers the
presets here; Python runs that package ``__init__`` before any of its submodules, so by the time anything can call
:func:`create_model` (even as ``from cpnet.models.registry import create_model``) every preset is registered.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from cpnet.models.bounds import PARAMS_ENV, max_params, params_on_meta

__all__ = ["create_model", "list_models", "register_model"]

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
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = 400, **overrides: Any) -> nn.Module:
    """Build the preset ``name`` with ``num_classes`` outputs; ``overrides`` replace the preset's settings.

    Options may come from a file (a checkpoint's ``model.options``), so the model is first laid out on the meta
    device and refused with a ValueError when it would have more than :func:`~cpnet.models.bounds.max_params`
    parameters (2**30 unless ``$CPNET_MAX_PARAMS`` says otherwise); nothing is allocated before that check.
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (available: {', '.join(sorted(_MODELS))})")
    build = _MODELS[name]
    limit = max_params()
    options = ", ".join(f"{key}={value!r}" for key, value in {"num_classes": num_classes, **overrides}.items())
    count = params_on_meta(lambda: build(num_classes=num_classes, **overrides), f"model {name!r} with {options}")
    if count > limit:
        raise ValueError(f"model {name!r} with {options} would have {count:,} parameters, more than the limit of "
                         f"{limit:,}; set {PARAMS_ENV} to a larger count to build it")
    return build(num_classes=num_classes, **overrides)
