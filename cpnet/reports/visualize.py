"""Correspondence proposals of one CP module and how many activated output channels each wins (supp. §H, Figures
6–8).

For a query point p the module pools over its k proposals channel by channel: output channel c of p is
max_j relu(z[p, j, c]), z being the last MLP layer's BatchNorm output. A channel is *activated* at p when that value
is positive, and then *won* by the proposal j with the largest z[p, j, c] (the first one on an exact tie).
``wins[p, j]`` counts the activated channels proposal j provides, as the supplement counts them (its example: a
wrong proposal that wins only 3 of 64 channels). A channel whose z is ≤ 0 at every proposal is 0 after the ReLU
whichever proposal "wins" it, carries nothing from any proposal, and counts for none; so ``Σ_j wins[p, j]`` is the
number of activated channels at p (``active[p]``), at most ``mlp[-1]``. Everything comes from one traced forward of
the module (:func:`cpnet.reports.cp_hooks.capture_cp`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cpnet.reports.cp_hooks import CPCapture
from cpnet.reports.plotting import pyplot, save_png


@dataclass
class Correspondences:
    """For every search point of one clip: proposals (P, k) as indices into P, activated channels won (P, k), summing
    per point to its activated channels ``active`` (P,) ≤ ``width``, and the CP response (P,) = L2 norm of CP(s) over
    channels; the grid is (T, H', W')."""

    grid: tuple[int, int, int]
    proposals: np.ndarray
    wins: np.ndarray
    active: np.ndarray
    response: np.ndarray
    width: int


def channel_wins(last_layer: torch.Tensor, n: int, p: int, k: int) -> torch.Tensor:
    """(N·P·k, m) pair activations before the ReLU → int64 (N, P, k): how many of the m channels each proposal
    wins among the channels activated after the ReLU and max-pool (a channel ≤ 0 at every proposal counts for none)."""
    pre = last_layer.view(n, p, k, -1)  # (N, P, k, m)
    best, winner = pre.max(dim=2)  # (N, P, m): each channel's max over k and the proposal the max-pool picks
    active = (best > 0).long()  # relu(best) > 0: the channel is activated at this point
    return (F.one_hot(winner, k) * active.unsqueeze(-1)).sum(dim=2)  # (N, P, m, k) → (N, P, k)


def correspondences(capture: CPCapture, sample: int = 0) -> Correspondences:
    """Proposals, channel wins and responses of clip ``sample`` of a captured batch."""
    idx = capture.proposals  # (N, P, k)
    n, p, k = idx.shape
    wins = channel_wins(capture.last_layer, n, p, k)[sample].numpy()  # (P, k)
    response = capture.search_output.flatten(2).norm(dim=1)  # (N, C, T, H', W') → (N, C, P) → (N, P)
    return Correspondences(capture.grid, idx[sample].numpy(), wins, wins.sum(axis=1), response[sample].numpy(),
                           int(capture.last_layer.shape[-1]))


def point_index(grid: tuple[int, int, int], point: tuple[int, int, int]) -> int:
    """Frame-major index of (t, h, w) on the search grid; a ValueError names a point off the grid."""
    t, h, w = grid
    if len(point) != 3 or not all(0 <= v < lim for v, lim in zip(point, grid)):
        raise ValueError(f"point {tuple(point)} is off the module's search grid: expected t < {t}, h < {h}, w < {w}")
    return (point[0] * h + point[1]) * w + point[2]


def point_coords(grid: tuple[int, int, int], index: int) -> tuple[int, int, int]:
    """(t, h, w) of frame-major index ``index`` on ``grid``."""
    _, h, w = grid
    return index // (h * w), (index // w) % h, index % w


def strongest_points(corr: Correspondences, count: int) -> list[int]:
    """The ``count`` points with the largest CP response (ties: lowest index first)."""
    if count < 1:
        raise ValueError(f"the number of query points must be >= 1, got {count}")
    order = np.argsort(-corr.response, kind="stable")
    return [int(i) for i in order[:count]]


def correspondence_rows(corr: Correspondences, queries: list[int]) -> list[dict]:
    """One row per (query point, proposal): positions on the search grid, ``active_wins`` (the activated output
    channels the proposal wins), ``active`` (the query point's activated channels, the sum of its proposals'
    ``active_wins``) and ``width`` (the module's output channels, mlp[-1])."""
    rows = []
    for qi, q in enumerate(queries):
        qt, qh, qw = point_coords(corr.grid, q)
        for rank, (j, wins) in enumerate(zip(corr.proposals[q], corr.wins[q]), 1):
            t, h, w = point_coords(corr.grid, int(j))
            rows.append({"query": qi, "query_t": qt, "query_h": qh, "query_w": qw,
                         "response": float(corr.response[q]), "proposal": rank, "t": t, "h": h, "w": w,
                         "active_wins": int(wins), "active": int(corr.active[q]), "width": corr.width})
    return rows


def _arc(x0: float, y0: float, x1: float, y1: float, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A quadratic Bézier from (x0, y0) to (x1, y1) bulging upwards, so that lines between points of the same
    image row stay apart; the bulge grows with the distance and is capped at a third of the frame height."""
    s = np.linspace(0.0, 1.0, 24)
    cx, cy = (x0 + x1) / 2, min(y0, y1) - min(abs(x1 - x0) * 0.15, height / 3)
    xs = (1 - s) ** 2 * x0 + 2 * (1 - s) * s * cx + s**2 * x1
    ys = (1 - s) ** 2 * y0 + 2 * (1 - s) * s * cy + s**2 * y1
    return xs, ys


def plot_correspondences(frames: np.ndarray, rows: list[dict], grid: tuple[int, int, int], path: str | Path,
                         title: str = "") -> Path:
    """The clip's frames in a row, once per query point: the query (red star) joined to its proposals, each
    drawn with size and colour by the activated channels it wins and labelled ``active_wins/width``; each panel's
    title gives the point's activated channels and a note under the figure says what is counted.

    frames: uint8 (T, H, W, 3), the frames the model saw; grid: the module's (T, H', W') search grid.
    """
    plt = pyplot()
    t, hs, ws = grid
    height, width = frames.shape[1:3]
    gap = max(2, width // 16)
    strip = np.full((height, t * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for i in range(t):
        strip[:, i * (width + gap): i * (width + gap) + width] = frames[i]

    def xy(ti: int, hi: int, wi: int) -> tuple[float, float]:
        return ti * (width + gap) + (wi + 0.5) * width / ws - 0.5, (hi + 0.5) * height / hs - 0.5

    queries = sorted({r["query"] for r in rows})
    m = rows[0]["width"]  # the module's output channels, the same for every row
    fig_width, fig_height = max(6.0, 1.6 * t), 1.9 * len(queries) + 0.9
    fig, axes = plt.subplots(len(queries), 1, figsize=(fig_width, fig_height), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, qi in zip(axes[:, 0], queries):
        mine = [r for r in rows if r["query"] == qi]
        ax.imshow(strip)
        qx, qy = xy(mine[0]["query_t"], mine[0]["query_h"], mine[0]["query_w"])
        for r in sorted(mine, key=lambda r: r["active_wins"]):
            px, py = xy(r["t"], r["h"], r["w"])
            share = r["active_wins"] / m
            colour = cmap(share)
            ax.plot(*_arc(qx, qy, px, py, height), color=colour, linewidth=0.5 + 2.5 * share, alpha=0.8)
            ax.scatter([px], [py], s=15 + 185 * share, color=colour, edgecolors="white", linewidths=0.5, zorder=3)
            ax.annotate(f"{r['active_wins']}/{m}", (px, py), xytext=(3, 3), textcoords="offset points", fontsize=6,
                        color="yellow")
        ax.scatter([qx], [qy], marker="*", s=160, color="red", edgecolors="white", linewidths=0.6, zorder=4)
        q = mine[0]
        ax.set_title(f"query {qi}: t={q['query_t']} h={q['query_h']} w={q['query_w']} (response "
                     f"{q['response']:.3g}; {q['active']} of {m} channels activated)", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    note = (f"a/{m}: the proposal wins a of the {m} output channels, counting only activated channels (max-pooled "
            "value > 0 after the ReLU); a channel ≤ 0 at every proposal counts for none")
    fig.text(0.5, 0.01, textwrap.fill(note, int(fig_width * 17)), ha="center", va="bottom", fontsize=6)
    fig.tight_layout(rect=(0, 0.3 / fig_height, 1, 1))  # keep 0.3 in for the note
    save_png(fig, path, dpi=110)
    return Path(path)
