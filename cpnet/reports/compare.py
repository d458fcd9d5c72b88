"""Per-class gain of one evaluated run over another (supp. §F, Figures 3 and 5).

Takes two evaluations' per-class results (``cpnet.app.evalreport.load_eval`` reads them from ``cpnet eval``'s
report: class name → top-1, or None for a class without validation videos, and the video count per class). Gains
are B − A in top-1 points, sorted from the largest gain to the largest loss; classes without videos in either run
come last with no gain.
"""

from __future__ import annotations

from pathlib import Path

from cpnet.reports.plotting import pyplot, save_png
from cpnet.reports.tables import markdown_table


def compare_rows(a: dict, b: dict) -> list[dict]:
    """One row per class: top-1 of A and B and the gain B − A (fractions), sorted by gain, largest first."""
    names_a, names_b = list(a["per_class"]), list(b["per_class"])
    if set(names_a) != set(names_b):
        only_a = sorted(set(names_a) - set(names_b))[:5]
        only_b = sorted(set(names_b) - set(names_a))[:5]
        raise ValueError(f"the runs were evaluated on different classes: only in A {only_a}, only in B {only_b} "
                         f"({a['path']} vs {b['path']}); expected the same dataset")
    rows = []
    for name in names_a:
        acc_a, acc_b = a["per_class"][name], b["per_class"][name]
        gain = None if acc_a is None or acc_b is None else acc_b - acc_a
        rows.append({"class_name": name, "top1_a": acc_a, "top1_b": acc_b, "gain": gain,
                     "videos": b["videos"].get(name, a["videos"].get(name))})
    rows.sort(key=lambda r: (r["gain"] is None, -(r["gain"] or 0.0), r["class_name"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def gains_markdown(rows: list[dict], label_a: str, label_b: str, top: int = 10) -> str:
    """Markdown: the ``top`` largest gains and the ``top`` largest losses of B over A, in top-1 points."""
    scored = [r for r in rows if r["gain"] is not None]
    show = [{"class": r["class_name"], f"{label_a} top-1 %": 100 * r["top1_a"], f"{label_b} top-1 %": 100 * r["top1_b"],
             "gain (points)": 100 * r["gain"], "videos": r["videos"]} for r in scored]
    fmt = {f"{label_a} top-1 %": ".1f", f"{label_b} top-1 %": ".1f", "gain (points)": "+.1f"}
    cols = list(show[0]) if show else ["class"]
    gains = [s for s in show if s["gain (points)"] > 0][:top]
    losses = sorted((s for s in show if s["gain (points)"] < 0), key=lambda s: s["gain (points)"])[:top]
    mean = sum(r["gain"] for r in scored) / len(scored) if scored else 0.0
    lines = [f"# Per-class top-1: {label_b} minus {label_a}", "",
             f"{len(scored)} classes scored; mean per-class gain {100 * mean:+.2f} points; "
             f"{sum(r['gain'] > 0 for r in scored)} gain, {sum(r['gain'] < 0 for r in scored)} lose, "
             f"{sum(r['gain'] == 0 for r in scored)} unchanged.", "",
             f"## Largest gains (top {top})", "", markdown_table(gains, cols, fmt) if gains else "(none)", "",
             f"## Largest losses (top {top})", "", markdown_table(losses, cols, fmt) if losses else "(none)"]
    return "\n".join(lines) + "\n"


def plot_gains(rows: list[dict], path: str | Path, label_a: str, label_b: str) -> Path:
    """Bar chart of the sorted per-class gains (green up, red down) with the class names under the bars."""
    plt = pyplot()
    scored = [r for r in rows if r["gain"] is not None]
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.28 * len(scored) + 2), 60), 5))
    x = range(len(scored))
    gains = [100 * r["gain"] for r in scored]
    ax.bar(x, gains, color=["tab:green" if g >= 0 else "tab:red" for g in gains])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), [r["class_name"] for r in scored], rotation=90, fontsize=9 if len(scored) <= 30 else 6)
    ax.set_xlim(-0.6, len(scored) - 0.4)
    ax.set_ylabel(f"top-1 of {label_b} minus {label_a} (points)")
    ax.set_title(f"per-class gain of {label_b} over {label_a}")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    return Path(path)
