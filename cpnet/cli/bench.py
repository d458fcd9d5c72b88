"""`cpnet bench runtime|memory|profile`: the supplement's run-time curves, CP-vs-non-local memory, time breakdown
(:mod:`cpnet.app.bench`).

Each writes a CSV and a PNG into ``--out`` and prints a table; with ``--json`` it prints its rows as one JSON list
on stdout instead (progress always goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from cpnet.app.bench import BenchResult


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="run-time, memory and profile benchmarks (CSV + PNG)",
                              description="Benchmarks from the supplement: run time against batch size, training "
                                          "memory of one CP module against one non-local block, and where a "
                                          "model's inference time goes.")
    sub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)

    r = sub.add_parser("runtime", help="inference (or training step) time per batch and videos/s against batch size",
                       description="Time per batch (median, min and max over the repeats) and videos/s over a "
                                   "frames x batch grid, with a progress line and ETA per point on stderr. Warns "
                                   "(stderr) when other work was running (load average, sgemm rate) or a point's "
                                   "repeats differ by more than 1.3x.")
    _model_args(r)
    r.add_argument("--baseline", help="a second preset timed on the same grid, e.g. c2d_r34; prints the ratio "
                                      "(median, min and max of the per-repeat ratios)")
    r.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32], help="clip lengths (default 8 16 32)")
    r.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="batch sizes (default 1..16)")
    r.add_argument("--mode", choices=("infer", "train"), default="infer",
                   help="infer (default): forward in eval mode; train: one training step (forward, backward, SGD "
                        "step) in train mode on random labels")
    r.add_argument("--amp", choices=("off", "float16", "bfloat16"), default="off",
                   help="autocast dtype, CUDA only (default off: float32)")
    r.add_argument("--channels-last", action="store_true", help="channels-last weights and clips")
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
    p.add_argument("--force", action="store_true", help="replace the CSV and PNG an earlier run left in --out")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list on stdout")


def _emit(args: argparse.Namespace, result: BenchResult) -> int:
    """The warnings (stderr, so that --json keeps stdout one JSON list), then either the JSON list or the table,
    the notes and where the files went."""
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.rows))
        return 0
    print(result.table)
    for note in result.notes:
        print(note)
    for path in result.files:
        print(f"wrote {path}")
    return 0


def run_runtime(args: argparse.Namespace) -> int:
    from cpnet.app.bench import bench_runtime

    return _emit(args, bench_runtime(args.model, size=args.size, frames=args.frames, batch=args.batch,
                                     baseline=args.baseline, options=args.option, num_classes=args.num_classes,
                                     repeats=args.repeats, mode=args.mode, amp=args.amp,
                                     channels_last=args.channels_last, device=args.device, threads=args.threads,
                                     out=args.out, force=args.force))


def run_memory(args: argparse.Namespace) -> int:
    from cpnet.app.bench import bench_memory

    return _emit(args, bench_memory(args.sizes, k=args.k, blocks=args.blocks, repeats=args.repeats,
                                    device=args.device, threads=args.threads, out=args.out, force=args.force))


def run_profile(args: argparse.Namespace) -> int:
    from cpnet.app.bench import bench_profile

    return _emit(args, bench_profile(args.model, size=args.size, frames=args.frames, batch=args.batch,
                                     options=args.option, num_classes=args.num_classes, repeats=args.repeats,
                                     device=args.device, threads=args.threads, out=args.out, force=args.force))
