"""``cpnet compare RUN_A RUN_B``: per-class top-1 gain of run B over run A, as a CSV, a markdown table of the
largest gains and losses, and a bar chart."""

from __future__ import annotations

import os
from pathlib import Path

from cpnet.app.evalreport import load_eval
from cpnet.files import atomic_write_text
from cpnet.reports.compare import compare_rows, gains_markdown, plot_gains
from cpnet.reports.tables import write_csv

OUTPUTS = ("compare.csv", "compare.md", "compare.png")


def _labels(a: dict, b: dict, given: list[str] | None) -> tuple[str, str]:
    if given:
        return given[0], given[1]
    la, lb = a["model"] or Path(a["path"]).name, b["model"] or Path(b["path"]).name
    if la == lb:  # same model: name them by their folders instead
        la, lb = (Path(p).name if Path(p).name not in ("eval", "") else Path(p).parent.name
                  for p in (a["path"], b["path"]))
    return la, lb


def compare_runs(run_a: str | Path, run_b: str | Path, *, report: str | None = None,
                 labels: list[str] | None = None, top: int = 10, out: str | Path = "compare",
                 force: bool = False) -> tuple[list[dict], str, list[Path]]:
    """Compare two evaluated runs; returns (rows, the markdown text, the files written into ``out``). Files of an
    earlier comparison there are refused unless ``force``."""
    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    a, b = load_eval(run_a, report), load_eval(run_b, report)
    label_a, label_b = _labels(a, b, labels)
    rows = compare_rows(a, b)  # the inputs' errors first, then the output's
    existing = [Path(out) / n for n in OUTPUTS if os.path.lexists(Path(out) / n)]
    if existing and not force:
        raise ValueError(f"{existing[0]} already exists; pass --force to replace it, or choose another --out")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = gains_markdown(rows, label_a, label_b, top)
    csv_name, md_name, png_name = OUTPUTS
    atomic_write_text(out / md_name, text)
    files = [write_csv(rows, out / csv_name, ["rank", "class_name", "top1_a", "top1_b", "gain", "videos"]),
             out / md_name, plot_gains(rows, out / png_name, label_a, label_b)]
    return rows, text, files
