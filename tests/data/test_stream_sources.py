"""Live sources: only a character device under /dev/ is a camera; a FIFO is refused instead of blocking forever
(issue 24, attack 15). A stream that switches to a frame size over the limit midway is refused by the decoder,
before the big frame is decoded."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from cpnet.data import frames as frames_module
from cpnet.data.frames import media_kind
from cpnet.data.records import MediaError
from cpnet.data.stream import StreamReader, check_local_source, is_live_source
from cpnet.data.video import decode_from, open_video
from tests.data.media import encode_video

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev_fifo() -> Path:
    """A FIFO under /dev/ (in /dev/shm), the audit's ``/dev/shm/x.mp4``."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm")
    path = shm / f"cpnet-test-{uuid.uuid4().hex}.mp4"
    os.mkfifo(path)
    yield path
    path.unlink()


def test_a_fifo_under_dev_is_not_a_camera(dev_fifo: Path) -> None:
    assert not is_live_source(str(dev_fifo))
    with pytest.raises(MediaError, match=rf"^{dev_fifo}: not a regular file \(a FIFO\)"):
        media_kind(dev_fifo)  # what predict's check_source then says


def test_a_character_device_and_a_missing_camera_are_live() -> None:
    assert is_live_source("/dev/null")  # a character device
    assert is_live_source(f"/dev/video-{uuid.uuid4().hex}")  # not there: FFmpeg says it cannot open it
    assert not is_live_source("/dev/shm") if Path("/dev/shm").is_dir() else True


def test_predict_refuses_the_fifo_at_once(dev_fifo: Path, tmp_path: Path) -> None:
    # In a subprocess with a timeout: before the fix this blocked until Ctrl-C.
    args = ["predict", "--checkpoint", "missing.pt", str(dev_fifo)]
    code = f"from cpnet.cli import main; raise SystemExit(main({args!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert f"{dev_fifo}: not a regular file (a FIFO)" in done.stderr


def test_stream_reader_refuses_a_fifo_without_opening_it(dev_fifo: Path, tmp_path: Path) -> None:
    code = (f"from cpnet.data.stream import StreamReader\n"
            f"try:\n    StreamReader({str(dev_fifo)!r})\nexcept ValueError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert f"{dev_fifo}: a FIFO, not a video file, camera device or URL" in done.stdout, done.stderr


def test_check_local_source_lets_files_urls_and_devices_through(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    for source in (str(tmp_path / "a.mp4"), "rtsp://camera/stream", "/dev/null", str(tmp_path / "missing.mp4")):
        check_local_source(source)
    with pytest.raises(MediaError, match="a folder, not a video file"):
        check_local_source(str(tmp_path))


def _raw_h264(width: int, height: int, count: int) -> bytes:
    frames = np.stack([np.full((height, width, 3), 40 * i, np.uint8) for i in range(count)])
    return encode_video(frames, "h264", "libx264")


@pytest.fixture
def switching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list]:
    """A raw H.264 stream of three 64² frames, then two 256² frames; the pixel limit lowered to 64² x 2 (the
    audit's 64² -> 16000² at a size a test can afford), and every frame size the readers check recorded."""
    path = tmp_path / "switch.h264"
    path.write_bytes(_raw_h264(64, 64, 3) + _raw_h264(256, 256, 2))
    monkeypatch.setattr(frames_module, "MAX_FRAME_PIXELS", 64 * 64 * 2)
    seen: list[tuple[int, int]] = []
    check = frames_module.check_frame_size

    def spy(where: Path, width: int, height: int) -> None:
        seen.append((width, height))
        check(where, width, height)

    monkeypatch.setattr(frames_module, "check_frame_size", spy)  # what the file reader calls
    monkeypatch.setattr("cpnet.data.stream.check_frame_size", spy)  # the stream reader's own import
    return path, seen


def test_a_file_that_grows_midway_is_refused_by_the_decoder(switching: tuple[Path, list]) -> None:
    path, seen = switching
    with open_video(path) as container, pytest.raises(MediaError, match=r"decoding failed after frame \d .*a frame "
                                                                        r"over 8,192 pixels is refused so too"):
        list(decode_from(container, path, 0))
    assert (256, 256) not in seen  # never decoded, so never checked


def test_a_stream_that_grows_midway_is_refused_by_the_decoder(switching: tuple[Path, list]) -> None:
    path, seen = switching
    with StreamReader(str(path), timeout=None) as reader:
        with pytest.raises(MediaError, match=r"after \d frames .*over 8,192 pixels"):
            list(reader.frames())
    assert (256, 256) not in seen


def test_an_http_mp4_that_fails_says_which_containers_stream(tmp_path):
    """Issue 23.9: an MP4 over HTTP failed to decode where MPEG-TS worked, with nothing said about why."""
    import socket
    import threading

    from tests.data.media import indexed_frames, write_video

    body = write_video(tmp_path / "clip.mp4", indexed_frames(24, 64, 96), codec="libx264").read_bytes()
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:  # the whole file on every request, ranges ignored, then the connection closed
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n" + body)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(MediaError, match=r"MPEG-TS \(\.ts\), HLS \(\.m3u8\), RTSP") as caught:
            with StreamReader(f"http://127.0.0.1:{server.getsockname()[1]}/clip.mp4", timeout=5) as reader:
                for _ in reader.frames():
                    pass
        assert "-movflags +faststart" in str(caught.value)
    finally:
        server.close()
