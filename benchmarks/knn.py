"""Cross-frame kNN benchmark: the original formulation against ours, side by side, relative to a bare matmul.

For each size, in one process per measurement (so peak memory is that measurement's alone):
- ``matmul``: the bare batched X·Xᵀ of shape (N, P, P), the unavoidable core of an exact search;
- ``original``: the plain formulation — the whole (N, P, P) distance matrix, the same-frame blocks masked, top-k
  (``cpnet.ops.knn.cross_frame_knn_dense``);
- ``cpnet``: ``cpnet.ops.knn.cross_frame_knn`` as models call it (CPU: the native C selection over cache-sized
  tiles of each frame pair's dot products);
- ``cpnet_torch``: the same search with ``backend="torch"`` (torch.topk on grouped maxima; what runs where no C
  compiler is found).

Reports the median wall time over repeats and the peak extra resident memory over the inputs (CPU: the growth
of the process's peak RSS; CUDA: torch.cuda.max_memory_allocated). Usage:

    python benchmarks/knn.py [--repeats 5] [--device cpu] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SIZES = [  # (N, T, H, W, C, k)
    (8, 12, 14, 14, 256, 12),
    (8, 8, 28, 28, 128, 8),
    (8, 32, 14, 14, 256, 8),
]
QUICK_SIZES = [(2, 4, 7, 7, 32, 4)]
METHODS = ["matmul", "original", "cpnet", "cpnet_torch"]


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(method: str, size: tuple[int, ...], repeats: int, device: str) -> dict:
    """Run one method at one size in this process; returns median seconds and peak extra memory in bytes."""
    import torch

    from cpnet.ops.knn import cross_frame_knn, cross_frame_knn_dense

    n, t, h, w, c, k = size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, t * h * w, c, generator=gen).to(device)
    fns = {
        "matmul": lambda: torch.bmm(x, x.transpose(1, 2)),
        "original": lambda: cross_frame_knn_dense(x, t, k),
        "cpnet": lambda: cross_frame_knn(x, t, k),
        "cpnet_torch": lambda: cross_frame_knn(x, t, k, backend="torch"),
    }
    fn = fns[method]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    base_rss = _peak_rss_bytes()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    for i in range(repeats + 1):  # the first run is a warm-up
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        if i:
            times.append(time.perf_counter() - t0)
        del out
    times.sort()
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base_cuda
    else:
        peak = _peak_rss_bytes() - base_rss
    from cpnet.ops import native

    selection = "native" if method == "cpnet" and device == "cpu" and native.available() else "torch"
    return {"method": method, "N": n, "T": t, "H": h, "W": w, "C": c, "k": k, "device": device,
            "threads": torch.get_num_threads(), "selection": selection if method.startswith("cpnet") else "",
            "median_ms": 1000 * times[len(times) // 2], "peak_extra_mb": peak / 2**20}


def run_isolated(method: str, size: tuple[int, ...], repeats: int, device: str) -> dict:
    """Measure in a fresh Python process so each peak-memory figure is independent of the others."""
    cmd = [sys.executable, __file__, "--one", method, ",".join(map(str, size)), "--repeats", str(repeats),
           "--device", device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="one tiny size (a smoke test)")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "N,T,H,W,C,K"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        size = tuple(int(v) for v in args.one[1].split(","))
        print(json.dumps(measure(args.one[0], size, args.repeats, args.device)))
        return 0
    rows = []
    for size in QUICK_SIZES if args.quick else SIZES:
        base = None
        for method in METHODS:
            row = run_isolated(method, size, args.repeats, args.device)
            base = row["median_ms"] if method == "matmul" else base
            row["x_matmul"] = row["median_ms"] / base
            rows.append(row)
        this = rows[-len(METHODS):]
        orig = next(r for r in this if r["method"] == "original")
        for r in this:
            if r["method"].startswith("cpnet"):
                r["memory_vs_original"] = r["peak_extra_mb"] / max(orig["peak_extra_mb"], 1e-9)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'size (N,T,H,W,C,k)':<26} {'method':<12} {'median ms':>10} {'× matmul':>9} {'peak extra MB':>14}")
    for r in rows:
        size = f"({r['N']},{r['T']},{r['H']},{r['W']},{r['C']},{r['k']})"
        print(f"{size:<26} {r['method']:<12} {r['median_ms']:>10.1f} {r['x_matmul']:>9.2f} {r['peak_extra_mb']:>14.1f}")
    cp = next(r for r in rows if r["method"] == "cpnet")
    print(f"threads: {cp['threads']}; cpnet selection: {cp['selection']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
