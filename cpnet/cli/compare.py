"""`cpnet compare RUN_A RUN_B`: per-class top-1 gain of run B over run A (CSV, markdown, bar chart)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cpnet.reports.tables import write_csv


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
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list on stdout")
    p.set_defaults(func=run)


def _labels(a: dict, b: dict, given: list[str] | None) -> tuple[str, str]:
    if given:
        return given[0], given[1]
    la, lb = a["model"] or Path(a["path"]).name, b["model"] or Path(b["path"]).name
    if la == lb:  # same model: name them by their folders instead
        la, lb = (Path(p).name if Path(p).name not in ("eval", "") else Path(p).parent.name
                  for p in (a["path"], b["path"]))
    return la, lb


def run(args: argparse.Namespace) -> int:
    from cpnet.reports.compare import compare_rows, gains_markdown, load_eval, plot_gains

    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    a, b = load_eval(args.run_a, args.report), load_eval(args.run_b, args.report)
    label_a, label_b = _labels(a, b, args.labels)
    rows = compare_rows(a, b)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = gains_markdown(rows, label_a, label_b, args.top)
    (out / "compare.md").write_text(text)
    files = [write_csv(rows, out / "compare.csv", ["rank", "class_name", "top1_a", "top1_b", "gain", "videos"]),
             out / "compare.md", plot_gains(rows, out / "compare.png", label_a, label_b)]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(text, end="")
    for path in files:
        print(f"wrote {path}")
    return 0
