"""Live sources and windows in time (cpnet.data.stream): a local video read as a stream, the ring of the last
frames, a file's timing from its container, and windows in seconds turned into frame ranges."""

from __future__ import annotations

import numpy as np
import pytest

from cpnet.data.records import MediaError
from cpnet.data.stream import (
    FrameRing,
    StreamReader,
    input_format,
    is_live_source,
    media_timing,
    time_windows,
    window_frames,
)
from cpnet.data.transforms import eval_transform
from tests.data.media import frame_index_of, indexed_frames, write_frame_folder, write_video

FRAMES = indexed_frames(24, 32, 48, step=8)  # (24, 32, 48, 3): frame t has brightness 20 + 8 t


@pytest.fixture(scope="module", params=[("clip.mp4", "libx264"), ("clip.webm", "libvpx")], ids=["mp4", "webm"])
def video(request, tmp_path_factory):
    name, codec = request.param
    return write_video(tmp_path_factory.mktemp("stream") / name, FRAMES, fps=12, codec=codec)


def test_a_video_file_read_as_a_stream_yields_every_frame_in_order_with_its_time(video):
    with StreamReader(str(video)) as reader:
        assert reader.fps == 12
        got = list(reader.frames())
    assert reader.closed and reader.frames_read == len(FRAMES)
    times = [t for t, _ in got]
    assert times == pytest.approx([i / 12 for i in range(len(FRAMES))], abs=1e-3)
    for i, (_, frame) in enumerate(got):
        assert frame.dtype == np.uint8 and frame.shape == (32, 48, 3)
        assert frame_index_of(frame) == i


def test_stream_frames_go_through_the_evaluation_transform(video):
    """Frames stay at the source's size; a (T, H, W, 3) stack of them is resized and cropped by the transforms."""
    with StreamReader(str(video)) as reader:
        stack = np.stack([frame for _, (_, frame) in zip(range(4), reader.frames())])  # (4, 32, 48, 3)
    clip = eval_transform(stack, 16, 16)
    assert clip.shape == (3, 4, 16, 16)


def test_close_is_idempotent_and_stops_nothing_else(video):
    reader = StreamReader(str(video))
    frames = reader.frames()
    next(frames)
    reader.close()
    reader.close()
    assert reader.closed


@pytest.mark.parametrize("content", [None, b"not a video at all"], ids=["missing", "garbage"])
def test_a_source_that_does_not_open_names_itself(tmp_path, content):
    path = tmp_path / "broken.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match="broken.mp4"):
        StreamReader(str(path))


def test_a_bad_fallback_rate_is_refused(video):
    with pytest.raises(ValueError, match="frame rate"):
        StreamReader(str(video), fallback_fps=0)


@pytest.mark.parametrize(
    "source, live, fmt",
    [("/dev/video0", True, "v4l2"), ("rtsp://camera.local/stream", True, None), ("http://x/y.m3u8", True, None),
     ("clip.mp4", False, None), ("file:///tmp/clip.mp4", False, None), ("frames/0001", False, None)],
)
def test_live_sources_and_their_input_format(source, live, fmt):
    assert is_live_source(source) is live
    assert input_format(source) == fmt


def test_the_ring_keeps_the_last_frames_oldest_first():
    ring = FrameRing(3)
    for t in range(5):
        ring.push(t / 10, FRAMES[t])
        assert ring.full is (t >= 2)
    assert len(ring) == 3 and ring.times == [0.2, 0.3, 0.4]
    assert [frame_index_of(f) for f in ring.stack()] == [2, 3, 4]


def test_the_ring_empties_when_the_frame_size_changes():
    ring = FrameRing(4)
    ring.push(0.0, FRAMES[0])
    ring.push(0.1, FRAMES[1])
    ring.push(0.2, np.zeros((16, 16, 3), np.uint8))
    assert len(ring) == 1 and ring.stack().shape == (1, 16, 16, 3)


def test_the_ring_refuses_nonsense():
    with pytest.raises(ValueError, match="capacity"):
        FrameRing(0)
    with pytest.raises(ValueError, match="empty"):
        FrameRing(2).stack()


def test_media_timing_of_a_video_comes_from_its_container(video):
    timing = media_timing(video)
    assert timing.fps == 12 and timing.num_frames == len(FRAMES)
    assert timing.duration == pytest.approx(2.0)


def test_media_timing_of_a_frame_folder_uses_the_given_rate(tmp_path):
    folder = write_frame_folder(tmp_path / "frames", FRAMES[:10])
    timing = media_timing(folder, folder_fps=5)
    assert (timing.fps, timing.num_frames, timing.duration) == (5, 10, 2.0)
    with pytest.raises(ValueError, match="frame rate"):
        media_timing(folder, folder_fps=0)
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        media_timing(tmp_path / "nothing_here")


def test_time_windows_fit_in_the_duration():
    assert time_windows(4.0, 1.0, 0.5) == [(i * 0.5, i * 0.5 + 1.0) for i in range(7)]
    assert time_windows(4.0, 1.0, 1.0)[-1] == (3.0, 4.0)
    assert time_windows(3.3, 1.0, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert time_windows(0.3, 1.0, 0.5) == [(0.0, 0.3)]  # shorter than one window: the whole video
    for window, stride in ((0, 1), (1, 0), (-1, 1)):
        with pytest.raises(ValueError, match="> 0 seconds"):
            time_windows(4.0, window, stride)


def test_window_frames_are_the_frames_inside_the_window():
    assert window_frames(1.0, 2.0, 12, 48) == (12, 12)
    assert window_frames(0.0, 4.0, 12, 48) == (0, 48)
    assert window_frames(3.5, 4.5, 12, 48) == (42, 6)  # clamped at the last frame
    assert window_frames(9.0, 10.0, 12, 48) == (47, 1)  # never empty
