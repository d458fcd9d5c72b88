"""What a clip needs before a model sees it, as data: the one description an export carries (in its JSON sidecar
and its ``.safetensors`` metadata) and :func:`preprocess`, which applies it to frames decoded by any decoder.

A deployment decodes a video its own way (PyAV, OpenCV, a camera SDK) into RGB uint8 frames; ``preprocess(frames,
spec)`` samples the clip(s) and makes the crop(s) exactly as ``cpnet predict`` and ``cpnet eval`` do, and returns
the exported model's input. Feed it to ONNX Runtime, TorchScript or the PyTorch model, average the softmax over the
views, and the probabilities are ``cpnet predict``'s (tests/test_export.py compares them to 1e-5). It needs torch
(the resize is torch's) but no model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from cpnet.data.sampling import SAMPLINGS
from cpnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, view_transform
from cpnet.data.views import PROTOCOL_NAMES, view_protocol

__all__ = ["Preprocessing", "preprocess"]

MAX_SIDE = 4096  # a description read from a file is bounded before anything is allocated from it
MAX_FRAMES = 1024


@dataclass(frozen=True)
class Preprocessing:
    """How frames become a model input: ``num_frames`` frames ``stride`` apart (``sampling``) per clip, the short
    side resized to ``short_side`` (None: the crop size) and ``size`` x ``size`` crops, the views of ``protocol``
    (``single``: the centre clip, centre crop)."""

    num_frames: int
    stride: int
    sampling: str
    size: int
    short_side: int | None
    protocol: str = "single"

    def __post_init__(self) -> None:
        for name, value, bound in (("num_frames", self.num_frames, MAX_FRAMES), ("stride", self.stride, MAX_FRAMES),
                                   ("size", self.size, MAX_SIDE), ("short_side", self.short_side or 1, MAX_SIDE)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bound:
                raise ValueError(f"preprocessing {name}: expected an integer in [1, {bound}], got {value!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"preprocessing sampling: expected one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.protocol not in PROTOCOL_NAMES:
            raise ValueError(f"preprocessing protocol: expected one of {', '.join(PROTOCOL_NAMES)}, "
                             f"got {self.protocol!r}")

    def describe(self) -> dict[str, Any]:
        """Every step, spelled out for a reader (and the fields :meth:`from_dict` reads back)."""
        views = view_protocol(self.protocol)
        resized = self.short_side or self.size
        return {
            **asdict(self),
            "input": "every decoded frame of the video, in order: uint8 RGB, (frames, height, width, 3)",
            "clips": f"{views.clips} clip(s) of {self.num_frames} frames, {self.stride} apart ({self.sampling} "
                     f"sampling), placed by the {self.protocol!r} protocol (single: centred in the video; a video "
                     "too short repeats its frames)",
            "resize": f"short side to {resized} pixels keeping the aspect ratio; bilinear, align_corners=False, "
                      "antialiased when shrinking (torch.nn.functional.interpolate on uint8)",
            "crop": f"{views.crops} crop(s) of {self.size}x{self.size} (single: the centre), cut from the source "
                    "frame (the resized box scaled back, rounded to whole pixels) and only the crop resized",
            "channel_order": "RGB",
            "scale": "x / 255",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "normalize": "(x / 255 - mean) / std, per channel",
            "layout": "views, C, T, H, W (float32): one row per view; average the softmax over the views",
            "function": "cpnet.preprocess(frames, spec) does all of this",
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Preprocessing:
        """The description of :meth:`describe` (an export's sidecar ``preprocessing`` entry) read back."""
        if not isinstance(spec, dict):
            raise ValueError(f"preprocessing: expected a mapping, got {type(spec).__name__}")
        missing = [k for k in ("num_frames", "stride", "sampling", "size", "short_side") if k not in spec]
        if missing:
            raise ValueError(f"preprocessing: missing {', '.join(missing)} (expected an export's sidecar entry)")
        return cls(spec["num_frames"], spec["stride"], spec["sampling"], spec["size"], spec["short_side"],
                   spec.get("protocol", "single"))


def preprocess(frames: np.ndarray, spec: Preprocessing | dict[str, Any]) -> np.ndarray:
    """The model input of a video: uint8 RGB ``frames`` (N, H, W, 3), every frame in order, to float32
    (views, 3, T, size, size) as ``spec`` (a :class:`Preprocessing` or an export's sidecar ``preprocessing``
    entry) describes; one row per test-time view."""
    spec = spec if isinstance(spec, Preprocessing) else Preprocessing.from_dict(spec)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames: expected uint8 RGB (frames, height, width, 3) with at least one frame, got "
                         f"{frames.dtype} {tuple(frames.shape)}")
    views = view_protocol(spec.protocol)
    rows = []
    for clip in range(views.clips):
        indices = views.clip_indices(len(frames), spec.num_frames, spec.stride, spec.sampling, clip)
        chosen = torch.from_numpy(np.ascontiguousarray(frames[indices]))  # (T, H, W, 3)
        rows += [view_transform(chosen, spec.size, views, spec.short_side, crop) for crop in range(views.crops)]
    return torch.stack(rows).numpy()  # (views, 3, T, size, size)
