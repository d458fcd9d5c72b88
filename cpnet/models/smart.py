"""ARTNet's SMART block (Wang et al., CVPR 2018): appearance and relation branches fused by a 1×1×1 conv.

A ``SMARTBlock`` is a drop-in replacement for one t×k×k convolution: same input/output channels, stride and
padding. The BN (+ReLU) that follows the replaced convolution in the ResNet acts as the fusion's BN (+ReLU), so the
block ends at the fusion conv.

Widths (our choice, documented in SPEC §2's spirit that ARTNet matches C3D's parameter count): the appearance
branch and the pooled relation branch each give C_out/2 channels (concatenated: C_out), and the relation conv's
width R is solved so the block has as many weights as the 3D conv it replaces:
    A·C_in·k² + R·C_in·t·k² + R·P + (A + P)·C_out = C_out·C_in·t·k²   (A = P = C_out/2).
For C_in = C_out = C with t = k = 3 this gives R = 25C/32 (50, 100, 200 for 64, 128, 256 channels), and
ARTNet-R18 then counts 31.81 in the paper's convention, the C3D-R18 figure.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def matched_relation_channels(in_channels: int, out_channels: int, kernel_size: tuple[int, int, int],
                              appearance_channels: int, pooled_channels: int) -> int:
    """Relation-conv width that makes a SMART block's weight count equal the t×k×k conv's (nearest integer)."""
    t, kh, kw = kernel_size
    conv3d = out_channels * in_channels * t * kh * kw
    fixed = appearance_channels * in_channels * kh * kw + (appearance_channels + pooled_channels) * out_channels
    per_relation_channel = in_channels * t * kh * kw + pooled_channels
    return max(1, round((conv3d - fixed) / per_relation_channel))


class SMARTBlock(nn.Module):
    """Appearance (1×k×k conv, BN, ReLU) ‖ relation (t×k×k conv, square, 1×1×1 cross-channel pool, BN, ReLU),
    concatenated and fused by a 1×1×1 conv; the caller's following BN (+ReLU) completes the fusion."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int] = (3, 3, 3),
                 stride: tuple[int, int, int] = (1, 1, 1), padding: tuple[int, int, int] | None = None,
                 appearance_channels: int | None = None, relation_channels: int | None = None,
                 pooled_channels: int | None = None) -> None:
        super().__init__()
        t, kh, kw = kernel_size
        if padding is None:
            padding = (t // 2, kh // 2, kw // 2)
        a = appearance_channels if appearance_channels is not None else max(1, out_channels // 2)
        p = pooled_channels if pooled_channels is not None else max(1, out_channels - a)
        r = relation_channels if relation_channels is not None else matched_relation_channels(
            in_channels, out_channels, kernel_size, a, p)
        if min(a, p, r) < 1:
            raise ValueError(f"SMART widths must be >= 1, got appearance={a}, relation={r}, pooled={p}")
        # The appearance conv sees one frame at a time: no temporal extent, no temporal stride.
        self.appearance = nn.Sequential(
            nn.Conv3d(in_channels, a, (1, kh, kw), (1, stride[1], stride[2]), (0, padding[1], padding[2]),
                      bias=False),
            nn.BatchNorm3d(a),
            nn.ReLU(inplace=True),
        )
        self.relation = nn.Conv3d(in_channels, r, kernel_size, stride, padding, bias=False)
        self.cross_pool = nn.Sequential(nn.Conv3d(r, p, 1, bias=False), nn.BatchNorm3d(p), nn.ReLU(inplace=True))
        self.fusion = nn.Conv3d(a + p, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C_in, T, H, W) -> (N, C_out, T', H', W'), before the fusion BN."""
        appearance = self.appearance(x)
        # Square pooling: the squared responses of a spatio-temporal filter bank, linearly pooled across channels,
        # model multiplicative relations between frames (ARTNet's energy-model view).
        relation = self.cross_pool(self.relation(x).square())
        return self.fusion(torch.cat([appearance, relation], dim=1))  # (N, A + P, T', H', W') -> (N, C_out, ...)
