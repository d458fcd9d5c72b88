"""Helpers of scripts/gpu-check.sh, run with the same python and PYTHONPATH as its steps.

    python3 scripts/gpu_check.py parse -- ARGS...            # would `python3 -m cpnet ARGS...` start? (dry run)
    python3 scripts/gpu_check.py export CHECKPOINT OUT_DIR   # the export step: export, then run it on the GPU
    python3 scripts/gpu_check.py speed OUT_DIR [--dry-run]   # the speed tables: `cpnet bench runtime`, four ways

``parse`` checks a cpnet command line without running it: cpnet's own parser reads it (unknown options and bad
choices fail as they would), a config and its ``--set`` overrides load through the schema (an unknown or mistyped
key fails with the valid names), and ``--model``/``--baseline`` name registered models.

``speed`` runs `cpnet bench runtime` as a user would, CPNet against C2D at the released Jester setting (R34,
stem stride 1, 112², 27 classes): inference and a training step, each in float32 and in float16 autocast with
channels-last; with ``--dry-run`` it only parses the four command lines.

``export`` runs `cpnet export` as a user would — a TorchScript archive and an ONNX graph, each verified against
PyTorch on the CPU by the command itself — then loads the TorchScript archive onto the GPU and compares its logits
for two random clips with the same archive on the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

TOLERANCE = 1e-3  # float32 logits of one graph on two devices (cuDNN's convolutions against the CPU's, TF32 off)


def parse(argv: list[str]) -> int:
    """0 when ``python -m cpnet argv`` would start: flags, config overrides and model names all valid."""
    from cpnet.app.config import load_config
    from cpnet.cli import build_parser
    from cpnet.models import list_models

    args = build_parser().parse_args(argv)  # exits 2 with argparse's message on a bad option
    overrides = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]
    if getattr(args, "config", None) or overrides:
        if args.config and not Path(args.config).is_file():
            raise SystemExit(f"gpu_check parse: no config file {args.config}")
        load_config(args.config, overrides)  # ValueError naming a bad key or value
    unknown = [m for m in (getattr(args, "model", None), getattr(args, "baseline", None))
               if m and m not in list_models()]
    if unknown:
        raise SystemExit(f"gpu_check parse: unknown model {unknown[0]!r}")
    command = " ".join(a for a in argv[:2] if not a.startswith("-"))
    print(f"cpnet {command}: options, config, overrides and model names valid")
    return 0


def export(checkpoint: Path, out: Path, device: str) -> int:
    """Export ``checkpoint`` as TorchScript and ONNX into ``out`` and run the TorchScript archive on ``device``."""
    if not checkpoint.is_file():
        raise SystemExit(f"gpu_check export: no checkpoint at {checkpoint} (the train_fp16 step writes it)")
    out.mkdir(parents=True, exist_ok=True)
    archive = _cpnet_export(checkpoint, out / "model.torchscript.pt", "torchscript")
    shape = json.loads(Path(f"{archive}.json").read_text())["input"]["shape"]  # ["batch", 3, T, S, S]
    diff = _device_vs_cpu(archive, shape, device)
    _cpnet_export(checkpoint, out / "model.onnx", "onnx")
    if diff > TOLERANCE:
        print(f"FAILED: the TorchScript archive on {device} differs from the CPU by {diff:.2e} > {TOLERANCE:g}")
        return 1
    return 0


def _cpnet_export(checkpoint: Path, path: Path, fmt: str) -> Path:
    """`python -m cpnet export`; CalledProcessError when it fails or its own verification does."""
    subprocess.run([sys.executable, "-m", "cpnet", "export", "--checkpoint", str(checkpoint), "--format", fmt,
                    "--out", str(path), "--force"], check=True)
    return path


def _device_vs_cpu(archive: Path, shape: list, device: str) -> float:
    """Largest |device − CPU| over the archive's logits for two random clips of ``shape``."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    clip = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(0))  # (2, 3, T, S, S)
    with torch.no_grad():
        on_cpu = torch.jit.load(str(archive), map_location="cpu")(clip)
        on_device = torch.jit.load(str(archive), map_location=device)(clip.to(device))
    if on_device.device.type != torch.device(device).type or not torch.isfinite(on_device).all():
        raise SystemExit(f"gpu_check export: the archive ran on {on_device.device}, finite outputs: "
                         f"{bool(torch.isfinite(on_device).all())}")
    name = torch.cuda.get_device_name(0) if on_device.is_cuda else device
    diff = float((on_device.cpu() - on_cpu).abs().max())
    print(f"TorchScript on {name}: logits {tuple(on_device.shape)}, max |{device} - cpu| = {diff:.2e} "
          f"(tolerance {TOLERANCE:g})")
    return diff


_JESTER = ["--baseline", "c2d_r34", "--option", "stem_stride=1", "--num-classes", "27", "--size", "112",
           "--frames", "8", "16", "--repeats", "5"]
SPEED_RUNS = [  # what follows `python -m cpnet bench runtime`, before --device and --out
    ["--model", "cpnet_r34", *_JESTER, "--batch", "2", "8"],
    ["--model", "cpnet_r34", *_JESTER, "--batch", "2", "8", "--amp", "float16", "--channels-last"],
    ["--mode", "train", "--model", "cpnet_r34_released_112", *_JESTER, "--option", "padding=same",
     "--option", "bn_eps=0.001", "--batch", "2"],
    ["--mode", "train", "--model", "cpnet_r34_released_112", *_JESTER, "--option", "padding=same",
     "--option", "bn_eps=0.001", "--batch", "2", "--amp", "float16", "--channels-last"],
]


def speed(out: Path, device: str, dry_run: bool) -> int:
    """The four speed tables into ``out`` (their file names differ); 1 when any of them failed."""
    failed = 0
    for args in SPEED_RUNS:
        argv = ["bench", "runtime", *args, "--device", device, "--out", str(out)]
        print(f"== python -m cpnet {' '.join(argv)}", flush=True)
        if dry_run:
            parse(argv)
        else:
            failed |= subprocess.run([sys.executable, "-m", "cpnet", *argv]).returncode != 0
    return int(failed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("parse", help="check a cpnet command line without running it")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="the arguments after `python -m cpnet`, after --")
    e = sub.add_parser("export", help="export a checkpoint and run the TorchScript archive on the GPU")
    e.add_argument("checkpoint", type=Path, help="a checkpoint written by `cpnet train`")
    e.add_argument("out", type=Path, help="folder for the exports")
    e.add_argument("--device", default="cuda", help="where the TorchScript archive runs (default cuda)")
    f = sub.add_parser("speed", help="the speed tables: cpnet bench runtime, inference and training, fp32 and AMP")
    f.add_argument("out", type=Path, help="folder for the CSVs and PNGs")
    f.add_argument("--device", default="cuda", help="where to time (default cuda)")
    f.add_argument("--dry-run", action="store_true", help="only check that each command line parses")
    args = ap.parse_args(argv)
    if args.action == "parse":
        return parse(args.argv[1:] if args.argv[:1] == ["--"] else args.argv)
    if args.action == "speed":
        return speed(args.out, args.device, args.dry_run)
    return export(args.checkpoint, args.out, args.device)


if __name__ == "__main__":
    sys.exit(main())
