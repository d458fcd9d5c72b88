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
    assert int(rows["artnet_r18"]["params_paper"] * 100) == 3355  # the faithful SMART block (supp. prints 31.81)
    # torchvision's resnet18 has 11,689,512 parameters with 1000 classes; ours with 400 drops 600·513 of them.
    assert rows["c2d_r18"]["params"] == 11_689_512 - 600 * 513
    assert rows["cpnet_r18"]["params"] > rows["c2d_r18"]["params"]
    # the supplement's Table 1 beside ours, None where it prints nothing
    assert {n: r["paper"] for n, r in rows.items() if r["paper"] is not None} == {
        "c2d_r18": 10.84, "c3d_r18": 31.81, "artnet_r18": 31.81, "nl_r18": 10.88, "cpnet_r18": 10.86}
    # NL-R18 and CPNet-R18 carry the one-module variant that the printed figure is
    assert {n for n, r in rows.items() if "one_module" in r} == {"cpnet_r18", "nl_r18"}
    cp, nl = rows["cpnet_r18"]["one_module"], rows["nl_r18"]["one_module"]
    assert cp["options"] == {"cp_at": {"layer2": [0]}} and nl["options"] == {"nl_at": {"layer2": [0]}}
    assert cp["increment_weights"] == 18_528 and nl["increment_weights"] == 32_768
    assert cp["base"] == nl["base"] == "c2d_r18"
    assert int(cp["params_paper"] * 100) == 1086 and round(nl["params_paper"], 2) == 10.88


def test_models_json_other_class_count_has_no_paper_figures(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json", "--num-classes", "10"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["paper"] is None for r in rows)


def test_models_table_prints_ours_beside_the_supplement(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["model", "params", "(M)", "paper", "count", "(2^20)", "supp."]
    n = len(list_models())
    table = {line.split()[0]: line.split()[1:] for line in out[1:1 + n]}
    assert set(table) == set(list_models())
    assert {name: table[name][1:] for name in EXPECTED if name.endswith("_r18")} == {
        "c2d_r18": ["10.84", "10.84"], "c3d_r18": ["31.81", "31.81"], "artnet_r18": ["33.55", "31.81"],
        "nl_r18": ["12.15", "10.88"], "cpnet_r18": ["11.58", "10.86"]}
    assert table["c2d_r34"][2] == "–"
    assert out[1 + n].startswith("paper count: conv weights + fc weight + fc bias")
    variants = {line.split()[0]: line.split()[1:] for line in out[n + 6:]}
    assert variants == {"cpnet_r18": ['{"cp_at":{"layer2":[0]}}', "10.8630", "+18,528", "10.86"],
                        "nl_r18": ['{"nl_at":{"layer2":[0]}}', "10.8765", "+32,768", "10.88"]}


def test_models_bad_class_count_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--num-classes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--num-classes" in err and len(err.splitlines()) == 1
