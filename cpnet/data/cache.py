"""Decoded frames kept in memory, so that a small dataset is decoded once per process instead of once per epoch.

Keys are (media path, 0-based frame position); the cache fills until ``max_bytes`` and then stops adding (no
eviction: with shuffled access an evicting cache smaller than the dataset mostly thrashes). Cached frames are
read-only; every read returns a new stacked array, so transforms never touch the cache. It assumes the media do
not change while the process runs. Lives in the process that reads: with DataLoader worker processes each would
fill (and lose) its own copy, so the config refuses that (``data.cache_mb`` needs ``data.workers: 0``).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cpnet.data.video import count_frames, read_clip


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

    def preload(self, paths: Iterable[str | Path], workers: int = 2) -> int:
        """Decode every frame of each media file in ``paths`` with ``workers`` processes (forked where the platform
        can, as DataLoader workers are: they only decode) and keep what fits; returns the number of frames added. Frames
        are exactly what :meth:`read` would decode (a video's frames as decoded, its tail clamped as training
        reads it). Errors surface when training reads the file, as without a preload: a bad file is skipped here."""
        todo = [str(p) for p in paths]
        todo = [p for p in todo if (p, 0) not in self._frames]
        added = 0
        if not todo or self.nbytes >= self.max_bytes:
            return 0
        results = map(_decode_all, todo) if workers <= 1 else None
        pool = None
        if results is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None  # spawn: 2.5x slower here
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
            results = pool.map(_decode_all, todo, chunksize=max(1, len(todo) // (8 * workers)))
        try:
            for path, clip in results:
                if clip is None:
                    continue
                for i, frame in enumerate(clip):
                    if self.nbytes + frame.nbytes > self.max_bytes:
                        return added
                    if (path, i) not in self._frames:
                        frame.flags.writeable = False
                        self._frames[(path, i)] = frame
                        self.nbytes += frame.nbytes
                        added += 1
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return added

    def describe(self) -> str:
        """One line: size and hit rate, for logs."""
        reads = self.hits + self.misses
        rate = f"{100 * self.hits / reads:.0f} %" if reads else "-"
        return (f"frame cache: {len(self)} frames, {self.nbytes / 2**20:.1f} of {self.max_bytes / 2**20:.0f} MiB, "
                f"{rate} of {reads} clip reads from memory")


def _decode_all(path: str) -> tuple[str, np.ndarray | None]:
    """Every frame of one media file, or None when it cannot be read (the reader reports it later)."""
    try:
        clip = read_clip(path, range(count_frames(path)), clamp_end=not Path(path).is_dir())
    except Exception:  # noqa: BLE001 - any failure is reported by the normal read, with its own message
        return path, None
    return path, np.ascontiguousarray(clip)
