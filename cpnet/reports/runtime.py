"""Inference run time against batch size, one curve per clip length (supp. §G, Figure 4).

For every (frames, batch) of the grid the model runs ``warmup`` untimed forwards and ``repeats`` timed ones under
``torch.inference_mode`` on random clips (N, 3, T, size, size); the device is synchronised before each clock read
and the median is kept. Rows carry the seconds per batch and the videos per second (batch / seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from cpnet.models.registry import create_model
from cpnet.reports.tables import median_seconds, pyplot


def check_grid(size: int, frames: Sequence[int], batches: Sequence[int], repeats: int, warmup: int) -> None:
    """Raise ValueError naming the first bad grid value."""
    if size < 8:
        raise ValueError(f"--size must be >= 8 pixels, got {size}")
    for name, values in (("--frames", frames), ("--batch", batches)):
        if not values or min(values) < 1:
            raise ValueError(f"{name} must list positive integers, got {list(values)}")
    if min(frames) < 2:
        raise ValueError(f"--frames must be >= 2 (CP modules search across frames), got {list(frames)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")


def time_model(model: torch.nn.Module, size: int, frames: Sequence[int], batches: Sequence[int], *,
               device: torch.device, repeats: int = 5, warmup: int = 1, name: str = "",
               log: Callable[[str], None] | None = None) -> list[dict]:
    """One row per (frames, batch): median seconds per batch and videos per second of ``model`` in eval mode."""
    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    gen = torch.Generator().manual_seed(0)
    rows = []
    for t in frames:
        for n in batches:
            clip = torch.randn(n, 3, t, size, size, generator=gen).to(device)  # (N, 3, T, H, W)
            with torch.inference_mode():
                seconds = median_seconds(lambda clip=clip: model(clip), repeats, warmup, sync)
            row = {"model": name, "device": device.type, "threads": torch.get_num_threads(), "size": size,
                   "frames": t, "batch": n, "seconds": seconds, "videos_per_s": n / seconds}
            if log:
                log(f"{name} T={t} N={n}: {seconds * 1000:.1f} ms/batch, {n / seconds:.2f} videos/s")
            rows.append(row)
    return rows


def runtime_rows(model_name: str, size: int, frames: Sequence[int], batches: Sequence[int], *,
                 baseline: str | None = None, overrides: dict | None = None, device: torch.device | None = None,
                 repeats: int = 5, warmup: int = 1, num_classes: int = 400,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Rows of ``model_name`` and, with ``baseline``, of the baseline on the same grid in the same process; the
    model's rows then gain ``vs_baseline`` (its seconds over the baseline's at the same frames and batch)."""
    check_grid(size, frames, batches, repeats, warmup)
    device = device or torch.device("cpu")
    rows = []
    for name in [model_name] + ([baseline] if baseline else []):
        torch.manual_seed(0)
        model = create_model(name, num_classes=num_classes, **(overrides or {}))
        rows += time_model(model, size, frames, batches, device=device, repeats=repeats, warmup=warmup, name=name,
                           log=log)
        del model
    if baseline:
        base = {(r["frames"], r["batch"]): r["seconds"] for r in rows if r["model"] == baseline}
        for r in rows:
            if r["model"] == model_name:
                r["vs_baseline"] = r["seconds"] / base[(r["frames"], r["batch"])]
    return rows


def plot_runtime(rows: list[dict], path: str | Path) -> Path:
    """Per model: seconds per batch (solid, left axis) and videos/s (dashed, right axis) against batch size, one
    colour per clip length."""
    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for ax, name in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == name]
        right = ax.twinx()
        for i, t in enumerate(dict.fromkeys(r["frames"] for r in mine)):
            curve = sorted((r for r in mine if r["frames"] == t), key=lambda r: r["batch"])
            x = [r["batch"] for r in curve]
            ax.plot(x, [r["seconds"] for r in curve], "-o", color=f"C{i}", label=f"{t} frames: s / batch")
            right.plot(x, [r["videos_per_s"] for r in curve], "--s", color=f"C{i}", label=f"{t} frames: videos/s")
        ax.set_xscale("log", base=2)
        batches = sorted({r["batch"] for r in mine})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("run time per batch (s), solid")
        right.set_ylabel("videos per second, dashed")
        ax.set_title(f"{name}, {mine[0]['size']}², {mine[0]['device']}")
        lines = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
