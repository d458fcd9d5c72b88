"""TensorFlow-1 conventions that the authors' released models were trained with, as plain tensor functions:
``'SAME'`` padding and the legacy bilinear resize (``tf.image.resize_images``, TF1's default
``align_corners=False, half_pixel_centers=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pad_same", "resize_bilinear_tf1", "same_padding"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``'SAME'`` padding of one dimension: (before, after) so that the output has ceil(size / stride)
    positions; an odd total puts the extra row at the end (bottom / right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0) -> torch.Tensor:
    """Pad the trailing ``len(kernel)`` dimensions of ``x`` as TF ``'SAME'`` does (``value``: 0 for convs, -inf for
    max-pools); x (N, C, *spatial) → (N, C, *padded)."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[-len(kernel):], kernel, stride))):
        pads += same_padding(int(size), k, s)  # F.pad lists the last dimension first
    return F.pad(x, pads, value=value) if any(pads) else x


def _legacy_axis(x: torch.Tensor, dim: int, out_size: int) -> torch.Tensor:
    """Linear resampling of one axis: output i reads source position i·in/out (no half-pixel shift, no corner
    alignment), interpolating between floor and the next pixel, clamped at the last."""
    in_size = x.shape[dim]
    if in_size == out_size:
        return x
    src = torch.arange(out_size, dtype=torch.float32) * (in_size / out_size)  # float32 as TF computes it
    lo = src.floor().long().clamp_(max=in_size - 1)
    hi = (lo + 1).clamp_(max=in_size - 1)
    frac = (src - lo.to(torch.float32)).to(x.dtype).to(x.device)
    shape = [1] * x.dim()
    shape[dim] = out_size
    frac = frac.view(shape)
    a, b = x.index_select(dim, lo.to(x.device)), x.index_select(dim, hi.to(x.device))
    return a + (b - a) * frac


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 ``tf.image.resize_images(..., BILINEAR)`` of the last two dimensions of x (..., H, W) → (..., h, w).

    Downsampling by an integer factor r picks pixels r·i exactly (no averaging); upsampling by 2 puts each source
    pixel at 2i and the mean of two neighbours at 2i+1, the last row and column repeating the edge.
    """
    return _legacy_axis(_legacy_axis(x, x.dim() - 2, size[0]), x.dim() - 1, size[1])
