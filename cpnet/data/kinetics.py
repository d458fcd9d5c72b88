"""Kinetics-400: annotation CSVs with header ``label,youtube_id,time_start,time_end,split[,…]`` (the test list may
lack ``label``), named ``train.csv``/``val.csv``/``test.csv`` as distributed or ``kinetics-400_{split}.csv``, in the
root or ``annotations/``; clips ``<youtube_id>_<start:06d>_<end:06d>.mp4`` under ``<root>/<split>/<label>/``,
``<root>/<split>/`` or flat in the root; class folders may be symlinks (followed, each real folder once, so that
a link loop ends). Real copies are always incomplete: missing clips are listed, not fatal.
Class indices are the sorted label names of the train list (the usual order), or of this split's list without it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

from cpnet.data.layout import (
    SPLIT_DIRS,
    canonical_split,
    check_class_count,
    check_not_empty,
    check_unique,
    find_file,
    read_text,
)
from cpnet.data.records import DatasetSplit, VideoRecord
from cpnet.data.video import VIDEO_EXTENSIONS

_SPLIT_FILES = {"train": ("train",), "validation": ("val", "validate", "validation"), "test": ("test",)}
_PREFIXES = ("", "kinetics-400_", "kinetics400_", "kinetics_400_")
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")


def annotation_file(root: Path, split: str) -> Path:
    names = [f"{p}{s}.csv" for s in _SPLIT_FILES[split] for p in _PREFIXES]
    return find_file(root, names, f"Kinetics {split} annotation CSV")


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a Kinetics CSV, checking the header and that every row fills the required columns."""
    try:
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
        header = reader.fieldnames or []
        lacking = [c for c in REQUIRED_COLUMNS if c not in header]
        if lacking:
            raise ValueError(
                f"{path}: header {header} lacks {lacking}; expected label,youtube_id,time_start,time_end,split"
            )
        rows = list(reader)
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV ({e})") from None
    for line_no, row in enumerate(rows, 2):
        short = [c for c in REQUIRED_COLUMNS if not row.get(c)]
        if short:
            raise ValueError(f"{path}:{line_no}: no value for {short} in {row}")
    return rows


def clip_name(row: dict[str, str], path: Path, line_no: int) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>``, the file stem of a clip."""
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{path}:{line_no}: time_start/time_end must be numbers, got {row}") from None
    return f"{row['youtube_id'].strip()}_{start:06d}_{end:06d}"


def _walk_once(base: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(base)`` following symlinked folders (class folders are often links to another disk), each real
    folder once: a folder reached again through a link (a loop such as ``zumba/up -> ..``) is not entered."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(base, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError:  # gone or unreadable since it was listed: its clips are reported missing
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        yield folder, dirs, files


def index_media(root: Path, split: str) -> dict[str, Path]:
    """Clip stem -> path, from one walk over the split's media folder (``<root>/<split>/``) or, without one, over
    the root (flat or per-label folders), symlinked folders included."""
    base = next((root / d for d in SPLIT_DIRS[split] if (root / d).is_dir()), root)
    found: dict[str, Path] = {}
    for folder, dirs, files in _walk_once(base):
        if folder == str(base):
            dirs[:] = [d for d in dirs if d != "annotations"]
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, Path(folder) / name)
    return found


def load_kinetics(root: Path, split: str) -> DatasetSplit:
    split = canonical_split(split)
    path = annotation_file(root, split)
    rows = read_rows(path)
    try:
        train_rows = rows if split == "train" else read_rows(annotation_file(root, "train"))
    except FileNotFoundError:
        train_rows = rows
    labels = {r["label"] for r in train_rows if r.get("label")}
    check_class_count(len(labels), path if train_rows is rows else annotation_file(root, "train"))
    class_names = sorted(labels)
    index = {name: i for i, name in enumerate(class_names)}
    entries = []
    for line_no, row in enumerate(rows, 2):
        label = row.get("label") or ""
        if label and label not in index:
            raise ValueError(f"{path}:{line_no}: label {label!r} is not among the {len(index)} training classes")
        entries.append((clip_name(row, path, line_no), index[label] if label else -1, line_no))
    check_not_empty(len(entries), path, split)
    check_unique(((name, f"line {n}") for name, _, n in entries), path)
    media = index_media(root, split)
    records, missing = [], []
    for name, label, _ in entries:
        if name not in media:
            missing.append(name)
            continue
        records.append(VideoRecord(name, media[name], label, None))
    return DatasetSplit(records, class_names, [], missing, dataset="kinetics", split=split)
