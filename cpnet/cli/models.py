"""`cpnet models`: every registered preset with its parameter counts."""

from __future__ import annotations

import argparse
import json
import math

import torch

from cpnet.models.params import count_params, count_params_paper
from cpnet.models.registry import create_model, list_models


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model presets and their parameter counts")
    p.add_argument("--num-classes", type=int, default=400, help="classifier outputs (default: 400, as the paper)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def model_table(num_classes: int = 400) -> list[dict]:
    """One row per preset: name, all parameters, and the paper's count (conv + fc weights + fc bias, in 2^20)."""
    rows = []
    for name in list_models():
        with torch.device("meta"):  # counts only: no memory, no initialisation
            model = create_model(name, num_classes=num_classes)
        rows.append({"name": name, "params": count_params(model), "params_paper": count_params_paper(model)})
    return rows


def _trunc2(value: float) -> str:
    """Truncate (not round) to two decimals, as the supplement prints its counts."""
    return f"{math.floor(value * 100) / 100:.2f}"


def run(args: argparse.Namespace) -> int:
    if args.num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1, got {args.num_classes}")
    rows = model_table(args.num_classes)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'model':<12} {'params (M)':>11} {'paper count (2^20)':>19}")
    for row in rows:
        print(f"{row['name']:<12} {row['params'] / 1e6:>11.2f} {_trunc2(row['params_paper']):>19}")
    print("paper count: conv weights + fc weight + fc bias, in units of 2^20 (the supplement's convention)")
    return 0
