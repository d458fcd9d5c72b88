"""`cpnet predict`: the top classes of a video file or frame folder, a timeline over a long video, or live
predictions on a camera or network stream."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from cpnet.app.config import DEVICES, PROTOCOLS

DESCRIPTION = """Classify with a trained checkpoint. A video file or frame folder: the softmax averaged over the
views of --views (default: the centre clip, centre crop), as `cpnet eval` scores a video. With --window: one
prediction per window of a long video, written to --out as timeline.csv, timeline.json and timeline.png. A camera
(/dev/video0), a URL FFmpeg opens (rtsp://, http://, ...) or any video with --stream: frames are decoded as they
arrive and the last clip span is classified every --stride seconds, until the end, --max-seconds or Ctrl-C."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="classify a video, a long video's windows, or a live stream",
                              description=DESCRIPTION)
    p.add_argument("path", help="video file, frame folder, camera device (/dev/video0) or stream URL (rtsp://...)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by `cpnet train`")
    p.add_argument("--topk", "--top", dest="topk", type=int, default=5, metavar="N",
                   help="how many classes to report (default 5; --top is the old spelling)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (CUDA when available, default), cpu, cuda")
    p.add_argument("--views", choices=PROTOCOLS, default="single",
                   help="test-time views averaged per prediction, as `cpnet eval --protocol` (default single)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout (a stream: one object per line)")
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="a timeline: classify every window of this length (a stream: the span classified)")
    p.add_argument("--stride", type=float, metavar="SECONDS",
                   help="seconds between windows or live predictions (default: the window, or one clip span)")
    p.add_argument("--out", help="folder for the timeline files (default: <name>_timeline)")
    p.add_argument("--force", action="store_true", help="replace timeline files already in --out")
    p.add_argument("--fps", type=float, default=12.0,
                   help="frame rate of a frame folder, or of a video or stream that states none (default 12)")
    p.add_argument("--stream", action="store_true", help="read the input as a live stream even if it is a file")
    p.add_argument("--format", dest="fmt", metavar="FMT",
                   help="FFmpeg input format of a live source (default: v4l2 for /dev/video*, else probed)")
    p.add_argument("--max-seconds", type=float, metavar="SECONDS", help="stop a live source after this long")
    p.add_argument("--overlay", metavar="OUT.mp4", help="write the video with the top classes and a running timeline "
                   "drawn on it (.mp4, .mkv, .mov or .avi; windows of one clip span every half span unless --window "
                   "and --stride say otherwise; --force replaces it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cpnet.app.predict import predict_command

    refresh = sys.stdout.isatty() and not args.json
    done = predict_command(args.path, args.checkpoint, topk=args.topk, device=args.device, views=args.views,
                           window=args.window, stride=args.stride, out=args.out, force=args.force, fps=args.fps,
                           stream=args.stream, fmt=args.fmt, max_seconds=args.max_seconds, overlay=args.overlay,
                           emit=_live_printer(args.json, refresh))
    result = done.result
    if args.json:
        print(json.dumps(result))
        return 0
    if done.kind == "file":
        print(_header(result))
        for rank, c in enumerate(result["top"], 1):
            print(f"{rank}. {c['class']}  {100 * c['probability']:.1f}%")
        print(_throughput(result), file=sys.stderr)  # stdout stays the header and the ranked list
    elif done.kind == "timeline":
        print(_header(result))
        for w in result["windows"]:
            best = w["top"][0]
            print(f"{w['start_s']:8.2f}-{w['end_s']:.2f}s  {best['class']}  {100 * best['probability']:.1f}%")
        for file in done.files:
            print(f"wrote {file}")
        print(f"{len(result['windows'])} windows; {_throughput(result)}")
    else:
        if refresh and result["predictions"]:
            print()  # end the refreshed line
        print(f"stopped ({result['stopped']}): {result['predictions']} predictions over "
              f"{result['stream_seconds']:.1f} s of {args.path}; {_throughput(result)}")
    return 0


def _live_printer(as_json: bool, refresh: bool) -> Callable[[dict], None]:
    """One line per prediction, or one line rewritten in place on a terminal; JSON lines with ``as_json``."""
    def emit(row: dict) -> None:
        if as_json:
            print(json.dumps(row), flush=True)
            return
        line = f"{row['time_s']:8.2f}s  " + "  ".join(f"{c['class']} {100 * c['probability']:.1f}%"
                                                      for c in row["top"])
        if refresh:
            print(f"\r{line}\x1b[K", end="", flush=True)  # carriage return, line, erase what a longer one left
        else:
            print(line, flush=True)
    return emit


def _header(result: dict) -> str:
    """What the lines below are about: the video, the model and checkpoint, the views."""
    views = result["views"]
    return (f"{result['source']}: {result['model']} ({result['checkpoint']}), {views['protocol']} views "
            f"({views['per_prediction']} per prediction)")


def _throughput(result: dict) -> str:
    views = result["views"]
    return (f"{result['clips']} clips ({views['protocol']} views, {views['per_prediction']} per prediction) in "
            f"{result['seconds']:.2f} s; model {result['clips_per_s']:.1f} clips/s on {result['device']}")
