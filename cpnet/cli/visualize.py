"""`cpnet visualize`: a CP module's correspondence proposals on one clip, and the activated channels each proposal
wins (supp. §H: a channel counts when its max-pooled value is positive after the ReLU)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cpnet.reports.tables import text_table, write_csv


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("visualize", help="draw a CP module's proposals and the activated channels each wins",
                              description="Run a trained checkpoint on one video or frame folder (centre clip, "
                                          "centre crop, as `cpnet predict`), capture one CP module with hooks, and "
                                          "draw each query point's k proposals in the other frames, sized and "
                                          "coloured by how many output channels of the max-pool each wins among the "
                                          "activated ones (positive after the ReLU; supp. §H). correspondences.csv: "
                                          "active_wins per proposal, active (activated channels of the query "
                                          "point) and width (mlp[-1]).")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `cpnet train`")
    p.add_argument("--input", required=True, help="video file or folder of frames")
    p.add_argument("--module", help="qualified CP module name, e.g. layer2.0.cp (default: the first)")
    p.add_argument("--points", nargs="+", metavar="T,H,W", help="query points on the module's search grid "
                                                                "(default: the strongest CP responses)")
    p.add_argument("--num-points", type=int, default=3, help="query points when --points is not given (default 3)")
    p.add_argument("--out", default="visualize", help="folder for correspondences.csv and correspondences.png")
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
    from cpnet.app.predict import load_clip
    from cpnet.reports.cp_hooks import capture_cp
    from cpnet.reports.visualize import (
        correspondence_rows,
        correspondences,
        plot_correspondences,
        point_index,
        strongest_points,
    )

    points = [_parse_point(p) for p in args.points] if args.points else None
    if points is None and args.num_points < 1:
        raise ValueError(f"--num-points must be >= 1, got {args.num_points}")
    model, clip, frames, _ = load_clip(Path(args.input), Path(args.checkpoint))
    capture = capture_cp(model, clip, args.module)
    corr = correspondences(capture)
    queries = [point_index(corr.grid, p) for p in points] if points else strongest_points(corr, args.num_points)
    rows = correspondence_rows(corr, queries)
    out = Path(args.out)
    title = f"{capture.name} of {Path(args.checkpoint).name} on {Path(args.input).name}: k={capture.module.k}, " \
            f"{corr.width} channels, search grid {corr.grid[0]}x{corr.grid[1]}x{corr.grid[2]}"
    files = [write_csv(rows, out / "correspondences.csv"),
             plot_correspondences(frames, rows, corr.grid, out / "correspondences.png", title)]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(title)
    columns = ["query", "query_t", "query_h", "query_w", "proposal", "t", "h", "w", "active_wins", "active", "width"]
    print(text_table(rows, columns))
    for path in files:
        print(f"wrote {path}")
    return 0
