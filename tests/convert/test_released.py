"""The released TF graph's variables onto the ``*_released_*`` presets: names, layouts, bias folding, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cpnet.convert.released import released_state_dict, tf_shape, variable_map
from cpnet.models.registry import create_model

TINY = {"width": 8, "num_classes": 5}


def _randomised(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **TINY)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key else torch.randn_like(value) * 0.3)
    return model.eval()


def _as_tf(model: torch.nn.Module, seed: int = 1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The TF variables a checkpoint of ``model`` would hold (conv biases random, folded into the BN means), and
    those biases."""
    rng = np.random.default_rng(seed)
    own = {k: v.double().numpy() for k, v in model.state_dict().items()}
    tf: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    for key, name, kind in variable_map(model):
        value = own[key]
        if kind == "conv":
            value = np.transpose(value, (2, 3, 4, 1, 0))
        elif kind == "linear":
            value = value.T[None, None]
        elif kind == "fc":
            value = value.T
        elif kind.startswith("fold:"):
            bias = rng.normal(size=value.shape)
            biases[kind[5:]] = tf[kind[5:]] = bias
            value = value + bias
        tf[name] = value
    return tf, biases


@pytest.mark.parametrize("name", ["cpnet_r34_released_112", "cpnet_r18_released_224", "cpnet_r101_released_112"])
def test_round_trip_gives_the_same_model(name):
    model = _randomised(name)
    tf, _ = _as_tf(model)
    tf["global_step"] = np.array(1000)
    tf["group0/block0/conv1/weights/Momentum"] = np.zeros(1)  # optimiser slots are ignored
    fresh = create_model(name, **TINY).eval()
    fresh.load_state_dict(released_state_dict(tf, fresh))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=1e-6, atol=1e-6)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(clip), model(clip), rtol=1e-4, atol=1e-5)


def test_names_and_layouts_of_the_released_graph():
    model = create_model("cpnet_r34_released_112", **TINY)
    rows = {key: (name, kind) for key, name, kind in variable_map(model)}
    assert rows["conv1.weight"] == ("conv0/weights", "conv")
    assert rows["bn1.running_mean"] == ("conv0/bn/moving_mean", "fold:conv0/biases")
    assert rows["layer2.0.downsample.0.weight"] == ("group1/block0/convshortcut/weights", "conv")
    assert rows["layer2.2.cp.layers.0.weight"] == ("group1/block2/pointnet/conv0/weights", "linear")
    assert rows["layer3.5.cp.out_bn.weight"] == ("group2/block5/pointnet/bn_final/gamma", "vector")
    assert rows["fc.weight"] == ("fc/weights", "fc")
    # the pair MLP's first layer reads [Δ (3), x_p (C), x_q (C)] in both: (1, 1, 2C + 3, C/4)
    assert tf_shape("linear", tuple(model.layer2[2].cp.layers[0].weight.shape)) == (1, 1, 2 * 16 + 3, 4)
    assert tf_shape("conv", tuple(model.conv1.weight.shape)) == (1, 7, 7, 3, 8)
    assert "layer1.0.downsample.0.weight" not in rows  # group0 block0 keeps 64 channels: identity shortcut


def test_a_conv_bias_folds_exactly_into_the_following_batch_norm():
    model = _randomised("cpnet_r34_released_112")
    tf, biases = _as_tf(model)
    converted = create_model("cpnet_r34_released_112", **TINY).eval()
    converted.load_state_dict(released_state_dict(tf, converted))
    x = torch.randn(1, 3, 2, 16, 16, dtype=torch.float64)
    w = torch.from_numpy(np.transpose(tf["conv0/weights"], (4, 3, 0, 1, 2)))
    tf_conv = F.conv3d(F.pad(x, (3, 3, 3, 3)), w, torch.from_numpy(biases["conv0/biases"]))  # TF: conv + bias
    expected = F.batch_norm(tf_conv, *(torch.from_numpy(tf[f"conv0/bn/{n}"]) for n in ("moving_mean",
                            "moving_variance", "gamma", "beta")), eps=1e-3)
    converted = converted.double()
    torch.testing.assert_close(converted.bn1(converted.conv1(x)), expected)


def test_errors_name_the_variable():
    model = create_model("cpnet_r34_released_112", **TINY)
    tf, _ = _as_tf(_randomised("cpnet_r34_released_112"))
    missing = dict(tf)
    del missing["group1/block3/pointnet/conv1/bn/gamma"]
    with pytest.raises(ValueError, match=r"ckpt: missing variable 'group1/block3/pointnet/conv1/bn/gamma'"):
        released_state_dict(missing, model, "ckpt")
    bad = dict(tf, **{"fc/weights": np.zeros((64, 7))})
    with pytest.raises(ValueError, match=r"'fc/weights' has shape \(64, 7\), expected \(64, 5\) for fc.weight"):
        released_state_dict(bad, model, "ckpt")
    extra = dict(tf, **{"group3/block3/conv1/weights": np.zeros(3)})
    with pytest.raises(ValueError, match=r"'group3/block3/conv1/weights' has no place in the model"):
        released_state_dict(extra, model, "ckpt")
    r18 = create_model("cpnet_r18_released_112", **TINY)
    with pytest.raises(ValueError, match="has no place in the model|missing variable|has shape"):
        released_state_dict(tf, r18, "ckpt")  # an R34 checkpoint into an R18
