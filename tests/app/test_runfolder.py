"""Run folders are never silently reused: a folder holding a run is refused unless --resume or --force, a training
holds an exclusive lock, config and metrics are replaced atomically, an evaluation report folder is refused when it
holds other files and never keeps stale files of an earlier report, and the demo replaces only its own runs."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from cpnet.app.config import config_from_dict, save_config
from cpnet.app.runfolder import RunFolder, prepare_eval_dir
from cpnet.cli import main
from tests.helpers import tiny_config, write_config

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


def _train(config: Path, out: Path, *extra: str) -> int:
    return main(["train", "--config", str(config), "--out", str(out), "--no-progress", "--set", "train.epochs=1",
                 *extra])


def test_a_folder_holding_run_files_is_refused_without_resume_or_force(synthetic_root, tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(synthetic_root))
    out = tmp_path / "run"
    out.mkdir()
    kept = {"metrics.jsonl": '{"epoch": 7}\n', "config.yaml": "name: mine\n", "checkpoint_best.pt": "weights",
            "notes.txt": "my notes\n"}
    for name, text in kept.items():
        (out / name).write_text(text)
    assert _train(config, out) == 2
    err = capsys.readouterr().err
    assert "already holds a run (config.yaml, metrics.jsonl, checkpoint_best.pt)" in err and "--force" in err
    assert {p.name: p.read_text() for p in out.iterdir()} == kept  # nothing touched
    assert _train(config, out, "--force") == 0
    assert "--force: removed" in capsys.readouterr().out
    assert (out / "notes.txt").read_text() == "my notes\n"  # not a run file: kept
    assert (out / "checkpoint_last.pt").is_file() and '"epoch": 7' not in (out / "metrics.jsonl").read_text()
    assert not (out / ".lock").exists()


def test_a_second_training_into_a_locked_folder_is_refused_naming_the_holder(synthetic_root, tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(synthetic_root))
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"pid 4242 on somehost, started 2026-11-28T10:00:00\n")
        assert _train(config, out) == 2
        err = capsys.readouterr().err
        assert "in use by another training (pid 4242 on somehost" in err
        assert not (out / "config.yaml").exists() and not (out / "metrics.jsonl").exists()
    finally:
        os.close(fd)
    assert _train(config, out) == 0  # released: free again


def test_config_and_metrics_are_replaced_atomically(tmp_path, monkeypatch):
    cfg = config_from_dict({"name": "first"})
    path = save_config(cfg, tmp_path / "config.yaml")
    RunFolder(tmp_path).recorder().write({"epoch": 1, "train_loss": 1.0})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        save_config(config_from_dict({"name": "second"}), path)
    with pytest.raises(OSError, match="No space"):
        RunFolder(tmp_path).recorder(keep_epochs=0)  # the resume rewrite of metrics.jsonl
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # no temporary left


def test_an_evaluation_folder_is_a_report_or_refused(tmp_path):
    old = tmp_path / "eval_validation_single"
    old.mkdir()
    (old / "eval.json").write_text("{}")
    (old / "confusion.csv").write_text("stale")
    prepare_eval_dir(old)
    assert list(old.iterdir()) == []  # an unlabelled evaluation now would not leave the old confusion behind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("...")
    with pytest.raises(ValueError, match="not a cpnet evaluation report"):
        prepare_eval_dir(mine)
    assert (mine / "thesis.tex").read_text() == "..."


def test_eval_refuses_a_report_folder_holding_other_files(trained_run, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["eval", "--run", str(trained_run), "--out", str(out)]) == 2
    assert "not a cpnet evaluation report" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_the_demo_replaces_only_its_own_runs(tmp_path):
    from cpnet.app.demo import run_demo

    user_run = tmp_path / "demo" / "runs" / "c2d"
    user_run.mkdir(parents=True)
    (user_run / "config.yaml").write_text("name: my own run\n")
    with pytest.raises(ValueError, match="holds a run the demo did not write"):
        run_demo(tmp_path / "demo", quick=True, models=["c2d"], log=lambda message: None)
    assert (user_run / "config.yaml").read_text() == "name: my own run\n"
    assert RunFolder(user_run).run_files() == [user_run / "config.yaml"]
