"""Non-local block and its attention op (the SMART block: tests/models/test_smart.py)."""

from __future__ import annotations

import pytest
import torch

from cpnet.models.nonlocal_block import NonLocalBlock
from cpnet.ops.attention import embedded_gaussian_attention


def test_attention_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    theta, phi, val = (torch.randn(2, 3, n, generator=g, dtype=torch.float64) for n in (5, 4, 4))
    out = embedded_gaussian_attention(theta, phi, val)
    for b in range(2):
        for p in range(5):
            scores = torch.stack([theta[b, :, p] @ phi[b, :, q] for q in range(4)])
            w = torch.exp(scores) / torch.exp(scores).sum()
            torch.testing.assert_close(out[b, :, p], sum(w[q] * val[b, :, q] for q in range(4)))


def test_attention_shape_errors():
    with pytest.raises(ValueError, match="expected \\(N, C, P\\) tensors"):
        embedded_gaussian_attention(torch.zeros(2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="must share N and C"):
        embedded_gaussian_attention(torch.zeros(1, 2, 5), torch.zeros(1, 2, 4), torch.zeros(1, 2, 3))


@pytest.mark.parametrize("pool, hw", [(True, (5, 7)), (True, (1, 1)), (False, (3, 2))])
def test_nonlocal_identity_at_init_and_attends_across_frames(pool, hw):
    torch.manual_seed(0)
    block = NonLocalBlock(8, pool=pool)
    x = torch.randn(2, 8, 3, *hw)
    assert torch.equal(block(x), x)  # γ = β = 0: a fresh block adds exactly nothing
    torch.nn.init.ones_(block.bn.weight)
    block.eval()
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    # Softmax over all T·H·W positions: changing frame 0 changes the response at frame 2.
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    assert not torch.allclose(block(x2)[:, :, 2], y[:, :, 2])


def test_nonlocal_uses_half_channels():
    block = NonLocalBlock(16)
    assert block.theta.out_channels == block.phi.out_channels == block.g.out_channels == 8
    assert block.out.weight.shape == (16, 8, 1, 1, 1)
