"""Cross-frame kNN: against a brute-force loop, dense == blocked, and every argument error."""

from __future__ import annotations

import itertools

import pytest
import torch

from cpnet.ops.knn import cross_frame_knn, cross_frame_knn_dense
from tests.ops.native_helpers import NEEDS_CC


def brute_force_knn(x: torch.Tensor, num_frames: int, k: int) -> torch.Tensor:
    """One point at a time, one candidate at a time: the definition of SPEC §1.4, written as plainly as possible."""
    n, p, _ = x.shape
    hw = p // num_frames
    out = torch.empty((n, p, k), dtype=torch.long)
    for b, i in itertools.product(range(n), range(p)):
        cands = [(float(((x[b, i] - x[b, j]) ** 2).sum()), j) for j in range(p) if j // hw != i // hw]
        cands.sort()
        out[b, i] = torch.tensor([j for _, j in cands[:k]])
    return out


CASES = [  # (N, T, H, W, C, k)
    (1, 2, 1, 1, 3, 1),
    (2, 2, 2, 3, 4, 6),  # k = (T-1)·H·W: every other-frame point
    (1, 3, 2, 2, 5, 4),
    (2, 4, 3, 2, 3, 7),
    (1, 5, 2, 3, 8, 12),
    (1, 8, 2, 2, 6, 3),
]


@pytest.mark.parametrize("n,t,h,w,c,k", CASES)
@pytest.mark.parametrize("block_size", [None, 1, 3, 5])
@pytest.mark.parametrize("method", ["rows", "pairs"])
@pytest.mark.parametrize("backend", ["torch", pytest.param("native", marks=NEEDS_CC)])
def test_knn_matches_brute_force(
    n: int, t: int, h: int, w: int, c: int, k: int, block_size: int | None, method: str, backend: str
) -> None:
    gen = torch.Generator().manual_seed(n * 1000 + t * 100 + h * 10 + k)
    x = torch.randn(n, t * h * w, c, generator=gen, dtype=torch.float64)
    expected = brute_force_knn(x, t, k)
    assert torch.equal(cross_frame_knn(x, t, k, block_size=block_size, method=method, backend=backend), expected)
    assert torch.equal(cross_frame_knn_dense(x, t, k), expected)


@pytest.mark.parametrize("t,hw,k", [(12, 49, 12), (7, 64, 8), (32, 9, 4)])
def test_blocked_equals_dense_at_larger_sizes(t: int, hw: int, k: int) -> None:
    # Large enough rows to exercise the grouped top-k pre-filter (rows of >= 64·k elements).
    gen = torch.Generator().manual_seed(t)
    x = torch.randn(2, t * hw, 16, generator=gen, dtype=torch.float64)
    dense = cross_frame_knn_dense(x, t, k)
    for block_size in (None, 17, hw):
        for method in ("rows", "pairs"):
            assert torch.equal(cross_frame_knn(x, t, k, block_size=block_size, method=method, backend="torch"), dense)


def _distances(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Squared distances from each point to its returned neighbours: (N, P, C), (N, P, k) → (N, P, k)."""
    n, p, k = idx.shape
    nb = torch.gather(x, 1, idx.reshape(n, p * k, 1).expand(-1, -1, x.shape[2])).view(n, p, k, -1)  # (N, P, k, C)
    return ((x[:, :, None] - nb) ** 2).sum(-1)


def test_float32_neighbours_are_in_other_frames_and_sorted() -> None:
    t, hw, k = 4, 25, 10
    x = torch.randn(3, t * hw, 8)
    idx = cross_frame_knn(x, t, k)
    assert idx.dtype == torch.int64 and idx.shape == (3, t * hw, k)
    own_frame = torch.arange(t * hw)[None, :, None] // hw
    assert (idx // hw != own_frame).all()
    d = _distances(x, idx)
    assert (d[..., 1:] >= d[..., :-1] - 1e-4).all()
    # float32 may order near-ties differently from the oracle; the distances must agree.
    torch.testing.assert_close(d, _distances(x, cross_frame_knn_dense(x, t, k)), atol=1e-4, rtol=1e-4)


def test_no_autograd_graph_and_half_input() -> None:
    x = torch.randn(1, 2 * 9, 4, requires_grad=True)
    idx = cross_frame_knn(x, 2, 3)
    assert not idx.requires_grad
    assert torch.equal(cross_frame_knn(x.detach().double(), 2, 3), cross_frame_knn_dense(x.detach().double(), 2, 3))
    half = cross_frame_knn(x.detach().to(torch.bfloat16), 2, 3)
    assert half.shape == (1, 18, 3)


@pytest.mark.parametrize(
    "x,t,k,match",
    [
        (torch.zeros(4, 3), 2, 1, "rank 2"),
        (torch.zeros(1, 4, 3, 2), 2, 1, "rank 4"),
        (torch.zeros(1, 4, 3, dtype=torch.long), 2, 1, "torch.int64"),
        (torch.zeros(1, 5, 3), 2, 1, "P=5 .*num_frames=2"),
        (torch.zeros(1, 4, 3), 1, 1, "num_frames=1"),
        (torch.zeros(1, 4, 3), 2, 0, "k=0"),
        (torch.zeros(1, 4, 3), 2, 3, "k=3 .*2"),
        (torch.zeros(1, 12, 3), 3, 9, r"k=9 .*\(T-1\)·H·W = 8"),
    ],
)
def test_errors_name_the_bad_value(x: torch.Tensor, t: int, k: int, match: str) -> None:
    for fn in (cross_frame_knn, cross_frame_knn_dense):
        with pytest.raises(ValueError, match=match):
            fn(x, t, k)


def test_bad_block_size_and_method() -> None:
    with pytest.raises(ValueError, match="block_size"):
        cross_frame_knn(torch.zeros(1, 4, 2), 2, 1, block_size=0)
    with pytest.raises(ValueError, match="method must be"):
        cross_frame_knn(torch.zeros(1, 4, 2), 2, 1, method="fast")


def test_auto_method_picks_by_points_per_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    import cpnet.ops.knn as knn

    calls = []
    monkeypatch.setattr(knn, "_knn_rows", lambda *a: calls.append("rows"))
    monkeypatch.setattr(knn, "_knn_pairs", lambda *a: calls.append("pairs"))
    knn.cross_frame_knn(torch.zeros(1, knn.PAIRS_MIN_POINTS - 2, 3), 2, 1, backend="torch")
    knn.cross_frame_knn(torch.zeros(1, knn.PAIRS_MIN_POINTS, 3), 2, 1, backend="torch")
    assert calls == ["rows", "pairs"]


@NEEDS_CC
def test_auto_method_native_thresholds_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    import cpnet.ops.knn as knn

    calls = []
    monkeypatch.setattr(knn, "_knn_rows", lambda *a: calls.append("rows"))
    monkeypatch.setattr(knn, "_knn_pairs", lambda *a: calls.append("pairs"))
    monkeypatch.setattr(knn, "_knn_rows_native", lambda *a: calls.append("native rows"))
    monkeypatch.setattr(knn, "_knn_pairs_native", lambda *a: calls.append("native pairs"))
    knn.cross_frame_knn(torch.zeros(1, knn.PAIRS_MIN_POINTS_NATIVE - 2, 3), 2, 1, backend="native")
    knn.cross_frame_knn(torch.zeros(1, knn.PAIRS_MIN_POINTS_NATIVE, 3), 2, 1, backend="native")
    # The native search returning None (a list left short by non-finite scores) falls back to torch.
    assert calls == ["native rows", "rows", "native pairs", "pairs"]


@pytest.mark.cuda
@pytest.mark.parametrize("block_size", [None, 1, 7])
@pytest.mark.parametrize("method", ["rows", "pairs"])
def test_cuda_matches_cpu(block_size: int | None, method: str) -> None:
    x = torch.randn(2, 6 * 16, 8, dtype=torch.float64)
    idx = cross_frame_knn(x.cuda(), 6, 5, block_size=block_size, method=method)
    assert idx.is_cuda and idx.dtype == torch.int64
    assert torch.equal(idx.cpu(), cross_frame_knn_dense(x, 6, 5))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_low_precision_neighbours_are_in_other_frames_and_near(dtype: torch.dtype) -> None:
    """What autocast hands the kNN on a GPU: the neighbours' float64 distances match the dense search's up to the
    dtype's rounding (near-ties may swap)."""
    t, hw, k = 4, 49, 8
    x = torch.randn(2, t * hw, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    idx = cross_frame_knn(x.to("cuda", dtype), t, k).cpu()
    assert (idx // hw != torch.arange(t * hw)[None, :, None] // hw).all()
    tol = {torch.float32: 1e-4, torch.float16: 0.05, torch.bfloat16: 0.3}[dtype]
    torch.testing.assert_close(_distances(x, idx), _distances(x, cross_frame_knn_dense(x, t, k)), atol=tol, rtol=tol)
