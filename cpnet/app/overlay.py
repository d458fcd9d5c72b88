"""``cpnet predict --overlay``: the video with its predictions drawn on every frame, as mmaction2's demo writes it
(the top classes of the window around the frame, a running timeline along the bottom), encoded through PyAV."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cpnet.app.predict import Predictor, clip_span, predict_timeline
from cpnet.data.frames import media_kind
from cpnet.data.records import MediaError
from cpnet.data.stream import StreamReader, media_timing
from cpnet.files import atomic_output
from cpnet.reports.overlay import draw_overlay

OVERLAY_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}  # H.264 (or MPEG-4) inside


def overlay_video(pred: Predictor, path: Path, out: Path, *, topk: int = 5, window: float | None = None,
                  stride: float | None = None, force: bool = False, folder_fps: float = 12.0) -> tuple[dict, Path]:
    """``path`` re-encoded to ``out`` with, on every frame, the top ``topk`` classes of the window around it and a
    running timeline of the whole video along the bottom (mmaction2's demo video). The windows are those of
    :func:`predict_timeline` (default: one clip span, every half span). Returns (the timeline, ``out``)."""
    path, out = Path(path), Path(out)
    fmt = OVERLAY_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"--overlay {out}: expected a video file name ending in {', '.join(OVERLAY_FORMATS)}")
    if media_kind(path) == "folder":
        raise ValueError(f"--overlay draws on a video file; {path} is a frame folder")
    if os.path.lexists(out) and not force:
        raise ValueError(f"--overlay {out} already exists; pass --force to replace it")
    if os.path.lexists(out) and os.path.samefile(out, path):
        raise ValueError(f"--overlay {out} is the input video; expected another file")
    timing = media_timing(path, folder_fps)
    span = window or clip_span(pred.data) / timing.fps
    timeline = predict_timeline(pred, path, window=span, stride=stride or span / 2, topk=topk, folder_fps=folder_fps)
    windows = timeline["windows"]
    centres = np.array([(w["start_s"] + w["end_s"]) / 2 for w in windows])
    track = [(c, w["top"][0]["class"], w["top"][0]["probability"]) for c, w in zip(centres, windows)]
    names = list(dict.fromkeys(name for _, name, _ in track))
    with atomic_output(out) as tmp:
        _encode_overlay(path, tmp, fmt, timing.fps, lambda t, frame: draw_overlay(
            frame, [(c["class"], c["probability"]) for c in windows[int(np.abs(centres - t).argmin())]["top"]],
            time_s=t, duration_s=timeline["duration_s"], track=track, names=names))
    return timeline, out


def _encode_overlay(path: Path, tmp: Path, fmt: str, fps: float, draw: Callable[[float, np.ndarray], np.ndarray]
                    ) -> None:
    """Decode ``path``, draw on every frame and encode into ``tmp`` (container ``fmt``, the source's rate)."""
    from fractions import Fraction

    from cpnet.data.prepare import pick_codec
    from cpnet.data.pyav import av

    rate = Fraction(fps).limit_denominator(1001)
    with StreamReader(str(path), fallback_fps=fps, timeout=None) as reader, \
            av.open(str(tmp), "w", format=fmt) as container:
        stream = None
        for k, (t, frame) in enumerate(reader.frames()):
            drawn = draw(t, frame)
            height, width = drawn.shape[0] // 2 * 2, drawn.shape[1] // 2 * 2  # yuv420p needs even sides
            if stream is None:
                stream = container.add_stream(pick_codec(), rate=rate)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn[:height, :width]), format="rgb24")
            picture = picture.reformat(format="yuv420p")
            picture.pts, picture.time_base = k, 1 / rate
            for packet in stream.encode(picture):
                container.mux(packet)
        if stream is None:
            raise MediaError(f"{path}: no frame decoded, nothing to draw on")
        for packet in stream.encode():
            container.mux(packet)
