"""Inference run time against batch size, one curve per clip length (supp. §G, Figure 4).

For every (frames, batch) of the grid each model runs ``warmup`` untimed forwards and ``repeats`` timed ones under
``torch.inference_mode`` on the same random clip (N, 3, T, size, size); with a baseline the timed forwards of the
two models alternate, so a load change on a shared machine hits both alike. The device is synchronised before
each clock read and the median is kept. Rows carry the seconds per batch and videos per second (batch / seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median

import torch

from cpnet.models.registry import create_model
from cpnet.reports.plotting import pyplot, save_png


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


def _interleaved_medians(fns: list[Callable[[], object]], repeats: int, warmup: int,
                         sync: Callable[[], None]) -> list[float]:
    """Median seconds of each of ``fns``, timed in turns (A B A B …) so that a change in machine load during the
    measurement affects every function alike and their ratio stays fair."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, store in zip(fns, times):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            store.append(time.perf_counter() - t0)
    return [median(store) for store in times]


def time_models(models: dict[str, torch.nn.Module], size: int, frames: Sequence[int], batches: Sequence[int], *,
                device: torch.device, repeats: int = 5, warmup: int = 1,
                log: Callable[[str], None] | None = None) -> list[dict]:
    """One row per (model, frames, batch): median seconds per batch and videos per second in eval mode; at each
    grid point the models run on the same clip, their repeats interleaved. Rows are grouped by model."""
    models = {name: m.to(device).eval() for name, m in models.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    rows: dict[str, list[dict]] = {name: [] for name in models}
    for t in frames:
        for n in batches:
            clip = torch.randn(n, 3, t, size, size, generator=gen).to(device)  # (N, 3, T, H, W)
            with torch.inference_mode():
                fns = [lambda m=m, clip=clip: m(clip) for m in models.values()]
                seconds = _interleaved_medians(fns, repeats, warmup, sync)
            for name, sec in zip(models, seconds):
                rows[name].append({"model": name, "device": device.type, "threads": torch.get_num_threads(),
                                   "size": size, "frames": t, "batch": n, "seconds": sec, "videos_per_s": n / sec})
                if log:
                    log(f"{name} T={t} N={n}: {sec * 1000:.1f} ms/batch, {n / sec:.2f} videos/s")
    return [row for name in models for row in rows[name]]


def runtime_rows(model_name: str, size: int, frames: Sequence[int], batches: Sequence[int], *,
                 baseline: str | None = None, overrides: dict | None = None, device: torch.device | None = None,
                 repeats: int = 5, warmup: int = 1, num_classes: int = 400,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Rows of ``model_name`` and, with ``baseline``, of the baseline on the same grid in the same process; the
    model's rows then gain ``vs_baseline`` (its seconds over the baseline's at the same frames and batch)."""
    check_grid(size, frames, batches, repeats, warmup)
    device = device or torch.device("cpu")
    models = {}
    for name in dict.fromkeys([model_name] + ([baseline] if baseline else [])):
        torch.manual_seed(0)
        models[name] = create_model(name, num_classes=num_classes, **(overrides or {}))
    rows = time_models(models, size, frames, batches, device=device, repeats=repeats, warmup=warmup, log=log)
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
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    save_png(fig, path, dpi=100, bbox_inches="tight")
    return Path(path)
