"""Fine-tuning controls: freezing by module name, holding BatchNorm statistics, the backbone's learning-rate factor."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cpnet.engine.finetune import freeze, hold_batchnorm_statistics
from cpnet.engine.optim import LRSchedule, build_optimizer


def _net() -> nn.Module:
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(3, 4, 3))
    net.add_module("bn1", nn.BatchNorm2d(4))
    net.add_module("layer1", nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)))
    net.add_module("fc", nn.Linear(4, 2))
    return net


def test_freeze_by_prefix_and_refuse_unknown_names():
    net = _net()
    assert freeze(net, ["conv1", "layer1"]) == 3 * 4 * 9 + 4 + 4 * 4 + 4 + 4 + 4
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"bn1.weight", "bn1.bias", "fc.weight", "fc.bias"}
    with pytest.raises(ValueError, match="no module 'layer9'.*bn1, conv1, fc, layer1"):
        freeze(_net(), ["layer9"])


def test_held_batchnorms_keep_their_statistics_in_training():
    net = _net().train()
    assert hold_batchnorm_statistics(net, ["layer1"]) == 1
    before = net.layer1[1].running_mean.clone()
    net[:3](torch.randn(2, 3, 8, 8))
    torch.testing.assert_close(net.layer1[1].running_mean, before)
    assert net.bn1.training and not net.layer1[1].training
    assert hold_batchnorm_statistics(_net().train(), [""]) == 2


def test_backbone_lr_mult_scales_every_group_but_the_classifier():
    net = _net()
    optimizer = build_optimizer(net, lr=0.1, weight_decay=1e-4, backbone_lr_mult=0.1)
    schedule = LRSchedule(optimizer, base_lr=0.1, steps_per_epoch=2, epochs=4, kind="step", step_size=2)
    head = {id(p) for p in net.fc.parameters()}
    for group in optimizer.param_groups:
        in_head = {id(p) for p in group["params"]} <= head
        assert group["lr"] == pytest.approx(0.1 if in_head else 0.01)
    for _ in range(4):  # two epochs: one decay
        schedule.step()
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([0.001, 0.001, 0.01, 0.01])
    with pytest.raises(ValueError, match="no trainable parameter"):
        frozen = _net()
        freeze(frozen, [""])
        build_optimizer(frozen, lr=0.1)
