"""`cpnet export`: a trained checkpoint as an ONNX graph (dynamic batch), a TorchScript archive or a
``.safetensors`` file of its weights, checked against PyTorch (:mod:`cpnet.app.export`)."""

from __future__ import annotations

import argparse

from cpnet.app.export import DEFAULT_OPSET, FORMATS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX, TorchScript or safetensors",
                              description="Export a trained checkpoint for deployment. The graph is fixed to clips "
                                          "of T frames of SxS pixels (the CP module's loops are unrolled); the batch "
                                          "size stays free. The export is run on random clips of batch 1 and 2 and "
                                          "compared with PyTorch (ONNX needs: pip install 'cpnet[export]'). "
                                          "safetensors writes the weights alone, for any clip shape, with the model's "
                                          "settings and class names as metadata.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by `cpnet train`")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (ONNX Runtime, TensorRT, ...), "
                   "torchscript (torch.jit.load, LibTorch) or safetensors (weights + settings, for "
                   "cpnet.create_model(..., pretrained=FILE))")
    p.add_argument("--frames", type=int, help="clip length T (default: the checkpoint's data.num_frames)")
    p.add_argument("--size", type=int, help="crop size S (default: the checkpoint's data.size)")
    p.add_argument("--out", help="output file (default: next to the checkpoint, <name>_<T>x<S>.onnx or "
                                 ".torchscript.pt, with a <out>.json sidecar beside it; <name>.safetensors). Never "
                                 "the checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing output file and its sidecar (each is "
                   "replaced only once the new one is complete)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip running the export against PyTorch (ONNX: needs no onnxruntime then)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cpnet.app.export import export_checkpoint

    return export_checkpoint(args.checkpoint, args.format, frames=args.frames, size=args.size, out=args.out,
                             force=args.force, opset=args.opset, verify=args.verify)
