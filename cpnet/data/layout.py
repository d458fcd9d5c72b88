"""Finding a dataset's files under ``--root``: split names, annotation files and media folders.

Users point ``--root`` at the folder holding the official annotation files; these may also sit in
``annotations/``, and media either directly under the root or under the official archive folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cpnet.data.records import EmptySplitError

SPLITS = ("train", "validation", "test")
_ALIASES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}
# Folder names a split's media may use on disk, by canonical split.
SPLIT_DIRS = {"train": ("train",), "validation": ("val", "validation", "validate"), "test": ("test",)}
ANNOTATION_DIRS = (".", "annotations")
MAX_CLASSES = 100_000  # classes of one dataset: Kinetics has 700, ImageNet-21k 21,841; a label file may claim more


def canonical_split(split: str) -> str:
    """'train', 'validation' or 'test' ('val' is accepted for 'validation')."""
    if split not in _ALIASES:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} ('val' also accepted)")
    return _ALIASES[split]


def check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    return root


def find_file(root: Path, names: Iterable[str], what: str) -> Path:
    """The first of ``names`` present in ``root`` or ``root/annotations``; FileNotFoundError listing what was tried."""
    names = list(names)
    for sub in ANNOTATION_DIRS:
        for name in names:
            candidate = root / sub / name
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{what} not found in {root} or {root / 'annotations'}: expected one of {names}")


def media_root(root: Path, archive_dir: str) -> Path:
    """``root/archive_dir`` when it exists (the official archive's folder), else ``root`` itself."""
    candidate = root / archive_dir
    return candidate if candidate.is_dir() else root


def list_names(folder: Path) -> set[str]:
    """Entry names of a folder (empty when it does not exist): one listing instead of a stat per record."""
    try:
        return set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return set()


def read_text(path: Path) -> str:
    """The text of an annotation file (UTF-8; a leading byte-order mark, as spreadsheet exports write, is dropped).
    Undecodable bytes raise ValueError naming the file instead of a bare codec error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def check_unique(entries: Iterable[tuple[str, str]], source: Path) -> None:
    """Refuse a video id listed twice in ``source`` (it would be trained on twice and counted twice in evaluation);
    ``entries`` are (video id, where it is listed, e.g. 'line 3')."""
    seen: dict[str, str] = {}
    for video_id, where in entries:
        if video_id in seen:
            raise ValueError(f"{source}: video id {video_id!r} is listed twice ({seen[video_id]} and {where})")
        seen[video_id] = where


def check_class_count(count: int, source: Path) -> None:
    """Refuse a label space of more than :data:`MAX_CLASSES` classes read from ``source`` (ValueError naming it),
    before the class names are built."""
    if count > MAX_CLASSES:
        raise ValueError(f"{source}: {count:,} classes, more than the limit of {MAX_CLASSES:,}")


def check_not_empty(count: int, source: Path, split: str) -> None:
    """An annotation file listing no video is an error (a truncated download or the wrong file), not a 0-video split."""
    if count == 0:
        raise EmptySplitError(f"{source}: the {split} split lists no videos")
