"""The fused and folded pair MLPs against the stored form written out with autograd, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cpnet.ops.pair_mlp import fold_batch_norm, folded_pair_mlp, fused_pair_mlp, point_projections
from cpnet.ops.video import gather_points, pair_features, point_coords

EXACT = {"rtol": 1e-9, "atol": 1e-9}
N, P, K, M0, M1 = 2, 13, 3, 5, 4


def _inputs(layers: int, seed: int = 0, ties: bool = False) -> dict:
    """u, v, idx and BN/linear parameters; γ of both signs and one γ = 0 channel per BatchNorm."""
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(N, P, M0, generator=g, dtype=torch.float64), torch.randn(N, P, M0, generator=g,
                                                                                dtype=torch.float64)
    idx = torch.stack([torch.randperm(P, generator=g)[:K] for _ in range(N * P)]).view(N, P, K)  # (N, P, k)
    if ties:  # points 0 and 1 share u, and every point proposes both, in either order: exact ties in every layer
        u[:, 1] = u[:, 0]
        idx[:, :, 0], idx[:, :, 1] = 0, 1
        idx[:, ::2, 0], idx[:, ::2, 1] = 1, 0
        idx[:, :, 2] = 2
    widths = [M0, M1][:layers]
    params = {"u": u, "v": v, "idx": idx}
    for i, m in enumerate(widths):
        gamma = (torch.rand(m, generator=g, dtype=torch.float64) + 0.5) * torch.tensor([1.0, -1.0]).repeat(m)[:m]
        beta = torch.randn(m, generator=g, dtype=torch.float64) * 0.3
        gamma[-1], beta[-1] = 0.0, 0.2  # a constant channel that still passes a gradient (to γ, through x̂)
        params[f"gamma{i}"], params[f"beta{i}"] = gamma, beta
    if layers == 2:
        params["w1"], params["b1"] = torch.randn(M1, M0, generator=g, dtype=torch.float64), torch.randn(
            M1, generator=g, dtype=torch.float64)
    return {name: t.requires_grad_(t.is_floating_point()) for name, t in params.items()}


def _stored(prm: dict, layers: int) -> tuple[torch.Tensor, list]:
    """The pair tensors materialised: BN over all N·P·k pairs, ReLU, max over k (torch.max: first among ties)."""
    h = (gather_points(prm["u"], prm["idx"]) + prm["v"][:, :, None]).reshape(N * P * K, M0)  # (N·P·k, m0)
    stats = []
    for i in range(layers):
        if i == 1:
            h = F.linear(h, prm["w1"], prm["b1"])
        stats.append((h.mean(0).detach(), h.var(0, unbiased=False).detach()))
        h = F.relu(F.batch_norm(h, None, None, prm[f"gamma{i}"], prm[f"beta{i}"], True, 0.0, 1e-5))
    return h.view(N, P, K, -1).max(2).values, stats


def _fused(prm: dict, layers: int, chunk: int | None) -> tuple[torch.Tensor, list]:
    bn0 = (prm["gamma0"], prm["beta0"], 1e-5)
    if layers == 1:
        return fused_pair_mlp(prm["u"], prm["v"], prm["idx"], bn0, chunk=chunk)
    return fused_pair_mlp(prm["u"], prm["v"], prm["idx"], bn0, (prm["w1"], prm["b1"]),
                          (prm["gamma1"], prm["beta1"], 1e-5), chunk=chunk)


def _grads(prm: dict, out: torch.Tensor) -> dict:
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=out.dtype)
    tensors = {k: t for k, t in prm.items() if t.requires_grad}
    return dict(zip(tensors, torch.autograd.grad((out * weight).sum(), list(tensors.values()))))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("chunk", [1, 4, None])  # 4 splits the 13 points unevenly; None: one chunk
@pytest.mark.parametrize("ties", [False, True])
def test_fused_equals_stored_form(layers: int, chunk: int | None, ties: bool) -> None:
    prm = _inputs(layers, ties=ties)
    expected, expected_stats = _stored(prm, layers)
    out, stats = _fused(prm, layers, chunk)
    torch.testing.assert_close(out, expected, **EXACT)
    for (mean, var), (mean_e, var_e) in zip(stats, expected_stats, strict=True):
        torch.testing.assert_close(mean, mean_e, **EXACT)
        torch.testing.assert_close(var, var_e, **EXACT)
    grads, expected_grads = _grads(prm, out), _grads(prm, expected)
    if ties:  # which of two tied pairs wins the max depends on how the ISA rounds them: any choice is valid, so
        # only the tie mates' summed gradient is defined (points 0 and 1 share u)
        for g in (grads, expected_grads):
            g["u"] = torch.cat([g["u"][:, :1] + g["u"][:, 1:2], g["u"][:, 2:]], dim=1)  # (N, P-1, m0)
    for name in expected_grads:
        torch.testing.assert_close(grads[name], expected_grads[name], **EXACT, msg=name)


def test_fused_keeps_no_pair_sized_tensor_for_backward() -> None:
    prm = _inputs(2)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out, _ = _fused(prm, 2, chunk=4)
    assert saved and max(saved) <= N * P * max(M0, M1) < N * P * K * M1
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        _stored(prm, 2)
    assert max(saved) >= N * P * K * M1  # the stored form does keep one: the check above can fail


def test_point_projections_are_the_first_layer_of_the_pair_features() -> None:
    g = torch.Generator().manual_seed(1)
    points, weight = torch.randn(N, 12, 4, generator=g, dtype=torch.float64), torch.randn(6, 11, generator=g,
                                                                                         dtype=torch.float64)
    bias, coords = torch.randn(6, generator=g, dtype=torch.float64), point_coords(3, 2, 2, dtype=torch.float64)
    idx = torch.randint(0, 12, (N, 12, K), generator=g)
    u, v = point_projections(points, coords, weight, bias)
    expected = F.linear(pair_features(points, coords, idx), weight, bias)  # (N, P, k, 6)
    torch.testing.assert_close(gather_points(u, idx) + v[:, :, None], expected, **EXACT)


@pytest.mark.parametrize("widths", [[M0], [M0, M1], [M0, M1, 3]])
def test_folded_equals_unfolded_eval_mode(widths: list[int]) -> None:
    g = torch.Generator().manual_seed(2)
    points, coords = torch.randn(N, 12, 4, generator=g, dtype=torch.float64), point_coords(3, 2, 2,
                                                                                          dtype=torch.float64)
    idx = torch.randint(0, 12, (N, 12, K), generator=g)
    layers, norms = [], []
    for a, b in zip([11, *widths[:-1]], widths):
        layers.append((torch.randn(b, a, generator=g, dtype=torch.float64), torch.randn(b, generator=g,
                                                                                        dtype=torch.float64)))
        norms.append([torch.randn(b, generator=g, dtype=torch.float64) * 0.2,  # running mean
                      torch.rand(b, generator=g, dtype=torch.float64) + 0.5,  # running var
                      torch.randn(b, generator=g, dtype=torch.float64), torch.randn(b, generator=g,
                                                                                    dtype=torch.float64), 1e-5])
    points.requires_grad_(True)
    h = pair_features(points, coords, idx)  # (N, P, k, 11)
    for (weight, bias), (mean, var, gamma, beta, eps) in zip(layers, norms):
        h = F.relu(F.batch_norm(F.linear(h, weight, bias).flatten(0, 2), mean, var, gamma, beta, False, 0.0, eps))
        h = h.view(N, 12, K, -1)  # (N, P, k, m_i)
    expected = h.max(2).values
    folded = [fold_batch_norm(*layer, *norm) for layer, norm in zip(layers, norms)]
    u, v = point_projections(points, coords, *folded[0])
    got = folded_pair_mlp(u, v, idx, folded[1:])
    torch.testing.assert_close(got, expected, **EXACT)
    # The folded form updates pair tensors in place; under autograd (eval-mode BN while fine-tuning) its input
    # gradient must still equal the plain form's.
    grad = torch.randn(got.shape, generator=g, dtype=torch.float64)
    (want,) = torch.autograd.grad(expected, points, grad)
    (have,) = torch.autograd.grad(got, points, grad)
    torch.testing.assert_close(have, want, **EXACT)
