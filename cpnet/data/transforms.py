"""Clip transforms on uint8 torch tensors (T, H, W, 3) -> float (3, T, H, W), ImageNet-normalised.

Random parameters are drawn once per clip (:func:`draw_clip_aug`) and applied identically to every frame, so the
motion between frames is untouched. The functions are pure: the same parameters give the same output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cpnet.data.views import ViewProtocol

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_AREA = (0.5, 1.0)
CROP_ASPECT = (0.9, 1.1)
JITTER = (0.25, 0.25, 0.25, 0.1)  # brightness, contrast, saturation, hue
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ClipAug:
    """One clip's augmentation: crop box (top, left, height, width) in input pixels, horizontal flip, and colour
    jitter factors (brightness, contrast, saturation, hue shift in turns) or None."""

    box: tuple[int, int, int, int]
    flip: bool = False
    jitter: tuple[float, float, float, float] | None = None


def draw_clip_aug(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    flip: bool = True,
    color_jitter: bool = True,
    area: tuple[float, float] = CROP_AREA,
    aspect: tuple[float, float] = CROP_ASPECT,
) -> ClipAug:
    """Draw a random resized crop, a flip (p = 0.5) and jitter factors for a clip of ``height`` x ``width`` frames.

    The crop area is a fraction of the short side's square, not of the whole frame: Jester and SSv2 frames are wide,
    and near-square crops covering half to all of a wide frame would rarely fit.
    """
    side = min(height, width)
    box = None
    for _ in range(10):
        target = rng.uniform(*area) * side * side
        ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            box = (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
            break
    if box is None:  # fall back to the centred square of the short side
        box = ((height - side) // 2, (width - side) // 2, side, side)
    do_flip = bool(flip and rng.random() < 0.5)
    jitter = None
    if color_jitter:
        b, c, s, hue = JITTER
        jitter = (
            rng.uniform(1 - b, 1 + b),
            rng.uniform(1 - c, 1 + c),
            rng.uniform(1 - s, 1 + s),
            rng.uniform(-hue, hue),
        )
    return ClipAug(box=box, flip=do_flip, jitter=jitter)


def as_frames(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Check and wrap uint8 (T, H, W, 3) frames as a tensor (no copy)."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
    return frames


def resize(frames: torch.Tensor, height: int, width: int, antialias: bool | None = None) -> torch.Tensor:
    """Bilinear resize of uint8 (T, H, W, 3) to (T, height, width, 3), antialiased when shrinking (``antialias``
    None) or as ``antialias`` says.

    Resizing uint8 in channels-last memory (which (T, H, W, 3) permuted to (T, 3, H, W) already is) takes torch's
    vectorised uint8 path, about 5x faster than resizing float frames.
    """
    if frames.shape[1:3] == (height, width):
        return frames
    if antialias is None:
        antialias = height < frames.shape[1] or width < frames.shape[2]
    x = frames.permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W) view, channels-last strides
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=antialias)
    return y.permute(0, 2, 3, 1)  # (T, 3, h, w) channels-last -> (T, h, w, 3) contiguous


_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_FROM_YIQ = torch.linalg.inv(_TO_YIQ)


def _hue_matrix(shift: float) -> torch.Tensor:
    """3x3 RGB matrix rotating hue by ``shift`` turns (rotation of the chroma plane in YIQ space; grey is fixed)."""
    c, s = math.cos(2 * math.pi * shift), math.sin(2 * math.pi * shift)
    rot = torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    return _FROM_YIQ @ rot @ _TO_YIQ


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> torch.Tensor:
    """Brightness, contrast, saturation and hue adjustments of float (T, H, W, 3) in [0, 1].

    The four steps compose into one affine colour map, applied in one pass and clamped once: brightness scales,
    contrast blends towards the frame's mean luminance, saturation towards each pixel's luminance, hue rotates the
    chroma plane. (torchvision clamps after every step; at these strengths the difference is only in the clipped
    highlights, and one pass is several times faster.)
    """
    luma = torch.tensor(_LUMA, dtype=torch.float64)
    desaturate = saturation * torch.eye(3, dtype=torch.float64) + (1 - saturation) * torch.outer(torch.ones(3), luma)
    matrix = (contrast * brightness * _hue_matrix(hue) @ desaturate).to(x.dtype)  # (3, 3)
    # Saturation and hue fix grey, so the contrast pull towards the (brightened) mean luminance passes through them.
    mean = x.mean(dim=(1, 2)) @ luma.to(x.dtype)  # (T, 3) channel means -> (T,) mean luminance
    offset = ((1 - contrast) * brightness * mean).view(-1, 1, 1, 1)  # (T, 1, 1, 1)
    return (x @ matrix.T).add_(offset).clamp_(0, 1)  # (T, H, W, 3) @ (3, 3): colour mixed per pixel


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of float (T, H, W, 3) in [0, 1], written straight into a contiguous (3, T, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(3, 1, 1, 1)
    out = torch.empty((3, *x.shape[:3]), dtype=x.dtype)
    torch.sub(x.permute(3, 0, 1, 2), mean, out=out)  # (T, H, W, 3) -> (3, T, H, W) view, copied once into out
    return out.div_(std)


def train_transform(frames: torch.Tensor | np.ndarray, aug: ClipAug, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, size, size): crop ``aug.box``, resize, flip, jitter, normalise."""
    top, left, h, w = aug.box
    x = resize(as_frames(frames)[:, top : top + h, left : left + w], size, size)  # still uint8: cheap
    if aug.flip:
        x = x.flip(2)
    x = x.float().div_(255)
    if aug.jitter is not None:
        x = color_jitter(x, *aug.jitter)
    return normalize(x)


def view_transform(
    frames: torch.Tensor | np.ndarray, size: int, protocol: ViewProtocol, short_side: int | None, crop: int
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, size, size): crop ``crop`` of a test-time ``protocol``, placed in the
    frame resized to the protocol's short side (``short_side`` is the configured one).

    The crop is cut in source pixels and only the crop is resized, so time and memory follow the crop, not the
    frame (a long thin frame is never blown up whole). Its source box is the resized box scaled back and rounded to
    whole pixels: within half a source pixel of resizing the whole frame first. The released protocol resizes the
    whole frame without antialiasing and then crops, exactly as the authors' test script (cv2 ``INTER_LINEAR``);
    there the aspect limit of :mod:`cpnet.data.frames` bounds the resized frame to ``MAX_ASPECT`` x short side²."""
    x = as_frames(frames)
    src_h, src_w = x.shape[1], x.shape[2]
    height, width = protocol.resized_size(src_h, src_w, protocol.short_side(size, short_side))
    top, left = protocol.crop_box(height, width, size, crop)
    if protocol.placement == "released":
        x = resize(x, height, width, antialias=False)[:, top : top + size, left : left + size]
    else:
        y0, y1 = round(top * src_h / height), round((top + size) * src_h / height)
        x0, x1 = round(left * src_w / width), round((left + size) * src_w / width)
        x = resize(x[:, y0:y1, x0:x1], size, size)
    return normalize(x.float().div_(255))


def eval_transform(
    frames: torch.Tensor | np.ndarray, size: int, short_side: int | None = None, crops: int = 1, crop_index: int = 0
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, size, size): resize the short side to ``short_side`` (default ``size``),
    then take crop ``crop_index`` of ``crops`` (1 centre; 3 or 6 along the long side)."""
    if not 0 <= crop_index < crops:
        raise ValueError(f"crop_index must be in [0, {crops}), got {crop_index}")
    protocol = ViewProtocol("eval", clips=1, crops=crops, resize="config")
    return view_transform(frames, size, protocol, short_side, crop_index)


def flip_label_map(class_names: Sequence[str], flip_pairs: Sequence[tuple[str, str]]) -> dict[int, int]:
    """Label index -> label index after a horizontal flip, for the declared pairs only (both directions)."""
    index = {name: i for i, name in enumerate(class_names)}
    mapping: dict[int, int] = {}
    for a, b in flip_pairs:
        for name in (a, b):
            if name not in index:
                raise ValueError(f"flip pair class {name!r} is not among the dataset's {len(index)} class names")
        mapping[index[a]], mapping[index[b]] = index[b], index[a]
    return mapping
