"""Decoded frames kept in memory, so that a small dataset is decoded once per process instead of once per epoch.

Keys are (media path, 0-based frame position); the cache fills until ``max_bytes`` and then stops adding (no
eviction: with shuffled access an evicting cache smaller than the dataset mostly thrashes). Cached frames are
read-only; every read returns a new stacked array, so transforms never touch the cache. It assumes the media do
not change while the process runs. Lives in the process that reads: with DataLoader worker processes each would
fill (and lose) its own copy, so the config refuses that (``data.cache_mb`` needs ``data.workers: 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cpnet.data.video import read_clip


class FrameCache:
    """Up to ``max_bytes`` of decoded uint8 (H, W, 3) frames; :meth:`read` is :func:`read_clip` through it."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0  # clips served from memory
        self.misses = 0  # clips decoded
        self._frames: dict[tuple[str, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._frames)

    def read(self, path: str | Path, frame_indices: Sequence[int], *, clamp_end: bool = False) -> np.ndarray:
        """uint8 (T, H, W, 3): the frames at ``frame_indices`` of ``path``, decoded only if one is not cached."""
        key = str(path)
        indices = [int(i) for i in frame_indices]
        cached = [self._frames.get((key, i)) for i in indices]
        if indices and all(frame is not None for frame in cached):
            self.hits += 1
            return np.stack(cached)
        self.misses += 1
        clip = read_clip(path, indices, clamp_end=clamp_end)
        for i, frame in zip(indices, clip):
            if (key, i) not in self._frames and self.nbytes + frame.nbytes <= self.max_bytes:
                stored = frame.copy()
                stored.flags.writeable = False
                self._frames[(key, i)] = stored
                self.nbytes += stored.nbytes
        return clip

    def describe(self) -> str:
        """One line: size and hit rate, for logs."""
        reads = self.hits + self.misses
        rate = f"{100 * self.hits / reads:.0f} %" if reads else "-"
        return (f"frame cache: {len(self)} frames, {self.nbytes / 2**20:.1f} of {self.max_bytes / 2**20:.0f} MiB, "
                f"{rate} of {reads} clip reads from memory")
