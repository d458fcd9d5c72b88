"""Multi-view evaluation: logits for every view, softmax averaged per video, and the metrics (the application
writes the report files).

Batches are :class:`cpnet.batch.ViewBatch` (``cpnet.data``'s ``collate_views`` makes them from a
``ViewDataset``). Clip-level metrics score every view on its own; video-level metrics score the mean softmax of a
video's views, each video counted once. In a process group each rank runs its share of the views and the rows are
gathered, so the metrics are those of a single process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from cpnet.batch import as_view_batch
from cpnet.device import autocast
from cpnet.engine.distributed import all_gather_rows, get_world_size
from cpnet.metrics import aggregate_views, classification_report, topk_accuracy


@dataclass
class ViewLogits:
    """Everything the model said about every view: (V, K) logits with the label, video and view of each row."""

    logits: np.ndarray
    labels: np.ndarray
    video_index: np.ndarray
    view_index: np.ndarray


@dataclass
class EvalResult:
    """Per-video scores and predictions plus the JSON-ready ``summary`` (metrics, counts, per-class accuracy)."""

    summary: dict
    video_scores: np.ndarray  # (num_videos, K) mean softmax over views
    video_labels: np.ndarray  # (num_videos,)
    confusion: np.ndarray | None  # (K, K), None without labels
    videos: np.ndarray  # (num_videos,) indices into the split's records of the evaluated videos


@torch.inference_mode()
def collect_view_logits(model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool = False,
                        amp_dtype: str = "float16") -> ViewLogits:
    """Run ``model`` over every view of ``loader``.

    In a process group each rank's loader holds a share of the views (``ShardBatchSampler``); every rank returns all
    of them, ordered by (video, view) like a single-process run. A (video, view) met twice, as a padding sampler
    such as ``DistributedSampler`` repeats some, is kept once.
    """
    model.eval()
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for batch in map(as_view_batch, loader):  # clips, labels, video, view, skipped
        if len(batch.labels) == 0:
            continue
        with autocast(device, amp, amp_dtype):
            logits = model(batch.clips.to(device)).float()
        for store, value in zip(parts, (logits, batch.labels, batch.video, batch.view)):
            store.append(torch.as_tensor(value).cpu().numpy())
    if parts[0]:
        logits, labels, video_index, view_index = (np.concatenate(p) for p in parts)
    else:  # nothing readable here; another rank may have views
        logits, labels, video_index, view_index = np.zeros((0, 0)), *(np.zeros(0) for _ in range(3))
    views = ViewLogits(logits.astype(np.float32), labels.astype(np.int64), video_index.astype(np.int64),
                       view_index.astype(np.int64))
    if get_world_size() > 1:
        views = _gathered(views)
    if len(views.labels) == 0:
        raise ValueError("evaluation got no readable view: the split is empty or all its media are bad")
    return views


def _gathered(views: ViewLogits) -> ViewLogits:
    """Every rank's rows, each (video, view) once, in (video, view) order."""
    logits, labels, video_index, view_index = all_gather_rows(
        [views.logits, views.labels, views.video_index, views.view_index])
    order = np.lexsort((view_index, video_index))  # (rows,) sorted by video, then view
    key = np.stack([video_index[order], view_index[order]], axis=1)  # (rows, 2)
    first = np.ones(len(order), dtype=bool)
    first[1:] = (key[1:] != key[:-1]).any(axis=1)  # drop repeats of the previous (video, view)
    keep = order[first]
    return ViewLogits(logits[keep], labels[keep], video_index[keep], view_index[keep])


def summarize(views: ViewLogits, num_videos: int, class_names: list[str]) -> EvalResult:
    """Clip- and video-level top-1/top-5, mean class accuracy, per-class accuracy, confusion (labelled splits).

    Videos whose every view was unreadable (``skip_bad``) are left out of the metrics and counted in
    ``skipped_videos``; ``video_scores`` and ``video_labels`` cover the evaluated videos (``videos``), in order.
    """
    num_classes = len(class_names)
    videos = np.unique(views.video_index)  # sorted indices of the videos that have at least one view
    position = np.full(num_videos, -1, dtype=np.int64)
    position[videos] = np.arange(len(videos))
    scores = aggregate_views(views.logits, position[views.video_index], len(videos))  # (videos, K)
    video_labels = np.full(len(videos), -1, dtype=np.int64)
    video_labels[position[views.video_index]] = views.labels
    summary = {"num_videos": int(len(videos)), "skipped_videos": int(num_videos - len(videos)),
               "num_views": int(len(views.labels)),
               "views_per_video": int(np.bincount(views.video_index).max())}
    if (video_labels < 0).any():  # an unlabelled (test) split: predictions only
        summary["labelled"] = False
        return EvalResult(summary, scores, video_labels, None, videos)
    report = classification_report(scores, video_labels, num_classes)
    summary |= {
        "labelled": True,
        "clip_top1": topk_accuracy(views.logits, views.labels, 1),
        "clip_top5": topk_accuracy(views.logits, views.labels, 5),
        "video_top1": report["top1"],
        "video_top5": report["top5"],
        "mean_class_accuracy": report["mean_class_accuracy"],
        "per_class_accuracy": {name: _finite(a) for name, a in zip(class_names, report["per_class_accuracy"])},
    }
    return EvalResult(summary, scores, video_labels, report["confusion"], videos)


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)
