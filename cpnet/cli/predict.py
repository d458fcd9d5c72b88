"""`cpnet predict`: the top-5 classes of one video file or frame folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="print the top-5 classes of a video or frame folder",
                              description="Classify one video file or frame folder with a trained checkpoint "
                                          "(centre clip, centre crop).")
    p.add_argument("path", help="video file (.mp4, .webm, ...) or folder of frames")
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by `cpnet train`")
    p.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cpnet.app.predict import predict_file

    for rank, (name, prob) in enumerate(predict_file(Path(args.path), Path(args.checkpoint), top=args.top), 1):
        print(f"{rank}. {name}  {100 * prob:.1f}%")
    return 0
