"""Decoding media to uint8 (T, H, W, 3) RGB arrays: video files with PyAV, frame folders with Pillow.

This is the entry point for every media path: :func:`read_clip`, :func:`count_frames` and :func:`probe` tell a
frame folder from a video file (:func:`cpnet.data.frames.media_kind`, which refuses FIFOs and device files) and hand
folders to :mod:`cpnet.data.frames`; that module never calls back here. A video stream whose header breaks the frame
limits of :mod:`cpnet.data.frames` (``MAX_FRAME_PIXELS``, ``MAX_ASPECT``) is refused on opening, before decoding,
and every decoded frame is checked again (a stream may change size).

Only the frames asked for are decoded: decoding stops after the last wanted frame, and when the first wanted frame
lies more than ``SEEK_SECONDS`` into the video the container seeks to the keyframe before it instead of decoding
from the start. Frame positions are 0-based in presentation order. Containers are always closed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import get_worker_info

from cpnet.data import frames as _frames
from cpnet.data.pyav import av  # imported on first use: cpnet runs without PyAV until a video is opened
from cpnet.data.records import MediaError

__all__ = ["MediaError", "SEEK_SECONDS", "VIDEO_EXTENSIONS", "announced_frames", "check_decoded", "count_frames",
           "decode_error", "decode_from", "limit_decoder", "open_video", "probe", "read_clip"]

# What FFmpeg (PyAV) decodes and the folder, list and prepare readers take as videos; any other file is counted as
# ignored and named in a warning, never dropped silently.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".ogv",
                    ".flv", ".3gp", ".wmv")
SEEK_SECONDS = 2.0  # seek when the first wanted frame is further in than this; decoding from 0 is cheaper before


def read_clip(path: str | Path, frame_indices: Sequence[int], *, clamp_end: bool = False) -> np.ndarray:
    """Frames at 0-based positions ``frame_indices`` (any order, repeats allowed) of a video file or frame folder.

    Returns uint8 (T, H, W, 3) RGB with T = len(frame_indices). A missing path raises FileNotFoundError; an empty,
    truncated or undecodable file, a FIFO or device file, a frame beyond the size limits, or a position past the
    end raises MediaError naming the file. With ``clamp_end`` positions past the last decodable video frame repeat
    that frame instead: container frame counts can overstate what actually decodes (edit lists, a damaged tail),
    which training tolerates.
    """
    path = Path(path)
    kind = _frames.media_kind(path)
    indices = [int(i) for i in frame_indices]
    if not indices:
        raise ValueError(f"{path}: no frame indices requested")
    if min(indices) < 0:
        raise ValueError(f"{path}: negative frame index {min(indices)}")
    if kind == "folder":
        return _frames.read_frames(path, indices)
    return _read_video(path, indices, clamp_end)


def open_video(path: Path) -> av.container.InputContainer:
    """Open a video file whose first video stream's header (when it states a size) is within the frame limits.
    Only a regular file is opened (a FIFO or device would block av.open): MediaError otherwise."""
    if _frames.media_kind(path) != "file":
        raise MediaError(f"{path}: a folder; expected a video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError(f"{path}: not a readable video ({getattr(e, 'strerror', None) or e})") from None
    try:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        codec = container.streams.video[0].codec_context
        if codec.width and codec.height:
            _frames.check_frame_size(path, codec.width, codec.height)
        limit_decoder(container.streams.video[0])
    except MediaError:
        container.close()
        raise
    return container


def limit_decoder(stream: av.VideoStream) -> None:
    """Give the decoder the pixel limit (FFmpeg's ``max_pixels``), so that a stream whose size changes midway (64²
    to 16000²) is refused before the big frame is decoded, not after; set before the decoder opens."""
    codec = stream.codec_context
    if not codec.is_open:
        codec.options = {**codec.options, "max_pixels": str(_frames.MAX_FRAME_PIXELS)}


def decode_error(error: Exception) -> str:
    """What a decoding error says, with the pixel limit named where the decoder's refusal reads as bad data."""
    text = str(getattr(error, "strerror", None) or error)
    if isinstance(error, av.error.InvalidDataError):
        text += f"; a frame over {_frames.MAX_FRAME_PIXELS:,} pixels is refused so too"
    return text


def decode_from(
    container: av.container.InputContainer, path: Path, first: int, allow_seek: bool = True
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield (position, frame) from about ``first`` on, seeking when that is far into the video."""
    stream = container.streams.video[0]
    if get_worker_info() is None:  # in DataLoader workers the workers are the parallelism: no decoder threads
        stream.thread_type = "AUTO"
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    time_base = float(stream.time_base or 0)
    start_pts = stream.start_time or 0
    pos = -1
    seeked = False
    if allow_seek and fps > 0 and time_base > 0 and first / fps > SEEK_SECONDS:
        # Aim half a second early so that a frame-rate estimate that is slightly off still lands before `first`.
        try:
            container.seek(start_pts + int((first / fps - 0.5) / time_base), stream=stream, backward=True)
        except av.FFmpegError as e:
            raise MediaError(f"{path}: cannot seek to frame {first} ({getattr(e, 'strerror', None) or e})") from None
        seeked = True
    try:
        for frame in container.decode(stream):
            if seeked and frame.pts is not None:
                # After a seek the position comes from the timestamp once; counting continues from there.
                pos = round((frame.pts - start_pts) * time_base * fps)
                seeked = False
            else:
                pos += 1
            _frames.check_frame_size(path, frame.width, frame.height)  # before it is converted or kept
            yield pos, frame
    except av.FFmpegError as e:
        where = "no frame decodes" if pos < 0 else f"decoding failed after frame {pos}"
        raise MediaError(f"{path}: {where} ({decode_error(e)})") from None


class _Overshoot(Exception):
    """A seek landed after the first wanted frame (variable frame rate); decode from the start instead."""


def _read_video(path: Path, indices: list[int], clamp_end: bool) -> np.ndarray:
    try:
        return _read_video_once(path, indices, clamp_end, allow_seek=True)
    except _Overshoot:
        return _read_video_once(path, indices, clamp_end, allow_seek=False)


def _read_video_once(path: Path, indices: list[int], clamp_end: bool, allow_seek: bool) -> np.ndarray:
    wanted = set(indices)
    first_wanted, last_wanted = min(wanted), max(wanted)
    got: dict[int, np.ndarray] = {}
    last_pos, last_frame = -1, None
    with open_video(path) as container:
        for pos, frame in decode_from(container, path, first_wanted, allow_seek):
            if last_frame is None and pos > first_wanted:
                raise _Overshoot
            last_pos, last_frame = pos, frame
            if pos in wanted:
                got[pos] = frame.to_ndarray(format="rgb24")
            if pos >= last_wanted:
                break
        missing = wanted - got.keys()
        fill = None
        if missing:
            if not clamp_end or last_frame is None or min(missing) <= last_pos:
                raise MediaError(f"{path}: frame {min(missing)} requested but only {last_pos + 1} frames decode")
            fill = last_frame.to_ndarray(format="rgb24")
    return np.stack([got[i] if i in got else fill for i in indices])  # (T, H, W, 3)


def count_frames(path: str | Path) -> int:
    """Number of frames: counted from disk for a frame folder; for a video the container's count, or the number of
    video packets when the container does not store one (WebM) — no decoding either way."""
    path = Path(path)
    if _frames.media_kind(path) == "folder":
        return _frames.count_frames(path)
    with open_video(path) as container:
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        try:
            n = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as e:
            raise MediaError(f"{path}: cannot read packets ({e})") from None
    if n == 0:
        raise MediaError(f"{path}: video has no frames")
    return n


def probe(path: str | Path) -> int:
    """Decode every frame of a media file or folder and return how many decode; raises MediaError on any problem,
    including a video that decodes clearly fewer frames than its container announces (a truncated download).
    This is what ``cpnet data check`` runs on each record."""
    path = Path(path)
    if _frames.media_kind(path) == "folder":
        return _frames.probe_frames(path)
    n = 0
    with open_video(path) as container:
        announced = announced_frames(container)
        for _ in decode_from(container, path, 0):
            n += 1
    check_decoded(path, n, announced)
    return n


def announced_frames(container: av.container.InputContainer) -> int:
    """Frames the container says its first video stream has (from its duration when it stores no count; 0 when it
    says neither)."""
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    return int(stream.frames or 0) or round((container.duration or 0) / av.time_base * fps)


def check_decoded(path: Path, decoded: int, announced: int) -> None:
    """MediaError when no frame decoded, or clearly fewer than the container announces (a truncated download)."""
    if decoded == 0:
        raise MediaError(f"{path}: no frame decodes")
    if decoded < announced - max(2, 0.05 * announced):
        raise MediaError(f"{path}: truncated: {decoded} frames decode, the container announces {announced}")
