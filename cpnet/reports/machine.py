"""What a run ran on: CPU model, torch's CPU capability, threads and a measured sgemm rate.

Timings and even accuracies (through rounding) depend on the machine: the same demo takes 2-3x longer on a 2-core
AVX2-only CPU than on an AVX-512 one. Reports record these facts so a user can compare their figures with ours.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

# Variables that make torch, oneDNN and MKL use a narrower instruction set than the CPU has (to emulate another
# machine); recorded when set.
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what :mod:`platform` knows, else ``"unknown"``."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def sgemm_gflops(size: int = 512, seconds: float = 0.3, threads: int | None = None) -> float:
    """Best float32 square-matmul rate in GFLOP/s over about ``seconds`` of repeats, at ``threads`` torch threads
    (the current count if None)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: thread pool and kernel selection
        best, deadline = float("inf"), time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
            if time.perf_counter() > deadline:
                break
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def machine_info(threads: int | None = None, measure: bool = True) -> dict:
    """Plain data describing this machine and torch build; ``threads`` is the torch thread count the run used (and
    the sgemm is measured at), the current count if None."""
    threads = threads or torch.get_num_threads()
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "isa_env": {name: os.environ[name] for name in ISA_ENV if name in os.environ},
    }
    if measure:
        info["sgemm_gflops"] = round(sgemm_gflops(threads=threads), 1)
    return info


def describe(info: dict) -> str:
    """One line: ``AMD EPYC (2 cores), torch 2.13.0 CPU capability AVX2, 1 thread, sgemm 47.1 GFLOP/s``."""
    text = (f"{info['cpu']} ({info['cores']} cores), torch {info['torch']} CPU capability {info['cpu_capability']}, "
            f"{info['threads']} thread{'s' if info['threads'] != 1 else ''}")
    if "sgemm_gflops" in info:
        text += f", sgemm {info['sgemm_gflops']} GFLOP/s (512², float32)"
    if info["isa_env"]:
        text += ", " + " ".join(f"{k}={v}" for k, v in info["isa_env"].items())
    return text


# When a timing is "contended": other work kept at least this many cores busy while our threads and it together
# wanted more cores than the machine has, or the slower of the sgemm rates measured at the start and again at the end
# is below this fraction of the faster.
OTHER_LOAD_CORES = 1.0
SGEMM_DROP = 0.7


def load_average() -> float | None:
    """The 1-minute load average (processes running or waiting for a core, averaged over about a minute), None
    where the system keeps none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def snapshot(threads: int, sgemm: bool = True) -> dict:
    """The machine's load now: ``load1`` and, with ``sgemm``, the sgemm rate at ``threads`` threads."""
    state = {"load1": load_average()}
    if sgemm:
        state["sgemm_gflops"] = round(sgemm_gflops(threads=threads), 1)
    return state


def contention(before: dict, after: dict, threads: int, cores: int | None = None) -> dict:
    """Whether other work shared the machine between two :func:`snapshot` s taken before and after a run of
    ``threads`` busy threads.

    The load average cannot tell our process from others', so the other work is estimated from below: the load
    before the run (we were idle then) and the load after it minus our threads (a run of a minute or more adds up to
    ``threads`` itself). It is ``contended`` when that other work is at least OTHER_LOAD_CORES and, with our
    threads, wanted more cores than there are, or when the sgemm rates before and after differ by more than
    SGEMM_DROP (after under 0.7x before, or before under 0.7x after: busy at the start).
    ``reasons`` says which, in words."""
    cores = cores or os.cpu_count() or 1
    loads = [v for v in (before.get("load1"), None if after.get("load1") is None else after["load1"] - threads)
             if v is not None]
    other = round(max(0.0, *loads), 2) if loads else None
    reasons = []
    if other is not None and other >= OTHER_LOAD_CORES and other + threads > cores:
        reasons.append(f"other work kept about {other:.1f} of {cores} cores busy beside our {threads} thread(s) "
                       f"(1-min load average {before.get('load1')} before, {after.get('load1')} after)")
    rates = before.get("sgemm_gflops"), after.get("sgemm_gflops")
    ratio = round(rates[1] / rates[0], 2) if None not in rates and rates[0] > 0 else None
    if ratio is not None and ratio < SGEMM_DROP:
        reasons.append(f"sgemm fell from {rates[0]} to {rates[1]} GFLOP/s ({ratio:.2f}x) during the run")
    elif ratio is not None and ratio > 1 / SGEMM_DROP:  # the machine was busy when the run started
        reasons.append(f"sgemm rose from {rates[0]} to {rates[1]} GFLOP/s ({ratio:.2f}x) during the run")
    return {"other_load": other, "sgemm_ratio": ratio, "contended": bool(reasons), "reasons": reasons}


def describe_load(load: dict, threads: int) -> str:
    """One sentence on the load during a run of ``threads`` threads: ``load`` holds the ``before`` and ``after``
    :func:`snapshot` s and their :func:`contention` verdict."""
    before, after = load["before"], load["after"]
    text = (f"1-min load average {before.get('load1')} at the start, {after.get('load1')} at the end (other work "
            f"about {load['other_load']} cores beside our {threads} thread(s))")
    if load["sgemm_ratio"] is not None:
        text += (f"; sgemm {before['sgemm_gflops']} GFLOP/s at the start, {after['sgemm_gflops']} at the end "
                 f"({load['sgemm_ratio']:.2f}x)")
    if load["contended"]:
        return (f"**Contended**: {'; '.join(load['reasons'])}. The times are slower than this machine gives "
                f"alone (accuracies are unaffected). {text[0].upper()}{text[1:]}.")
    return f"Not contended: {text}."
