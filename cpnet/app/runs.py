"""Runs: a :class:`~cpnet.app.config.Config` turned into a model, data loaders, an optimiser and engine calls, in a
run folder (:class:`~cpnet.app.runfolder.RunFolder`). The CLI's subcommands and the demo call these.

Launched by torchrun, every process calls the same function: :func:`train_run` and :func:`eval_run` open the process
group from the environment (``cpnet.engine.distributed.session``), each rank works on its share of the data, and
rank 0 alone logs and writes the run folder. A plain process runs exactly as before.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import cpnet
from cpnet.app.config import Config, apply_overrides, config_from_dict, config_to_dict, save_config
from cpnet.app.datasets import (
    clip_dataset,
    eval_loader,
    frame_cache,
    prepare_data,
    read_split,
    train_loader,
    view_dataset,
)
from cpnet.app.runfolder import RunFolder, prepare_eval_dir
from cpnet.data.annotations import DatasetSplit
from cpnet.data.cache import FrameCache
from cpnet.data.views import view_protocol
from cpnet.engine import distributed
from cpnet.engine.checkpoint import (
    check_compatible,
    is_cpnet_checkpoint,
    load_checkpoint,
    load_for_finetuning,
    load_model_state,
)
from cpnet.engine.distributed import barrier, get_rank, get_world_size, is_main, main_only, resolve_device
from cpnet.engine.evaluation import EvalResult, collect_view_logits, summarize, write_eval_outputs
from cpnet.engine.finetune import freeze
from cpnet.engine.loop import TrainOptions, fit
from cpnet.engine.optim import LRSchedule, bn_momentum_schedule, build_optimizer, linear_scaled_lr
from cpnet.models import CPModule
from cpnet.models.params import count_params
from cpnet.reports.figures import plot_confusion


def build_model(cfg: Config, num_classes: int) -> nn.Module:
    """The configured preset with ``model.options`` as overrides."""
    return cpnet.create_model(cfg.model.name, num_classes=num_classes, **cfg.model.options)


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
    with run.locked() if first else contextlib.nullcontext():
        if first:
            for path in run.prepare(resume=resume, force=force):
                log(f"--force: removed {path}")
        with distributed.session(cfg.train.device):
            summary = _train(cfg, run, resume=resume, init=init, progress=progress, prepare=prepare, cache=cache,
                             log=main_only(log))
    return summary | {"out_dir": str(run.path)}


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
        model = _placed(build_model(cfg, train_split.num_classes), device, cfg.train.channels_last)
        if init is not None:
            _initialise(model, init, cfg.model.name, list(train_split.class_names), log)
        elif not resume:
            _warn_if_cp_starts_closed(model, cfg.model.name)
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
        log(f"{cfg.model.name}: {params / 1e6:.3f} M parameters, {len(train_set)} training clips, "
            f"{len(val_batches.dataset)} validation clips, {cfg.train.epochs} epochs on {where}")
        summary = fit(model, optimizer, schedule, train_batches, val_batches, device=device,
                      options=_train_options(cfg, progress), out_dir=run.path, meta=meta, resume=resume, log=log)
        if cache is not None:
            log(cache.describe())
    log(f"done: {summary['epochs']} epochs, best val top1 {100 * summary['best_top1']:.2f}%, "
        f"{summary['train_seconds']:.1f}s training; run folder {run.path}")
    return summary | {"params": params}


STAGES = {"stem": ("conv1", "bn1"), "layer1": ("layer1",), "layer2": ("layer2",), "layer3": ("layer3",),
          "layer4": ("layer4",)}  # train.freeze names of the one ResNet; res2-res5 are layer1-layer4


def stage_prefixes(names: list[str]) -> tuple[str, ...]:
    """Module-name prefixes of ``train.freeze`` entries: stage names, or module names as they are."""
    return tuple(prefix for name in names for prefix in STAGES.get(name, (name,)))


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
                        hold_bn=("",) if cfg.train.freeze_bn else stage_prefixes(cfg.train.freeze))


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


def initial_weights(init: str | None) -> Path | None:
    """``model.init`` / ``--init`` as a file, None for ``none`` (train from scratch) or unset; a missing file is an
    error naming it."""
    if init is None or str(init).lower() == "none":
        return None
    path = Path(init)
    if not path.is_file():
        raise FileNotFoundError(f"model.init {path}: file not found (expected ImageNet ResNet weights or a cpnet "
                                "checkpoint; set model.init: none to train from scratch)")
    return path


def _warn_if_cp_starts_closed(model: nn.Module, name: str) -> None:
    """One warning when a model with zero-γ CP modules trains from scratch: the zero γ is meant to keep an
    ImageNet-initialised backbone's behaviour at the start; from scratch it only delays the CP modules."""
    closed = [m for m in model.modules() if isinstance(m, CPModule) and m.init_gamma == 0]
    if closed:
        warnings.warn(f"{name} trains from scratch (no model.init) with its {len(closed)} CP modules' output γ at 0: "
                      "they add nothing at first and their MLPs get no gradient until γ moves away from 0, which "
                      "costs early epochs. That start suits an ImageNet-initialised backbone (set model.init); from "
                      "scratch, model.options.cp_init_gamma: 1.0 starts them active", stacklevel=2)


def _initialise(model: nn.Module, path: Path, model_name: str, class_names: list[str],
                log: Callable[[str], None]) -> None:
    """``--init``: a cpnet checkpoint (a trained or converted model: fine-tuning, a new classifier when the class
    count differs) or ImageNet ResNet weights (torchvision state dict or tensorpack npz) for the backbone."""
    if is_cpnet_checkpoint(path):
        log(load_for_finetuning(model, load_checkpoint(path), model_name, path, class_names=class_names))
        return
    from cpnet.models.imagenet import load_imagenet

    load_imagenet(model, path)


def load_trained(checkpoint: str | Path, device: torch.device, cfg: Config | None = None) -> tuple[nn.Module, dict,
                                                                                                     Config]:
    """Rebuild the model stored in ``checkpoint`` (weights-only load); returns (model in eval mode, ckpt, config).

    The checkpoint's own config is used unless ``cfg`` is given; then its model must be the checkpoint's.
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
    return RunFolder(run_dir).checkpoint()


def check_same_classes(ckpt: dict, split: DatasetSplit, where: str, checkpoint: str | Path) -> None:
    """Refuse to score a checkpoint on a split of other classes (count or order), naming the first difference."""
    ours, theirs = list(split.class_names), list(ckpt["class_names"])
    if ours == theirs:
        return
    if len(ours) != len(theirs):
        raise ValueError(f"{checkpoint} is for {len(theirs)} classes (expected {len(ours)}): {where} has other classes")
    diff = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
    raise ValueError(f"{checkpoint} was trained on other classes than {where}: class {diff} is {theirs[diff]!r} in "
                     f"the checkpoint, {ours[diff]!r} here")


def eval_run(cfg: Config, checkpoint: str | Path, out_dir: str | Path, *, split: str | None = None,
             protocol: str | None = None, clips: int | None = None, crops: int | None = None,
             cache: FrameCache | None = None, log: Callable[[str], None] = print) -> EvalResult:
    """Evaluate ``checkpoint`` on ``split`` with the views of ``protocol`` (``clips`` and ``crops`` override its
    counts) and write the report into ``out_dir`` (absent, empty or an earlier report, which is replaced).
    ``cache`` as in :func:`train_run`.

    Under torchrun each rank runs the model over its share of the views; the logits are gathered so every
    (video, view) counts once, every rank returns the single-process result, and rank 0 writes the report.
    """
    with distributed.session(cfg.train.device):
        log = main_only(log)
        device = resolve_device(cfg.train.device)
        model, ckpt, cfg = load_trained(checkpoint, device, cfg)
        split = split or cfg.data.val_split
        records = read_split(cfg.data, split)
        check_same_classes(ckpt, records, f"{cfg.data.root} ({split})", checkpoint)
        protocol = protocol or cfg.eval.protocol
        views_of = view_protocol(protocol).with_counts(clips or cfg.eval.clips, crops or cfg.eval.crops)
        views = view_dataset(cfg.data, records, views_of, frame_cache(cfg.data, cache))
        world = get_world_size()
        log(f"evaluating {Path(checkpoint).name} (epoch {ckpt['epoch']}) on {len(records.records)} {split} videos x "
            f"{views_of.views} views ({protocol})" + (f" in {world} processes" if world > 1 else ""))
        logits = collect_view_logits(model, eval_loader(cfg.data, views, cfg.eval.batch_size), device=device,
                                     amp=cfg.train.amp, amp_dtype=cfg.train.amp_dtype)
        result = summarize(logits, len(records.records), records.class_names)
        result.summary = {"checkpoint": str(checkpoint), "model": cfg.model.name, "epoch": ckpt["epoch"],
                          "split": split, "protocol": protocol, "clips": views_of.clips,
                          "crops": views_of.crops} | result.summary
        if is_main():
            report = write_eval_outputs(prepare_eval_dir(out_dir), result, logits,
                                        [r.video_id for r in records.records], records.class_names)
            if result.confusion is not None:
                plot_confusion(result.confusion, records.class_names, report / "confusion.png")
            log(_summary_line(result.summary) + f"\nreport: {out_dir}")
        barrier()  # the report exists when any rank returns
    return result


def _summary_line(s: dict) -> str:
    if not s["labelled"]:
        return f"videos {s['num_videos']}  views {s['num_views']}  (unlabelled split: predictions only)"
    return (f"videos {s['num_videos']}  views {s['num_views']}  "
            f"clip top1 {100 * s['clip_top1']:.2f}%  clip top5 {100 * s['clip_top5']:.2f}%  "
            f"video top1 {100 * s['video_top1']:.2f}%  video top5 {100 * s['video_top5']:.2f}%  "
            f"mean class acc {100 * s['mean_class_accuracy']:.2f}%")
