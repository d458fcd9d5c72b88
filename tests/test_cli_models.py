"""`cpnet models`: the table and JSON list of presets with both parameter counts."""

from __future__ import annotations

import json

import pytest

from cpnet import list_models
from cpnet.cli import main

EXPECTED = {"c2d_r18", "c2d_r34", "c2d_r50", "c2d_r101", "cpnet_r18", "cpnet_r34", "cpnet_r101", "nl_r18",
            "c3d_r18", "artnet_r18"}


def test_models_json_lists_every_preset_with_paper_counts(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert EXPECTED <= set(rows) and set(rows) == set(list_models())
    assert int(rows["c2d_r18"]["params_paper"] * 100) == 1084
    assert int(rows["c3d_r18"]["params_paper"] * 100) == 3181
    assert abs(rows["artnet_r18"]["params_paper"] / rows["c3d_r18"]["params_paper"] - 1) < 0.01
    # torchvision's resnet18 has 11,689,512 parameters with 1000 classes; ours with 400 drops 600·513 of them.
    assert rows["c2d_r18"]["params"] == 11_689_512 - 600 * 513
    assert rows["cpnet_r18"]["params"] > rows["c2d_r18"]["params"]


def test_models_table_prints_truncated_counts(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert lines["c2d_r18"][2] == "10.84" and lines["c3d_r18"][2] == "31.81"
    assert set(lines) == set(list_models())


def test_models_bad_class_count_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--num-classes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--num-classes" in err and len(err.splitlines()) == 1
