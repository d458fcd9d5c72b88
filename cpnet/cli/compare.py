"""`cpnet compare RUN_A RUN_B`: per-class top-1 gain of run B over run A (CSV, markdown, bar chart;
:mod:`cpnet.app.compare`)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="per-class gain of one evaluated run over another",
                              description="Per-class top-1 of RUN_B minus RUN_A (two runs evaluated with `cpnet "
                                          "eval` on the same dataset), sorted, as a bar chart, a CSV and a markdown "
                                          "table of the largest gains and losses.")
    p.add_argument("run_a", metavar="RUN_A", help="baseline: run folder, evaluation folder or eval.json")
    p.add_argument("run_b", metavar="RUN_B", help="compared run (gains are B - A)")
    p.add_argument("--report", help="evaluation subfolder to read when a run holds several (e.g. "
                                    "eval_validation_single)")
    p.add_argument("--labels", nargs=2, metavar=("A", "B"), help="names for the two runs (default: their models)")
    p.add_argument("--top", type=int, default=10, help="gains and losses listed in the markdown (default 10)")
    p.add_argument("--out", default="compare", help="folder for compare.csv, compare.md, compare.png")
    p.add_argument("--force", action="store_true", help="replace compare.csv/.md/.png an earlier run left in --out")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cpnet.app.compare import compare_runs

    rows, text, files = compare_runs(args.run_a, args.run_b, report=args.report, labels=args.labels, top=args.top,
                                     out=args.out, force=args.force)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(text, end="")
    for path in files:
        print(f"wrote {path}")
    return 0
