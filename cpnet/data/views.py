"""Test-time views, in one place: the named protocols, where their clips sit in time and their crops in space.

A protocol averages ``clips × crops`` views of each video. Two placements exist:

* ``"spread"`` (``single``, ``kinetics``): clip ``i`` of ``n`` is centred at ``(i + ½) / n`` of the video (dense or
  segment sampling, :mod:`cpnet.data.sampling`); the short side is resized with the aspect ratio kept and crops
  spread evenly along the long side. The crops are placed in the resized frame but cut from the source frame
  (the box scaled back, rounded to whole pixels) and only they are resized
  (:func:`cpnet.data.transforms.view_transform`).
* ``"released"`` (``released``): the authors' test script (GitHub ``xingyul/cpnet``, ``test.py`` with ``fcn=6`` and
  ``GulpVideoDataset``). Clip ``j`` of ``n`` starts at frame ``int(j · max(0, N − T·s) / (n − 1))`` (the middle of
  the slack when ``n = 1``) and takes every ``s``-th frame below ``start + T·s`` and ``N``, repeated cyclically when
  the video is too short; the short side is resized to the crop size and the long side to
  ``int(size · long / short / 2) · 2`` (an even length, as their ``Resize``), without antialiasing (cv2's
  ``INTER_LINEAR``); the 6 crops start at ``0``, ``(L − F) // 5 · i`` for ``i = 1..4`` and ``L − F`` along the long
  side (3 crops: the two ends and ``L // 2 − F // 2``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cpnet.data.sampling import sample_indices

CROP_COUNTS = (1, 3, 6)
PLACEMENTS = ("spread", "released")
RESIZE_RULES = ("config", "crop")


@dataclass(frozen=True)
class ViewProtocol:
    """A named test-time protocol.

    ``resize``: ``"config"`` resizes the short side to the configured ``short_side`` (falling back to the crop
    size); ``"crop"`` to the crop size itself, so the crops tile the long side. ``placement``: see the module doc.
    """

    name: str
    clips: int
    crops: int
    resize: str = "crop"
    placement: str = "spread"

    def __post_init__(self) -> None:
        if self.clips < 1 or self.crops not in CROP_COUNTS:
            raise ValueError(f"need clips >= 1 and crops in {CROP_COUNTS}; got {self.clips} and {self.crops}")
        if self.resize not in RESIZE_RULES or self.placement not in PLACEMENTS:
            raise ValueError(f"resize must be one of {RESIZE_RULES} and placement one of {PLACEMENTS}; "
                             f"got {self.resize!r} and {self.placement!r}")

    @property
    def views(self) -> int:
        return self.clips * self.crops

    def with_counts(self, clips: int | None = None, crops: int | None = None) -> ViewProtocol:
        """The same protocol with other clip or crop counts (None keeps the protocol's)."""
        return replace(self, clips=clips or self.clips, crops=crops or self.crops)

    def short_side(self, size: int, configured: int | None) -> int:
        """The short side frames are resized to before cropping ``size``."""
        return size if self.resize == "crop" or configured is None else configured

    def clip_indices(self, num_video_frames: int, num_frames: int, stride: int, sampling: str, clip: int) -> np.ndarray:
        """Frame indices (T,) of clip ``clip`` of this protocol in a video of ``num_video_frames`` frames."""
        if not 0 <= clip < self.clips:
            raise ValueError(f"clip must be in [0, {self.clips}), got {clip}")
        if self.placement == "spread":
            position = (clip + 0.5) / self.clips
            return sample_indices(num_video_frames, num_frames, stride, sampling, position=position)
        if sampling != "dense":
            raise ValueError(f"protocol {self.name!r} takes dense clips (the released test script); "
                             f"data.sampling is {sampling!r}")
        return released_clip_indices(num_video_frames, num_frames, stride, clip, self.clips)

    def resized_size(self, height: int, width: int, short_side: int) -> tuple[int, int]:
        """(height, width) a (height, width) frame is resized to, short side ``short_side``."""
        if self.placement == "released":
            if height <= width:
                return short_side, max(short_side, int(short_side * width / height / 2) * 2)
            return max(short_side, int(short_side * height / width / 2) * 2), short_side
        return resized_short_side(height, width, short_side)

    def crop_box(self, height: int, width: int, size: int, crop: int) -> tuple[int, int]:
        """Top-left corner of crop ``crop`` (of ``self.crops``) of side ``size`` in a resized (height, width) frame."""
        if not 0 <= crop < self.crops:
            raise ValueError(f"crop must be in [0, {self.crops}), got {crop}")
        if self.placement == "released":
            return released_crop_boxes(height, width, size, self.crops)[crop]
        return crop_boxes(height, width, size, self.crops)[crop]


PROTOCOLS: dict[str, ViewProtocol] = {
    "single": ViewProtocol("single", 1, 1, resize="config"),
    "kinetics": ViewProtocol("kinetics", 10, 3),
    "released": ViewProtocol("released", 8, 6, placement="released"),
}
PROTOCOL_NAMES = tuple(PROTOCOLS)


def view_protocol(name: str) -> ViewProtocol:
    """The named test-time protocol; see ``PROTOCOLS``."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown view protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def view_positions(num_views: int) -> np.ndarray:
    """Positions in [0, 1] of ``num_views`` evenly spread views: the centres of equal parts (1 view -> 0.5)."""
    if num_views < 1:
        raise ValueError(f"number of views must be >= 1, got {num_views}")
    return (np.arange(num_views) + 0.5) / num_views


def released_clip_indices(num_video_frames: int, num_frames: int, stride: int, clip: int, clips: int) -> np.ndarray:
    """The released test script's clip ``clip`` of ``clips``: see the module doc."""
    n, need = num_video_frames, num_frames * stride
    if n < 1:
        raise ValueError(f"video has {n} frames; expected at least 1")
    if clips == 1:
        start = max(0, n - need) // 2
    else:
        start = min(n - 1, int(clip * (max(0, n - need) / (clips - 1))))
    taken = np.arange(start, min(n, start + need), stride)  # (<= T,)
    return taken[np.arange(num_frames) % len(taken)]  # repeated cyclically to T


def resized_short_side(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with min == ``short_side`` and the aspect ratio kept (rounded)."""
    if height <= width:
        return short_side, max(short_side, round(width * short_side / height))
    return max(short_side, round(height * short_side / width)), short_side


def crop_boxes(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """Top-left corners of ``crops`` square crops of ``size``: 1 -> centre; 3 or 6 -> spread evenly along the long
    side from one end to the other, centred on the short side."""
    _check_crop(height, width, size, crops)
    cy, cx = (height - size) // 2, (width - size) // 2
    if crops == 1:
        return [(cy, cx)]
    along = np.linspace(0, max(height, width) - size, crops).round().astype(int)  # (crops,)
    if width >= height:
        return [(cy, int(x)) for x in along]
    return [(int(y), cx) for y in along]


def released_crop_boxes(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """The released test script's crops (``fcn`` 6, 3, or a centre crop): see the module doc."""
    _check_crop(height, width, size, crops)
    cy, cx = round((height - size) / 2), round((width - size) / 2)
    if crops == 1:
        return [(cy, cx)]
    long_side = max(height, width)
    slack = long_side - size
    if crops == 3:
        along = [0, slack, long_side // 2 - size // 2]
    else:
        along = [0, slack] + [slack // (crops - 1) * i for i in range(1, crops - 1)]
    if width >= height:
        return [(cy, x) for x in along]
    return [(y, cx) for y in along]


def _check_crop(height: int, width: int, size: int, crops: int) -> None:
    if crops not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
    if height < size or width < size:
        raise ValueError(f"frame {height}x{width} is smaller than the crop size {size}")
