"""Robustness matrix, model rows: clips a model cannot take raise ValueError naming the offending size before any
math runs, and a checkpoint of another model, class count or layout is refused naming what differs (library call
and command line)."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
import yaml

from cpnet.app.config import load_config
from cpnet.app.trained import load_trained
from cpnet.cli import main
from cpnet.models import create_model
from tests.helpers import write_config

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

TINY = {"width": 4, "layers": (1, 1, 1, 1), "stem_stride": 1, "dropout": 0.0}


def _cpnet(k: int = 2) -> torch.nn.Module:
    """A tiny CPNet: one CP module after layer2's block, searching a 4x4 grid per frame at 16x16 input."""
    return create_model("cpnet_r18", num_classes=3, cp_at={"layer2": (0,)}, cp_k=k, **TINY).eval()


def test_k_too_large_for_the_clip():
    model = _cpnet(k=20)
    with pytest.raises(ValueError, match=r"k=20 .*16 points"):
        model(torch.randn(1, 3, 2, 16, 16))  # 2 frames of 4x4 at layer2: 16 points in the other frame, fewer than k
    assert model(torch.randn(1, 3, 3, 16, 16)).shape == (1, 3)  # 32 points in the other frames: enough


def test_one_frame_clip_to_a_cpnet():
    with pytest.raises(ValueError, match=r"needs T >= 2, got T=1"):
        _cpnet()(torch.randn(2, 3, 1, 16, 16))
    c2d = create_model("c2d_r18", num_classes=3, **TINY).eval()
    assert c2d(torch.randn(2, 3, 1, 16, 16)).shape == (2, 3)  # a frame-by-frame model takes it


WRONG_RANK = [(2, 3, 16, 16), (3, 4, 16), (1, 1, 3, 2, 4, 16, 16)]


@pytest.mark.parametrize("shape", WRONG_RANK, ids=["rank4", "rank3", "rank7"])
@pytest.mark.parametrize("name", ["c2d_r18", "cpnet_r18"])
def test_input_of_the_wrong_rank(name, shape):
    model = create_model(name, num_classes=3, **TINY) if name == "c2d_r18" else _cpnet()
    with pytest.raises(ValueError, match=re.escape(f"expected a clip of shape (N, 3, T, H, W), got {shape}")):
        model(torch.randn(*shape))


@pytest.mark.parametrize("shape", [(2, 1, 4, 16, 16), (2, 4, 16, 16, 3)], ids=["grey", "channels-last"])
def test_input_of_the_wrong_channel_count(shape):
    with pytest.raises(ValueError, match=re.escape(f"expected a clip of shape (N, 3, T, H, W), got {shape}")):
        _cpnet()(torch.randn(*shape))


def test_checkpoint_of_another_model(trained_run, tmp_path, capsys):
    checkpoint = trained_run / "checkpoint_last.pt"
    other = load_config(trained_run / "config.yaml", ["model.name=c3d_r18"])
    with pytest.raises(ValueError, match=r"checkpoint_last.pt is for model 'c2d_r18' \(expected 'c3d_r18'\)"):
        load_trained(checkpoint, torch.device("cpu"), other)
    config = write_config(tmp_path / "c3d.yaml", yaml.safe_load((trained_run / "config.yaml").read_text())
                          | {"model": {"name": "c3d_r18", "options": TINY | {"layers": [1, 1, 1, 1]}}})
    assert main(["eval", "--checkpoint", str(checkpoint), "--config", str(config), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint_last.pt" in err and "model 'c2d_r18'" in err


def test_checkpoint_of_another_class_count(trained_run, jester_root, tmp_path, capsys):
    checkpoint = trained_run / "checkpoint_last.pt"  # 9 synthetic classes; the Jester tree has 5
    assert main(["eval", "--checkpoint", str(checkpoint), "--set", f"data.root={jester_root}",
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint_last.pt" in err and "9 classes (expected 5)" in err


def test_resuming_a_run_with_another_model_or_class_count(trained_run, jester_root, tmp_path, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    for override, named in (("model.name=c3d_r18", "model 'c2d_r18' (expected 'c3d_r18')"),
                            (f"data.root={jester_root}", "9 classes (expected 5)")):
        assert main(["train", "--resume", "--out", str(run), "--no-progress", "--set", "train.epochs=2",
                     "--set", override]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "checkpoint_last.pt" in err and named in err, err
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["epoch"] == 1  # untouched


def test_checkpoint_of_the_same_preset_with_other_options(trained_run, tmp_path):
    wider = load_config(trained_run / "config.yaml", ["model.options.width=8"])
    with pytest.raises(ValueError, match=r"checkpoint_last.pt: the weights do not fit the model; .*other shapes"):
        load_trained(trained_run / "checkpoint_last.pt", torch.device("cpu"), wider)

