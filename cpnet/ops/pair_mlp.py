"""The CP module's pair MLP without (N·P·k)-row activations: a fused training form and a folded eval form.

Pair (p, q = idx[p, j]) enters the MLP as [c_q − c_p, x_p, x_q]; the first linear layer of it is u_q + v_p with
per-point projections u, v (N, P, m0) (:func:`point_projections`). Each layer is linear + BatchNorm + ReLU, and
the output is the max over the k pairs of each point (SPEC §1.5–1.6).

**Training** (:func:`fused_pair_mlp`, one- and two-layer MLPs, BatchNorm on batch statistics): forward and backward
each make one pass over chunks of points and keep, for backward, only u, v, the indices, per-point neighbour sums
and counts, and for each point and output channel the winning last-layer pre-activation and its proposal index.
The pair activations of a chunk are recomputed in backward and dropped. Exact (the same maths as the stored form,
up to summation order), because:

1. The first layer's pre-activations h0 = u_q + v_p are linear in u and v, so BN0's batch mean and variance over
   all pairs follow from per-point sums (how often each point is a proposal, U_p = Σ_j u[idx[p, j]]), and the mean
   terms of BN0's backward, linear in h0, become per-point corrections after the pass.
2. BatchNorm followed by ReLU is monotone per channel — increasing where γ > 0, decreasing where γ < 0, constant
   where γ = 0 — so max_k relu(bn(z)) = relu(bn(ext_k z)) with ext the max, the min, or proposal 0 respectively.
   The forward keeps the extreme pre-activation per point and channel (plus running sums for the last BN's
   statistics) and applies the last BN afterwards to (N, P, m) values.
3. The max-pool's gradient reaches one pair per point and channel, so the last BN's backward sums (Σ g, Σ g·x̂)
   come from the saved winners before the backward pass.

Ties: the winner is the first proposal (in kNN order, nearest first) among equal values, as ``torch.max`` picks in
the stored form, so both send the gradient to the same pair. Values that tie only after the stored form's rounding
(they differ by about one ulp) may pick differently.

**Eval** (:func:`folded_pair_mlp`): each eval-mode BatchNorm is an affine map, folded into the linear map before it
(:func:`fold_batch_norm`), the first one into u and v; ReLU then commutes with the max over k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx

from cpnet.ops.video import gather_points

__all__ = ["CHUNK_ELEMENTS", "fold_batch_norm", "folded_pair_mlp", "fused_pair_mlp", "point_projections"]

CHUNK_ELEMENTS = 1 << 21  # elements of the widest per-chunk pair tensor by default (8 MiB in float32)


def point_projections(
    points: torch.Tensor, coords: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point parts of the first layer: W·[c_q − c_p, x_p, x_q] + b = u_q + v_p.

    points (N, P, C), coords (P, 3), weight (m0, 2C + 3) with columns [Δ, x_p, x_q], bias (m0,) →
    u = W_q·x + W_Δ·c and v = W_p·x + b − W_Δ·c, each (N, P, m0).
    """
    c = points.shape[-1]
    w_delta, w_p, w_q = weight[:, :3], weight[:, 3 : 3 + c], weight[:, 3 + c :]
    c_proj = coords.to(points.dtype) @ w_delta.t()  # (P, m0)
    return points @ w_q.t() + c_proj, points @ w_p.t() + bias - c_proj


def fold_batch_norm(
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear map (weight (m, d), bias (m,)) followed by an eval-mode BatchNorm, as one linear map."""
    scale = gamma * (var + eps).rsqrt()  # (m,)
    return weight * scale[:, None], (bias - mean) * scale + beta


def folded_pair_mlp(
    u: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, layers: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Eval-mode pair MLP with every BatchNorm folded: u, v (N, P, m0) already include BN0, ``layers`` are the
    folded (weight, bias) of layers 1.. ; idx (N, P, k) → (N, P, m_last).

    The ReLU after the last layer is applied after the max over k (ReLU is increasing); with one layer the max is
    taken over u alone, since max_j (u_q + v_p) = max_j u_q + v_p, and the last layer's bias is added after the
    max for the same reason. Deeper MLPs run one proposal slot j at a time with a running max, so no (N, P, k, m)
    tensor is made: the per-slot (N·P, m) pieces stay in cache (measured 1–5 ms faster per cpnet_r34 forward
    than the whole-tensor form here). Updates are in place and autograd-safe (no op needs an overwritten tensor
    for its backward).
    """
    if not layers:
        return F.relu(gather_points(u, idx).amax(2) + v)  # (N, P, k, m0) → (N, P, m0)
    n, p, k = idx.shape
    rows = u.reshape(n * p, -1)  # (N·P, m0)
    slots = (idx + (torch.arange(n, device=idx.device) * p)[:, None, None]).permute(2, 0, 1).reshape(k, n * p)
    v_rows = v.reshape(n * p, -1)  # (N·P, m0)
    weight, bias = layers[-1]
    out = None
    for j in range(k):
        h = rows.index_select(0, slots[j]).add_(v_rows).relu_()  # (N·P, m0): pair (p, idx[p, j]) for every p
        for w, b in layers[:-1]:
            h = F.linear(h, w, b).relu_()  # (N·P, m_i)
        h = torch.mm(h, weight.t())  # (N·P, m_last), bias after the max
        out = h if out is None else torch.maximum(out, h)
    return (out + bias).relu_().view(n, p, -1)


def fused_pair_mlp(
    u: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    bn0: tuple[torch.Tensor, torch.Tensor, float],
    layer1: tuple[torch.Tensor, torch.Tensor] | None = None,
    bn1: tuple[torch.Tensor, torch.Tensor, float] | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Training-mode pair MLP of one or two layers, max-pooled over k, without storing pair activations.

    u, v (N, P, m0) per-point projections (:func:`point_projections`), idx (N, P, k) proposals; ``bn0`` =
    (γ0, β0, eps0); for a second layer ``layer1`` = (W1 (m1, m0), b1) and ``bn1`` = (γ1, β1, eps1). ``chunk``:
    points per pass step (default: about :data:`CHUNK_ELEMENTS` elements per pair tensor).
    Returns pooled (N, P, m_last) and each BatchNorm's batch (mean, biased variance), for its running statistics.
    """
    n, p, k = idx.shape
    if chunk is None:
        widest = max(u.shape[-1], layer1[0].shape[0] if layer1 is not None else 0)
        chunk = max(1, CHUNK_ELEMENTS // (n * k * widest))
    if _autocast_enabled(u.device.type):
        # The hand-written backward runs outside autocast and needs one dtype throughout (its scatter_add_ refuses a
        # float32 gradient into a float16 buffer): under autocast the fused MLP runs in float32, as
        # torch.amp.custom_fwd(cast_inputs=torch.float32) would run it (that API is torch >= 2.4; cpnet takes 2.2).
        with torch.autocast(u.device.type, enabled=False):
            return fused_pair_mlp(*_float32(u, v, idx, bn0, layer1, bn1), chunk)
    if layer1 is None:
        pooled, mean0, var0 = _PairMLP1.apply(u, v, idx, bn0[0], bn0[1], bn0[2], chunk)
        return pooled, [(mean0, var0)]
    assert bn1 is not None, "a second layer needs its BatchNorm"
    pooled, mean0, var0, mean1, var1 = _PairMLP2.apply(u, v, idx, bn0[0], bn0[1], *layer1, bn1[0], bn1[1], bn0[2],
                                                       bn1[2], chunk)
    return pooled, [(mean0, var0), (mean1, var1)]


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type: CUDA's state, and the CPU's through its own function
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _float32(u: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, bn0: tuple, layer1: tuple | None,
             bn1: tuple | None) -> tuple:
    """fused_pair_mlp's arguments with every floating tensor in float32 (idx and the eps values unchanged)."""
    def f32(group: tuple | None) -> tuple | None:
        return None if group is None else tuple(x.float() if isinstance(x, torch.Tensor) else x for x in group)

    return u.float(), v.float(), idx, f32(bn0), f32(layer1), f32(bn1)


def _neighbour_sums(u: torch.Tensor, idx: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """counts (N, P): how many pairs propose each point; U (N, P, m0) = Σ_j u[idx[p, j]]."""
    n, p, k = idx.shape
    counts = torch.zeros(n, p, dtype=u.dtype, device=u.device)
    counts.scatter_add_(1, idx.reshape(n, p * k), torch.ones(n, p * k, dtype=u.dtype, device=u.device))
    usum = torch.empty_like(u)
    for a in range(0, p, chunk):
        usum[:, a : a + chunk] = gather_points(u, idx[:, a : a + chunk]).sum(2)  # (N, pc, k, m0) → (N, pc, m0)
    return counts, usum


def _first_bn_stats(
    u: torch.Tensor, v: torch.Tensor, counts: torch.Tensor, usum: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance (m0,) of h0 = u_q + v_p over all pairs, centred: h0 − μ = (u_q − a) + (v_p − b)."""
    m = counts.numel() * k
    a = (counts[..., None] * u).sum((0, 1)) / m  # mean of u_q over pairs
    b = v.mean((0, 1))  # mean of v_p over pairs (each p appears k times)
    uc, vc = u - a, v - b
    var = ((counts[..., None] * uc * uc).sum((0, 1)) + k * (vc * vc).sum((0, 1))
           + 2 * (vc * (usum - k * a)).sum((0, 1))) / m
    return a + b, var


def _extremum(z: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z (N, pc, k, m) → the value and proposal index (N, pc, m) that wins max_k relu(bn(z)) per channel: the max
    where γ > 0, the min where γ < 0, proposal 0 where γ = 0 (all tie); the first among equal values."""
    hi, hi_i = z.max(2)
    lo, lo_i = z.min(2)
    first = torch.zeros_like(hi_i)
    ext = torch.where(gamma > 0, hi, torch.where(gamma < 0, lo, z[:, :, 0]))
    return ext, torch.where(gamma > 0, hi_i, torch.where(gamma < 0, lo_i, first))


def _index_dtype(k: int) -> torch.dtype:
    return torch.uint8 if k < 256 else torch.int64  # a proposal index per point and channel: keep it small


class _Proposals(NamedTuple):
    """The proposals and the per-point sums over them that BN0's statistics and backward use."""

    idx: torch.Tensor  # (N, P, k) proposals
    counts: torch.Tensor  # (N, P) how many pairs propose each point
    usum: torch.Tensor  # (N, P, m0) Σ_j u[idx[p, j]]


class _FirstNorm(NamedTuple):
    """BN0 on batch statistics: its mean μ0, γ0·inv0 and inv0 = 1 / sqrt(var0 + eps0), each (m0,)."""

    mean: torch.Tensor
    scale: torch.Tensor
    inv: torch.Tensor


def _first_bn_mean_terms(gu: torch.Tensor, gv: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                         proposals: _Proposals, bn0: _FirstNorm, sum_g: torch.Tensor, sum_gx: torch.Tensor) -> None:
    """Subtract BN0's backward mean terms, α + β·(h0 − μ0) for every pair, from gu, gv (N, P, m0) in place.

    sum_g = Σ ∂L/∂y0 and sum_gx = Σ ∂L/∂y0 · x̂0 over all pairs; with h0 = u_q + v_p the per-pair term sums per point:
    over the k pairs of p for v, over the pairs proposing q for u.
    """
    idx, counts, usum = proposals
    n, p, k = idx.shape
    m = n * p * k
    alpha = bn0.scale * sum_g / m  # (m0,)
    beta = bn0.scale * bn0.inv * sum_gx / m  # (m0,)
    vsum = torch.zeros_like(v)  # (N, P, m0): Σ of v_p over the pairs proposing each point
    for j in range(k):
        vsum.scatter_add_(1, idx[:, :, j, None].expand(-1, -1, v.shape[-1]), v)
    gv -= k * alpha + beta * (usum + k * v - k * bn0.mean)
    gu -= counts[..., None] * (alpha + beta * (u - bn0.mean)) + beta * vsum


class _PairMLP1(torch.autograd.Function):
    """pooled (N, P, m0) = max_k relu(bn0(u[idx] + v)), BN0 on batch statistics."""

    @staticmethod
    def forward(ctx: FunctionCtx, u: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, gamma0: torch.Tensor,
                beta0: torch.Tensor, eps0: float, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, p, k = idx.shape
        counts, usum = _neighbour_sums(u, idx, chunk)
        mean0, var0 = _first_bn_stats(u, v, counts, usum, k)
        inv0 = (var0 + eps0).rsqrt()
        ext = torch.empty_like(u)  # (N, P, m0) winning u_q per point and channel
        arg = torch.empty(u.shape, dtype=_index_dtype(k), device=u.device)
        for a in range(0, p, chunk):
            e, i = _extremum(gather_points(u, idx[:, a : a + chunk]), gamma0)  # from (N, pc, k, m0)
            ext[:, a : a + chunk], arg[:, a : a + chunk] = e, i.to(arg.dtype)
        pooled = F.relu(gamma0 * inv0 * (ext + v - mean0) + beta0)
        ctx.save_for_backward(u, v, idx, gamma0, counts, usum, ext, arg, mean0, inv0, pooled)
        ctx.mark_non_differentiable(mean0, var0)
        return pooled, mean0, var0

    @staticmethod
    def backward(ctx: FunctionCtx, gpool: torch.Tensor, *_: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        u, v, idx, gamma0, counts, usum, ext, arg, mean0, inv0, pooled = ctx.saved_tensors
        scale0 = gamma0 * inv0
        xe = (ext + v - mean0) * inv0  # (N, P, m0) x̂0 of the winners
        gy = gpool * (pooled > 0)  # (N, P, m0) ∂L/∂y0 at the winners; zero at every other pair
        sum_g, sum_gx = gy.sum((0, 1)), (gy * xe).sum((0, 1))
        part = gy * scale0  # BN0's backward without its mean terms, winners only
        gv = part.clone()
        gu = torch.zeros_like(u).scatter_add_(1, idx.gather(2, arg.long()), part)  # winners' q: (N, P, m0)
        _first_bn_mean_terms(gu, gv, u, v, _Proposals(idx, counts, usum), _FirstNorm(mean0, scale0, inv0), sum_g,
                             sum_gx)
        return gu, gv, None, sum_gx, sum_g, None, None


class _PairMLP2(torch.autograd.Function):
    """pooled (N, P, m1) = max_k relu(bn1(W1 · relu(bn0(u[idx] + v)) + b1)), BN on batch statistics."""

    @staticmethod
    def forward(ctx: FunctionCtx, u: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, gamma0: torch.Tensor,
                beta0: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, gamma1: torch.Tensor, beta1: torch.Tensor,
                eps0: float, eps1: float, chunk: int) -> tuple[torch.Tensor, ...]:
        n, p, k = idx.shape
        m = n * p * k
        counts, usum = _neighbour_sums(u, idx, chunk)
        mean0, var0 = _first_bn_stats(u, v, counts, usum, k)
        inv0 = (var0 + eps0).rsqrt()
        scale0, shift0 = gamma0 * inv0, beta0 - gamma0 * inv0 * mean0
        ext = u.new_empty(n, p, w1.shape[0])  # (N, P, m1) winning z1 per point and channel
        arg = torch.empty(ext.shape, dtype=_index_dtype(k), device=u.device)
        shift, s1, s2 = None, 0.0, 0.0  # BN1 statistics: float64 sums of z1 − shift (shift ≈ the mean)
        for a in range(0, p, chunk):
            h0 = gather_points(u, idx[:, a : a + chunk]) + v[:, a : a + chunk, None]  # (N, pc, k, m0)
            z1 = F.linear(F.relu(h0 * scale0 + shift0), w1, b1)  # (N, pc, k, m1)
            shift = z1[:, :, 0].mean((0, 1)).double() if shift is None else shift
            zd = z1.double() - shift
            s1, s2 = s1 + zd.sum((0, 1, 2)), s2 + (zd * zd).sum((0, 1, 2))
            e, i = _extremum(z1, gamma1)
            ext[:, a : a + chunk], arg[:, a : a + chunk] = e, i.to(arg.dtype)
        mean_d = s1 / m
        var1 = (s2 / m - mean_d * mean_d).clamp_min(0).to(u.dtype)
        mean1, inv1 = (shift + mean_d).to(u.dtype), (var1 + eps1).rsqrt()
        pooled = F.relu(gamma1 * inv1 * (ext - mean1) + beta1)  # (N, P, m1)
        ctx.save_for_backward(u, v, idx, w1, b1, gamma0, beta0, gamma1, beta1, counts, usum, ext, arg, mean0, inv0,
                              mean1, inv1)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(mean0, var0, mean1, var1)
        return pooled, mean0, var0, mean1, var1

    @staticmethod
    def backward(ctx: FunctionCtx, gpool: torch.Tensor, *_: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (u, v, idx, w1, b1, gamma0, beta0, gamma1, beta1, counts, usum, ext, arg, mean0, inv0, mean1,
         inv1) = ctx.saved_tensors
        n, p, k = idx.shape
        m, m0 = n * p * k, u.shape[-1]
        scale0, shift0 = gamma0 * inv0, beta0 - gamma0 * inv0 * mean0
        xe = (ext - mean1) * inv1  # (N, P, m1) x̂1 of the winners
        gye = gpool * ((gamma1 * xe + beta1) > 0)  # (N, P, m1) ∂L/∂y1 at the winners; zero at every other pair
        sum_g1, sum_gx1 = gye.sum((0, 1)), (gye * xe).sum((0, 1))
        scale1 = gamma1 * inv1
        gu, gv = torch.zeros_like(u), torch.zeros_like(v)
        gw1, gb1 = torch.zeros_like(w1), torch.zeros_like(b1)
        sum_g0 = torch.zeros(m0, dtype=torch.float64, device=u.device)
        sum_gx0 = torch.zeros_like(sum_g0)
        for a in range(0, p, ctx.chunk):
            idx_c = idx[:, a : a + ctx.chunk]  # (N, pc, k)
            pc = idx_c.shape[1]
            h0 = gather_points(u, idx_c) + v[:, a : a + pc, None]  # (N, pc, k, m0)
            y0 = h0 * scale0 + shift0
            a0 = F.relu(y0)
            z1 = F.linear(a0, w1, b1)  # (N, pc, k, m1)
            gy1 = torch.zeros_like(z1).scatter_(2, arg[:, a : a + pc, None].long(), gye[:, a : a + pc, None])
            gz1 = scale1 * (gy1 - sum_g1 / m - (z1 - mean1) * inv1 * (sum_gx1 / m))  # (N, pc, k, m1)
            gw1 += gz1.reshape(-1, gz1.shape[-1]).t() @ a0.reshape(-1, m0)  # (m1, N·pc·k) @ (N·pc·k, m0)
            gb1 += gz1.sum((0, 1, 2))
            gy0 = (gz1 @ w1) * (y0 > 0)  # (N, pc, k, m0)
            sum_g0 += gy0.sum((0, 1, 2)).double()
            sum_gx0 += (gy0 * ((h0 - mean0) * inv0)).sum((0, 1, 2)).double()
            part = gy0 * scale0  # BN0's backward without its mean terms: (N, pc, k, m0)
            gv[:, a : a + pc] += part.sum(2)
            gu.scatter_add_(1, idx_c.reshape(n, -1, 1).expand(-1, -1, m0), part.reshape(n, -1, m0))  # (N, pc·k, m0)
        sum_g0, sum_gx0 = sum_g0.to(u.dtype), sum_gx0.to(u.dtype)
        _first_bn_mean_terms(gu, gv, u, v, _Proposals(idx, counts, usum), _FirstNorm(mean0, scale0, inv0), sum_g0,
                             sum_gx0)
        return gu, gv, None, sum_gx0, sum_g0, gw1, gb1, sum_gx1, sum_g1, None, None, None
