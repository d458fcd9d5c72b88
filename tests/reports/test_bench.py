"""`cpnet bench runtime|memory|profile` at tiny sizes: files agree with what is printed, rows are consistent."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

import cpnet
from cpnet.cli import main
from cpnet.reports.profile import COMPONENTS, profile_model
from cpnet.reports.tables import read_csv

# A CPNet small enough for a unit test: one CP module on the 8x8 maps of layer2 (32² input, stem stride 1).
TINY = ["--option", "width=4", "--option", "layers=[1,1,1,1]", "--option", "stem_stride=1",
        "--option", "cp_at={layer2: [0]}", "--option", "cp_k=4", "--num-classes", "3", "--size", "32"]
TINY_MODEL = {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1, "cp_at": {"layer2": [0]}, "cp_k": 4}


def printed_table(printed: str, first_column: str) -> list[dict[str, str]]:
    """The rows of the fixed-width table in ``printed`` whose header starts with ``first_column``."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first_column])
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        cells = line.split()
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells)))
    return rows


def _same(csv_rows: list[dict], json_rows: list[dict], keys: list[str]) -> None:
    """Every CSV cell (6 significant digits) equals the JSON value of the same row."""
    assert len(csv_rows) == len(json_rows)
    for c, j in zip(csv_rows, json_rows):
        for key in keys:
            if isinstance(j[key], float):
                assert float(c[key]) == pytest.approx(j[key], rel=1e-5)
            else:
                assert c[key] == str(j[key])


def test_runtime_table_csv_json_and_ratio(tmp_path, capsys):
    out = tmp_path / "rt"
    args = ["bench", "runtime", "--model", "cpnet_r18", "--baseline", "c2d_r18", "--frames", "2", "4",
            "--batch", "1", "2", "--repeats", "1", "--threads", "1", "--out", str(out), *TINY]
    assert main(args) == 0
    printed = capsys.readouterr().out
    table = read_csv(out / "runtime.csv")
    assert (out / "runtime.png").stat().st_size > 0
    assert [(r["model"], r["frames"], r["batch"]) for r in table] == [
        (m, t, n) for m in ("cpnet_r18", "c2d_r18") for t in ("2", "4") for n in ("1", "2")]
    shown = printed_table(printed, "model")
    assert len(shown) == len(table)
    for r, p in zip(table, shown):  # every CSV row is the printed row, at the printed precision
        assert (p["model"], p["frames"], p["batch"]) == (r["model"], r["frames"], r["batch"])
        # printed at 4 and 2 decimals; the CSV keeps 6 significant digits
        assert float(p["seconds"]) == pytest.approx(float(r["seconds"]), abs=5.1e-5)
        assert float(p["videos_per_s"]) == pytest.approx(float(r["videos_per_s"]), abs=5.1e-3)
        assert float(r["videos_per_s"]) == pytest.approx(int(r["batch"]) / float(r["seconds"]), rel=1e-4)
    base = {(r["frames"], r["batch"]): float(r["seconds"]) for r in table if r["model"] == "c2d_r18"}
    for r in table[:4]:
        ratio = float(r["seconds"]) / base[(r["frames"], r["batch"])]
        assert float(r["vs_baseline"]) == pytest.approx(ratio, rel=1e-4)
        note = re.search(rf"{r['frames']} frames, batch {r['batch']}: ([0-9.]+)x", printed)
        assert note and float(note.group(1)) == pytest.approx(ratio, abs=5.1e-3)

    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON list
    _same(read_csv(out / "runtime.csv"), rows, ["model", "frames", "batch", "seconds", "videos_per_s"])


def test_runtime_rejects_bad_grid(capsys):
    assert main(["bench", "runtime", "--model", "c2d_r18", "--frames", "1", "--batch", "1"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert main(["bench", "runtime", "--model", "c2d_r18", "--option", "widht=4", "--frames", "2", "--batch", "1",
                 "--size", "32"]) == 2
    assert "did you mean width" in capsys.readouterr().err


def test_memory_one_process_per_case(tmp_path, capsys):
    out = tmp_path / "mem"
    args = ["bench", "memory", "--sizes", "1,2,4,4,8", "--k", "2", "--repeats", "1", "--threads", "1",
            "--blocks", "cp_recompute", "nl", "nl_full", "--device", "cpu", "--out", str(out), "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["block"] for r in rows] == ["cp_recompute", "nl", "nl_full"]
    pids = {r["pid"] for r in rows}
    assert len(pids) == 3 and os.getpid() not in pids  # each case measured in its own fresh process
    assert all(r["peak_mb"] >= 0 and r["seconds"] > 0 and r["threads"] == 1 and r["device"] == "cpu" for r in rows)
    nl, full = rows[1], rows[2]
    for r in rows:
        assert r["time_vs_nl"] == pytest.approx(r["seconds"] / nl["seconds"])
        assert r["time_vs_nl_full"] == pytest.approx(r["seconds"] / full["seconds"])
    table = read_csv(out / "memory.csv")
    _same(table, rows, ["block", "N", "T", "C", "k", "peak_mb", "seconds"])
    assert (out / "memory.png").stat().st_size > 0



def test_memory_ratios_printed(tmp_path, capsys, monkeypatch):
    measured = {"cp": (100.0, 0.4), "nl": (800.0, 1.0), "nl_full": (1600.0, 2.0)}  # block: (MB, seconds)

    def fake_run_case(case):
        mb, seconds = measured[case.block]
        return {"block": case.block, "N": case.n, "T": case.t, "H": case.h, "W": case.w, "C": case.c, "k": case.k,
                "device": case.device, "threads": 1, "pid": 0, "peak_mb": mb, "seconds": seconds}

    monkeypatch.setattr("cpnet.reports.memory.run_case", fake_run_case)
    out = tmp_path / "mem"
    assert main(["bench", "memory", "--sizes", "1,2,4,4,8", "--blocks", "cp", "nl", "nl_full", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cp / nl at N=1 T=2 4x4 C=8 (cpu): memory 1/8.0, time 0.40x" in printed
    assert "cp / nl_full at N=1 T=2 4x4 C=8 (cpu): memory 1/16.0, time 0.20x" in printed
    shown = printed_table(printed, "block")
    assert [(p["block"], p["peak_mb"], p["mem_vs_nl"], p["time_vs_nl_full"]) for p in shown] == [
        ("cp", "100.0", "0.125", "0.200"), ("nl", "800.0", "1.000", "0.500"), ("nl_full", "1600.0", "2.000", "1.000")]
    table = read_csv(out / "memory.csv")
    assert [float(r["mem_vs_nl_full"]) for r in table] == [0.0625, 0.5, 1.0]


def test_memory_rejects_bad_sizes(capsys):
    assert main(["bench", "memory", "--sizes", "1,2,4,4"]) == 2
    assert "N,T,H,W,C" in capsys.readouterr().err
    assert main(["bench", "memory", "--sizes", "1,2,4,4,8", "--blocks", "attention"]) == 2
    assert "unknown block" in capsys.readouterr().err


def test_profile_cli_files_match(tmp_path, capsys):
    out = tmp_path / "prof"
    args = ["bench", "profile", "--model", "cpnet_r18", "--frames", "4", "--batch", "2", "--repeats", "2",
            "--threads", "1", "--out", str(out), *TINY]
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["component"] for r in rows] == [*COMPONENTS, "total"]
    assert sum(r["share"] for r in rows[:4]) == pytest.approx(1.0)
    assert rows[1]["seconds"] > 0 and rows[2]["seconds"] > 0  # kNN and pair MLP were timed
    _same(read_csv(out / "profile.csv"), rows, ["component", "model", "frames", "batch"])
    assert (out / "profile.png").stat().st_size > 0
    assert main(args) == 0
    shown = printed_table(capsys.readouterr().out, "component")
    table = read_csv(out / "profile.csv")
    assert [p["component"] for p in shown] == [r["component"] for r in table]
    assert [float(p["share"]) for p in shown] == pytest.approx([float(r["share"]) for r in table], abs=5.1e-4)


def test_profile_without_cp_is_all_backbone_and_hooks_are_removed():
    torch.manual_seed(0)
    model = cpnet.create_model("c2d_r18", num_classes=3, width=4, layers=[1, 1, 1, 1])
    rows = profile_model(model, torch.randn(1, 3, 2, 32, 32), repeats=1)
    shares = {r["component"]: r["share"] for r in rows}
    assert shares["backbone"] == 1.0 and shares["knn"] == shares["pair_mlp"] == shares["cp_rest"] == 0.0

    cp_model = cpnet.create_model("cpnet_r18", num_classes=3, **TINY_MODEL)
    profile_model(cp_model, torch.randn(1, 3, 4, 32, 32), repeats=1)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in cp_model.modules())


def test_profile_times_the_folded_inference_path(monkeypatch):
    # A hook on a pair-MLP BatchNorm would stop the CP module from folding it: the profile must time what inference
    # runs, so every CP module must still be foldable while the profiler's hooks are attached.
    from cpnet.models.cp import CPModule

    seen = []
    original = CPModule._foldable
    monkeypatch.setattr(CPModule, "_foldable", lambda self: seen.append(original(self)) or seen[-1])
    cp_model = cpnet.create_model("cpnet_r18", num_classes=3, **TINY_MODEL)
    profile_model(cp_model, torch.randn(1, 3, 4, 32, 32), repeats=1)
    assert seen and all(seen)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_bench_asking_for_missing_cuda_is_one_line(tmp_path, capsys):
    assert main(["bench", "runtime", "--model", "c2d_r18", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "cpnet bench: error: --device=cuda but no CUDA device is available; use auto or cpu")
