"""A timeline figure: the probabilities of a video's top classes over time, drawn from ``cpnet predict --window``'s
rows (the same numbers as its timeline.csv and timeline.json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cpnet.reports.plotting import pyplot, save_png


def plot_timeline(times: Sequence[float], series: Mapping[str, Sequence[float]], path: str | Path,
                  title: str = "", window: float | None = None) -> Path:
    """One line per class of ``series`` (class name -> probability at each of ``times``, seconds at the centre of
    each window), drawn in ``series``' order; ``window`` (seconds) is stated on the x axis. Returns ``path``."""
    if not series:
        raise ValueError("a timeline needs at least one class series")
    for name, values in series.items():
        if len(values) != len(times):
            raise ValueError(f"class {name!r} has {len(values)} probabilities for {len(times)} window times")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, 0.15 * len(times) + 5)), 3.6))
    marker = "o" if len(times) <= 40 else None  # markers show each window while they do not clutter
    for name, values in series.items():
        ax.plot(times, [100 * v for v in values], marker=marker, markersize=3, linewidth=1.5, label=name)
    ax.set_ylim(0, 100)
    ax.set_ylabel("probability (%)")
    ax.set_xlabel("time (s), window centre" + (f"; {window:g} s windows" if window else ""))
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, dpi=100)
    return path
