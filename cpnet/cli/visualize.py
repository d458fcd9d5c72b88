"""`cpnet visualize`: a CP module's correspondence proposals on one clip, and the activated channels each proposal
wins (supp. §H: a channel counts when its max-pooled value is positive after the ReLU; :mod:`cpnet.app.visualize`)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("visualize", help="draw a CP module's proposals and the activated channels each wins",
                              description="Run a trained checkpoint on one video or frame folder (centre clip, "
                                          "centre crop, as `cpnet predict`), capture one CP module with hooks, and "
                                          "draw each query point's k proposals in the other frames, sized and "
                                          "coloured by how many output channels of the max-pool each wins among the "
                                          "activated ones (positive after the ReLU; supp. §H). correspondences.csv: "
                                          "active_wins per proposal, active (activated channels of the query "
                                          "point) and width (mlp[-1]). --html: one self-contained page that "
                                          "explores every CP module of the clip by clicking.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `cpnet train`")
    p.add_argument("--input", required=True, help="video file or folder of frames")
    p.add_argument("--module", help="qualified CP module name, e.g. layer2.0.cp (default: the first)")
    p.add_argument("--points", nargs="+", metavar="T,H,W", help="query points on the module's search grid "
                                                                "(default: the strongest CP responses)")
    p.add_argument("--num-points", type=int, default=3, help="query points when --points is not given (default 3)")
    p.add_argument("--out", help="folder for correspondences.csv and correspondences.png (default: visualize; "
                                 "with --html, none unless given)")
    p.add_argument("--html", metavar="FILE", help="write an interactive explorer of every CP module (one HTML file, "
                                                  "opens from disk): click a point of a frame to see its proposals")
    p.add_argument("--force", action="store_true", help="replace correspondences.csv/.png and the --html file when "
                   "they exist (refused otherwise)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list on stdout")
    p.set_defaults(func=run)


def _parse_point(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"--points {text!r}: expected three integers t,h,w on the module's search grid")
    return values


def run(args: argparse.Namespace) -> int:
    from cpnet.app.visualize import visualize_checkpoint

    points = [_parse_point(p) for p in args.points] if args.points else None
    rows, text, files = visualize_checkpoint(args.checkpoint, args.input, module=args.module, points=points,
                                              num_points=args.num_points, out=args.out, html=args.html,
                                              force=args.force)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(text)
    for path in files:
        print(f"wrote {path}")
    return 0
