"""``cpnet visualize``: a CP module's correspondence proposals on one clip, and the activated channels each proposal
wins (supp. §H: a channel counts when its max-pooled value is positive after the ReLU), as a table, a PNG for a few
query points, and an HTML page that explores every CP module by clicking (:mod:`cpnet.reports.explorer`)."""

from __future__ import annotations

import os
from pathlib import Path

from cpnet.app.predict import load_clip
from cpnet.files import atomic_output
from cpnet.reports.explorer import ClipTrace, explorer_html, trace_model
from cpnet.reports.tables import text_table, write_csv
from cpnet.reports.visualize import correspondence_rows, plot_correspondences, point_index, strongest_points

COLUMNS = ["query", "query_t", "query_h", "query_w", "proposal", "t", "h", "w", "active_wins", "active", "width"]


def trace_clip(checkpoint: str | Path, video: str | Path) -> ClipTrace:
    """Every CP module of ``checkpoint``'s model on the centre clip, centre crop of ``video`` (as ``cpnet predict``
    sees it), from one forward: per module the search grid, proposals and channel wins (P, k) and output strength
    (P,), with the frames and the prediction, for notebooks to draw their own pictures."""
    loaded = load_clip(Path(video), Path(checkpoint))
    return trace_model(loaded.model, loaded.clip, loaded.frames, loaded.class_names)


def visualize_checkpoint(checkpoint: str | Path, video: str | Path, *, module: str | None = None,
                         points: list[tuple[int, int, int]] | None = None, num_points: int = 3,
                         out: str | Path | None = None, html: str | Path | None = None,
                         force: bool = False) -> tuple[list[dict], str, list[Path]]:
    """Run ``checkpoint`` on the centre clip of ``video`` and trace ``module`` (default: the first CP module) for
    ``points`` (t, h, w on its search grid; default: the ``num_points`` strongest responses). Writes
    ``correspondences.csv`` and ``correspondences.png`` into ``out`` (default ``visualize``, or nothing when only
    ``html`` is asked for) and the explorer of every CP module to ``html``, opening at ``module`` and the first
    point. Existing files are refused unless ``force``. Returns (rows, a title line and table, files written)."""
    if points is None and num_points < 1:
        raise ValueError(f"--num-points must be >= 1, got {num_points}")
    checkpoint, video = Path(checkpoint), Path(video)
    folder = Path(out if out is not None else "visualize") if out is not None or html is None else None
    targets = ([folder / "correspondences.csv", folder / "correspondences.png"] if folder else []) + (
        [Path(html)] if html is not None else [])
    existing = [t for t in targets if os.path.lexists(t)]
    if existing and not force:  # before the model runs: nothing a user has is replaced unasked
        raise ValueError(f"{existing[0]} already exists; pass --force to replace it (or choose another --out/--html)")
    loaded = load_clip(video, checkpoint)
    trace = trace_model(loaded.model, loaded.clip, loaded.frames, loaded.class_names)
    name = module if module is not None else next(iter(trace.modules))
    if name not in trace.modules:
        raise ValueError(f"no CP module named {name!r}; expected one of {', '.join(trace.modules)}")
    corr = trace.modules[name]
    queries = [point_index(corr.grid, p) for p in points] if points else strongest_points(corr, num_points)
    rows = correspondence_rows(corr, queries)
    title = f"{name} of {checkpoint.name} on {video.name}: k={corr.k}, " \
            f"{corr.width} channels, search grid {corr.grid[0]}x{corr.grid[1]}x{corr.grid[2]}"
    text = f"{title}\n{text_table(rows, COLUMNS)}"
    files = []
    if folder is not None:
        files += [write_csv(rows, folder / "correspondences.csv"),
                  plot_correspondences(loaded.frames, rows, corr.grid, folder / "correspondences.png", title)]
    if html is not None:
        page = explorer_html(trace, f"{checkpoint.name} ({loaded.model_name}) on {video.name}", name,
                             points[0] if points else None)
        with atomic_output(html) as tmp:
            tmp.write_text(page, encoding="utf-8")
        files.append(Path(html))
        count = f"{len(trace.modules)} CP module{'s' if len(trace.modules) > 1 else ''}"
        text += f"\nexplorer: {count} ({', '.join(trace.modules)}), " \
                f"{len(trace.frames)} frames, {Path(html).stat().st_size / 1e6:.2f} MB"
    return rows, text, files
