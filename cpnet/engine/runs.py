"""Runs: the one place that turns a :class:`cpnet.config.Config` into datasets, a model, an optimiser and engine
calls. The CLI subcommands and the demo call these; everything below them takes explicit arguments.

A run folder holds ``config.yaml`` (resolved), ``labels.json`` (the label map), ``metrics.jsonl``,
``checkpoint_last.pt``, ``checkpoint_best.pt`` and, after ``cpnet eval``, ``eval_<split>_<protocol>/``.
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
from torch.utils.data import DataLoader, DistributedSampler

import cpnet
from cpnet.config import Config, DataConfig, apply_overrides, config_from_dict, config_to_dict, save_config
from cpnet.data.annotations import DatasetSplit, load_split
from cpnet.data.dataset import ClipDataset, ViewDataset, collate_skip, collate_views
from cpnet.data.sampling import view_protocol
from cpnet.engine.checkpoint import BEST, LAST, check_compatible, load_checkpoint
from cpnet.engine.evaluation import EvalResult, collect_view_logits, summarize, write_eval_outputs
from cpnet.engine.loop import TrainOptions, fit
from cpnet.engine.optim import LRSchedule, build_optimizer
from cpnet.models.params import count_params


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available; use auto or cpu")
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


def clip_dataset(data: DataConfig, split: DatasetSplit, train: bool, seed: int = 0) -> ClipDataset:
    """Training (random offset, crop, jitter, flip) or validation (centre view) clips of ``split``."""
    return ClipDataset(split, num_frames=data.num_frames, stride=data.stride, sampling=data.sampling,
                       size=data.size, short_side=data.short_side, train=train, flip=data.flip,
                       color_jitter=data.color_jitter, skip_bad=data.skip_bad, seed=seed)


@contextlib.contextmanager
def reproducible(seed: int, deterministic: bool, threads: int | None) -> Iterator[None]:
    """Seed every generator; optionally force deterministic kernels and set the thread count, restoring after."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def train_run(cfg: Config, out_dir: str | Path, *, resume: bool = False, init: str | None = None,
              progress: bool | None = None, prepare: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train ``cfg`` into the run folder ``out_dir``; ``resume`` continues its last checkpoint exactly.
    ``prepare=False`` skips writing/checking the synthetic dataset (the caller did it).

    Returns the engine's summary plus ``params`` (all parameters) and ``out_dir``.
    """
    out = Path(out_dir)
    if resume and not (out / LAST).is_file():
        raise FileNotFoundError(f"--resume: no {LAST} in {out}")
    if not resume and (out / LAST).is_file():
        raise ValueError(f"{out} already holds a run ({LAST}); pass --resume to continue it or choose another --out")
    if prepare:
        prepare_data(cfg.data, log)
    train_split = read_split(cfg.data, cfg.data.train_split)
    val_split = read_split(cfg.data, cfg.data.val_split)
    if val_split.class_names != train_split.class_names:
        raise ValueError(f"{cfg.data.val_split} and {cfg.data.train_split} splits have different class lists")
    device = resolve_device(cfg.train.device)
    with reproducible(cfg.train.seed, cfg.train.deterministic, cfg.train.threads):
        model = build_model(cfg, train_split.num_classes).to(device)
        init = init or cfg.model.init
        if init and not resume:
            from cpnet.models.imagenet import load_imagenet

            load_imagenet(model, init)
        train_set = clip_dataset(cfg.data, train_split, train=True, seed=cfg.train.seed)
        sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=cfg.train.seed)
        drop_last = len(train_set) > cfg.train.batch_size
        train_loader = _loader(train_set, cfg.train.batch_size, cfg.data.workers, sampler, drop_last, collate_skip)
        val_loader = _loader(clip_dataset(cfg.data, val_split, train=False), cfg.eval.batch_size, cfg.data.workers,
                             collate=collate_skip)
        o = cfg.optim
        optimizer = build_optimizer(model, o.lr, o.momentum, o.nesterov, o.weight_decay, o.decay_norm_and_bias)
        steps = math.ceil(len(train_loader) / cfg.train.accumulate)
        schedule = LRSchedule(optimizer, base_lr=o.lr, steps_per_epoch=steps, epochs=cfg.train.epochs, kind=o.schedule,
                              step_size=o.step_size, gamma=o.gamma, min_lr=o.min_lr, warmup_epochs=o.warmup_epochs,
                              warmup_start_factor=o.warmup_start_factor)
        options = TrainOptions(epochs=cfg.train.epochs, accumulate=cfg.train.accumulate,
                               label_smoothing=cfg.train.label_smoothing, amp=cfg.train.amp,
                               max_bad_fraction=cfg.data.max_bad_fraction if cfg.data.skip_bad else 0.0,
                               progress=progress)
        meta = {"model_name": cfg.model.name, "num_classes": train_split.num_classes,
                "class_names": list(train_split.class_names), "config": config_to_dict(cfg)}
        save_config(cfg, out / "config.yaml")
        (out / "labels.json").write_text(json.dumps(train_split.class_names, indent=1) + "\n")
        params = count_params(model)
        log(f"{cfg.model.name}: {params / 1e6:.3f} M parameters, {len(train_set)} training clips, "
            f"{len(val_loader.dataset)} validation clips, {cfg.train.epochs} epochs on {device}")
        summary = fit(model, optimizer, schedule, train_loader, val_loader, device=device, options=options,
                      out_dir=out, meta=meta, resume=resume, log=log)
    return summary | {"params": params, "out_dir": str(out)}


def load_trained(checkpoint: str | Path, device: torch.device, cfg: Config | None = None) -> tuple[nn.Module, dict,
                                                                                                     Config]:
    """Rebuild the model stored in ``checkpoint`` (weights-only load); returns (model in eval mode, ckpt, config).

    The checkpoint's own config is used unless ``cfg`` is given; then model name and class count must match.
    """
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    cfg = cfg if cfg is not None else config_from_dict(ckpt["config"])
    check_compatible(ckpt, cfg.model.name, len(ckpt["class_names"]), checkpoint)
    model = build_model(cfg, len(ckpt["class_names"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt, cfg


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
             log: Callable[[str], None] = print) -> EvalResult:
    """Evaluate ``checkpoint`` on ``split`` with ``clips x crops`` views and write the report into ``out_dir``."""
    device = resolve_device(cfg.train.device)
    model, ckpt, cfg = load_trained(checkpoint, device, cfg)
    split = split or cfg.data.val_split
    records = read_split(cfg.data, split)
    if records.class_names != ckpt["class_names"]:
        raise ValueError(f"{checkpoint} was trained on other classes than {cfg.data.root} ({split})")
    protocol = protocol or cfg.eval.protocol
    p_clips, p_crops, rule = view_protocol(protocol)
    clips, crops = clips or cfg.eval.clips or p_clips, crops or cfg.eval.crops or p_crops
    short_side = cfg.data.size if rule == "crop" else cfg.data.short_side
    views = ViewDataset(records, num_frames=cfg.data.num_frames, stride=cfg.data.stride, sampling=cfg.data.sampling,
                        size=cfg.data.size, short_side=short_side, clips=clips, crops=crops, skip_bad=cfg.data.skip_bad)
    log(f"evaluating {Path(checkpoint).name} (epoch {ckpt['epoch']}) on {len(records.records)} {split} videos x "
        f"{clips * crops} views ({protocol})")
    loader = _loader(views, cfg.eval.batch_size, cfg.data.workers, collate=collate_views)
    logits = collect_view_logits(model, loader, device=device, amp=cfg.train.amp)
    result = summarize(logits, len(records.records), records.class_names)
    result.summary = {"checkpoint": str(checkpoint), "model": cfg.model.name, "epoch": ckpt["epoch"],
                      "split": split, "protocol": protocol, "clips": clips, "crops": crops} | result.summary
    write_eval_outputs(out_dir, result, logits, [r.video_id for r in records.records], records.class_names)
    return result
