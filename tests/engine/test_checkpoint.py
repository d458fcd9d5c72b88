"""Checkpoint safety: plain data loaded with weights_only, atomic writes, refusals that name what differs."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import cpnet
from cpnet.app.config import Config, config_to_dict
from cpnet.app.runfolder import LAST
from cpnet.app.trained import load_trained
from cpnet.cli import main
from cpnet.engine import atomic_save, load_checkpoint
from cpnet.engine.checkpoint import check_plain, load_model_state, make_checkpoint
from tests.engine.test_loop import fit, make_run

TINY = {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1}


def tiny_checkpoint(path: Path, name: str = "c2d_r18", num_classes: int = 3) -> Path:
    """A checkpoint of a tiny preset with its resolved config, as ``train_run`` writes one."""
    cfg = Config()
    cfg.model.name, cfg.model.options = name, dict(TINY)
    torch.manual_seed(0)
    model = cpnet.create_model(name, num_classes=num_classes, **TINY)
    meta = {"model_name": name, "num_classes": num_classes, "class_names": [f"c{i}" for i in range(num_classes)],
            "config": config_to_dict(cfg)}
    return atomic_save(make_checkpoint(model, epoch=1, meta=meta), path)


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tiny_checkpoint(tmp_path / LAST)
    before = load_checkpoint(path)["model"]
    real_save = torch.save

    def crash_halfway(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half the bytes reach the disk, then it dies
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_halfway)
    newer = {"format": "cpnet-checkpoint", "version": 1, "epoch": 2, "model": {}}
    with pytest.raises(OSError, match="No space"):
        atomic_save(newer, path)
    after = load_checkpoint(path)
    assert after["epoch"] == 1 and all(torch.equal(after["model"][k], v) for k, v in before.items())
    assert [p.name for p in tmp_path.iterdir()] == [LAST]  # the partial temporary file is gone

    # What a direct write would have left behind is refused, not half-loaded:
    monkeypatch.setattr(torch, "save", real_save)
    with open(tmp_path / "direct.pt", "wb") as f:
        with pytest.raises(OSError):
            crash_halfway(newer | {"model": before}, f)
    with pytest.raises(ValueError, match="direct.pt is not a loadable cpnet checkpoint"):
        load_checkpoint(tmp_path / "direct.pt")


def test_training_checkpoints_hold_only_plain_data(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=1)
    fit(model, opt, sched, train, val, **kw)
    ckpt = torch.load(tmp_path / "run" / LAST, weights_only=True)
    check_plain(ckpt)  # tensors, numbers, strings, lists and dicts all the way down
    assert {"model", "optimizer", "schedule", "scaler", "rng", "metrics"} <= set(ckpt)


def test_make_checkpoint_refuses_objects_naming_where_they_are():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"checkpoint\['metrics'\]\['top1'\] is a numpy.float64"):
        make_checkpoint(model, epoch=1, meta={}, metrics={"top1": np.float64(0.5)})
    with pytest.raises(ValueError, match=r"checkpoint\['config'\] is a pathlib"):
        make_checkpoint(model, epoch=1, meta={"config": Path("x")})


class Payload:
    """Unpickling this would create the marker file: what a malicious checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "cpnet-checkpoint", "version": 1, "model": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt is not a loadable cpnet checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_foreign_files_are_refused_with_one_line(tmp_path, capsys):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "foreign.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "foreign.pt is not a cpnet checkpoint" in err and len(err.splitlines()) == 1
    atomic_save({"format": "cpnet-checkpoint", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="version 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")


def test_checkpoint_of_another_model_or_class_count_is_refused(tmp_path):
    path = tiny_checkpoint(tmp_path / "c2d.pt")
    other = Config()
    other.model.name, other.model.options = "c3d_r18", dict(TINY)
    with pytest.raises(ValueError, match="c2d.pt is for model 'c2d_r18' \\(expected 'c3d_r18'\\)"):
        load_trained(path, torch.device("cpu"), other)
    wider = Config()
    wider.model.name, wider.model.options = "c2d_r18", {**TINY, "width": 8}
    with pytest.raises(ValueError, match="weights do not fit the model; other shapes: .*\\(model "):
        load_trained(path, torch.device("cpu"), wider)


def test_resume_refuses_a_run_of_another_model(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=1)
    fit(model, opt, sched, train, val, **kw)
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=2)
    kw["meta"] = kw["meta"] | {"model_name": "other", "num_classes": 5}
    with pytest.raises(ValueError, match="is for model 'toy' \\(expected 'other'\\) and 2 classes \\(expected 5\\)"):
        fit(model, opt, sched, train, val, resume=True, **kw)


def test_state_dict_of_a_ddp_wrapper_is_named():
    model = nn.Sequential(nn.Linear(2, 2))
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="'module.': a DDP wrapper's state dict.*missing: 0.weight, 0.bias"):
        load_model_state(model, prefixed, "wrapped.pt")


@pytest.mark.robustness
def test_a_write_that_fails_mid_checkpoint_raises_the_oserror_naming_the_file(tmp_path):
    """Issue 24 #10: a full disk during torch.save surfaced as torch's RuntimeError ('unexpected pos') with a
    traceback. A real failed write (a file-size limit, in a subprocess) now raises the OSError naming the
    checkpoint, and the previous checkpoint stays whole."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import errno, resource, signal, torch
        from cpnet.engine.checkpoint import atomic_save
        path = {str(tmp_path / "ckpt.pt")!r}
        atomic_save({{"epoch": 1}}, path)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            atomic_save({{"epoch": 2, "w": torch.zeros(100_000)}}, path)
        except OSError as e:
            print("OSError", e.errno in (errno.EFBIG, errno.ENOSPC), e.filename)
        except RuntimeError as e:
            print("RuntimeError", e)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OSError", "True", str(tmp_path / "ckpt.pt")]
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.robustness
def test_messages_show_a_checkpoints_fields_bounded(tmp_path):
    """Values read from a checkpoint reach error messages cut short: a shared-reference bomb as ``version`` or
    ``model_name`` is named by its kind, never expanded by repr."""
    from cpnet.engine.checkpoint import check_compatible

    bomb: list = ["x"]
    for _ in range(40):  # 2^40 leaves if expanded
        bomb = [bomb, bomb]
    atomic_save({"format": "cpnet-checkpoint", "version": bomb}, tmp_path / "v.pt")
    with pytest.raises(ValueError, match=r"checkpoint version a list is not supported"):
        load_checkpoint(tmp_path / "v.pt")
    with pytest.raises(ValueError, match=r"is for model a list \(expected 'c2d_r18'\) and an integer of 200 bits"):
        check_compatible({"model_name": bomb, "num_classes": 2**199}, "c2d_r18", 3)
    with pytest.raises(ValueError, match=r"model 'xxxxxxxx.*…"):
        check_compatible({"model_name": "x" * 10_000, "num_classes": 3}, "c2d_r18", 3)
