"""The README's demo tables from several `cpnet demo` runs: mean and minimum over runs, per model and per class.

    python benchmarks/demo_table.py runs/demo_s0 runs/demo_s1 ...   # folders holding summary.json

Prints markdown: one row per model (top-1, top-1 within the time-reversed pairs, worst paired class, training time,
each as mean and minimum, or mean and maximum for time), one row per class, the total times, and the runs'
machines and seeds. Every run must have trained the same models.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cpnet.data.synthetic import TIME_REVERSED_PAIRS
from cpnet.reports.machine import describe


def load(folders: list[str]) -> list[dict]:
    runs = []
    for folder in folders:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            raise SystemExit(f"{path}: not found (expected the summary.json of a cpnet demo run)")
        runs.append(json.loads(path.read_text()))
    keys = [list(r["models"]) for r in runs]
    if any(k != keys[0] for k in keys):
        raise SystemExit(f"the runs trained different models: {keys}")
    return runs


def _pct(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.1f} % ({100 * min(values):.1f} %)"


def tables(runs: list[dict]) -> str:
    paired = [name for pair in TIME_REVERSED_PAIRS for name in pair]
    keys = list(runs[0]["models"])
    labels = [runs[0]["models"][k]["label"] for k in keys]
    lines = ["| model | epochs | top-1 | top-1 within pairs | worst paired class | training time |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, label in zip(keys, labels):
        rows = [r["models"][key] for r in runs]
        worst = [min(row["per_class"][n] for n in paired) for row in rows]
        seconds = [row["train_seconds"] for row in rows]
        lines.append(f"| {label} | {rows[0]['epochs']} | {_pct([row['top1'] for row in rows])} | "
                     f"{_pct([row['pair_top1'] for row in rows])} | {_pct(worst)} | "
                     f"{statistics.mean(seconds):.0f} s ({max(seconds):.0f} s) |")
    classes = list(runs[0]["models"][keys[0]]["per_class"])
    lines += ["", "| class | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(keys)]
    for name in classes:
        cells = [_pct([r["models"][key]["per_class"][name] for r in runs]).replace(".0 %", " %") for key in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [r["total_seconds"] for r in runs]
    lines += ["", f"Total per run: mean {statistics.mean(totals):.0f} s, longest {max(totals):.0f} s "
              f"(data written in {statistics.mean(r['data_seconds'] for r in runs):.0f} s on average).", ""]
    lines += [f"- seed {r['seed']}: {describe(r['machine'])}; {r['total_seconds']:.0f} s" for r in runs]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="cpnet demo output folders (each with summary.json)")
    print(tables(load(p.parse_args().runs)))


if __name__ == "__main__":
    main()
