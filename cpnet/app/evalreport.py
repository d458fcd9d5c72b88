"""An evaluation report folder's files, written and read: ``eval.json``, ``predictions.npz``, ``per_class.csv``,
``confusion.csv`` and ``confusion.png`` (their names are :mod:`cpnet.app.runfolder`'s; every write goes through
:mod:`cpnet.files`, whole or not at all)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from cpnet.app.runfolder import CONFUSION_CSV, CONFUSION_PNG, EVAL_JSON, PER_CLASS, PREDICTIONS
from cpnet.engine.evaluation import EvalResult, ViewLogits
from cpnet.files import atomic_output, atomic_write_text


def write_eval_report(folder: str | Path, result: EvalResult, views: ViewLogits, video_ids: list[str],
                      class_names: list[str]) -> Path:
    """Write ``predictions.npz``, ``eval.json`` and, for labelled splits, ``per_class.csv``, ``confusion.csv`` and
    ``confusion.png`` of an evaluation (``cpnet.engine.evaluation``'s ``EvalResult`` and ``ViewLogits``) into
    ``folder``, each file whole or not at all; returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(video_ids)
    with atomic_output(out / PREDICTIONS) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, video_ids=ids[views.video_index], view_ids=views.view_index, logits=views.logits,
                            labels=views.labels, video_index=views.video_index, class_names=np.asarray(class_names),
                            video_scores=result.video_scores.astype(np.float32), video_labels=result.video_labels,
                            videos=ids[result.videos])
    atomic_write_text(out / EVAL_JSON, json.dumps(result.summary, indent=2) + "\n")
    if result.confusion is None:
        return out
    counts = result.confusion.sum(axis=1)
    per_class = [["class_index", "class_name", "videos", "top1"]]
    for i, name in enumerate(class_names):
        acc = result.summary["per_class_accuracy"][name]
        per_class.append([i, name, int(counts[i]), "" if acc is None else f"{acc:.6f}"])
    confusion = [["true \\ predicted", *class_names]]
    confusion += [[name, *row.tolist()] for name, row in zip(class_names, result.confusion)]
    atomic_write_text(out / PER_CLASS, _csv(per_class))
    atomic_write_text(out / CONFUSION_CSV, _csv(confusion))
    from cpnet.reports.figures import plot_confusion

    plot_confusion(result.confusion, class_names, out / CONFUSION_PNG)
    return out


def _csv(rows: list[list]) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


def find_eval(path: str | Path, report: str | None = None) -> Path:
    """The ``eval.json`` of an evaluation folder, or of the one evaluation inside a run folder.

    ``path`` may be the file itself, a folder holding it, or a run folder whose subfolders (``eval/``,
    ``eval_<split>_<protocol>/``) hold it; ``report`` names the subfolder when there are several.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"run or evaluation folder not found: {path}")
    if report is not None:
        target = path / report / EVAL_JSON
        if not target.is_file():
            raise FileNotFoundError(f"no {EVAL_JSON} in {path / report}")
        return target
    if (path / EVAL_JSON).is_file():
        return path / EVAL_JSON
    found = sorted(p for p in path.glob(f"*/{EVAL_JSON}"))
    if not found:
        raise FileNotFoundError(f"no {EVAL_JSON} in {path} or its subfolders: run `cpnet eval --run {path}` first")
    if len(found) > 1:
        names = ", ".join(p.parent.name for p in found)
        raise ValueError(f"{path} holds several evaluations ({names}); choose one with --report NAME")
    return found[0]


def load_eval(path: str | Path, report: str | None = None) -> dict:
    """An evaluation's per-class results: ``{"path", "model", "per_class": {name: top1 or None}, "videos": {name:
    count}, "mean_class_accuracy"}`` (the video counts from ``per_class.csv`` when present)."""
    file = find_eval(path, report)
    try:
        summary = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from None
    per_class = summary.get("per_class_accuracy")
    if not isinstance(per_class, dict) or not per_class:
        raise ValueError(f"{file} has no per_class_accuracy (an unlabelled split cannot be compared)")
    videos: dict[str, int] = {}
    counts = file.parent / PER_CLASS
    if counts.is_file():
        with open(counts, newline="") as f:
            videos = {row["class_name"]: int(row["videos"]) for row in csv.DictReader(f)}
    return {"path": str(file.parent), "model": summary.get("model", ""), "per_class": per_class, "videos": videos,
            "mean_class_accuracy": summary.get("mean_class_accuracy")}
