"""ARTNet's SMART block as the released prototxt builds it, its place in artnet_r18, and the count it gives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cpnet.models.params import SUPPLEMENT_TABLE1, count_weights_paper
from cpnet.models.registry import create_model
from cpnet.models.smart import ChannelPairPool, SMARTBlock

ARTNET_R18 = 33.55  # documented in cpnet.models.smart and the artnet_r18 docstring (2^20 units, truncated)


def _full(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name)


@pytest.mark.parametrize("channels", [64, 128, 256])
def test_block_widths(channels):
    with torch.device("meta"):
        block = SMARTBlock(channels, channels)
    c = channels
    assert block.appearance.weight.shape == (c, c, 1, 3, 3) and block.appearance.padding == (0, 1, 1)
    assert block.relation.weight.shape == (c, c, 3, 3, 3) and block.relation.padding == (1, 1, 1)
    assert block.appearance_bn.num_features == block.relation_bn.num_features == c
    assert block.pool_bn.num_features == c // 2
    assert block.fusion.weight.shape == (c, c + c // 2, 1, 1, 1)  # concatenation of 1.5C back to C
    assert all(m.bias is None for m in (block.appearance, block.relation, block.fusion))
    # 9C² + 27C² + 1.5C² learned weights against the 27C² of the 3×3×3 conv it replaces
    assert count_weights_paper(block) == int(37.5 * c * c)


def test_stem_block_is_strided_per_frame():
    with torch.device("meta"):
        stem = SMARTBlock(3, 64, (3, 7, 7), (1, 2, 2))
    assert stem.appearance.weight.shape == (64, 3, 1, 7, 7) and stem.appearance.stride == (1, 2, 2)
    assert stem.relation.weight.shape == (64, 3, 3, 7, 7) and stem.relation.stride == (1, 2, 2)
    assert stem.fusion.weight.shape == (64, 96, 1, 1, 1)


def test_pooling_is_fixed_half_weights_on_channel_pairs():
    pool = ChannelPairPool(6)
    assert pool.weight.shape == (3, 2, 1, 1, 1) and torch.equal(pool.weight, torch.full_like(pool.weight, 0.5))
    assert list(pool.parameters()) == [] and "weight" not in pool.state_dict()  # a non-persistent buffer
    x = torch.randn(2, 6, 3, 4, 5)
    torch.testing.assert_close(pool(x), 0.5 * (x[:, 0::2] + x[:, 1::2]))  # (0,1), (2,3), (4,5)
    with pytest.raises(ValueError, match="even"):
        ChannelPairPool(5)
    with pytest.raises(ValueError, match="even"):
        SMARTBlock(4, 7)


def test_forward_matches_the_prototxt_graph_and_pooling_gets_no_gradient():
    torch.manual_seed(0)
    block = SMARTBlock(4, 6, (3, 3, 3), (1, 2, 2))
    for bn in (block.appearance_bn, block.relation_bn, block.pool_bn):  # non-trivial eval-mode BNs
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    block.eval()
    x = torch.randn(2, 4, 5, 9, 9, requires_grad=True)
    y = block(x)
    assert y.shape == (2, 6, 5, 5, 5)  # spatial stride 2, no temporal stride

    # conv1 / conv1_bn ‖ conv1_t / conv1_t_bn → energy (power 2) → pooling (group C/2, 0.5) → pooling_bn → concat,
    # ReLU → redu, written out with functional ops.
    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    app = bn(block.appearance_bn, F.conv3d(x, block.appearance.weight, stride=(1, 2, 2), padding=(0, 1, 1)))
    energy = bn(block.relation_bn, F.conv3d(x, block.relation.weight, stride=(1, 2, 2), padding=1)) ** 2
    pooled = bn(block.pool_bn, (energy[:, 0::2] + energy[:, 1::2]) / 2)
    want = F.conv3d(torch.cat([app, pooled], 1).clamp(min=0), block.fusion.weight)
    torch.testing.assert_close(y, want)

    y.pow(2).sum().backward()
    assert block.pool.weight.grad is None and not block.pool.weight.requires_grad
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_artnet_r18_places_smart_where_the_prototxt_does():
    model = _full("artnet_r18")
    smart = {name for name, m in model.named_modules() if isinstance(m, SMARTBlock)}
    assert smart == {"conv1", *(f"layer{s}.{b}.conv2" for s in (1, 2, 3) for b in (0, 1))}
    for s in (1, 2, 3, 4):  # every first conv, and res5's second convs: plain 3×3×3
        for b in (0, 1):
            block = getattr(model, f"layer{s}")[b]
            assert block.conv1.weight.shape[2:] == (3, 3, 3)
            if s == 4:
                assert block.conv2.weight.shape[2:] == (3, 3, 3)
    assert not any("pool.weight" in name for name, _ in model.named_parameters())


def test_artnet_r18_count_is_c3d_plus_the_smart_blocks_not_the_printed_figure():
    artnet, c3d = count_weights_paper(_full("artnet_r18")), count_weights_paper(_full("c3d_r18"))
    # Each SMART block replaces a 27C² conv by 37.5C²; the stem adds a 1×7×7 appearance conv and the 96→64 fusion.
    blocks = sum(2 * int(10.5 * c * c) for c in (64, 128, 256))
    stem = 64 * 3 * 7 * 7 + 96 * 64
    assert artnet - c3d == blocks + stem == 1_821_888
    assert math.floor(artnet / 2**20 * 100) / 100 == ARTNET_R18
    assert SUPPLEMENT_TABLE1["artnet_r18"] == SUPPLEMENT_TABLE1["c3d_r18"] == 31.81  # what the supplement prints


def test_tiny_artnet_forward_backward():
    torch.manual_seed(0)
    model = create_model("artnet_r18", num_classes=3, width=4, stem_kernel=3, stem_stride=1)
    logits = model(torch.randn(2, 3, 3, 16, 16))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    pools = [m for m in model.modules() if isinstance(m, ChannelPairPool)]
    assert len(pools) == 7 and all(p.weight.grad is None and bool((p.weight == 0.5).all()) for p in pools)
