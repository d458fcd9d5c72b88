"""Every CP module's correspondence proposals on one clip, as data (:class:`ClipTrace`) and as one self-contained
HTML page to explore them by clicking (:func:`explorer_html`; the page itself is ``explorer.html`` beside this file).

The trace holds, for every point of every CP module's search grid, its k proposals and the activated channels each
wins (supp. §H, counted as in :mod:`cpnet.reports.visualize`), and the module's output strength there; notebooks
draw their own pictures from it, and the page is built from nothing else. In the page the arrays travel as
base64 of little-endian unsigned integers of the smallest width that holds them (indices: uint16 below 65,536
points; wins: uint8 below 256 channels; strength: uint8, scaled to the module's largest value), the frames as JPEG
data URIs. A 12-frame 112² clip of the released Jester R34 (five CP modules of 12×14×14 points, k = 8) makes a file
of 0.49 MB, 0.08 MB of it the frames (``benchmarks/explorer_size.py``).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from PIL import Image

from cpnet.models.cp import CPModule
from cpnet.reports.cp_hooks import capture_all
from cpnet.reports.visualize import Correspondences, correspondences, point_index, strongest_points

DATA_MARK = "/*CPNET_DATA*/"  # where explorer.html takes its JSON
JPEG_QUALITY = 90


@dataclass
class ModuleTrace(Correspondences):
    """One CP module's :class:`Correspondences` on the clip (proposals and wins (P, k), active and response (P,)),
    with its qualified name, k, and where its grid rows and columns sit in the frame: ``rows`` (H',) and ``cols``
    (W'), the centres as fractions of the frame height and width (a shrunk search takes every r-th feature pixel, so
    its points are not the centres of an even tiling)."""

    name: str
    k: int
    rows: np.ndarray
    cols: np.ndarray

    def nearest(self, t: int, y: float, x: float) -> int:
        """Index of the grid point of frame ``t`` nearest to (y, x), fractions of the frame height and width: the
        point a click there selects."""
        h, w = int(np.abs(self.rows - y).argmin()), int(np.abs(self.cols - x).argmin())
        return point_index(self.grid, (t, h, w))


@dataclass
class ClipTrace:
    """What a model's CP modules found on one clip: the frames it saw, uint8 (T, S, S, 3), its class
    probabilities (classes,) with the class names, and a :class:`ModuleTrace` per CP module in forward order."""

    frames: np.ndarray
    probs: np.ndarray
    class_names: list[str]
    modules: dict[str, ModuleTrace]

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable classes (fewer when the model has fewer) with their probabilities."""
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.class_names[i], float(self.probs[i])) for i in order]


def grid_centres(cp: CPModule, size: int, searched: int) -> np.ndarray:
    """Centres of the ``searched`` grid rows (or columns) of ``cp`` on an input of ``size`` feature rows, as
    fractions of the frame: feature pixel j covers [j, j + 1) / size; a search shrunk by r takes every r-th pixel
    (``subsample``) or samples at i · size / searched (TF1's bilinear resize)."""
    if searched == size:
        step = 1.0
    elif cp.resample == "bilinear_tf1":
        step = size / searched
    else:
        step = float(cp.shrink)
    return ((np.arange(searched) * step + 0.5) / size).astype(np.float32)


def trace_model(model: torch.nn.Module, clip: torch.Tensor, frames: np.ndarray,
                class_names: list[str]) -> ClipTrace:
    """One forward of ``model`` on ``clip`` (1, 3, T, S, S) tracing every CP module; ``frames`` uint8 (T, S, S, 3)
    is the same clip for display."""
    if clip.dim() != 5 or clip.shape[0] != 1 or frames.shape[0] != clip.shape[2]:
        raise ValueError(f"expected one clip (1, 3, T, S, S) and its T frames, got {tuple(clip.shape)} and "
                         f"{tuple(frames.shape)}")
    logits, captures = capture_all(model, clip)
    modules = {}
    for name, cap in captures.items():
        corr = correspondences(cap)
        if corr.grid[0] != frames.shape[0]:
            raise ValueError(f"{name} searches {corr.grid[0]} time steps of a {frames.shape[0]}-frame clip: "
                             "the explorer needs one per frame")
        size_h, size_w = cap.inputs.shape[3:]
        rows, cols = grid_centres(cap.module, size_h, corr.grid[1]), grid_centres(cap.module, size_w, corr.grid[2])
        modules[name] = ModuleTrace(**vars(corr), name=name, k=cap.module.k, rows=rows, cols=cols)
    probs = torch.softmax(logits[0].float(), dim=0).numpy()
    return ClipTrace(frames, probs, list(class_names), modules)


# --- the page -------------------------------------------------------------------------------------------------------

def pack(values: np.ndarray) -> dict:
    """Non-negative integers as ``{"dtype", "data"}``: base64 of little-endian uint8, uint16 or uint32, the
    smallest that holds the largest value (the page decodes them with a DataView)."""
    values = np.asarray(values).ravel()
    if values.size and values.min() < 0:
        raise ValueError("pack takes non-negative integers")
    top = int(values.max()) if values.size else 0
    dtype = "uint8" if top < 2**8 else "uint16" if top < 2**16 else "uint32"
    data = values.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    return {"dtype": dtype, "data": base64.b64encode(data).decode("ascii")}


def unpack(packed: dict) -> np.ndarray:
    """The integers :func:`pack` stored (flat), as int64."""
    return np.frombuffer(base64.b64decode(packed["data"]), np.dtype(packed["dtype"]).newbyteorder("<")).astype(np.int64)


def jpeg_uri(frame: np.ndarray) -> str:
    """A uint8 (H, W, 3) frame as a JPEG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _module_data(m: ModuleTrace) -> dict:
    """One module for the page: grid, k, width, row/column centres, and the packed per-point arrays (strength:
    the response scaled to 0–255 by the module's largest, kept as ``strength_max``)."""
    top = float(m.response.max()) if m.response.size else 0.0
    strength = np.round(255 * m.response / top) if top > 0 else np.zeros_like(m.response)
    return {"name": m.name, "grid": list(m.grid), "k": m.k, "width": m.width,
            "rows": [round(float(v), 5) for v in m.rows], "cols": [round(float(v), 5) for v in m.cols],
            "proposals": pack(m.proposals), "wins": pack(m.wins), "strength": pack(strength.astype(np.int64)),
            "strength_max": top}


def explorer_data(trace: ClipTrace, title: str, module: str | None = None,
                  point: tuple[int, int, int] | None = None, topk: int = 5) -> dict:
    """The page's JSON: title, top-k prediction, frames, every module, and the selection it opens with: ``module``
    (default: the first) at ``point`` (t, h, w on its grid; default: its strongest response)."""
    if module is None:
        module = next(iter(trace.modules))
    if module not in trace.modules:
        raise ValueError(f"no CP module named {module!r}; expected one of {', '.join(trace.modules)}")
    first = trace.modules[module]
    index = point_index(first.grid, point) if point is not None else strongest_points(first, 1)[0]
    t, h, w = np.unravel_index(index, first.grid)
    return {"title": title, "top": [[name, p] for name, p in trace.top(topk)],
            "frames": [jpeg_uri(f) for f in trace.frames], "size": list(trace.frames.shape[1:3]),
            "modules": [_module_data(m) for m in trace.modules.values()],
            "start": {"module": module, "t": int(t), "y": float(first.rows[h]), "x": float(first.cols[w])}}


def explorer_html(trace: ClipTrace, title: str, module: str | None = None,
                  point: tuple[int, int, int] | None = None) -> str:
    """The explorer as one HTML document: ``explorer.html`` with :func:`explorer_data` inlined as JSON. ``<``,
    ``>`` and ``&`` are escaped so that no string of the data (a class name, a file name) can end the script."""
    data = json.dumps(explorer_data(trace, title, module, point), separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = resources.files("cpnet.reports").joinpath("explorer.html").read_text(encoding="utf-8")
    assert page.count(DATA_MARK) == 1, "explorer.html must hold the data mark once"
    return page.replace(DATA_MARK, data)
