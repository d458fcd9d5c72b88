"""The one matplotlib set-up of cpnet's figures."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from cpnet.files import atomic_output

__all__ = ["pyplot", "save_png"]


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, imported on first use.

    Every cpnet figure is written to a file and never shown, so Agg is chosen always, not only without a display:
    the same PNG on a laptop, over SSH and in CI, and no GUI toolkit is started. matplotlib is imported here,
    lazily, so that ``import cpnet`` does not pay for it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, **options) -> Path:
    """Write ``fig`` as a PNG at ``path`` through :func:`cpnet.files.atomic_output` (a reader never sees half a
    figure; a symlink at ``path`` is replaced, never written through) and close it. ``options`` go to
    ``savefig``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", **options)
    pyplot().close(fig)
    return path
