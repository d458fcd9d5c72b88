"""Weights in one line: ``create_model(name, pretrained=FILE)`` from a cpnet checkpoint or a ``.safetensors`` file,
``save_safetensors`` (a round trip, atomic), ``VideoResNet.reset_classifier``, and refusals that name what differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

import cpnet
import cpnet.models.weights as weights
from cpnet.app.config import Config, config_to_dict
from cpnet.engine.checkpoint import FORMAT, VERSION, atomic_save, make_checkpoint
from cpnet.models import create_model, load_weights, save_safetensors

TINY = {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1}
CLASSES = ["a", "b", "c"]


def tiny_model(name: str = "c2d_r18", num_classes: int = 3, seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes, **{**TINY, **options})
    for m in model.modules():  # non-default statistics, so a load that skips the buffers shows
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_()
            m.num_batches_tracked.fill_(7)
    return model


def write_checkpoint(path: Path, model: nn.Module, name: str = "c2d_r18", options: dict | None = None,
                     class_names: list[str] = CLASSES) -> Path:
    """A checkpoint as ``cpnet train`` writes one: weights, model name, classes and the resolved config."""
    cfg = Config()
    cfg.model.name, cfg.model.options = name, dict(TINY if options is None else options)
    meta = {"model_name": name, "num_classes": len(class_names), "class_names": list(class_names),
            "config": config_to_dict(cfg)}
    return atomic_save(make_checkpoint(model, epoch=2, meta=meta), path)


def assert_same_state(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)  # a .safetensors file stores its tensors sorted by name
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def test_checkpoint_marks_are_the_engines():
    """models may not import the engine, so the checkpoint's format marks are repeated there; they must agree."""
    assert (weights.CHECKPOINT_FORMAT, weights.CHECKPOINT_VERSION) == (FORMAT, VERSION)


def test_safetensors_round_trip_keeps_weights_and_meta(tmp_path):
    model = tiny_model(dropout=0.0)
    options = {**TINY, "dropout": 0.0}
    path = save_safetensors(model, tmp_path / "m.safetensors",
                            {"model_name": "c2d_r18", "options": options, "class_names": CLASSES})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary left
    state, meta = load_weights(path)
    assert_same_state(state, model.state_dict())
    assert meta == {"format": "cpnet-weights", "model_name": "c2d_r18", "options": options, "class_names": CLASSES,
                    "num_classes": 3, "cpnet_version": cpnet.__version__, "preprocessing": None}
    with safe_open(str(path), framework="pt") as f:  # every entry is a JSON string any reader can parse
        assert json.loads(f.metadata()["options"]) == options


def test_save_safetensors_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_safetensors(tiny_model(), tmp_path / "m.safetensors", {"model_name": "c2d_r18", "options": TINY})
    before = path.read_bytes()

    def crash(self, data):  # the disk fills while the bytes are written
        with open(self, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", crash)
    with pytest.raises(OSError, match="No space"):
        save_safetensors(tiny_model(seed=1), path, {"model_name": "c2d_r18", "options": TINY})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_save_safetensors_refuses_unknown_or_incomplete_meta(tmp_path):
    with pytest.raises(ValueError, match="unknown weights meta key.*classes"):
        save_safetensors(tiny_model(), tmp_path / "m.safetensors", {"model_name": "c2d_r18", "classes": CLASSES})
    with pytest.raises(ValueError, match="model_name"):
        save_safetensors(tiny_model(), tmp_path / "m.safetensors", {"options": TINY})


def test_pretrained_checkpoint_gives_its_weights_options_and_classes(tmp_path):
    model = tiny_model()
    path = write_checkpoint(tmp_path / "ckpt.pt", model)
    loaded = cpnet.create_model("c2d_r18", pretrained=path)  # width, layers, stem and 3 classes from the file
    assert_same_state(loaded.state_dict(), model.state_dict())
    assert loaded.fc.out_features == 3
    assert create_model("c2d_r18", pretrained=str(path), dropout=0.0).dropout.p == 0.0  # the caller's option wins


def test_pretrained_safetensors_gives_its_weights(tmp_path):
    model = tiny_model("cpnet_r18", layers=[1, 2, 1, 1], cp_at={"layer2": [1]}, cp_k=2)
    options = {**TINY, "layers": [1, 2, 1, 1], "cp_at": {"layer2": [1]}, "cp_k": 2}
    path = save_safetensors(model, tmp_path / "cp.safetensors",
                            {"model_name": "cpnet_r18", "options": options, "class_names": CLASSES})
    loaded = create_model("cpnet_r18", pretrained=path)
    assert_same_state(loaded.state_dict(), model.state_dict())
    clip = torch.randn(1, 3, 2, 16, 16)
    torch.testing.assert_close(loaded.eval()(clip), model.eval()(clip), rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_other_class_count_starts_a_fresh_classifier_with_a_warning(tmp_path, suffix):
    model = tiny_model()
    path = tmp_path / f"m{suffix}"
    if suffix == ".pt":
        write_checkpoint(path, model)
    else:
        save_safetensors(model, path, {"model_name": "c2d_r18", "options": TINY, "class_names": CLASSES})
    with pytest.warns(UserWarning, match=r"new classifier \(fc\) for 7 classes.*trained for 3 classes"):
        loaded = create_model("c2d_r18", num_classes=7, pretrained=path)
    assert loaded.fc.out_features == 7
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert_same_state({k: v for k, v in loaded.state_dict().items() if not k.startswith("fc.")}, backbone)


def test_wrong_model_name_is_refused_naming_both(tmp_path):
    path = write_checkpoint(tmp_path / "ckpt.pt", tiny_model())
    with pytest.raises(ValueError, match=r"'c2d_r18' model, not 'c3d_r18'"):
        create_model("c3d_r18", pretrained=path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        create_model("c2d_r18", pretrained=tmp_path / "nothing.safetensors")


def test_tampered_safetensors_shape_names_the_key(tmp_path):
    path = save_safetensors(tiny_model(), tmp_path / "m.safetensors", {"model_name": "c2d_r18", "options": TINY})
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    state["layer2.0.bn1.weight"] = torch.ones(5)
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=r"key 'layer2\.0\.bn1\.weight' has shape \(5,\) in the file, \(8,\)"):
        create_model("c2d_r18", pretrained=path)


def test_option_that_changes_shapes_names_the_first_key(tmp_path):
    path = write_checkpoint(tmp_path / "ckpt.pt", tiny_model())
    with pytest.raises(ValueError, match=r"key 'conv1\.weight' has shape \(4, 3, 1, 7, 7\) in the file, "
                                         r"\(8, 3, 1, 7, 7\) in the model \(61 keys differ in all\); options given "
                                         r"here: width=8 \(the file's: \{'width': 4"):
        create_model("c2d_r18", pretrained=path, width=8)


def test_files_of_other_kinds_are_refused(tmp_path):
    torch.save(tiny_model().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare.pt is neither a cpnet checkpoint"):
        create_model("c2d_r18", pretrained=tmp_path / "bare.pt")
    save_file(tiny_model().state_dict(), str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="plain.safetensors has no cpnet metadata"):
        create_model("c2d_r18", pretrained=tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors is not a readable"):
        create_model("c2d_r18", pretrained=tmp_path / "junk.safetensors")


def test_options_from_the_file_meet_the_size_bound(tmp_path):
    """A file's options are untrusted: a width that would need terabytes is refused before anything is built."""
    path = write_checkpoint(tmp_path / "ckpt.pt", tiny_model(), options={**TINY, "width": 10**6})
    with pytest.raises(ValueError, match="more than the limit"):
        create_model("c2d_r18", pretrained=path)


def test_reset_classifier_is_a_fresh_linear_on_the_same_device_and_dtype():
    model = tiny_model().double()
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    torch.manual_seed(3)
    expected = nn.Linear(model.num_features, 7, dtype=torch.float64)  # the constructor's (PyTorch default) init
    torch.manual_seed(3)
    model.reset_classifier(7)
    assert model.fc.out_features == 7 and model.fc.weight.dtype == torch.float64
    assert torch.equal(model.fc.weight, expected.weight) and torch.equal(model.fc.bias, expected.bias)
    assert_same_state({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}, backbone)
    assert model.eval()(torch.randn(2, 3, 2, 16, 16, dtype=torch.float64)).shape == (2, 7)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        model.reset_classifier(0)


def test_reset_classifier_stays_on_the_models_device():
    with torch.device("meta"):
        model = create_model("c2d_r18", num_classes=3, **TINY)
    model.reset_classifier(9)
    assert model.fc.weight.is_meta and model.fc.weight.shape == (9, model.num_features)
