"""Jester (20BN-JESTER v1): ``jester-v1-labels.csv`` (one class per line, official order),
``jester-v1-{train,validation,test}.csv`` (``id;Label``, no header; test has ids only) and JPEG frame folders
``<root>/[20bn-jester-v1/]<id>/00001.jpg …`` whose name pattern and count are read from disk."""

from __future__ import annotations

import json
from pathlib import Path

from cpnet.data import frames
from cpnet.data.layout import (
    canonical_split,
    check_class_count,
    check_not_empty,
    check_unique,
    find_file,
    list_names,
    media_root,
    read_text,
)
from cpnet.data.records import DatasetSplit, MediaError, VideoRecord

FLIP_PAIRS = [
    ("Swiping Left", "Swiping Right"),
    ("Sliding Two Fingers Left", "Sliding Two Fingers Right"),
    ("Turning Hand Clockwise", "Turning Hand Counterclockwise"),
]
ARCHIVE_DIR = "20bn-jester-v1"
SYNTHETIC_MANIFEST = "cpnet-synthetic.json"  # written by cpnet.data.synthetic.write_jester
_OTHER_SEPARATORS = (",", "\t")


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines of ``path``."""
    return [(n, line.strip()) for n, line in enumerate(read_text(path).splitlines(), 1) if line.strip()]


def read_classes(labels_file: Path) -> list[str]:
    """The class names of ``jester-v1-labels.csv`` in file order; none, a name listed twice, or more than
    ``MAX_CLASSES`` names is an error."""
    lines = numbered_lines(labels_file)
    check_class_count(len(lines), labels_file)
    names: dict[str, int] = {}  # name -> line: one lookup per line, not a scan of the names so far
    for line_no, name in lines:
        if name in names:
            raise ValueError(f"{labels_file}:{line_no}: class {name!r} is listed twice (also line {names[name]})")
        names[name] = line_no
    if not names:
        raise ValueError(f"{labels_file}: lists no classes (expected one class name per line)")
    return list(names)


def parse_split(split_file: Path, split: str, index: dict[str, int], labels_file: Path) -> list[tuple[str, int, int]]:
    """(video id, label index or -1, line number) per line ``id;Label`` (the test list: ``id`` alone)."""
    entries = []
    for line_no, line in numbered_lines(split_file):
        video_id, sep, name = (part.strip() for part in line.partition(";"))
        where = f"{split_file}:{line_no}"
        if not sep and any(c in line for c in _OTHER_SEPARATORS):
            raise ValueError(f"{where}: expected 'id;Label' separated by ';', got {line!r}")
        if not video_id:
            raise ValueError(f"{where}: no video id before ';' in {line!r}")
        if not name and split != "test":  # 'id' alone or 'id;' with nothing after it
            raise ValueError(f"{where}: {video_id!r} has no label; expected 'id;Label' in the {split} list")
        if name and name not in index:
            raise ValueError(f"{where}: label {name!r} is not in {labels_file}")
        entries.append((video_id, index[name] if name else -1, line_no))
    check_not_empty(len(entries), split_file, split)
    check_unique(((vid, f"line {n}") for vid, _, n in entries), split_file)
    return entries


def _flip_pairs(root: Path, labels_file: Path, class_names: list[str]) -> list[tuple[str, str]]:
    """The synthetic set declares its own pairs in its manifest; real Jester uses the official ones present."""
    manifest = labels_file.parent / SYNTHETIC_MANIFEST
    if manifest.is_file():
        return [tuple(p) for p in json.loads(manifest.read_text())["flip_pairs"]]
    return [(a, b) for a, b in FLIP_PAIRS if a in class_names and b in class_names]


def load_jester(root: Path, split: str) -> DatasetSplit:
    """Read one Jester split; folders missing on disk go to ``missing``."""
    split = canonical_split(split)
    labels_file = find_file(root, ["jester-v1-labels.csv"], "Jester labels file")
    class_names = read_classes(labels_file)
    index = {name: i for i, name in enumerate(class_names)}
    split_file = find_file(root, [f"jester-v1-{split}.csv"], f"Jester {split} list")
    entries = parse_split(split_file, split, index, labels_file)
    media = media_root(root, ARCHIVE_DIR)
    present = list_names(media)
    records, missing = [], []
    for video_id, label, _ in entries:
        if video_id not in present:
            missing.append(video_id)
            continue
        path = media / video_id
        try:
            count = frames.count_frames(path)
        except MediaError:
            count = None  # empty or unreadable: kept, so that reading counts it again and reports why
        records.append(VideoRecord(video_id, path, label, count))
    pairs = _flip_pairs(root, labels_file, class_names)
    return DatasetSplit(records, class_names, pairs, missing, dataset="jester", split=split)
