"""`cpnet bench runtime|memory|profile`: the supplement's run-time curves, CP-vs-non-local memory, time breakdown.

Each writes a CSV and a PNG into ``--out`` and prints a table; with ``--json`` it prints its rows as one JSON list
on stdout instead (progress always goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cpnet.app.config import parse_override
from cpnet.engine.distributed import resolve_device
from cpnet.reports.tables import text_table, write_csv


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="run-time, memory and profile benchmarks (CSV + PNG)",
                              description="Benchmarks from the supplement: run time against batch size, training "
                                          "memory of one CP module against one non-local block, and where a "
                                          "model's inference time goes.")
    sub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)

    r = sub.add_parser("runtime", help="inference time per batch and videos/s against batch size")
    _model_args(r)
    r.add_argument("--baseline", help="a second preset timed on the same grid, e.g. c2d_r34; prints the ratio")
    r.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32], help="clip lengths (default 8 16 32)")
    r.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="batch sizes (default 1..16)")
    _common(r, repeats=5)
    r.set_defaults(func=run_runtime)

    m = sub.add_parser("memory", help="forward+backward peak memory and time: CP module vs non-local block")
    m.add_argument("--sizes", nargs="+", metavar="N,T,H,W,C", help="input sizes (default: 8,8,28,28,128 and "
                                                                     "8,32,14,14,256)")
    m.add_argument("--k", type=int, default=8, help="CP proposals per point (default 8)")
    m.add_argument("--blocks", nargs="+", help="cp, cp_recompute, cp_concat, nl (pooled keys, as the presets), "
                                               "nl_full (no pooling: P x P attention); default: all but cp_concat")
    _common(m, repeats=3)
    m.set_defaults(func=run_memory)

    f = sub.add_parser("profile", help="share of inference time in backbone, kNN, pair MLP and the rest")
    _model_args(f)
    f.add_argument("--frames", type=int, default=8, help="clip length (default 8)")
    f.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    _common(f, repeats=5)
    f.set_defaults(func=run_profile)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name, e.g. cpnet_r34 (see `cpnet models`)")
    p.add_argument("--size", type=int, default=112, help="frame height and width in pixels (default 112)")
    p.add_argument("--num-classes", type=int, default=400, help="classifier outputs (default 400)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model override for every model built, e.g. --option width=16 --option stem_stride=1")


def _common(p: argparse.ArgumentParser, repeats: int) -> None:
    p.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats, median kept (default {repeats})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="default auto: CUDA when present (memory: the CPU, and CUDA too when present)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", default="bench", help="folder for the CSV and PNG (default ./bench)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list on stdout")


def _output_folder(path: str) -> Path:
    """Create ``--out`` up front: one that cannot be created (under a file, no permission) fails before the
    benchmark runs rather than after it, and with nothing but the error printed."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; expected a folder for the CSV and PNG")
    out.mkdir(parents=True, exist_ok=True)  # NotADirectoryError / PermissionError name the path
    return out


def _setup(args: argparse.Namespace) -> torch.device:
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    device = resolve_device(args.device, "--device")
    _output_folder(args.out)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return device


def _overrides(options: list[str]) -> dict:
    return dict(parse_override(text) for text in options)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _emit(args: argparse.Namespace, rows: list[dict], table: str, files: list[Path], notes: list[str]) -> int:
    """Either the JSON list or the table, the notes and where the files went."""
    if args.json:
        print(json.dumps(rows))
        return 0
    print(table)
    for note in notes:
        print(note)
    for path in files:
        print(f"wrote {path}")
    return 0


def run_runtime(args: argparse.Namespace) -> int:
    from cpnet.reports.runtime import plot_runtime, runtime_rows

    device = _setup(args)
    rows = runtime_rows(args.model, args.size, args.frames, args.batch, baseline=args.baseline,
                        overrides=_overrides(args.option), device=device, repeats=args.repeats,
                        num_classes=args.num_classes, log=_log)
    out = Path(args.out)
    files = [write_csv(rows, out / "runtime.csv"), plot_runtime(rows, out / "runtime.png")]
    cols = ["model", "frames", "batch", "seconds", "videos_per_s"] + (["vs_baseline"] if args.baseline else [])
    table = text_table(rows, cols, {"seconds": ".4f", "videos_per_s": ".2f", "vs_baseline": ".2f"})
    notes = [f"{args.model} / {args.baseline} at {args.size}², {r['frames']} frames, batch {r['batch']}: "
             f"{r['vs_baseline']:.2f}x" for r in rows if "vs_baseline" in r]
    return _emit(args, rows, table, files, notes)


def run_memory(args: argparse.Namespace) -> int:
    from cpnet.reports.memory import DEFAULT_BLOCKS, REFERENCES, SIZES, memory_rows, plot_memory

    _setup(args)
    if args.device == "auto":  # the CPU always, and the GPU too when there is one
        devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    else:
        devices = (resolve_device(args.device, "--device").type,)
    sizes = SIZES
    if args.sizes:
        try:
            sizes = tuple(tuple(int(v) for v in s.split(",")) for s in args.sizes)
        except ValueError:
            raise ValueError(f"--sizes: expected N,T,H,W,C integers, got {args.sizes}") from None
        bad = [s for s in sizes if len(s) != 5]
        if bad:
            raise ValueError(f"--sizes: each size needs 5 values N,T,H,W,C, got {bad}")
    rows = memory_rows(sizes, tuple(args.blocks or DEFAULT_BLOCKS), k=args.k, devices=devices,
                       repeats=args.repeats, threads=args.threads, log=_log)
    out = Path(args.out)
    files = [write_csv(rows, out / "memory.csv"), plot_memory(rows, out / "memory.png")]
    ratios = [c for c in ("mem_vs_nl", "time_vs_nl", "mem_vs_nl_full", "time_vs_nl_full") if any(c in r for r in rows)]
    cols = ["block", "device", "N", "T", "H", "W", "C", "k", "peak_mb", "seconds", *ratios]
    table = text_table(rows, cols, {"peak_mb": ".1f", "seconds": ".3f", **{c: ".3f" for c in ratios}})
    notes = [f"{r['block']} / {ref} at N={r['N']} T={r['T']} {r['H']}x{r['W']} C={r['C']} ({r['device']}): memory "
             f"{_fraction(r[f'mem_vs_{ref}'], ref)}, time {r[f'time_vs_{ref}']:.2f}x"
             for r in rows if not r["block"].startswith("nl") for ref in REFERENCES if r.get(f"time_vs_{ref}")]
    return _emit(args, rows, table, files, notes)


def _fraction(ratio: float | None, ref: str) -> str:
    if ratio is None:
        return f"n/a (no growth measured for {ref})"
    return f"1/{1 / ratio:.1f}" if ratio > 0 else "0 (no growth measured)"


def run_profile(args: argparse.Namespace) -> int:
    from cpnet.models.registry import create_model
    from cpnet.reports.profile import plot_profile, profile_model
    from cpnet.reports.runtime import check_grid

    device = _setup(args)
    check_grid(args.size, [args.frames], [args.batch], args.repeats, 1)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=args.num_classes, **_overrides(args.option)).to(device)
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size).to(device)  # (N, 3, T, H, W)
    rows = profile_model(model, clip, repeats=args.repeats)
    for r in rows:
        r |= {"model": args.model, "size": args.size, "frames": args.frames, "batch": args.batch,
              "device": device.type, "threads": torch.get_num_threads()}
    out = Path(args.out)
    title = f"{args.model}, {args.batch}x{args.frames}x{args.size}², {device.type}"
    files = [write_csv(rows, out / "profile.csv"), plot_profile(rows, out / "profile.png", title)]
    table = text_table(rows, ["component", "seconds", "share"], {"seconds": ".4f", "share": ".3f"})
    return _emit(args, rows, table, files, [])
