"""``cpnet train``: a :class:`~cpnet.app.config.Config` turned into a model, data loaders, an optimiser and the
engine's ``fit``, in a run folder (:class:`~cpnet.app.runfolder.RunFolder`).

Launched by torchrun, every process calls the same function: :func:`train_run` opens the process group from the
environment (``cpnet.engine.distributed.session``), each rank trains on its share of the data, and rank 0 alone logs
and writes the run folder. A plain process runs exactly as before.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cpnet.app.config import Config, config_to_dict, load_config, save_config
from cpnet.app.datasets import clip_dataset, eval_loader, frame_cache, prepare_data, read_split, train_loader
from cpnet.app.runfolder import RunFolder
from cpnet.app.trained import (
    build_model,
    initial_weights,
    initialise,
    placed,
    stage_prefixes,
    warn_if_cp_starts_closed,
    with_init_options,
)
from cpnet.data.annotations import DatasetSplit
from cpnet.data.cache import FrameCache
from cpnet.device import resolve_device
from cpnet.engine import distributed
from cpnet.engine.checkpoint import check_compatible, load_checkpoint
from cpnet.engine.distributed import barrier, get_rank, get_world_size, is_main, main_only
from cpnet.engine.finetune import freeze
from cpnet.engine.loop import TrainOptions, fit
from cpnet.engine.optim import LRSchedule, bn_momentum_schedule, build_optimizer, linear_scaled_lr
from cpnet.engine.progress import ProgressOptions
from cpnet.errors import MediaError, one_line
from cpnet.models.params import count_params


@contextlib.contextmanager
def reproducible(seed: int, deterministic: bool, threads: int | None, flush_denormal: bool = False) -> Iterator[None]:
    """Seed every generator; optionally force deterministic kernels, set the thread count and flush denormal floats
    to zero on CPU, restoring after (flushing back to torch's default, off)."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    flushing = flush_denormal and torch.set_flush_denormal(True)  # False where the CPU cannot (no SSE3)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])
        if flushing:
            torch.set_flush_denormal(False)


def train_command(config: str | Path | None, overrides: list[str], out: str | Path | None, *, resume: bool = False,
                  force: bool = False, init: str | None = None, progress: bool | None = None) -> dict:
    """``cpnet train``: load ``config`` with ``overrides`` (with ``resume`` and no config, the run folder's own) and
    train into ``out`` (default ``runs/<config name>``); see :func:`train_run`."""
    if config is None and not (resume and out):
        raise ValueError("--config is required (or --resume --out RUN_DIR to continue a run with its own config)")
    cfg = load_config(config if config is not None else RunFolder(out).config, overrides)
    out = Path(out) if out else Path("runs") / Path(config).stem
    return train_run(cfg, out, resume=resume, force=force, init=init, progress=progress)


def train_run(cfg: Config, out_dir: str | Path, *, resume: bool = False, force: bool = False,
              init: str | None = None, progress: bool | None = None, prepare: bool = True,
              cache: FrameCache | None = None, log: Callable[[str], None] = print) -> dict:
    """Train ``cfg`` into the run folder ``out_dir``; ``resume`` continues its last checkpoint exactly, ``force``
    replaces the run files a previous run left there (refused otherwise). ``prepare=False`` skips writing/checking
    the synthetic dataset (the caller did it). ``cache`` serves decoded frames that an earlier run in this process
    kept (otherwise ``data.cache_mb`` makes one for this run). The folder is locked for the whole run.

    Under torchrun each process trains a DDP replica on its share of every epoch (``train.batch_size`` clips per
    process and step) and validates a shard; the synthetic set and the run folder are written by rank 0.
    Returns the engine's summary plus ``params`` (all parameters) and ``out_dir``.
    """
    run = RunFolder(out_dir)
    init = None if resume else initial_weights(init or cfg.model.init)  # a missing file stops before any data
    first = (distributed.launch_env() or distributed.LaunchEnv(0, 1, 0)).rank == 0
    # The weights' own model settings: the run's config.yaml then records the options it trains with.
    cfg = with_init_options(cfg, init, log if first else lambda message: None)
    with run.locked() if first else contextlib.nullcontext():
        if first:
            for path in run.prepare(resume=resume, force=force):
                log(f"--force: removed {path}")
        with distributed.session(cfg.train.device), _skip_bad_hint(cfg.data.skip_bad):
            summary = _train(cfg, run, resume=resume, init=init, progress=progress, prepare=prepare, cache=cache,
                             log=main_only(log))
    return summary | {"out_dir": str(run.path)}


@contextlib.contextmanager
def _skip_bad_hint(skipping: bool) -> Iterator[None]:
    """A clip that cannot be read stops a run that does not skip bad media: say how to skip them."""
    try:
        yield
    except MediaError as e:
        if skipping:
            raise
        raise MediaError(f"{one_line(e)} (set data.skip_bad: true to skip unreadable clips, up to "
                         "data.max_bad_fraction of an epoch; `cpnet data check` lists every bad file)") from None


def _train(cfg: Config, run: RunFolder, *, resume: bool, init: Path | None, progress: bool | None, prepare: bool,
           cache: FrameCache | None, log: Callable[[str], None]) -> dict:
    """:func:`train_run` inside the process group."""
    if prepare and is_main():
        prepare_data(cfg.data, log)
    barrier()  # the other ranks read the data rank 0 has just written
    train_split, val_split = _splits(cfg)
    device = resolve_device(cfg.train.device)
    # Rank r seeds with seed + r (its own dropout masks); DDP gives every rank rank 0's initial weights.
    with reproducible(cfg.train.seed + get_rank(), cfg.train.deterministic, cfg.train.threads,
                      cfg.train.flush_denormal):
        model = placed(build_model(cfg, train_split.num_classes), device, cfg.train.channels_last)
        if init is not None:
            initialise(model, init, cfg.model.name, list(train_split.class_names), log)
        elif not resume:
            warn_if_cp_starts_closed(model, cfg.model.name)
        params = count_params(model)
        if cfg.train.freeze:
            frozen = freeze(model, stage_prefixes(cfg.train.freeze))
            log(f"frozen: {', '.join(cfg.train.freeze)} ({frozen / 1e6:.3f} M parameters, BatchNorm statistics held)")
        model = distributed.wrap_model(model, device, cfg.train.sync_bn)
        cache = frame_cache(cfg.data, cache)
        train_set = clip_dataset(cfg.data, train_split, train=True, seed=cfg.train.seed, cache=cache)
        train_batches = train_loader(cfg.data, train_set, cfg.train.batch_size, cfg.train.seed)
        val_batches = eval_loader(cfg.data, clip_dataset(cfg.data, val_split, train=False, cache=cache),
                                  cfg.eval.batch_size)
        optimizer, schedule = _optimisation(cfg, model, len(train_batches), log)
        meta = {"model_name": cfg.model.name, "num_classes": train_split.num_classes,
                "class_names": list(train_split.class_names), "config": config_to_dict(cfg)}
        if is_main():
            save_config(cfg, run.config)
            run.write_labels(train_split.class_names)
        world = get_world_size()
        where = f"{device}" if world == 1 else f"{world} processes ({device} on rank 0)"
        per_epoch = len(train_batches) * cfg.train.batch_size * world if train_batches.drop_last else len(train_set)
        dropped = f" ({per_epoch} per epoch: the last partial batch is dropped)" if per_epoch < len(train_set) else ""
        log(f"{cfg.model.name}: {params / 1e6:.3f} M parameters, {len(train_set)} training clips{dropped}, "
            f"{len(val_batches.dataset)} validation clips, {cfg.train.epochs} epochs on {where}")
        summary = fit_in(run, model, optimizer, schedule, train_batches, val_batches, device=device,
                         options=_train_options(cfg, progress), meta=meta, resume=resume, log=log,
                         record_seconds=cfg.train.record_seconds)
        if cache is not None:
            log(cache.describe())
    log(f"done: {summary['epochs']} epochs, best val top1 {100 * summary['best_top1']:.2f}%, "
        f"{summary['train_seconds']:.1f}s training; run folder {run.path}")
    return summary | {"params": params}


def fit_in(run: RunFolder, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
           train_batches, val_batches, *, resume: bool, log: Callable[[str], None], record_seconds: float = 300.0,
           **kwargs) -> dict:
    """The engine's ``fit``, keeping each epoch in ``run`` (rank 0 writes) and a progress record at most every
    ``record_seconds``; with ``resume``, from its last checkpoint, dropping what an interruption left
    half-written."""
    state, history = None, []
    if resume:
        state = load_checkpoint(run.last)  # every rank: DDP replicas start from the same state
        meta = kwargs.get("meta") or {}
        if "model_name" in meta:
            check_compatible(state, meta["model_name"], meta.get("num_classes"), run.last)
        history, note = run.read_metrics(upto_epoch=int(state["epoch"]))
        log(f"resumed {run.last} after epoch {state['epoch']}")
        if note:
            log(note)
        if is_main():
            for stale in run.remove_stale_temporaries():
                log(f"removed {stale.name}, left by a process killed while writing it")
    barrier()  # every rank has read the metrics before rank 0 rewrites them
    recorder = run.recorder(keep_epochs=int(state["epoch"]) if state else 0,
                            progress_seconds=record_seconds) if is_main() else None
    try:
        if recorder is not None and state is not None:
            recorder.restore(state.get("metrics") or {})
            history, _ = run.read_metrics(upto_epoch=int(state["epoch"]))
        return fit(model, optimizer, schedule, train_batches, val_batches, resume=state, history=history,
                   on_epoch_end=recorder.epoch_end if recorder is not None else None,
                   on_progress=recorder.progress if recorder is not None else None, log=log, **kwargs)
    finally:
        if recorder is not None:
            recorder.close()


def _splits(cfg: Config) -> tuple[DatasetSplit, DatasetSplit]:
    """The training and validation splits, which must have the same classes."""
    train_split = read_split(cfg.data, cfg.data.train_split)
    val_split = read_split(cfg.data, cfg.data.val_split)
    if val_split.class_names != train_split.class_names:
        raise ValueError(f"{cfg.data.val_split} and {cfg.data.train_split} splits have different class lists")
    return train_split, val_split


def _train_options(cfg: Config, progress: bool | None) -> TrainOptions:
    return TrainOptions(epochs=cfg.train.epochs, accumulate=cfg.train.accumulate,
                        label_smoothing=cfg.train.label_smoothing, amp=cfg.train.amp, amp_dtype=cfg.train.amp_dtype,
                        max_bad_fraction=cfg.data.max_bad_fraction if cfg.data.skip_bad else 0.0,
                        progress=progress, val_every=cfg.train.val_every,
                        bn_momentum=bn_momentum_schedule(cfg.optim.bn_momentum, cfg.optim.step_size),
                        hold_bn=("",) if cfg.train.freeze_bn else stage_prefixes(cfg.train.freeze),
                        report=ProgressOptions(every=cfg.train.log_every, seconds=cfg.train.log_seconds))


def global_batch(cfg: Config) -> int:
    """Clips per optimiser step over all processes: ``train.batch_size x processes x train.accumulate``."""
    return cfg.train.batch_size * get_world_size() * cfg.train.accumulate


def _optimisation(cfg: Config, model: nn.Module, batches: int, log: Callable[[str], None]
                  ) -> tuple[torch.optim.Optimizer, LRSchedule]:
    """SGD and its schedule; with ``optim.scale_lr`` the learning rates follow the linear scaling rule."""
    o = cfg.optim
    lr, min_lr = o.lr, o.min_lr
    if o.scale_lr:
        batch, reference = global_batch(cfg), o.reference_batch or cfg.train.batch_size * cfg.train.accumulate
        lr, min_lr = linear_scaled_lr(lr, batch, reference), linear_scaled_lr(min_lr, batch, reference)
        log(f"learning rate {o.lr:g} x global batch {batch} / reference batch {reference} = {lr:g}")
    optimizer = build_optimizer(model, lr, o.momentum, o.nesterov, o.weight_decay, o.decay_norm_and_bias,
                                o.backbone_lr_mult)
    steps = math.ceil(batches / cfg.train.accumulate)
    schedule = LRSchedule(optimizer, base_lr=lr, steps_per_epoch=steps, epochs=cfg.train.epochs, kind=o.schedule,
                          step_size=o.step_size, gamma=o.gamma, min_lr=min_lr, warmup_epochs=o.warmup_epochs,
                          warmup_start_factor=o.warmup_start_factor)
    return optimizer, schedule
