"""A trained model from a config or a checkpoint: build the configured preset, load a trained checkpoint for
inference, initialise a model for fine-tuning, and freeze stages. Training, evaluation, predict, export and
visualisation all start here; importing it pulls in neither the training loop nor the optimiser.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cpnet.app.config import Config, apply_overrides, config_from_dict
from cpnet.engine.checkpoint import (
    check_compatible,
    is_cpnet_checkpoint,
    load_checkpoint,
    load_for_finetuning,
    load_model_state,
)
from cpnet.models import CPModule, create_model
from cpnet.models.weights import load_weights


def build_model(cfg: Config, num_classes: int) -> nn.Module:
    """The configured preset with ``model.options`` as overrides."""
    return create_model(cfg.model.name, num_classes=num_classes, **cfg.model.options)


FREEZE_GROUPS = {"stem": ("conv1", "bn1"), "layer1": ("layer1",), "layer2": ("layer2",), "layer3": ("layer3",),
                 "layer4": ("layer4",)}  # train.freeze names of the one ResNet; res2-res5 are layer1-layer4


def stage_prefixes(names: list[str]) -> tuple[str, ...]:
    """Module-name prefixes of ``train.freeze`` entries: stage names, or module names as they are."""
    return tuple(prefix for name in names for prefix in FREEZE_GROUPS.get(name, (name,)))


def initial_weights(init: str | None) -> Path | None:
    """``model.init`` / ``--init`` as a file, None for ``none`` (train from scratch) or unset; a missing file is an
    error naming it."""
    if init is None or str(init).lower() == "none":
        return None
    path = Path(init)
    if not path.is_file():
        raise FileNotFoundError(f"model.init {path}: file not found (expected ImageNet ResNet weights or a cpnet "
                                "checkpoint; set model.init: none to train from scratch)")
    return path


def warn_if_cp_starts_closed(model: nn.Module, name: str) -> None:
    """One warning when a model with zero-γ CP modules trains from scratch: the zero γ is meant to keep an
    ImageNet-initialised backbone's behaviour at the start; from scratch it only delays the CP modules."""
    closed = [m for m in model.modules() if isinstance(m, CPModule) and m.init_gamma == 0]
    if closed:
        warnings.warn(f"{name} trains from scratch (no model.init) with its {len(closed)} CP modules' output γ at 0: "
                      "they add nothing at first and their MLPs get no gradient until γ moves away from 0, which "
                      "costs early epochs. That start suits an ImageNet-initialised backbone (set model.init); from "
                      "scratch, model.options.cp_init_gamma: 1.0 starts them active", stacklevel=2)


def _weights_file(path: Path) -> bool:
    """Whether ``path`` holds cpnet weights with their model settings (a checkpoint or a ``.safetensors`` export)
    rather than ImageNet ResNet weights."""
    return path.suffix.lower() == ".safetensors" or is_cpnet_checkpoint(path)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, so a YAML option and the same option stored in a checkpoint compare equal."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def with_init_options(cfg: Config, init: Path | None, log: Callable[[str], None] = print) -> Config:
    """``cfg`` with the model settings that the weights in ``init`` were trained with: a cpnet checkpoint or
    ``.safetensors`` file stores its preset's ``model.options`` (as ``create_model(pretrained=...)`` applies them),
    so a fine-tuning config needs only the preset's name. An option the config also sets to another value is an
    error naming each such option with both values; options only the config sets (``dropout``, say) stay."""
    if init is None or not _weights_file(init):
        return cfg
    _, meta = load_weights(init)
    if meta["model_name"] != cfg.model.name:
        raise ValueError(f"model.init {init} holds a {meta['model_name']!r} model; this run builds "
                         f"{cfg.model.name!r}: set model.name: {meta['model_name']} to fine-tune it")
    stored, given = dict(meta["options"]), dict(cfg.model.options)
    differ = [f"{key}: {_plain(given[key])!r} here, {_plain(value)!r} in the checkpoint"
              for key, value in stored.items() if key in given and _plain(given[key]) != _plain(value)]
    if differ:
        raise ValueError(f"model.options contradict the weights in model.init {init} ({'; '.join(differ)}); remove "
                         "them from model.options (the checkpoint's are used) or train without model.init")
    taken = {key: value for key, value in stored.items() if key not in given}
    if taken:
        log(f"model.options from {init.name}: " + ", ".join(f"{k}={_plain(v)!r}" for k, v in taken.items()))
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options={**stored, **given}))


def initialise(model: nn.Module, path: Path, model_name: str, class_names: list[str],
               log: Callable[[str], None]) -> None:
    """``--init``: cpnet weights (a trained or converted checkpoint, or a ``.safetensors`` export: fine-tuning, a
    new classifier when the classes differ) or ImageNet ResNet weights (torchvision state dict or tensorpack npz)
    for the backbone."""
    if path.suffix.lower() == ".safetensors":
        state, meta = load_weights(path)
        ckpt = {"model": state, "model_name": meta["model_name"], "class_names": meta["class_names"],
                "num_classes": meta["num_classes"], "epoch": "of the export"}
        log(load_for_finetuning(model, ckpt, model_name, path, class_names=class_names))
        return
    if is_cpnet_checkpoint(path):
        log(load_for_finetuning(model, load_checkpoint(path), model_name, path, class_names=class_names))
        return
    from cpnet.models.imagenet import load_imagenet

    load_imagenet(model, path)


def load_trained(checkpoint: str | Path, device: torch.device, cfg: Config | None = None) -> tuple[nn.Module, dict,
                                                                                                     Config]:
    """Rebuild the model stored in ``checkpoint`` (weights-only load); returns (model in eval mode, ckpt, config).

    The checkpoint's own config is used unless ``cfg`` is given; then its model must be the checkpoint's.
    """
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    cfg = cfg if cfg is not None else config_from_dict(ckpt["config"], source=checkpoint)
    check_compatible(ckpt, cfg.model.name, len(ckpt["class_names"]), checkpoint)
    model = build_model(cfg, len(ckpt["class_names"]))
    load_model_state(model, ckpt["model"], checkpoint)
    return placed(model, device, cfg.train.channels_last).eval(), ckpt, cfg


def placed(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model`` on ``device``, its 5-D weights channels-last when asked: convolutions then produce channels-last
    activations from any input layout, so the loop's clips need no conversion."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last_3d) if channels_last else model


def checkpoint_config(checkpoint: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The resolved config stored in ``checkpoint``, with ``key=value`` overrides applied."""
    return config_from_dict(apply_overrides(load_checkpoint(checkpoint)["config"], overrides), source=checkpoint)
