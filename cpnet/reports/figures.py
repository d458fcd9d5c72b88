"""Figures drawn from results: an evaluation's confusion matrix and the demo's per-class bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpnet.reports.plotting import pyplot, save_png


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix as an image; class names on the axes when there are few classes."""
    plt = pyplot()
    k = len(class_names)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)  # (K, K) fraction of each true class
    side = min(4 + 0.35 * k, 24)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def plot_per_class(results: dict[str, dict], path: Path) -> None:
    """Grouped bars: per-class top-1 of every model."""
    plt = pyplot()
    classes = list(next(iter(results.values()))["per_class"])
    x = np.arange(len(classes))
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(classes)), 4))
    for i, r in enumerate(results.values()):
        values = [np.nan if r["per_class"][c] is None else 100 * r["per_class"][c] for c in classes]
        ax.bar(x + (i - (len(results) - 1) / 2) * width, values, width, label=r["label"])
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(ncol=len(results), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    save_png(fig, path, dpi=100)
