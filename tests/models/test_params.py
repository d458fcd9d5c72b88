"""Parameter counts on the real full-size models (built on the meta device: shapes only, no memory, no forward)."""

from __future__ import annotations

import math

import pytest
import torch

from cpnet.models.params import count_params, count_params_paper
from cpnet.models.registry import create_model


def _full(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _truncated(x: float) -> float:
    return math.floor(x * 100) / 100


@pytest.mark.parametrize("name, paper", [("c2d_r18", 10.84), ("c3d_r18", 31.81)])
def test_supplement_counts(name, paper):
    assert _truncated(count_params_paper(_full(name))) == paper


def test_artnet_matches_c3d_within_one_percent():
    artnet, c3d = count_params_paper(_full("artnet_r18")), count_params_paper(_full("c3d_r18"))
    assert abs(artnet - c3d) / c3d < 0.01


@pytest.mark.parametrize("name, total", [("c2d_r18", 11_689_512), ("c2d_r34", 21_797_672),
                                         ("c2d_r50", 25_557_032), ("c2d_r101", 44_549_160)])
def test_all_parameters_equal_torchvision_resnets(name, total):
    # torchvision's published ImageNet ResNet sizes: our C2D only adds a length-1 time axis to each kernel.
    assert count_params(_full(name, num_classes=1000)) == total


def test_paper_convention_counts_conv_weights_and_fc():
    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv3d(2, 4, 3))  # 216 weights; bias not counted
    model.add_module("bn", torch.nn.BatchNorm3d(4))  # not counted
    model.add_module("fc", torch.nn.Linear(4, 3))  # 12 weights + 3 bias
    assert count_params_paper(model) == (216 + 12 + 3) / 2**20
    assert count_params(model) == 216 + 4 + 8 + 12 + 3
