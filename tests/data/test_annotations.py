"""Each reader on tiny trees in the official formats, written into tmp_path."""

from __future__ import annotations

import json
import shutil

import pytest

from cpnet.data.annotations import load_split
from cpnet.data.video import read_clip
from tests.data.media import (
    JESTER_CLASSES,
    KINETICS_CLASSES,
    frame_index_of,
    indexed_frames,
    write_frame_folder,
    write_jester_tree,
    write_kinetics_tree,
    write_ssv2_tree,
    write_video,
)


def test_jester_reads_labels_splits_and_frame_counts(jester_root):
    train = load_split("jester", jester_root, "train")
    assert train.class_names == JESTER_CLASSES
    assert [(r.video_id, r.label, r.num_frames) for r in train.records] == [
        ("101", 0, 6), ("102", 1, 6), ("103", 2, 6), ("104", 0, 6)
    ]  # fmt: skip
    assert train.records[0].path == jester_root / "20bn-jester-v1" / "101"
    assert set(train.flip_pairs) == {
        ("Swiping Left", "Swiping Right"), ("Turning Hand Clockwise", "Turning Hand Counterclockwise")
    }  # fmt: skip
    val = load_split("jester", jester_root, "val")
    assert [r.label for r in val.records] == [3, 2] and val.split == "validation"
    assert [r.label for r in load_split("jester", jester_root, "test").records] == [-1, -1]


def test_jester_other_layouts_patterns_and_missing(tmp_path):
    root = write_jester_tree(
        tmp_path / "j", {"train": [("1", "Thumb Up"), ("2", "Swiping Left")]}, archive=False, pattern="img_{:05d}.jpg"
    )
    (root / "annotations").mkdir()
    for name in ("jester-v1-labels.csv", "jester-v1-train.csv"):
        shutil.move(root / name, root / "annotations" / name)
    (root / "annotations" / "jester-v1-train.csv").write_text("1;Thumb Up\n2;Swiping Left\n3;Thumb Up\n")
    with pytest.warns(UserWarning, match="1 of 3 media missing \\(3\\)"):
        split = load_split("jester", root, "train")
    assert [r.video_id for r in split.records] == ["1", "2"] and split.missing == ["3"]
    assert frame_index_of(read_clip(split.records[0].path, [4])[0]) == 4
    (root / "annotations" / "jester-v1-train.csv").write_text("1;Waving\n")
    with pytest.raises(ValueError, match="'Waving'.*jester-v1-labels.csv"):
        load_split("jester", root, "train")
    with pytest.raises(FileNotFoundError, match="jester-v1-validation.csv"):
        load_split("jester", root, "validation")


def test_ssv2_strips_brackets_and_keeps_official_indices(ssv2_root):
    train = load_split("ssv2", ssv2_root, "train")
    assert train.class_names[2] == "Holding something next to something"
    assert [(r.video_id, r.label, r.num_frames) for r in train.records] == [
        ("11", 0, None),
        ("12", 2, None),
        ("13", 1, None),
    ]
    assert train.records[0].path == ssv2_root / "20bn-something-something-v2" / "11.webm"
    assert train.flip_pairs == [("Pushing something from left to right", "Pushing something from right to left")]
    assert [frame_index_of(f) for f in read_clip(train.records[2].path, [7, 0])] == [7, 0]
    assert load_split("ssv2", ssv2_root, "test").records[0].label == -1


def test_ssv2_videos_directly_under_the_root(tmp_path):
    root = write_ssv2_tree(
        tmp_path / "s", {"validation": [("7", "Pushing [something] from right to left")]}, archive=False
    )
    split = load_split("ssv2", root, "val")
    assert split.records[0].path == root / "7.webm" and split.records[0].label == 1


def test_ssv2_errors_and_missing(ssv2_root):
    (ssv2_root / "20bn-something-something-v2" / "13.webm").unlink()
    with pytest.warns(UserWarning, match="missing"):
        assert load_split("ssv2", ssv2_root, "train").missing == ["13"]
    (ssv2_root / "something-something-v2-validation.json").write_text(json.dumps([{"id": "21", "template": "Dancing"}]))
    with pytest.raises(ValueError, match="'Dancing'"):
        load_split("ssv2", ssv2_root, "validation")
    (ssv2_root / "something-something-v2-labels.json").write_text("{not json")
    with pytest.raises(ValueError, match="something-something-v2-labels.json"):
        load_split("ssv2", ssv2_root, "train")


def test_kinetics_counts_missing_clips_and_finds_split_folders(kinetics_root):
    with pytest.warns(UserWarning, match=r"1 of 3 media missing \(bbb_000000_000010\)"):
        train = load_split("kinetics", kinetics_root, "train")
    assert train.class_names == KINETICS_CLASSES
    assert [(r.video_id, r.label) for r in train.records] == [("aaa_000005_000015", 0), ("ccc_000030_000040", 2)]
    assert train.records[0].path == kinetics_root / "train" / "abseiling" / "aaa_000005_000015.mp4"
    assert train.missing == ["bbb_000000_000010"]
    val = load_split("kinetics", kinetics_root, "validation")
    assert [(r.video_id, r.label) for r in val.records] == [("ddd_000001_000011", 2), ("eee_000002_000012", 0)]
    assert [frame_index_of(f) for f in read_clip(val.records[1].path, [9, 3])] == [9, 3]


def test_kinetics_flat_layout_named_csv_and_test_split(tmp_path):
    root = tmp_path / "k"
    write_kinetics_tree(root, "val", [("zumba", "fff", 0, 10)], layout="flat", csv_name="kinetics-400_val.csv")
    split = load_split("kinetics", root, "val")
    assert split.records[0].path == root / "fff_000000_000010.mp4" and split.class_names == ["zumba"]
    write_kinetics_tree(root, "test", [(None, "ggg", 3, 13)], layout="split")
    assert load_split("kinetics", root, "test").records[0].label == -1
    (root / "annotations" / "test.csv").write_text("id,start\nx,1\n")
    with pytest.raises(ValueError, match="lacks"):
        load_split("kinetics", root, "test")


def test_list_file_two_and_three_fields(tmp_path):
    write_video(tmp_path / "videos" / "a b.webm", indexed_frames(5))
    write_frame_folder(tmp_path / "frames" / "c", indexed_frames(7))
    (tmp_path / "train.txt").write_text("videos/a b.webm 1\nframes/c 7 0\nvideos/gone.mp4 1\n")
    (tmp_path / "val.txt").write_text(f"{tmp_path / 'frames' / 'c'} 1\n")
    with pytest.warns(UserWarning, match="videos/gone.mp4"):
        train = load_split("list", tmp_path, "train")
    assert [(r.video_id, r.label, r.num_frames) for r in train.records] == [
        ("videos/a b.webm", 1, None),
        ("frames/c", 0, 7),
    ]
    assert train.class_names == ["0", "1"]
    assert load_split("list", tmp_path, "val").class_names == ["0", "1"], "label space from the train list"
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    assert load_split("list", tmp_path / "val.txt", "val").class_names == ["cat", "dog"]
    (tmp_path / "val.txt").write_text("frames/c 5\n")
    with pytest.raises(ValueError, match="label 5"):
        load_split("list", tmp_path, "val")


def test_class_per_folder_tree(tmp_path):
    write_video(tmp_path / "train" / "jump" / "j1.webm", indexed_frames(4))
    write_frame_folder(tmp_path / "train" / "run" / "r1", indexed_frames(3))
    write_video(tmp_path / "val" / "run" / "r2.webm", indexed_frames(4))
    train = load_split("folder", tmp_path, "train")
    assert train.class_names == ["jump", "run"]
    assert [(r.video_id, r.label, r.num_frames) for r in train.records] == [("jump/j1", 0, None), ("run/r1", 1, 3)]
    val = load_split("folder", tmp_path, "validation")
    assert [(r.video_id, r.label) for r in val.records] == [("run/r2", 1)]
    with pytest.raises(FileNotFoundError, match="test"):
        load_split("folder", tmp_path, "test")


def test_load_split_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'ucf'"):
        load_split("ucf", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_split("jester", tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split("jester", tmp_path / "nowhere", "train")
