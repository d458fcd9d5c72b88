"""The evaluation's summary line: top-5 only where it can say something."""

from __future__ import annotations

from cpnet.app.evaluate import _summary_line

SUMMARY = {"labelled": True, "num_videos": 9, "num_views": 9, "clip_top1": 0.5, "clip_top5": 1.0, "video_top1": 0.5,
           "video_top5": 1.0, "mean_class_accuracy": 0.5}


def test_top5_is_left_out_with_five_classes_or_fewer():
    """Issue 23.7: "top5 100 %" on a 3-class set said nothing (any 5 guesses cover 3 classes)."""
    few = _summary_line(SUMMARY, 3)
    assert "top5" not in few and "video top1 50.00%" in few and "(3 classes)" in few
    many = _summary_line(SUMMARY, 27)
    assert "clip top5 100.00%" in many and "video top5 100.00%" in many
