"""The CP (correspondence proposal) module, SPEC §1.

A residual block computes ``relu(s + cp(s))`` where ``s`` is its pre-ReLU sum. For every point of the clip the
module proposes k correspondences in other frames (feature-space kNN), embeds each (point, proposal) pair with
their space-time displacement through a shared MLP, max-pools over the k pairs and maps back to C channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from cpnet.ops.knn import cross_frame_knn
from cpnet.ops.pair_mlp import fold_batch_norm, folded_pair_mlp, fused_pair_mlp, point_projections
from cpnet.ops.resample import resize_bilinear_tf1
from cpnet.ops.video import gather_points, pair_features, point_coords, to_points

__all__ = ["CPModule"]


class CPModule(nn.Module):
    """Correspondence proposal module.

    Args:
        channels: C, channels of the input ``s`` (N, C, T, H, W).
        k: proposals per point, searched in other frames only.
        mlp: widths of the shared pair MLP (each layer: linear + BN over all pairs + ReLU).
        bottleneck: optional C' — 1×1×1 conv + BN (no ReLU) to C' channels before the search.
        shrink: optional r — search on every r-th pixel of each frame (``x[..., ::r, ::r]``); the output is
            upsampled back by repetition (each output pixel takes its sampled pixel's value).
        resample: with ``shrink``, "subsample" (above) or "bilinear_tf1": TF1's legacy bilinear resize to
            (H // r, W // r) before the search and back to (H, W) after the output BN, as the authors' released
            models do (:func:`~cpnet.ops.resample.resize_bilinear_tf1`).
        init_gamma: initial γ of the output BatchNorm. 0 (the paper's choice, and the presets') makes a fresh
            module output exactly zero, so a CPNet starts as its C2D backbone; training from scratch on a short
            budget learns much faster with 1 (SPEC §1.7).
        block_size: query rows per block of the kNN (memory/speed trade-off; results do not depend on it).
        recompute: do not store the (N·P·k)-row pair activations for backward. An MLP of one or two layers (the
            presets') runs through a fused function that keeps only per-point tensors and recomputes one chunk of
            pairs at a time in backward (:func:`~cpnet.ops.pair_mlp.fused_pair_mlp`); a deeper one is recomputed
            whole in backward through ``torch.utils.checkpoint``. Same results, less memory.
        chunk_size: points per chunk of the fused pair MLP (default: about 2M elements per pair tensor); a
            memory/speed trade-off, results equal up to rounding.
        coords: "normalized" — displacements in (t/T, h/H, w/W), as SPEC §1.3 defines them (the presets) — or
            "grid" — in grid steps (t, h, w). Both carry the same information, but a one-frame step is 1/T in
            the first and 1 in the second, and the gradient reaching W_Δ scales with it: trained from scratch on
            a short budget, grid units learn the direction of motion much faster (the synthetic demo uses them).
        decomposed: apply the first MLP layer as W_Δ·Δ + W_p·x_p + W_q·x_q with per-point projections gathered
            (default) instead of multiplying the concatenated (N·P·k, 2C+3) pair features. Same results.
    """

    def __init__(
        self,
        channels: int,
        k: int,
        mlp: Sequence[int],
        bottleneck: int | None = None,
        shrink: int | None = None,
        init_gamma: float = 0.0,
        block_size: int | None = None,
        recompute: bool = False,
        chunk_size: int | None = None,
        coords: str = "normalized",
        decomposed: bool = True,
        resample: str = "subsample",
    ) -> None:
        super().__init__()
        mlp = [int(m) for m in mlp]
        if not mlp or min(mlp) < 1:
            raise ValueError(f"mlp must be a non-empty list of positive widths, got {mlp}")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got k={k}")
        if coords not in ("normalized", "grid"):
            raise ValueError(f"coords must be 'normalized' or 'grid', got {coords!r}")
        if resample not in ("subsample", "bilinear_tf1"):
            raise ValueError(f"resample must be 'subsample' or 'bilinear_tf1', got {resample!r}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got chunk_size={chunk_size}")
        if shrink is not None and int(shrink) < 1:
            raise ValueError(f"shrink must be a positive integer, got shrink={shrink}")
        self.channels, self.k, self.mlp = channels, int(k), mlp
        self.shrink, self.block_size = shrink, block_size
        self.init_gamma, self.recompute, self.decomposed = float(init_gamma), recompute, decomposed
        self.coords, self.chunk_size, self.resample = coords, chunk_size, resample
        search_channels = bottleneck or channels
        self.reduce = (
            nn.Sequential(nn.Conv3d(channels, bottleneck, 1), nn.BatchNorm3d(bottleneck)) if bottleneck else None
        )
        widths = [2 * search_channels + 3, *mlp]
        # layers[0].weight columns follow the pair vector [Δt, Δh, Δw, x_p, x_q] (SPEC §1.5).
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(m) for m in mlp)
        self.out_conv = nn.Conv3d(mlp[-1], channels, 1)
        self.out_bn = nn.BatchNorm3d(channels)
        self.reset_output()

    def reset_output(self) -> None:
        """Set the output BN to γ = init_gamma, β = 0 (a fresh module outputs exactly 0 when init_gamma = 0).

        Model-wide weight initialisers must call this after touching this module's parameters.
        """
        nn.init.constant_(self.out_bn.weight, self.init_gamma)
        nn.init.zeros_(self.out_bn.bias)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, k={self.k}, mlp={self.mlp}, shrink={self.shrink}, "
            f"init_gamma={self.init_gamma}, coords={self.coords}, recompute={self.recompute}, resample={self.resample}"
        )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """CP(s) for s (N, C, T, H, W) → (N, C, T, H, W); the caller adds it to s and applies ReLU."""
        if s.dim() != 5 or s.shape[1] != self.channels:
            raise ValueError(
                f"CPModule expects input of shape (N, {self.channels}, T, H, W), got {tuple(s.shape)}"
            )
        # Sizes that fix the point layout as Python ints: under tracing (ONNX / TorchScript export) shapes are
        # traced tensors, but a traced graph has a fixed T×H×W anyway; only the batch size stays symbolic.
        t, h, w = (int(d) for d in s.shape[2:])
        if t < 2:
            raise ValueError(f"CPModule searches across frames and needs T >= 2, got T={t} (input {tuple(s.shape)})")
        x = self.reduce(s) if self.reduce is not None else s
        if self.shrink and self.shrink > 1 and self.resample == "bilinear_tf1":
            x = resize_bilinear_tf1(x, (h // self.shrink, w // self.shrink))  # (N, C', T, H // r, W // r)
        elif self.shrink and self.shrink > 1:
            x = x[..., :: self.shrink, :: self.shrink]
        hs, ws = int(x.shape[-2]), int(x.shape[-1])
        if self.k > (t - 1) * hs * ws:
            raise ValueError(
                f"CPModule k={self.k} cannot be satisfied: a clip of T={t} frames of {hs}×{ws} search points has only "
                f"(T-1)·H·W = {(t - 1) * hs * ws} points in other frames"
            )
        points = to_points(x).contiguous()  # (N, P, C'), one copy shared by the search and the projections
        idx = cross_frame_knn(points, t, self.k, self.block_size)  # (N, P, k), no gradient
        coords = point_coords(t, hs, ws, s.device, points.dtype, normalized=self.coords == "normalized")  # (P, 3)
        if self.decomposed:
            pooled = self._decomposed_pairs(points, coords, idx)
        else:
            pooled = self._concatenated_pairs(points, coords, idx)
        # The 1×1×1 output conv as one matmul straight into channels-first layout: the same weights, without CPU
        # conv3d's slow path, and a contiguous result for the BN and the residual add (3× faster than permuting).
        n = pooled.shape[0]
        weight = self.out_conv.weight.flatten(1)  # (C, mlp[-1])
        y = torch.baddbmm(self.out_conv.bias[None, :, None], weight.expand(n, -1, -1), pooled.transpose(1, 2))
        y = self.out_bn(y.view(n, -1, t, hs, ws))  # (N, C, P) → (N, C, T, H', W')
        if (hs, ws) != (h, w) and self.resample == "bilinear_tf1":
            y = resize_bilinear_tf1(y, (h, w))  # (N, C, T, H, W)
        elif (hs, ws) != (h, w):
            r = self.shrink
            y = y.repeat_interleave(r, dim=3).repeat_interleave(r, dim=4)[..., :h, :w]  # (N, C, T, H, W)
        return y

    def _concatenated_pairs(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Plain form: the (N, P, k, 2C'+3) pair features through the whole MLP, max over k → (N, P, mlp[-1])."""
        h = self.layers[0](pair_features(points, coords, idx))  # (N, P, k, m0)
        return self._rest_of_mlp(h, [True])

    def _decomposed_pairs(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """First layer as per-point projections gathered (u_q + v_p, see :func:`point_projections`), computed once
        per point, not once per pair; then the rest of the MLP in the form that fits the mode:

        - eval-mode BatchNorms: folded into the linear maps (:func:`folded_pair_mlp`);
        - ``recompute`` with grad enabled, training-mode BatchNorms: one or two layers through the fused function
          (:func:`fused_pair_mlp`, no pair activation kept), more layers through ``torch.utils.checkpoint``;
        - otherwise the pair activations are stored as usual.
        """
        if self._foldable():
            layers = [fold_batch_norm(layer.weight, layer.bias, norm.running_mean, norm.running_var, norm.weight,
                                      norm.bias, norm.eps) for layer, norm in zip(self.layers, self.norms)]
            u, v = point_projections(points, coords, *layers[0])
            return folded_pair_mlp(u, v, idx, layers[1:])
        u, v = point_projections(points, coords, self.layers[0].weight, self.layers[0].bias)
        update_stats = [True]  # BN running statistics are updated on the first pass only, not on recomputation
        if self.recompute and torch.is_grad_enabled():
            if len(self.mlp) <= 2 and all(norm.training for norm in self.norms):
                return self._fused_mlp(u, v, idx)
            return checkpoint(self._gathered_mlp, u, v, idx, update_stats, use_reentrant=False)
        return self._gathered_mlp(u, v, idx, update_stats)

    def _foldable(self) -> bool:
        """Every pair-MLP BatchNorm is in eval mode with running statistics, and none carries a hook (a hook on
        a BatchNorm, e.g. the profiler's or the visualisation's, expects the unfolded module to be called)."""
        return all(not norm.training and norm.running_mean is not None and not norm._forward_hooks
                   and not norm._forward_pre_hooks for norm in self.norms)

    def _fused_mlp(self, u: torch.Tensor, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Training-mode MLP of one or two layers without stored pair activations; running statistics updated
        as ``nn.BatchNorm1d`` does for a batch of all N·P·k pairs."""
        norms = [(norm.weight, norm.bias, norm.eps) for norm in self.norms]
        second = (self.layers[1].weight, self.layers[1].bias) if len(self.mlp) == 2 else None
        pooled, stats = fused_pair_mlp(u, v, idx, norms[0], second, norms[1] if second else None, self.chunk_size)
        for norm, (mean, var) in zip(self.norms, stats):
            _update_running_stats(norm, mean, var, idx.numel())
        return pooled

    def _gathered_mlp(
        self, u: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, update_stats: list[bool]
    ) -> torch.Tensor:
        h = gather_points(u, idx) + v[:, :, None]  # (N, P, k, m0)
        return self._rest_of_mlp(h, update_stats)

    def _rest_of_mlp(self, h: torch.Tensor, update_stats: list[bool]) -> torch.Tensor:
        """Pre-BN first-layer output h (N, P, k, m0) → BN + ReLU, the remaining layers, max over k → (N, P, m)."""
        n, p, k, _ = h.shape
        h = h.reshape(n * p * k, -1)  # (N·P·k, m0): BN statistics over all pairs
        for i, norm in enumerate(self.norms):
            if i > 0:
                h = self.layers[i](h)
            h = F.relu(_batch_norm(norm, h, update_stats[0]))
        update_stats[0] = False
        return h.view(n, p, k, -1).max(dim=2).values  # (N, P, m)


def _batch_norm(norm: nn.BatchNorm1d, h: torch.Tensor, update_stats: bool) -> torch.Tensor:
    """``norm(h)``, or on a recomputed forward the same batch-statistics op on throw-away copies of the running
    statistics (so they are updated once per step, and the recomputation saves the same tensors)."""
    if not norm.training or update_stats or norm.running_mean is None:
        return norm(h)
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    return F.batch_norm(h, mean, var, norm.weight, norm.bias, True, norm.momentum or 0.0, norm.eps)


@torch.no_grad()
def _update_running_stats(norm: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What a training-mode ``norm`` does to its buffers given a batch of ``count`` rows with this mean and
    biased variance: num_batches_tracked += 1 and an exponential (or, with momentum None, cumulative) average
    of the mean and the unbiased variance."""
    if not norm.track_running_stats or norm.running_mean is None:
        return
    norm.num_batches_tracked += 1
    factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
    norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
    norm.running_var.mul_(1 - factor).add_(var * (count / max(1, count - 1)), alpha=factor)
