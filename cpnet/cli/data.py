"""`cpnet data synth` writes the synthetic motion set in the Jester layout; `cpnet data check` reads every record
of a dataset and reports what is missing, undecodable or odd (exit code 1 when any media is bad); `cpnet data
prepare` re-encodes a user's videos for fast decoding, extracts their frames, or writes list files
(exit code 1 when any source is bad; :mod:`cpnet.app.data`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cpnet.app import data


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="write the synthetic dataset; check or prepare a dataset's media")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    synth = sub.add_parser("synth", help="write the synthetic motion dataset in the Jester layout")
    synth.add_argument("--out", required=True, type=Path, help="output folder (reused when already complete)")
    synth.add_argument("--train", type=int, default=data.DEFAULT_NUM_TRAIN, help="training clips")
    synth.add_argument("--val", type=int, default=data.DEFAULT_NUM_VAL, help="validation clips")
    synth.add_argument("--frames", type=int, default=8, help="frames per clip")
    synth.add_argument("--size", type=int, default=32, help="frame height and width in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--noise", type=float, default=data.DEFAULT_NOISE, help="per-pixel noise std in [0, 1]")
    synth.add_argument("--distractors", type=int, default=data.DEFAULT_DISTRACTORS, help="distractor shapes")
    synth.add_argument("--workers", type=int, default=1, help="processes writing clips")
    synth.set_defaults(func=run_synth)

    check = sub.add_parser("check", help="decode every record of a dataset and report problems")
    check.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
    check.add_argument("--root", required=True, type=Path, help="folder with the official annotation files")
    check.add_argument("--split", action="append", help="split to check (repeatable); default: every split found")
    check.add_argument("--quick", action="store_true", help="decode only the first and last frame of each video")
    check.add_argument("--workers", type=int, default=1, help="processes decoding media")
    check.add_argument("--min-frames", type=int, default=1, help="flag videos with fewer frames than this")
    check.add_argument("--allow-missing", action="store_true", help="missing media do not fail the check")
    check.add_argument("--json", type=Path, help="also write the full report as JSON here")
    check.add_argument("--force", action="store_true", help="replace the --json file if it exists")
    check.set_defaults(func=run_check)
    _add_prepare(sub)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="re-encode videos, extract frames or write list files for your own data")
    steps = parser.add_subparsers(dest="prepare_command", metavar="STEP")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    reencode = steps.add_parser("reencode", help="re-encode every video under --src: small, short keyframe interval")
    frames = steps.add_parser("frames", help="extract JPEG frames of every video under --src (Jester layout)")
    for step in (reencode, frames):
        step.add_argument("--src", required=True, type=Path, help="folder of videos (searched recursively; only read)")
        step.add_argument("--out", required=True, type=Path, help="output folder, outside --src")
    reencode.add_argument("--short-side", required=True, type=int, help="output short side in pixels (even)")
    reencode.add_argument("--keyframe-interval", type=int, default=12, help="at most this many frames per keyframe")
    reencode.add_argument("--codec", choices=data.CODECS, help="default: libx264 when available, else mpeg4")
    frames.add_argument("--short-side", type=int, help="output short side in pixels (even); default: source size")
    frames.add_argument("--keep-tree", action="store_true", help="OUT/<relative path>/00001.jpg instead of "
                        f"OUT/<relative path with '/' as '{data.ID_SEPARATOR}'>/00001.jpg")  # fmt: skip
    for step in (reencode, frames):
        step.add_argument("--fps", type=float, help="output frame rate (default: the source's)")
        step.add_argument("--workers", type=int, default=1, help="processes converting videos at once")
        step.add_argument("--force", action="store_true", help="redo outputs that exist (default: skip them)")
        step.set_defaults(func=run_prepare_media)
    lists = steps.add_parser("lists", help="write train.txt / validation.txt / classes.txt from a folder tree")
    lists.add_argument("--root", required=True, type=Path, help="folder holding <split>/<class>/<video or frames>")
    lists.add_argument("--out", required=True, type=Path, help="folder for the list files (may be --root)")
    lists.add_argument("--force", action="store_true", help="replace list files that exist with other content")
    lists.set_defaults(func=run_prepare_lists)


def run_synth(args: argparse.Namespace) -> int:
    print(data.synth(args.out, num_train=args.train, num_val=args.val, num_frames=args.frames, size=args.size,
                     seed=args.seed, noise=args.noise, distractors=args.distractors, workers=args.workers))
    return 0


def run_check(args: argparse.Namespace) -> int:
    text, failed = data.check(args.dataset, args.root, args.split, quick=args.quick, workers=args.workers,
                              min_frames=args.min_frames, allow_missing=args.allow_missing, json_path=args.json,
                              force=args.force)
    print(text)
    return 1 if failed else 0


def run_prepare_media(args: argparse.Namespace) -> int:
    lines, bad = data.prepare_media(
        args.prepare_command, args.src, args.out, short_side=args.short_side, fps=args.fps, workers=args.workers,
        force=args.force, keyframe_interval=getattr(args, "keyframe_interval", 12),
        codec=getattr(args, "codec", None), keep_tree=getattr(args, "keep_tree", False),
    )  # fmt: skip
    print("\n".join(lines))
    return 1 if bad else 0


def run_prepare_lists(args: argparse.Namespace) -> int:
    print(data.prepare_lists(args.root, args.out, force=args.force))
    return 0
