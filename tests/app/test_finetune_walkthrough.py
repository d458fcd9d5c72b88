"""README's "Fine-tune on your own data", run at a tiny size: the TensorFlow-written released fixture converted, then
fine-tuned on a 5-class set in the `folder` layout with the README's own config (stages frozen, BatchNorm statistics
held, the backbone's learning rate scaled), evaluated and used to predict."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cpnet.cli import main
from cpnet.engine.checkpoint import load_checkpoint
from tests.data.media import write_frame_folder
from tests.helpers import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "released_r34_w8"
CLASSES = ["clap", "point", "stop", "wave", "zoom"]


def readme_config(marker: str = "finetune-config") -> dict:
    """The YAML block after the ``marker`` comment in README.md."""
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {marker}:.*?-->\s*```yaml\n(.*?)```", text, re.S)
    assert block, "README.md lost its fine-tuning config block"
    return yaml.safe_load(block.group(1))


def _user_set(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("validation", 1)):
        for c, name in enumerate(CLASSES):
            for i in range(count):
                frames = rng.integers(0, 255, (6, 36, 44, 3), dtype=np.uint8)
                frames[:, :, : 8 * (c + 1)] = 255  # a class-dependent bright band
                write_frame_folder(root / split / name / f"clip{i}", frames)
    return root


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("released")
    (folder / "labels.csv").write_text("\n".join(f"Gesture {i}" for i in range(5)) + "\n")
    out = folder / "jester_cpnet_r34.pt"
    assert main(["convert", "tf", "--checkpoint", str(FIXTURE / "model.ckpt"), "--model", "cpnet_r34_released_112",
                 "--labels", str(folder / "labels.csv"), "--out", str(out)]) == 0
    return out


def test_the_readme_fine_tuning_walkthrough(converted, tmp_path, capsys):
    cfg = readme_config()
    assert cfg["model"]["name"] == "cpnet_r34_released_112" and cfg["data"]["dataset"] == "folder"
    cfg["model"] |= {"init": str(converted)}  # its options (the fixture's reduced width) come with it
    cfg["data"] |= {"root": str(_user_set(tmp_path / "my_gestures")), "num_frames": 4, "size": 32, "short_side": 32,
                    "workers": 0}
    cfg["train"] |= {"epochs": 1, "batch_size": 5, "threads": 1}
    cfg["eval"] = {**cfg.get("eval", {}), "batch_size": 6}
    config = tmp_path / "my_gestures.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "runs" / "my_gestures"
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert "new classifier: the checkpoint's 5 classes are not these 5" in log and "frozen: stem, layer1" in log
    assert "model.options from jester_cpnet_r34.pt: width=8" in log
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["options"] == {"width": 8}
    start, tuned = load_checkpoint(converted)["model"], load_checkpoint(run / "checkpoint_last.pt")["model"]
    for key in ("conv1.weight", "layer1.0.conv1.weight", "bn1.running_mean", "layer1.0.bn1.running_var"):
        torch.testing.assert_close(tuned[key], start[key], rtol=0, atol=0)  # frozen stages and held statistics
    assert not torch.equal(tuned["layer3.0.conv1.weight"], start["layer3.0.conv1.weight"])  # the rest trained
    assert load_checkpoint(run / "checkpoint_last.pt")["class_names"] == CLASSES
    assert main(["eval", "--run", str(run)]) == 0
    assert "video top1" in capsys.readouterr().out
    clip = tmp_path / "my_gestures" / "validation" / "wave" / "clip0"
    assert main(["predict", str(clip), "--checkpoint", str(run / "checkpoint_last.pt")]) == 0
    assert any(name in capsys.readouterr().out for name in CLASSES)


def test_fine_tuning_the_demos_cpnet_with_the_readme_config(tmp_path, capsys):
    """The README's second fine-tuning config: the demo's CPNet (a quick demo here) as model.init, named by its
    preset alone; a config contradicting its options is refused naming both values."""
    demo = tmp_path / "runs" / "demo"
    assert main(["demo", "--quick", "--models", "cpnet", "--out", str(demo), "--no-progress"]) == 0
    # the README's explorer command on the demo's model and one of its clips
    page = tmp_path / "explore.html"
    assert main(["visualize", "--checkpoint", str(demo / "runs" / "cpnet" / "checkpoint_best.pt"), "--input",
                 str(demo / "data" / "20bn-jester-v1" / "1"), "--html", str(page)]) == 0
    assert "explorer: 1 CP module (layer2.0.cp), 4 frames" in capsys.readouterr().out and page.stat().st_size > 0
    cfg = readme_config("finetune-demo-config")
    assert cfg["model"] == {"name": "cpnet_r18", "init": "runs/demo/runs/cpnet/checkpoint_best.pt"}
    cfg["model"]["init"] = str(tmp_path / cfg["model"]["init"])
    cfg["data"] |= {"root": str(_user_set(tmp_path / "my_gestures")), "num_frames": 4, "size": 16, "short_side": 16,
                    "workers": 0}
    cfg["train"] |= {"epochs": 1, "batch_size": 5, "threads": 1}
    config = tmp_path / "from_demo.yaml"
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    run = tmp_path / "runs" / "from_demo"
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    assert "model.options from checkpoint_best.pt: " in capsys.readouterr().out
    assert main(["predict", str(tmp_path / "my_gestures" / "validation" / "wave" / "clip0"), "--checkpoint",
                 str(run / "checkpoint_last.pt")]) == 0
    capsys.readouterr()
    stored = load_checkpoint(cfg["model"]["init"])["config"]["model"]["options"]
    cfg["model"]["options"] = {"width": 2 * stored["width"], "cp_k": stored["cp_k"]}
    config.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.options contradict the weights" in err
    assert f"width: {2 * stored['width']} here, {stored['width']} in the checkpoint" in err
    assert "cp_k" not in err  # the same value: no contradiction
