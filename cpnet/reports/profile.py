"""Where a CPNet's inference time goes: backbone, kNN, pair MLP and the rest of the CP modules.

Method (the forward code is not touched and nothing is monkey-patched):

1. Forward hooks time every CP module *inside the real model forward*: a pre-hook on the module, on its output
   BatchNorm, and a hook at its end (plus its bottleneck conv when it has one) split each call into
   A = [start → output BN] (bottleneck, point flattening, kNN, per-point projections, gather, the MLP, the
   max-pool over k and the 1×1×1 output map, applied to the points) and C = [output BN → end] (the BN,
   upsampling after a shrink). Hooks do not change what a CP module computes (its settings choose the path,
   :meth:`CPModule.pair_mlp_path`), so this times the folded eval-mode path that inference runs.
2. The kNN is a function inside A, so it is timed separately: each module's input is captured on the first
   forward and ``cross_frame_knn`` is re-run on exactly the points the module searches (median of repeats).
3. kNN = Σ separate kNN times; pair MLP = max(0, A − kNN − bottleneck); rest = C + bottleneck;
   backbone = whole forward − Σ (A + C). Each is the median over the timed forwards; shares are of their sum.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import torch
import torch.nn as nn

from cpnet.models.cp import CPModule
from cpnet.ops.knn import cross_frame_knn
from cpnet.reports.cp_hooks import cp_modules, search_points
from cpnet.reports.plotting import pyplot, save_png
from cpnet.reports.tables import median_seconds

COMPONENTS = ("backbone", "knn", "pair_mlp", "cp_rest")


class _Stopwatch:
    """Timestamps of named hook events for the CP modules of one model; ``sync`` waits for the device."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync, self.events, self.inputs = sync, {}, {}
        self.handles: list = []

    def mark(self, key: tuple[str, str]) -> Callable[..., None]:
        def hook(*_args: object) -> None:
            self.sync()
            self.events[key] = time.perf_counter()
        return hook

    def attach(self, name: str, cp: CPModule) -> None:
        def capture(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if name not in self.inputs:
                self.inputs[name] = args[0].detach().clone()
            self.mark((name, "start"))()

        self.handles.append(cp.register_forward_pre_hook(capture))
        self.handles.append(cp.out_bn.register_forward_pre_hook(self.mark((name, "out"))))
        self.handles.append(cp.register_forward_hook(self.mark((name, "end"))))
        if cp.reduce is not None:
            self.handles.append(cp.reduce.register_forward_pre_hook(self.mark((name, "reduce0"))))
            self.handles.append(cp.reduce.register_forward_hook(self.mark((name, "reduce1"))))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.inference_mode()
def profile_model(model: nn.Module, clip: torch.Tensor, repeats: int = 5, warmup: int = 1) -> list[dict]:
    """Rows ``{component, seconds, share}`` for backbone, knn, pair_mlp, cp_rest and the ``total``."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    model = model.eval()
    sync = torch.cuda.synchronize if clip.device.type == "cuda" else (lambda: None)
    modules = cp_modules(model)
    watch = _Stopwatch(sync)
    for name, cp in modules.items():
        watch.attach(name, cp)
    try:
        for _ in range(warmup):
            model(clip)
        per_run: dict[str, list[float]] = {"total": [], "a": [], "c": [], "reduce": []}
        for _ in range(repeats):
            watch.events.clear()
            sync()
            t0 = time.perf_counter()
            model(clip)
            sync()
            per_run["total"].append(time.perf_counter() - t0)
            ev = watch.events
            for key, (lo, hi) in {"a": ("start", "out"), "c": ("out", "end"), "reduce": ("reduce0", "reduce1")}.items():
                per_run[key].append(sum(ev[(n, hi)] - ev[(n, lo)] for n in modules if (n, lo) in ev))
    finally:
        watch.remove()
    knn = 0.0
    for name, cp in modules.items():
        points = search_points(cp, watch.inputs[name])
        t = watch.inputs[name].shape[2]
        knn += median_seconds(lambda cp=cp, points=points, t=t: cross_frame_knn(points, t, cp.k, cp.block_size),
                              repeats, warmup, sync)
    cp_time = [a + c for a, c in zip(per_run["a"], per_run["c"])]
    seconds = {
        "backbone": median(tot - cp for tot, cp in zip(per_run["total"], cp_time)),
        "knn": knn,
        # A − kNN − bottleneck is what A spends on projections, gather, MLP and max; clamped, as timing noise can
        # make the separately timed kNN exceed its share of A when A is short.
        "pair_mlp": max(0.0, median(per_run["a"]) - knn - median(per_run["reduce"])),
        "cp_rest": median(per_run["c"]) + median(per_run["reduce"]),
    }
    whole = sum(seconds.values())
    rows = [{"component": c, "seconds": seconds[c], "share": seconds[c] / whole} for c in COMPONENTS]
    rows.append({"component": "total", "seconds": median(per_run["total"]), "share": 1.0})
    return rows


def plot_profile(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """One horizontal stacked bar of the components' shares, labelled with percent and milliseconds."""
    plt = pyplot()
    parts = [r for r in rows if r["component"] in COMPONENTS]
    fig, ax = plt.subplots(figsize=(9, 1.6))
    left = 0.0
    for i, r in enumerate(parts):
        ax.barh(0, r["share"], left=left, color=f"C{i}", label=f"{r['component']}: {100 * r['share']:.1f} % "
                                                                 f"({1000 * r['seconds']:.1f} ms)")
        left += r["share"]
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("share of inference time")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=2, fontsize=8)
    save_png(fig, path, dpi=100, bbox_inches="tight")
    return Path(path)
