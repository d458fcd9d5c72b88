"""Media in time: live sources decoded frame by frame into a ring buffer, and windows in seconds over a file.

A *live source* is anything FFmpeg opens as input: a camera (``/dev/video0``, read with the ``v4l2`` format), a
network stream (``rtsp://…``, ``http://…``) or, for tests and replays, a local video file read as if it were live.
:class:`StreamReader` decodes it in order and yields ``(seconds since the first frame, uint8 (H, W, 3) RGB)``;
:class:`FrameRing` keeps the last frames of a clip's span. Frames stay at the source's size: the clip is resized and
cropped later by :mod:`cpnet.data.transforms`, on the (T, H, W, 3) stack, exactly as evaluation prepares a clip.

Windows. :func:`media_timing` reads a file's frame rate and frame count from its container (PyAV stream
``average_rate``, ``frames``, ``duration``) without decoding; a frame folder has no rate, so the caller supplies
one. :func:`time_windows` and :func:`window_frames` turn a window length and stride in seconds into frame ranges.
"""

from __future__ import annotations

import math
import os
import queue
import stat
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from cpnet.data.frames import check_frame_size, media_kind
from cpnet.data.pyav import av  # imported on first use: cpnet runs without PyAV until a video is opened
from cpnet.data.records import MediaError
from cpnet.data.video import count_frames, decode_error, limit_decoder

__all__ = ["FrameRing", "MediaTiming", "StreamReader", "check_local_source", "input_format", "is_device",
           "is_live_source", "media_timing", "time_windows", "window_frames"]

DEVICE_PREFIX = "/dev/"  # where cameras and capture cards are: a character device there is opened by FFmpeg
OPEN_TIMEOUT = 10.0  # seconds to wait for a network source to open or send data before giving up
_POLL = 0.1  # seconds between looks at Ctrl-C while waiting for the decoding thread's next frame
_END = object()  # the decoding thread's last hand-over: the source ended


def is_device(source: str) -> bool:
    """Whether ``source`` is a character device (a camera, a capture card), links followed."""
    try:
        return stat.S_ISCHR(os.stat(source).st_mode)
    except (OSError, ValueError):
        return False


def is_live_source(source: str) -> bool:
    """Whether ``source`` names a device or a URL (``scheme://…``) rather than a file or folder on disk. Under
    ``/dev/`` a character device is one, and so is a path not there (FFmpeg then says it cannot open it); anything
    else there is not: a FIFO (``/dev/shm/x.mp4``) would block the reader forever, a regular file is a file."""
    if source.startswith(DEVICE_PREFIX):
        return is_device(source) or not os.path.lexists(source)
    return "://" in source and not source.startswith("file://")


def check_local_source(source: str) -> None:
    """Refuse a local path that is neither a regular file nor a character device (MediaError naming it and what
    it is): a FIFO, socket or block device would block the reader or never end. URLs and missing paths pass (FFmpeg
    reports those)."""
    if "://" in source and not source.startswith("file://"):
        return
    try:
        mode = os.stat(source.removeprefix("file://")).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode):
        return
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISDIR, "a folder"))
    what = next((name for test, name in kinds if test(mode)), "a special file")
    raise MediaError(f"{source}: {what}, not a video file, camera device or URL; it is not read")


def input_format(source: str) -> str | None:
    """The FFmpeg input format a source needs named: ``v4l2`` for Linux cameras (``/dev/video*``), else None
    (FFmpeg probes URLs and files itself)."""
    return "v4l2" if source.startswith("/dev/video") else None


def _error_text(error: Exception) -> str:
    return str(getattr(error, "strerror", None) or error)


# Containers a network stream can be read from as its bytes arrive. An MP4/MOV keeps its index (the moov atom) at
# the end unless written with "faststart", so a reader must seek to it, which a live or non-seekable HTTP source
# does not allow.
STREAMABLE = "MPEG-TS (.ts), HLS (.m3u8), RTSP, Matroska/WebM"
_INDEXED_AT_END = (".mp4", ".mov", ".m4v")


def streaming_hint(source: str) -> str:
    """Why a network MP4/MOV fails to decode, and what streams instead ('' for anything else)."""
    if "://" not in source or not urlsplit(source).path.lower().endswith(_INDEXED_AT_END):
        return ""
    return (f"; an MP4/MOV streams only when its index comes first (re-encode with ffmpeg -movflags +faststart) "
            f"and the server answers range requests: {STREAMABLE} stream as they are")


class StreamReader:
    """A video source decoded frame by frame as it arrives; a context manager that closes the container.

    ``fmt`` names the FFmpeg input format (default :func:`input_format`); ``fallback_fps`` is the frame rate used
    when the source states none (its frames' timestamps are used when they exist).
    """

    def __init__(self, source: str, *, fmt: str | None = None, fallback_fps: float = 12.0,
                 timeout: float | None = OPEN_TIMEOUT) -> None:
        if fallback_fps <= 0:
            raise ValueError(f"fallback frame rate must be > 0, got {fallback_fps}")
        self.source = source
        self.closed = False
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._worker: threading.Thread | None = None
        self._worker_done, self._orphaned = True, False
        check_local_source(source)
        fmt = fmt or input_format(source)
        try:
            self.container = av.open(source, format=fmt, timeout=timeout)
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise MediaError(f"{source}: cannot open the video source ({_error_text(e)}){streaming_hint(source)}") \
                from None
        if not self.container.streams.video:
            self.close()
            raise MediaError(f"{source}: no video stream")
        stream = self.container.streams.video[0]
        limit_decoder(stream)
        self.fps = float(stream.average_rate or stream.guessed_rate or 0) or float(fallback_fps)
        self.frames_read = 0

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(seconds since the first frame, uint8 (H, W, 3) RGB)`` for every frame until the source ends.
        A frame beyond the size limits of :mod:`cpnet.data.frames` or a decoding error raises MediaError.

        FFmpeg's reads run in a helper thread that hands the frames over one at a time: a stalled source blocks
        inside FFmpeg until its read timeout, where no Ctrl-C is seen, while this thread waits in Python and takes
        KeyboardInterrupt at once. Once the caller stops, the helper stops at its next frame (or timeout)."""
        handoff: queue.Queue = queue.Queue(maxsize=2)
        self._stop.clear()
        worker = threading.Thread(target=self._decode_into, args=(handoff,), name="cpnet-stream", daemon=True)
        with self._lock:
            self._worker_done = False
        worker.start()
        self._worker = worker
        try:
            while True:
                try:
                    item = handoff.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()

    def _decode(self) -> Iterator[tuple[float, np.ndarray]]:
        """The frames as :meth:`frames` yields them, decoded in the calling thread."""
        stream = self.container.streams.video[0]
        first: float | None = None
        try:
            for frame in self.container.decode(stream):
                check_frame_size(Path(self.source), frame.width, frame.height)
                # Timestamps when the source has them (cameras stamp wall-clock time); else the frame count.
                stamp = frame.time if frame.time is not None else self.frames_read / self.fps
                first = stamp if first is None else first
                self.frames_read += 1
                yield stamp - first, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise MediaError(f"{self.source}: decoding failed after {self.frames_read} frames "
                             f"({decode_error(e)}){streaming_hint(self.source)}") from None

    def _decode_into(self, handoff: queue.Queue) -> None:
        """The helper thread of :meth:`frames`: decode into ``handoff`` (frames, then _END or the exception) until
        the source ends or the caller stops; close the container itself when :meth:`close` left it open."""

        def hand_over(item: object) -> bool:
            while not self._stop.is_set():
                try:
                    handoff.put(item, timeout=_POLL)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in self._decode():
                if not hand_over(item):
                    return
            hand_over(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, which raises it
            hand_over(e)
        finally:
            with self._lock:
                self._worker_done = True
                if self._orphaned:
                    self.container.close()

    def close(self) -> None:
        """Close the container (again is a no-op). A helper thread still waiting inside FFmpeg for a stalled
        source is not waited for: it closes the container itself when FFmpeg returns (at the read timeout)."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=0.5)
        with self._lock:
            if not self._worker_done:
                self._orphaned = True
                return
        self.container.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameRing:
    """The last ``capacity`` frames of a stream with their times. A frame of another size than those held (a
    stream that changes resolution) empties the ring first, so a stack never mixes sizes."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1 frame, got {capacity}")
        self.capacity = capacity
        self._frames: deque[np.ndarray] = deque(maxlen=capacity)
        self._times: deque[float] = deque(maxlen=capacity)

    def push(self, time: float, frame: np.ndarray) -> None:
        if self._frames and frame.shape != self._frames[-1].shape:
            self._frames.clear()
            self._times.clear()
        self._frames.append(frame)
        self._times.append(time)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def full(self) -> bool:
        return len(self._frames) == self.capacity

    @property
    def times(self) -> list[float]:
        return list(self._times)

    def stack(self) -> np.ndarray:
        """The held frames, oldest first: uint8 (N, H, W, 3)."""
        if not self._frames:
            raise ValueError("the frame ring is empty; push frames before stacking them")
        return np.stack(self._frames)


@dataclass(frozen=True)
class MediaTiming:
    """A file's frame rate and frame count (a container's count may overstate what decodes by a frame or two)."""

    fps: float
    num_frames: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def media_timing(path: Path, folder_fps: float = 12.0) -> MediaTiming:
    """Frame rate and frame count of a video file (from its container, no decoding) or of a frame folder, whose
    rate is ``folder_fps`` (also used for a video whose container states no rate)."""
    if folder_fps <= 0:
        raise ValueError(f"frame rate must be > 0, got {folder_fps}")
    path = Path(path)
    if media_kind(path) == "folder":
        return MediaTiming(float(folder_fps), count_frames(path))
    with StreamReader(str(path), fallback_fps=folder_fps, timeout=None) as reader:
        stream = reader.container.streams.video[0]
        num = int(stream.frames or 0)
        if num < 1:  # WebM states no count: the duration does, else the packets are counted
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (reader.container.duration or 0) / av.time_base
            num = round(seconds * reader.fps)
        fps = reader.fps
    return MediaTiming(fps, num if num >= 1 else count_frames(path))


def time_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """(start, end) seconds of windows of ``window`` seconds every ``stride`` seconds that fit in ``duration``; a
    video shorter than one window gives the one window (0, duration)."""
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be > 0 seconds, got {window} and {stride}")
    if duration <= window:
        return [(0.0, float(duration))]
    count = math.floor((duration - window) / stride + 1e-9) + 1
    return [(i * stride, i * stride + window) for i in range(count)]


def window_frames(start: float, end: float, fps: float, num_frames: int) -> tuple[int, int]:
    """(first frame, frame count) of the window [start, end) seconds in a video of ``num_frames`` at ``fps``;
    at least one frame."""
    first = min(num_frames - 1, max(0, round(start * fps)))
    last = min(num_frames, round(end * fps))
    return first, max(1, last - first)
