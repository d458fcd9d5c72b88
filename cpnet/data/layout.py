"""Finding a dataset's files under ``--root``: split names, annotation files and media folders.

Users point ``--root`` at the folder holding the official annotation files; these may also sit in
``annotations/``, and media either directly under the root or under the official archive folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

SPLITS = ("train", "validation", "test")
_ALIASES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}
# Folder names a split's media may use on disk, by canonical split.
SPLIT_DIRS = {"train": ("train",), "validation": ("val", "validation", "validate"), "test": ("test",)}
ANNOTATION_DIRS = (".", "annotations")


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
