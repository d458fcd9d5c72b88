"""Frames: the limits every decoded frame must meet, what may be opened at all, and folders of numbered frames.

Limits. A frame whose header declares more than ``MAX_FRAME_PIXELS`` pixels, or an aspect ratio beyond
``MAX_ASPECT``:1, is bad media: ``MediaError`` naming the file, its frame size and the limit, skipped and counted
like an undecodable file. Both are checked from the header before any pixel is decoded, here for images and in
:mod:`cpnet.data.video` for video streams. The pixel limit bounds decoding: a 24 KB PNG can declare 200 megapixels,
and PyAV has no limit of its own. The aspect limit bounds the test-time resize, which scales the short side to the
crop size: a 1 x 2000 frame would become 224 x 448000; within the limit a resized frame has at most
``MAX_ASPECT`` x short_side² pixels. Change either here; nothing else holds a copy.

Files. Only regular files and folders are opened (:func:`media_kind`): opening a FIFO blocks until a writer comes,
and a device file may never end.

Frame folders. The name pattern is detected from the folder's contents rather than assumed, because each dataset
export names frames its own way (``00001.jpg``, ``img_00001.jpg``, ``frame0001.png``, unpadded ``1.jpg``).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cpnet.data.records import MediaError

MAX_FRAME_PIXELS = 64_000_000  # per decoded frame: 8K video (33 MP) fits; a 64 MP RGB frame takes 192 MB
MAX_ASPECT = 10.0  # long side / short side: 32:9 panoramas (3.6) fit; a 1 x 2000 strip does not
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_NAME = re.compile(r"^(?P<prefix>.*?)(?P<num>[0-9]+)(?P<ext>\.[A-Za-z]+)$")  # ASCII digits: names are rebuilt
_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR)
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def check_frame_size(path: Path, width: int, height: int) -> None:
    """Refuse a frame of ``width`` x ``height`` beyond ``MAX_FRAME_PIXELS`` or ``MAX_ASPECT`` (MediaError naming
    ``path``, the size and the limit). Called with header sizes, before decoding."""
    if width * height > MAX_FRAME_PIXELS:
        raise MediaError(f"{path}: frame size {width}x{height} ({width * height:,} pixels) is over the limit of "
                         f"{MAX_FRAME_PIXELS:,} pixels per frame")
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT:
        ratio = max(width, height) / max(1, min(width, height))
        raise MediaError(f"{path}: frame size {width}x{height} has an aspect ratio of {ratio:.1f}:1, beyond the limit "
                         f"of {MAX_ASPECT:g}:1")


def media_kind(path: Path) -> str:
    """``"folder"`` or ``"file"`` (a regular file), following symlinks. Nothing there raises FileNotFoundError;
    anything else (a FIFO, device or socket, which would block or never end when read, or a path that cannot be
    examined, such as a symlink loop) raises MediaError naming it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno in _NOT_FOUND:
            raise FileNotFoundError(f"media not found: {path}") from None
        raise MediaError(f"{path}: cannot be examined ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    what = next((name for test, name in _KINDS if test(mode)), "a special file")
    raise MediaError(f"{path}: not a regular file ({what}); only regular files and folders are read")


@dataclass(frozen=True)
class FramePattern:
    """How the frames of one folder are named: ``f"{prefix}{number:0{width}d}{ext}"`` for numbers
    ``start`` … ``start + count - 1`` (``width`` 0 means unpadded). ``contiguous`` is False when numbers are missing;
    ``first_gap`` is then the 0-based position of the first missing frame."""

    prefix: str
    width: int
    ext: str
    start: int
    count: int
    contiguous: bool
    first_gap: int | None = None

    def name(self, index: int) -> str:
        """File name of the frame at 0-based position ``index``."""
        return f"{self.prefix}{self.start + index:0{self.width}d}{self.ext}"


def _list_folder(folder: Path) -> list[str]:
    """The entry names of a frame folder; a folder that cannot be listed is bad media (MediaError naming it)."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        raise FileNotFoundError(f"frame folder not found: {folder}") from None
    except NotADirectoryError:
        raise MediaError(f"{folder}: expected a folder of frames") from None
    except OSError as e:  # PermissionError, an I/O error: this folder's problem, not the run's
        raise MediaError(f"{folder}: cannot list the frame folder ({e.strerror or e})") from None


def detect_pattern(folder: Path) -> FramePattern:
    """Detect the frame-name pattern of ``folder`` from one listing of its files: the one place frame names are
    matched, holes in the numbering included.

    Raises FileNotFoundError when the folder does not exist, MediaError when it cannot be listed or holds no
    numbered images.
    """
    folder = Path(folder)
    groups: dict[tuple[str, str], list[str]] = {}
    for name in _list_folder(folder):
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
    gap = next((i for i, v in enumerate(values) if v != values[0] + i), None)
    return FramePattern(prefix, width, ext, values[0], len(values), gap is None, gap)


def _complete_pattern(folder: Path) -> FramePattern:
    """The pattern of a folder whose numbering has no hole: positions past a hole would read the wrong frames, so
    such a folder is damaged (MediaError naming the first missing frame file)."""
    pattern = detect_pattern(folder)
    if pattern.first_gap is not None:
        raise MediaError(f"{folder / pattern.name(pattern.first_gap)}: frame file missing (numbering has gaps)")
    return pattern


def _open_image(path: Path) -> Image.Image:
    """Open an image lazily: Pillow reads only the header, so its size can be checked before decoding. (Between
    Pillow's two limits it warns, and MAX_FRAME_PIXELS, lower, refuses the frame next; the warning is left alone:
    silencing it per call would reset every module's once-only warnings.)"""
    try:
        return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # the warning: under -W error
        declared = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(declared[1]):,} pixels" if declared else "more pixels than Pillow allows"
        raise MediaError(f"{path}: frame of {size} is over the limit of {MAX_FRAME_PIXELS:,} pixels per frame"
                         ) from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow raises these for truncated or non-image files
        raise _decode_error(path, e) from None


def _decode_error(path: Path, error: Exception) -> MediaError:
    reason = str(error).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
    return MediaError(f"{path}: cannot decode image ({reason})")


def load_image(path: Path) -> np.ndarray:
    """Decode one image file to uint8 (H, W, 3) RGB. A missing file, one that is not a regular file, one whose header
    breaks the frame limits (checked before decoding) or one that does not decode raises MediaError naming it."""
    try:
        kind = media_kind(path)
    except FileNotFoundError:
        raise MediaError(f"{path}: frame file missing") from None
    if kind != "file":
        raise MediaError(f"{path}: not a regular file (a folder); expected an image")
    with _open_image(path) as im:
        check_frame_size(path, *im.size)
        try:
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))  # RGB JPEGs: no converted copy
        except (OSError, SyntaxError, ValueError) as e:
            raise _decode_error(path, e) from None


def read_frames(folder: Path, frame_indices: Sequence[int]) -> np.ndarray:
    """Read the frames at 0-based positions ``frame_indices`` of a frame folder: uint8 (T, H, W, 3)."""
    folder = Path(folder)
    pattern = _complete_pattern(folder)
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


def count_frames(folder: Path) -> int:
    """Number of frames in a folder (files matching the detected pattern)."""
    return detect_pattern(folder).count


def probe_frames(folder: Path) -> int:
    """Decode every frame of a folder and return the count; gaps in the numbering raise MediaError."""
    folder = Path(folder)
    pattern = _complete_pattern(folder)
    shape = None
    for i in range(pattern.count):
        a = load_image(folder / pattern.name(i))
        if shape is not None and a.shape != shape:
            raise MediaError(f"{folder / pattern.name(i)}: frame size {a.shape} differs from {shape}")
        shape = a.shape
    return pattern.count
