"""`cpnet export`: a trained checkpoint as an ONNX graph (dynamic batch) or a TorchScript archive, checked against
PyTorch, with a JSON sidecar saying what the exported model expects and returns."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cpnet.export import DEFAULT_OPSET, FORMATS

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
# An export that drifts further than this from eager PyTorch on random input is reported as a failure.
TOLERANCE = 1e-4


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX or TorchScript",
                              description="Export a trained checkpoint for deployment. The graph is fixed to clips "
                                          "of T frames of SxS pixels (the CP module's loops are unrolled); the batch "
                                          "size stays free. The export is run on random clips of batch 1 and 2 and "
                                          "compared with PyTorch (ONNX needs: pip install 'cpnet[export]').")
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by `cpnet train`")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (ONNX Runtime, TensorRT, ...) or "
                   "torchscript (torch.jit.load, LibTorch)")
    p.add_argument("--frames", type=int, help="clip length T (default: the checkpoint's data.num_frames)")
    p.add_argument("--size", type=int, help="crop size S (default: the checkpoint's data.size)")
    p.add_argument("--out", help="output file (default: next to the checkpoint, <name>_<T>x<S>.onnx or "
                                 ".torchscript.pt); a <out>.json sidecar is written beside it")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip running the export against PyTorch (ONNX: needs no onnxruntime then)")
    p.set_defaults(func=run)


def default_output(checkpoint: Path, fmt: str, frames: int, size: int) -> Path:
    """``<checkpoint folder>/<checkpoint stem>_<T>x<S><suffix>``: the clip shape is part of the graph."""
    return checkpoint.parent / f"{checkpoint.stem}_{frames}x{size}{SUFFIXES[fmt]}"


def run(args: argparse.Namespace) -> int:
    import torch

    from cpnet import export
    from cpnet.cli import UserError
    from cpnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from cpnet.engine.runs import load_trained

    checkpoint = Path(args.checkpoint)
    if args.format == "onnx":  # fail before the (slow) export, naming what to install; TorchScript needs nothing
        try:
            export.require("onnx verification" if args.verify else "onnx export")
        except ModuleNotFoundError as e:
            hint = "; or pass --no-verify to export without checking" if e.name == "onnxruntime" else ""
            raise UserError(f"{e}{hint}") from None
    model, ckpt, cfg = load_trained(checkpoint, torch.device("cpu"))
    frames = args.frames if args.frames is not None else cfg.data.num_frames
    size = args.size if args.size is not None else cfg.data.size
    out = Path(args.out) if args.out else default_output(checkpoint, args.format, frames, size)

    start = time.perf_counter()
    if args.format == "onnx":
        export.export_onnx(model, out, frames, size, opset=args.opset)
    else:
        export.export_torchscript(model, out, frames, size)
    seconds = time.perf_counter() - start
    diff = None
    if args.verify:
        verify = export.verify_onnx if args.format == "onnx" else export.verify_torchscript
        diff = verify(model, out, frames, size, batch_sizes=(1, 2))

    names = ckpt["class_names"]
    sidecar = {
        "format": args.format, "opset": args.opset if args.format == "onnx" else None,
        "model": cfg.model.name, "checkpoint": str(checkpoint), "epoch": ckpt["epoch"],
        "input": {"name": export.INPUT_NAME, "shape": ["batch", model.in_channels, frames, size, size],
                  "dtype": "float32", "layout": "N, C, T, H, W; RGB in [0, 1], then (x - mean) / std",
                  "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "output": {"name": export.OUTPUT_NAME, "shape": ["batch", len(names)], "meaning": "logits (pre-softmax)"},
        "class_names": names,
        "export_seconds": round(seconds, 3),
        "max_abs_diff_vs_pytorch": diff,
    }
    sidecar_path = out.with_name(out.name + ".json")
    sidecar_path.write_text(json.dumps(sidecar, indent=1) + "\n")
    print(f"wrote {out} ({args.format}, clip (batch, {model.in_channels}, {frames}, {size}, {size}) -> logits "
          f"(batch, {len(names)})) in {seconds:.1f} s; sidecar {sidecar_path.name}")
    if diff is None:
        print("not verified (--no-verify)")
        return 0
    checker = "ONNX Runtime (CPU)" if args.format == "onnx" else "reloaded TorchScript"
    print(f"{checker} vs PyTorch, batch 1 and 2: max abs difference {diff:.2e} (tolerance {TOLERANCE:g})")
    if not diff <= TOLERANCE:
        print(f"cpnet export: error: {out} differs from PyTorch by {diff:.2e} > {TOLERANCE:g}", file=sys.stderr)
        return 1
    return 0
