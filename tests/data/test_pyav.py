"""PyAV is imported when a video is first opened, not with cpnet: frame folders (the synthetic set) need none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cpnet.data.pyav as pyav
from cpnet.data.video import read_clip

ROOT = Path(__file__).resolve().parents[2]
# The CLI with every subcommand (train, predict, data prepare...) and the media modules; `av` made unimportable.
WITHOUT_AV = """
import sys
sys.modules["av"] = None
import cpnet.cli, cpnet.data.dataset, cpnet.data.prepare, cpnet.data.stream
cpnet.cli.build_parser()
assert "av" not in sys.modules or sys.modules["av"] is None
print("ok")
"""


def test_cpnet_and_every_command_import_without_pyav() -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_AV], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_frame_folders_read_without_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    for i in range(3):
        Image.fromarray(np.full((4, 5, 3), 10 * i, np.uint8)).save(tmp_path / f"{i:05d}.jpg")
    assert read_clip(tmp_path, [0, 2]).shape == (2, 4, 5, 3)


def test_opening_a_video_without_pyav_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    with pytest.raises(ImportError, match=r"reading or writing video files needs PyAV \(pip install av\)"):
        read_clip(video, [0])


def test_the_deferred_module_is_pyav_once_imported() -> None:
    import av

    assert pyav.av.open is av.open and pyav.av.FFmpegError is av.FFmpegError


def test_the_cli_says_in_one_line_that_a_video_needs_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    from cpnet.cli import main

    monkeypatch.setitem(sys.modules, "av", None)
    video = tmp_path / "src" / "clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"\0" * 64)
    code = main(["data", "prepare", "frames", "--src", str(video.parent), "--out", str(tmp_path / "out")])
    assert code in (1, 2)
    err = capsys.readouterr()
    text = err.err + err.out
    assert "needs PyAV (pip install av)" in text and "Traceback" not in text
