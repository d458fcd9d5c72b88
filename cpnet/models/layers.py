"""Layers with TensorFlow's ``'SAME'`` padding, for models converted from TF checkpoints (the released CPNets).

With an odd kernel at stride 1 ``'SAME'`` is PyTorch's symmetric padding; at stride 2 on an even size TF pads one
row and column fewer at the top and left, so a symmetric padding would read every window one pixel off.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cpnet.ops.resample import pad_same, same_padding


class SameConv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state-dict names) padding its input as TF ``'SAME'``; ``padding`` must be
    left at 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [same_padding(int(n), k, s) for n, k, s in zip(x.shape[2:], self.kernel_size, self.stride)]
        if all(before == after for before, after in pads):  # symmetric: let the conv pad, no copy
            return F.conv3d(x, self.weight, self.bias, self.stride, [p[0] for p in pads], self.dilation, self.groups)
        x = pad_same(x, self.kernel_size, self.stride)
        return F.conv3d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SameMaxPool3d(nn.Module):
    """Max-pool with TF ``'SAME'`` padding (padded positions never win)."""

    def __init__(self, kernel_size: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel_size, self.stride, float("-inf")), self.kernel_size, self.stride)
