"""Progress inside an epoch for batch jobs: one line every N iterations or seconds, with the loss, learning rate,
data and step time, the ETA of the epoch and of the run and the peak memory, as mmaction2 and SlowFast log. On a
cluster stdout is a file and a terminal progress bar writes nothing useful; these lines are what a user reads there.

The same values go, as a plain record, to an ``on_progress`` callback (the application keeps some of them in the
run's metrics at a coarser interval, and in TensorBoard). Only rank 0 reports.
"""

from __future__ import annotations

import datetime
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ProgressOptions:
    """When to report inside an epoch: every ``every`` iterations (0: not by count) and every ``seconds`` seconds
    (0: not by time). ``seconds`` applies only when stdout is not a terminal unless ``always``."""

    every: int = 0
    seconds: float = 30.0
    always: bool = False

    def active(self) -> bool:
        by_time = self.seconds > 0 and (self.always or not sys.stdout.isatty())
        return self.every > 0 or by_time


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA's allocated peak on a GPU, the process's peak resident size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # bytes on macOS


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class IntervalReport:
    """Reports one training epoch's progress at the intervals of ``options``; call :meth:`step` after every
    iteration. ``log`` gets the line, ``on_progress`` the record."""

    def __init__(self, options: ProgressOptions, *, epoch: int, epochs: int, iterations: int, device: torch.device,
                 log: Callable[[str], None], on_progress: Callable[[dict], None] | None = None) -> None:
        self.options, self.epoch, self.epochs, self.iterations = options, epoch, epochs, iterations
        self.device, self.log, self.on_progress = device, log, on_progress
        self.active = options.active()
        self.start = self.last = time.perf_counter()

    def step(self, i: int, *, loss: float, lr: float, data_seconds: float, step_seconds: float) -> dict | None:
        """After iteration ``i`` (0-based) of the epoch: report when an interval has passed (never after the
        last iteration: the epoch line follows). Returns the record reported, or None."""
        if not self.active or i + 1 >= self.iterations:
            return None
        now = time.perf_counter()
        by_count = self.options.every > 0 and (i + 1) % self.options.every == 0
        by_time = self.options.seconds > 0 and now - self.last >= self.options.seconds and (
            self.options.always or not sys.stdout.isatty())
        if not (by_count or by_time):
            return None
        self.last = now
        per_iteration = (now - self.start) / (i + 1)
        eta_epoch = per_iteration * (self.iterations - i - 1)
        eta_run = eta_epoch + per_iteration * self.iterations * (self.epochs - self.epoch - 1)
        record = {"epoch": self.epoch + 1, "iteration": i + 1, "iterations": self.iterations, "train_loss": loss,
                  "lr": lr, "data_seconds": data_seconds, "step_seconds": step_seconds, "eta_epoch_s": eta_epoch,
                  "eta_run_s": eta_run, "peak_memory_mb": peak_memory_mb(self.device)}
        self.log(f"epoch {self.epoch + 1}/{self.epochs} iter {i + 1}/{self.iterations}  loss {loss:.4f}  lr {lr:.3g}"
                 f"  data {1e3 * data_seconds:.0f}ms  step {1e3 * step_seconds:.0f}ms  eta epoch {_clock(eta_epoch)}"
                 f" run {_clock(eta_run)} (training only)  mem {record['peak_memory_mb']:.0f} MB")
        if self.on_progress is not None:
            self.on_progress(record)
        return record
