"""A converted released model fine-tuned with `cpnet train --init`: the TensorFlow-written fixture converted by
`cpnet convert tf`, then trained on a dataset with other classes (a new classifier, every other weight kept)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from cpnet.cli import main
from cpnet.data.synthetic import CLASS_NAMES, write_jester
from cpnet.engine.checkpoint import load_checkpoint
from tests.helpers import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "released_r34_w8"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("converted")
    labels = folder / "labels.csv"
    labels.write_text("\n".join(f"Gesture {i}" for i in range(5)) + "\n")  # the fixture's 5 classes
    out = folder / "released.pt"
    assert main(["convert", "tf", "--checkpoint", str(FIXTURE / "model.ckpt"), "--model", "cpnet_r34_released_112",
                 "--labels", str(labels), "--out", str(out)]) == 0
    return out


def _config(tmp_path: Path, name: str) -> Path:
    root = write_jester(tmp_path / "data", num_train=len(CLASS_NAMES) * 2, num_val=len(CLASS_NAMES), num_frames=4,
                        size=32, seed=3)
    cfg = {"name": "finetune", "model": {"name": name, "options": {"width": 8}},
           "data": {"dataset": "jester", "root": str(root), "num_frames": 4, "size": 32, "short_side": 32,
                    "workers": 0},
           "optim": {"lr": 0.0, "schedule": "constant", "weight_decay": 0.0},
           "train": {"epochs": 1, "batch_size": 8, "threads": 1}, "eval": {"batch_size": 8}}
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_init_from_a_converted_checkpoint_gets_a_new_classifier(converted, tmp_path, capsys):
    config = _config(tmp_path, "cpnet_r34_released_112")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--init", str(converted), "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert f"new classifier: 5 classes there, {len(CLASS_NAMES)} here" in log
    source, tuned = load_checkpoint(converted)["model"], load_checkpoint(out / "checkpoint_last.pt")["model"]
    assert tuned["fc.weight"].shape == (len(CLASS_NAMES), source["fc.weight"].shape[1])
    weights = [k for k in source if k.endswith("weight") and not k.startswith("fc.") and source[k].dim() > 1]
    assert len(weights) > 40
    for key in weights:  # lr 0: the backbone is the converted one (BN statistics move in training mode)
        torch.testing.assert_close(tuned[key], source[key], rtol=0, atol=0)


def test_train_init_refuses_a_checkpoint_of_another_model(converted, tmp_path, capsys):
    config = _config(tmp_path, "cpnet_r34")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--init", str(converted), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds a 'cpnet_r34_released_112' model; this run builds 'cpnet_r34'" in err


def test_a_converted_checkpoint_carries_the_released_test_settings(converted):
    cfg = load_checkpoint(converted)["config"]
    assert cfg["data"]["dataset"] == "jester" and cfg["eval"]["protocol"] == "released"
    assert (cfg["data"]["num_frames"], cfg["data"]["stride"], cfg["data"]["size"]) == (12, 2, 112)


def test_eval_export_and_visualize_accept_a_converted_checkpoint(converted, tmp_path, capsys):
    from tests.data.media import indexed_frames, write_frame_folder, write_jester_tree

    classes = [f"Gesture {i}" for i in range(5)]
    root = write_jester_tree(tmp_path / "jester", {"validation": [("1", "Gesture 0"), ("2", "Gesture 3")]},
                             num_frames=14, size=(60, 80), classes=classes)
    report = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(converted), "--set", f"data.root={root}", "--set", "eval.batch_size=16",
                 "--out", str(report)]) == 0  # the stored settings: 12 frames, 112², the released 8 x 6 views
    assert "videos 2  views 96" in capsys.readouterr().out and (report / "eval.json").exists()
    out = tmp_path / "released.torchscript.pt"
    assert main(["export", "--checkpoint", str(converted), "--format", "torchscript", "--frames", "4", "--size", "64",
                 "--out", str(out)]) == 0 and out.exists()
    clip = write_frame_folder(tmp_path / "clip", indexed_frames(12, 60, 80))
    page = tmp_path / "explore.html"
    assert main(["visualize", "--checkpoint", str(converted), "--input", str(clip), "--out", str(tmp_path / "vis"),
                 "--num-points", "1", "--html", str(page)]) == 0
    assert (tmp_path / "vis" / "correspondences.csv").exists()
    # the explorer of the released R34 at 112²: 12 frames, five CP modules (k = 8 as released, on 14×14 grids;
    # the fixture's width 8 changes no array's size), well under the 5 MB the issue allows
    printed = capsys.readouterr().out
    assert "explorer: 5 CP modules (layer2.2.cp, layer2.3.cp, layer3.3.cp, layer3.4.cp, layer3.5.cp), 12 frames" \
        in printed
    assert page.stat().st_size < 1_000_000


@pytest.mark.robustness
@pytest.mark.parametrize("victim", ["model.ckpt.index", "model.ckpt.data-00000-of-00001", "labels.csv"])
def test_convert_never_writes_over_its_own_input_even_with_force(tmp_path, capsys, victim):
    """Issue 24 #13: `convert tf --out <its own .index> --force` replaced the TF input."""
    import shutil

    folder = Path(shutil.copytree(FIXTURE, tmp_path / "tf"))
    (folder / "labels.csv").write_text("\n".join(f"Gesture {i}" for i in range(5)) + "\n")
    before = (folder / victim).read_bytes()
    code = main(["convert", "tf", "--checkpoint", str(folder / "model.ckpt"), "--model", "cpnet_r34_released_112",
                 "--labels", str(folder / "labels.csv"), "--out", str(folder / victim), "--force"])
    err = capsys.readouterr().err
    assert code == 2 and "is the input" in err and (folder / victim).read_bytes() == before
