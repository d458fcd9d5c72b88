"""Classification metrics on numpy arrays: top-k, per-class and mean class accuracy, confusion, view aggregation.

Evaluation works on whole arrays collected over a split (logits per view), so these are plain functions of arrays;
the training loop uses :func:`topk_correct` on tensors for its running accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of rows of ``logits`` (N, K) whose label (N,) is among the top-k scores, for each k (capped at K)."""
    if logits.shape[0] == 0:
        return [0 for _ in ks]
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top == labels[:, None]  # (N, kmax)
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) scores, computed stably in float64."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of ``scores`` (N, K) whose label is among the k highest scores."""
    if len(labels) == 0:
        raise ValueError("top-k accuracy of an empty set is undefined")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((top == labels[:, None]).any(axis=1).mean())


def aggregate_views(logits: np.ndarray, video_index: np.ndarray, num_videos: int) -> np.ndarray:
    """Average the softmax of every view of each video: (V, K) view logits -> (num_videos, K) probabilities.

    Each video is counted once however many views it has; a video without any view is an error, because
    silently dropping it would inflate the accuracy.
    """
    if logits.shape[0] != video_index.shape[0]:
        raise ValueError(f"{logits.shape[0]} rows of logits but {video_index.shape[0]} video indices")
    counts = np.bincount(video_index, minlength=num_videos)
    if counts.shape[0] > num_videos or (counts == 0).any():
        missing = np.flatnonzero(counts[:num_videos] == 0)[:5].tolist()
        raise ValueError(f"every video needs at least one view and an index < {num_videos}; without views: {missing}")
    probs = np.zeros((num_videos, logits.shape[1]), dtype=np.float64)
    np.add.at(probs, video_index, softmax(logits))  # (num_videos, K) sums over views
    return probs / counts[:, None]


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)  # (K, K)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for classes with no sample."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


def mean_class_accuracy(confusion: np.ndarray) -> float:
    """Mean of the per-class accuracies over the classes that have samples."""
    acc = per_class_accuracy(confusion)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")


def subset_accuracy(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[int]) -> float:
    """Top-1 accuracy over the samples whose true class is in ``classes`` (NaN when there are none).

    Used for the time-reversed pairs of the synthetic set: a model blind to frame order cannot tell the two
    classes of a pair apart, so its accuracy on their samples is at most 50 % in expectation.
    """
    mask = np.isin(labels, np.asarray(list(classes)))
    return float((labels[mask] == predictions[mask]).mean()) if mask.any() else float("nan")


def classification_report(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top1, top5, mean class accuracy, per-class accuracy and the confusion matrix of (N, K) scores."""
    predictions = scores.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, num_classes)
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(confusion),
        "per_class_accuracy": per_class_accuracy(confusion),
        "confusion": confusion,
        "predictions": predictions,
    }
