"""`cpnet demo`: train C2D, NL, C3D and CPNet on the synthetic motion set and compare them in one table."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cpnet.app.demo import MODELS

    p = subparsers.add_parser("demo", help="the main job: C2D vs NL vs C3D vs CPNet on synthetic motion",
                              description="Write (or reuse) the synthetic motion dataset in the Jester layout, "
                                          "train C2D, NL, C3D and CPNet on it with the same backbone, evaluate "
                                          "each and write a report.")
    p.add_argument("--out", default="runs/demo", help="report folder (default runs/demo)")
    p.add_argument("--data", help="dataset folder (default <out>/data); reused when it already holds the set")
    p.add_argument("--quick", action="store_true", help="a tiny version that runs in seconds (for CI)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), help="subset of models (default all four)")
    p.add_argument("--threads", type=int, help="torch compute threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every model (default 0; the dataset "
                   "stays the same)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars even on a terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cpnet.app.demo import demo_command

    demo_command(args.out, args.data, quick=args.quick, models=args.models, threads=args.threads, seed=args.seed,
                 progress=False if args.no_progress else None)
    return 0
