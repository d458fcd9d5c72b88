"""`cpnet compare` on run folders written by the engine's own evaluation writer, with known per-class accuracies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cpnet.app.evalreport import load_eval, write_eval_report
from cpnet.cli import main
from cpnet.engine.evaluation import ViewLogits, summarize
from cpnet.reports.compare import compare_rows
from cpnet.reports.tables import read_csv

CLASSES = ["slide_left", "slide_right", "static", "grow"]


def fabricate_run(run_dir, correct: list[int], per_class: int = 4, report: str = "eval_validation_single"):
    """A run folder whose evaluation has ``correct[c]`` of ``per_class`` videos of class c right (one view each)."""
    labels = np.repeat(np.arange(len(CLASSES)), per_class)  # (V,)
    logits = np.zeros((len(labels), len(CLASSES)), dtype=np.float32)
    for c, right in enumerate(correct):
        rows = np.flatnonzero(labels == c)
        logits[rows[:right], c] = 5.0  # right: the true class scores highest
        logits[rows[right:], (c + 1) % len(CLASSES)] = 5.0  # wrong: the next class does
    index = np.arange(len(labels))
    views = ViewLogits(logits, labels, index, np.zeros_like(index))
    result = summarize(views, len(labels), CLASSES)
    result.summary = {"model": run_dir.name} | result.summary
    write_eval_report(run_dir / report, result, views, [f"v{i}" for i in index], CLASSES)
    return run_dir


@pytest.fixture
def runs(tmp_path):
    a = fabricate_run(tmp_path / "c2d", [4, 2, 1, 3])
    b = fabricate_run(tmp_path / "cpnet", [3, 4, 1, 4])
    return a, b


def test_known_per_class_differences(runs):
    a, b = runs
    rows = compare_rows(load_eval(a), load_eval(b))
    gains = {r["class_name"]: r["gain"] for r in rows}
    assert gains == pytest.approx({"slide_right": 0.5, "grow": 0.25, "static": 0.0, "slide_left": -0.25})
    assert [r["class_name"] for r in rows] == ["slide_right", "grow", "static", "slide_left"]  # sorted by gain
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert all(r["videos"] == 4 for r in rows)


def test_cli_files_match_printed_output(runs, tmp_path, capsys):
    a, b = runs
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    markdown = (out / "compare.md").read_text()
    assert printed.startswith(markdown)
    assert "| slide_right | 50.0 | 100.0 | +50.0 | 4 |" in markdown  # the largest gain, in points
    assert "| slide_left | 100.0 | 75.0 | -25.0 | 4 |" in markdown  # the loss
    assert "static" not in markdown.split("Largest losses")[1]  # unchanged classes are neither
    assert (out / "compare.png").stat().st_size > 0
    table = read_csv(out / "compare.csv")
    assert [r["class_name"] for r in table] == ["slide_right", "grow", "static", "slide_left"]
    assert [float(r["gain"]) for r in table] == pytest.approx([0.5, 0.25, 0.0, -0.25])

    assert main(["compare", str(a), str(b), "--out", str(out), "--json"]) == 2  # kept unless --force
    assert "compare.csv already exists; pass --force" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--out", str(out), "--json", "--force"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["class_name"] for r in rows] == [r["class_name"] for r in table]
    assert [r["gain"] for r in rows] == pytest.approx([float(r["gain"]) for r in table], rel=1e-5)


def test_class_without_videos_is_listed_last_without_gain(tmp_path):
    a = {"path": "a", "per_class": {"x": 0.5, "y": None}, "videos": {}}
    b = {"path": "b", "per_class": {"x": 0.25, "y": None}, "videos": {}}
    rows = compare_rows(a, b)
    assert [(r["class_name"], r["gain"]) for r in rows] == [("x", -0.25), ("y", None)]


def test_errors(runs, tmp_path, capsys):
    a, b = runs
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    fabricate_run(b, [1, 1, 1, 1], report="eval_validation_released")  # a second evaluation in B
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    assert "--report" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o"), "--report", "eval_validation_single"]) == 0
    other = tmp_path / "other" / "eval.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"per_class_accuracy": {"jump": 1.0}}))
    assert main(["compare", str(a), str(other.parent), "--out", str(tmp_path / "o")]) == 2
    assert "different classes" in capsys.readouterr().err
