"""Clip sampling and test-time views."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpnet.data.sampling import dense_indices, sample_indices, segment_indices
from cpnet.data.views import crop_boxes, view_positions, view_protocol


def test_dense_centre_random_and_stride():
    np.testing.assert_array_equal(dense_indices(20, 4, 2), [6, 8, 10, 12])  # span 7, slack 13 -> offset 6
    np.testing.assert_array_equal(dense_indices(20, 4, 2, position=0.0), [0, 2, 4, 6])
    np.testing.assert_array_equal(dense_indices(20, 4, 2, position=1.0), [13, 15, 17, 19])
    rng = np.random.default_rng(0)
    offsets = {int(dense_indices(20, 4, 2, rng=rng)[0]) for _ in range(400)}
    assert offsets == set(range(14)), "training offsets cover every valid start"


def test_short_video_loops_from_its_start():
    np.testing.assert_array_equal(dense_indices(5, 8, 1), [0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(dense_indices(5, 4, 2), [0, 2, 4, 1])
    np.testing.assert_array_equal(dense_indices(1, 3, 1, rng=np.random.default_rng(0)), [0, 0, 0])


def test_segments_take_one_frame_per_segment():
    np.testing.assert_array_equal(segment_indices(16, 4), [2, 6, 10, 14])
    rng = np.random.default_rng(1)
    for _ in range(50):
        idx = segment_indices(16, 4, rng=rng)
        assert all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(idx))
    np.testing.assert_array_equal(segment_indices(3, 6), [0, 0, 1, 1, 2, 2])  # fewer frames than segments
    assert sample_indices(16, 4, 99, "segment").tolist() == [2, 6, 10, 14]  # stride unused


def test_invalid_sampling_arguments():
    with pytest.raises(ValueError, match="sampling"):
        sample_indices(10, 4, 1, "uniform")
    with pytest.raises(ValueError, match="0 frames"):
        dense_indices(0, 4)


def test_views_and_crops():
    released, kinetics, single = (view_protocol(n) for n in ("released", "kinetics", "single"))
    assert (released.clips, released.crops, released.resize) == (8, 6, "crop")
    assert (kinetics.clips, kinetics.crops, kinetics.resize) == (10, 3, "crop")
    assert (single.clips, single.crops) == (1, 1)
    with pytest.raises(ValueError, match="released"):
        view_protocol("tencrop")
    np.testing.assert_allclose(view_positions(4), [0.125, 0.375, 0.625, 0.875])
    starts = [dense_indices(100, 8, 2, position=p)[0] for p in view_positions(8)]
    assert len(set(starts)) == 8 and starts == sorted(starts)
    boxes = crop_boxes(112, 200, 112, 6)
    assert boxes[0] == (0, 0) and boxes[-1] == (0, 88) and len(set(boxes)) == 6  # along the long side, end to end
    assert crop_boxes(200, 112, 112, 3) == [(0, 0), (44, 0), (88, 0)]
    assert crop_boxes(128, 160, 112, 1) == [(8, 24)]
    with pytest.raises(ValueError, match="crops"):
        crop_boxes(112, 112, 112, 5)


@given(st.integers(1, 300), st.integers(1, 32), st.integers(1, 8), st.integers(0, 2**31), st.floats(0, 1))
def test_dense_and_segment_indices_are_always_valid(n, t, stride, seed, position):
    span = (t - 1) * stride + 1
    for idx in (
        dense_indices(n, t, stride, position=position),
        dense_indices(n, t, stride, rng=np.random.default_rng(seed)),
    ):
        assert len(idx) == t and idx.min() >= 0 and idx.max() < n
        if n >= span:
            assert np.all(np.diff(idx) == stride)
    for idx in (segment_indices(n, t, position=position), segment_indices(n, t, rng=np.random.default_rng(seed))):
        assert len(idx) == t and idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) >= 0)
