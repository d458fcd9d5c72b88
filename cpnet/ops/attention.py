"""Embedded-Gaussian attention of the non-local block (Wang et al., CVPR 2018), as a pure function."""

from __future__ import annotations

import torch

__all__ = ["embedded_gaussian_attention"]


def embedded_gaussian_attention(theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Non-local response ``y_p = Σ_q softmax_q(θ_p · φ_q) g_q``.

    ``theta`` (N, C', P) are the query embeddings of the P positions; ``phi`` (N, C', Q) and ``g`` (N, C', Q) the
    key and value embeddings of Q positions (Q < P when φ and g were max-pooled). Returns (N, C', P).

    The softmax runs over all Q positions of the clip (every frame), unscaled as in the non-local paper's embedded
    Gaussian. The (N, P, Q) affinity matrix is materialised and kept for backward: that memory cost is what SPEC §5
    compares the CP module against, so it is deliberately not hidden behind a fused kernel.
    """
    if theta.dim() != 3 or phi.dim() != 3 or g.dim() != 3:
        raise ValueError(f"expected (N, C, P) tensors, got shapes {tuple(theta.shape)}, {tuple(phi.shape)}, "
                         f"{tuple(g.shape)}")
    if phi.shape != g.shape or theta.shape[:2] != phi.shape[:2]:
        raise ValueError(f"theta {tuple(theta.shape)}, phi {tuple(phi.shape)} and g {tuple(g.shape)} must share N and "
                         "C, and phi and g their positions")
    affinity = torch.bmm(theta.transpose(1, 2), phi)  # (N, P, C') @ (N, C', Q) -> (N, P, Q)
    weights = affinity.softmax(dim=-1)  # (N, P, Q), each row sums to 1 over the Q key positions
    return torch.bmm(g, weights.transpose(1, 2))  # (N, C', Q) @ (N, Q, P) -> (N, C', P)
