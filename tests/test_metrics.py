"""Metrics against hand-computed values: top-k, view aggregation, confusion, per-class and subset accuracy."""

import numpy as np
import pytest
import torch

from cpnet.metrics import (
    aggregate_views,
    classification_report,
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    softmax,
    subset_accuracy,
    topk_accuracy,
    topk_correct,
)


def test_topk_correct_counts_and_caps_k():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    assert topk_correct(logits, labels, (1, 2, 5)) == [1, 2, 3]
    assert topk_correct(logits[:0], labels[:0], (1,)) == [0]


def test_topk_accuracy_matches_torch_version():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(50, 7)), rng.integers(0, 7, 50)
    for k in (1, 3, 5):
        expected = topk_correct(torch.from_numpy(scores), torch.from_numpy(labels), (k,))[0] / 50
        assert topk_accuracy(scores, labels, k) == pytest.approx(expected)
    with pytest.raises(ValueError, match="empty"):
        topk_accuracy(scores[:0], labels[:0], 1)


def test_aggregate_views_averages_softmax_per_video_once():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 4.0], [1.0, 1.0]])
    video = np.array([0, 0, 1, 1])  # two views each
    probs = aggregate_views(logits, video, 2)
    assert probs.shape == (2, 2)
    np.testing.assert_allclose(probs[0], [0.5, 0.5])  # symmetric views cancel
    np.testing.assert_allclose(probs[1], (softmax(logits[2:3])[0] + [0.5, 0.5]) / 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="without views: \\[2\\]"):
        aggregate_views(logits, video, 3)
    with pytest.raises(ValueError, match="rows of logits"):
        aggregate_views(logits, video[:3], 2)


def test_confusion_per_class_and_mean_class_accuracy():
    labels = np.array([0, 0, 0, 1, 2, 2])
    preds = np.array([0, 1, 0, 1, 0, 2])
    cm = confusion_matrix(labels, preds, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [2 / 3, 1.0, 0.5])
    assert np.isnan(acc[3])  # no sample of class 3
    assert mean_class_accuracy(cm) == pytest.approx((2 / 3 + 1 + 0.5) / 3)


def test_subset_accuracy_only_counts_the_given_classes():
    labels = np.array([0, 1, 2, 1, 2])
    preds = np.array([0, 2, 2, 1, 1])
    assert subset_accuracy(labels, preds, [1, 2]) == pytest.approx(2 / 4)
    assert np.isnan(subset_accuracy(labels, preds, [5]))


def test_classification_report_fields():
    scores = np.eye(3)[[0, 1, 2, 0]]
    report = classification_report(scores, np.array([0, 1, 2, 1]), 3)
    assert report["top1"] == 0.75 and report["top5"] == 1.0
    assert report["confusion"].sum() == 4 and report["predictions"].tolist() == [0, 1, 2, 0]
