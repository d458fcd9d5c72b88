"""Robustness matrix, media rows: each bad file raises ``MediaError`` naming it when read strictly, and is skipped,
warned about by name and counted when the dataset reads with ``skip_bad``. A 1-frame video still gives a T=8 clip."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from cpnet.data.dataset import ClipDataset, collate_skip, load_frames
from cpnet.data.records import DatasetSplit, MediaError, VideoRecord
from cpnet.data.video import count_frames, probe, read_clip
from tests.data.media import frame_index_of, indexed_frames, write_frame_folder, write_video

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


def _dataset(path: Path, good: Path, skip_bad: bool) -> ClipDataset:
    """A two-video split, the bad one first; frame counts unknown, so the reader has to open every file."""
    split = DatasetSplit([VideoRecord("bad", path, 0), VideoRecord("good", good, 1)], ["a", "b"])
    return ClipDataset(split, num_frames=4, size=16, train=True, skip_bad=skip_bad)


def assert_rejected(path: Path, tmp_path: Path, named: str, reason: str | None = None) -> None:
    """Strict reading raises MediaError naming ``named`` (and matching ``reason``); with ``skip_bad`` the item is
    skipped with one warning naming the file, and :func:`collate_skip` counts it."""
    good = write_frame_folder(tmp_path / "good_clip", indexed_frames(6, 20, 20))
    with pytest.raises(MediaError, match=reason) as info:
        _dataset(path, good, skip_bad=False)[0]
    assert named in str(info.value)
    lenient = _dataset(path, good, skip_bad=True)
    with pytest.warns(UserWarning, match="skipping bad media") as caught:
        batch = collate_skip([lenient[0], lenient[1]])
    assert any(named in str(w.message) for w in caught)
    clips, labels, indices, skipped = batch
    assert skipped == 1 and indices.tolist() == [1] and labels.tolist() == [1] and clips.shape == (1, 3, 4, 16, 16)


def test_zero_byte_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    for call in (count_frames, probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match="empty.mp4: not a readable video"):
            call(path)
    assert_rejected(path, tmp_path, "empty.mp4", "not a readable video")


def test_truncated_mp4(tmp_path):
    path = write_video(tmp_path / "cut.mp4", indexed_frames(24), codec="libx264")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the moov index sits at the end: cut off with the second half
    for call in (count_frames, probe, lambda p: read_clip(p, [0, 23])):
        with pytest.raises(MediaError, match="cut.mp4"):
            call(path)
    assert_rejected(path, tmp_path, "cut.mp4")


def test_text_file_named_webm(tmp_path):
    path = tmp_path / "notes.webm"
    path.write_text("these are my notes, not a video\n" * 20)
    for call in (count_frames, probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match="notes.webm: not a readable video"):
            call(path)
    assert_rejected(path, tmp_path, "notes.webm", "not a readable video")


def test_jpeg_folder_with_a_missing_frame(tmp_path):
    folder = write_frame_folder(tmp_path / "gap", indexed_frames(6, 20, 20))
    (folder / "00003.jpg").unlink()
    # Any clip of a folder with a hole is refused, also one whose positions would not reach it: positions past the
    # hole would otherwise silently read the wrong frames.
    for indices in ([0, 1], [0, 1, 2, 3, 4]):
        with pytest.raises(MediaError, match=r"00003.jpg: frame file missing \(numbering has gaps\)"):
            read_clip(folder, indices)
    with pytest.raises(MediaError, match="00003.jpg"):
        probe(folder)
    assert_rejected(folder, tmp_path, "00003.jpg", "frame file missing")


def test_non_jpeg_file_among_the_frames(tmp_path):
    folder = write_frame_folder(tmp_path / "mixed", indexed_frames(6, 20, 20))
    (folder / "00004.jpg").write_text("not an image")
    with pytest.raises(MediaError, match="00004.jpg: cannot decode image"):
        read_clip(folder, [0, 3])
    with pytest.raises(MediaError, match="00004.jpg: cannot decode image"):
        probe(folder)
    assert_rejected(folder, tmp_path, "00004.jpg", "cannot decode image")


def test_png_in_place_of_a_jpeg_frame(tmp_path):
    folder = write_frame_folder(tmp_path / "png", indexed_frames(6, 20, 20))
    (folder / "00002.jpg").rename(folder / "00002.png")
    with pytest.raises(MediaError, match="00002.jpg: frame file missing"):
        read_clip(folder, [0, 1])
    assert_rejected(folder, tmp_path, "00002.jpg", "frame file missing")


def test_stray_non_image_files_beside_the_frames_are_ignored(tmp_path):
    folder = write_frame_folder(tmp_path / "stray", indexed_frames(6, 20, 20))
    (folder / "notes.txt").write_text("x")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    (folder / "Thumbs.db").write_bytes(b"\0")
    assert count_frames(folder) == probe(folder) == 6
    assert [frame_index_of(f) for f in read_clip(folder, [5, 0])] == [5, 0]


def _corrupt_payload(path: Path) -> Path:
    """Overwrite the coded frames of an MP4 (its ``mdat`` box) and keep the container index intact."""
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    size = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 : at - 4 + size] = b"\x5a" * (size - 8)
    path.write_bytes(bytes(data))
    return path


def test_video_with_no_decodable_frame(tmp_path):
    path = _corrupt_payload(write_video(tmp_path / "garbled.mp4", indexed_frames(12), codec="libx264"))
    assert count_frames(path) == 12  # the container still announces them
    for call in (probe, lambda p: read_clip(p, [0, 5])):
        with pytest.raises(MediaError, match="garbled.mp4: no frame decodes"):
            call(path)
    assert_rejected(path, tmp_path, "garbled.mp4", "no frame decodes")


def test_video_container_without_frames(tmp_path):
    path = tmp_path / "hollow.mkv"
    with av.open(str(path), "w") as container:  # a header with a video stream and not one packet
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    for call in (count_frames, probe, lambda p: read_clip(p, [0])):
        with pytest.raises(MediaError, match="hollow.mkv"):
            call(path)
    assert_rejected(path, tmp_path, "hollow.mkv")


@pytest.mark.parametrize("kind", ["webm", "mp4", "folder"])
def test_one_frame_video_sampled_as_an_8_frame_clip(tmp_path, kind):
    source = indexed_frames(1, 20, 20)
    if kind == "folder":
        path = write_frame_folder(tmp_path / "one", source)
    else:
        path = write_video(tmp_path / f"one.{kind}", source, codec="libvpx" if kind == "webm" else "libx264")
    record = VideoRecord("one", path, 0)
    for rng in (None, np.random.default_rng(0)):
        frames = load_frames(record, 8, 2, "dense", rng)  # loop-padded from the start: 8 copies of frame 0
        assert frames.shape == (8, 20, 20, 3) and (frames == frames[:1]).all()
        assert frame_index_of(frames[0]) == 0
    segment = load_frames(record, 8, 1, "segment", None)
    assert segment.shape == (8, 20, 20, 3)
    split = DatasetSplit([record], ["a"])
    clip, label, _ = ClipDataset(split, num_frames=8, stride=2, size=16, train=True)[0]
    assert clip.shape == (3, 8, 16, 16) and label == 0


def test_frame_names_mixing_number_widths(tmp_path):
    folder = write_frame_folder(tmp_path / "mixed_width", indexed_frames(3, 20, 20), pattern="{:02d}.jpg")
    (folder / "02.jpg").rename(folder / "2.jpg")  # '01.jpg', '2.jpg', '03.jpg': no one pattern names them all
    with pytest.raises(MediaError, match=r"mixed_width: frame names mix number widths \(01.jpg beside 2.jpg\)"):
        read_clip(folder, [0])
    assert_rejected(folder, tmp_path, "mixed_width", "mix number widths")
