"""Parameter counts on the real full-size models (built on the meta device: shapes only, no memory, no forward)."""

from __future__ import annotations

import math

import pytest
import torch

from cpnet.models.params import (
    ONE_MODULE_VARIANTS,
    SUPPLEMENT_TABLE1,
    count_params,
    count_params_paper,
    count_weights_paper,
)
from cpnet.models.registry import create_model


def _full(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _truncated(x: float) -> float:
    return math.floor(x * 100) / 100


@pytest.mark.parametrize("name, paper", [("c2d_r18", 10.84), ("c3d_r18", 31.81)])
def test_supplement_counts(name, paper):
    assert _truncated(count_params_paper(_full(name))) == paper


def test_supplement_table_is_what_the_supplement_prints():
    assert SUPPLEMENT_TABLE1 == {"c2d_r18": 10.84, "c3d_r18": 31.81, "artnet_r18": 31.81, "nl_r18": 10.88,
                                 "cpnet_r18": 10.86}


@pytest.mark.parametrize("name, ours", [("artnet_r18", 33.55), ("nl_r18", 12.15), ("cpnet_r18", 11.58)])
def test_counts_the_supplement_does_not_print(name, ours):
    # ARTNet: the faithful SMART block (tests/models/test_smart.py); NL and CPNet: six modules, not one.
    assert _truncated(count_params_paper(_full(name))) == ours != SUPPLEMENT_TABLE1[name]


@pytest.mark.parametrize("name, weights", [("cpnet_r18", 18_528), ("nl_r18", 32_768)])
def test_one_res3_module_is_the_supplements_increment(name, weights):
    spec = ONE_MODULE_VARIANTS[name]
    one = count_weights_paper(_full(name, **spec["options"]))
    base = count_weights_paper(_full(spec["base"]))
    assert spec["base"] == "c2d_r18" and one - base == weights
    # CP, MLP [32, 64] at C = 128: (2C + 3)·32 + 32·64 + 64·128; NL at C = 128: θ, φ, g to C/2 and back.
    assert weights == {"cpnet_r18": 259 * 32 + 32 * 64 + 64 * 128, "nl_r18": 3 * 128 * 64 + 64 * 128}[name]
    # C2D-R18 + one module is the printed figure to its last digit (NL: 10.8765, printed 10.88, truncates to 10.87)
    assert abs(one / 2**20 - SUPPLEMENT_TABLE1[name]) < 0.01


def test_the_presets_have_six_modules_each():
    c2d = count_weights_paper(_full("c2d_r18"))
    stages = (128, 256, 512)  # C of res3, res4, res5, two blocks each
    # NL at C: θ, φ, g (C → C/2) and the output (C/2 → C) = 2C².
    assert count_weights_paper(_full("nl_r18")) - c2d == sum(2 * 2 * c * c for c in stages)
    # CP at C with MLP [C/4, C/2]: (2C + 3)·C/4 + C/4·C/2 + C/2·C.
    cp = sum(2 * ((2 * c + 3) * c // 4 + c // 4 * c // 2 + c // 2 * c) for c in stages)
    assert count_weights_paper(_full("cpnet_r18")) - c2d == cp


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
