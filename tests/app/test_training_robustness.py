"""Robustness matrix, training rows, through ``cpnet train`` on the tiny synthetic set: a non-finite loss stops the
run naming epoch and batch with the last good checkpoint intact; a run killed with SIGKILL resumes to exactly the
parameters of an uninterrupted one; a failed checkpoint write leaves the previous checkpoint loadable; skipped media
are counted per epoch, summarised, and bounded; a config typo names the nearest key."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cpnet.cli import main
from tests.helpers import ROOT, tiny_config, write_config

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`



def _train(config: Path, out: Path, *extra: str) -> int:
    return main(["train", "--config", str(config), "--out", str(out), "--no-progress", *extra])


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    bad, synthetic_root, trained_run, tmp_path, monkeypatch, capsys
):
    real = F.cross_entropy
    calls = {"train": 0}

    def poisoned(logits, labels, **kwargs):
        loss = real(logits, labels, **kwargs)
        if "reduction" in kwargs:  # validation's summed loss stays true
            return loss
        calls["train"] += 1
        return loss * float(bad) if calls["train"] > 4 else loss  # 4 batches per epoch: epoch 2, batch 1 goes bad

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    run = tmp_path / "run"
    assert _train(write_config(tmp_path / "c.yaml", tiny_config(synthetic_root, epochs=3)), run) == 2
    err = _one_error_line(capsys)
    assert f"loss is {bad} at epoch 2, batch 1" in err and "last good checkpoint is kept" in err
    assert [r["epoch"] for r in _records(run)] == [1]
    kept = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert kept["epoch"] == 1
    reference = _weights(trained_run / "checkpoint_last.pt")  # the same config stopped after 1 epoch
    assert all(torch.equal(kept["model"][k], v) for k, v in reference.items())


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


EPOCHS = 8  # about 0.1 s each: the kill lands within milliseconds of the first checkpoint, long before the end


def test_sigkill_after_an_epoch_then_resume_ends_as_an_uninterrupted_run(synthetic_root, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(synthetic_root, epochs=EPOCHS))
    assert _train(config, tmp_path / "whole") == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "cpnet", "train", "--config", str(config), "--out", str(cut),
                             "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait_for(cut / "checkpoint_last.pt", proc)  # renamed into place whole: epoch 1 is saved
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = torch.load(cut / "checkpoint_last.pt", weights_only=True)["epoch"]
    assert 1 <= done < EPOCHS, "the process was killed after the first epoch and before the end"
    assert main(["train", "--resume", "--out", str(cut), "--no-progress"]) == 0
    assert [r["epoch"] for r in _records(cut)] == list(range(1, EPOCHS + 1))
    whole, resumed = _weights(tmp_path / "whole" / "checkpoint_last.pt"), _weights(cut / "checkpoint_last.pt")
    assert all(torch.equal(resumed[k], v) for k, v in whole.items())


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(synthetic_root, tmp_path, monkeypatch, capsys):
    real = torch.save

    def disk_fills_at_epoch_2(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_at_epoch_2)
    run = tmp_path / "run"
    assert _train(write_config(tmp_path / "c.yaml", tiny_config(synthetic_root, epochs=3)), run) != 0
    err = _one_error_line(capsys)
    assert "No space left on device" in err and "checkpoint_last.pt" in err
    monkeypatch.undo()
    kept = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert kept["epoch"] == 1 and set(os.listdir(run)) >= {"checkpoint_last.pt", "checkpoint_best.pt"}
    assert not [name for name in os.listdir(run) if ".tmp" in name], "a temporary file was left behind"
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0  # and the run can go on
    assert [r["epoch"] for r in _records(run)] == [1, 2, 3]


def _damage(root: Path, ids: list[int]) -> list[Path]:
    """Overwrite frame 2 of the given clips with text (4-frame clips: every sampled clip reads it)."""
    paths = [root / "20bn-jester-v1" / str(i) / "00002.jpg" for i in ids]
    for path in paths:
        path.write_text("not a JPEG")
    return paths


def test_skipped_media_are_counted_per_epoch_and_summarised(synthetic_copy, tmp_path, capsys):
    _damage(synthetic_copy, [3, 7, 30])  # two training clips, one validation clip
    cfg = tiny_config(synthetic_copy, epochs=2, data={"skip_bad": True, "max_bad_fraction": 0.1})
    with pytest.warns(UserWarning, match="skipping bad media") as caught:
        assert _train(write_config(tmp_path / "c.yaml", cfg), tmp_path / "run") == 0
    assert {Path(str(w.message).split(": ")[1]).parent.name for w in caught} == {"3", "7", "30"}
    records = _records(tmp_path / "run")
    assert [(r["skipped"], r["val_skipped"], r["train_samples"]) for r in records] == [(2, 1, 22), (2, 1, 22)]
    out = capsys.readouterr().out
    assert "skipped unreadable clips: 4 in training and 2 in validation over 2 epochs" in out


def test_too_many_skipped_media_stop_the_run(synthetic_copy, tmp_path, capsys):
    _damage(synthetic_copy, [3, 7])
    cfg = tiny_config(synthetic_copy, epochs=2, data={"skip_bad": True, "max_bad_fraction": 0.05})
    with pytest.warns(UserWarning, match="skipping bad media"):
        assert _train(write_config(tmp_path / "c.yaml", cfg), tmp_path / "run") == 2
    err = _one_error_line(capsys)
    assert "epoch 1: 2 clips could not be read, more than max_bad_fraction=0.05 of 24" in err
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_media_without_skip_bad_stop_the_run_naming_the_file(synthetic_copy, tmp_path, capsys, workers):
    [bad] = _damage(synthetic_copy, [5])
    cfg = tiny_config(synthetic_copy, epochs=1, data={"workers": workers})
    assert _train(write_config(tmp_path / "c.yaml", cfg), tmp_path / "run") == 2
    err = _one_error_line(capsys)
    assert f"{bad}: cannot decode image" in err and "set data.skip_bad: true" in err  # how to go on (23.7)


@pytest.mark.parametrize("section, key, nearest", [("optim", "lrr", "'optim.lr'"), ("train", "lr", "'optim.lr'"),
                                                    ("data", "num_frame", "'data.num_frames'")])
def test_config_typo_names_the_nearest_valid_key(synthetic_root, tmp_path, capsys, section, key, nearest):
    cfg = tiny_config(synthetic_root)
    cfg[section][key] = 1
    assert _train(write_config(tmp_path / "c.yaml", cfg), tmp_path / "run") == 2
    err = _one_error_line(capsys)
    assert f"unknown config key '{section}.{key}'" in err and nearest in err and "c.yaml" in err
    assert _train(write_config(tmp_path / "ok.yaml", tiny_config(synthetic_root)), tmp_path / "run",
                  "--set", f"{section}.{key}=1") == 2
    err = _one_error_line(capsys)
    assert f"unknown config key '{section}.{key}'" in err and nearest in err
    assert not (tmp_path / "run").exists()
