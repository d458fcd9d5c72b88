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
            "--batch", "1", "2", "--repeats", "2", "--threads", "1", "--out", str(out), *TINY]
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
        # the spread: the median (of two repeats: their mean) between the fastest and the slowest repeat
        low, high = (float(r[k]) for k in ("seconds_min", "seconds_max"))
        assert low <= float(r["seconds"]) <= high and float(r["seconds"]) == pytest.approx((low + high) / 2, rel=1e-4)
        assert [float(v) for v in p["min-max"].split("-")] == pytest.approx([low, high], abs=5.1e-5)
        assert r["mode"] == "infer" and r["amp"] == "off" and r["channels_last"] == "False"
    for r, p in zip(table[:4], shown[:4]):
        ratio, low, high = (float(r[k]) for k in ("vs_baseline", "vs_baseline_min", "vs_baseline_max"))
        assert low <= ratio <= high and ratio == pytest.approx((low + high) / 2, rel=1e-4)
        assert [float(v) for v in p["ratio_min-max"].split("-")] == pytest.approx([low, high], abs=5.1e-3)
        pattern = rf"{r['frames']} frames, batch {r['batch']}: ([0-9.]+)x \(([0-9.]+)-([0-9.]+) over 2 repeats\)"
        note = re.search(pattern, printed)
        assert note and [float(v) for v in note.groups()] == pytest.approx([ratio, low, high], abs=5.1e-3)
    assert all(r["vs_baseline"] == "" for r in table[4:])
    assert "machine: 1-min load average" in printed

    assert main([*args, "--json"]) == 2  # the first run's results are kept unless --force
    assert "runtime.csv already exists (an earlier benchmark's results); pass --force" in capsys.readouterr().err
    assert main([*args, "--json", "--force"]) == 0
    rows = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON list
    _same(read_csv(out / "runtime.csv"), rows, ["model", "frames", "batch", "seconds", "seconds_min", "seconds_max",
                                                "videos_per_s"])
    _same(read_csv(out / "runtime.csv")[:4], rows[:4], ["vs_baseline", "vs_baseline_min", "vs_baseline_max"])


def _fake_times(monkeypatch, per_point: dict[str, list[float]]):
    """Make every grid point report these seconds per model (in the order the models are timed)."""
    monkeypatch.setattr("cpnet.reports.runtime._interleaved_times",
                        lambda fns, repeats, warmup, sync: [list(v) for v in per_point.values()])


def _quiet_machine(monkeypatch, load: float = 0.0, sgemm: list[float] | None = None):
    """A load average of ``load`` and sgemm rates in turn from ``sgemm`` (start, end), without measuring."""
    rates = iter(sgemm or [100.0, 100.0])
    monkeypatch.setattr("cpnet.reports.machine.load_average", lambda: load)
    monkeypatch.setattr("cpnet.reports.machine.sgemm_gflops", lambda **kw: next(rates))


RUNTIME = ["bench", "runtime", "--model", "cpnet_r18", "--baseline", "c2d_r18", "--frames", "2", "--batch", "1",
           "2", "--repeats", "3", "--threads", "1", *TINY]


def test_runtime_ratio_spread_is_per_repeat_and_wide_spread_is_named(tmp_path, capsys, monkeypatch):
    # Repeat i of the model and of the baseline ran back to back: the ratios are 1/2, 2/1 and 4/2 (median 2), not
    # the ratio of the medians (2/2).
    _fake_times(monkeypatch, {"cpnet_r18": [1.0, 2.0, 4.0], "c2d_r18": [2.0, 1.0, 2.0]})
    _quiet_machine(monkeypatch)
    assert main([*RUNTIME, "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    model = json.loads(captured.out)[0]
    assert (model["seconds"], model["seconds_min"], model["seconds_max"]) == (2.0, 1.0, 4.0)
    assert (model["vs_baseline"], model["vs_baseline_min"], model["vs_baseline_max"]) == (2.0, 0.5, 2.0)
    # 4x between fastest and slowest repeat of cpnet, 2x for c2d: every point named, on stderr
    warning = next(line for line in captured.err.splitlines() if "repeats disagree" in line)
    assert warning.startswith("warning: ")
    for point in ("cpnet_r18 T=2 N=1 (4.00x)", "cpnet_r18 T=2 N=2", "c2d_r18 T=2 N=1 (2.00x)", "c2d_r18 T=2 N=2"):
        assert point in warning
    assert "the machine was shared" not in captured.err  # an idle machine


def test_runtime_steady_points_on_an_idle_machine_give_no_warning(tmp_path, capsys, monkeypatch):
    _fake_times(monkeypatch, {"cpnet_r18": [1.0, 1.1, 1.2], "c2d_r18": [1.0, 1.0, 1.0]})
    _quiet_machine(monkeypatch, load=0.5)
    assert main([*RUNTIME, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "warning" not in captured.out
    assert "1-min load average 0.5 before the grid, 0.5 after" in captured.out


@pytest.mark.parametrize("load, sgemm, reason", [
    (3.0, [100.0, 100.0], "other work kept about 3.0 of"),  # load 3 before, 3 - 1 thread after: 3 cores of others
    (0.0, [100.0, 60.0], "sgemm fell from 100.0 to 60.0 GFLOP/s"),
])
def test_runtime_warns_when_the_machine_was_shared(tmp_path, capsys, monkeypatch, load, sgemm, reason):
    _fake_times(monkeypatch, {"cpnet_r18": [1.0, 1.0, 1.0], "c2d_r18": [1.0, 1.0, 1.0]})
    _quiet_machine(monkeypatch, load=load, sgemm=sgemm)
    assert main([*RUNTIME, "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays one JSON list
    shared = [line for line in captured.err.splitlines() if "the machine was shared" in line]
    assert len(shared) == 1 and reason in shared[0] and shared[0].startswith("warning: ")


def test_runtime_prints_an_eta_per_grid_point(tmp_path, capsys):
    assert main([*RUNTIME[:-len(TINY)], "--repeats", "1", "--frames", "2", "3", "--out", str(tmp_path), *TINY]) == 0
    err = capsys.readouterr().err
    points = [line for line in err.splitlines() if line.startswith("point ")]
    assert [line.split(":")[0].split()[1] for line in points] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(re.search(r"; ETA \d+:\d\d$", line) for line in points)
    assert points[-1].endswith("ETA 0:00") and "T=3 N=2" in points[-1]
    assert "cpnet_r18/c2d_r18" in points[0]  # each point's ratio as it is measured


def test_runtime_figure_has_one_axis_per_quantity(tmp_path, monkeypatch):
    from cpnet.reports import runtime

    figures = []
    monkeypatch.setattr(runtime, "save_png", lambda fig, path, **kw: figures.append(fig))
    _fake_times(monkeypatch, {"cpnet_r18": [1.0, 1.2], "c2d_r18": [0.8, 0.9]})
    rows = runtime.runtime_rows("cpnet_r18", 32, [2, 4], [1, 2], baseline="c2d_r18", overrides=TINY_MODEL,
                                repeats=2, num_classes=3)
    runtime.plot_runtime(rows, tmp_path / "runtime.png")
    axes = figures[0].axes
    labels = [ax.get_ylabel() for ax in axes]
    assert len(axes) == 3 and len(set(labels)) == 3  # seconds, videos/s, ratio: each on its own axis
    assert "seconds per batch" in labels[0] and "videos per second" in labels[1] and "baseline" in labels[2]
    boxes = [tuple(ax.get_position().bounds) for ax in axes]
    assert len(set(boxes)) == len(boxes)  # no twin axes drawn over one another
    legend = [t.get_text() for t in figures[0].legends[0].get_texts()]
    assert legend == ["cpnet_r18, 2 frames", "cpnet_r18, 4 frames", "c2d_r18, 2 frames", "c2d_r18, 4 frames"]


def test_runtime_train_mode_times_a_training_step(tmp_path, capsys, monkeypatch):
    from cpnet.reports import runtime

    built, steps = [], []
    original_create, original_step = runtime.create_model, torch.optim.SGD.step
    monkeypatch.setattr(runtime, "create_model", lambda *a, **kw: built.append(original_create(*a, **kw)) or built[-1])
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **kw: steps.append(self) or original_step(self))
    args = [*RUNTIME, "--mode", "train", "--repeats", "2", "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["mode"] for r in rows} == {"train"} and [r["batch"] for r in rows] == [1, 2, 1, 2]
    assert all(r["seconds_min"] <= r["seconds"] <= r["seconds_max"] for r in rows)
    assert rows[0]["vs_baseline_min"] <= rows[0]["vs_baseline"] <= rows[0]["vs_baseline_max"]
    assert all(m.training for m in built)  # train mode: BatchNorm batch statistics, dropout
    # an optimiser step per call: 2 points x 2 models x (1 warm-up + 2 repeats), each after a backward
    assert len(steps) == 12 and all(p.grad is not None for m in built for p in m.parameters())
    assert (tmp_path / "runtime_train.csv").is_file() and (tmp_path / "runtime_train.png").is_file()
    assert not (tmp_path / "runtime.csv").exists()  # an inference grid in the same folder is kept


def test_runtime_channels_last_and_amp_options(tmp_path, capsys, monkeypatch):
    from cpnet.reports import runtime

    layouts = []
    original_create = runtime.create_model

    def create(*a, **kw):
        model = original_create(*a, **kw)
        model.register_forward_pre_hook(
            lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last_3d)))
        return model

    monkeypatch.setattr(runtime, "create_model", create)
    assert main([*RUNTIME, "--repeats", "1", "--channels-last", "--out", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["channels_last"] is True and r["amp"] == "off" for r in rows) and layouts and all(layouts)
    assert (tmp_path / "runtime_channels_last.csv").is_file()
    if not torch.cuda.is_available():  # autocast is CUDA only: refused on the CPU, before --out is created
        assert main([*RUNTIME, "--amp", "bfloat16", "--out", str(tmp_path / "amp")]) == 2
        assert "--amp bfloat16 needs CUDA" in capsys.readouterr().err and not (tmp_path / "amp").exists()


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
    assert main([*args, "--force"]) == 0
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
