"""Ctrl-C on a stalled live source takes effect at once, not when FFmpeg's 10 s read timeout expires (issue 24).

A local HTTP server sends ten seconds of an MPEG-TS stream and then nothing, holding the connection open; a
subprocess reads it with :class:`StreamReader` and gets SIGINT once its reads stall."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.data.media import encode_video

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

ROOT = Path(__file__).resolve().parents[2]

READER = """
import sys, time
from cpnet.data.stream import StreamReader
reader = StreamReader(sys.argv[1], timeout=10)
try:
    for n, _ in enumerate(reader.frames()):
        if n == 0:
            print("reading", flush=True)
except KeyboardInterrupt:
    started = time.monotonic()
    reader.close()
    print(f"interrupted; close took {time.monotonic() - started:.1f} s", flush=True)
"""


@pytest.fixture
def stalled_url() -> Iterator[str]:
    """An http:// URL that serves ten seconds of video, then stalls with the connection open."""
    frames = np.repeat((np.arange(100) % 256).astype(np.uint8), 64 * 64 * 3).reshape(100, 64, 64, 3)
    body = encode_video(frames, "mpegts", "mpeg4", fps=10)  # ten seconds at 10 fps
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + body)  # no length: more may come

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/live.ts"
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="needs POSIX signals")
def test_ctrl_c_on_a_stalled_stream_is_prompt(stalled_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", READER, stalled_url], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "reading", proc.stderr.read()
        time.sleep(2.0)  # the ten seconds of frames are decoded well within this; the reads now wait
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert "interrupted" in out, err
    assert took < 3.0, f"Ctrl-C took {took:.1f} s (FFmpeg's read timeout is 10 s)"
