"""The training loop: one epoch, centre-view validation, and ``fit`` (epochs, resume, and what to keep of each
epoch handed to the caller).

Batches are :class:`cpnet.batch.ClipBatch` (what ``cpnet.data``'s ``collate_skip`` makes: clips, labels, indices and
the count of unreadable clips dropped) or plain ``(clips, labels)`` pairs. The loop holds no model math, no config
and no dataset code: everything it needs comes in as arguments, so it runs the same for any model and data.

In a process group (torchrun, see ``cpnet.engine.distributed``) the model is DDP-wrapped and each rank reads its own
share of the data; counts and sums are added over ranks, every rank takes the same skip/stop decisions (a rank that
stopped alone would leave the others waiting in the gradient all-reduce), and only rank 0 logs and shows progress.
The loop writes no file: at each epoch's end it hands an :class:`EpochEnd` (the record, whether it is the best, and
the checkpoints to keep, built on demand) to the caller's ``on_epoch_end``, which decides what to write and where
(``cpnet.app.runfolder``). In a single process all of this reduces to the plain loop.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from cpnet.batch import as_batch
from cpnet.device import autocast
from cpnet.engine.checkpoint import check_compatible, load_model_state, make_checkpoint, rng_state, set_rng_state
from cpnet.engine.distributed import barrier, get_rank, is_main, main_only, sum_over_ranks, unwrap
from cpnet.engine.finetune import hold_batchnorm_statistics
from cpnet.engine.optim import LRSchedule, set_bn_momentum
from cpnet.engine.progress import IntervalReport, ProgressOptions
from cpnet.errors import MediaError
from cpnet.metrics import topk_correct

GradScaler = torch.amp.GradScaler if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; the run stops before the bad step touches the weights or checkpoints."""


@dataclass
class TrainOptions:
    """How to train, independent of model and data."""

    epochs: int
    accumulate: int = 1
    label_smoothing: float = 0.0
    amp: bool = False  # mixed precision; only takes effect on CUDA
    amp_dtype: str = "float16"  # "float16" (with loss scaling) or "bfloat16" (no scaling needed)
    max_bad_fraction: float = 0.0  # skipped (unreadable) clips allowed per epoch, as a fraction of the dataset
    progress: bool | None = None  # tqdm bar; None: only when stderr is a terminal
    val_every: int = 1  # validate after every n-th epoch and after the last one
    bn_momentum: Callable[[int], float] | None = None  # epoch -> BatchNorm momentum (None: the layers' own)
    hold_bn: tuple[str, ...] = ()  # module prefixes whose BatchNorm statistics stay fixed in training ("": all)
    report: ProgressOptions = ProgressOptions()  # progress lines inside an epoch (batch jobs: stdout is a file)


class BadMediaBudget:
    """Counts the clips skipped as unreadable over an epoch and raises :class:`~cpnet.errors.MediaError` once they
    exceed ``max_fraction`` of its ``total`` items, so a dataset that is mostly broken stops training instead of
    silently shrinking."""

    def __init__(self, total: int, max_fraction: float, where: str = "") -> None:
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
        self.total, self.max_fraction, self.where, self.skipped = total, max_fraction, where, 0

    def add(self, skipped: int) -> None:
        self.skipped += int(skipped)
        if self.skipped > self.max_fraction * self.total:
            raise MediaError(f"{self.where}{self.skipped} clips could not be read, more than max_bad_fraction="
                             f"{self.max_fraction} of {self.total} ({self.skipped} of {self.total} items had bad "
                             "media; the warnings above name the files; `cpnet data check` lists them all)")


def _timed(loader: DataLoader) -> Iterator[tuple[int, tuple, float]]:
    """Yield (index, batch, seconds spent waiting for it)."""
    it = iter(loader)
    i = 0
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        yield i, batch, time.perf_counter() - t0
        i += 1


@dataclass
class _EpochTotals:
    """Running sums of one training epoch on this rank."""

    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    data_seconds: float = 0.0
    step_seconds: float = 0.0


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    *,
    device: torch.device,
    options: TrainOptions,
    scaler: GradScaler,
    epoch: int,
    log: Callable[[str], None] | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> dict:
    """Train for one pass over ``loader``; returns mean loss, running top-1, counts and timings (over all ranks).

    With several ranks, a step where some rank has no readable clip is skipped by all of them. Rank 0 reports
    progress at ``options.report``'s intervals to ``log`` (a line) and ``on_progress`` (a record).
    """
    model.train()
    hold_batchnorm_statistics(model, options.hold_bn)
    budget = BadMediaBudget(len(loader.dataset), options.max_bad_fraction, where=f"epoch {epoch + 1}: ")
    show = is_main() and (sys.stderr.isatty() if options.progress is None else options.progress)
    totals, start = _EpochTotals(), time.perf_counter()
    report = IntervalReport(options.report, epoch=epoch, epochs=options.epochs, iterations=len(loader),
                            device=device, log=log, on_progress=on_progress) if is_main() and log else None
    optimizer.zero_grad(set_to_none=True)
    window_has_grads = False  # an optimiser step only after some backward: an enabled AMP scaler refuses otherwise
    with tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{options.epochs}", disable=not show, leave=False) as bar:
        for i, batch, waited in _timed(loader):
            t0 = time.perf_counter()
            batch = as_batch(batch)
            bad_now, empty_ranks = sum_over_ranks([batch.skipped, len(batch.labels) == 0])
            budget.add(int(bad_now))
            stepping = (i + 1) % options.accumulate == 0 or i + 1 == len(loader)
            if empty_ranks == 0:
                _train_step(model, batch, totals, device=device, options=options, scaler=scaler, sync=stepping,
                            where=f"epoch {epoch + 1}, batch {i + 1} (lr {schedule.lr:.3g})")
                window_has_grads = True
            if stepping:
                if window_has_grads:  # a window of unreadable clips only advances the schedule
                    scaler.step(optimizer)
                    scaler.update()
                optimizer.zero_grad(set_to_none=True)
                schedule.step()
                window_has_grads = False
            step_time = time.perf_counter() - t0
            totals.data_seconds += waited
            totals.step_seconds += step_time
            running = totals.loss / max(totals.seen, 1)
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{schedule.lr:.3g}", data=f"{1e3 * waited:.0f}ms",
                            step=f"{1e3 * step_time:.0f}ms")
            if report is not None:
                report.step(i, loss=running, lr=schedule.lr, data_seconds=waited, step_seconds=step_time)
    loss_sum, correct, seen = sum_over_ranks([totals.loss, totals.correct, totals.seen])
    correct, seen = int(correct), int(seen)
    return {"train_loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1), "train_samples": seen,
            "skipped": budget.skipped, "data_seconds": totals.data_seconds, "step_seconds": totals.step_seconds,
            "train_seconds": time.perf_counter() - start}


def _train_step(model: nn.Module, batch, totals: _EpochTotals, *, device: torch.device, options: TrainOptions,
                scaler: GradScaler, sync: bool, where: str) -> None:
    """Forward and backward of one micro-batch, added to ``totals``; stops every rank on a non-finite loss."""
    labels = batch.labels.to(device, non_blocking=True)
    value, logits = _forward_backward(model, batch.clips, labels, device=device, options=options, scaler=scaler,
                                      sync=sync)
    if sum_over_ranks([not math.isfinite(value)])[0]:  # before the optimiser step: weights stay good
        what = f"loss is {value}" if not math.isfinite(value) else "the loss is not finite on another rank"
        raise NonFiniteLossError(f"{what} at {where}; the run stopped before this step and the last good "
                                 "checkpoint is kept: lower optim.lr or check the data")
    totals.loss += value * len(labels)
    totals.correct += topk_correct(logits, labels, (1,))[0]
    totals.seen += len(labels)


def _forward_backward(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor, *, device: torch.device,
                      options: TrainOptions, scaler: GradScaler, sync: bool) -> tuple[float, torch.Tensor]:
    """Loss and gradients of one micro-batch; returns the loss value and the logits."""
    with autocast(device, options.amp, options.amp_dtype):
        logits = model(clips.to(device, non_blocking=True))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=options.label_smoothing)
    # DDP all-reduces gradients only on the step's last micro-batch (sync); the others accumulate locally.
    with model.no_sync() if not sync and hasattr(model, "no_sync") else contextlib.nullcontext():
        scaler.scale(loss / options.accumulate).backward()
    return float(loss.detach()), logits.detach()


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool = False,
             amp_dtype: str = "float16") -> dict:
    """Loss, top-1 and top-5 over ``loader`` (one view per video during training).

    In a process group each rank passes its own disjoint share (``ShardBatchSampler``) and the unwrapped model
    (DDP's forward would broadcast buffers, a collective that ranks with fewer batches would never join); the sums
    are added over ranks, so every rank returns the metrics of the whole set.
    """
    model.eval()
    loss_sum, hits, seen, skipped = 0.0, [0, 0], 0, 0
    start = time.perf_counter()
    for batch in map(as_batch, loader):
        skipped += batch.skipped
        if len(batch.labels) == 0:
            continue
        clips, labels = batch.clips.to(device), batch.labels.to(device)
        with autocast(device, amp, amp_dtype):
            logits = model(clips).float()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        hits = [a + b for a, b in zip(hits, topk_correct(logits, labels, (1, 5)))]
        seen += len(labels)
    loss_sum, *counts = sum_over_ranks([loss_sum, *hits, seen, skipped])
    hits, seen, skipped = [int(counts[0]), int(counts[1])], int(counts[2]), int(counts[3])
    if seen == 0:
        raise ValueError("validation saw no readable clip")
    return {"val_loss": loss_sum / seen, "val_top1": hits[0] / seen, "val_top5": hits[1] / seen,
            "val_samples": seen, "val_skipped": skipped, "val_seconds": time.perf_counter() - start}


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    """Reseed the shuffling sampler and the dataset's augmentation for ``epoch``."""
    for obj in (loader.sampler, getattr(loader, "batch_sampler", None), loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


def _resume(ckpt: dict, model, optimizer, schedule, scaler, meta: dict) -> tuple[int, float]:
    """Restore the end of the checkpoint's epoch, whatever world size wrote it; returns (epoch, best score).
    ``ckpt`` was loaded on the CPU: RNG states must be CPU tensors; the loads below move the rest."""
    if "model_name" in meta:
        check_compatible(ckpt, meta["model_name"], meta.get("num_classes"), "the checkpoint to resume")
    load_model_state(unwrap(model), ckpt["model"], "the checkpoint to resume")
    optimizer.load_state_dict(ckpt["optimizer"])
    epoch = int(ckpt["epoch"])
    schedule.load_state_dict(ckpt["schedule"])
    # Another world size, batch or accumulation gives another number of steps per epoch: the schedule continues
    # from the same epoch (checkpoints are written at epoch ends).
    schedule.load_state_dict({"last_step": epoch * schedule.steps_per_epoch})
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    if get_rank() > 0:  # the checkpoint holds rank 0's generators: the other ranks branch off to their own streams
        torch.manual_seed(int(torch.randint(2**62, ())) + get_rank())
    return epoch, float(ckpt["best_top1"])


@dataclass
class EpochEnd:
    """What ``fit`` hands its caller after each epoch: the epoch's ``record`` (the metrics line), whether its score
    is the ``best`` so far, and the two checkpoints it may keep, built only when asked for (on the rank that
    writes): :meth:`resume_state` holds everything a resume needs, :meth:`weights` the weights and the record."""

    record: dict
    is_best: bool
    _state: Callable[[bool], dict]

    @property
    def epoch(self) -> int:
        return int(self.record["epoch"])

    def resume_state(self) -> dict:
        return self._state(True)

    def weights(self) -> dict:
        return self._state(False)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    *,
    device: torch.device,
    options: TrainOptions,
    meta: dict,
    resume: dict | None = None,
    history: list[dict] | None = None,
    on_epoch_end: Callable[[EpochEnd], None] | None = None,
    on_progress: Callable[[dict], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train ``options.epochs`` epochs, validating after every ``options.val_every``-th and the last, and hand each
    epoch's end to ``on_epoch_end`` (on every rank; only rank 0 should write), and progress inside an epoch (at
    ``options.report``'s intervals, rank 0) to ``log`` and ``on_progress``.

    ``meta`` (model name, class count, class names, resolved config; plain data) is stored in every checkpoint.
    ``resume`` (a checkpoint of :meth:`EpochEnd.resume_state`, loaded on the CPU) continues with the model,
    optimiser, schedule, scaler and RNG states of the end of its epoch, so the run ends exactly as an uninterrupted
    one (with the same world size; any other world size resumes at the same epoch); ``history`` holds the records
    of its epochs. Returns a summary. ``model`` may be DDP-wrapped: checkpoints always hold the inner model's state
    dict, and only rank 0 logs.
    """
    log = main_only(log)
    scaler = _grad_scaler(device, options)
    start_epoch, best = 0, -1.0
    if resume is not None:
        start_epoch, best = _resume(resume, model, optimizer, schedule, scaler, meta)
    history, record = [r for r in history or [] if r.get("epoch", 0) <= start_epoch], {}
    for epoch in range(start_epoch, options.epochs):
        record = _train_and_validate(model, optimizer, schedule, scaler, train_loader, val_loader, epoch,
                                     device=device, options=options, log=log, on_progress=on_progress)
        # With a validation set, only validated epochs compete for "best" (train and val scores do not compare).
        scored = val_loader is None or "val_top1" in record
        score = record.get("val_top1", record["train_top1"])
        is_best, best = scored and score > best, max(best, score) if scored else best
        if best >= 0:  # absent before the first validation
            record["best_top1"] = best
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(EpochEnd(record, is_best, _checkpoints(model, optimizer, schedule, scaler, epoch + 1, meta,
                                                                record, best)))
        log(_epoch_line(record, options.epochs))
    barrier()  # whatever rank 0 kept of the last epoch exists when any rank returns
    return _summary(history, record, best, log)


def _checkpoints(model, optimizer, schedule, scaler, epoch: int, meta: dict, record: dict,
                 best: float) -> Callable[[bool], dict]:
    """The checkpoint of the end of ``epoch``: with ``full``, everything a resume needs; else weights and record."""
    def build(full: bool) -> dict:
        if not full:
            return make_checkpoint(model, epoch=epoch, meta=meta, metrics=record)
        states = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                  "scaler": scaler.state_dict(), "rng": rng_state(), "best_top1": best, "metrics": record}
        return make_checkpoint(model, epoch=epoch, meta=meta, **states)
    return build


def _grad_scaler(device: torch.device, options: TrainOptions) -> GradScaler:
    """Loss scaling keeps float16 gradients from underflowing; bfloat16 has float32's range and needs none."""
    scaling = options.amp and device.type == "cuda" and options.amp_dtype == "float16"
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", enabled=scaling)
    return torch.cuda.amp.GradScaler(enabled=scaling)  # torch 2.2, the oldest the package declares


def _train_and_validate(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                        scaler: GradScaler, train_loader: DataLoader, val_loader: DataLoader | None,
                        epoch: int, *, device: torch.device, options: TrainOptions,
                        log: Callable[[str], None] | None = None,
                        on_progress: Callable[[dict], None] | None = None) -> dict:
    """One epoch's record: training, then validation after every ``options.val_every``-th epoch and the last."""
    _set_epoch(train_loader, epoch)
    record = {"epoch": epoch + 1, "lr": schedule.lr}
    if options.bn_momentum is not None:
        record["bn_momentum"] = options.bn_momentum(epoch)
        set_bn_momentum(model, record["bn_momentum"])
    record |= train_one_epoch(model, train_loader, optimizer, schedule, device=device, options=options,
                              scaler=scaler, epoch=epoch, log=log, on_progress=on_progress)
    record["lr_last"] = schedule.lr_at(max(0, schedule.last_step - 1))  # "lr" is the first step's: warm-up moves it
    validate = (epoch + 1) % options.val_every == 0 or epoch + 1 == options.epochs
    if val_loader is not None and validate:
        record |= evaluate(unwrap(model), val_loader, device=device, amp=options.amp, amp_dtype=options.amp_dtype)
    return record


def _summary(history: list[dict], last: dict, best: float, log: Callable[[str], None]) -> dict:
    """What ``fit`` returns, after logging the skipped clips of the whole run."""
    skipped = sum(r.get("skipped", 0) for r in history)
    val_skipped = sum(r.get("val_skipped", 0) for r in history)
    if skipped or val_skipped:
        log(f"skipped unreadable clips: {skipped} in training and {val_skipped} in validation over {len(history)} "
            "epochs (per epoch in the epoch records; the warnings above name the files)")
    return {"epochs": len(history), "best_top1": best, "last": last, "skipped": skipped,
            "val_skipped": val_skipped, "train_seconds": sum(r["train_seconds"] for r in history)}


def _epoch_line(r: dict, epochs: int) -> str:
    text = f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  train top1 {100 * r['train_top1']:.1f}%"
    if "val_top1" in r:
        text += f"  val loss {r['val_loss']:.4f}  val top1 {100 * r['val_top1']:.1f}%"
    lr = f"{r['lr']:.3g}" if r.get("lr_last", r["lr"]) == r["lr"] else f"{r['lr']:.3g}→{r['lr_last']:.3g}"
    text += f"  lr {lr}  {r['train_seconds']:.1f}s (data {r['data_seconds']:.1f}s)"
    text += f"  skipped {r['skipped']}" if r["skipped"] else ""
    return text + (f"  val skipped {r['val_skipped']}" if r.get("val_skipped") else "")
