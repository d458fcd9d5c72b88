"""Robustness matrix, media-limit rows: frames too thin or too large, decompression bombs, FIFOs and device files,
unlistable frame folders and symlinked Kinetics class folders. Each bad file raises ``MediaError`` naming it (and
the limit it breaks), is skipped under ``skip_bad``, and is named and counted by ``cpnet data check`` — before any
pixel is decoded, and without hanging."""

from __future__ import annotations

import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageFile

from cpnet.cli import main
from cpnet.data import frames
from cpnet.data.annotations import load_split
from cpnet.data.dataset import ClipDataset
from cpnet.data.records import DatasetSplit, MediaError, VideoRecord
from cpnet.data.video import count_frames, probe, read_clip
from tests.data.media import indexed_frames, write_frame_folder, write_jester_tree, write_kinetics_tree, write_video
from tests.data.test_media_robustness import assert_rejected

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

TIMEOUT = 20.0  # seconds; a hang is reported as a failure instead of stalling the suite


def write_bilevel_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit PNG of ``width`` x ``height``, streamed so that a 200-megapixel one is written in
    a fraction of a second and takes a few tens of KB on disk (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed bits of one row
    packer = zlib.compressobj(9)
    rows_per_step = max(1, 2**22 // len(row))
    body = b"".join(packer.compress(row * min(rows_per_step, height - y)) for y in range(0, height, rows_per_step))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body + packer.flush())
                     + chunk(b"IEND", b""))
    return path


def write_large_video(path: Path, width: int, height: int) -> Path:
    """One black MPEG-4 frame of ``width`` x ``height`` in a Matroska file (no decoding needed to write it)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def finishes(call: Callable[[], object], fifo: Path | None = None, timeout: float = TIMEOUT) -> object:
    """``call()``'s result (or its exception, re-raised), failing the test when it runs past ``timeout``. A call
    stuck opening ``fifo`` is released by opening its other end, so that the thread ends too."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the blocked reader gets EOF
        thread.join(timeout)
        pytest.fail(f"still running after {timeout:.0f} s: opening {fifo or 'the media'} hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Fail any Pillow decode: the limits must be checked from the image header alone."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{getattr(self, 'filename', 'an image')} was decoded before its size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# --- 2: aspect ratio ----------------------------------------------------------------------------------------------


def test_thin_frame_folder_is_bad_media(tmp_path):
    folder = write_frame_folder(tmp_path / "thin", indexed_frames(4, 1, 2000))  # 4.5 KB on disk
    limit = f"{frames.MAX_ASPECT:g}:1"
    for call in (probe, lambda p: read_clip(p, [0, 3])):
        with pytest.raises(MediaError, match=rf"thin/00001.jpg: frame size 2000x1 .*aspect .*{limit}"):
            call(folder)
    assert_rejected(folder, tmp_path, "00001.jpg", "aspect")
    # Evaluation resized the short side to the crop size before cropping: 1 x 2000 -> 112 x 224000 per frame.
    split = DatasetSplit([VideoRecord("thin", folder, 0, 4)], ["a"])
    assert ClipDataset(split, num_frames=4, size=112, train=False, skip_bad=True)[0] is None


def test_thin_video_is_bad_media_before_decoding(tmp_path):
    path = write_video(tmp_path / "thin.webm", np.zeros((3, 2, 64, 3), np.uint8))  # 64 x 2: 32:1
    for call in (count_frames, probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match=r"thin.webm: frame size 64x2 .*aspect"):
            call(path)
    assert_rejected(path, tmp_path, "thin.webm", "aspect")


def test_aspect_ratio_at_the_limit_reads(tmp_path):
    width = int(16 * frames.MAX_ASPECT)
    folder = write_frame_folder(tmp_path / "wide", indexed_frames(2, 16, width))
    assert read_clip(folder, [0, 1]).shape == (2, 16, width, 3)


# --- 3: decoded-size limit ----------------------------------------------------------------------------------------


def test_decompression_bomb_png_is_bad_media(tmp_path):
    folder = tmp_path / "bomb"
    write_bilevel_png(folder / "00001.png", 20000, 10000)  # 200 megapixels, past Pillow's own hard limit
    assert (folder / "00001.png").stat().st_size < 64_000
    for call in (probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match=r"bomb/00001.png: .*200,000,000 pixels.* limit of 64,000,000"):
            call(folder)
    assert_rejected(folder, tmp_path, "00001.png", "limit")


def test_image_over_the_project_limit_is_refused_from_its_header(tmp_path, no_pixel_decoding):
    folder = tmp_path / "big"
    write_bilevel_png(folder / "00001.png", 8200, 8200)  # 67 megapixels: below Pillow's limits, above ours
    with pytest.raises(MediaError, match=r"big/00001.png: frame size 8200x8200 .*limit of 64,000,000 pixels"):
        read_clip(folder, [0])


def test_image_between_pillows_limits_is_refused_even_when_warnings_are_errors(tmp_path, no_pixel_decoding):
    folder = tmp_path / "warned"
    write_bilevel_png(folder / "00001.png", 12000, 10000)  # 120 megapixels: Pillow only warns
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(MediaError, match="120,000,000 pixels"):
        read_clip(folder, [0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(MediaError, match=r"warned/00001.png: frame of 120,000,000 pixels is over the limit"):
            read_clip(folder, [0])


def test_video_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    path = write_large_video(tmp_path / "huge.mkv", 8190, 8190)  # 67 megapixels per frame, 0.7 MB on disk
    for call in (count_frames, probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match=r"huge.mkv: frame size 8190x8190 .*limit of 64,000,000 pixels"):
            call(path)
    assert_rejected(path, tmp_path, "huge.mkv", "limit")


# --- 9: FIFOs and device files -----------------------------------------------------------------------------------


def test_fifo_in_place_of_a_video_is_refused_without_hanging(tmp_path):
    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)
    for call in (count_frames, probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match="pipe.mp4: not a regular file"):
            finishes(lambda c=call: c(path), fifo=path)
    finishes(lambda: assert_rejected(path, tmp_path, "pipe.mp4", "not a regular file"), fifo=path)


def test_fifo_among_the_frames_is_refused_without_hanging(tmp_path):
    folder = write_frame_folder(tmp_path / "piped", indexed_frames(4, 20, 20))
    (folder / "00002.jpg").unlink()
    os.mkfifo(folder / "00002.jpg")
    for call in (probe, lambda p: read_clip(p, [0, 1])):
        with pytest.raises(MediaError, match="piped/00002.jpg: not a regular file"):
            finishes(lambda c=call: c(folder), fifo=folder / "00002.jpg")


def test_device_file_in_place_of_a_video_is_refused(tmp_path):
    path = tmp_path / "zero.mp4"
    path.symlink_to("/dev/zero")
    with pytest.raises(MediaError, match="zero.mp4: not a regular file"):
        finishes(lambda: read_clip(path, [0]))


# --- 10: symlinked Kinetics class folders -------------------------------------------------------------------------


def test_kinetics_symlinked_class_folders_are_followed_without_loops(tmp_path):
    root = tmp_path / "kinetics"
    rows = [("abseiling", "aaa", 5, 15), ("zumba", "ccc", 30, 40)]
    write_kinetics_tree(tmp_path / "elsewhere", "train", rows)
    write_kinetics_tree(root, "train", rows, write_media=[False, False])
    (root / "train").mkdir()
    for label in ("abseiling", "zumba"):
        (root / "train" / label).symlink_to(tmp_path / "elsewhere" / "train" / label, target_is_directory=True)
    (root / "train" / "zumba" / "loop").symlink_to(root / "train", target_is_directory=True)  # train/zumba/loop/…
    (root / "train" / "self").symlink_to(root / "train" / "self")  # a link to itself
    split = finishes(lambda: load_split("kinetics", root, "train"))
    assert split.missing == []
    assert [r.path for r in split.records] == [root / "train" / label / f"{name}.mp4" for label, name in
                                               [("abseiling", "aaa_000005_000015"), ("zumba", "ccc_000030_000040")]]


# --- 11: an unlistable frame folder -------------------------------------------------------------------------------


@pytest.fixture
def unlistable(monkeypatch):
    """``deny(folder)`` makes listing ``folder`` raise PermissionError (chmod 000 does not stop root)."""
    denied: set[str] = set()
    listdir, scandir = os.listdir, os.scandir

    def guard(original):
        def call(path=".", *args, **kwargs):
            if isinstance(path, (str, os.PathLike)) and os.fspath(path) in denied:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return original(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "listdir", guard(listdir))
    monkeypatch.setattr(os, "scandir", guard(scandir))
    return lambda folder: denied.add(str(folder))


def test_unlistable_frame_folder_is_bad_media(tmp_path, unlistable):
    folder = write_frame_folder(tmp_path / "locked", indexed_frames(4, 20, 20))
    unlistable(folder)
    for call in (count_frames, probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match=r"locked: cannot list the frame folder \(Permission denied\)"):
            call(folder)
    assert_rejected(folder, tmp_path, "locked", "Permission denied")


def test_unlistable_jester_folder_loads_and_is_skipped(jester_root, unlistable):
    unlistable(jester_root / "20bn-jester-v1" / "102")
    split = load_split("jester", jester_root, "train")
    assert [r.video_id for r in split.records] == ["101", "102", "103", "104"]
    dataset = ClipDataset(split, num_frames=4, size=16, train=False, skip_bad=True)
    with pytest.warns(UserWarning, match="102: cannot list the frame folder"):
        assert dataset[1] is None
    assert dataset[0] is not None


# --- cpnet data check names and counts all of them ----------------------------------------------------------------


def test_data_check_names_and_counts_every_kind(tmp_path, unlistable, capsys):
    items = [(f"{i}", "Thumb Up") for i in range(1, 7)]
    root = write_jester_tree(tmp_path / "jester", {"train": items}, num_frames=3, size=(20, 20))
    media = root / "20bn-jester-v1"
    write_bilevel_png(media / "1" / "00003.jpg", 20000, 10000)  # a PNG bomb under a .jpg name, the last frame
    write_bilevel_png(media / "2" / "00003.jpg", 8200, 8200)
    write_frame_folder(media / "3", indexed_frames(3, 2, 200))
    (media / "4" / "00003.jpg").unlink()
    os.mkfifo(media / "4" / "00003.jpg")
    unlistable(media / "5")
    args = ["data", "check", "--dataset", "jester", "--root", str(root), "--split", "train"]
    assert finishes(lambda: main(args), fifo=media / "4" / "00003.jpg") == 1
    text = capsys.readouterr().out
    assert "jester train: 6 videos, 1 classes, 0 missing, 5 undecodable" in text
    for video_id, reason in [("1", "00003.jpg: .*limit of"), ("2", "00003.jpg: frame size 8200x8200"),
                             ("3", "00001.jpg: frame size 200x2 .*aspect"), ("4", "00003.jpg: not a regular file"),
                             ("5", "5: cannot list the frame folder")]:
        assert any(line.startswith(f"  undecodable {video_id}: ") and re.search(reason, line)
                   for line in text.splitlines()), f"{video_id} ({reason}) not reported in:\n{text}"
    assert finishes(lambda: main([*args, "--quick"]), fifo=media / "4" / "00003.jpg") == 1
    assert "5 undecodable" in capsys.readouterr().out
