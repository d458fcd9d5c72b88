"""Datasets without an official layout.

*list*: a text file of ``path label`` lines (or ``path num_frames label``, the TSN style), paths relative to the
file or absolute, videos or frame folders, labels as indices or class names. ``--root`` is the list file itself,
or a folder holding ``{split}.txt`` / ``{split}_list.txt`` / ``{split}list.txt``. Class names come from a
``classes.txt`` beside it (one per line) when present, else from the train list's labels.

*folder*: ``<root>/<split>/<class>/<video file or frame folder>``; class names are the sorted class folders of the
train split (of this split when there is no train folder); loose videos directly in a split folder are unlabelled.
"""

from __future__ import annotations

from pathlib import Path

from cpnet.data import frames
from cpnet.data.layout import (
    MAX_CLASSES,
    SPLIT_DIRS,
    canonical_split,
    check_class_count,
    check_not_empty,
    check_unique,
    find_file,
    read_text,
)
from cpnet.data.records import DatasetSplit, MediaError, VideoRecord
from cpnet.data.video import VIDEO_EXTENSIONS

CLASS_FILES = ("classes.txt", "labels.txt")


def _count(path: Path) -> int | None:
    """Frame count of a frame folder; None for a video, or a folder that cannot be counted (reading counts it
    again and reports why)."""
    if not path.is_dir():
        return None
    try:
        return frames.count_frames(path)
    except MediaError:
        return None


def _list_file(root: Path, split: str) -> Path:
    if root.is_file():
        return root
    names = [f"{s}{suffix}" for s in SPLIT_DIRS[split] for suffix in (".txt", "_list.txt", "list.txt", ".list")]
    return find_file(root, names, f"{split} list file")


def _parse_list(path: Path) -> list[tuple[str, int | None, str]]:
    """(path, num_frames or None, label) per non-empty line."""
    entries = []
    for line_no, line in enumerate(read_text(path).splitlines(), 1):
        parts = line.rsplit(maxsplit=2)
        if not parts:
            continue
        if len(parts) == 3 and parts[1].isdigit():
            entries.append((parts[0], int(parts[1]), parts[2]))
        elif len(parts) >= 2:
            head = line.rsplit(maxsplit=1)  # paths may contain spaces: the label is the last field
            entries.append((head[0].strip(), None, head[1]))
        else:
            raise ValueError(f"{path}:{line_no}: expected 'path label' or 'path num_frames label', got {line!r}")
    return entries


def _list_classes(list_file: Path, split: str) -> list[str]:
    """The class names: a class file's lines, else the train list's labels (indices 0 … the largest, or the names
    sorted); at most ``MAX_CLASSES``, checked before the names are built."""
    for name in CLASS_FILES:
        if (list_file.parent / name).is_file():
            names = [s.strip() for s in read_text(list_file.parent / name).splitlines() if s.strip()]
            check_class_count(len(names), list_file.parent / name)
            return names
    source = list_file
    if split != "train":  # the train list defines the label space when it sits beside this one
        try:
            source = _list_file(list_file.parent, "train")
        except FileNotFoundError:
            pass
    labels = {label for _, _, label in _parse_list(source)}
    if all(label.lstrip("-").isdigit() for label in labels):
        # Bounded before anything is built: a label of a million digits by its length, before int() reads it.
        big = next((x for x in labels if len(x.lstrip("-").lstrip("0")) > len(str(MAX_CLASSES))), None)
        top = max((int(x) for x in labels), default=-1) if big is None else None
        if top is None or top >= MAX_CLASSES:
            shown = str(top) if big is None else big if len(big) <= 20 else f"{big[:20]}… ({len(big):,} digits)"
            raise ValueError(f"{source}: label {shown} is not a class index 0 … {MAX_CLASSES - 1:,} (at most "
                             f"{MAX_CLASSES:,} classes, the limit)")
        return [str(i) for i in range(top + 1)]
    check_class_count(len(labels), source)
    return sorted(labels)


def load_list(root: Path, split: str) -> DatasetSplit:
    split = canonical_split(split)
    list_file = _list_file(root, split)
    class_names = _list_classes(list_file, split)
    index = {name: i for i, name in enumerate(class_names)}
    entries = _parse_list(list_file)
    check_not_empty(len(entries), list_file, split)
    check_unique(((rel, f"entry {i}") for i, (rel, _, _) in enumerate(entries, 1)), list_file)
    records, missing = [], []
    for rel, num_frames, label in entries:
        if label.lstrip("-").isdigit():
            label_index = int(label) if len(label) <= 20 else len(class_names)  # no int() of a million digits
            if not -1 <= label_index < len(class_names):
                shown = label if len(label) <= 20 else f"{label[:20]}…"
                raise ValueError(f"{list_file}: label {shown} of {rel!r} is outside 0 … {len(class_names) - 1}")
        elif label in index:
            label_index = index[label]
        else:
            raise ValueError(f"{list_file}: label {label!r} of {rel!r} is not a known class")
        path = Path(rel) if Path(rel).is_absolute() else list_file.parent / rel
        if not path.exists():
            missing.append(rel)
            continue
        records.append(VideoRecord(rel, path, label_index, num_frames if num_frames is not None else _count(path)))
    return DatasetSplit(records, class_names, [], missing, dataset="list", split=split)


def _is_media(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS


def load_folder(root: Path, split: str) -> DatasetSplit:
    split = canonical_split(split)
    split_dir = next((root / d for d in SPLIT_DIRS[split] if (root / d).is_dir()), None)
    if split_dir is None:
        raise FileNotFoundError(f"no {split} folder in {root}: expected one of {list(SPLIT_DIRS[split])}")
    train_dir = root / "train" if (root / "train").is_dir() else split_dir
    class_names = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    check_class_count(len(class_names), train_dir)
    index = {name: i for i, name in enumerate(class_names)}
    records, ignored = [], []
    for entry in sorted(split_dir.iterdir()):
        if entry.is_dir():
            if entry.name not in index:
                raise ValueError(f"{entry}: class folder {entry.name!r} is not a class of {train_dir}")
            for item in sorted(entry.iterdir()):
                if _is_media(item):
                    video_id = f"{entry.name}/{item.stem}"
                    records.append(VideoRecord(video_id, item, index[entry.name], _count(item)))
                elif not item.name.startswith("."):  # hidden files (.DS_Store) are no one's videos
                    ignored.append(f"{entry.name}/{item.name}")
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            records.append(VideoRecord(entry.stem, entry, -1, None))
        elif not entry.name.startswith("."):
            ignored.append(entry.name)
    check_not_empty(len(records), split_dir, split)
    # 'run/a.mp4' and 'run/a.webm' would share the id 'run/a'
    check_unique(((r.video_id, r.path.name) for r in records), split_dir)
    return DatasetSplit(records, class_names, [], [], dataset="folder", split=split, ignored=ignored)
