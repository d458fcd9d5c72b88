"""`cpnet demo --quick` end to end, and the shipped synthetic configs equal the demo's settings."""

import json
import re

import pytest

from cpnet.app.config import load_config
from cpnet.app.demo import FULL, MODELS, demo_config, format_table, run_demo
from cpnet.cli import main
from cpnet.data.synthetic import MANIFEST
from tests.helpers import ROOT

CONFIGS = ROOT / "configs" / "synthetic"


def test_demo_quick_runs_end_to_end(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    loads = iter([0.2, 2.5])  # the 1-min load average at the start and at the end: others took 1.5 cores of 2
    monkeypatch.setattr("cpnet.app.demo.load_average", lambda: next(loads))
    monkeypatch.setattr("cpnet.reports.machine.load_average", lambda: next(loads))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("cpnet.reports.machine.sgemm_gflops", lambda **kw: 100.0)  # as measured, without the noise
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["models"]) == ["c2d", "nl", "c3d", "cpnet"]
    for key, r in summary["models"].items():
        assert {"top1", "pair_top1", "params", "epochs", "train_seconds"} <= set(r) and r["epochs"] == 1
        assert 0 <= r["top1"] <= 1 and 0 <= r["pair_top1"] <= 1 and r["params"] > 0 and r["train_seconds"] > 0
        assert f"| {MODELS[key][0]} | {MODELS[key][1]} | {100 * r['top1']:.1f} % |" in printed
        eval_json = json.loads((out / "runs" / key / "eval" / "eval.json").read_text())
        assert eval_json["video_top1"] == r["top1"]
    params = {k: r["params"] for k, r in summary["models"].items()}
    assert params["c3d"] > params["cpnet"] > params["c2d"] and params["nl"] > params["c2d"]
    assert (out / "per_class.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert format_table(summary["models"]) in report and "per_class.png" in report
    assert summary["smoke_test"] and "A smoke test (cpnet demo --quick)" in report  # 3.7 % for CPNet means nothing
    assert "the accuracies mean nothing" in printed
    machine = summary["machine"]  # what it ran on, so users can compare their times with ours
    assert machine["threads"] == 1 and machine["sgemm_gflops"] > 0 and machine["cpu_capability"]
    assert f"Machine: {machine['cpu']}" in report and machine["cpu_capability"] in report
    # the load before and after, the sgemm measured again at the end, and the verdict
    load = summary["load"]
    assert load["before"] == {"load1": 0.2, "sgemm_gflops": machine["sgemm_gflops"]}
    assert load["after"] == {"load1": 2.5, "sgemm_gflops": 100.0} and load["sgemm_ratio"] == 1.0
    assert load["other_load"] == 1.5 and load["contended"] and "1.5 of 2 cores" in load["reasons"][0]
    assert "Load: **Contended**: other work kept about 1.5 of 2 cores busy" in report
    assert "load average 0.2 at the start, 2.5 at the end" in report
    assert "warning: the machine was shared during the demo" in printed
    # The models share one frame cache: the set is decoded while C2D trains, then served from memory.
    cache_lines = [line for line in printed.splitlines() if line.startswith("frame cache:")]
    assert len(cache_lines) == 4 and "kept in memory for every model and epoch" in report
    rates = [int(re.search(r"(\d+) % of", line).group(1)) for line in cache_lines]
    assert rates[0] < rates[-1] and rates[-1] >= 70
    # A second run reuses the dataset (same manifest) and replaces the previous runs.
    stamp = (out / "data" / MANIFEST).stat().st_mtime_ns
    loads = iter([0.0, 1.0])  # one busy thread of ours: not contended
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--models", "c2d", "--seed", "3"]) == 0
    assert (out / "data" / MANIFEST).stat().st_mtime_ns == stamp
    second = json.loads((out / "summary.json").read_text())
    assert list(second["models"]) == ["c2d"] and second["seed"] == 3
    assert not second["load"]["contended"] and "Load: Not contended" in (out / "report.md").read_text()
    assert load_config(out / "runs" / "c2d" / "config.yaml").train.seed == 3  # the seed reaches training


def test_full_demo_budgets_are_per_model_and_reported():
    assert set(FULL.epochs) == set(MODELS)
    for key in MODELS:
        cfg = demo_config(key, FULL, seed=2)
        assert cfg.train.epochs == cfg.train.val_every == FULL.epochs[key] and cfg.train.seed == 2
        assert cfg.model.options["stem_kernel"] == FULL.stem_kernel
    row = {"label": "X", "model": "m", "top1": 0.5, "pair_top1": 0.5, "params": 1e5, "epochs": 6,
           "train_seconds": 10.0}
    assert "| 0.100 M | 6 | 10 s |" in format_table({"x": row})


@pytest.mark.parametrize("key", list(MODELS))
def test_shipped_synthetic_configs_are_the_demo_settings(key):
    path = CONFIGS / f"{key}_{FULL.num_frames}x{FULL.size}.yaml"
    assert load_config(path) == demo_config(key, FULL, data_root="data/synthetic")


def test_demo_config_refuses_unknown_model():
    with pytest.raises(ValueError, match="unknown demo model 'i3d'"):
        demo_config("i3d")


def test_demo_writes_the_dataset_with_its_writer_processes(tmp_path, monkeypatch):
    """The full demo writes its dataset with both cores (FULL.write_workers), then decodes it in the training
    process into one frame cache; the data config it hands the writer says so."""

    class Stop(Exception):
        pass

    seen = []

    def fake_prepare(data, log):
        seen.append(data)
        raise Stop

    monkeypatch.setattr("cpnet.app.datasets.prepare_data", fake_prepare)
    with pytest.raises(Stop):
        run_demo(tmp_path / "demo", log=lambda message: None)
    assert FULL.write_workers == 2 and seen[0].workers == 2 and FULL.workers == 0 and FULL.cache_mb > 0
    assert seen[0].root == str(tmp_path / "demo" / "data") and seen[0].synthetic.num_train == FULL.num_train
