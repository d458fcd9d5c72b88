"""Decoding: videos with PyAV (webm/VP8, mp4/H.264), frame folders with Pillow, and every kind of bad media."""

from __future__ import annotations

import numpy as np
import pytest

from cpnet.data import frames, video
from cpnet.data.video import MediaError, count_frames, probe, read_clip
from tests.data.media import frame_index_of, indexed_frames, write_frame_folder, write_video

CODECS = [("libvpx", "webm"), ("libx264", "mp4")]


@pytest.mark.parametrize("codec,ext", CODECS)
def test_video_decodes_the_encoded_frames(tmp_path, codec, ext):
    source = indexed_frames(12)
    path = write_video(tmp_path / f"clip.{ext}", source, codec=codec)
    clip = read_clip(path, [5, 0, 11, 5])
    assert clip.dtype == np.uint8 and clip.shape == (4, 32, 48, 3)
    assert [frame_index_of(f) for f in clip] == [5, 0, 11, 5]
    assert np.abs(clip.astype(int) - source[[5, 0, 11, 5]]).mean() < 3  # within codec error
    assert count_frames(path) == 12 and probe(path) == 12


def test_long_video_seeks_and_matches_sequential_decoding(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.mp4", indexed_frames(40, step=5), fps=4, codec="libx264")  # 10 s
    first_positions = []
    original = video.decode_from

    def spy(container, p, first, allow_seek=True):
        gen = original(container, p, first, allow_seek)
        for k, item in enumerate(gen):
            if k == 0:
                first_positions.append(item[0])
            yield item

    monkeypatch.setattr(video, "decode_from", spy)
    wanted = [30, 33, 39]
    sought = read_clip(path, wanted)
    assert 0 < first_positions[-1] <= 30, "frame 30 is 7.5 s in: the reader should seek instead of decoding from 0"
    assert [frame_index_of(f, step=5) for f in sought] == wanted
    monkeypatch.setattr(video, "SEEK_SECONDS", 1e9)
    sequential = read_clip(path, wanted)
    assert first_positions[-1] == 0
    np.testing.assert_array_equal(sought, sequential)


@pytest.mark.parametrize(
    "pattern,start", [("{:05d}.jpg", 1), ("img_{:05d}.jpg", 1), ("frame{:04d}.png", 0), ("{}.jpg", 1)]
)
def test_frame_folder_patterns_are_detected(tmp_path, pattern, start):
    source = indexed_frames(12)
    folder = write_frame_folder(tmp_path / "v", source, pattern=pattern, start=start)
    (folder / "thumbnail.txt").write_text("not a frame")
    write_frame_folder(folder, indexed_frames(12)[:, :4, :4], pattern="flow_x_" + pattern, start=start)
    detected = frames.detect_pattern(folder)
    assert (detected.start, detected.count, detected.contiguous) == (start, 12, True)
    assert detected.name(11) == pattern.format(start + 11)
    clip = read_clip(folder, [11, 2, 2])
    assert [frame_index_of(f) for f in clip] == [11, 2, 2]
    assert count_frames(folder) == 12 and probe(folder) == 12


def test_missing_media_raise_file_not_found_naming_it(tmp_path):
    for path in (tmp_path / "absent.mp4", tmp_path / "absent_folder"):
        with pytest.raises(FileNotFoundError, match=str(path)):
            read_clip(path, [0])


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 50], ids=["zero-byte", "not-a-video"])
@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_unreadable_files_raise_media_error_naming_the_file(tmp_path, content, ext):
    path = tmp_path / f"bad.{ext}"
    path.write_bytes(content)
    for call in (lambda: read_clip(path, [0]), lambda: count_frames(path), lambda: probe(path)):
        with pytest.raises(MediaError, match="bad." + ext):
            call()


@pytest.mark.parametrize("codec,ext", CODECS)
def test_truncated_video_is_reported(tmp_path, codec, ext):
    path = write_video(tmp_path / f"clip.{ext}", indexed_frames(24), codec=codec)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=f"clip.{ext}"):
        probe(path)
    with pytest.raises(MediaError, match=f"clip.{ext}"):
        read_clip(path, [0, 23])


def test_frame_past_the_end_raises_unless_clamped(tmp_path):
    path = write_video(tmp_path / "clip.webm", indexed_frames(6))
    with pytest.raises(MediaError, match="frame 9 requested"):
        read_clip(path, [0, 9])
    clamped = read_clip(path, [0, 9], clamp_end=True)
    assert [frame_index_of(f) for f in clamped] == [0, 5]
    folder = write_frame_folder(tmp_path / "f", indexed_frames(4))
    with pytest.raises(MediaError, match="4 frames"):
        read_clip(folder, [4])


def test_bad_frame_folders(tmp_path):
    folder = write_frame_folder(tmp_path / "gap", indexed_frames(5))
    (folder / "00003.jpg").unlink()
    with pytest.raises(MediaError, match="00003.jpg"):
        read_clip(folder, [0, 1, 2, 3])
    with pytest.raises(MediaError, match="00003.jpg"):
        probe(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="empty"):
        read_clip(empty, [0])
    corrupt = write_frame_folder(tmp_path / "corrupt", indexed_frames(3))
    (corrupt / "00002.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(MediaError, match="00002.jpg"):
        read_clip(corrupt, [1])
