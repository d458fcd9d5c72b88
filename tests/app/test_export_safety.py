"""Robustness matrix, export rows: `cpnet export` never destroys a file it was not asked to replace. An output that
is the checkpoint (by path, symlink or hard link) is refused and the checkpoint stays byte-identical; an existing
export or sidecar is refused without --force and replaced with it; a writer failing mid-file leaves the previous
export whole and no temporary file behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from cpnet import export
from cpnet.cli import main
from tests.test_export import FRAMES, SIZE, needs_onnx, small_model, write_checkpoint

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated"),
              pytest.mark.robustness]  # an attack: `pytest -m robustness`


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included), name → bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def export_args(ckpt: Path, *extra: str) -> list[str]:
    return ["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--no-verify", *extra]


def fail_after_some_bytes(path, *_, **__) -> None:
    """A writer that gets part of the way into its file and then hits a full disk."""
    with open(path, "wb") as f:
        f.write(b"half an export")
    raise OSError(errno.ENOSPC, "No space left on device")


# --- the checkpoint itself ------------------------------------------------------------------------------------

def _same_path(ckpt: Path) -> tuple[Path, str]:
    return ckpt, str(ckpt)


def _dotted_path(ckpt: Path) -> tuple[Path, str]:
    return ckpt, str(ckpt.parent / ".." / ckpt.parent.name / ckpt.name)


def _symlink(ckpt: Path) -> tuple[Path, str]:
    link = ckpt.parent / "link.pt"
    link.symlink_to(ckpt)
    return ckpt, str(link)


def _hard_link(ckpt: Path) -> tuple[Path, str]:
    link = ckpt.parent / "hard.pt"
    os.link(ckpt, link)
    return ckpt, str(link)


def _sidecar_is_checkpoint(ckpt: Path) -> tuple[Path, str]:
    named = ckpt.with_name("weights.pt.json")  # --out weights.pt would write its sidecar over the checkpoint
    shutil.move(ckpt, named)
    return named, str(named.with_name("weights.pt"))


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("make", [_same_path, _dotted_path, _symlink, _hard_link, _sidecar_is_checkpoint])
def test_an_output_that_is_the_checkpoint_is_refused_and_the_checkpoint_kept(make, force, tmp_path, capsys):
    ckpt, _ = write_checkpoint(tmp_path, "c2d_r18")
    ckpt, out = make(ckpt)
    before = snapshot(tmp_path)
    assert main(export_args(ckpt, "--out", out, *(["--force"] if force else []))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is the checkpoint {ckpt} being exported" in err
    assert snapshot(tmp_path) == before  # byte-identical, and nothing written beside it


# --- an existing export ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("existing", ["output", "sidecar"])
def test_an_existing_export_is_refused_without_force_and_replaced_with_it(existing, tmp_path, capsys):
    ckpt, model = write_checkpoint(tmp_path, "c2d_r18")
    out = tmp_path / "deploy" / "model.pt"
    sidecar = out.with_name("model.pt.json")
    (out if existing == "output" else sidecar).parent.mkdir()
    (out if existing == "output" else sidecar).write_bytes(b"the previous export")
    before = snapshot(tmp_path)

    assert main(export_args(ckpt, "--out", str(out))) == 2
    err = capsys.readouterr().err
    path = out if existing == "output" else sidecar
    assert err.count("\n") == 1 and f"export {existing} {path} already exists" in err and "--force" in err
    assert snapshot(tmp_path) == before

    assert main(export_args(ckpt, "--out", str(out), "--force")) == 0
    assert json.loads(sidecar.read_text())["class_names"] == ["a", "b", "c"]
    clip = torch.randn(1, 3, FRAMES, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(clip), model.eval()(clip), atol=1e-4, rtol=0)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.pt", "model.pt.json"]  # no temporaries


def test_an_output_folder_is_refused_even_with_force(tmp_path, capsys):
    ckpt, _ = write_checkpoint(tmp_path, "c2d_r18")
    (tmp_path / "deploy").mkdir()
    assert main(export_args(ckpt, "--out", str(tmp_path / "deploy"), "--force")) == 2
    assert f"export output {tmp_path / 'deploy'} is a folder" in capsys.readouterr().err


# --- a failure mid-write --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=needs_onnx)])
def test_a_writer_failing_mid_file_leaves_the_previous_export(fmt, tmp_path, monkeypatch):
    write, writer = (export.export_onnx, "torch.onnx.export") if fmt == "onnx" else \
        (export.export_torchscript, "torch.jit.save")
    model = small_model("c2d_r18")
    path = write(model, tmp_path / "model", FRAMES, SIZE)
    before = snapshot(tmp_path)

    target = {"torch.onnx.export": lambda m, args, f, **kw: fail_after_some_bytes(f),
              "torch.jit.save": lambda m, f, **kw: fail_after_some_bytes(f)}[writer]
    monkeypatch.setattr(writer, target)
    with pytest.raises(OSError, match="No space left on device"):
        write(model, path, FRAMES, SIZE)
    assert snapshot(tmp_path) == before  # the old bytes, and no temporary file left


def test_the_cli_failing_mid_write_keeps_the_previous_export_and_sidecar(tmp_path, capsys, monkeypatch):
    ckpt, _ = write_checkpoint(tmp_path, "c2d_r18")
    assert main(export_args(ckpt)) == 0
    before = snapshot(tmp_path)

    monkeypatch.setattr("torch.jit.save", lambda m, f, **kw: fail_after_some_bytes(f))
    assert main(export_args(ckpt, "--force")) == 1  # the machine, not the input: exit 1, one line
    assert "No space left on device" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    monkeypatch.undo()

    written = []
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: written.append(self) or fail_after_some_bytes(self))
    assert main(export_args(ckpt, "--force")) == 1
    assert [p.name.split(".json.")[0] for p in written] == [f".checkpoint_best_{FRAMES}x{SIZE}.torchscript.pt"]
    sidecar = ckpt.parent / f"checkpoint_best_{FRAMES}x{SIZE}.torchscript.pt.json"
    assert sidecar.read_bytes() == before[str(sidecar.relative_to(tmp_path))]
    assert sorted(snapshot(tmp_path)) == sorted(before)
