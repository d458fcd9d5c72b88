"""Robustness matrix, annotation rows: every malformed annotation file raises ValueError (``EmptySplitError`` for
an empty split) naming the file and the offending entry; nothing is silently dropped or mislabelled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpnet.data.annotations import load_split
from cpnet.data.commands import check_dataset
from cpnet.data.records import EmptySplitError
from tests.data.media import indexed_frames, write_frame_folder, write_video

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

SSV2_VAL = "something-something-v2-validation.json"


def _rewrite_kinetics_val(root: Path, rows: list[str]) -> Path:
    path = root / "annotations" / "val.csv"
    path.write_text("\n".join(["label,youtube_id,time_start,time_end,split", *rows]) + "\n")
    return path


@pytest.mark.parametrize("dataset", ["jester", "ssv2", "kinetics"])
def test_unknown_class_name(dataset, request):
    root = request.getfixturevalue(f"{dataset}_root")
    if dataset == "jester":
        (root / "jester-v1-validation.csv").write_text("201;Thumb Up\n202;Waving Wildly\n")
        where, name = "jester-v1-validation.csv:2", "'Waving Wildly'"
    elif dataset == "ssv2":
        (root / SSV2_VAL).write_text(json.dumps([{"id": "21", "template": "Juggling [something]"}]))
        where, name = SSV2_VAL, "'Juggling something'"
    else:
        _rewrite_kinetics_val(root, ["zumba,ddd,1,11,val", "tap dancing,eee,2,12,val"])
        where, name = "val.csv:3", "'tap dancing'"
    with pytest.raises(ValueError, match=name) as info:
        load_split(dataset, root, "validation")
    assert where in str(info.value)


@pytest.mark.parametrize("separator", [",", "\t"])
def test_jester_csv_with_the_wrong_separator(jester_root, separator):
    (jester_root / "jester-v1-train.csv").write_text(f"101{separator}Swiping Left\n102{separator}Swiping Right\n")
    with pytest.raises(ValueError, match="jester-v1-train.csv:1: expected 'id;Label' separated by ';'"):
        load_split("jester", jester_root, "train")


@pytest.mark.parametrize("line", ["102", "102;", "102; "], ids=["id alone", "empty label", "blank label"])
def test_jester_labelled_split_line_without_a_label(jester_root, line):
    (jester_root / "jester-v1-train.csv").write_text(f"101;Swiping Left\n{line}\n")  # "102;" found by the fuzzer
    with pytest.raises(ValueError, match="jester-v1-train.csv:2: '102' has no label"):
        load_split("jester", jester_root, "train")
    assert [r.label for r in load_split("jester", jester_root, "test").records] == [-1, -1]  # ids only is right there


@pytest.mark.parametrize("content", [{"id": "21", "template": "x"}, "21", 21], ids=["object", "string", "number"])
def test_ssv2_json_that_is_not_a_list(ssv2_root, content):
    (ssv2_root / SSV2_VAL).write_text(json.dumps(content))
    with pytest.raises(ValueError, match=f"{SSV2_VAL}: expected a list of objects") as info:
        load_split("ssv2", ssv2_root, "validation")
    assert type(content).__name__ in str(info.value)


def test_ssv2_labels_json_that_is_not_an_object(ssv2_root):
    (ssv2_root / "something-something-v2-labels.json").write_text(json.dumps(["Holding something"]))
    with pytest.raises(ValueError, match="something-something-v2-labels.json: expected an object"):
        load_split("ssv2", ssv2_root, "train")


@pytest.mark.parametrize("item", [{"id": {"a": 1}}, {"id": "21", "template": 7}, {"template": "x"}])
def test_ssv2_entries_of_the_wrong_type(ssv2_root, item):
    (ssv2_root / SSV2_VAL).write_text(json.dumps([item]))
    with pytest.raises(ValueError, match=f"{SSV2_VAL}: entry"):
        load_split("ssv2", ssv2_root, "validation")


def test_kinetics_csv_without_the_expected_header(kinetics_root):
    path = kinetics_root / "annotations" / "val.csv"
    path.write_text("zumba,ddd,1,11,val\nabseiling,eee,2,12,val\n")  # the header line is missing
    with pytest.raises(ValueError, match=r"val.csv: header .* lacks \['youtube_id', 'time_start', 'time_end'\]"):
        load_split("kinetics", kinetics_root, "validation")


def test_kinetics_row_with_missing_fields(kinetics_root):
    _rewrite_kinetics_val(kinetics_root, ["zumba,ddd,1,11,val", "abseiling,eee"])
    with pytest.raises(ValueError, match=r"val.csv:3: no value for \['time_start', 'time_end'\]"):
        load_split("kinetics", kinetics_root, "validation")


def test_kinetics_csv_with_a_byte_order_mark_reads_its_labels(kinetics_root):
    path = _rewrite_kinetics_val(kinetics_root, ["zumba,ddd,1,11,val"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # spreadsheet exports start with one
    assert [r.label for r in load_split("kinetics", kinetics_root, "validation").records] == [2]


@pytest.mark.parametrize("dataset", ["jester", "ssv2", "kinetics"])
def test_annotation_file_that_is_not_utf8(dataset, request):
    root = request.getfixturevalue(f"{dataset}_root")
    name = {"jester": "jester-v1-validation.csv", "ssv2": SSV2_VAL, "kinetics": "annotations/val.csv"}[dataset]
    (root / name).write_bytes(b"201;Thumb Up\n\xff\xfe\x00garbage\n")
    with pytest.raises(ValueError, match=rf"{Path(name).name}: not UTF-8 text"):
        load_split(dataset, root, "validation")


def _list_root(tmp_path: Path) -> Path:
    write_video(tmp_path / "v" / "a.webm", indexed_frames(3, 16, 16))
    write_frame_folder(tmp_path / "v" / "b", indexed_frames(3, 16, 16))
    return tmp_path


@pytest.mark.parametrize("dataset", ["jester", "ssv2", "kinetics", "list", "folder"])
def test_duplicate_video_ids(dataset, request, tmp_path):
    if dataset == "jester":
        root = request.getfixturevalue("jester_root")
        (root / "jester-v1-validation.csv").write_text("201;Thumb Up\n202;Thumb Up\n\n201;Swiping Left\n")
        where = r"jester-v1-validation.csv: video id '201' is listed twice \(line 1 and line 4\)"
    elif dataset == "ssv2":
        root = request.getfixturevalue("ssv2_root")
        held = {"id": "21", "template": "Holding [something] next to [something]"}
        (root / SSV2_VAL).write_text(json.dumps([held, {"id": 22, "template": held["template"]}, {**held, "id": 21}]))
        where = rf"{SSV2_VAL}: video id '21' is listed twice \(entry 0 and entry 2\)"
    elif dataset == "kinetics":
        root = request.getfixturevalue("kinetics_root")
        _rewrite_kinetics_val(root, ["zumba,ddd,1,11,val", "abseiling,eee,2,12,val", "zumba,ddd,1.0,11,val"])
        where = r"val.csv: video id 'ddd_000001_000011' is listed twice \(line 2 and line 4\)"
    elif dataset == "list":
        root = _list_root(tmp_path)
        (root / "val.txt").write_text("v/a.webm 0\nv/b 1\nv/a.webm 1\n")
        where = r"val.txt: video id 'v/a.webm' is listed twice \(entry 1 and entry 3\)"
    else:
        root = tmp_path
        write_video(root / "val" / "jump" / "j1.mp4", indexed_frames(3, 16, 16), codec="libx264")
        write_video(root / "val" / "jump" / "j1.webm", indexed_frames(3, 16, 16))
        where = r"val: video id 'jump/j1' is listed twice \(j1.mp4 and j1.webm\)"
    with pytest.raises(ValueError, match=where):
        load_split(dataset, root, "validation")


@pytest.mark.parametrize("dataset", ["jester", "ssv2", "kinetics", "list", "folder"])
def test_empty_split(dataset, request, tmp_path):
    if dataset in ("jester", "ssv2", "kinetics"):
        root = request.getfixturevalue(f"{dataset}_root")
    name, content = {
        "jester": ("jester-v1-validation.csv", "\n\n"),
        "ssv2": (SSV2_VAL, "[]"),
        "kinetics": ("annotations/val.csv", "label,youtube_id,time_start,time_end,split\n"),
        "list": ("val.txt", ""),
        "folder": ("val/jump/notes.txt", "no media in this class folder"),
    }[dataset]
    if dataset in ("list", "folder"):
        root = _list_root(tmp_path)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(content)
    shown = Path(name).name if dataset != "folder" else "val"
    with pytest.raises(EmptySplitError, match=f"{shown}: the validation split lists no videos"):
        load_split(dataset, root, "validation")


def test_data_check_over_every_split_passes_over_an_empty_one(jester_root):
    (jester_root / "jester-v1-test.csv").write_text("")
    assert [r.split for r in check_dataset("jester", jester_root)] == ["train", "validation"]
    with pytest.raises(EmptySplitError, match="jester-v1-test.csv"):
        check_dataset("jester", jester_root, ["test"])
