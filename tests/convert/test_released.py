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


def test_convert_tf_command_writes_a_checkpoint_that_predict_accepts(tmp_path, monkeypatch, capsys):
    """`cpnet convert tf` end to end, with the TF reader replaced by the variables of a reduced-width model (the
    reader itself is tested on TensorFlow-written files in test_tf_checkpoint.py)."""
    import cpnet.convert.tf_checkpoint as reader
    from cpnet.cli import main
    from cpnet.engine.checkpoint import load_checkpoint
    from tests.data.media import indexed_frames, write_frame_folder

    names = ["Swiping Left", "Swiping Right", "Thumb Up", "Thumb Down", "Stop Sign"]
    labels = tmp_path / "jester-v1-labels.csv"
    labels.write_text("\n".join(names) + "\n")
    model = _randomised("cpnet_r18_released_112")  # width 8, 5 classes
    tf, _ = _as_tf(model)
    prefix = tmp_path / "model-100.ckpt"
    monkeypatch.setattr(reader, "resolve_tf_prefix", lambda path: prefix)
    monkeypatch.setattr(reader, "read_tf_checkpoint", lambda path: tf)
    out = tmp_path / "released.pt"
    argv = ["convert", "tf", "--checkpoint", str(prefix), "--model", "cpnet_r18_released_112", "--labels",
            str(labels), "--out", str(out)]
    assert main(argv) == 0 and "5 classes" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    assert ckpt["class_names"] == names and ckpt["config"]["model"]["options"] == {"width": 8}
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(ckpt["model"][key], value, rtol=1e-6, atol=1e-6)
    # Their fc numbers the classes by sorted name; the converted one in the label file's order.
    released = sorted(names)  # Stop Sign, Swiping Left, Swiping Right, Thumb Down, Thumb Up
    for i, name in enumerate(names):
        row = released.index(name)
        torch.testing.assert_close(ckpt["model"]["fc.weight"][i], model.fc.weight[row], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ckpt["model"]["fc.bias"][i], model.fc.bias[row], rtol=1e-6, atol=1e-6)
    assert main(argv) == 2 and "exists; pass --force" in capsys.readouterr().err  # nothing overwritten
    assert main([*argv, "--force"]) == 0
    capsys.readouterr()
    video = write_frame_folder(tmp_path / "clip", indexed_frames(8, 40, 48))
    assert main(["predict", str(video), "--checkpoint", str(out)]) == 0
    _, *top = capsys.readouterr().out.strip().splitlines()  # a header naming the video, then the ranked list
    assert len(top) == 5 and all(any(f". {n}  " in line for n in names) for line in top)
    other = [*argv[:5], "cpnet_r34_released_112", *argv[6:], "--force"]
    assert main(other) == 2 and "missing variable" in capsys.readouterr().err  # an R18 checkpoint is not an R34
    assert main([*argv[:5], "cpnet_r34", *argv[6:], "--force"]) == 2
    assert "must be a released preset" in capsys.readouterr().err


def test_released_class_rows_follow_their_sorted_label_numbering():
    from cpnet.convert.released import released_class_rows

    jester = ["Swiping Left", "Swiping Right", "Swiping Down", "Doing other things", "No gesture"]
    assert released_class_rows(jester) == [3, 4, 2, 0, 1]  # sorted: Doing, No, Swiping Down, Left, Right
    # SSv2: sorted after removing [ ] ( ) ' from the templates, as their gen_json did.
    ssv2 = ["Putting something into something", "Pretending to put something next to something",
            "Showing that something is empty", "Holding something in front of something"]
    assert released_class_rows(ssv2) == [2, 1, 3, 0]
    assert released_class_rows(["b (x)", "b y", "a'z"]) == [1, 2, 0]  # "b x" < "b y"; "az" first
