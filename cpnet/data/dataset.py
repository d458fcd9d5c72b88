"""torch Datasets over a :class:`DatasetSplit`: training/validation clips and test-time views.

Randomness is reproducible and independent of the DataLoader's worker count: item ``i`` of epoch ``e`` draws from
``numpy.random.default_rng([seed, e, i])``. Call :meth:`ClipDataset.set_epoch` before each epoch (workers copy the
dataset when an epoch's iterator starts, so use ``persistent_workers=False``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from cpnet.batch import ClipBatch, ViewBatch
from cpnet.data.cache import FrameCache
from cpnet.data.records import DatasetSplit, MediaError, VideoRecord
from cpnet.data.sampling import SAMPLINGS, sample_indices
from cpnet.data.transforms import draw_clip_aug, eval_transform, flip_label_map, train_transform, view_transform
from cpnet.data.video import count_frames, read_clip
from cpnet.data.views import ViewProtocol

_warned: set[str] = set()  # files already warned about in this process


def _warn_once(path: Path, error: Exception) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        warnings.warn(f"skipping bad media: {error}", stacklevel=3)


def _check_args(num_frames: int, stride: int, sampling: str, size: int, short_side: int | None) -> None:
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    if num_frames < 1 or stride < 1 or size < 1:
        raise ValueError(f"num_frames, stride and size must be >= 1; got {num_frames}, {stride}, {size}")
    if short_side is not None and short_side < size:
        raise ValueError(f"short_side {short_side} is smaller than the crop size {size}")


def video_length(record: VideoRecord) -> int:
    """Frames in one record's video: the annotation's count, else counted in the file."""
    n = record.num_frames if record.num_frames is not None else count_frames(record.path)
    if n < 1:
        raise MediaError(f"{record.path}: no frames")
    return n


def read_frames(record: VideoRecord, indices: np.ndarray, cache: FrameCache | None = None) -> np.ndarray:
    """Decode frames ``indices`` of one record: uint8 (T, H, W, 3); with ``cache`` frames decoded before come from
    memory."""
    # Counted frame folders are exact; container counts may overstate what decodes, so clamp at the end there.
    read = cache.read if cache is not None else read_clip
    return read(record.path, indices, clamp_end=record.num_frames is None)


def load_frames(
    record: VideoRecord,
    num_frames: int,
    stride: int,
    sampling: str,
    rng: np.random.Generator | None,
    position: float = 0.5,
    cache: FrameCache | None = None,
) -> np.ndarray:
    """Decode the sampled frames of one record: uint8 (T, H, W, 3). Unknown frame counts are read from the file.
    With ``cache`` frames decoded before come from memory."""
    indices = sample_indices(video_length(record), num_frames, stride, sampling, rng=rng, position=position)
    return read_frames(record, indices, cache)


class ClipDataset(Dataset):
    """One clip per video: ``(clip float (3, T, size, size), label, index)``.

    Training: random temporal offset (or random frames within segments), random resized crop, colour jitter and
    horizontal flip that swaps the split's declared flip pairs. Otherwise: centre clip, short side resized to
    ``short_side`` (default ``size``), centre crop. ``short_side`` only matters for evaluation: training crops are
    sized relative to the frame's short side and resized to ``size`` directly, which is the same at any scale.
    With ``skip_bad`` a bad or missing media file yields ``None`` (warned once per file) for :func:`collate_skip`
    to drop and count. ``cache`` (a :class:`FrameCache`, in a process without DataLoader workers) keeps decoded
    frames in memory across epochs and datasets.
    """

    def __init__(
        self,
        split: DatasetSplit,
        *,
        num_frames: int,
        stride: int = 1,
        sampling: str = "dense",
        size: int,
        short_side: int | None = None,
        train: bool,
        flip: bool = True,
        color_jitter: bool = True,
        skip_bad: bool = False,
        seed: int = 0,
        cache: FrameCache | None = None,
    ) -> None:
        _check_args(num_frames, stride, sampling, size, short_side)
        self.records = list(split.records)
        self.class_names = list(split.class_names)
        self.num_frames, self.stride, self.sampling = num_frames, stride, sampling
        self.size, self.short_side, self.train = size, short_side, train
        self.flip, self.color_jitter, self.skip_bad, self.seed = flip, color_jitter, skip_bad, seed
        self.cache = cache
        self.flip_map = flip_label_map(self.class_names, split.flip_pairs) if flip else {}
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            frames = load_frames(record, self.num_frames, self.stride, self.sampling, rng if self.train else None,
                                 cache=self.cache)
        except (MediaError, FileNotFoundError) as e:
            if not self.skip_bad:
                raise
            _warn_once(record.path, e)
            return None
        label = record.label
        if not self.train:
            return eval_transform(frames, self.size, self.short_side), label, index
        aug = draw_clip_aug(rng, frames.shape[1], frames.shape[2], flip=self.flip, color_jitter=self.color_jitter)
        if aug.flip:
            label = self.flip_map.get(label, label)
        return train_transform(frames, aug, self.size), label, index


class ViewDataset(Dataset):
    """Test-time views: item ``j`` is ``(clip (3, T, size, size), label, video_index, view_index)`` for video
    ``j // views`` and view ``j % views`` = ``clip_index * crops + crop_index``, where the views are those of
    ``protocol`` (:mod:`cpnet.data.views`; default: ``clips`` spread evenly over the video and ``crops`` along the
    long side after resizing the short side to ``short_side``, default ``size``). The last decoded clip is kept,
    so the crops of a clip decode once; ``cache`` as in :class:`ClipDataset`.
    """

    def __init__(
        self,
        split: DatasetSplit,
        *,
        num_frames: int,
        stride: int = 1,
        sampling: str = "dense",
        size: int,
        short_side: int | None = None,
        clips: int = 1,
        crops: int = 1,
        protocol: ViewProtocol | None = None,
        skip_bad: bool = False,
        cache: FrameCache | None = None,
    ) -> None:
        _check_args(num_frames, stride, sampling, size, short_side)
        self.protocol = protocol or ViewProtocol("views", clips=clips, crops=crops, resize="config")
        if self.protocol.placement == "released" and sampling != "dense":
            raise ValueError(f"protocol {self.protocol.name!r} takes dense clips; sampling is {sampling!r}")
        self.records = list(split.records)
        self.class_names = list(split.class_names)
        self.num_frames, self.stride, self.sampling = num_frames, stride, sampling
        self.size, self.short_side = size, short_side
        self.clips, self.crops = self.protocol.clips, self.protocol.crops
        self.skip_bad, self.frame_cache = skip_bad, cache
        self.views_per_video = self.protocol.views
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.records) * self.views_per_video

    def _frames(self, video: int, clip: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != (video, clip):
            record = self.records[video]
            indices = self.protocol.clip_indices(video_length(record), self.num_frames, self.stride, self.sampling,
                                                 clip)
            self._cache = ((video, clip), read_frames(record, indices, self.frame_cache))
        return self._cache[1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int] | None:
        video, view = divmod(index, self.views_per_video)
        clip, crop = divmod(view, self.crops)
        record = self.records[video]
        try:
            frames = self._frames(video, clip)
        except (MediaError, FileNotFoundError) as e:
            if not self.skip_bad:
                raise
            _warn_once(record.path, e)
            return None
        clip_tensor = view_transform(frames, self.size, self.protocol, self.short_side, crop)
        return clip_tensor, record.label, video, view


def collate_skip(batch: list) -> ClipBatch:
    """Collate :class:`ClipDataset` items after dropping ``None`` (unreadable media under ``skip_bad``) into a
    :class:`~cpnet.batch.ClipBatch` that counts them. An all-skipped batch gives empty tensors."""
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if kept:
        return ClipBatch(*default_collate(kept), skipped)
    return ClipBatch(torch.empty(0), *(torch.empty(0, dtype=torch.long) for _ in range(2)), skipped)


def collate_views(batch: list) -> ViewBatch:
    """Collate :class:`ViewDataset` items like :func:`collate_skip`, into a :class:`~cpnet.batch.ViewBatch`."""
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if kept:
        return ViewBatch(*default_collate(kept), skipped)
    return ViewBatch(torch.empty(0), *(torch.empty(0, dtype=torch.long) for _ in range(3)), skipped)
