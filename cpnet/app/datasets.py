"""The config's ``data`` section made real: the synthetic set written, splits read, datasets and loaders built.

The one place where :class:`~cpnet.app.config.DataConfig` meets ``cpnet.data``; the engine receives the loaders.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cpnet.app.config import DataConfig
from cpnet.data.annotations import DatasetSplit, load_split
from cpnet.data.cache import FrameCache
from cpnet.data.dataset import ClipDataset, ViewDataset, collate_skip, collate_views
from cpnet.data.records import VideoRecord
from cpnet.data.views import ViewProtocol, view_protocol
from cpnet.engine import distributed
from cpnet.engine.distributed import ShardBatchSampler


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


def frame_cache(data: DataConfig, cache: FrameCache | None = None) -> FrameCache | None:
    """``cache`` if given (shared between runs in one process), else a new one when ``data.cache_mb`` asks."""
    if cache is not None and data.workers:
        raise ValueError(f"a frame cache needs data.workers: 0, got {data.workers} (worker processes would each fill "
                         "and lose their own copy)")
    if cache is not None or not data.cache_mb:
        return cache
    return FrameCache(data.cache_mb * 2**20)


def clip_dataset(data: DataConfig, split: DatasetSplit, train: bool, seed: int = 0,
                 cache: FrameCache | None = None) -> ClipDataset:
    """Training (random offset, crop, jitter, flip) or validation (centre view) clips of ``split``."""
    return ClipDataset(split, num_frames=data.num_frames, stride=data.stride, sampling=data.sampling,
                       size=data.size, short_side=data.short_side, train=train, flip=data.flip,
                       color_jitter=data.color_jitter, skip_bad=data.skip_bad, seed=seed, cache=cache)


def view_dataset(data: DataConfig, split: DatasetSplit, protocol: ViewProtocol,
                 cache: FrameCache | None = None) -> ViewDataset:
    """The test-time views of ``split`` under ``protocol``."""
    return ViewDataset(split, num_frames=data.num_frames, stride=data.stride, sampling=data.sampling,
                       size=data.size, short_side=data.short_side, protocol=protocol, skip_bad=data.skip_bad,
                       cache=cache)


def single_file_clip(data: DataConfig, path: Path, class_names: list[str]) -> torch.Tensor:
    """The centre clip, centre crop of one video file or frame folder, sampled and transformed exactly as a
    single-view evaluation with ``data`` would: float (3, T, size, size), normalised."""
    if not path.exists():
        raise FileNotFoundError(f"video or frame folder not found: {path}")
    split = DatasetSplit(records=[VideoRecord(video_id=path.name, path=path, label=-1)], class_names=class_names)
    return view_dataset(data, split, view_protocol("single"))[0][0]


def train_loader(data: DataConfig, dataset: ClipDataset, batch_size: int, seed: int) -> DataLoader:
    """Shuffled training batches: this rank's share of every epoch, reshuffled each epoch."""
    sampler = distributed.train_sampler(dataset, seed=seed)
    return _loader(dataset, data.workers, collate_skip, batch_size=batch_size, sampler=sampler,
                   drop_last=len(sampler) > batch_size)


def eval_loader(data: DataConfig, dataset: ClipDataset | ViewDataset, batch_size: int) -> DataLoader:
    """This rank's batches of the single-process order (all of them in a single process), none repeated."""
    collate = collate_views if isinstance(dataset, ViewDataset) else collate_skip
    return _loader(dataset, data.workers, collate, batch_sampler=ShardBatchSampler(len(dataset), batch_size))


def _loader(dataset: Dataset, workers: int, collate: Callable, *, batch_size: int | None = None,
            sampler: Sampler | None = None, batch_sampler: Sampler | None = None, drop_last: bool = False
            ) -> DataLoader:
    extra = {"batch_sampler": batch_sampler} if batch_sampler is not None else {
        "batch_size": batch_size, "sampler": sampler, "drop_last": drop_last}
    return DataLoader(dataset, num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False, **extra)
