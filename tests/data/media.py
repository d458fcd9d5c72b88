"""Helpers that write tiny media in the official formats, for the data tests (and any other test that needs a
dataset on disk): videos encoded with PyAV, folders of JPEG frames, and frames whose index can be read back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

# Encoder settings that keep tiny test videos nearly lossless, so decoded frames can be compared with the input.
CODEC_OPTIONS = {
    "libx264": {"crf": "8", "preset": "ultrafast", "g": "4"},
    "libvpx": {"crf": "4", "b": "4M", "g": "4"},
    "mpeg4": {"qscale": "2", "g": "4"},
}


def indexed_frames(num_frames: int, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3) frames whose mean brightness encodes their index (20 + 8 * t), over a smooth pattern, so a
    decoded frame can be identified despite codec error."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 12 * np.sin(xx / width * 2 * np.pi)[..., None] * rng.uniform(0.5, 1, size=3)  # (H, W, 3) smooth pattern
    level = 20 + 8 * np.arange(num_frames, dtype=np.float64)  # (T,)
    frames = level[:, None, None, None] + base[None] + 0 * yy[None, ..., None]  # (T, H, W, 3)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def frame_index_of(frame: np.ndarray) -> int:
    """Inverse of :func:`indexed_frames`: the index whose brightness level is nearest to the frame's mean."""
    return int(round((float(frame.mean()) - 20) / 8))


def write_video(path: Path, frames: np.ndarray, fps: int = 12, codec: str = "libvpx") -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames to ``path`` (container from the suffix) with PyAV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, height, width, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(CODEC_OPTIONS.get(codec, {}))
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder: Path, frames: np.ndarray, pattern: str = "{:05d}.jpg", start: int = 1) -> Path:
    """Write uint8 (T, H, W, 3) frames as images named ``pattern.format(start + t)`` (quality 95 JPEG or PNG)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, array in enumerate(frames):
        Image.fromarray(array).save(folder / pattern.format(start + t), quality=95)
    return folder
