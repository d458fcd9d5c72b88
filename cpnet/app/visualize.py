"""``cpnet visualize``: a CP module's correspondence proposals on one clip, and the activated channels each proposal
wins (supp. §H: a channel counts when its max-pooled value is positive after the ReLU)."""

from __future__ import annotations

from pathlib import Path

from cpnet.app.predict import load_clip
from cpnet.reports.cp_hooks import capture_cp
from cpnet.reports.tables import text_table, write_csv
from cpnet.reports.visualize import (
    correspondence_rows,
    correspondences,
    plot_correspondences,
    point_index,
    strongest_points,
)


def visualize_checkpoint(checkpoint: str | Path, video: str | Path, *, module: str | None = None,
                         points: list[tuple[int, int, int]] | None = None, num_points: int = 3,
                         out: str | Path = "visualize") -> tuple[list[dict], str, list[Path]]:
    """Run ``checkpoint`` on the centre clip of ``video``, capture ``module`` (default: the first CP module) and
    write ``correspondences.csv`` and ``correspondences.png`` into ``out`` for ``points`` (t, h, w on the module's
    search grid; default: the ``num_points`` strongest responses). Returns (rows, a title line and table, files)."""
    if points is None and num_points < 1:
        raise ValueError(f"--num-points must be >= 1, got {num_points}")
    checkpoint, video = Path(checkpoint), Path(video)
    model, clip, frames, _ = load_clip(video, checkpoint)
    capture = capture_cp(model, clip, module)
    corr = correspondences(capture)
    queries = [point_index(corr.grid, p) for p in points] if points else strongest_points(corr, num_points)
    rows = correspondence_rows(corr, queries)
    out = Path(out)
    title = f"{capture.name} of {checkpoint.name} on {video.name}: k={capture.module.k}, " \
            f"{corr.width} channels, search grid {corr.grid[0]}x{corr.grid[1]}x{corr.grid[2]}"
    files = [write_csv(rows, out / "correspondences.csv"),
             plot_correspondences(frames, rows, corr.grid, out / "correspondences.png", title)]
    columns = ["query", "query_t", "query_h", "query_w", "proposal", "t", "h", "w", "active_wins", "active", "width"]
    return rows, f"{title}\n{text_table(rows, columns)}", files
