"""The CP module against SPEC §1, written out independently, and its equivalent fast forms."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import cpnet.models.cp as cp_module
from cpnet.models.cp import CPModule
from cpnet.ops.knn import cross_frame_knn_dense
from cpnet.ops.pair_mlp import fused_pair_mlp
from cpnet.ops.resample import resize_bilinear_tf1

EXACT = {"rtol": 1e-9, "atol": 1e-9}  # float64: the fast forms are the same maths up to summation order


def _randomise(module: CPModule, seed: int = 0) -> CPModule:
    """Non-trivial BN parameters everywhere, so that no test passes by a zero or identity layer; the pair MLP's γ
    take both signs (the fused form takes a per-channel max or min by the sign of γ)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if "norm" in name or "bn" in name or "reduce.1" in name:
            with torch.no_grad():
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5 if name.endswith("weight")
                        else torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)
                if name.startswith("norms.") and name.endswith("weight"):
                    p.mul_(torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1)
    return module


def reference_cp(module: CPModule, s: torch.Tensor) -> torch.Tensor:
    """SPEC §1 step by step in training mode (batch statistics), from the module's parameters only."""
    n, c, t, h, w = s.shape
    x = s
    if module.reduce is not None:
        conv, bn = module.reduce
        x = F.conv3d(x, conv.weight, conv.bias)
        mean, var = x.mean((0, 2, 3, 4), keepdim=True), x.var((0, 2, 3, 4), unbiased=False, keepdim=True)
        x = (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1, 1) + bn.bias.view(1, -1, 1, 1, 1)
    r = module.shrink or 1
    x = x[..., ::r, ::r]
    hs, ws = x.shape[-2:]
    pts = x.flatten(2).transpose(1, 2)  # (N, P, C')
    p = pts.shape[1]
    idx = cross_frame_knn_dense(pts, t, module.k)
    st, sh, sw = (t, hs, ws) if module.coords == "normalized" else (1, 1, 1)
    coords = torch.tensor([[ti / st, hi / sh, wi / sw] for ti in range(t) for hi in range(hs) for wi in range(ws)],
                          dtype=s.dtype)
    rows = []
    for b in range(n):
        for i in range(p):
            for j in idx[b, i].tolist():
                rows.append(torch.cat([coords[j] - coords[i], pts[b, i], pts[b, j]]))
    feats = torch.stack(rows)  # (N·P·k, 2C'+3), ordered by (n, p, k)
    for layer, norm in zip(module.layers, module.norms):
        feats = feats @ layer.weight.t() + layer.bias
        mean, var = feats.mean(0), feats.var(0, unbiased=False)
        feats = torch.relu((feats - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias)
    pooled = feats.view(n, p, module.k, -1).max(dim=2).values  # (N, P, m)
    y = pooled.transpose(1, 2).reshape(n, -1, t, hs, ws)
    y = F.conv3d(y, module.out_conv.weight, module.out_conv.bias)
    mean, var = y.mean((0, 2, 3, 4), keepdim=True), y.var((0, 2, 3, 4), unbiased=False, keepdim=True)
    bn = module.out_bn
    y = (y - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1, 1) + bn.bias.view(1, -1, 1, 1, 1)
    return y.repeat_interleave(r, 3).repeat_interleave(r, 4)[..., :h, :w]


@pytest.mark.parametrize("kwargs", [{}, {"bottleneck": 3}, {"shrink": 2}, {"decomposed": False},
                                    {"recompute": True}, {"bottleneck": 4, "shrink": 2}, {"coords": "grid"},
                                    {"coords": "grid", "shrink": 2, "recompute": True},
                                    {"recompute": True, "chunk_size": 7}, {"recompute": True, "mlp": [5]},
                                    {"recompute": True, "mlp": [5, 4, 3]}])
def test_matches_spec_reference(kwargs: dict) -> None:
    torch.manual_seed(0)
    m = _randomise(CPModule(6, k=3, **{"mlp": [5, 4], **kwargs}).double().train())
    s = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(m(s), reference_cp(m, s))


def test_zero_output_at_init_and_gradients_everywhere_once_gamma_is_nonzero() -> None:
    m = CPModule(8, k=4, mlp=[4, 6], bottleneck=5)
    s = torch.randn(2, 8, 3, 4, 4)
    assert torch.equal(m(s), torch.zeros_like(s))
    with torch.no_grad():
        m.out_bn.weight.fill_(1.0)
    s.requires_grad_(True)
    (m(s) * torch.randn_like(s)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"
    assert s.grad.abs().sum() > 0


def _forward_backward(m: CPModule, s: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, dict, torch.Tensor]:
    s = s.clone().requires_grad_(True)
    out = m(s)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    (out * weight).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}, s.grad


@pytest.mark.parametrize("mlp", [[5, 7], [6], [5, 4, 3]])
@pytest.mark.parametrize("variant", [{"decomposed": False}, {"recompute": True}, {"block_size": 3},
                                     {"recompute": True, "chunk_size": 5}, {"recompute": True, "chunk_size": 1}])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_fast_forms_equal_plain_form_forward_backward_and_running_stats(variant: dict, mlp: list, momentum) -> None:
    """Two training steps (36 points: chunks of 5 split them unevenly); buffers include num_batches_tracked."""
    torch.manual_seed(0)
    base = _randomise(CPModule(6, k=4, mlp=mlp).double().train())
    for norm in base.norms:
        norm.momentum = momentum
    other = copy.deepcopy(base)
    for key, value in variant.items():
        setattr(other, key, value)
    for step in range(2):
        s = torch.randn(2, 6, 4, 3, 3, dtype=torch.float64)
        out_a, grads_a, gs_a = _forward_backward(base, s, seed=step)
        out_b, grads_b, gs_b = _forward_backward(other, s, seed=step)
        torch.testing.assert_close(out_a, out_b, **EXACT)
        torch.testing.assert_close(gs_a, gs_b, **EXACT)
        for name in grads_a:
            torch.testing.assert_close(grads_a[name], grads_b[name], **EXACT, msg=name)
        for (name, a), b in zip(base.named_buffers(), other.buffers()):
            torch.testing.assert_close(a, b, **EXACT, msg=name)  # updated once per step, as nn.BatchNorm1d does
        base.zero_grad(), other.zero_grad()


@pytest.mark.parametrize("mlp,fused", [([5], True), ([5, 4], True), ([5, 4, 3], False)])
def test_recompute_runs_the_fused_mlp_only_when_training_with_grad(monkeypatch, mlp: list, fused: bool) -> None:
    calls = []
    monkeypatch.setattr(cp_module, "fused_pair_mlp", lambda *a, **kw: calls.append(1) or fused_pair_mlp(*a, **kw))
    m = CPModule(6, k=2, mlp=mlp, recompute=True).train()
    s = torch.randn(2, 6, 2, 3, 3)
    m(s)
    assert len(calls) == int(fused)
    with torch.no_grad():
        m(s)
        m.eval()(s)
    assert len(calls) == int(fused)


@pytest.mark.parametrize("mlp", [[5], [5, 4], [5, 4, 3]])
def test_eval_mode_folds_the_pair_mlp_batch_norms(monkeypatch, mlp: list) -> None:
    """Eval output equals the unfolded (plain) form's, and no pair-MLP BatchNorm runs unless ``fold_bn`` is off. A
    hook on a BatchNorm does not change the path (profiling and visualisation hook modules): hooks observe, the
    module's declared settings choose the maths."""
    torch.manual_seed(0)
    m = _randomise(CPModule(6, k=3, mlp=mlp, bottleneck=4).double().train())
    s = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    m(s)  # non-trivial running statistics
    plain = copy.deepcopy(m).eval()
    plain.decomposed = False
    m.eval()
    calls = []
    batch_norm = F.batch_norm
    monkeypatch.setattr(F, "batch_norm", lambda *a, **kw: calls.append(1) or batch_norm(*a, **kw))
    torch.testing.assert_close(m(s), plain(s), **EXACT)
    folded_calls = len(calls)
    assert folded_calls == 2 + 2 + len(mlp)  # reduce + out BN, and for the plain module those plus its MLP's
    handle = m.norms[0].register_forward_pre_hook(lambda *_: None)
    assert m.pair_mlp_path() == "folded"
    torch.testing.assert_close(m(s), plain(s), **EXACT)
    handle.remove()
    assert len(calls) == 2 * folded_calls  # the hooked module still folds
    m.fold_bn = False
    assert m.pair_mlp_path() == "gathered"
    torch.testing.assert_close(m(s), plain(s), **EXACT)
    assert len(calls) - 2 * folded_calls == 2 + len(mlp) + 2 + len(mlp)


@pytest.mark.parametrize("settings,mode,grad,path", [
    ({"decomposed": False, "recompute": True}, "eval", True, "concatenated"),
    ({}, "eval", True, "folded"),
    ({"recompute": True}, "eval", True, "folded"),
    ({"fold_bn": False}, "eval", False, "gathered"),
    ({"fold_bn": False, "recompute": True}, "eval", True, "checkpointed"),
    ({}, "train", True, "gathered"),
    ({"recompute": True}, "train", False, "gathered"),
    ({"recompute": True}, "train", True, "fused"),
    ({"recompute": True, "mlp": [5, 4, 3]}, "train", True, "checkpointed"),
])
def test_pair_mlp_path_follows_declared_state(settings: dict, mode: str, grad: bool, path: str) -> None:
    m = CPModule(6, k=2, **{"mlp": [5, 4], **settings})
    m.train(mode == "train")
    with torch.set_grad_enabled(grad):
        assert m.pair_mlp_path() == path
    assert path in cp_module.PAIR_MLP_PATHS


@pytest.mark.parametrize("kwargs", [{}, {"bottleneck": 3, "shrink": 2}, {"shrink": 2, "resample": "bilinear_tf1"}])
def test_trace_keeps_what_the_forward_computes(kwargs: dict) -> None:
    """The public search methods and the trace agree with the forward: same proposals, grid and output."""
    torch.manual_seed(0)
    m = _randomise(CPModule(6, k=3, mlp=[5, 4], **kwargs).double().train())
    s = torch.randn(2, 6, 3, 5, 6, dtype=torch.float64)
    m(s)
    m.eval()
    trace = m.trace(s)
    points, idx, grid = m.search(s)
    assert grid == trace.grid == m.search_grid(s) and tuple(m.search_features(s).shape[2:]) == grid
    assert torch.equal(idx, trace.neighbours) and torch.equal(points, trace.points)
    assert trace.pair_activations.shape == (2 * idx.shape[1] * 3, 4)
    torch.testing.assert_close(trace.output, m(s), **EXACT)
    assert trace.search_output.shape == (2, 6, *grid)


def test_shrink_searches_the_subsampled_grid_and_repeats_back() -> None:
    torch.manual_seed(0)
    full = _randomise(CPModule(4, k=2, mlp=[3]).double().eval())
    shrunk = copy.deepcopy(full)
    shrunk.shrink = 2
    s = torch.randn(1, 4, 2, 5, 6, dtype=torch.float64)
    expected = full(s[..., ::2, ::2]).repeat_interleave(2, 3).repeat_interleave(2, 4)[..., :5, :6]
    torch.testing.assert_close(shrunk(s), expected)
    assert shrunk(s).shape == s.shape


def test_bilinear_tf1_resamples_the_search_grid_down_and_the_output_up_like_tf() -> None:
    """The released models' shrink: TF1 bilinear to (H // 2, W // 2) (at factor 2 exactly the even pixels) and
    back to (H, W) after the output BN."""
    torch.manual_seed(0)
    full = _randomise(CPModule(4, k=2, mlp=[3]).double().eval())
    shrunk = copy.deepcopy(full)
    shrunk.shrink, shrunk.resample = 2, "bilinear_tf1"
    s = torch.randn(1, 4, 2, 6, 8, dtype=torch.float64)
    small = full(s[..., ::2, ::2])  # (1, 4, 2, 3, 4): the search on the even pixels
    torch.testing.assert_close(shrunk(s), resize_bilinear_tf1(small, (6, 8)))
    torch.testing.assert_close(shrunk(s)[..., 1, 1], (small[..., 0, 0] + small[..., 1, 0] + small[..., 0, 1]
                                                      + small[..., 1, 1]) / 4)
    odd = torch.randn(1, 4, 2, 7, 5, dtype=torch.float64)  # odd sizes: TF's floor(H / 2) grid, interpolated
    torch.testing.assert_close(shrunk(odd), resize_bilinear_tf1(full(resize_bilinear_tf1(odd, (3, 2))), (7, 5)))
    with pytest.raises(ValueError, match="resample must be 'subsample' or 'bilinear_tf1'"):
        CPModule(4, k=2, mlp=[3], resample="nearest")


@pytest.mark.parametrize(
    "shape,match",
    [((2, 6, 3, 3), r"\(N, 6, T, H, W\)"), ((2, 5, 2, 3, 3), r"\(N, 6, T, H, W\).*\(2, 5, 2, 3, 3\)"),
     ((1, 6, 1, 4, 4), "T >= 2, got T=1"), ((1, 6, 2, 2, 2), "k=5 .* 4 points")],
)
def test_bad_input_errors(shape: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CPModule(6, k=5, mlp=[4])(torch.randn(*shape))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="mlp"):
        CPModule(4, k=2, mlp=[])
    with pytest.raises(ValueError, match="k must be"):
        CPModule(4, k=0, mlp=[2])
    with pytest.raises(ValueError, match="chunk_size must be"):
        CPModule(4, k=2, mlp=[2], chunk_size=0)
    with pytest.raises(ValueError, match="coords must be"):
        CPModule(4, k=2, mlp=[2], coords="pixels")


@pytest.mark.cuda
@pytest.mark.parametrize("kwargs", [{}, {"recompute": True}, {"recompute": True, "chunk_size": 5},
                                    {"bottleneck": 4, "shrink": 2, "resample": "bilinear_tf1"},
                                    {"recompute": True, "mlp": [5, 4, 3]}, {"decomposed": False}])
def test_cuda_matches_cpu_forward_backward(kwargs: dict) -> None:
    """Every pair-MLP path on the GPU: output, input gradient and every parameter gradient equal the CPU's in
    float64 (the kNN then picks the same proposals), over a training and an eval step."""
    torch.manual_seed(0)
    cpu = _randomise(CPModule(6, k=4, **{"mlp": [5, 7], **kwargs}).double().train())
    gpu = copy.deepcopy(cpu).cuda()
    s = torch.randn(2, 6, 4, 5, 6, dtype=torch.float64)
    out_c, grads_c, gs_c = _forward_backward(cpu, s)
    out_g, grads_g, gs_g = _forward_backward(gpu, s.cuda())
    torch.testing.assert_close(out_g.cpu(), out_c, **EXACT)
    torch.testing.assert_close(gs_g.cpu(), gs_c, **EXACT)
    for name in grads_c:
        torch.testing.assert_close(grads_g[name].cpu(), grads_c[name], **EXACT, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(gpu.eval()(s.cuda()).cpu(), cpu.eval()(s), **EXACT)


@pytest.mark.parametrize("device,dtype", [("cpu", torch.bfloat16),
                                          pytest.param("cuda", torch.float16, marks=pytest.mark.cuda),
                                          pytest.param("cuda", torch.bfloat16, marks=pytest.mark.cuda)])
@pytest.mark.parametrize("recompute", [False, True])
def test_autocast_forward_backward_is_finite_and_near_float32(device: str, dtype: torch.dtype, recompute: bool) -> None:
    """Mixed precision as training runs it, the fused recompute path included (its backward once met a float32
    gradient in a low-precision buffer): finite outputs and gradients, close to float32 (rounding may swap
    near-tie proposals, so the tolerance is loose)."""
    torch.manual_seed(0)
    m = _randomise(CPModule(16, k=4, mlp=[16, 16], recompute=recompute)).to(device).train()
    s = torch.randn(2, 16, 4, 7, 7, device=device)
    ref = m(s)
    with torch.autocast(device, dtype=dtype):
        out = m(s.clone().requires_grad_(True))
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (out.float() - ref).abs().mean() < 0.1 * ref.abs().mean()
