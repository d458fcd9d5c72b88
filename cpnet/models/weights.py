"""Weights files, read and written without the engine: cpnet checkpoints (``.pt``) and ``.safetensors``.

Both load without executing code: a checkpoint through ``torch.load(weights_only=True)``, a ``.safetensors`` file
as raw tensors plus string metadata. Either gives ``(state_dict, meta)``, ``meta`` in one shape whichever the file:
``model_name``, ``options`` (the preset's overrides the weights were trained with), ``class_names``,
``num_classes``, ``cpnet_version`` and ``format``. :func:`cpnet.models.create_model` reads them for ``pretrained=``.

The models layer may not import the engine (tests/test_layering.py), so the checkpoint format is recognised here
by its two marks, :data:`CHECKPOINT_FORMAT` and :data:`CHECKPOINT_VERSION`, the values of
``cpnet.engine.checkpoint.FORMAT`` / ``VERSION`` (tests/models/test_weights.py keeps them equal).

A ``.safetensors`` file written by :func:`save_safetensors` stores each meta entry as a JSON string in the file's
metadata (``{"model_name": "\\"cpnet_r34\\"", "options": "{\\"width\\": 64}", ...}``), beside
``"format": "cpnet-weights"``; any safetensors reader (other languages included) gets the tensors by their
``state_dict`` names.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cpnet.errors import unloadable_checkpoint
from cpnet.files import atomic_output
from cpnet.models.bounds import MAX_OPTIONS, OPTION_BOUNDS, NestedBounds, brief, check_nested

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "SAFETENSORS_FORMAT", "check_fits", "load_weights",
           "save_safetensors"]

CHECKPOINT_FORMAT = "cpnet-checkpoint"
CHECKPOINT_VERSION = 1
SAFETENSORS_FORMAT = "cpnet-weights"
META_KEYS = ("model_name", "options", "class_names", "num_classes", "cpnet_version", "preprocessing")
# What a file's meta may hold before it is looked at: a million class names at most (each up to 10,000 characters),
# nothing nested deeper than 10; a safetensors metadata entry is at most 64 MiB of JSON.
META_BOUNDS = NestedBounds(depth=10, values=1_000_000, text=10_000)
MAX_META_JSON = 64 << 20


def cpnet_version() -> str:
    """The installed cpnet's version (the package metadata: the models layer cannot import ``cpnet`` itself)."""
    try:
        return importlib.metadata.version("cpnet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of a cpnet checkpoint or a ``.safetensors`` file written by :func:`save_safetensors`,
    on the CPU. A missing file is a FileNotFoundError; a file of another kind a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix.lower() == ".safetensors":
        return _load_safetensors(path)
    return _load_checkpoint(path)


def _load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A cpnet checkpoint's weights and meta; the options are its config's ``model.options``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a loadable checkpoint"
        raise ValueError(unloadable_checkpoint(path, e)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is neither a cpnet checkpoint (no 'format: {CHECKPOINT_FORMAT}' entry) nor a "
                         ".safetensors file")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {brief(ckpt.get('version'))} is not supported "
                         f"(expected {CHECKPOINT_VERSION})")
    state = ckpt.get("model")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: the checkpoint's 'model' entry is not a state dict of tensors")
    config = ckpt.get("config") or {}
    model_cfg = (config.get("model") if isinstance(config, Mapping) else None) or {}
    options = (model_cfg.get("options") if isinstance(model_cfg, Mapping) else model_cfg) or {}
    names = ckpt.get("class_names") or []
    meta = {"format": CHECKPOINT_FORMAT, "model_name": ckpt.get("model_name"), "options": options,
            "class_names": names, "num_classes": ckpt.get("num_classes", len(names) or None),
            "cpnet_version": ckpt.get("cpnet_version"), "preprocessing": None}
    check_nested(meta, f"{path}: the checkpoint's meta", META_BOUNDS)
    meta["options"] = dict(options) if isinstance(options, Mapping) else options
    meta["class_names"] = list(names) if isinstance(names, (list, tuple)) else names
    return dict(state), _checked_meta(meta, path)


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A ``.safetensors`` file's tensors and its cpnet metadata (each entry a JSON string)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable .safetensors file: {type(e).__name__}: {e}") from None
    if raw.get("format") != SAFETENSORS_FORMAT:
        raise ValueError(f"{path} has no cpnet metadata ('format: {SAFETENSORS_FORMAT}'); write it with "
                         "`cpnet export --format safetensors` or cpnet.models.weights.save_safetensors")
    meta: dict[str, Any] = {"format": SAFETENSORS_FORMAT}
    for key in META_KEYS:
        text = raw.get(key)
        if text is not None and len(text) > MAX_META_JSON:
            raise ValueError(f"{path}: metadata entry {key!r} holds {len(text):,} characters, more than the limit of "
                             f"{MAX_META_JSON:,}")
        try:
            meta[key] = json.loads(text) if text is not None else None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: metadata entry {key!r} is not JSON: {e}") from None
        except RecursionError:
            raise ValueError(f"{path}: metadata entry {key!r} nests deeper than JSON decoding allows (the limit is "
                             f"{META_BOUNDS[0]} levels)") from None
    check_nested(meta, f"{path}: the cpnet metadata", META_BOUNDS)
    meta["options"] = meta["options"] or {}
    meta["class_names"] = meta["class_names"] or []
    return state, _checked_meta(meta, path)


def _checked_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """``meta`` after checking the types of the entries :func:`~cpnet.models.create_model` relies on, and the
    options' bounds (:func:`~cpnet.models.registry.check_options`'s, named by the file here)."""
    if not isinstance(meta["model_name"], str) or len(meta["model_name"]) > 100:
        raise ValueError(f"{path} names no model (model_name is {brief(meta['model_name'])})")
    if not isinstance(meta["options"], dict) or not all(isinstance(k, str) for k in meta["options"]):
        raise ValueError(f"{path}: the model options must be a mapping of names, got {brief(meta['options'])}")
    if len(meta["options"]) > MAX_OPTIONS:
        raise ValueError(f"{path}: {len(meta['options']):,} model options, more than the limit of {MAX_OPTIONS}")
    check_nested(meta["options"], f"{path}: model options", OPTION_BOUNDS)
    if not isinstance(meta["class_names"], list):
        raise ValueError(f"{path}: class_names must be a list, got {type(meta['class_names']).__name__}")
    count = meta["num_classes"]
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"{path}: num_classes must be a positive integer, got {brief(count)}")
    return meta


def save_safetensors(model: nn.Module, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights and ``meta`` (``model_name`` and ``options`` required; ``class_names``,
    ``num_classes`` and ``cpnet_version`` filled in when absent) as a ``.safetensors`` file, atomically: a
    temporary file in the same folder, flushed to disk and renamed over ``path``. Returns the path."""
    from safetensors.torch import save

    path = Path(path)
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ValueError(f"unknown weights meta key(s) {', '.join(unknown)}; expected {', '.join(META_KEYS)}")
    if not isinstance(meta.get("model_name"), str):
        raise ValueError(f"meta must name the model (model_name), got {meta.get('model_name')!r}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {key: t.detach().cpu().contiguous() for key, t in model.state_dict().items()}
    names = list(meta.get("class_names") or [])
    fc = getattr(model, "fc", None)
    count = meta.get("num_classes") or (fc.out_features if isinstance(fc, nn.Linear) else len(names) or None)
    full = {"model_name": meta["model_name"], "options": dict(meta.get("options") or {}), "class_names": names,
            "num_classes": count, "cpnet_version": meta.get("cpnet_version") or cpnet_version()}
    if meta.get("preprocessing") is not None:  # what a clip needs before the model (cpnet.data.preprocess)
        full["preprocessing"] = meta["preprocessing"]
    try:
        text = {key: json.dumps(value) for key, value in full.items()}
    except TypeError as e:
        raise ValueError(f"weights meta must be JSON data (numbers, strings, lists, dicts): {e}") from None
    data = save(state, metadata={"format": SAFETENSORS_FORMAT, **text})  # bytes: written into our temporary, so
    with atomic_output(path) as tmp:  # the file gets a plain write's mode (save_file's own file was 0600)
        tmp.write_bytes(data)
    return path


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Refuse ``state`` unless it has exactly ``model``'s keys and shapes, naming the first key that differs (in
    the model's order) and how many differ in all."""
    own = model.state_dict()
    problems = [f"key {key!r} is missing from the file" if key not in state else
                f"key {key!r} has shape {tuple(state[key].shape)} in the file, {tuple(t.shape)} in the model"
                for key, t in own.items() if key not in state or tuple(state[key].shape) != tuple(t.shape)]
    problems += [f"key {key!r} in the file is not in the model" for key in state if key not in own]
    if problems:
        more = f" ({len(problems)} keys differ in all)" if len(problems) > 1 else ""
        raise ValueError(f"{path}: the weights do not fit the model: {problems[0]}{more}")
