"""Label spaces read from annotation files are bounded before the class names are built, and read in linear time
(issue 24, attacks 5 and 6)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cpnet.data import generic, jester, layout, ssv2
from cpnet.data.annotations import load_split
from cpnet.data.layout import MAX_CLASSES

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


def test_jester_classes_are_read_in_linear_time(tmp_path: Path) -> None:
    labels = tmp_path / "jester-v1-labels.csv"
    labels.write_text("".join(f"class {i}\n" for i in range(40_000)))  # 6.8 s when each name scanned the others
    started = time.perf_counter()
    names = jester.read_classes(labels)
    assert time.perf_counter() - started < 1.0
    assert len(names) == 40_000 and names[:2] == ["class 0", "class 1"]


def test_a_jester_name_listed_twice_names_both_lines(tmp_path: Path) -> None:
    labels = tmp_path / "jester-v1-labels.csv"
    labels.write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=rf"^{labels}:3: class 'a' is listed twice \(also line 1\)$"):
        jester.read_classes(labels)


def test_jester_refuses_more_classes_than_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "MAX_CLASSES", 100)
    labels = tmp_path / "jester-v1-labels.csv"
    labels.write_text("".join(f"class {i}\n" for i in range(101)))
    with pytest.raises(ValueError, match=rf"^{labels}: 101 classes, more than the limit of 100$"):
        jester.read_classes(labels)


def test_ssv2_refuses_more_classes_than_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "MAX_CLASSES", 100)
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text(json.dumps({f"template {i}": str(i) for i in range(101)}))
    with pytest.raises(ValueError, match=rf"^{labels}: 101 classes, more than the limit of 100$"):
        ssv2.read_classes(labels)


@pytest.mark.parametrize("label", ["999999999999", "200000", "9" * 100_000], ids=["audit", "200000", "100000-digits"])
def test_a_list_label_beyond_the_class_bound_is_refused_before_names_are_built(tmp_path: Path, label: str) -> None:
    # "a.mp4 999999999999" built 10^12 class names (MemoryError at 6.4 GB).
    (tmp_path / "train.txt").write_text(f"a.mp4 {label}\n")
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'train.txt'}: label {label[:20]}.* is not a class index "
                                         rf"0 … {MAX_CLASSES - 1:,} \(at most {MAX_CLASSES:,} classes, the limit\)$"):
        load_split("list", tmp_path, "train", warn_missing=False)
    assert time.perf_counter() - started < 1.0


def test_a_class_file_beyond_the_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "MAX_CLASSES", 10)
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(11)))
    (tmp_path / "train.txt").write_text("a.mp4 c1\n")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'classes.txt'}: 11 classes, more than the limit of 10$"):
        generic.load_list(tmp_path, "train")


def test_a_huge_label_in_another_split_is_refused_without_converting_it(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("x.mp4 a\n")
    (tmp_path / "val.txt").write_text(f"y.mp4 {'7' * 10_000}\n")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'val.txt'}: label 7{{20}}… of 'y.mp4' is outside 0 … 1$"):
        generic.load_list(tmp_path, "validation")
