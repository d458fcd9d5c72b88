"""TF-1 conventions as tensor functions: 'SAME' padding and the legacy bilinear resize, against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cpnet.ops.resample import pad_same, resize_bilinear_tf1, same_padding


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (112, 3, 2, (0, 1)), (224, 7, 2, (2, 3)), (56, 1, 2, (0, 0)), (8, 3, 1, (1, 1)), (7, 3, 2, (1, 1)),
    (112, 7, 1, (3, 3)), (5, 1, 1, (0, 0)),
])
def test_same_padding_gives_ceil_size_outputs(size, kernel, stride, expected):
    before, after = same_padding(size, kernel, stride)
    assert (before, after) == expected
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)


def test_pad_same_pads_the_trailing_dimensions_last_first():
    x = torch.ones(1, 1, 2, 4, 6)
    y = pad_same(x, (1, 3, 3), (1, 2, 2), value=-1.0)
    assert y.shape == (1, 1, 2, 5, 7)  # H: (0, 1), W: (0, 1)
    assert (y[..., :4, :6] == 1).all() and (y[..., 4, :] == -1).all() and (y[..., :, 6] == -1).all()


def _reference(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False), pixel by pixel."""
    in_h, in_w = x.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = i * in_h / out_h
        y0 = min(int(math.floor(sy)), in_h - 1)
        y1, fy = min(y0 + 1, in_h - 1), sy - y0
        for j in range(out_w):
            sx = j * in_w / out_w
            x0 = min(int(math.floor(sx)), in_w - 1)
            x1, fx = min(x0 + 1, in_w - 1), sx - x0
            top = x[y0, x0] + (x[y0, x1] - x[y0, x0]) * fx
            bottom = x[y1, x0] + (x[y1, x1] - x[y1, x0]) * fx
            out[i, j] = top + (bottom - top) * fy
    return out


@pytest.mark.parametrize("in_size, out_size", [((28, 28), (14, 14)), ((14, 14), (28, 28)), ((7, 9), (3, 4)),
                                               ((3, 4), (7, 9)), ((5, 5), (5, 5))])
def test_resize_matches_the_definition(in_size, out_size):
    x = torch.randn(2, 3, *in_size, dtype=torch.float64)
    y = resize_bilinear_tf1(x, out_size)
    assert y.shape == (2, 3, *out_size)
    np.testing.assert_allclose(y[1, 2].numpy(), _reference(x[1, 2].numpy(), *out_size), rtol=0, atol=1e-6)


def test_resize_by_two_picks_and_averages():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    torch.testing.assert_close(resize_bilinear_tf1(x, (1, 2)), torch.tensor([[1.0, 3.0]]))  # pixels 0 and 2
    up = resize_bilinear_tf1(x, (1, 8))  # sources at 2i, means between, the edge repeated
    torch.testing.assert_close(up, torch.tensor([[1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.0]]))
    x = torch.randn(1, 2, 3, 6, 6, requires_grad=True)
    resize_bilinear_tf1(x, (12, 12)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
