"""The CP (correspondence proposal) module, SPEC §1.

A residual block computes ``relu(s + cp(s))`` where ``s`` is its pre-ReLU sum. For every point of the clip the
module proposes k correspondences in other frames (feature-space kNN), embeds each (point, proposal) pair with
their space-time displacement through a shared MLP, max-pools over the k pairs and maps back to C channels.

The pair MLP, the costly part, runs in one of five equivalent forms; :meth:`CPModule.pair_mlp_path` names the one
a call takes, from the module's declared settings (``decomposed``, ``fold_bn``, ``recompute``), its BatchNorms'
mode and whether autograd records. Hooks never choose it: a hooked module computes what an unhooked one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from cpnet.ops.knn import cross_frame_knn
from cpnet.ops.pair_mlp import fold_batch_norm, folded_pair_mlp, fused_pair_mlp, point_projections
from cpnet.ops.resample import resize_bilinear_tf1
from cpnet.ops.video import gather_points, pair_features, point_coords, to_points

__all__ = ["CPModule", "CPTrace", "PAIR_MLP_PATHS"]

# The forms of the pair MLP, in the order CPModule.pair_mlp_path tests for them.
PAIR_MLP_PATHS = ("concatenated", "folded", "fused", "checkpointed", "gathered")

# New running (mean, var) of one BatchNorm, computed on copies of its buffers; None when it keeps no statistics.
_Stats = tuple[torch.Tensor, torch.Tensor] | None


class CPTrace(NamedTuple):
    """What one CP forward computes on the way, for analyses (:meth:`CPModule.trace`)."""

    points: torch.Tensor  # (N, P, C') the searched points: features after the bottleneck and shrink
    grid: tuple[int, int, int]  # (T, H', W'), P = T·H'·W', frame-major
    neighbours: torch.Tensor  # int64 (N, P, k) proposals, indices into P, nearest first
    pair_activations: torch.Tensor  # (N·P·k, mlp[-1]) last MLP layer's BatchNorm output, before ReLU and max
    search_output: torch.Tensor  # (N, C, T, H', W') CP(s) at the search points (output BN, before resampling)
    output: torch.Tensor  # (N, C, T, H, W) CP(s)


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
        fold_bn: with eval-mode pair-MLP BatchNorms, fold them into the linear maps (default; same results up to
            rounding, faster). False keeps them as modules that run on every pair.
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
        fold_bn: bool = True,
    ) -> None:
        super().__init__()
        mlp = [int(m) for m in mlp]
        _check_options(mlp, k, coords, resample, chunk_size, shrink)
        self.channels, self.k, self.mlp = channels, int(k), mlp
        self.shrink, self.block_size = shrink, block_size
        self.init_gamma, self.recompute, self.decomposed = float(init_gamma), recompute, decomposed
        self.coords, self.chunk_size, self.resample, self.fold_bn = coords, chunk_size, resample, fold_bn
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

    # ---- the search: what the kNN sees ------------------------------------------------------------------------

    def search_features(self, s: torch.Tensor) -> torch.Tensor:
        """The features the kNN searches for input s (N, C, T, H, W): after the bottleneck and the shrink,
        (N, C', T, H', W') on the grid :meth:`search_grid` gives."""
        self._check_input(s)
        return self._search_features(s)

    def search_grid(self, s: torch.Tensor) -> tuple[int, int, int]:
        """(T, H', W'): the grid of points searched for input s (N, C, T, H, W). Subsampling by r keeps
        ceil(H / r) rows, the bilinear resize H // r."""
        t, h, w = (int(d) for d in s.shape[2:])
        if not self.shrink or self.shrink == 1:
            return t, h, w
        if self.resample == "bilinear_tf1":
            return t, h // self.shrink, w // self.shrink
        return t, -(-h // self.shrink), -(-w // self.shrink)

    def search(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        """The correspondence proposals for input s (N, C, T, H, W): the searched points (N, P, C'), their k
        neighbours in other frames as int64 (N, P, k) indices into P, and the grid (T, H', W')."""
        self._check_input(s)
        return self._search(s)

    # ---- forward and its steps --------------------------------------------------------------------------------

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """CP(s) for s (N, C, T, H, W) → (N, C, T, H, W); the caller adds it to s and applies ReLU."""
        _, h, w = self._check_input(s)
        points, idx, grid = self._search(s)
        pooled = self._pair_mlp(points, self._coords(grid, points), idx)  # (N, P, mlp[-1])
        return self._to_input_grid(self._output(pooled, grid), h, w)

    def trace(self, s: torch.Tensor) -> CPTrace:
        """One forward of s (N, C, T, H, W) keeping its intermediates (:class:`CPTrace`), for analyses.

        The pair MLP runs unfolded ("gathered"), so that each pair's last-layer activation exists; the output
        equals :meth:`forward`'s up to rounding. In training mode it updates the BatchNorm statistics as a forward
        does: call it in eval mode.
        """
        _, h, w = self._check_input(s)
        points, idx, grid = self._search(s)
        u, v = self._projections(points, self._coords(grid, points))
        pre, _ = self._pair_preactivations(gather_points(u, idx) + v[:, :, None])  # (N·P·k, m)
        small = self._output(_max_over_pairs(pre, idx), grid)  # (N, C, T, H', W')
        return CPTrace(points, grid, idx, pre, small, self._to_input_grid(small, h, w))

    def _check_input(self, s: torch.Tensor) -> tuple[int, int, int]:
        """(T, H, W) of a valid input; a ValueError names a wrong shape or a single frame."""
        if s.dim() != 5 or s.shape[1] != self.channels:
            raise ValueError(
                f"CPModule expects input of shape (N, {self.channels}, T, H, W), got {tuple(s.shape)}"
            )
        # Sizes that fix the point layout as Python ints: under tracing (ONNX / TorchScript export) shapes are
        # traced tensors, but a traced graph has a fixed T×H×W anyway; only the batch size stays symbolic.
        t, h, w = (int(d) for d in s.shape[2:])
        if t < 2:
            raise ValueError(f"CPModule searches across frames and needs T >= 2, got T={t} (input {tuple(s.shape)})")
        return t, h, w

    def _search_features(self, s: torch.Tensor) -> torch.Tensor:
        x = self.reduce(s) if self.reduce is not None else s  # (N, C', T, H, W)
        if self.shrink and self.shrink > 1 and self.resample == "bilinear_tf1":
            return resize_bilinear_tf1(x, self.search_grid(s)[1:])  # (N, C', T, H // r, W // r)
        if self.shrink and self.shrink > 1:
            return x[..., :: self.shrink, :: self.shrink]  # (N, C', T, ceil(H / r), ceil(W / r))
        return x

    def _search(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        x = self._search_features(s)
        t, hs, ws = (int(d) for d in x.shape[2:])
        if self.k > (t - 1) * hs * ws:
            raise ValueError(
                f"CPModule k={self.k} cannot be satisfied: a clip of T={t} frames of {hs}×{ws} search points has only "
                f"(T-1)·H·W = {(t - 1) * hs * ws} points in other frames"
            )
        points = to_points(x).contiguous()  # (N, P, C'), one copy shared by the search and the projections
        idx = cross_frame_knn(points, t, self.k, self.block_size)  # (N, P, k), no gradient
        return points, idx, (t, hs, ws)

    def _coords(self, grid: tuple[int, int, int], points: torch.Tensor) -> torch.Tensor:
        """(P, 3) coordinates of the grid's points in the module's units."""
        return point_coords(*grid, points.device, points.dtype, normalized=self.coords == "normalized")

    def _output(self, pooled: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Pooled (N, P, mlp[-1]) → output conv and BN on the search grid, (N, C, T, H', W')."""
        # The 1×1×1 output conv as one matmul straight into channels-first layout: the same weights, without CPU
        # conv3d's slow path, and a contiguous result for the BN and the residual add (3× faster than permuting).
        n = pooled.shape[0]
        weight = self.out_conv.weight.flatten(1)  # (C, mlp[-1])
        y = torch.baddbmm(self.out_conv.bias[None, :, None], weight.expand(n, -1, -1), pooled.transpose(1, 2))
        return self.out_bn(y.view(n, -1, *grid))  # (N, C, P) → (N, C, T, H', W')

    def _to_input_grid(self, y: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The output (N, C, T, H', W') back on the input's (H, W): resized, or each value repeated r×r."""
        hs, ws = int(y.shape[-2]), int(y.shape[-1])
        if (hs, ws) == (h, w):
            return y
        if self.resample == "bilinear_tf1":
            return resize_bilinear_tf1(y, (h, w))  # (N, C, T, H, W)
        r = self.shrink
        return y.repeat_interleave(r, dim=3).repeat_interleave(r, dim=4)[..., :h, :w]  # (N, C, T, H, W)

    # ---- the pair MLP: one choice, five forms -----------------------------------------------------------------

    def pair_mlp_path(self) -> str:
        """Which form of the pair MLP a call makes now (one of :data:`PAIR_MLP_PATHS`), all the same maths:

        - "concatenated": ``decomposed=False``; the (N, P, k, 2C'+3) pair features through the whole MLP;
        - "folded": eval-mode BatchNorms with running statistics and ``fold_bn``: folded into the linear maps;
        - "fused": ``recompute`` while autograd records, training-mode BatchNorms, one or two layers: a fused
          function that keeps no pair activation;
        - "checkpointed": ``recompute`` while autograd records, otherwise: the MLP recomputed in backward;
        - "gathered": per-point projections gathered per pair, activations stored as usual.
        """
        if not self.decomposed:
            return "concatenated"
        if self._foldable():
            return "folded"
        if self.recompute and torch.is_grad_enabled():
            if len(self.mlp) <= 2 and all(norm.training for norm in self.norms):
                return "fused"
            return "checkpointed"
        return "gathered"

    def _foldable(self) -> bool:
        """``fold_bn`` is on and every pair-MLP BatchNorm is in eval mode with running statistics."""
        return self.fold_bn and all(not norm.training and norm.running_mean is not None for norm in self.norms)

    def _pair_mlp(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """points (N, P, C'), coords (P, 3), idx (N, P, k) → max over k of the pair MLP, (N, P, mlp[-1])."""
        form = {"concatenated": self._concatenated_pairs, "folded": self._folded_pairs, "fused": self._fused_pairs,
                "checkpointed": self._checkpointed_pairs, "gathered": self._gathered_pairs}[self.pair_mlp_path()]
        return form(points, coords, idx)

    def _projections(self, points: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer as per-point projections u, v (N, P, m0): pair (p, q) gets u_q + v_p."""
        return point_projections(points, coords, self.layers[0].weight, self.layers[0].bias)

    def _concatenated_pairs(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        h = self.layers[0](pair_features(points, coords, idx))  # (N, P, k, 2C'+3) → (N, P, k, m0)
        return _max_over_pairs(self._pair_preactivations(h)[0], idx)

    def _folded_pairs(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        layers = [fold_batch_norm(layer.weight, layer.bias, norm.running_mean, norm.running_var, norm.weight,
                                  norm.bias, norm.eps) for layer, norm in zip(self.layers, self.norms)]
        u, v = point_projections(points, coords, *layers[0])  # BN0 folded into u and v
        return folded_pair_mlp(u, v, idx, layers[1:])

    def _fused_pairs(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Training-mode MLP of one or two layers without stored pair activations; running statistics updated
        as ``nn.BatchNorm1d`` does for a batch of all N·P·k pairs."""
        u, v = self._projections(points, coords)
        norms = [(norm.weight, norm.bias, norm.eps) for norm in self.norms]
        second = (self.layers[1].weight, self.layers[1].bias) if len(self.mlp) == 2 else None
        pooled, stats = fused_pair_mlp(u, v, idx, norms[0], second, norms[1] if second else None, self.chunk_size)
        for norm, (mean, var) in zip(self.norms, stats):
            _update_running_stats(norm, mean, var, idx.numel())
        return pooled

    def _checkpointed_pairs(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The gathered form recomputed in backward. The checkpointed function leaves the BatchNorm buffers alone
        and returns their new values, committed here once: the recomputation in backward changes nothing."""
        u, v = self._projections(points, coords)
        pooled, stats = checkpoint(self._pure_gathered_pairs, u, v, idx, use_reentrant=False)
        for norm, new in zip(self.norms, stats):
            _commit_running_stats(norm, new)
        return pooled

    def _pure_gathered_pairs(
        self, u: torch.Tensor, v: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, list[_Stats]]:
        pre, stats = self._pair_preactivations(gather_points(u, idx) + v[:, :, None], pure=True)
        return _max_over_pairs(pre, idx), stats

    def _gathered_pairs(self, points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        u, v = self._projections(points, coords)
        h = gather_points(u, idx) + v[:, :, None]  # (N, P, k, m0)
        return _max_over_pairs(self._pair_preactivations(h)[0], idx)

    def _pair_preactivations(self, h: torch.Tensor, pure: bool = False) -> tuple[torch.Tensor, list[_Stats]]:
        """First layer's pre-BN output h (N, P, k, m0) → the last layer's BatchNorm output before its ReLU,
        (N·P·k, m), with BN statistics over all pairs.

        ``pure``: leave the BatchNorm buffers alone and return the running statistics each would take (for a
        function autograd recomputes); otherwise the norms run as modules (training mode updates them) and the
        list is empty.
        """
        h = h.reshape(-1, h.shape[-1])  # (N·P·k, m0)
        stats: list[_Stats] = []
        for i, norm in enumerate(self.norms):
            if i > 0:
                h = self.layers[i](F.relu(h))  # (N·P·k, m_i)
            if pure:
                h, new = _batch_norm_on_copies(norm, h)
                stats.append(new)
            else:
                h = norm(h)
        return h, stats


def _check_options(mlp: list[int], k: int, coords: str, resample: str, chunk_size: int | None,
                   shrink: int | None) -> None:
    """Raise ValueError naming the first invalid CPModule argument."""
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


def _max_over_pairs(pre: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Last-layer pre-activations (N·P·k, m) → ReLU and max over each point's k pairs, (N, P, m)."""
    return F.relu(pre).view(*idx.shape, -1).max(dim=2).values  # (N, P, k, m) → (N, P, m)


def _batch_norm_on_copies(norm: nn.BatchNorm1d, h: torch.Tensor) -> tuple[torch.Tensor, _Stats]:
    """``norm(h)`` without touching ``norm``'s buffers: the output and, where a training-mode ``norm`` would
    update its running (mean, var), the new values, computed by the same op on copies."""
    if not (norm.training and norm.track_running_stats and norm.running_mean is not None):
        return norm(h), None  # batch or running statistics, no buffer written
    tracked = norm.num_batches_tracked
    if norm.momentum is not None:
        factor = norm.momentum
    else:  # nn.BatchNorm's cumulative average: 1 / (batches including this one)
        factor = 1.0 / float(tracked + 1) if tracked is not None else 0.0
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    out = F.batch_norm(h, mean, var, norm.weight, norm.bias, True, factor, norm.eps)
    return out, (mean, var)


@torch.no_grad()
def _commit_running_stats(norm: nn.BatchNorm1d, new: _Stats) -> None:
    """Store the running statistics :func:`_batch_norm_on_copies` computed, counting the batch as a forward does."""
    if new is None:
        return
    if norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
    norm.running_mean.copy_(new[0])
    norm.running_var.copy_(new[1])


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
