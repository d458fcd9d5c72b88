"""The one matplotlib set-up of cpnet's figures."""

from __future__ import annotations

from types import ModuleType

__all__ = ["pyplot"]


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
