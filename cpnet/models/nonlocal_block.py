"""The non-local block (embedded Gaussian), a thin module around ``cpnet.ops.attention``."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cpnet.ops.attention import embedded_gaussian_attention


class NonLocalBlock(nn.Module):
    """``x + BN(W_z · attention(θ(x), φ(x), g(x)))`` over all T·H·W positions of a clip.

    θ, φ, g are 1×1×1 convs to ``inner_channels`` (default C/2); with ``pool`` φ and g are max-pooled 1×2×2
    (ceil mode, so odd and 1×1 maps work) to cut the key count by 4, as in the non-local paper. The final BN starts
    with γ = ``init_gamma`` (default 0) and β = 0, so a fresh block is the identity and a network with NL blocks
    starts as its backbone.
    """

    def __init__(self, channels: int, inner_channels: int | None = None, pool: bool = True,
                 init_gamma: float = 0.0) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        inner = inner_channels if inner_channels is not None else max(1, channels // 2)
        if inner < 1:
            raise ValueError(f"inner_channels must be >= 1, got {inner_channels}")
        self.pool = pool
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.out = nn.Conv3d(inner, channels, 1)
        self.bn = nn.BatchNorm3d(channels)
        self.init_gamma = init_gamma
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small normal embeddings (std 0.01, as the non-local paper) and the zero-γ, zero-β output BN."""
        for conv in (self.theta, self.phi, self.g, self.out):
            if not conv.weight.is_meta:  # meta (a size check): no values to draw
                nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.bn.weight, self.init_gamma)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, T, H, W) -> (N, C, T, H, W)."""
        n, _, t, h, w = x.shape
        kv = F.max_pool3d(x, (1, 2, 2), (1, 2, 2), ceil_mode=True) if self.pool else x
        theta = self.theta(x).flatten(2)  # (N, C', T, H, W) -> (N, C', P)
        phi = self.phi(kv).flatten(2)  # (N, C', T, H', W') -> (N, C', Q)
        g = self.g(kv).flatten(2)  # (N, C', Q)
        y = embedded_gaussian_attention(theta, phi, g).reshape(n, -1, t, h, w)  # (N, C', P) -> (N, C', T, H, W)
        return x + self.bn(self.out(y))
