"""Which frames a clip uses, and where test-time views sit.

*Dense* clips take T frames at stride s (a random offset in training, the centre otherwise); a video shorter than
the clip's span loops from its start. *Segment* sampling (TSN) takes one frame from each of T equal segments.
Test time averages ``clips × crops`` views: clips spread evenly over the video, crops along the long side.
"""

from __future__ import annotations

import numpy as np

SAMPLINGS = ("dense", "segment")
CROP_COUNTS = (1, 3, 6)

# name -> (clips, crops, short-side rule). Rule "config": resize the short side to the configured ``short_side``
# (falling back to the crop size); "crop": resize the short side to the crop size itself, so the crops tile the long
# side — the released SSv2/Jester protocol (8 clips x 6 crops) and the usual Kinetics 10 x 3.
VIEW_PROTOCOLS: dict[str, tuple[int, int, str]] = {
    "single": (1, 1, "config"),
    "kinetics": (10, 3, "crop"),
    "released": (8, 6, "crop"),
}


def view_protocol(name: str) -> tuple[int, int, str]:
    """(clips, crops, short_side_rule) of a named test-time protocol; see ``VIEW_PROTOCOLS``."""
    if name not in VIEW_PROTOCOLS:
        raise ValueError(f"unknown view protocol {name!r}; expected one of {sorted(VIEW_PROTOCOLS)}")
    return VIEW_PROTOCOLS[name]


def _check(num_video_frames: int, num_frames: int, stride: int) -> None:
    if num_video_frames < 1:
        raise ValueError(f"video has {num_video_frames} frames; expected at least 1")
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames} and {stride}")


def dense_indices(
    num_video_frames: int,
    num_frames: int,
    stride: int = 1,
    *,
    rng: np.random.Generator | None = None,
    position: float = 0.5,
) -> np.ndarray:
    """T frame positions at ``stride``. With ``rng`` the start is uniform over the valid offsets (training);
    otherwise it sits at ``position`` (0 = first valid offset, 0.5 = centre, 1 = last). Loop-pads short videos."""
    _check(num_video_frames, num_frames, stride)
    span = (num_frames - 1) * stride + 1
    steps = np.arange(num_frames) * stride  # (T,)
    if num_video_frames < span:
        return steps % num_video_frames  # loop from the start
    slack = num_video_frames - span
    offset = int(rng.integers(0, slack + 1)) if rng is not None else int(round(slack * position))
    return offset + steps


def segment_indices(
    num_video_frames: int, num_frames: int, *, rng: np.random.Generator | None = None, position: float = 0.5
) -> np.ndarray:
    """TSN sampling: one frame from each of T equal segments — random within it in training, else at ``position``
    of it. Videos with fewer frames than segments repeat frames."""
    _check(num_video_frames, num_frames, 1)
    edges = np.arange(num_frames + 1) * num_video_frames / num_frames  # (T+1,) segment boundaries
    start, length = edges[:-1], np.diff(edges)
    if rng is not None:
        pos = start + rng.random(num_frames) * length
    else:
        pos = start + position * length
    return np.minimum(np.floor(pos).astype(np.int64), num_video_frames - 1)


def sample_indices(
    num_video_frames: int,
    num_frames: int,
    stride: int,
    sampling: str,
    *,
    rng: np.random.Generator | None = None,
    position: float = 0.5,
) -> np.ndarray:
    """Dispatch to :func:`dense_indices` or :func:`segment_indices` (where ``stride`` is unused)."""
    if sampling == "dense":
        return dense_indices(num_video_frames, num_frames, stride, rng=rng, position=position)
    if sampling == "segment":
        return segment_indices(num_video_frames, num_frames, rng=rng, position=position)
    raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")


def view_positions(num_views: int) -> np.ndarray:
    """Positions in [0, 1] of ``num_views`` evenly spread views: the centres of equal parts (1 view -> 0.5)."""
    if num_views < 1:
        raise ValueError(f"number of views must be >= 1, got {num_views}")
    return (np.arange(num_views) + 0.5) / num_views


def crop_boxes(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """Top-left corners of ``crops`` square crops of ``size``: 1 -> centre; 3 or 6 -> spread evenly along the long
    side from one end to the other, centred on the short side."""
    if crops not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
    if height < size or width < size:
        raise ValueError(f"frame {height}x{width} is smaller than the crop size {size}")
    cy, cx = (height - size) // 2, (width - size) // 2
    if crops == 1:
        return [(cy, cx)]
    along = np.linspace(0, max(height, width) - size, crops).round().astype(int)  # (crops,)
    if width >= height:
        return [(cy, int(x)) for x in along]
    return [(int(y), cx) for y in along]
