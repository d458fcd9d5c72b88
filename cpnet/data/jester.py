"""Jester (20BN-JESTER v1): ``jester-v1-labels.csv`` (one class per line, official order),
``jester-v1-{train,validation,test}.csv`` (``id;Label``, no header; test has ids only) and JPEG frame folders
``<root>/[20bn-jester-v1/]<id>/00001.jpg …`` whose name pattern and count are read from disk."""

from __future__ import annotations

import json
from pathlib import Path

from cpnet.data import frames
from cpnet.data.layout import canonical_split, find_file, list_names, media_root
from cpnet.data.records import DatasetSplit, MediaError, VideoRecord

FLIP_PAIRS = [
    ("Swiping Left", "Swiping Right"),
    ("Sliding Two Fingers Left", "Sliding Two Fingers Right"),
    ("Turning Hand Clockwise", "Turning Hand Counterclockwise"),
]
ARCHIVE_DIR = "20bn-jester-v1"
SYNTHETIC_MANIFEST = "cpnet-synthetic.json"  # written by cpnet.data.synthetic.write_jester


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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
    class_names = read_lines(labels_file)
    index = {name: i for i, name in enumerate(class_names)}
    split_file = find_file(root, [f"jester-v1-{split}.csv"], f"Jester {split} list")
    media = media_root(root, ARCHIVE_DIR)
    present = list_names(media)
    records, missing = [], []
    for line_no, line in enumerate(read_lines(split_file), 1):
        video_id, _, name = line.partition(";")
        if name and name not in index:
            raise ValueError(f"{split_file}:{line_no}: label {name!r} is not in {labels_file}")
        if video_id not in present:
            missing.append(video_id)
            continue
        path = media / video_id
        try:
            count = frames.count_frames(path)
        except MediaError:
            count = 0  # an empty folder: kept so that reading it reports the error
        records.append(VideoRecord(video_id, path, index[name] if name else -1, count))
    pairs = _flip_pairs(root, labels_file, class_names)
    return DatasetSplit(records, class_names, pairs, missing, dataset="jester", split=split)
