"""Folders of numbered frames (Jester's ``00001.jpg`` …): name-pattern detection and Pillow decoding.

The pattern is detected from the folder's contents rather than assumed, because each dataset export names frames
its own way (``00001.jpg``, ``img_00001.jpg``, ``frame0001.png``, unpadded ``1.jpg``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cpnet.data.records import MediaError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_NAME = re.compile(r"^(?P<prefix>.*?)(?P<num>[0-9]+)(?P<ext>\.[A-Za-z]+)$")  # ASCII digits: names are rebuilt


@dataclass(frozen=True)
class FramePattern:
    """How the frames of one folder are named: ``f"{prefix}{number:0{width}d}{ext}"`` for numbers
    ``start`` … ``start + count - 1`` (``width`` 0 means unpadded). ``contiguous`` is False when numbers are missing."""

    prefix: str
    width: int
    ext: str
    start: int
    count: int
    contiguous: bool

    def name(self, index: int) -> str:
        """File name of the frame at 0-based position ``index``."""
        return f"{self.prefix}{self.start + index:0{self.width}d}{self.ext}"


def detect_pattern(folder: Path) -> FramePattern:
    """Detect the frame-name pattern of ``folder`` from its files.

    Raises FileNotFoundError when the folder does not exist, MediaError when it holds no numbered images.
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise FileNotFoundError(f"frame folder not found: {folder}") from None
    except NotADirectoryError:
        raise MediaError(f"{folder}: expected a folder of frames") from None
    groups: dict[tuple[str, str], list[str]] = {}
    for name in names:
        m = _NAME.match(name)
        if m and m["ext"].lower() in IMAGE_EXTENSIONS:
            groups.setdefault((m["prefix"], m["ext"]), []).append(m["num"])
    if not groups:
        raise MediaError(f"{folder}: no numbered image frames (expected e.g. 00001.jpg or img_00001.jpg)")
    # The most common (prefix, extension) wins, so a stray 'cover1.jpg' or 'flow_x_00001.jpg' does not confuse it.
    # Ties (RGB and optical-flow frames side by side) go to a prefix without 'flow', then the shorter prefix.
    (prefix, ext), nums = max(groups.items(), key=lambda kv: (len(kv[1]), "flow" not in kv[0][0], -len(kv[0][0])))
    # Zero-padded names give the pad width; unpadded ones ('1.jpg' … '37.jpg') format with width 0.
    width = min(len(n) for n in nums) if any(n.startswith("0") for n in nums) else 0
    odd = {n for n in nums if f"{int(n):0{width}d}" != n}
    if odd:  # '2.jpg' beside '01.jpg', or '1.jpg' beside '01.jpg': no single name pattern reads every frame
        first, other = (min(group, key=lambda n: (len(n), n)) for group in (odd, set(nums) - odd))
        raise MediaError(f"{folder}: frame names mix number widths ({prefix}{first}{ext} beside {prefix}{other}{ext})")
    values = sorted(int(n) for n in nums)
    contiguous = values[-1] - values[0] + 1 == len(values)
    return FramePattern(prefix, width, ext, values[0], len(values), contiguous)


def load_image(path: Path) -> np.ndarray:
    """Decode one image file to uint8 (H, W, 3) RGB; a missing or unreadable file raises MediaError naming it."""
    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))  # RGB JPEGs: no converted copy
    except FileNotFoundError:
        raise MediaError(f"{path}: frame file missing") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow raises these for truncated or non-image files
        reason = str(e).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
        raise MediaError(f"{path}: cannot decode image ({reason})") from None


def read_frames(folder: Path, frame_indices: Sequence[int]) -> np.ndarray:
    """Read the frames at 0-based positions ``frame_indices`` of a frame folder: uint8 (T, H, W, 3)."""
    folder = Path(folder)
    pattern = detect_pattern(folder)
    if not pattern.contiguous:  # positions past a hole would read the wrong frames: the folder is damaged
        raise _gap_error(folder, pattern)
    out: list[np.ndarray] = []
    cache: dict[int, np.ndarray] = {}
    for i in frame_indices:
        if not 0 <= i < pattern.count:
            raise MediaError(f"{folder}: frame {i} requested but the folder has {pattern.count} frames")
        if i not in cache:
            cache[i] = load_image(folder / pattern.name(i))
        out.append(cache[i])
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise MediaError(f"{folder}: frames have different sizes {sorted(shapes)}")
    return np.stack(out)  # (T, H, W, 3)


def _gap_error(folder: Path, pattern: FramePattern) -> MediaError:
    """The error for a folder whose frame numbering has a hole, naming the first missing frame file."""
    present = {pattern.name(i) for i in range(pattern.count)} & set(os.listdir(folder))
    gap = next(i for i in range(pattern.count + 1) if pattern.name(i) not in present)
    return MediaError(f"{folder / pattern.name(gap)}: frame file missing (numbering has gaps)")


def count_frames(folder: Path) -> int:
    """Number of frames in a folder (files matching the detected pattern)."""
    return detect_pattern(folder).count


def probe_frames(folder: Path) -> int:
    """Decode every frame of a folder and return the count; gaps in the numbering raise MediaError."""
    pattern = detect_pattern(folder)
    if not pattern.contiguous:
        raise _gap_error(folder, pattern)
    shape = None
    for i in range(pattern.count):
        a = load_image(folder / pattern.name(i))
        if shape is not None and a.shape != shape:
            raise MediaError(f"{folder / pattern.name(i)}: frame size {a.shape} differs from {shape}")
        shape = a.shape
    return pattern.count
