"""Checkpoints: plain data only, written atomically, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (no pickled objects; :func:`make_checkpoint`
refuses anything else), so loading it never executes code. It is written to a temporary file in the same folder,
flushed to disk and renamed over the target, so a crash or a full disk mid-write leaves the previous checkpoint
intact. The model's weights are those of the bare model, never of a DDP wrapper (no ``module.`` prefixes), so a
checkpoint written by any number of processes loads into one, and the other way round.
"""

from __future__ import annotations

import io
import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cpnet.errors import unloadable_checkpoint
from cpnet.files import atomic_output

FORMAT = "cpnet-checkpoint"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary sibling, fsync, then rename over ``path``; no partial file is ever left.

    The checkpoint is serialised in memory first and then written as plain bytes: torch's own writer turns a failed
    write (a full disk) into a RuntimeError ("unexpected pos …") that hides the OSError and its errno, where a plain
    write raises the OSError, here naming the checkpoint."""
    path = Path(path)
    try:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
    except OSError as e:
        if e.errno is None or e.filename is not None:
            raise
        # A write into an open file object names no file ('No space left on device'): name the checkpoint.
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    return path


def rng_state() -> dict:
    """The Python, numpy and torch (CPU and CUDA) generator states, as plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "python": list(py_internal) + [py_version],
        "python_gauss": py_gauss,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    *internal, version = state["python"]
    random.setstate((version, tuple(internal), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):  # the GPUs both machines have
            torch.cuda.set_rng_state(cuda_state, device)


def make_checkpoint(model: torch.nn.Module, *, epoch: int, meta: dict, **states: Any) -> dict:
    """The checkpoint dict: model weights, ``epoch`` (completed epochs), ``meta`` (model name, class count,
    class names, config) and any other plain states (optimizer, schedule, scaler, rng, metrics)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    ckpt = {"format": FORMAT, "version": VERSION, "epoch": epoch, "model": model.state_dict()}
    ckpt.update(meta)
    ckpt.update(states)
    check_plain(ckpt)
    return ckpt


# Exact types: a numpy float is a float subclass that weights_only refuses to load.
SCALARS = (int, float, bool, str, type(None))


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Refuse anything but tensors, numbers, strings, None, lists, tuples and dicts (what ``weights_only`` loads)."""
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in (str, int):
                raise ValueError(f"{where}: key {key!r} is a {type(key).__name__}; str and int keys only")
            check_plain(value, f"{where}[{key!r}]")
    elif type(obj) in (list, tuple):
        for i, value in enumerate(obj):
            check_plain(value, f"{where}[{i}]")
    elif type(obj) not in SCALARS and not isinstance(obj, torch.Tensor):
        raise ValueError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; a checkpoint holds only "
                         "tensors, numbers, strings, lists and dicts (so it loads with weights_only=True)")


def _shown(value: Any) -> str:
    """A value read from a checkpoint as a message shows it: short scalars as they are, anything else by its kind
    and size (never expanded: a file can nest shared references into a value whose repr never ends)."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length():,} bits"
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77]) + "…"
    return f"a {type(value).__name__}"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a cpnet checkpoint safely (``weights_only=True``); refuse anything else with a message naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a loadable checkpoint"
        raise ValueError(unloadable_checkpoint(path, e)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a cpnet checkpoint (no 'format: {FORMAT}' entry)")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {_shown(ckpt.get('version'))} is not supported "
                         f"(expected {VERSION})")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict, path: str | Path = "checkpoint") -> None:
    """``model.load_state_dict(state)``, refusing weights of another shape or layout with the keys that differ
    (a checkpoint of the same preset built with other ``model.options``, or a foreign state dict)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} (model {tuple(v.shape)})" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{label}: {', '.join(items[:3])}{' …' if len(items) > 3 else ''} ({len(items)} in all)"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes))
                if items]
    if problems:
        prefixed = " (keys start with 'module.': a DDP wrapper's state dict)" if any(
            k.startswith("module.") for k in unexpected) else ""
        raise ValueError(f"{path}: the weights do not fit the model{prefixed}; {'; '.join(problems)}")
    model.load_state_dict(state)


def check_compatible(ckpt: dict, model_name: str, num_classes: int, path: str | Path = "checkpoint") -> None:
    """Refuse a checkpoint of another model or class count, naming what differs."""
    diffs = []
    if ckpt.get("model_name") != model_name:
        diffs.append(f"model {_shown(ckpt.get('model_name'))} (expected {model_name!r})")
    if ckpt.get("num_classes") != num_classes:
        diffs.append(f"{_shown(ckpt.get('num_classes'))} classes (expected {num_classes})")
    if diffs:
        raise ValueError(f"{path} is for {' and '.join(diffs)}")


def is_cpnet_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a file that :func:`load_checkpoint` reads (a cpnet checkpoint, not a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - anything torch cannot read safely is not a cpnet checkpoint
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_for_finetuning(model: torch.nn.Module, ckpt: dict, model_name: str, path: str | Path = "checkpoint",
                        head: str = "fc", class_names: list[str] | None = None) -> str:
    """Put a trained checkpoint's weights into ``model`` to fine-tune it. The classifier (``head``) stays at its
    fresh initialisation when the class count differs, or when ``class_names`` (the new data's) are not the
    checkpoint's; every other weight must fit exactly. Returns what was done, in one line."""
    if ckpt.get("model_name") != model_name:
        raise ValueError(f"{path} holds a {_shown(ckpt.get('model_name'))} model; this run builds {model_name!r}: set "
                         f"model.name (and model.options) to the checkpoint's to fine-tune it")
    state, own = dict(ckpt["model"]), model.state_dict()
    head_keys = [k for k in own if k.startswith(head + ".")]
    theirs = list(ckpt.get("class_names", ()))
    other_shape = any(k in state and tuple(state[k].shape) != tuple(own[k].shape) for k in head_keys)
    other_names = class_names is not None and not other_shape and list(class_names) != theirs
    if other_shape or other_names:
        state.update({k: own[k] for k in head_keys})
    load_model_state(model, state, path)
    where = f"initialised from {path} (epoch {ckpt.get('epoch')})"
    if other_shape:
        return f"{where}; new classifier: {len(theirs) or _shown(ckpt.get('num_classes'))} classes there, " \
               f"{own[head_keys[0]].shape[0]} here"
    if other_names:
        return f"{where}; new classifier: the checkpoint's {len(theirs)} classes are not these {len(class_names)}"
    return f"{where}, classifier included (the same classes)"
