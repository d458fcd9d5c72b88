"""``cpnet eval``: a trained checkpoint scored on a split with test-time views, and the report folder written.

Launched by torchrun each rank runs the model over its share of the views; the logits are gathered so every
(video, view) counts once, every rank returns the single-process result, and rank 0 writes the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cpnet.app.config import Config, load_config
from cpnet.app.datasets import eval_loader, frame_cache, read_split, view_dataset
from cpnet.app.runfolder import RunFolder, prepare_eval_dir, write_eval_report
from cpnet.app.trained import checkpoint_config, load_trained
from cpnet.data.annotations import DatasetSplit
from cpnet.data.cache import FrameCache
from cpnet.data.views import view_protocol
from cpnet.device import resolve_device
from cpnet.engine import distributed
from cpnet.engine.distributed import barrier, get_world_size, is_main, main_only
from cpnet.engine.evaluation import EvalResult, collect_view_logits, summarize


def eval_command(*, run: str | Path | None = None, checkpoint: str | Path | None = None,
                 config: str | Path | None = None, overrides: list[str] = (), split: str | None = None,
                 protocol: str | None = None, clips: int | None = None, crops: int | None = None,
                 out: str | Path | None = None) -> EvalResult:
    """``cpnet eval``: a run folder (its config and best checkpoint) or a checkpoint (its stored config unless
    ``config``), with ``overrides``; the report goes to ``out`` (default ``<run>/eval_<split>_<protocol>``)."""
    if (run is None) == (checkpoint is None):
        raise ValueError("evaluate either a run folder (--run) or a checkpoint (--checkpoint)")
    overrides = list(overrides)
    if run is not None:
        folder = RunFolder(run)
        checkpoint = folder.checkpoint()
        cfg = load_config(config or folder.config, overrides)
    else:
        checkpoint = Path(checkpoint)
        cfg = load_config(config, overrides) if config else checkpoint_config(checkpoint, overrides)
    split = split or cfg.data.val_split
    protocol = protocol or cfg.eval.protocol
    out = Path(out) if out else RunFolder(checkpoint.parent).eval_dir(split, protocol)
    return eval_run(cfg, checkpoint, out, split=split, protocol=protocol, clips=clips, crops=crops)


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
            write_eval_report(prepare_eval_dir(out_dir), result, logits, [r.video_id for r in records.records],
                              records.class_names)
            log(_summary_line(result.summary, len(records.class_names)) + f"\nreport: {out_dir}")
        barrier()  # the report exists when any rank returns
    return result


def _summary_line(s: dict, num_classes: int) -> str:
    """One line of the metrics; top-5 only where it says something (more than 5 classes: with 5 or fewer it is
    100 % by definition)."""
    if not s["labelled"]:
        return f"videos {s['num_videos']}  views {s['num_views']}  (unlabelled split: predictions only)"
    top5 = num_classes > 5
    return (f"videos {s['num_videos']}  views {s['num_views']}  "
            f"clip top1 {100 * s['clip_top1']:.2f}%  " + (f"clip top5 {100 * s['clip_top5']:.2f}%  " if top5 else "")
            + f"video top1 {100 * s['video_top1']:.2f}%  "
            + (f"video top5 {100 * s['video_top5']:.2f}%  " if top5 else "")
            + f"mean class acc {100 * s['mean_class_accuracy']:.2f}%" + ("" if top5 else f" ({num_classes} classes)"))
