"""The released test-time protocol reproduces the authors' test script (xingyul/cpnet test.py, fcn=6, and
GulpVideoDataset's clip placement); the spread protocols keep their placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpnet.data.transforms import view_transform
from cpnet.data.views import ViewProtocol, released_clip_indices, view_protocol


def test_released_clips_start_at_even_fractions_of_the_slack():
    # 60 frames, 12 x stride 2 = 24 needed: slack 36, 8 clips start at int(j * 36 / 7).
    starts = [int(released_clip_indices(60, 12, 2, j, 8)[0]) for j in range(8)]
    assert starts == [0, 5, 10, 15, 20, 25, 30, 36]
    np.testing.assert_array_equal(released_clip_indices(60, 12, 2, 7, 8), np.arange(36, 60, 2))
    # One clip: the middle of the slack.
    assert released_clip_indices(60, 12, 2, 0, 1)[0] == 18


def test_released_short_video_repeats_its_own_frames_cyclically():
    # 7 frames, 4 x stride 2 = 8 needed: every clip starts at 0, takes 0, 2, 4, 6 -> exactly T frames.
    np.testing.assert_array_equal(released_clip_indices(7, 4, 2, 5, 8), [0, 2, 4, 6])
    # 5 frames: takes 0, 2, 4 and repeats the clip's first frame (not the video's loop at stride).
    np.testing.assert_array_equal(released_clip_indices(5, 4, 2, 0, 8), [0, 2, 4, 0])
    np.testing.assert_array_equal(released_clip_indices(1, 3, 2, 3, 8), [0, 0, 0])


def test_released_resize_and_six_crops():
    released = view_protocol("released")
    # Jester: 100 x 176 frames -> short side 112, long side int(112 * 176 / 100 / 2) * 2 = 196 (even, floored).
    assert released.resized_size(100, 176, 112) == (112, 196)
    assert released.resized_size(176, 100, 112) == (196, 112)
    # Six crops along the long side at 0, (L - F) // 5 * i, L - F: 84 // 5 = 16.
    lefts = sorted(released.crop_box(112, 196, 112, c)[1] for c in range(6))
    assert lefts == [0, 16, 32, 48, 64, 84]
    assert {released.crop_box(112, 196, 112, c)[0] for c in range(6)} == {0}
    spread = view_protocol("kinetics").with_counts(crops=6)
    assert sorted(spread.crop_box(112, 196, 112, c)[1] for c in range(6)) == [0, 17, 34, 50, 67, 84]
    three = view_protocol("released").with_counts(crops=3)
    assert sorted(three.crop_box(112, 197, 112, c)[1] for c in range(3)) == [0, 42, 85]


def test_released_placement_needs_dense_clips():
    with pytest.raises(ValueError, match="dense"):
        view_protocol("released").clip_indices(50, 8, 2, "segment", 0)


def test_released_view_transform_does_not_antialias():
    # A one-pixel checkerboard shrunk by half: plain bilinear samples between two pixels (mean grey in every
    # pixel); antialiasing also averages, so compare against interpolate without antialias directly.
    frames = torch.zeros(1, 40, 60, 3, dtype=torch.uint8)
    frames[:, ::2, ::2] = 255
    frames[:, 1::2, 1::2] = 255
    out = view_transform(frames, 20, view_protocol("released"), None, 0)  # (3, 1, 20, 20)
    ref = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=(20, 30), mode="bilinear",
                                          align_corners=False, antialias=False)[:, :, :, :20]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    expected = (ref.permute(1, 0, 2, 3).round() / 255 - mean) / std
    torch.testing.assert_close(out, expected, atol=1.5 / 255 / 0.224, rtol=0)


def test_protocol_validation():
    with pytest.raises(ValueError, match="crops"):
        ViewProtocol("x", clips=2, crops=4)
    with pytest.raises(ValueError, match="placement"):
        ViewProtocol("x", clips=2, crops=3, placement="random")
    with pytest.raises(ValueError, match="clip must be"):
        view_protocol("kinetics").clip_indices(50, 8, 2, "dense", 10)
