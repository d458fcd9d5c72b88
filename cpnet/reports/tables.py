"""Rows of plain values (list of dicts) as CSV, a fixed-width text table and a markdown table; median timing.

Every report is data first: the same rows are written to CSV, printed, and drawn, so the three always agree. Numbers
are written to CSV with :func:`format_value` (6 significant digits), the precision the tests compare at.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cpnet.files import atomic_write_text


def format_value(value: object) -> str:
    """A cell as text: floats with 6 significant digits, None as empty, everything else with ``str``."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def columns_of(rows: Sequence[dict]) -> list[str]:
    """Union of the rows' keys in first-seen order (rows may carry extra keys such as ratios)."""
    cols: list[str] = []
    for row in rows:
        cols += [key for key in row if key not in cols]
    return cols


def write_csv(rows: Sequence[dict], path: str | Path, columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` with a header line (missing keys give empty cells), whole or not at all
    (:func:`cpnet.files.atomic_write_text`: a symlink at ``path`` is replaced, never written through)."""
    cols = list(columns or columns_of(rows))
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(cols)
    for row in rows:
        writer.writerow([format_value(row.get(col)) for col in cols])
    return atomic_write_text(path, text.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV written by :func:`write_csv`, as strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def text_table(rows: Sequence[dict], columns: Sequence[str], formats: dict[str, str] | None = None) -> str:
    """A right-aligned fixed-width table; ``formats`` maps a column to a format spec (e.g. ``".1f"``)."""
    formats = formats or {}

    def cell(row: dict, col: str) -> str:
        value = row.get(col)
        if value is None:
            return "-"
        return format(value, formats[col]) if col in formats else format_value(value)

    body = [[cell(row, col) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in body)) if body else len(col) for i, col in enumerate(columns)]
    lines = ["  ".join(col.rjust(w) for col, w in zip(columns, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], formats: dict[str, str] | None = None) -> str:
    """A GitHub markdown table of ``rows``; ``formats`` as in :func:`text_table`."""
    formats = formats or {}

    def cell(row: dict, col: str) -> str:
        value = row.get(col)
        text = "-" if value is None else format(value, formats[col]) if col in formats else format_value(value)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row, col) for col in columns) + " |" for row in rows]
    return "\n".join(lines)


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1,
                   sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls; ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before each clock read so asynchronous devices are timed to completion."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])
