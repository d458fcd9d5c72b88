"""Run time against batch size, one curve per clip length (supp. §G, Figure 4): inference, or a training step.

For every (frames, batch) of the grid each model runs ``warmup`` untimed calls and ``repeats`` timed ones on the
same random clip (N, 3, T, size, size): in ``infer`` mode a forward under ``torch.inference_mode`` in eval mode, in
``train`` mode one training step in train mode (forward, cross-entropy on random labels, backward, SGD step). With
a baseline the timed calls of the models alternate (A B A B …), so a load change on a shared machine hits both
alike, and each repeat gives one ratio. The device is synchronised before each clock read. Rows carry the median
seconds per batch with the min and max over the repeats, videos per second (batch / median), the 1-minute load
average when the point started and, for the model, the median, min and max of the per-repeat ratios.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F

from cpnet.models.registry import create_model
from cpnet.reports.machine import load_average
from cpnet.reports.plotting import pyplot, save_png

MODES = ("infer", "train")
AMP = ("float16", "bfloat16")
# A point whose slowest repeat took more than this times its fastest was disturbed (machine load, frequency).
SPREAD_LIMIT = 1.3


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


def _interleaved_times(fns: list[Callable[[], object]], repeats: int, warmup: int,
                       sync: Callable[[], None]) -> list[list[float]]:
    """Seconds of every timed call of each of ``fns``, timed in turns (A B A B …) so that a change in machine load
    affects every function alike and the ratio of repeat i is taken between calls made back to back."""
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
    return times


def _autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=getattr(torch, amp)) if amp else contextlib.nullcontext()


def _infer_fn(model: torch.nn.Module, clip: torch.Tensor, amp: str | None) -> Callable[[], object]:
    def forward() -> object:
        with torch.inference_mode(), _autocast(clip.device, amp):
            return model(clip)
    return forward


def _train_fn(model: torch.nn.Module, clip: torch.Tensor, num_classes: int, amp: str | None) -> Callable[[], object]:
    """One training step as the engine runs it: SGD with the released recipe's momentum and weight decay, loss
    scaling under float16 autocast."""
    labels = torch.randint(num_classes, (clip.shape[0],), generator=torch.Generator().manual_seed(1))
    labels = labels.to(clip.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(clip.device.type, enabled=amp == "float16")

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(clip.device, amp):
            loss = F.cross_entropy(model(clip), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss
    return step


def _spread(values: Sequence[float]) -> tuple[float, float, float]:
    return median(values), min(values), max(values)


def format_eta(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def time_models(models: dict[str, torch.nn.Module], size: int, frames: Sequence[int], batches: Sequence[int], *,
                device: torch.device, repeats: int = 5, warmup: int = 1, mode: str = "infer",
                baseline: str | None = None, num_classes: int = 400, amp: str | None = None,
                channels_last: bool = False, log: Callable[[str], None] | None = None) -> list[dict]:
    """One row per (model, frames, batch), grouped by model: median, min and max seconds per batch and videos/s;
    every model but ``baseline`` gains ``vs_baseline`` (median of its per-repeat ratios to the baseline) with
    ``vs_baseline_min`` and ``vs_baseline_max``. ``log`` gets a line per grid point with its figures and the ETA of
    the grid (remaining points weighted by frames x batch, from the time the finished ones took per clip frame)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    models = {name: m.to(device, memory_format=layout).train(mode == "train") for name, m in models.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    rows: dict[str, list[dict]] = {name: [] for name in models}
    grid = [(t, n) for t in frames for n in batches]
    total, done, start = sum(t * n for t, n in grid), 0, time.perf_counter()
    for k, (t, n) in enumerate(grid, 1):
        load = load_average()
        clip = torch.randn(n, 3, t, size, size, generator=gen).to(device, memory_format=layout)  # (N, 3, T, H, W)
        fns = [_train_fn(m, clip, num_classes, amp) if mode == "train" else _infer_fn(m, clip, amp)
               for m in models.values()]
        times = dict(zip(models, _interleaved_times(fns, repeats, warmup, sync)))
        for name, secs in times.items():
            mid, low, high = _spread(secs)
            row = {"model": name, "mode": mode, "device": device.type, "threads": torch.get_num_threads(),
                   "amp": amp or "off", "channels_last": channels_last, "size": size, "frames": t, "batch": n,
                   "seconds": mid, "seconds_min": low, "seconds_max": high, "videos_per_s": n / mid, "load1": load}
            if baseline and name != baseline:
                ratios = [a / b for a, b in zip(secs, times[baseline])]  # repeat i of both ran back to back
                row["vs_baseline"], row["vs_baseline_min"], row["vs_baseline_max"] = _spread(ratios)
            rows[name].append(row)
        done += t * n
        if log:
            elapsed = time.perf_counter() - start
            log(f"point {k}/{len(grid)} T={t} N={n}: {_point_text([r[-1] for r in rows.values()], baseline)}; "
                f"ETA {format_eta(elapsed / done * (total - done))}")
    return [row for name in models for row in rows[name]]


def _point_text(rows: list[dict], baseline: str | None) -> str:
    parts = [f"{r['model']} {r['seconds']:.4f} s [{r['seconds_min']:.4f}-{r['seconds_max']:.4f}]" for r in rows]
    parts += [f"{r['model']}/{baseline} {r['vs_baseline']:.2f}x [{r['vs_baseline_min']:.2f}-{r['vs_baseline_max']:.2f}]"
              for r in rows if "vs_baseline" in r]
    return ", ".join(parts)


def runtime_rows(model_name: str, size: int, frames: Sequence[int], batches: Sequence[int], *,
                 baseline: str | None = None, overrides: dict | None = None, device: torch.device | None = None,
                 repeats: int = 5, warmup: int = 1, num_classes: int = 400, mode: str = "infer",
                 amp: str | None = None, channels_last: bool = False,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Rows of ``model_name`` and, with ``baseline``, of the baseline on the same grid in the same process (see
    :func:`time_models`)."""
    check_grid(size, frames, batches, repeats, warmup)
    device = device or torch.device("cpu")
    models = {}
    for name in dict.fromkeys([model_name] + ([baseline] if baseline else [])):
        torch.manual_seed(0)
        models[name] = create_model(name, num_classes=num_classes, **(overrides or {}))
    if baseline == model_name:
        baseline = None  # a model against itself: one set of rows, no ratio
    return time_models(models, size, frames, batches, device=device, repeats=repeats, warmup=warmup, mode=mode,
                       baseline=baseline, num_classes=num_classes, amp=amp, channels_last=channels_last, log=log)


def unsteady_points(rows: Sequence[dict], limit: float = SPREAD_LIMIT) -> list[str]:
    """``model T=.. N=.. (max/min x)`` for every row whose slowest repeat took more than ``limit`` times its
    fastest."""
    return [f"{r['model']} T={r['frames']} N={r['batch']} ({r['seconds_max'] / r['seconds_min']:.2f}x)"
            for r in rows if r["seconds_max"] > limit * r["seconds_min"]]


def _bounds(row: dict, key: str) -> tuple[float, float]:
    """The fastest and slowest repeat's value of ``key`` (videos/s from the slowest and fastest repeat)."""
    if key == "videos_per_s":
        return row["batch"] / row["seconds_max"], row["batch"] / row["seconds_min"]
    return row[f"{key}_min"], row[f"{key}_max"]


def plot_runtime(rows: list[dict], path: str | Path) -> Path:
    """One axis per quantity against batch size: seconds per batch (log scale; error bars: fastest to slowest repeat),
    videos per second and, with a baseline, the ratio to it (error bars: the per-repeat ratios). Colour is the clip
    length, line style the model (solid the first, dashed the next), both named in the legend."""
    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    frames = list(dict.fromkeys(r["frames"] for r in rows))
    ratio_rows = [r for r in rows if "vs_baseline" in r]
    panels = [("seconds", "seconds per batch (min-max bars)"), ("videos_per_s", "videos per second (min-max bars)")]
    if ratio_rows:
        panels.append(("vs_baseline", "time / baseline's (min-max bars)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    styles = ["-o", "--s", ":^", "-.v"]
    for m, name in enumerate(models):
        for i, t in enumerate(frames):
            curve = sorted((r for r in rows if r["model"] == name and r["frames"] == t), key=lambda r: r["batch"])
            x = [r["batch"] for r in curve]
            for ax, (key, _) in zip(axes[0], panels):
                if key not in curve[0]:
                    continue
                y = [r[key] for r in curve]
                low, high = zip(*(_bounds(r, key) for r in curve))
                ax.errorbar(x, y, yerr=[[v - lo for v, lo in zip(y, low)], [hi - v for v, hi in zip(y, high)]],
                            fmt=styles[m % len(styles)], color=f"C{i}", capsize=3, label=f"{name}, {t} frames")
    first = rows[0]
    what = "training step" if first.get("mode") == "train" else "inference"
    for ax, (key, label) in zip(axes[0], panels):
        ax.set_xscale("log", base=2)
        batches = sorted({r["batch"] for r in rows})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if key == "seconds":
            ax.set_yscale("log")  # from one clip to a batch of 16 long ones: decades apart
        if key == "vs_baseline":
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.set_title(f"{ratio_rows[0]['model']} / {models[-1]}")
    fig.suptitle(f"{what}, {first['size']}², {first['device']}, {first['threads']} thread(s)"
                 + (f", {first['amp']} autocast" if first.get("amp", "off") != "off" else "")
                 + (", channels-last" if first.get("channels_last") else ""))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06 + 0.04 * (len(labels) // 3), 1, 1))
    save_png(fig, path, dpi=100, bbox_inches="tight")
    return Path(path)
