"""The batches that flow from the data layer to the engine, as named fields instead of positions.

``cpnet.data`` makes them (``collate_skip`` / ``collate_views``); ``cpnet.engine`` reads them by name. A loader of
plain ``(clips, labels)`` pairs (a ``TensorDataset``, say) works too: :func:`as_batch` names the fields of a plain
sequence in :class:`ClipBatch`'s order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class ClipBatch(NamedTuple):
    """One clip per item (training and centre-view validation)."""

    clips: torch.Tensor  # (N, 3, T, H, W)
    labels: torch.Tensor  # (N,) int64 class indices (-1: unlabelled)
    index: torch.Tensor  # (N,) the dataset item of each clip
    skipped: int = 0  # items of this batch dropped as unreadable media (skip_bad)


class ViewBatch(NamedTuple):
    """Test-time views: several per video, each tagged with its video and view."""

    clips: torch.Tensor  # (N, 3, T, H, W)
    labels: torch.Tensor  # (N,) int64
    video: torch.Tensor  # (N,) index of the video in its split
    view: torch.Tensor  # (N,) clip_index * crops + crop_index
    skipped: int = 0  # views dropped as unreadable media (skip_bad)


def as_batch(batch: ClipBatch | ViewBatch | Sequence) -> ClipBatch | ViewBatch:
    """``batch`` itself when typed; a plain sequence in :class:`ClipBatch`'s field order — ``(clips, labels)``,
    ``(clips, labels, index)`` or ``(clips, labels, index, skipped)`` — as a :class:`ClipBatch`."""
    if isinstance(batch, (ClipBatch, ViewBatch)):
        return batch
    if not isinstance(batch, Sequence) or not 2 <= len(batch) <= 4:
        raise TypeError("a batch is a ClipBatch, a ViewBatch or a (clips, labels[, index[, skipped]]) sequence; got "
                        f"{type(batch).__name__}{f' of {len(batch)} fields' if isinstance(batch, Sequence) else ''}")
    clips, labels = batch[0], torch.as_tensor(batch[1])
    index = torch.as_tensor(batch[2]) if len(batch) > 2 else torch.arange(len(labels))
    return ClipBatch(clips, labels, index, int(batch[3]) if len(batch) > 3 else 0)


def as_view_batch(batch: ViewBatch | Sequence) -> ViewBatch:
    """``batch`` itself when a :class:`ViewBatch`; a plain ``(clips, labels, video, view[, skipped])`` sequence as
    one."""
    if isinstance(batch, ViewBatch):
        return batch
    if not isinstance(batch, Sequence) or not 4 <= len(batch) <= 5:
        raise TypeError("a view batch is a ViewBatch or a (clips, labels, video, view[, skipped]) sequence; got "
                        f"{type(batch).__name__}{f' of {len(batch)} fields' if isinstance(batch, Sequence) else ''}")
    fields = [batch[0], *(torch.as_tensor(f) for f in batch[1:4])]
    return ViewBatch(*fields, int(batch[4]) if len(batch) > 4 else 0)
