"""FrameCache: the same frames as decoding, decoded once, bounded, and refused where it cannot work."""

from __future__ import annotations

import numpy as np
import pytest

from cpnet.app.config import config_from_dict
from cpnet.app.datasets import frame_cache
from cpnet.data import cache as cache_module
from cpnet.data.annotations import load_split
from cpnet.data.cache import FrameCache
from cpnet.data.dataset import ClipDataset, ViewDataset
from cpnet.data.video import read_clip
from tests.data.media import indexed_frames, write_frame_folder, write_video


@pytest.fixture
def counted_reads(monkeypatch):
    """Counts the decodes the cache makes."""
    calls = []

    def counting(path, indices, clamp_end=False):
        calls.append((str(path), list(indices)))
        return read_clip(path, indices, clamp_end=clamp_end)

    monkeypatch.setattr(cache_module, "read_clip", counting)
    return calls


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_cached_reads_equal_decoding_and_decode_once(tmp_path, kind, counted_reads):
    frames = indexed_frames(6, 16, 24)
    media = write_frame_folder(tmp_path / "v", frames) if kind == "folder" else write_video(tmp_path / "v.webm",
                                                                                           frames)
    cache = FrameCache(2**20)
    first = cache.read(media, [0, 2, 2, 5])
    np.testing.assert_array_equal(first, read_clip(media, [0, 2, 2, 5]))
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 3) and cache.nbytes == 3 * 16 * 24 * 3
    again = cache.read(media, [5, 0, 2])  # any order and subset of what is cached: from memory
    np.testing.assert_array_equal(again, read_clip(media, [5, 0, 2]))
    assert (cache.hits, cache.misses) == (1, 1) and len(counted_reads) == 1
    again[:] = 0  # a read is the caller's own array
    np.testing.assert_array_equal(cache.read(media, [5, 0, 2]), read_clip(media, [5, 0, 2]))
    cache.read(media, [1, 2])  # frame 1 is new: decoded, and kept from then on
    assert len(counted_reads) == 2 and len(cache) == 4
    assert "4 frames" in cache.describe() and "50 % of 4 clip reads from memory" in cache.describe()


def test_cache_stops_filling_at_its_budget(tmp_path, counted_reads):
    frames = indexed_frames(6, 16, 24)
    media = write_frame_folder(tmp_path / "v", frames)
    one_frame = 16 * 24 * 3
    cache = FrameCache(2 * one_frame + 1)
    np.testing.assert_array_equal(cache.read(media, [0, 1, 2, 3]), read_clip(media, [0, 1, 2, 3]))
    assert len(cache) == 2 and cache.nbytes == 2 * one_frame
    cache.read(media, [0, 1, 2, 3])  # not all cached: decoded again, and still within budget
    assert len(counted_reads) == 2 and cache.nbytes <= cache.max_bytes
    cache.read(media, [0, 1])
    assert len(counted_reads) == 2 and cache.hits == 1
    with pytest.raises(ValueError, match="max_bytes"):
        FrameCache(-1)


def test_datasets_through_a_cache_give_the_same_items_and_decode_once(jester_root, counted_reads):
    split = load_split("jester", jester_root, "train")
    cache = FrameCache(2**24)
    args = dict(num_frames=6, size=16, train=True, seed=5)  # 6 of 6 frames: one epoch sees every frame
    plain, cached = ClipDataset(split, **args), ClipDataset(split, cache=cache, **args)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
            assert a[1:] == b[1:]
    assert len(counted_reads) == len(split.records)  # decoded in epoch 0 only
    views = ViewDataset(split, num_frames=6, size=16, clips=2, crops=3, cache=cache)
    plain_views = ViewDataset(split, num_frames=6, size=16, clips=2, crops=3)
    for i in range(len(views)):
        np.testing.assert_array_equal(views[i][0].numpy(), plain_views[i][0].numpy())
    assert len(counted_reads) == len(split.records)  # another dataset over the same media: still no decode


def test_a_cache_needs_no_worker_processes():
    with pytest.raises(ValueError, match="data.cache_mb.*data.workers: 0"):
        config_from_dict({"data": {"cache_mb": 64, "workers": 2}})
    with pytest.raises(ValueError, match="data.cache_mb"):
        config_from_dict({"data": {"cache_mb": -1, "workers": 0}})
    data = config_from_dict({"data": {"cache_mb": 64, "workers": 0}}).data
    made = frame_cache(data)
    assert made.max_bytes == 64 * 2**20 and frame_cache(data, made) is made
    assert frame_cache(config_from_dict({"data": {"workers": 0}}).data) is None
    with pytest.raises(ValueError, match="needs data.workers: 0"):
        frame_cache(config_from_dict({"data": {"workers": 1}}).data, FrameCache(10))


@pytest.mark.parametrize("workers", [1, 2])
def test_preload_decodes_every_frame_once_and_reads_then_come_from_memory(tmp_path, workers, monkeypatch):
    folder = write_frame_folder(tmp_path / "a", indexed_frames(6, 16, 24))
    video = write_video(tmp_path / "b.webm", indexed_frames(5, 16, 24, seed=1))
    broken = tmp_path / "c.webm"
    broken.write_bytes(b"not a video")
    cache = FrameCache(2**20)
    assert cache.preload([folder, video, broken], workers=workers) == 11  # the broken file is left to the reader
    decoded = []
    monkeypatch.setattr(cache_module, "read_clip", lambda *a, **k: decoded.append(a) or read_clip(*a, **k))
    np.testing.assert_array_equal(cache.read(folder, [5, 0, 3]), read_clip(folder, [5, 0, 3]))
    np.testing.assert_array_equal(cache.read(video, [0, 4], clamp_end=True), read_clip(video, [0, 4]))
    assert decoded == [] and cache.hits == 2
    assert cache.preload([folder], workers=workers) == 0  # already there
    small = FrameCache(3 * 16 * 24 * 3)
    assert small.preload([folder], workers=workers) == 3 and small.nbytes == small.max_bytes
