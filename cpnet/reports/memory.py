"""Training memory and time of one CP module against one non-local block at equal input sizes (supp. §G).

The supplement's claim: the kNN's P×P distance matrix is neither differentiated nor stored for backward, while a
non-local block keeps its (P × P/4) attention matrix (and its softmax) for backward. Each case is one forward +
backward of one block on a random input (N, C, T, H, W), measured in a **fresh Python process** so that every peak
is that case's alone (a process's peak RSS never goes down, and allocator caches persist):

- CPU: growth of the process's peak resident set (``ru_maxrss``) over the first forward + backward, measured from
  just before it (input, module and a tiny warm-up already resident);
- CUDA: ``torch.cuda.max_memory_allocated`` over the same call, minus what was allocated before it.

Time is the median of ``repeats`` further forward + backward calls (device synchronised). Blocks: ``cp`` (the
CP module as the presets build it: decomposed first layer, activations stored), ``cp_recompute`` (the same with
``recompute=True``: the pair MLP is recomputed in backward), ``cp_concat`` (the plain concatenated pair features)
``nl`` (:class:`~cpnet.models.nonlocal_block.NonLocalBlock` as the presets build it: embedded Gaussian with
1×2×2-pooled keys, a (P × P/4) attention matrix) and ``nl_full`` (the same block without pooling: the full P × P
matrix the supplement's argument is about).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported in the worker processes only, where the measuring happens
    import torch.nn as nn

SIZES: tuple[tuple[int, int, int, int, int], ...] = ((8, 8, 28, 28, 128), (8, 32, 14, 14, 256))  # (N, T, H, W, C)
BLOCKS = ("cp", "cp_recompute", "cp_concat", "nl", "nl_full")
DEFAULT_BLOCKS = ("cp", "cp_recompute", "nl", "nl_full")
REFERENCES = ("nl", "nl_full")  # each row gets its peak and time over these blocks' at the same size


@dataclass(frozen=True)
class MemoryCase:
    """One block at one input size: what a worker process measures."""

    block: str
    n: int
    t: int
    h: int
    w: int
    c: int
    k: int = 8
    device: str = "cpu"
    repeats: int = 3
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; expected one of {', '.join(BLOCKS)}")
        if min(self.n, self.t, self.h, self.w, self.c) < 1 or self.c < 4:
            raise ValueError(f"size N={self.n}, T={self.t}, H={self.h}, W={self.w}, C={self.c}: every value must "
                             f"be positive and C >= 4 (the MLP widths are C/4 and C/2)")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")


def build_block(case: MemoryCase) -> nn.Module:
    """The module under test: a CP module (k, MLP [C/4, C/2]) or a non-local block, both with output γ = 1."""
    from cpnet.models.cp import CPModule
    from cpnet.models.nonlocal_block import NonLocalBlock

    if case.block in ("nl", "nl_full"):
        return NonLocalBlock(case.c, pool=case.block == "nl", init_gamma=1.0)
    return CPModule(case.c, case.k, [case.c // 4, case.c // 2], init_gamma=1.0,
                    recompute=case.block == "cp_recompute", decomposed=case.block != "cp_concat")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure_case(case: MemoryCase) -> dict:
    """Measure ``case`` in this process (call it in a fresh one: see :func:`run_case`); returns one row."""
    import torch

    from cpnet.reports.tables import median_seconds

    if case.threads:
        torch.set_num_threads(case.threads)
    cuda = case.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else None
    torch.manual_seed(0)
    block = build_block(case).to(case.device).train()
    x = torch.randn(case.n, case.c, case.t, case.h, case.w, device=case.device, requires_grad=True)

    def step(inp: torch.Tensor) -> None:
        block(inp).sum().backward()
        block.zero_grad(set_to_none=True)
        inp.grad = None

    # Tiny warm-up: loads kernels and allocator state without raising the peak.
    side = max(2, math.ceil(math.sqrt(case.k)))  # 2 frames of side² points: enough proposals for k
    step(torch.randn(1, case.c, 2, side, side, device=case.device, requires_grad=True))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _peak_rss_mb()
    step(x)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = _peak_rss_mb() - base
    seconds = median_seconds(lambda: step(x), case.repeats, warmup=0, sync=sync)
    return {"block": case.block, "N": case.n, "T": case.t, "H": case.h, "W": case.w, "C": case.c, "k": case.k,
            "device": case.device, "threads": torch.get_num_threads(), "pid": os.getpid(), "peak_mb": peak,
            "seconds": seconds}


def run_case(case: MemoryCase) -> dict:
    """Measure ``case`` in a fresh Python process (``python -m cpnet.reports.memory CASE_JSON``)."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "cpnet.reports.memory", json.dumps(asdict(case))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"memory case {case} failed in its worker process: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_rows(sizes: Sequence[tuple[int, int, int, int, int]] = SIZES, blocks: Sequence[str] = DEFAULT_BLOCKS,
                k: int = 8, devices: tuple[str, ...] = ("cpu",), repeats: int = 3, threads: int | None = None,
                log: Callable[[str], None] | None = None) -> list[dict]:
    """Every block at every size on every device, one process each; each row gains ``mem_vs_nl`` and
    ``time_vs_nl`` (its peak and time over the pooled non-local block's at the same size and device) when ``nl``
    is among the blocks, and likewise ``mem_vs_nl_full`` / ``time_vs_nl_full`` for ``nl_full``."""
    rows = []
    for device in devices:
        for size in sizes:
            group = []
            for block in blocks:
                row = run_case(MemoryCase(block, *size, k=k, device=device, repeats=repeats, threads=threads))
                if log:
                    log(f"{block:<13} N={row['N']} T={row['T']} {row['H']}x{row['W']} C={row['C']} {device}: "
                        f"{row['peak_mb']:.0f} MB, {row['seconds']:.3f} s")
                group.append(row)
            rows += _with_ratios(group)
    return rows


def _with_ratios(group: list[dict]) -> list[dict]:
    """Add each reference block's ratios to the rows of one (size, device) group."""
    for ref in REFERENCES:
        base = next((r for r in group if r["block"] == ref), None)
        if base is None:
            continue
        for row in group:
            row[f"mem_vs_{ref}"] = row["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else None
            row[f"time_vs_{ref}"] = row["seconds"] / base["seconds"] if base["seconds"] > 0 else None
    return group


def plot_memory(rows: list[dict], path: str | Path) -> Path:
    """Grouped bars: peak MB (left) and forward + backward seconds (right) per block, one group per size."""
    from cpnet.reports.plotting import pyplot, save_png

    plt = pyplot()
    sizes = list(dict.fromkeys((r["N"], r["T"], r["H"], r["W"], r["C"], r["device"]) for r in rows))
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(blocks)
    for ax, key, label, fmt in zip(axes, ("peak_mb", "seconds"), ("peak memory (MB)", "forward + backward (s)"),
                                   ("%.0f", "%.2f")):
        for j, block in enumerate(blocks):
            values = [next((r[key] for r in rows if r["block"] == block
                            and (r["N"], r["T"], r["H"], r["W"], r["C"], r["device"]) == s), 0.0) for s in sizes]
            bars = ax.bar([i + j * width for i in range(len(sizes))], values, width, label=block)
            ax.bar_label(bars, fmt=fmt, fontsize=7)
        ax.set_xticks([i + width * (len(blocks) - 1) / 2 for i in range(len(sizes))],
                      [f"N={s[0]} T={s[1]}\n{s[2]}x{s[3]} C={s[4]}\n{s[5]}" for s in sizes])
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("one CP module vs one non-local block: forward + backward")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    return Path(path)


if __name__ == "__main__":  # worker: measure one case, print its row as JSON
    print(json.dumps(measure_case(MemoryCase(**json.loads(sys.argv[1])))))
