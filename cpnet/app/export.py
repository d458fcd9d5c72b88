"""``cpnet export``: a trained checkpoint as an ONNX graph (dynamic batch) or a TorchScript archive, checked against
PyTorch, with a JSON sidecar saying what the exported model expects and returns; or as a ``.safetensors`` file of
its weights with the model's settings and class names inside (``cpnet.create_model(name, pretrained=FILE)``), checked
by loading it back. The workflow and its pass/fail policy live here; :mod:`cpnet.export` holds the graph tools.

Both files are written atomically (``cpnet.files.atomic_output``). An output that is the checkpoint itself is
refused, and so, without ``force``, is an output or sidecar that already exists: an export never silently replaces
a file it was not asked to replace."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from cpnet import export
from cpnet.app.config import Config
from cpnet.app.trained import load_trained
from cpnet.errors import UserError
from cpnet.files import atomic_write_text

FORMATS = (*export.FORMATS, "safetensors")  # safetensors: the weights and settings, no graph
DEFAULT_OPSET = export.DEFAULT_OPSET
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
# An export within this of eager PyTorch on random input passes outright.
TOLERANCE = 1e-4
# Above it, an export still passes when it is within SLACK times the eager model's own float32 rounding sensitivity
# (a CP model's kNN swaps near-tied neighbours under rounding changes; see cpnet.export.rounding_sensitivity).
SLACK = 2.0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def export_checkpoint(checkpoint: str | Path, fmt: str, *, frames: int | None = None, size: int | None = None,
                      out: str | Path | None = None, force: bool = False, opset: int = DEFAULT_OPSET,
                      verify: bool = True, log: Callable[[str], None] = print,
                      error: Callable[[str], None] = _stderr) -> int:
    """Export ``checkpoint`` as ``fmt`` (one of :data:`FORMATS`) to ``out`` (default :func:`default_output`) and,
    with ``verify``, check it against PyTorch; returns the exit code (0 passed or not verified, 1 failed)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    checkpoint = Path(checkpoint)
    if fmt == "onnx":  # fail before the (slow) export, naming what to install; TorchScript needs nothing
        _require(verify)
    model, ckpt, cfg = load_trained(checkpoint, torch.device("cpu"))
    frames = frames if frames is not None else cfg.data.num_frames
    size = size if size is not None else cfg.data.size
    out = Path(out) if out else default_output(checkpoint, fmt, frames, size)
    if fmt == "safetensors":
        _check_outputs(checkpoint, {"output": out}, force)
        return _export_weights(model, ckpt, cfg, out, verify, log, error)
    sidecar_path = out.with_name(out.name + ".json")
    _check_outputs(checkpoint, {"output": out, "sidecar": sidecar_path}, force)

    start = time.perf_counter()
    if fmt == "onnx":
        export.export_onnx(model, out, frames, size, opset=opset)
    else:
        export.export_torchscript(model, out, frames, size)
    seconds = time.perf_counter() - start
    diff = sensitivity = None
    if verify:
        check = export.verify_onnx if fmt == "onnx" else export.verify_torchscript
        diff = check(model, out, frames, size, batch_sizes=(1, 2))
        if diff > TOLERANCE:
            sensitivity = export.rounding_sensitivity(model, frames, size, batch_sizes=(1, 2))

    names = ckpt["class_names"]
    sidecar = {"format": fmt, "opset": opset if fmt == "onnx" else None,
               "model": cfg.model.name, "checkpoint": str(checkpoint), "epoch": ckpt["epoch"],
               **_io_spec(model.in_channels, frames, size, len(names)), "class_names": names,
               "export_seconds": round(seconds, 3), "max_abs_diff_vs_pytorch": diff,
               "pytorch_rounding_sensitivity": sensitivity}
    atomic_write_text(sidecar_path, json.dumps(sidecar, indent=1) + "\n")
    log(f"wrote {out} ({fmt}, clip (batch, {model.in_channels}, {frames}, {size}, {size}) -> logits "
        f"(batch, {len(names)})) in {seconds:.1f} s; sidecar {sidecar_path.name}")
    if diff is None:
        log("not verified (--no-verify)")
        return 0
    return _judge("ONNX Runtime (CPU)" if fmt == "onnx" else "reloaded TorchScript", out, diff, sensitivity, log,
                  error)


def default_output(checkpoint: Path, fmt: str, frames: int, size: int) -> Path:
    """``<checkpoint folder>/<checkpoint stem>_<T>x<S><suffix>``: the clip shape is part of the graph. Weights
    alone (safetensors) fit every clip shape: ``<checkpoint stem>.safetensors``."""
    if fmt == "safetensors":
        return checkpoint.parent / f"{checkpoint.stem}{SUFFIXES[fmt]}"
    return checkpoint.parent / f"{checkpoint.stem}_{frames}x{size}{SUFFIXES[fmt]}"


def _export_weights(model: nn.Module, ckpt: dict, cfg: Config, out: Path, verify: bool,
                    log: Callable[[str], None], error: Callable[[str], None]) -> int:
    """Write the weights with the model's name, options and class names (``cpnet.models.save_safetensors``); with
    ``verify``, build the model back from the file and compare every tensor. 0 when equal (or not verified)."""
    from cpnet.models import create_model, save_safetensors

    start = time.perf_counter()
    save_safetensors(model, out, {"model_name": cfg.model.name, "options": dict(cfg.model.options),
                                  "class_names": list(ckpt["class_names"])})
    seconds = time.perf_counter() - start
    log(f"wrote {out} (safetensors: {cfg.model.name}, {len(ckpt['class_names'])} classes) in {seconds:.1f} s")
    if not verify:
        log("not verified (--no-verify)")
        return 0
    back = create_model(cfg.model.name, pretrained=out).state_dict()
    ours = model.state_dict()
    differ = sorted(key for key in ours if key not in back or not torch.equal(ours[key], back[key]))
    if differ or set(back) != set(ours):
        error(f"FAILED: {out} loads back with other weights ({', '.join(differ[:5]) or 'other keys'})")
        return 1
    log(f"ok: create_model({cfg.model.name!r}, pretrained={str(out)!r}) gives back all {len(ours)} tensors exactly")
    return 0


def _check_outputs(checkpoint: Path, outputs: dict[str, Path], force: bool) -> None:
    """Refuse, before the (slow) export, an output (name → path) that is the checkpoint itself, also through a
    symlink or a hard link, or that is a folder; and without ``force`` one that already exists."""
    for role, path in outputs.items():
        same = path.resolve() == checkpoint.resolve() or (
            path.exists() and checkpoint.exists() and os.path.samefile(path, checkpoint))
        if same:
            raise UserError(f"export {role} {path} is the checkpoint {checkpoint} being exported; expected another "
                            "file (--out)")
        if path.is_dir():
            raise UserError(f"export {role} {path} is a folder; expected a file path (--out)")
        if os.path.lexists(path) and not force:
            raise UserError(f"export {role} {path} already exists; expected a new file (pass --force to replace it)")


def _require(verify: bool) -> None:
    """The packages an ONNX export (and its check) needs, as a one-line user error naming what to install."""
    try:
        export.require("onnx verification" if verify else "onnx export")
    except ModuleNotFoundError as e:
        hint = "; or pass --no-verify to export without checking" if e.name == "onnxruntime" else ""
        raise UserError(f"{e}{hint}") from None


def _io_spec(channels: int, frames: int, size: int, num_classes: int) -> dict:
    """What a deployment must feed the exported model and what it returns (the sidecar's input/output entries)."""
    from cpnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    return {"input": {"name": export.INPUT_NAME, "shape": ["batch", channels, frames, size, size], "dtype": "float32",
                      "layout": "N, C, T, H, W; RGB in [0, 1], then (x - mean) / std",
                      "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "output": {"name": export.OUTPUT_NAME, "shape": ["batch", num_classes], "meaning": "logits (pre-softmax)"}}


def _judge(checker: str, out: Path, diff: float, sensitivity: float | None, log: Callable[[str], None],
           error: Callable[[str], None]) -> int:
    """Print the check and return the exit code: 0 within TOLERANCE, or within SLACK × PyTorch's own rounding
    sensitivity (measured only above TOLERANCE); 1 otherwise."""
    log(f"{checker} vs PyTorch, batch 1 and 2: max abs difference {diff:.2e} (tolerance {TOLERANCE:g})")
    if sensitivity is None:
        return 0
    log(f"PyTorch itself moves by up to {sensitivity:.2e} when the input changes at float32 rounding level "
          f"(1e-6 relative): near-tied kNN neighbours swap")
    if diff <= SLACK * sensitivity:
        log("accepted: the export is as close to PyTorch as float32 rounding allows")
        return 0
    error(f"cpnet export: error: {out} differs from PyTorch by {diff:.2e}, more than {TOLERANCE:g} and more than "
          f"{SLACK:g}x PyTorch's own rounding sensitivity")
    return 1
