"""``cpnet compare RUN_A RUN_B``: per-class top-1 gain of run B over run A, as a CSV, a markdown table of the
largest gains and losses, and a bar chart."""

from __future__ import annotations

from pathlib import Path

from cpnet.app.evalreport import load_eval
from cpnet.files import atomic_write_text
from cpnet.reports.compare import compare_rows, gains_markdown, plot_gains
from cpnet.reports.tables import write_csv


def _labels(a: dict, b: dict, given: list[str] | None) -> tuple[str, str]:
    if given:
        return given[0], given[1]
    la, lb = a["model"] or Path(a["path"]).name, b["model"] or Path(b["path"]).name
    if la == lb:  # same model: name them by their folders instead
        la, lb = (Path(p).name if Path(p).name not in ("eval", "") else Path(p).parent.name
                  for p in (a["path"], b["path"]))
    return la, lb


def compare_runs(run_a: str | Path, run_b: str | Path, *, report: str | None = None,
                 labels: list[str] | None = None, top: int = 10, out: str | Path = "compare"
                 ) -> tuple[list[dict], str, list[Path]]:
    """Compare two evaluated runs; returns (rows, the markdown text, the files written into ``out``)."""
    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    a, b = load_eval(run_a, report), load_eval(run_b, report)
    label_a, label_b = _labels(a, b, labels)
    rows = compare_rows(a, b)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = gains_markdown(rows, label_a, label_b, top)
    atomic_write_text(out / "compare.md", text)
    files = [write_csv(rows, out / "compare.csv", ["rank", "class_name", "top1_a", "top1_b", "gain", "videos"]),
             out / "compare.md", plot_gains(rows, out / "compare.png", label_a, label_b)]
    return rows, text, files
