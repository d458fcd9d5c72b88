"""Video tensors as point clouds: flatten (N, C, T, H, W) to frame-major points and back, and their coordinates."""

from __future__ import annotations

import torch

__all__ = ["from_points", "gather_points", "pair_features", "point_coords", "to_points"]


def to_points(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) → (N, P, C) with P = T·H·W in frame-major order (index = t·H·W + h·W + w)."""
    return x.flatten(2).transpose(1, 2)


def from_points(points: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
    """(N, P, C) frame-major points → (N, C, T, H, W); the inverse of :func:`to_points`."""
    n, _, c = points.shape
    return points.transpose(1, 2).reshape(n, c, num_frames, height, width)


def point_coords(
    num_frames: int,
    height: int,
    width: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    normalized: bool = True,
) -> torch.Tensor:
    """Space-time coordinates of every point, frame-major: (P, 3).

    ``normalized``: (t/T, h/H, w/W) as SPEC §1.3 defines them; otherwise grid steps (t, h, w).
    """
    scale = (num_frames, height, width) if normalized else (1, 1, 1)
    t = torch.arange(num_frames, device=device, dtype=dtype) / scale[0]
    h = torch.arange(height, device=device, dtype=dtype) / scale[1]
    w = torch.arange(width, device=device, dtype=dtype) / scale[2]
    grid = torch.meshgrid(t, h, w, indexing="ij")  # 3 × (T, H, W)
    return torch.stack(grid, dim=-1).reshape(-1, 3)  # (P, 3)


def gather_points(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-point rows picked by neighbour indices: values (N, P, D), idx (N, P, k) → (N, P, k, D).

    Differentiable in ``values`` (the backward is a scatter-add into the picked rows). Whole rows are picked
    from the flattened (N·P_v, D) values with ``index_select`` (4× faster on CPU than an element-wise ``gather``).
    """
    n, p, k = idx.shape
    rows = values.shape[1]
    flat = (idx + (torch.arange(n, device=idx.device) * rows)[:, None, None]).reshape(-1)  # (N·P·k,) into N·P_v
    return values.reshape(n * rows, -1).index_select(0, flat).view(n, p, k, -1)


def pair_features(points: torch.Tensor, coords: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The plain pair embedding input [c_q − c_p, x_p, x_q] for every (p, q = idx[p, j]) (SPEC §1.5).

    points (N, P, C), coords (P, 3), idx (N, P, k) → (N, P, k, 2C + 3). Memory O(N·P·k·C): the CP module uses
    the equivalent decomposed form and keeps this one as its reference.
    """
    n, p, k = idx.shape
    c = points.shape[-1]
    x_q = gather_points(points, idx)  # (N, P, k, C)
    x_p = points[:, :, None].expand(n, p, k, c)  # (N, P, k, C)
    c_all = coords.to(points.dtype)[None].expand(n, p, 3)  # (N, P, 3)
    delta = gather_points(c_all, idx) - c_all[:, :, None]  # (N, P, k, 3)
    return torch.cat([delta, x_p, x_q], dim=-1)
