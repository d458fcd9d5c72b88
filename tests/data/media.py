"""Helpers that write tiny media in the official formats, for the data tests (and any other test that needs a
dataset on disk): videos encoded with PyAV, folders of JPEG frames, and frames whose index can be read back."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from cpnet.data.pyav import av  # imported on first use: the root conftest imports this module

# Encoder settings that keep tiny test videos nearly lossless, so decoded frames can be compared with the input.
CODEC_OPTIONS = {
    "libx264": {"crf": "8", "preset": "ultrafast", "g": "4"},
    "libvpx": {"crf": "4", "b": "4M", "g": "4"},
    "mpeg4": {"qscale": "2", "g": "4"},
}


def indexed_frames(num_frames: int, height: int = 32, width: int = 48, seed: int = 0, step: int = 8) -> np.ndarray:
    """uint8 (T, H, W, 3) frames whose mean brightness encodes their index (20 + step * t), over a smooth pattern,
    so a decoded frame can be identified despite codec error."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 12 * np.sin(xx / width * 2 * np.pi)[..., None] * rng.uniform(0.5, 1, size=3)  # (H, W, 3) smooth pattern
    if 20 + step * (num_frames - 1) > 235:
        raise ValueError(f"{num_frames} frames at brightness step {step} do not fit in 8 bits")
    level = 20 + step * np.arange(num_frames, dtype=np.float64)  # (T,)
    frames = level[:, None, None, None] + base[None] + 0 * yy[None, ..., None]  # (T, H, W, 3)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def frame_index_of(frame: np.ndarray, step: int = 8) -> int:
    """Inverse of :func:`indexed_frames`: the index whose brightness level is nearest to the frame's mean."""
    return int(round((float(frame.mean()) - 20) / step))


def _encode(container, frames: np.ndarray, codec: str, fps: int, options: dict[str, str]) -> None:
    """Encode uint8 (T, H, W, 3) RGB frames as the one video stream of the open output ``container``."""
    _, height, width, _ = frames.shape
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = dict(options)
    for array in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_video(path: Path, frames: np.ndarray, fps: int = 12, codec: str = "libvpx") -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames to ``path`` (container from the suffix) with PyAV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        _encode(container, frames, codec, fps, CODEC_OPTIONS.get(codec, {}))
    return path


def encode_video(frames: np.ndarray, fmt: str, codec: str, fps: int = 10) -> bytes:
    """The bytes of uint8 (T, H, W, 3) RGB frames encoded in container format ``fmt`` (e.g. ``mpegts``, raw
    ``h264``), as a network stream would carry them, with the encoder's own defaults."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        _encode(container, frames, codec, fps, {})
    return buf.getvalue()


def write_frame_folder(folder: Path, frames: np.ndarray, pattern: str = "{:05d}.jpg", start: int = 1) -> Path:
    """Write uint8 (T, H, W, 3) frames as images named ``pattern.format(start + t)`` (quality 95 JPEG or PNG)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, array in enumerate(frames):
        Image.fromarray(array).save(folder / pattern.format(start + t), quality=95)
    return folder


# --- dataset trees in the official layouts ------------------------------------------------------------------------

JESTER_CLASSES = [
    "Swiping Left",
    "Swiping Right",
    "Thumb Up",
    "Turning Hand Clockwise",
    "Turning Hand Counterclockwise",
]
SSV2_TEMPLATES = [
    "Pushing [something] from left to right",
    "Pushing [something] from right to left",
    "Holding [something] next to [something]",
]
KINETICS_CLASSES = ["abseiling", "air drumming", "zumba"]


def write_jester_tree(
    root: Path,
    splits: dict[str, list[tuple[str, str | None]]],
    num_frames: int = 6,
    size: tuple[int, int] = (24, 40),
    archive: bool = True,
    pattern: str = "{:05d}.jpg",
    classes: list[str] = JESTER_CLASSES,
) -> Path:
    """Jester layout: labels CSV, ``id;Label`` split CSVs (label None -> test style, id only) and frame folders
    under ``20bn-jester-v1/`` (or the root itself with ``archive=False``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "jester-v1-labels.csv").write_text("\n".join(classes) + "\n")
    media = root / "20bn-jester-v1" if archive else root
    for split, items in splits.items():
        lines = [f"{vid};{label}" if label is not None else vid for vid, label in items]
        (root / f"jester-v1-{split}.csv").write_text("\n".join(lines) + "\n")
        for i, (vid, _) in enumerate(items):
            write_frame_folder(media / vid, indexed_frames(num_frames, *size, seed=i), pattern=pattern)
    return root


def write_ssv2_tree(
    root: Path,
    splits: dict[str, list[tuple[str, str | None]]],
    num_frames: int = 8,
    size: tuple[int, int] = (32, 48),
    archive: bool = True,
) -> Path:
    """SSv2 layout: labels JSON (bracket-free template -> index string), split JSONs (bracketed templates; None ->
    test style without template) and ``<id>.webm`` videos (VP8) under ``20bn-something-something-v2/``."""
    import json

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(SSV2_TEMPLATES)}
    (root / "something-something-v2-labels.json").write_text(json.dumps(labels))
    media = root / "20bn-something-something-v2" if archive else root
    for split, items in splits.items():
        entries = [
            {"id": vid, **({"template": t, "label": "x", "placeholders": ["x"]} if t else {})} for vid, t in items
        ]
        (root / f"something-something-v2-{split}.json").write_text(json.dumps(entries))
        for i, (vid, _) in enumerate(items):
            write_video(media / f"{vid}.webm", indexed_frames(num_frames, *size, seed=i), codec="libvpx")
    return root


def write_kinetics_tree(
    root: Path,
    split: str,
    rows: list[tuple[str | None, str, int, int]],
    layout: str = "split/label",
    csv_name: str | None = None,
    write_media: list[bool] | None = None,
    num_frames: int = 10,
) -> Path:
    """Kinetics layout: CSV ``label,youtube_id,time_start,time_end,split,is_cc`` (label None -> test style without
    the column) and H.264 clips ``<id>_<start:06d>_<end:06d>.mp4`` under ``<split>/<label>/`` ("split/label"),
    ``<split>/`` ("split") or the root ("flat"). ``write_media[i]`` False leaves clip i missing."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    labelled = rows[0][0] is not None
    header = "label,youtube_id,time_start,time_end,split,is_cc" if labelled else "youtube_id,time_start,time_end,split"
    lines = [header]
    for i, (label, yid, start, end) in enumerate(rows):
        lines.append((f'"{label}",' if labelled else "") + f"{yid},{start},{end},{split}" + (",0" if labelled else ""))
        if write_media is not None and not write_media[i]:
            continue
        folder = {"split/label": root / split / (label or "unknown"), "split": root / split, "flat": root}[layout]
        name = f"{yid}_{start:06d}_{end:06d}.mp4"
        write_video(folder / name, indexed_frames(num_frames, seed=i), fps=10, codec="libx264")
    (root / "annotations" / (csv_name or f"{split}.csv")).write_text("\n".join(lines) + "\n")
    return root
