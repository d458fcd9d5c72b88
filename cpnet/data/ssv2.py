"""Something-Something v2: ``something-something-v2-labels.json`` (template -> class index string),
``something-something-v2-{train,validation,test}.json`` (objects with ``id`` and, except for test, ``template``
whose ``[something]`` brackets are stripped before lookup) and videos
``<root>/[20bn-something-something-v2/]<id>.webm``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cpnet.data.layout import canonical_split, find_file, list_names, media_root
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
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _class_names(labels_file: Path) -> list[str]:
    mapping = _load_json(labels_file)
    if not isinstance(mapping, dict):
        raise ValueError(f"{labels_file}: expected an object mapping template -> class index")
    try:
        by_index = {int(v): k for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{labels_file}: class indices must be integers (as strings)") from None
    if sorted(by_index) != list(range(len(mapping))):
        raise ValueError(f"{labels_file}: class indices must be 0 … {len(mapping) - 1}, each once")
    return [by_index[i] for i in range(len(mapping))]


def load_ssv2(root: Path, split: str) -> DatasetSplit:
    """Read one SSv2 split with the official class indices; videos missing on disk go to ``missing``."""
    split = canonical_split(split)
    labels_file = find_file(root, [f"{PREFIX}-labels.json"], "Something-Something v2 labels file")
    class_names = _class_names(labels_file)
    index = {name: i for i, name in enumerate(class_names)}
    split_file = find_file(root, [f"{PREFIX}-{split}.json"], f"Something-Something v2 {split} list")
    items = _load_json(split_file)
    if not isinstance(items, list):
        raise ValueError(f"{split_file}: expected a list of objects with 'id' (and 'template')")
    media = media_root(root, ARCHIVE_DIR)
    present = list_names(media)
    records, missing = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"{split_file}: entry {i} has no 'id'")
        video_id = str(item["id"])
        label = -1
        if item.get("template") is not None:
            template = item["template"].replace("[", "").replace("]", "")
            if template not in index:
                raise ValueError(f"{split_file}: entry {video_id}: template {template!r} is not in {labels_file}")
            label = index[template]
        if f"{video_id}.webm" not in present:
            missing.append(video_id)
            continue
        records.append(VideoRecord(video_id, media / f"{video_id}.webm", label, None))
    pairs = [(a, b) for a, b in FLIP_PAIRS if a in index and b in index]
    return DatasetSplit(records, class_names, pairs, missing, dataset="ssv2", split=split)
