"""``cpnet data synth|check|prepare``: write the synthetic motion set, check a dataset's media, and prepare a user's
own videos (re-encode, extract frames, write list files; :mod:`cpnet.data.prepare`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cpnet.data import prepare, synthetic
from cpnet.data.annotations import DATASETS
from cpnet.data.commands import check_dataset, format_report, report_dict
from cpnet.files import atomic_write_text

__all__ = ["CODECS", "DATASETS", "DEFAULT_DISTRACTORS", "DEFAULT_NOISE", "DEFAULT_NUM_TRAIN", "DEFAULT_NUM_VAL",
           "ID_SEPARATOR", "check", "prepare_lists", "prepare_media", "synth"]

CODECS = prepare.CODECS
ID_SEPARATOR = prepare.ID_SEPARATOR
DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL = synthetic.DEFAULT_NUM_TRAIN, synthetic.DEFAULT_NUM_VAL
DEFAULT_NOISE, DEFAULT_DISTRACTORS = synthetic.DEFAULT_NOISE, synthetic.DEFAULT_DISTRACTORS


def synth(out: Path, *, num_train: int, num_val: int, num_frames: int, size: int, seed: int, noise: float,
          distractors: int, workers: int) -> str:
    """Write (or reuse) the synthetic motion set in the Jester layout; returns the line to print."""
    start = time.perf_counter()
    folder = synthetic.write_jester(out, num_train=num_train, num_val=num_val, num_frames=num_frames, size=size,
                                    seed=seed, noise=noise, distractors=distractors, workers=workers, progress=True)
    return (f"synthetic dataset ({num_train} train + {num_val} validation clips) in {folder} "
            f"[{time.perf_counter() - start:.1f} s]; train with: cpnet train --config YOUR.yaml "
            f"--set data.dataset=jester --set data.root={folder}")


def check(dataset: str, root: Path, splits: list[str] | None, *, quick: bool, workers: int, min_frames: int,
          allow_missing: bool, json_path: Path | None = None, force: bool = False) -> tuple[str, bool]:
    """Decode every record of ``dataset``'s splits; returns (the report to print, whether the check failed). An
    existing ``json_path`` is refused before anything is decoded, unless ``force``."""
    if json_path is not None and os.path.lexists(json_path) and not force:
        raise ValueError(f"--json {json_path} already exists; pass --force to replace it")
    reports = check_dataset(dataset, root, splits, quick=quick, workers=workers, min_frames=min_frames)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report_dict(reports), indent=1))
    bad = sum(len(r.bad) for r in reports)
    missing = sum(len(r.missing) for r in reports)
    failed = bad > 0 or (missing > 0 and not allow_missing)
    text = f"{format_report(dataset, reports)}\ncheck {'FAILED' if failed else 'passed'}: {bad} undecodable, " \
           f"{missing} missing"
    return text, failed


def prepare_media(step: str, src: Path, out: Path, *, short_side: int | None, fps: float | None, workers: int,
                  force: bool, keyframe_interval: int = 12, codec: str | None = None,
                  keep_tree: bool = False) -> tuple[list[str], bool]:
    """``reencode`` or ``frames`` every video under ``src`` into ``out``; returns (lines to print, whether any
    source was bad)."""
    start = time.perf_counter()
    if step == "reencode":
        report = prepare.reencode(src, out, short_side, keyframe_interval=keyframe_interval, fps=fps, codec=codec,
                                  workers=workers, force=force, progress=True)
    elif step == "frames":
        report = prepare.extract_frames(src, out, short_side=short_side, fps=fps, keep_tree=keep_tree,
                                        workers=workers, force=force, progress=True)
    else:
        raise ValueError(f"prepare step {step!r}; expected reencode or frames")
    lines = [f"removed {report.stale_removed} unfinished output(s) of an earlier run"] if report.stale_removed else []
    lines += [f"bad {rel}: {error}" for rel, error in report.bad.items()]
    lines.append(f"{report.summary()} [{time.perf_counter() - start:.1f} s] -> {out}")
    return lines, bool(report.bad)


def prepare_lists(root: Path, out: Path, *, force: bool = False) -> str:
    """``train.txt`` / ``validation.txt`` / ``classes.txt`` from a ``<split>/<class>/<video>`` tree; returns the
    line to print."""
    counts = prepare.write_lists(root, out, force=force)
    names = ", ".join(f"{split}.txt ({n} videos)" for split, n in counts.items())
    return (f"wrote classes.txt, {names} in {out}; train with: cpnet train --config YOUR.yaml "
            f"--set data.dataset=list --set data.root={out}")
