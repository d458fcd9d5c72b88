"""What ``cpnet data check`` does: read every record of a dataset's splits, decode its media, and report counts
per split and class, missing and undecodable media, and frame-count outliers. Kept apart from the CLI so that
it can be called (and tested) as a function returning data."""

from __future__ import annotations

import multiprocessing
import statistics
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cpnet.data.annotations import load_split
from cpnet.data.layout import SPLITS
from cpnet.data.records import EmptySplitError, MediaError
from cpnet.data.video import count_frames, probe, read_clip

SHOW = 5  # how many names each problem list prints


@dataclass
class SplitReport:
    """Findings for one split. ``bad`` maps video id -> error; ``outliers`` maps video id -> frame count."""

    split: str
    videos: int
    class_counts: dict[str, int]
    missing: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)  # min / median / max over readable media
    outliers: dict[str, int] = field(default_factory=dict)


def probe_record(args: tuple[str, str, bool]) -> tuple[str, int | None, str | None]:
    """(video id, frame count or None, error or None). ``quick`` decodes only the first and last frames."""
    video_id, path, quick = args
    try:
        if quick:
            n = count_frames(path)
            read_clip(path, [0, n - 1] if n > 0 else [0])
        else:
            n = probe(path)
        return video_id, n, None
    except (MediaError, FileNotFoundError, OSError) as e:
        return video_id, None, str(e)


def frame_outliers(counts: dict[str, int], min_frames: int = 1) -> dict[str, int]:
    """Videos with fewer than ``min_frames`` frames or more than 4x off the median count."""
    if not counts:
        return {}
    median = statistics.median(counts.values())
    return {k: n for k, n in counts.items() if n < min_frames or n < median / 4 or n > median * 4}


def check_split(
    dataset: str, root: str | Path, split: str, *, quick: bool = False, workers: int = 1, min_frames: int = 1
) -> SplitReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing media are part of the report instead
        data = load_split(dataset, root, split)
    counts = Counter(data.class_names[r.label] if r.label >= 0 else "(unlabelled)" for r in data.records)
    ordered = {name: counts[name] for name in [*data.class_names, "(unlabelled)"] if name in counts}  # label order
    report = SplitReport(data.split, len(data.records), ordered, list(data.missing))
    jobs = [(r.video_id, str(r.path), quick) for r in data.records]
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = list(pool.imap(probe_record, jobs, chunksize=16))
    else:
        results = [probe_record(job) for job in jobs]
    frames = {}
    for video_id, n, error in results:
        if error is not None:
            report.bad[video_id] = error
        else:
            frames[video_id] = n
    if frames:
        values = sorted(frames.values())
        report.frames = {"min": values[0], "median": int(statistics.median(values)), "max": values[-1]}
    report.outliers = frame_outliers(frames, min_frames)
    return report


def check_dataset(
    dataset: str, root: str | Path, splits: list[str] | None = None, **kwargs: object
) -> list[SplitReport]:
    """Check the given splits, or every split whose annotation file exists and lists videos (FileNotFoundError
    when none does; an empty split asked for by name is an error)."""
    if splits:
        return [check_split(dataset, root, s, **kwargs) for s in splits]
    reports, errors = [], []
    for split in SPLITS:
        try:
            reports.append(check_split(dataset, root, split, **kwargs))
        except (FileNotFoundError, EmptySplitError) as e:
            errors.append(str(e))
    if not reports:
        raise FileNotFoundError(f"no {dataset} split found under {root}: " + "; ".join(errors))
    return reports


def _names(items: list[str] | dict, show: int = SHOW) -> str:
    items = list(items)
    return ", ".join(items[:show]) + (f", … ({len(items) - show} more)" if len(items) > show else "")


def format_report(dataset: str, reports: list[SplitReport]) -> str:
    """Human-readable summary, one block per split."""
    lines = []
    for r in reports:
        lines.append(
            f"{dataset} {r.split}: {r.videos} videos, {len(r.class_counts)} classes, "
            f"{len(r.missing)} missing, {len(r.bad)} undecodable, {len(r.outliers)} frame-count outliers"
        )
        lines.append("  per class: " + ", ".join(f"{k} {v}" for k, v in r.class_counts.items()))
        if r.frames:
            lines.append(f"  frames: min {r.frames['min']}, median {r.frames['median']}, max {r.frames['max']}")
        if r.missing:
            lines.append(f"  missing ({len(r.missing)}): {_names(r.missing)}")
        for video_id, error in list(r.bad.items())[:SHOW]:
            lines.append(f"  undecodable {video_id}: {error}")
        if len(r.bad) > SHOW:
            lines.append(f"  … {len(r.bad) - SHOW} more undecodable")
        if r.outliers:
            lines.append(f"  outliers ({len(r.outliers)}): " + _names([f"{k} ({n})" for k, n in r.outliers.items()]))
    return "\n".join(lines)


def report_dict(reports: list[SplitReport]) -> list[dict]:
    return [asdict(r) for r in reports]
