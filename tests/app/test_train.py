"""`cpnet train`, `cpnet eval`, `cpnet predict` end to end on a tiny synthetic set in the Jester layout."""

import json
import re

import numpy as np
import pytest
import torch
import yaml

from cpnet.app.config import load_config
from cpnet.cli import main
from cpnet.data.synthetic import CLASS_NAMES, write_jester

TINY = {
    "name": "tiny",
    "model": {"name": "c3d_r18", "options": {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1, "dropout": 0.0}},
    "data": {"dataset": "jester", "num_frames": 4, "size": 16, "short_side": 16, "workers": 0},
    "optim": {"lr": 0.05, "schedule": "constant"},
    "train": {"epochs": 2, "batch_size": 9, "threads": 1},
    "eval": {"batch_size": 12},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_jester(tmp_path_factory.mktemp("jester"), num_train=270, num_val=18, num_frames=6, size=20, seed=1)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, dataset):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "root": str(dataset)}}))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, config_file):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--config", str(config_file), "--out", str(out), "--no-progress",
                 "--set", "optim.nesterov=true"]) == 0
    return out


def test_train_writes_the_run_folder(run_dir, config_file):
    cfg = load_config(run_dir / "config.yaml")
    assert cfg == load_config(config_file, ["optim.nesterov=true"])  # the resolved config, overrides included
    assert json.loads((run_dir / "labels.json").read_text()) == CLASS_NAMES
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all(r["skipped"] == 0 for r in records)
    assert records[1]["train_loss"] < records[0]["train_loss"]
    ckpt = torch.load(run_dir / "checkpoint_last.pt", weights_only=True)
    assert ckpt["model_name"] == "c3d_r18" and ckpt["class_names"] == CLASS_NAMES and ckpt["epoch"] == 2
    assert ckpt["config"]["optim"]["nesterov"] is True
    assert (run_dir / "checkpoint_best.pt").is_file()


def test_train_refuses_to_overwrite_and_resumes(run_dir, config_file, capsys):
    assert main(["train", "--config", str(config_file), "--out", str(run_dir), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(run_dir), "--no-progress", "--set", "train.epochs=3"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_train_config_typo_names_the_nearest_key(config_file, tmp_path, capsys):
    assert main(["train", "--config", str(config_file), "--out", str(tmp_path / "x"), "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'optim.lrr'" in err and "'optim.lr'" in err and len(err.strip().splitlines()) == 1


def test_eval_multi_view_counts_each_video_once(run_dir, capsys):
    out = run_dir / "eval_views"
    assert main(["eval", "--run", str(run_dir), "--clips", "2", "--crops", "3", "--out", str(out)]) == 0
    assert "video top1" in capsys.readouterr().out
    summary = json.loads((out / "eval.json").read_text())
    assert summary["num_videos"] == 18 and summary["num_views"] == 18 * 6 and summary["views_per_video"] == 6
    assert set(summary["per_class_accuracy"]) == set(CLASS_NAMES)
    pred = np.load(out / "predictions.npz")
    assert pred["logits"].shape == (108, len(CLASS_NAMES))
    assert sorted(pred["view_ids"][pred["video_ids"] == pred["videos"][0]].tolist()) == list(range(6))
    assert (np.unique(pred["video_ids"], return_counts=True)[1] == 6).all()
    assert pred["video_scores"].shape == (18, len(CLASS_NAMES))
    np.testing.assert_allclose(pred["video_scores"].sum(axis=1), 1.0, rtol=1e-5)
    top1 = (pred["video_scores"].argmax(axis=1) == pred["video_labels"]).mean()
    assert summary["video_top1"] == pytest.approx(top1)
    confusion = np.loadtxt(out / "confusion.csv", delimiter=",", skiprows=1, usecols=range(1, 10))
    assert confusion.sum() == 18
    assert (out / "confusion.png").stat().st_size > 0 and (out / "per_class.csv").is_file()


def test_eval_from_checkpoint_uses_its_stored_config(run_dir, tmp_path):
    out = tmp_path / "ev"
    assert main(["eval", "--checkpoint", str(run_dir / "checkpoint_last.pt"), "--out", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text())["num_views"] == 18


def test_predict_prints_top5_class_names(run_dir, dataset, capsys):
    assert main(["predict", str(dataset / "20bn-jester-v1" / "1"), "--checkpoint",
                 str(run_dir / "checkpoint_best.pt")]) == 0
    _, *lines = capsys.readouterr().out.strip().splitlines()  # the header names the video
    assert len(lines) == 5
    names = [line.split()[1] for line in lines]
    assert set(names) <= set(CLASS_NAMES) and len(set(names)) == 5


@pytest.mark.parametrize(
    "argv, name",
    [(["train", "--config", "missing.yaml"], "missing.yaml"), (["eval", "--run", "no_run_dir"], "no_run_dir"),
     (["predict", "no_video.mp4", "--checkpoint", "x.pt"], "no_video.mp4"),
     (["eval", "--checkpoint", "no_ckpt.pt"], "no_ckpt.pt")],
)
def test_missing_paths_give_one_line(argv, name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert name in err and len(err.splitlines()) == 1


def _denormal_survives() -> bool:
    return (torch.tensor([1e-40]) * 1.0).item() != 0.0  # 1e-40 is a float32 denormal


def test_training_flushes_denormals_and_restores_after(tmp_path, config_file, monkeypatch):
    """train.flush_denormal (default on): denormal floats are zero inside the run, and ordinary again after."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    import cpnet.app.train as runs

    seen = []
    real_fit = runs.fit

    def watching_fit(*args, **kwargs):
        seen.append(_denormal_survives())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(runs, "fit", watching_fit)
    assert _denormal_survives()
    assert main(["train", "--config", str(config_file), "--out", str(tmp_path / "a"), "--no-progress",
                 "--set", "train.epochs=1"]) == 0
    assert main(["train", "--config", str(config_file), "--out", str(tmp_path / "b"), "--no-progress",
                 "--set", "train.epochs=1", "--set", "train.flush_denormal=false"]) == 0
    assert seen == [False, True] and _denormal_survives()


def test_channels_last_trains_and_evaluates_in_that_layout(tmp_path, config_file, monkeypatch):
    """train.channels_last: the model trains and is reloaded with channels-last weights (so its activations are
    channels-last too), and computes what the plain layout computes."""
    import cpnet.app.train as runs
    from cpnet.app.trained import load_trained

    layouts = []
    real_fit = runs.fit

    def watching_fit(model, *args, **kwargs):
        conv = model.conv1.weight
        layouts.append(conv.is_contiguous(memory_format=torch.channels_last_3d) and not conv.is_contiguous())
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(runs, "fit", watching_fit)
    out = tmp_path / "cl"
    assert main(["train", "--config", str(config_file), "--out", str(out), "--no-progress", "--set", "train.epochs=1",
                 "--set", "train.channels_last=true"]) == 0
    assert layouts == [True]
    model, _, cfg = load_trained(out / "checkpoint_last.pt", torch.device("cpu"))
    assert cfg.train.channels_last and model.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    plain, _, _ = load_trained(out / "checkpoint_last.pt", torch.device("cpu"),
                               load_config(out / "config.yaml", ["train.channels_last=false"]))
    assert plain.conv1.weight.is_contiguous()
    clip = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), plain(clip), rtol=1e-4, atol=1e-5)


def test_batch_mode_logs_progress_inside_an_epoch_and_says_what_an_epoch_drops(config_file, tmp_path, capsys):
    """Issue 23.2 and 23.6: with stdout a file (capsys), train.log_every gives progress lines; the clip count
    says how many an epoch uses when the last partial batch is dropped."""
    out = tmp_path / "batch"
    assert main(["train", "--config", str(config_file), "--out", str(out), "--no-progress", "--set", "train.epochs=1",
                 "--set", "train.log_every=1", "--set", "train.batch_size=4"]) == 0
    log = capsys.readouterr().out
    assert "epoch 1/1 iter 1/" in log and "eta epoch" in log
    match = re.search(r"(\d+) training clips \((\d+) per epoch: the last partial batch is dropped\)", log)
    assert match and int(match.group(2)) % 4 == 0 and int(match.group(2)) < int(match.group(1))


def test_init_from_a_safetensors_export_takes_its_options_and_weights(run_dir, dataset, tmp_path, capsys):
    """Issue 23.1: `--init` a `.safetensors` export as well as a checkpoint; its stored options build the model (the
    config names the preset only) and every weight is loaded (lr 0: the convolutions stay as exported)."""
    weights = tmp_path / "w.safetensors"
    assert main(["export", "--checkpoint", str(run_dir / "checkpoint_best.pt"), "--format", "safetensors",
                 "--out", str(weights)]) == 0
    config = tmp_path / "bare.yaml"
    config.write_text(yaml.safe_dump({**TINY, "model": {"name": "c3d_r18"}, "data": {**TINY["data"],
                                                                                      "root": str(dataset)}}))
    out = tmp_path / "tuned"
    assert main(["train", "--config", str(config), "--out", str(out), "--init", str(weights), "--no-progress",
                 "--set", "train.epochs=1", "--set", "optim.lr=0"]) == 0
    printed = capsys.readouterr().out
    taken = next(line for line in printed.splitlines() if line.startswith("model.options from w.safetensors: "))
    assert "width=4" in taken and "stem_stride=1" in taken and "classifier included" in printed
    start, tuned = torch.load(run_dir / "checkpoint_best.pt")["model"], torch.load(out / "checkpoint_last.pt")["model"]
    assert torch.equal(start["conv1.weight"], tuned["conv1.weight"]) and torch.equal(start["fc.weight"],
                                                                                      tuned["fc.weight"])
    assert load_config(out / "config.yaml").model.options["width"] == 4
