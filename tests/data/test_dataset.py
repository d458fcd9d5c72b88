"""ClipDataset / ViewDataset over real readers: shapes, reproducibility across worker counts, flip label swap,
skipping bad media, test-time views."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from cpnet.data.annotations import load_split
from cpnet.data.dataset import ClipDataset, ViewDataset, collate_skip, collate_views
from cpnet.data.records import MediaError
from cpnet.engine.loop import BadMediaBudget


def _jester(root, **kw):
    args = dict(num_frames=8, stride=1, size=16, train=True, seed=5)
    return ClipDataset(load_split("jester", root, "train"), **{**args, **kw})


def test_train_and_eval_items(jester_root):
    clip, label, index = _jester(jester_root)[1]
    assert clip.shape == (3, 8, 16, 16) and clip.dtype == torch.float32 and index == 1 and label in (0, 1)
    val = ClipDataset(
        load_split("jester", jester_root, "val"), num_frames=4, stride=2, size=16, short_side=20, train=False
    )
    clip, label, index = val[0]
    assert clip.shape == (3, 4, 16, 16) and label == 3
    torch.testing.assert_close(val[0][0], clip)  # evaluation is deterministic


def test_randomness_depends_on_seed_epoch_index_not_workers(jester_root):
    ds = _jester(jester_root)
    ds.set_epoch(3)
    single = [b for b in DataLoader(ds, batch_size=2, num_workers=0)]
    multi = [b for b in DataLoader(ds, batch_size=2, num_workers=2)]
    for a, b in zip(single, multi, strict=True):
        torch.testing.assert_close(a[0], b[0])
        assert a[1].tolist() == b[1].tolist()
    ds.set_epoch(4)
    assert not torch.allclose(ds[0][0], single[0][0][0])


def test_flip_swaps_labels_of_declared_pairs_only(jester_root):
    ds = _jester(jester_root, color_jitter=False)
    seen_left, seen_thumb = set(), set()
    for epoch in range(16):
        ds.set_epoch(epoch)
        seen_left.add(ds[0][1])  # 'Swiping Left'
        seen_thumb.add(ds[2][1])  # 'Thumb Up'
    assert seen_left == {0, 1} and seen_thumb == {2}
    no_flip = _jester(jester_root, flip=False)
    assert {no_flip[0][1] for _ in range(3)} == {0}


def test_segment_sampling_counts_video_frames(ssv2_root):
    ds = ClipDataset(load_split("ssv2", ssv2_root, "train"), num_frames=3, sampling="segment", size=16, train=False)
    assert ds[0][0].shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="sampling"):
        ClipDataset(load_split("ssv2", ssv2_root, "train"), num_frames=3, sampling="tsm", size=16, train=False)


def test_bad_media_raise_or_are_skipped_and_counted(jester_root):
    strict = _jester(jester_root)
    lenient = _jester(jester_root, skip_bad=True)
    shutil.rmtree(jester_root / "20bn-jester-v1" / "102")  # vanished after the annotations were read
    (jester_root / "20bn-jester-v1" / "103" / "00004.jpg").write_bytes(b"garbage")
    with pytest.raises(FileNotFoundError, match="102"):
        strict[1]
    with pytest.raises(MediaError, match="00004.jpg"):
        strict[2]
    with pytest.warns(UserWarning, match="102"):
        assert lenient[1] is None
    clips, labels, indices, skipped = collate_skip([lenient[0], None, lenient[3]])
    assert clips.shape == (2, 3, 8, 16, 16) and indices.tolist() == [0, 3] and skipped == 1
    empty = collate_skip([None, None])
    assert empty[0].numel() == 0 and empty[-1] == 2 and len(empty) == 4
    assert len(collate_views([None])) == 5
    budget = BadMediaBudget(total=10, max_fraction=0.2)
    budget.add(2)
    with pytest.raises(MediaError, match="3 of 10"):
        budget.add(1)


def test_view_dataset_enumerates_clips_times_crops(ssv2_root):
    split = load_split("ssv2", ssv2_root, "train")
    views = ViewDataset(split, num_frames=4, stride=1, size=32, clips=2, crops=3)
    assert len(views) == 3 * 6
    items = [views[j] for j in range(6, 12)]  # the second video
    assert [(v, w) for _, _, v, w in items] == [(1, w) for w in range(6)]
    assert all(clip.shape == (3, 4, 32, 32) and label == 2 for clip, label, _, _ in items)
    assert not torch.allclose(items[0][0], items[1][0]), "crops differ along the 48-pixel long side"
    assert not torch.allclose(items[0][0], items[3][0]), "clips differ in time"
    batch = collate_views([views[0], views[1]])
    assert batch[0].shape == (2, 3, 4, 32, 32) and batch[3].tolist() == [0, 1] and batch[4] == 0
    with pytest.raises(ValueError, match="crops"):
        ViewDataset(split, num_frames=4, size=32, clips=1, crops=4)
