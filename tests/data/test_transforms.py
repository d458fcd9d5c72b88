"""Clip transforms: shapes, per-clip parameters, flip label swapping by class name, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpnet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipAug,
    color_jitter,
    draw_clip_aug,
    eval_transform,
    flip_label_map,
    train_transform,
)


def _clip(t=4, h=40, w=60):
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, generator=g)
    return frame.repeat(t, 1, 1, 1)  # identical frames: any per-frame difference would come from the transform


def test_train_transform_applies_one_draw_to_every_frame():
    clip = _clip()
    rng = np.random.default_rng(3)
    for _ in range(5):
        aug = draw_clip_aug(rng, 40, 60)
        out = train_transform(clip, aug, 16)
        assert out.shape == (3, 4, 16, 16) and out.dtype == torch.float32
        for t in range(1, 4):
            torch.testing.assert_close(out[:, t], out[:, 0])


def test_random_resized_crop_ranges():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(300):
        top, left, h, w = draw_clip_aug(rng, 100, 176).box
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 176
        areas.append(h * w / 100**2)
        ratios.append(w / h)
    assert 0.48 <= min(areas) and max(areas) <= 1.02 and max(areas) - min(areas) > 0.4
    assert 0.88 <= min(ratios) and max(ratios) <= 1.12


def test_flip_mirrors_frames_and_jitter_is_bounded():
    clip = _clip(2, 16, 16)
    plain = train_transform(clip, ClipAug(box=(0, 0, 16, 16)), 16)
    flipped = train_transform(clip, ClipAug(box=(0, 0, 16, 16), flip=True), 16)
    torch.testing.assert_close(flipped, plain.flip(-1))
    x = torch.rand(2, 8, 8, 3)
    y = color_jitter(x, 1.25, 0.75, 1.25, 0.1)
    assert y.min() >= 0 and y.max() <= 1 and not torch.allclose(x, y)
    torch.testing.assert_close(color_jitter(x, 1.0, 1.0, 1.0, 0.0), x)


def test_color_jitter_steps_match_their_definitions():
    x = torch.rand(2, 6, 6, 3) * 0.5 + 0.25  # away from the clamp
    luma = torch.tensor([0.299, 0.587, 0.114])
    torch.testing.assert_close(color_jitter(x, 1.2, 1, 1, 0), x * 1.2)
    mean = (x @ luma).mean(dim=(1, 2)).view(2, 1, 1, 1)
    torch.testing.assert_close(color_jitter(x, 1, 0.8, 1, 0), 0.8 * x + 0.2 * mean)
    gray = (x @ luma)[..., None]
    torch.testing.assert_close(color_jitter(x, 1, 1, 0.0, 0), gray.expand_as(x))
    hued = color_jitter(x, 1, 1, 1, 0.1)
    torch.testing.assert_close(hued @ luma, x @ luma, atol=1e-5, rtol=0)  # hue keeps luminance
    assert not torch.allclose(hued, x, atol=1e-2)
    torch.testing.assert_close(color_jitter(x, 1, 1, 1, 1.0), x, atol=1e-5, rtol=0)  # a full turn


def test_normalisation_and_eval_crops():
    grey = torch.full((2, 30, 50, 3), 128, dtype=torch.uint8)
    out = eval_transform(grey, 20)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), expected)
    ramp = torch.arange(50, dtype=torch.uint8).mul(5).view(1, 1, 50, 1).expand(2, 30, 50, 3).contiguous()
    crops = [eval_transform(ramp, 30, crops=6, crop_index=i)[0].mean().item() for i in range(6)]
    assert crops == sorted(crops) and crops[0] < crops[-1], "6 crops move along the long side"
    assert eval_transform(ramp, 20, short_side=24).shape == (3, 2, 20, 20)


def test_flip_swaps_exactly_the_declared_pairs_by_name():
    names = ["Swiping Right", "Thumb Up", "Swiping Left", "Turning Hand Clockwise", "Turning Hand Counterclockwise"]
    pairs = [("Swiping Left", "Swiping Right"), ("Turning Hand Counterclockwise", "Turning Hand Clockwise")]
    assert flip_label_map(names, pairs) == {0: 2, 2: 0, 3: 4, 4: 3}
    with pytest.raises(ValueError, match="Sliding"):
        flip_label_map(names, [("Sliding Two Fingers Left", "Swiping Left")])


def test_rejects_non_uint8_frames():
    with pytest.raises(ValueError, match="uint8"):
        eval_transform(torch.zeros(2, 8, 8, 3), 8)


@pytest.mark.parametrize("shape, crops, short_side", [((3, 240, 320), 1, None), ((2, 256, 340), 3, 128),
                                                      ((2, 300, 180), 6, None), ((1, 100, 1000), 3, None)])
def test_eval_crops_are_cut_in_source_pixels_and_only_they_are_resized(shape, crops, short_side, monkeypatch):
    from cpnet.data import transforms

    t, h, w = shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    smooth = (128 + 60 * torch.sin(yy / 9) * torch.cos(xx / 13)).round().to(torch.uint8)  # ~7 grey levels per px
    frames = smooth.view(1, h, w, 1).expand(t, h, w, 3).contiguous()
    resized = []
    real_resize = transforms.resize
    monkeypatch.setattr(transforms, "resize", lambda x, *a, **k: resized.append(tuple(x.shape[1:3])) or
                        real_resize(x, *a, **k))
    size = 64
    protocol = transforms.ViewProtocol("eval", clips=1, crops=crops, resize="config")
    short = short_side or size
    height, width = protocol.resized_size(h, w, short)
    for crop in range(crops):
        out = transforms.view_transform(frames, size, protocol, short_side, crop)
        top, left = protocol.crop_box(height, width, size, crop)
        whole = real_resize(frames, height, width)[:, top : top + size, left : left + size]  # resize, then crop
        expected = transforms.normalize(whole.float().div(255))
        # Within half a source pixel of the whole-frame resize: a few grey levels on this smooth image.
        torch.testing.assert_close(out, expected, atol=10 / 255 / 0.224, rtol=0)
        assert (out - expected).abs().mean() < 1.5 / 255 / 0.224
    side = round(size * min(h, w) / short)  # the crop's side in source pixels
    assert all(max(abs(rh - side), abs(rw - side)) <= 1 for rh, rw in resized), (resized, side)  # never the frame
