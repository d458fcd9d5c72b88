"""Cross-frame k-nearest-neighbour search in feature space (SPEC §1.4).

For every point p of a clip (P = T·H·W points, frame-major), find the k points q with the smallest squared L2
distance ‖x_p − x_q‖² among the points of *other* frames. The search is never differentiated.

Two implementations:

- :func:`cross_frame_knn_dense`, the plain formulation: the whole (N, P, P) distance matrix, the same-frame blocks
  masked, one top-k. Memory O(N·P²). Kept as the test oracle and the benchmark baseline.
- :func:`cross_frame_knn`, the one models use, never builds the (N, P, P) matrix. Two layouts:
  - "pairs": the distance is symmetric, so the frames are bisected recursively and each block
    [frames lo..mid) × [mid..hi) is scored once and read both ways: along the rows for the first half's
    candidates in the second, down the columns for the second half's in the first. Only cross-frame distances
    are computed, half of the full matmul.
  - "rows": row blocks against all P points with each row's own frame left out. Twice the matmul of "pairs",
    but fewer, longer reads: faster for small clips.
  And two ways to reduce a block to the k best (``backend``):
  - "native" (CPU): blocks are computed in cache-sized tiles of dot products, each folded by compiled C
    (:mod:`cpnet.ops.native`) into running k-best lists of its rows and columns; the norms are applied there.
  - "torch" (CUDA, export tracing, or no C compiler): blocks of distances (the squared norms ride inside the
    matmul as two extra feature columns) in one reused buffer, torch.topk on rows pre-filtered by group maxima
    (:func:`_topk_last`); candidates kept per bisection level and merged once.
  Peak extra memory is O(N·block·P) for "torch" and one tile plus the (N, P, k) lists for "native".

Tie order: among equal distances the order (and, at the k-th place, the choice) depends on the backend (the first
seen wins in "native", whatever ``torch.topk`` returns in "torch") and on the device. Use float64 input when an
exact, reproducible neighbour set matters.
"""

from __future__ import annotations

import torch

from cpnet.ops import native

__all__ = ["cross_frame_knn", "cross_frame_knn_dense", "check_knn_args"]


def check_knn_args(x: torch.Tensor, num_frames: int, k: int) -> tuple[int, int, int]:
    """Validate the kNN arguments; returns (N, P, points per frame). Raises ValueError naming the bad value."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (N, P, C), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (N, P, C) (rank 3), got rank {x.dim()} with shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    n, p, _ = x.shape
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(
            f"num_frames must be an integer >= 2 (the search runs across frames), got num_frames={num_frames!r}"
        )
    if p % num_frames != 0:
        raise ValueError(f"P={p} points is not divisible by num_frames={num_frames}; expected P = T·H·W")
    hw = p // num_frames
    max_k = (num_frames - 1) * hw
    if not isinstance(k, int) or k < 1 or k > max_k:
        raise ValueError(
            f"k={k!r} cannot be satisfied: expected 1 <= k <= (T-1)·H·W = {max_k} "
            f"(T={num_frames} frames of {hw} points each)"
        )
    return n, p, hw


def _search_dtype(x: torch.Tensor) -> torch.dtype:
    # Half-precision distances lose the ranking; search in float32 at least.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@torch.no_grad()
def cross_frame_knn_dense(x: torch.Tensor, num_frames: int, k: int) -> torch.Tensor:
    """Plain formulation: full (N, P, P) squared distances, same-frame entries masked, top-k.

    x: (N, P, C) → int64 (N, P, k) indices into P. Memory O(N·P²): the test oracle and benchmark baseline.
    """
    n, p, hw = check_knn_args(x, num_frames, k)
    x = x.detach().to(_search_dtype(x))
    sq = (x * x).sum(-1)  # (N, P)
    dist = sq[:, :, None] + sq[:, None, :] - 2 * torch.bmm(x, x.transpose(1, 2))  # (N, P, P)
    frame = torch.arange(p, device=x.device) // hw  # (P,)
    same = frame[:, None] == frame[None, :]  # (P, P)
    dist.masked_fill_(same, float("inf"))
    return dist.topk(k, dim=-1, largest=False).indices


def _augment(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows L = [x, ‖x‖², 1] and columns R = [2x, −1, −‖x‖²] so that L_p·R_q = −‖x_p − x_q‖².

    x: (N, P, C) → two (N, P, C + 2) tensors. The negated distance lets top-k take the largest values.
    """
    sq = (x * x).sum(-1, keepdim=True)  # (N, P, 1)
    ones = torch.ones_like(sq)
    left = torch.cat([x, sq, ones], dim=-1)  # (N, P, C+2)
    right = torch.cat([2 * x, -ones, -sq], dim=-1)  # (N, P, C+2)
    return left, right


def _group_size(length: int, k: int, min_groups: int) -> int:
    """Largest g <= 16 dividing ``length`` that leaves at least ``min_groups`` groups; 1 means no grouping."""
    for g in range(16, 1, -1):
        if length % g == 0 and length // g >= min_groups:
            return g
    return 1


def _topk_last(score: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k along the last dim of a (N, A, L) tensor (values, positions), pre-filtered by group maxima.

    The L positions form G = L/g groups of g, group j holding positions j, j+G, j+2G, … (strided so the max over
    a group is an element-wise max of g contiguous slabs). The k largest elements lie in the k groups with the
    largest maxima (an element outside them is beaten by those k maxima), so a cheap max, a top-k over G group
    maxima and a top-k over the k·g gathered candidates replace a top-k over all L.
    """
    n, a, length = score.shape
    # torch's CPU top-k costs ~1 ns per element on rows of at least 64·k elements (a partial sort) and ~4 ns on
    # shorter ones, so grouping pays only while the group maxima still form such a long row.
    g = _group_size(length, k, min_groups=ROW_MIN_GROUPS * k)
    if g == 1:
        return score.topk(k, dim=2)
    groups = length // g
    gmax = score.view(n, a, g, groups).amax(2)  # (N, A, G)
    gi = gmax.topk(k, dim=2).indices  # (N, A, k)
    offsets = torch.arange(g, device=score.device) * groups  # (g,)
    cand = (gi[..., None] + offsets).flatten(2)  # (N, A, k·g) positions along L
    val, pos = score.gather(2, cand).topk(k, dim=2)  # (N, A, k)
    return val, cand.gather(2, pos)


def _topk_columns(score: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k down the columns of a (N, L, B) tensor, returned row-major as (N, B, k) values and positions.

    Same group pre-filter as :func:`_topk_last`; the group maxima are a max over contiguous row slabs, and only
    they (1/g of the block) are transposed, so no strided top-k over the whole block is needed.
    """
    n, length, b = score.shape
    # Down the columns the alternative is a transposed copy of the whole block, so group whenever it leaves
    # enough groups (4·k) for the pre-filter to discard most of them.
    g = _group_size(length, k, min_groups=4 * k)
    if g == 1:
        val, pos = score.transpose(1, 2).contiguous().topk(k, dim=2)  # (N, B, k)
        return val, pos
    groups = length // g
    gmax = score.view(n, g, groups, b).amax(1).transpose(1, 2).contiguous()  # (N, B, G)
    gi = gmax.topk(k, dim=2).indices  # (N, B, k)
    offsets = torch.arange(g, device=score.device) * groups  # (g,)
    cand = (gi[..., None] + offsets).flatten(2)  # (N, B, k·g) positions along L
    val, pos = score.transpose(1, 2).gather(2, cand).topk(k, dim=2)  # (N, B, k)
    return val, cand.gather(2, pos)


def _bmm_into(a: torch.Tensor, b: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for (N, R, D) × (N, D, B), written into the front of the flat ``buffer`` (reused across blocks).

    Traced for export, a plain bmm: the exporters do not translate ``out=``, and a traced graph owns its memory.
    """
    if torch.jit.is_tracing():
        return torch.bmm(a, b)
    n, r, _ = a.shape
    return torch.bmm(a, b, out=buffer[: n * r * b.shape[2]].view(n, r, b.shape[2]))


def _frame_halves(num_frames: int) -> list[tuple[int, int, int, int]]:
    """Bisect the frame range recursively: (lo, mid, hi, level) for every split. The cross blocks
    [lo, mid) × [mid, hi) cover each pair of distinct frames exactly once and are as square as possible; a frame
    takes part in at most one block per level."""
    splits, stack = [], [(0, num_frames, 0)]
    while stack:
        lo, hi, level = stack.pop()
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        splits.append((lo, mid, hi, level))
        stack += [(lo, mid, level + 1), (mid, hi, level + 1)]
    return splits


# Default memory budget for one block of distances, in elements (32 Mi float32 = 128 MiB).
_BLOCK_ELEMENTS = 1 << 25
ROW_MIN_GROUPS = 64
# "auto" scores each frame pair once (method "pairs") from this many points per clip on. Below, the pairs
# method's many small blocks cost more than the matmul it saves, and one long top-k per row ("rows") wins.
# torch backend, measured at 8 frames of 8×8: rows 2× faster; from 8 frames of 14×14 on, pairs faster at 32–256
# channels. Native backend (one thread, clips tiled together): pairs 1.05–1.5× faster from 256 points per clip
# (4×8×8 to 8×16×8), even at 128.
PAIRS_MIN_POINTS = 1024
PAIRS_MIN_POINTS_NATIVE = 256
# Scores per native tile (float32: 2 MiB, about a core's L2 here).
NATIVE_TILE_ELEMENTS = 1 << 19


@torch.no_grad()
def cross_frame_knn(
    x: torch.Tensor,
    num_frames: int,
    k: int,
    block_size: int | None = None,
    method: str = "auto",
    backend: str | None = None,
) -> torch.Tensor:
    """Indices of each point's k nearest neighbours among the points of other frames.

    Args:
        x: (N, P, C) features, P = T·H·W points in frame-major order (index = t·H·W + h·W + w).
        num_frames: T.
        k: neighbours per point, 1 <= k <= (T − 1)·H·W.
        block_size: query rows per distance block; peak extra memory is about N·block_size·P distances.
            Default: as many rows as keep a block within 128 MiB (float32), and at least one frame.
        method: "rows" scores row blocks against every point with their own frames left out (cheapest for small
            clips); "pairs" scores each pair of frames once and reads it both ways (half the matmul: cheapest for
            larger clips); "auto" picks by points per clip (pairs from 256 with the native backend, 1,024 with
            torch).
        backend: how CPU blocks are reduced to the k best: "native" folds them into running lists in compiled C
            (:mod:`cpnet.ops.native`), "torch" uses torch.topk, "auto" (default) native when it builds. None reads
            ``CPNET_KNN_BACKEND``. CUDA tensors, and tracing for export, always use torch.

    Returns:
        int64 (N, P, k), sorted from nearest to farthest, on x's device. No autograd graph.
    """
    n, p, hw = check_knn_args(x, num_frames, k)
    if method not in ("auto", "rows", "pairs"):
        raise ValueError(f"method must be 'auto', 'rows' or 'pairs', got {method!r}")
    backend = native.backend_from_env() if backend is None else backend
    if backend not in native.BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(native.BACKENDS)}, got {backend!r}")
    if n == 0:  # a batch of no clips: no lists to fill (the tile and block sizes divide by N·P)
        return torch.empty((0, p, k), dtype=torch.long, device=x.device)
    if block_size is None:
        # int(): under tracing (export) the sizes are traced tensors; the row blocks are unrolled at trace time.
        block_size = int(max(hw, _BLOCK_ELEMENTS // max(1, n * p)))
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    use_native = backend != "torch" and x.device.type == "cpu" and not torch.jit.is_tracing()
    if use_native and not native.available():
        if backend == "native":
            raise RuntimeError(f"backend='native' asked for, but {native.build_error()}")
        use_native = False
    if method == "auto":
        small = PAIRS_MIN_POINTS_NATIVE if use_native else PAIRS_MIN_POINTS
        method = "pairs" if p >= small else "rows"
    x = x.detach().to(_search_dtype(x))
    if use_native:
        search = _knn_pairs_native if method == "pairs" else _knn_rows_native
        idx = search(x.contiguous(), num_frames, hw, k, block_size)
        if idx is not None:
            return idx
        # A list left short: some scores were not finite (inf/NaN features). torch.topk ranks those.
    left, right = _augment(x)  # (N, P, C+2) each
    if method == "rows":
        return _knn_rows(left, right, hw, k, block_size)
    return _knn_pairs(left, right, num_frames, hw, k, 2 * block_size)


def _knn_rows(left: torch.Tensor, right: torch.Tensor, hw: int, k: int, block_size: int) -> torch.Tensor:
    """torch backend, rows method: row blocks of whole frames (or of one frame's rows) against all P points, own
    frame masked, one (grouped) top-k per row."""
    n, p, _ = left.shape
    rows = block_size if block_size < hw else (block_size // hw) * hw  # whole frames, or part of one
    cols_t = right.transpose(1, 2)  # (N, C+2, P)
    out = torch.empty((n, p, k), dtype=torch.long, device=left.device)
    buffer = left.new_empty(n * min(rows, p) * p)  # one block, reused: no fresh pages per block
    for r0 in range(0, p, rows):
        r1 = min(r0 + rows, p)
        score = _bmm_into(left[:, r0:r1], cols_t, buffer)  # (N, R, P) = −‖x_r − x_c‖²
        for f in range(r0 // hw, (r1 - 1) // hw + 1):  # mask each row's own frame
            a, b = max(r0, f * hw) - r0, min(r1, (f + 1) * hw) - r0
            score[:, a:b, f * hw : (f + 1) * hw] = float("-inf")
        out[:, r0:r1] = _topk_last(score, k)[1]
    return out


def _knn_pairs(
    left: torch.Tensor, right: torch.Tensor, num_frames: int, hw: int, k: int, block_size: int
) -> torch.Tensor:
    """torch backend, pairs method: each pair of frames scored once, in the bisection blocks of
    :func:`_frame_halves`, read both ways with (grouped) top-k."""
    n, p, _ = left.shape
    # Every frame pair (i < j) is scored once, in the block [lo, mid) × [mid, hi) of one bisection level; a point
    # receives at most one candidate list per level, so candidates are kept per level and merged once at the end.
    splits = _frame_halves(num_frames)
    levels = 1 + max(level for *_, level in splits)
    cand_val = torch.full((levels, n, p, k), float("-inf"), dtype=left.dtype, device=left.device)  # −distance
    cand_idx = torch.zeros((levels, n, p, k), dtype=torch.long, device=left.device)

    # One block buffer, reused: fresh pages for every block would cost page faults and allocator churn.
    biggest = max(min(block_size, (mid - lo) * hw) * (hi - mid) * hw for lo, mid, hi, _ in splits)
    buffer = left.new_empty(n * biggest)
    for lo, mid, hi, level in splits:
        a0, a1, b0, b1 = lo * hw, mid * hw, mid * hw, hi * hw  # rows = frames [lo, mid), columns = [mid, hi)
        cols_t = right[:, b0:b1].transpose(1, 2)  # (N, C+2, Bc)
        col_vals, col_idx = [], []
        for r0 in range(a0, a1, block_size):
            r1 = min(r0 + block_size, a1)
            score = _bmm_into(left[:, r0:r1], cols_t, buffer)  # (N, R, Bc) = −‖x_r − x_c‖²
            kr = min(k, b1 - b0)
            v, i = _topk_last(score, kr)  # (N, R, kr): rows' nearest among the columns
            cand_val[level, :, r0:r1, :kr], cand_idx[level, :, r0:r1, :kr] = v, i + b0
            v, i = _topk_columns(score, min(k, r1 - r0))  # (N, Bc, kc): columns' nearest among these rows
            col_vals.append(v)
            col_idx.append(i + r0)
        v, i = torch.cat(col_vals, dim=2), torch.cat(col_idx, dim=2)  # (N, Bc, Σkc)
        if v.shape[2] > k:
            v, pos = v.topk(k, dim=2)
            i = i.gather(2, pos)
        cand_val[level, :, b0:b1, : v.shape[2]], cand_idx[level, :, b0:b1, : v.shape[2]] = v, i

    val = cand_val.permute(1, 2, 0, 3).reshape(n, p, levels * k)  # (N, P, levels·k)
    idx = cand_idx.permute(1, 2, 0, 3).reshape(n, p, levels * k)
    pos = val.topk(k, dim=2).indices  # (N, P, k), nearest first
    return idx.gather(2, pos)


def _running_lists(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty (N, P, k) running lists for the native backend: values −inf, indices −1."""
    n, p, _ = x.shape
    return x.new_full((n, p, k), float("-inf")), torch.full((n, p, k), -1, dtype=torch.long)


def _tile_shape(n: int, rows: int, cols: int, block_size: int) -> tuple[int, int]:
    """(clips, rows) per native tile of ``cols`` columns: a tile stays in a core's L2 cache between the matmul that
    writes it and the selection that reads it (streaming whole blocks through memory made the selection 2–3×
    slower here). Small clips are tiled all together — one matmul and one C call per tile instead of one per clip —
    when every clip still gets at least min(rows, 64) rows."""
    clips = n if NATIVE_TILE_ELEMENTS // (n * cols) >= min(rows, 64) else 1
    return clips, max(1, min(block_size, rows, NATIVE_TILE_ELEMENTS // (clips * cols)))


def _knn_rows_native(x: torch.Tensor, num_frames: int, hw: int, k: int, block_size: int) -> torch.Tensor | None:
    """native backend, rows method: tiles of rows against all points of their clips, own frame skipped in C."""
    n, p, _ = x.shape
    sq = (x * x).sum(-1)  # (N, P)
    val, idx = _running_lists(x, k)
    clips, rows = _tile_shape(n, p, p, block_size)
    buffer = x.new_empty(clips * rows * p)
    for b0 in range(0, n, clips):
        b1 = b0 + clips
        cols_t = x[b0:b1].transpose(1, 2)  # (B, C, P)
        for r0 in range(0, p, rows):
            r1 = min(r0 + rows, p)
            dot = torch.bmm(x[b0:b1, r0:r1], cols_t, out=buffer[: clips * (r1 - r0) * p].view(clips, r1 - r0, p))
            native.update(dot, sq[b0:b1], val[b0:b1], idx[b0:b1], r0, 0, rows=True, cols=False, frame_points=hw)
    return None if bool((idx[..., -1] < 0).any()) else idx


def _knn_pairs_native(x: torch.Tensor, num_frames: int, hw: int, k: int, block_size: int) -> torch.Tensor | None:
    """native backend, pairs method: the bisection blocks of :func:`_frame_halves` in cache-sized tiles, each
    folded into its rows' and its columns' lists."""
    n, p, _ = x.shape
    sq = (x * x).sum(-1)  # (N, P)
    val, idx = _running_lists(x, k)
    splits = _frame_halves(num_frames)
    shapes = [_tile_shape(n, (mid - lo) * hw, (hi - mid) * hw, 2 * block_size) for lo, mid, hi, _ in splits]
    buffer = x.new_empty(max(clips * rows * (hi - mid) * hw for (clips, rows), (_, mid, hi, _) in zip(shapes, splits)))
    for (lo, mid, hi, _), (clips, rows) in zip(splits, shapes):
        a0, a1, c0, c1 = lo * hw, mid * hw, mid * hw, hi * hw  # rows = frames [lo, mid), columns = [mid, hi)
        for b0 in range(0, n, clips):
            b1 = b0 + clips
            cols_t = x[b0:b1, c0:c1].transpose(1, 2)  # (B, C, c1 − c0)
            for r0 in range(a0, a1, rows):
                r1 = min(r0 + rows, a1)
                out = buffer[: clips * (r1 - r0) * (c1 - c0)].view(clips, r1 - r0, c1 - c0)
                dot = torch.bmm(x[b0:b1, r0:r1], cols_t, out=out)  # (B, R, c1 − c0)
                native.update(dot, sq[b0:b1], val[b0:b1], idx[b0:b1], r0, c0, rows=True, cols=True)
    return None if bool((idx[..., -1] < 0).any()) else idx
