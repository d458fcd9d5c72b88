"""`cpnet models`: every registered preset with its parameter counts, beside the supplement's where it prints one
(:mod:`cpnet.app.models`)."""

from __future__ import annotations

import argparse
import json
import math

FOOTNOTE = ("paper count: conv weights + fc weight + fc bias, in units of 2^20 (the supplement's convention), "
            "truncated to two\ndecimals as the supplement prints them; supp.: the supplement's Table 1 (400 classes; "
            "– where it prints none)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model presets and their parameter counts")
    p.add_argument("--num-classes", type=int, default=400, help="classifier outputs (default: 400, as the paper)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def _trunc2(value: float) -> str:
    """Truncate (not round) to two decimals, as the supplement prints its counts."""
    return f"{math.floor(value * 100) / 100:.2f}"


def _paper(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace) -> int:
    if args.num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1, got {args.num_classes}")
    from cpnet.app.models import model_table

    rows = model_table(args.num_classes)
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'model':<{width}} {'params (M)':>11} {'paper count (2^20)':>19} {'supp.':>6}")
    for row in rows:
        print(f"{row['name']:<{width}} {row['params'] / 1e6:>11.2f} {_trunc2(row['params_paper']):>19} "
              f"{_paper(row['paper']):>6}")
    print(FOOTNOTE)
    print()
    print("one-module variants: the supplement's NL-R18 and CPNet-R18 counts are C2D-R18 plus one res3 module")
    print(f"{'variant':<{width}} {'options':<26} {'paper count (2^20)':>19} {'+ weights':>10} {'supp.':>6}")
    for row in rows:
        if "one_module" in row:
            v = row["one_module"]
            options = json.dumps(v["options"], separators=(",", ":"))
            print(f"{row['name']:<{width}} {options:<26} {v['params_paper']:>19.4f} {v['increment_weights']:>+10,} "
                  f"{_paper(v['paper']):>6}")
    return 0
