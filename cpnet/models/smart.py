"""ARTNet's SMART block (Wang et al., "Appearance-and-Relation Networks for Video Classification", CVPR 2018), as
its released ``models/112_artnet_resnet_18_deploy.prototxt`` (GitHub ``wanglimin/ARTNet``) builds it.

A ``SMARTBlock`` replaces one t×k×k convolution to C channels (same input, stride and output width):

- *appearance*: a 1×k×k conv to C + BN (per frame: no temporal extent, no temporal stride);
- *relation*: a t×k×k conv to C + BN, squared element-wise, then a **fixed** cross-channel pooling of channel pairs
  (out_i = 0.5·x_2i + 0.5·x_2i+1, to C/2; the prototxt's 1×1×1 conv with ``group: C/2``, constant weights 0.5 and
  ``lr_mult: 0``) + BN;
- the two concatenated (1.5C), ReLU, and fused by a 1×1×1 conv back to C.

The BN (+ReLU) that follows the replaced conv in our ResNet is the fusion's BN (the prototxt's ``redu1_bn`` in the
stem; in a residual block the prototxt adds the fusion to the shortcut and normalises the sum, a pre-activation-like
layout we do not copy: our blocks keep the torchvision order conv → BN → add → ReLU for every model). The network
around the blocks is likewise our C3D-R18 (SPEC §2, the supplement's baseline): no temporal stride and 1×1×1
projection shortcuts, where the prototxt's ARTNet-R18 strides time by 2 in the stem and at res3–res5 and projects
with 3×3×3 convs (which would add 26·(64·128 + 128·256 + 256·512) = 4,472,832 weights, 4.27 in the units below).

The fixed pooling is a non-persistent buffer, not a parameter: it gets no gradient, no optimiser state, no entry in
a checkpoint, and parameter counts leave it out, as the paper's convention counts what is learned.

Size. In the supplement's convention (conv weights + fc, in 2^20) the block has k²·C_in·C (appearance)
+ t·k²·C_in·C (relation) + 1.5C·C (fusion) weights; for C_in = C and t = k = 3 that is 37.5·C² against 27·C² for the
3×3×3 conv it replaces. ``artnet_r18`` (SMART in the stem and as the second conv of every block of res2–res4, as in
the prototxt) therefore counts **33.55**, not the supplement's 31.81: the 3×3×3 convs it replaces in C3D-R18 weigh
27·(2·64² + 2·128² + 2·256²) = 4,644,864 and the SMART blocks 37.5·(…) = 6,451,200 (+1.72); the SMART stem adds
1×7×7 appearance 9,408 + 96·64 fusion 6,144 to the 3×7×7 conv's 28,224 (+0.01). The supplement prints 31.81 for
ARTNet and C3D alike; no SMART network of this shape reaches it (the faithful block is 39 % larger than a 3×3×3
conv), so we report the count the block gives (SPEC §2). Counting the fixed pooling's constants too would add C per
block (960 in all, 0.0009).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def pair_pool(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Cross-channel pooling of consecutive channel pairs: x (N, C, T, H, W) → (N, C/2, T, H, W),
    out_i = weight[i, 0]·x_2i + weight[i, 1]·x_2i+1 (a 1×1×1 conv with C/2 groups; weight (C/2, 2, 1, 1, 1))."""
    return F.conv3d(x, weight, groups=weight.shape[0])


class ChannelPairPool(nn.Module):
    """ARTNet's fixed cross-channel pooling: the mean of each channel pair (weights 0.5, never learned)."""

    weight: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"the cross-channel pooling needs an even number of channels >= 2, got {channels}")
        # A buffer, not a Parameter: no gradient, no optimiser state, not counted. Non-persistent, so checkpoints
        # and ImageNet state-dict reports hold only what is learned.
        self.register_buffer("weight", torch.full((channels // 2, 2, 1, 1, 1), 0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, T, H, W) → (N, C/2, T, H, W)."""
        return pair_pool(x, self.weight)


class SMARTBlock(nn.Module):
    """Appearance (1×k×k conv + BN) ‖ relation (t×k×k conv + BN, square, fixed pair pooling + BN), concatenated,
    ReLU, fused by a 1×1×1 conv to ``out_channels``; the caller's following BN (+ReLU) completes the fusion.

    Widths: appearance C, relation C, pooled C/2, concatenation 1.5C, output C (C = ``out_channels``, even).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int] = (3, 3, 3),
                 stride: tuple[int, int, int] = (1, 1, 1), padding: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        t, kh, kw = kernel_size
        if padding is None:
            padding = (t // 2, kh // 2, kw // 2)
        if out_channels < 2 or out_channels % 2:
            raise ValueError(f"a SMART block pools channel pairs: out_channels must be even and >= 2, got "
                             f"{out_channels}")
        c, pooled = out_channels, out_channels // 2
        # The appearance conv sees one frame at a time: no temporal extent, no temporal stride.
        self.appearance = nn.Conv3d(in_channels, c, (1, kh, kw), (1, stride[1], stride[2]),
                                    (0, padding[1], padding[2]), bias=False)
        self.appearance_bn = nn.BatchNorm3d(c)
        self.relation = nn.Conv3d(in_channels, c, kernel_size, stride, padding, bias=False)
        self.relation_bn = nn.BatchNorm3d(c)
        self.pool = ChannelPairPool(c)
        self.pool_bn = nn.BatchNorm3d(pooled)
        self.fusion = nn.Conv3d(c + pooled, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C_in, T, H, W) -> (N, C, T', H', W'), before the fusion BN."""
        appearance = self.appearance_bn(self.appearance(x))  # (N, C, T', H', W')
        # Square pooling (ARTNet's energy model): squared responses of a spatio-temporal filter bank, summed over
        # channel pairs, respond to multiplicative relations between frames independently of the input's sign.
        energy = self.relation_bn(self.relation(x)).square()  # (N, C, T', H', W')
        relation = self.pool_bn(self.pool(energy))  # (N, C/2, T', H', W')
        both = F.relu(torch.cat([appearance, relation], dim=1))  # (N, 1.5C, T', H', W')
        return self.fusion(both)  # (N, C, T', H', W')
