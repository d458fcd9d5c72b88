"""Which frames a clip uses.

*Dense* clips take T frames at stride s (a random offset in training, the centre otherwise); a video shorter than
the clip's span loops from its start. *Segment* sampling (TSN) takes one frame from each of T equal segments.
Where test-time views sit is :mod:`cpnet.data.views`.
"""

from __future__ import annotations

import numpy as np

SAMPLINGS = ("dense", "segment")


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
