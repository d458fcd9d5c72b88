"""The common record every annotation reader returns, and the split it belongs to."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cpnet.errors import MediaError

__all__ = ["DatasetSplit", "EmptySplitError", "MediaError", "VideoRecord"]


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset split.

    ``path`` is a video file or a folder of frames; ``label`` is -1 when unknown (test splits);
    ``num_frames`` is filled when it is cheap to know (frame folders), else ``None`` (counted on first read).
    """

    video_id: str
    path: Path
    label: int
    num_frames: int | None = None


@dataclass
class DatasetSplit:
    """A split read from a dataset's own annotation files.

    ``flip_pairs`` are the class-name pairs that a horizontal flip swaps (left <-> right motions);
    ``missing`` lists the ids whose media were not found on disk (excluded from ``records``, counted, not fatal).
    """

    records: list[VideoRecord]
    class_names: list[str]
    flip_pairs: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dataset: str = ""
    split: str = ""
    ignored: list[str] = field(default_factory=list)  # files in a media folder that are neither videos nor frames

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def missing_summary(self, first: int = 5) -> str:
        """One line: how many media are missing, with the first few ids ('' when none)."""
        if not self.missing:
            return ""
        total = len(self.missing) + len(self.records)
        names = ", ".join(self.missing[:first]) + (", ..." if len(self.missing) > first else "")
        return f"{self.dataset} {self.split}: {len(self.missing)} of {total} media missing ({names})"


    def ignored_summary(self, first: int = 3) -> str:
        """One line: how many files were not read as media, by extension, with the first few ('' when none)."""
        return ignored_summary(self.ignored, f"{self.dataset} {self.split}", first)


def ignored_summary(names: list[str], where: str, first: int = 3) -> str:
    """``"<where>: 3 files ignored, not videos (.txt x2, .ts x1: a.txt, ...)"``; '' for no names."""
    if not names:
        return ""
    counts = Counter(Path(name).suffix.lower() or "(no extension)" for name in names)
    kinds = ", ".join(f"{suffix} x{n}" for suffix, n in counts.most_common())
    shown = ", ".join(names[:first]) + (", ..." if len(names) > first else "")
    return (f"{where}: {len(names)} file(s) ignored, neither a video file (cpnet.data.video.VIDEO_EXTENSIONS) nor a "
            f"frame folder ({kinds}: {shown})")


class EmptySplitError(ValueError):
    """An annotation file that lists no video at all; the message names the file and the split."""
