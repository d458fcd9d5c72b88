"""`cpnet data synth` writes the synthetic motion set in the Jester layout; `cpnet data check` reads every record
of a dataset and reports what is missing, undecodable or odd (exit code 1 when any media is bad)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cpnet.data import synthetic
from cpnet.data.annotations import DATASETS
from cpnet.data.commands import check_dataset, format_report, report_dict


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="write the synthetic dataset; check a dataset's media")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    synth = sub.add_parser("synth", help="write the synthetic motion dataset in the Jester layout")
    synth.add_argument("--out", required=True, type=Path, help="output folder (reused when already complete)")
    synth.add_argument("--train", type=int, default=synthetic.DEFAULT_NUM_TRAIN, help="training clips")
    synth.add_argument("--val", type=int, default=synthetic.DEFAULT_NUM_VAL, help="validation clips")
    synth.add_argument("--frames", type=int, default=8, help="frames per clip")
    synth.add_argument("--size", type=int, default=32, help="frame height and width in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--noise", type=float, default=synthetic.DEFAULT_NOISE, help="per-pixel noise std in [0, 1]")
    synth.add_argument("--distractors", type=int, default=synthetic.DEFAULT_DISTRACTORS, help="distractor shapes")
    synth.add_argument("--workers", type=int, default=1, help="processes writing clips")
    synth.set_defaults(func=run_synth)

    check = sub.add_parser("check", help="decode every record of a dataset and report problems")
    check.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    check.add_argument("--root", required=True, type=Path, help="folder with the official annotation files")
    check.add_argument("--split", action="append", help="split to check (repeatable); default: every split found")
    check.add_argument("--quick", action="store_true", help="decode only the first and last frame of each video")
    check.add_argument("--workers", type=int, default=1, help="processes decoding media")
    check.add_argument("--min-frames", type=int, default=1, help="flag videos with fewer frames than this")
    check.add_argument("--allow-missing", action="store_true", help="missing media do not fail the check")
    check.add_argument("--json", type=Path, help="also write the full report as JSON here")
    check.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = synthetic.write_jester(
        args.out, num_train=args.train, num_val=args.val, num_frames=args.frames, size=args.size, seed=args.seed,
        noise=args.noise, distractors=args.distractors, workers=args.workers, progress=True,
    )  # fmt: skip
    print(f"synthetic dataset ({args.train} train + {args.val} validation clips) in {out} "
          f"[{time.perf_counter() - start:.1f} s]; train with --dataset jester --root {out}")  # fmt: skip
    return 0


def run_check(args: argparse.Namespace) -> int:
    reports = check_dataset(
        args.dataset, args.root, args.split, quick=args.quick, workers=args.workers, min_frames=args.min_frames
    )
    print(format_report(args.dataset, reports))
    if args.json:
        args.json.write_text(json.dumps(report_dict(reports), indent=1))
    bad = sum(len(r.bad) for r in reports)
    missing = sum(len(r.missing) for r in reports)
    failed = bad > 0 or (missing > 0 and not args.allow_missing)
    print(f"check {'FAILED' if failed else 'passed'}: {bad} undecodable, {missing} missing")
    return 1 if failed else 0
