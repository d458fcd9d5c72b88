"""Model registry: a dict of preset builders filled by the ``register_model`` decorator, and the two functions that
read it.

This module imports no preset. ``cpnet/models/__init__.py`` imports ``cpnet.models.presets``, which registers the
presets here; Python runs that package ``__init__`` before any of its submodules, so by the time anything can call
:func:`create_model` (even as ``from cpnet.models.registry import create_model``) every preset is registered.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn

from cpnet.models.bounds import MAX_OPTIONS, OPTION_BOUNDS, PARAMS_ENV, brief, check_nested, max_params, params_on_meta
from cpnet.models.weights import check_fits, load_weights

__all__ = ["check_options", "create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
HEAD = "fc"  # the classifier of every preset (VideoResNet.fc); left fresh when the class count changes


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


def create_model(name: str, num_classes: int | None = None, pretrained: str | Path | None = None,
                 **overrides: Any) -> nn.Module:
    """Build the preset ``name`` with ``num_classes`` outputs (400 by default); ``overrides`` replace the preset's
    settings.

    ``pretrained``: a cpnet checkpoint (``.pt``, loaded with ``weights_only=True``) or a ``.safetensors`` file from
    ``cpnet export --format safetensors`` (:mod:`cpnet.models.weights`), holding weights of the preset ``name``.
    Its stored options apply unless ``overrides`` replace them, and ``num_classes`` defaults to its class count.
    With another class count the classifier keeps its fresh initialisation and a ``UserWarning`` (``warnings.warn``)
    names both counts; every other weight must fit, or a ValueError names the first key that differs.

    Options may come from a file (a checkpoint's ``model.options``), so the model is first laid out on the meta
    device and refused with a ValueError when it would have more than :func:`~cpnet.models.bounds.max_params`
    parameters (2**30 unless ``$CPNET_MAX_PARAMS`` says otherwise); nothing is allocated before that check. Before
    they are formatted or used, options are bounded (:func:`check_options`): at most ``MAX_OPTIONS`` of them, each
    within :data:`~cpnet.models.bounds.OPTION_BOUNDS`.
    """
    check_options(overrides, "model options")
    if not isinstance(name, str) or len(name) > 100:
        raise ValueError(f"a model name is a preset's name (a short string), got {brief(name)}")
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (available: {', '.join(sorted(_MODELS))})")
    if pretrained is None:
        return _build(name, 400 if num_classes is None else num_classes, overrides)
    state, meta = load_weights(pretrained)
    if meta["model_name"] != name:
        raise ValueError(f"{pretrained} holds a {meta['model_name']!r} model, not {name!r}: create_model("
                         f"{meta['model_name']!r}, pretrained=...) builds it")
    theirs = meta["num_classes"] or len(meta["class_names"]) or _head_rows(state)
    if theirs is None and num_classes is None:
        raise ValueError(f"{pretrained} records no class count and holds no {HEAD}.weight; pass num_classes")
    num_classes = theirs if num_classes is None else num_classes
    model = _build(name, num_classes, {**meta["options"], **overrides})
    if num_classes != theirs:
        own = model.state_dict()
        state = {**{k: v for k, v in state.items() if not k.startswith(HEAD + ".")},
                 **{k: v for k, v in own.items() if k.startswith(HEAD + ".")}}
        warnings.warn(f"{pretrained}: new classifier ({HEAD}) for {num_classes} classes, freshly initialised; the "
                      f"weights were trained for {theirs} classes", UserWarning, stacklevel=2)
    try:
        check_fits(model, state, pretrained)
    except ValueError as e:
        given = ", ".join(f"{k}={brief(v)}" for k, v in overrides.items())
        hint = f"; options given here: {given} (the file's: {brief(meta['options'])})" if overrides else ""
        raise ValueError(f"{e}{hint}") from None
    model.load_state_dict(state)
    return model


def check_options(options: dict[str, Any], what: str) -> None:
    """Refuse ``options`` with more than ``MAX_OPTIONS`` entries, or values beyond ``OPTION_BOUNDS`` (nesting,
    values reached, text, integer size): a one-line ValueError naming ``what``, the option and the bound."""
    if len(options) > MAX_OPTIONS:
        raise ValueError(f"{what}: {len(options):,} options, more than the limit of {MAX_OPTIONS}")
    check_nested(options, what, OPTION_BOUNDS)


def _head_rows(state: dict) -> int | None:
    """The classifier's output count in a state dict (the rows of its weight), None without one."""
    weight = state.get(f"{HEAD}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def _build(name: str, num_classes: int, overrides: dict[str, Any]) -> nn.Module:
    """The preset ``name`` built with ``overrides``, after counting its parameters on the meta device."""
    build = _MODELS[name]
    limit = max_params()
    check_options(overrides, f"model {name!r} options")
    every = {"num_classes": num_classes, **overrides}
    options = ", ".join(f"{key}={brief(value)}" for key, value in every.items())
    count = params_on_meta(lambda: build(num_classes=num_classes, **overrides), f"model {name!r} with {options}")
    if count > limit:
        raise ValueError(f"model {name!r} with {options} would have {count:,} parameters, more than the limit of "
                         f"{limit:,}; set {PARAMS_ENV} to a larger count to build it")
    return build(num_classes=num_classes, **overrides)
