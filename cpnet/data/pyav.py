"""PyAV, imported when a video is first decoded or encoded rather than when cpnet is.

cpnet then imports, and trains on frame folders (the synthetic set among them), on a machine without PyAV, such as
a bare GPU machine (scripts/gpu-check.sh). The media modules use ``av`` from here exactly as the module itself; the
first attribute read imports PyAV, and where it is missing that read raises an ImportError saying what needs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["av", "load"]


def load() -> ModuleType:
    """The ``av`` module; ImportError naming PyAV and the reason when it does not import."""
    try:
        return importlib.import_module("av")
    except ImportError as e:
        raise ImportError(f"reading or writing video files needs PyAV (pip install av), which did not import: {e}",
                          name="av") from e


class _Deferred:
    """Stands for the ``av`` module: each attribute read is forwarded to :func:`load` (cached in sys.modules)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(load(), name)

    def __repr__(self) -> str:
        return "<PyAV, imported on first use>"


av: Any = _Deferred()
