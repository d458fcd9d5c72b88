"""Runs: the one place that turns a :class:`cpnet.config.Config` into datasets, a model, an optimiser and engine
calls. The CLI subcommands and the demo call these; everything below them takes explicit arguments.

A run folder holds ``config.yaml`` (resolved), ``labels.json`` (the label map), ``metrics.jsonl``,
``checkpoint_last.pt``, ``checkpoint_best.pt`` and, after ``cpnet eval``, ``eval_<split>_<protocol>/``.

Launched by torchrun, every process calls the same function: :func:`train_run` and :func:`eval_run` open the process
group from the environment (``cpnet.engine.distributed.session``), each rank works on its share of the data, and
rank 0 alone logs and writes the run folder. A plain process runs exactly as before.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

import cpnet
from cpnet.config import Config, DataConfig, apply_overrides, config_from_dict, config_to_dict, save_config
from cpnet.data.annotations import DatasetSplit, load_split
from cpnet.data.cache import FrameCache
from cpnet.data.dataset import ClipDataset, ViewDataset, collate_skip, collate_views
from cpnet.data.views import view_protocol
from cpnet.engine import distributed
from cpnet.engine.checkpoint import (
    BEST,
    LAST,
    check_compatible,
    is_cpnet_checkpoint,
    load_checkpoint,
    load_for_finetuning,
    load_model_state,
)
from cpnet.engine.distributed import ShardBatchSampler, barrier, get_rank, get_world_size, is_main
from cpnet.engine.evaluation import EvalResult, collect_view_logits, summarize, write_eval_outputs
from cpnet.engine.loop import TrainOptions, fit
from cpnet.engine.optim import LRSchedule, build_optimizer, linear_scaled_lr
from cpnet.models.params import count_params


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error naming ``setting``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting}=cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def prepare_data(data: DataConfig, log: Callable[[str], None] = print) -> None:
    """For ``dataset: synthetic``, write the synthetic set in the Jester layout under ``data.root`` (or reuse it)."""
    if data.dataset != "synthetic":
        return
    from cpnet.data.synthetic import write_jester

    s = data.synthetic
    log(f"synthetic dataset: {s.num_train} train + {s.num_val} validation clips of {s.num_frames}x{s.size}^2 "
        f"in {data.root}")
    write_jester(data.root, num_train=s.num_train, num_val=s.num_val, num_frames=s.num_frames, size=s.size,
                 seed=s.seed, workers=max(1, data.workers), progress=sys.stderr.isatty())


def read_split(data: DataConfig, split: str) -> DatasetSplit:
    """The records of ``split``; the synthetic set is read through the real Jester reader."""
    dataset = "jester" if data.dataset == "synthetic" else data.dataset
    result = load_split(dataset, data.root, split)
    if not result.records:
        raise ValueError(f"{data.dataset} split {split!r} under {data.root} has no readable video")
    return result


def build_model(cfg: Config, num_classes: int) -> nn.Module:
    """The configured preset with ``model.options`` as overrides."""
    return cpnet.create_model(cfg.model.name, num_classes=num_classes, **cfg.model.options)


def _loader(dataset, batch_size: int, workers: int, sampler=None, drop_last: bool = False, collate=None):
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                      drop_last=drop_last, pin_memory=torch.cuda.is_available(), persistent_workers=False)


def _eval_loader(dataset, batch_size: int, workers: int, collate) -> DataLoader:
    """This rank's batches of the single-process order (all of them in a single process), none repeated."""
    return DataLoader(dataset, batch_sampler=ShardBatchSampler(len(dataset), batch_size), num_workers=workers,
                      collate_fn=collate, pin_memory=torch.cuda.is_available(), persistent_workers=False)


def clip_dataset(data: DataConfig, split: DatasetSplit, train: bool, seed: int = 0,
                 cache: FrameCache | None = None) -> ClipDataset:
    """Training (random offset, crop, jitter, flip) or validation (centre view) clips of ``split``."""
    return ClipDataset(split, num_frames=data.num_frames, stride=data.stride, sampling=data.sampling,
                       size=data.size, short_side=data.short_side, train=train, flip=data.flip,
                       color_jitter=data.color_jitter, skip_bad=data.skip_bad, seed=seed, cache=cache)


def frame_cache(data: DataConfig, cache: FrameCache | None = None) -> FrameCache | None:
    """``cache`` if given (shared between runs in one process), else a new one when ``data.cache_mb`` asks."""
    if cache is not None and data.workers:
        raise ValueError(f"a frame cache needs data.workers: 0, got {data.workers} (worker processes would each fill "
                         "and lose their own copy)")
    if cache is not None or not data.cache_mb:
        return cache
    return FrameCache(data.cache_mb * 2**20)


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


def train_run(cfg: Config, out_dir: str | Path, *, resume: bool = False, init: str | None = None,
              progress: bool | None = None, prepare: bool = True, cache: FrameCache | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Train ``cfg`` into the run folder ``out_dir``; ``resume`` continues its last checkpoint exactly.
    ``prepare=False`` skips writing/checking the synthetic dataset (the caller did it). ``cache`` serves decoded
    frames that an earlier run in this process kept (otherwise ``data.cache_mb`` makes one for this run).

    Under torchrun each process trains a DDP replica on its share of every epoch (``train.batch_size`` clips per
    process and step) and validates a shard; the synthetic set and the run folder are written by rank 0.
    Returns the engine's summary plus ``params`` (all parameters) and ``out_dir``.
    """
    out = Path(out_dir)
    if resume and not (out / LAST).is_file():
        raise FileNotFoundError(f"--resume: no {LAST} in {out}")
    if not resume and (out / LAST).is_file():
        raise ValueError(f"{out} already holds a run ({LAST}); pass --resume to continue it or choose another --out")
    with distributed.session(cfg.train.device):
        log = log if is_main() else _quiet
        if prepare and is_main():
            prepare_data(cfg.data, log)
        barrier()  # the other ranks read the data rank 0 has just written
        train_split = read_split(cfg.data, cfg.data.train_split)
        val_split = read_split(cfg.data, cfg.data.val_split)
        if val_split.class_names != train_split.class_names:
            raise ValueError(f"{cfg.data.val_split} and {cfg.data.train_split} splits have different class lists")
        device = distributed.local_device(resolve_device(cfg.train.device))
        # Rank r seeds with seed + r (its own dropout masks); DDP gives every rank rank 0's initial weights.
        with reproducible(cfg.train.seed + get_rank(), cfg.train.deterministic, cfg.train.threads,
                          cfg.train.flush_denormal):
            model = _placed(build_model(cfg, train_split.num_classes), device, cfg.train.channels_last)
            init = init or cfg.model.init
            if init and not resume:
                _initialise(model, init, cfg.model.name, log)
            params = count_params(model)
            model = distributed.wrap_model(model, device, cfg.train.sync_bn)
            cache = frame_cache(cfg.data, cache)
            train_loader, val_loader = _train_loaders(cfg, train_split, val_split, cache)
            optimizer, schedule = _optimisation(cfg, model, len(train_loader), log)
            options = TrainOptions(epochs=cfg.train.epochs, accumulate=cfg.train.accumulate,
                                   label_smoothing=cfg.train.label_smoothing, amp=cfg.train.amp,
                                   max_bad_fraction=cfg.data.max_bad_fraction if cfg.data.skip_bad else 0.0,
                                   progress=progress, val_every=cfg.train.val_every)
            meta = {"model_name": cfg.model.name, "num_classes": train_split.num_classes,
                    "class_names": list(train_split.class_names), "config": config_to_dict(cfg)}
            if is_main():
                save_config(cfg, out / "config.yaml")
                (out / "labels.json").write_text(json.dumps(train_split.class_names, indent=1) + "\n")
            world = get_world_size()
            where = f"{device}" if world == 1 else f"{world} processes ({device} on rank 0)"
            log(f"{cfg.model.name}: {params / 1e6:.3f} M parameters, {len(train_loader.dataset)} training clips, "
                f"{len(val_loader.dataset)} validation clips, {cfg.train.epochs} epochs on {where}")
            summary = fit(model, optimizer, schedule, train_loader, val_loader, device=device, options=options,
                          out_dir=out, meta=meta, resume=resume, log=log)
            if cache is not None:
                log(cache.describe())
    return summary | {"params": params, "out_dir": str(out)}


def _quiet(message: str) -> None:
    """The log of ranks other than 0."""


def _train_loaders(cfg: Config, train_split: DatasetSplit, val_split: DatasetSplit, cache: FrameCache | None
                   ) -> tuple[DataLoader, DataLoader]:
    """Shuffled training clips (this rank's share, reshuffled every epoch) and this rank's validation batches."""
    train_set = clip_dataset(cfg.data, train_split, train=True, seed=cfg.train.seed, cache=cache)
    sampler = distributed.train_sampler(train_set, seed=cfg.train.seed)
    drop_last = len(sampler) > cfg.train.batch_size
    train_loader = _loader(train_set, cfg.train.batch_size, cfg.data.workers, sampler, drop_last, collate_skip)
    val_loader = _eval_loader(clip_dataset(cfg.data, val_split, train=False, cache=cache), cfg.eval.batch_size,
                              cfg.data.workers, collate_skip)
    return train_loader, val_loader


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
    optimizer = build_optimizer(model, lr, o.momentum, o.nesterov, o.weight_decay, o.decay_norm_and_bias)
    steps = math.ceil(batches / cfg.train.accumulate)
    schedule = LRSchedule(optimizer, base_lr=lr, steps_per_epoch=steps, epochs=cfg.train.epochs, kind=o.schedule,
                          step_size=o.step_size, gamma=o.gamma, min_lr=min_lr, warmup_epochs=o.warmup_epochs,
                          warmup_start_factor=o.warmup_start_factor)
    return optimizer, schedule


def _initialise(model: nn.Module, path: str, model_name: str, log: Callable[[str], None]) -> None:
    """``--init``: a cpnet checkpoint (a trained or converted model: fine-tuning, a new classifier when the class
    count differs) or ImageNet ResNet weights (torchvision state dict or tensorpack npz) for the backbone."""
    if is_cpnet_checkpoint(path):
        log(load_for_finetuning(model, load_checkpoint(path), model_name, path))
        return
    from cpnet.models.imagenet import load_imagenet

    load_imagenet(model, path)


def load_trained(checkpoint: str | Path, device: torch.device, cfg: Config | None = None) -> tuple[nn.Module, dict,
                                                                                                     Config]:
    """Rebuild the model stored in ``checkpoint`` (weights-only load); returns (model in eval mode, ckpt, config).

    The checkpoint's own config is used unless ``cfg`` is given; then model name and class count must match.
    """
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    cfg = cfg if cfg is not None else config_from_dict(ckpt["config"])
    check_compatible(ckpt, cfg.model.name, len(ckpt["class_names"]), checkpoint)
    model = build_model(cfg, len(ckpt["class_names"]))
    load_model_state(model, ckpt["model"], checkpoint)
    return _placed(model, device, cfg.train.channels_last).eval(), ckpt, cfg


def _placed(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model`` on ``device``, its 5-D weights channels-last when asked: convolutions then produce channels-last
    activations from any input layout, so the loop's clips need no conversion."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last_3d) if channels_last else model


def checkpoint_config(checkpoint: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The resolved config stored in ``checkpoint``, with ``key=value`` overrides applied."""
    return config_from_dict(apply_overrides(load_checkpoint(checkpoint)["config"], overrides))


def find_checkpoint(run_dir: str | Path) -> Path:
    """The best checkpoint of a run folder, else its last one."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    for name in (BEST, LAST):
        if (run / name).is_file():
            return run / name
    raise FileNotFoundError(f"no {BEST} or {LAST} in {run}: is it a cpnet run folder?")


def eval_run(cfg: Config, checkpoint: str | Path, out_dir: str | Path, *, split: str | None = None,
             protocol: str | None = None, clips: int | None = None, crops: int | None = None,
             cache: FrameCache | None = None, log: Callable[[str], None] = print) -> EvalResult:
    """Evaluate ``checkpoint`` on ``split`` with ``clips x crops`` views and write the report into ``out_dir``.
    ``cache`` as in :func:`train_run`.

    Under torchrun each rank runs the model over its share of the views; the logits are gathered so every
    (video, view) counts once, every rank returns the single-process result, and rank 0 writes the report.
    """
    with distributed.session(cfg.train.device):
        log = log if is_main() else _quiet
        device = distributed.local_device(resolve_device(cfg.train.device))
        model, ckpt, cfg = load_trained(checkpoint, device, cfg)
        split = split or cfg.data.val_split
        records = read_split(cfg.data, split)
        check_compatible(ckpt, cfg.model.name, records.num_classes, checkpoint)
        if records.class_names != ckpt["class_names"]:
            diff = next(i for i, (a, b) in enumerate(zip(records.class_names, ckpt["class_names"])) if a != b)
            raise ValueError(f"{checkpoint} was trained on other classes than {cfg.data.root} ({split}): class {diff} "
                             f"is {ckpt['class_names'][diff]!r} in the checkpoint, {records.class_names[diff]!r} here")
        protocol = protocol or cfg.eval.protocol
        views_of = view_protocol(protocol).with_counts(clips or cfg.eval.clips, crops or cfg.eval.crops)
        clips, crops = views_of.clips, views_of.crops
        views = ViewDataset(records, num_frames=cfg.data.num_frames, stride=cfg.data.stride,
                            sampling=cfg.data.sampling, size=cfg.data.size, short_side=cfg.data.short_side,
                            protocol=views_of, skip_bad=cfg.data.skip_bad, cache=frame_cache(cfg.data, cache))
        world = get_world_size()
        log(f"evaluating {Path(checkpoint).name} (epoch {ckpt['epoch']}) on {len(records.records)} {split} videos x "
            f"{clips * crops} views ({protocol})" + (f" in {world} processes" if world > 1 else ""))
        loader = _eval_loader(views, cfg.eval.batch_size, cfg.data.workers, collate_views)
        logits = collect_view_logits(model, loader, device=device, amp=cfg.train.amp)
        result = summarize(logits, len(records.records), records.class_names)
        result.summary = {"checkpoint": str(checkpoint), "model": cfg.model.name, "epoch": ckpt["epoch"],
                          "split": split, "protocol": protocol, "clips": clips, "crops": crops} | result.summary
        if is_main():
            write_eval_outputs(out_dir, result, logits, [r.video_id for r in records.records], records.class_names)
        barrier()  # the report exists when any rank returns
    return result
