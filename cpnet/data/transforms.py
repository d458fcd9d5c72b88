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

from cpnet.data.sampling import crop_boxes

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


def to_float(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in [0, 1]."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
    return frames.permute(0, 3, 1, 2).float().div_(255)  # (T, H, W, 3) -> (T, 3, H, W)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of (T, 3, H, W), antialiased when shrinking."""
    if x.shape[-2:] == (height, width):
        return x
    shrink = height < x.shape[-2] or width < x.shape[-1]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)


def resize_short_side(x: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resize (T, 3, H, W) so that min(H, W) == short_side, keeping the aspect ratio."""
    h, w = x.shape[-2:]
    if h <= w:
        return resize(x, short_side, max(short_side, round(w * short_side / h)))
    return resize(x, max(short_side, round(h * short_side / w)), short_side)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)  # (T, 3, H, W) -> 3 x (T, H, W)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)  # (T, 1, H, W)


def _hue_matrix(shift: float) -> torch.Tensor:
    """3x3 RGB matrix rotating hue by ``shift`` turns (rotation of the chroma plane in YIQ space)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    c, s = math.cos(2 * math.pi * shift), math.sin(2 * math.pi * shift)
    rot = torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    return torch.linalg.inv(to_yiq) @ rot @ to_yiq


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> torch.Tensor:
    """Brightness, contrast, saturation and hue adjustments of (T, 3, H, W) in [0, 1], clamped after each."""
    x = (x * brightness).clamp_(0, 1)
    mean = _gray(x).mean(dim=(-2, -1), keepdim=True)  # (T, 1, 1, 1) per-frame mean luminance
    x = (x * contrast + (1 - contrast) * mean).clamp_(0, 1)
    x = (x * saturation + (1 - saturation) * _gray(x)).clamp_(0, 1)
    if hue != 0:
        x = torch.einsum("ij,tjhw->tihw", _hue_matrix(hue), x).clamp_(0, 1)  # (T, 3, H, W) colour mixed per pixel
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of (T, 3, H, W) in [0, 1], returned as (3, T, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).permute(1, 0, 2, 3).contiguous()  # (T, 3, H, W) -> (3, T, H, W)


def train_transform(frames: torch.Tensor | np.ndarray, aug: ClipAug, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, size, size): crop ``aug.box``, resize, jitter, flip, normalise."""
    frames = torch.as_tensor(frames)
    top, left, h, w = aug.box
    x = to_float(frames[:, top : top + h, left : left + w])  # crop before converting: fewer pixels to touch
    x = resize(x, size, size)
    if aug.jitter is not None:
        x = color_jitter(x, *aug.jitter)
    if aug.flip:
        x = x.flip(-1)
    return normalize(x)


def eval_transform(
    frames: torch.Tensor | np.ndarray, size: int, short_side: int | None = None, crops: int = 1, crop_index: int = 0
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, size, size): resize the short side to ``short_side`` (default ``size``),
    then take crop ``crop_index`` of ``crops`` (1 centre; 3 or 6 along the long side)."""
    if not 0 <= crop_index < crops:
        raise ValueError(f"crop_index must be in [0, {crops}), got {crop_index}")
    x = resize_short_side(to_float(frames), short_side or size)
    top, left = crop_boxes(x.shape[-2], x.shape[-1], size, crops)[crop_index]
    return normalize(x[..., top : top + size, left : left + size])


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
