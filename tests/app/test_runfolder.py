"""Run folders are never silently reused: a folder holding a run is refused unless --resume or --force, a training
holds an exclusive lock, config and metrics are replaced atomically, an evaluation report folder is refused when it
holds other files and never keeps stale files of an earlier report, and the demo replaces only its own runs."""

from __future__ import annotations

import fcntl
import json
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


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(synthetic_root, tmp_path, capsys):
    """Issue 24 #11: `.lock` a symlink to another file had that file overwritten with 'pid … started …'."""
    config = write_config(tmp_path / "tiny.yaml", tiny_config(synthetic_root))
    victim = tmp_path / "precious.txt"
    victim.write_text("my thesis\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    assert _train(config, out) == 2
    err = capsys.readouterr().err
    assert ".lock is a symbolic link" in err and len(err.strip().splitlines()) == 1
    assert victim.read_text() == "my thesis\n"
    (out / ".lock").unlink()
    os.link(victim, out / ".lock")  # a hard link: the same file under the lock's name
    assert _train(config, out) == 2 and "hard link" in capsys.readouterr().err
    assert victim.read_text() == "my thesis\n"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_metrics_line_cut_short_is_dropped_on_resume_with_a_note(synthetic_root, tmp_path, capsys):
    """Issue 24 #8: the disk filled mid-append; `--resume` failed on the half line ('Expecting ',' delimiter')."""
    config = write_config(tmp_path / "tiny.yaml", tiny_config(synthetic_root, epochs=2))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress",
                 "--set", "train.epochs=1"]) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_loss": 0.6')  # the append a full disk cut short
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--no-progress", "--set", "train.epochs=2"]) == 0
    assert "dropped the last line of" in capsys.readouterr().out
    assert [r["epoch"] for r in _records(run)] == [1, 2]
    (run / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')  # damage before the end: named
    assert main(["train", "--resume", "--out", str(run), "--no-progress", "--set", "train.epochs=3"]) == 2
    assert "metrics.jsonl, line 2: not a JSON record" in capsys.readouterr().err


class _Killed(BaseException):
    """A kill -9 at a chosen point: nothing after it runs (BaseException: no handler of ours catches it)."""


@pytest.mark.parametrize("moment", ["after_best", "after_last"])
def test_a_kill_between_an_epochs_writes_leaves_metrics_no_newer_than_the_checkpoints(
        synthetic_root, tmp_path, monkeypatch, moment):
    """Issue 24 #9: killed between checkpoint_last and checkpoint_best of a new best, the metrics named a newer
    best than checkpoint_best.pt held. Now best, then last, then the metrics line: at any kill the metrics' best
    epoch is on disk, and the resumed run ends with every epoch's line once."""
    import torch

    import cpnet.app.runfolder as runfolder

    config = write_config(tmp_path / "tiny.yaml", tiny_config(synthetic_root, epochs=3, optim={"lr": 0.0}))
    run = tmp_path / "run"
    real_save, real_write = runfolder.atomic_save, runfolder.RunRecorder.write

    def save(obj, path):
        if moment == "after_best" and obj["epoch"] == 2 and Path(path).name == "checkpoint_last.pt":
            raise _Killed
        return real_save(obj, path)

    def write(self, record):
        if moment == "after_last" and record["epoch"] == 2:
            raise _Killed
        return real_write(self, record)

    monkeypatch.setattr(runfolder, "atomic_save", save)
    monkeypatch.setattr(runfolder.RunRecorder, "write", write)
    with pytest.raises(_Killed):
        main(["train", "--config", str(config), "--out", str(run), "--no-progress"])
    monkeypatch.undo()
    (run / ".lock").unlink(missing_ok=True)  # a killed process leaves its lock file (not its lock)
    best_on_disk = torch.load(run / "checkpoint_best.pt", weights_only=True)["epoch"]
    named = [r["epoch"] for r in _records(run) if r.get("best_top1") == r.get("val_top1")]
    assert max(named) <= best_on_disk
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert [r["epoch"] for r in _records(run)] == [1, 2, 3]


def test_a_new_best_is_on_disk_before_the_last_checkpoint_and_the_metrics_name_it(tmp_path, monkeypatch):
    """The order of an epoch's writes when it sets a new best: checkpoint_best, checkpoint_last, metrics line. A
    kill after the best (before the last) leaves the metrics at the previous epoch, never naming an unsaved best."""
    import torch

    import cpnet.app.runfolder as runfolder
    from cpnet.engine.loop import EpochEnd

    run = RunFolder(tmp_path / "run")
    recorder = run.recorder()

    def end(epoch: int) -> EpochEnd:
        record = {"epoch": epoch, "val_top1": 0.1 * epoch, "best_top1": 0.1 * epoch}
        return EpochEnd(record, True, lambda full: {"epoch": epoch, "full": full})

    recorder.epoch_end(end(1))
    real_save = runfolder.atomic_save

    def killed_at_the_last(obj, path):
        if Path(path).name == "checkpoint_last.pt" and obj["epoch"] == 2:
            raise _Killed
        return real_save(obj, path)

    monkeypatch.setattr(runfolder, "atomic_save", killed_at_the_last)
    with pytest.raises(_Killed):
        recorder.epoch_end(end(2))
    records, _ = run.read_metrics()
    assert [r["epoch"] for r in records] == [1]
    assert torch.load(run.best, weights_only=True)["epoch"] == 2 and torch.load(run.last, weights_only=True) == {
        "epoch": 1, "full": True}
