"""Something-Something v2: ``something-something-v2-labels.json`` (template -> class index string),
``something-something-v2-{train,validation,test}.json`` (objects with ``id`` and, except for test, ``template``
whose ``[something]`` brackets are stripped before lookup) and videos
``<root>/[20bn-something-something-v2/]<id>.webm``.
"""

from __future__ import annotations

import json
from pathlib import Path

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
from cpnet.data.records import DatasetSplit, VideoRecord

FLIP_PAIRS = [
    ("Pulling something from left to right", "Pulling something from right to left"),
    ("Pushing something from left to right", "Pushing something from right to left"),
    ("Turning the camera left while filming something", "Turning the camera right while filming something"),
]
ARCHIVE_DIR = "20bn-something-something-v2"
PREFIX = "something-something-v2"


def _load_json(path: Path) -> object:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def _class_index(value: object, template: str, labels_file: Path) -> int:
    """The official index stored for ``template``: an integer or a string of one ('12')."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{labels_file}: class index of {template!r} must be an integer (as a string), "
                         f"got {value!r}") from None


def read_classes(labels_file: Path) -> list[str]:
    """The class names of `something-something-v2-labels.json` ({template: index}), in index order."""
    mapping = _load_json(labels_file)
    if not isinstance(mapping, dict):
        raise ValueError(f"{labels_file}: expected an object mapping template -> class index")
    check_class_count(len(mapping), labels_file)
    by_index = {_class_index(v, k, labels_file): k for k, v in mapping.items()}
    if not mapping or sorted(by_index) != list(range(len(mapping))):
        raise ValueError(f"{labels_file}: class indices must be 0 … {len(mapping) - 1}, each once")
    return [by_index[i] for i in range(len(mapping))]


def _parse_items(split_file: Path, split: str, index: dict[str, int], labels_file: Path) -> list[tuple[str, int]]:
    """(video id, label index or -1) per entry of a split JSON (a list of objects with 'id' and 'template')."""
    items = _load_json(split_file)
    if not isinstance(items, list):
        raise ValueError(f"{split_file}: expected a list of objects with 'id' (and 'template'), "
                         f"got a JSON {type(items).__name__}")
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"{split_file}: entry {i} has no 'id'")
        raw_id, template = item["id"], item.get("template")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id).strip() in ("", "."):
            raise ValueError(f"{split_file}: entry {i}: 'id' must be a video name or number, got {raw_id!r}")
        video_id, label = str(raw_id).strip(), -1
        if template is not None:
            if not isinstance(template, str):
                raise ValueError(f"{split_file}: entry {video_id}: 'template' must be a string, got {template!r}")
            template = template.replace("[", "").replace("]", "")
            if template not in index:
                raise ValueError(f"{split_file}: entry {video_id}: template {template!r} is not in {labels_file}")
            label = index[template]
        entries.append((video_id, label))
    check_not_empty(len(entries), split_file, split)
    check_unique(((vid, f"entry {i}") for i, (vid, _) in enumerate(entries)), split_file)
    return entries


def load_ssv2(root: Path, split: str) -> DatasetSplit:
    """Read one SSv2 split with the official class indices; videos missing on disk go to ``missing``."""
    split = canonical_split(split)
    labels_file = find_file(root, [f"{PREFIX}-labels.json"], "Something-Something v2 labels file")
    class_names = read_classes(labels_file)
    index = {name: i for i, name in enumerate(class_names)}
    split_file = find_file(root, [f"{PREFIX}-{split}.json"], f"Something-Something v2 {split} list")
    entries = _parse_items(split_file, split, index, labels_file)
    media = media_root(root, ARCHIVE_DIR)
    present = list_names(media)
    records, missing = [], []
    for video_id, label in entries:
        if f"{video_id}.webm" not in present:
            missing.append(video_id)
            continue
        records.append(VideoRecord(video_id, media / f"{video_id}.webm", label, None))
    pairs = [(a, b) for a, b in FLIP_PAIRS if a in index and b in index]
    return DatasetSplit(records, class_names, pairs, missing, dataset="ssv2", split=split)
