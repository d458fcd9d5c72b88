"""The machine description recorded in reports: CPU model, capability, threads, measured sgemm rate."""

import torch

from cpnet.reports.machine import contention, cpu_model, describe, describe_load, machine_info, sgemm_gflops, snapshot


def test_cpu_model_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n")
    assert cpu_model(info) == "AMD EPYC 7B13"


def test_cpu_model_without_cpuinfo_still_names_something(tmp_path):
    assert cpu_model(tmp_path / "missing") != ""


def test_sgemm_rate_is_measured_and_restores_threads():
    before = torch.get_num_threads()
    rate = sgemm_gflops(size=64, seconds=0.01, threads=1)
    assert rate > 0 and torch.get_num_threads() == before


def test_machine_info_records_isa_emulation(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    info = machine_info(threads=1, measure=False)
    assert info["threads"] == 1 and info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["isa_env"]["ATEN_CPU_CAPABILITY"] == "avx2" and "MKL_ENABLE_INSTRUCTIONS" not in info["isa_env"]
    assert "sgemm_gflops" not in info
    text = describe(info)
    assert info["cpu"] in text and info["cpu_capability"] in text and "1 thread," in text
    assert "ATEN_CPU_CAPABILITY=avx2" in text


def test_contention_from_load_average_and_sgemm():
    idle = contention({"load1": 0.2, "sgemm_gflops": 200.0}, {"load1": 2.1, "sgemm_gflops": 190.0}, threads=2,
                      cores=2)
    assert idle == {"other_load": 0.2, "sgemm_ratio": 0.95, "contended": False, "reasons": []}
    # 2 threads of ours on 2 cores and a load of 3.4 after: other work kept at least 1.4 cores busy
    busy = contention({"load1": 0.2, "sgemm_gflops": 200.0}, {"load1": 3.4, "sgemm_gflops": 190.0}, threads=2,
                      cores=2)
    assert busy["contended"] and busy["other_load"] == 1.4 and "1.4 of 2 cores" in busy["reasons"][0]
    # the same other work on a machine with cores to spare for it does not slow a 2-thread run
    assert not contention({"load1": 1.4}, {"load1": 3.4}, threads=2, cores=16)["contended"]
    slower = contention({"load1": 0.0, "sgemm_gflops": 200.0}, {"load1": 0.0, "sgemm_gflops": 120.0}, threads=1,
                        cores=2)
    assert slower["contended"] and slower["sgemm_ratio"] == 0.6 and "sgemm fell" in slower["reasons"][0]
    faster = contention({"load1": 0.0, "sgemm_gflops": 22.4}, {"load1": 0.0, "sgemm_gflops": 207.5}, threads=1)
    assert faster["contended"] and "sgemm rose from 22.4 to 207.5" in faster["reasons"][0]  # busy at the start
    unknown = contention({"load1": None}, {"load1": None}, threads=1)  # no load average on this system
    assert unknown == {"other_load": None, "sgemm_ratio": None, "contended": False, "reasons": []}


def test_load_snapshot_and_its_sentence(monkeypatch):
    state = snapshot(threads=1, sgemm=False)
    assert set(state) == {"load1"} and (state["load1"] is None or state["load1"] >= 0)
    monkeypatch.setattr("cpnet.reports.machine.sgemm_gflops", lambda **kw: 150.0)
    assert snapshot(threads=1)["sgemm_gflops"] == 150.0
    before, after = {"load1": 0.1, "sgemm_gflops": 200.0}, {"load1": 4.0, "sgemm_gflops": 100.0}
    text = describe_load({"before": before, "after": after, **contention(before, after, 2, 2)}, threads=2)
    assert text.startswith("**Contended**: other work kept about 2.0 of 2 cores busy")
    assert "sgemm fell from 200.0 to 100.0 GFLOP/s" in text and "load average 0.1 at the start, 4.0 at the end" in text
    calm = {"load1": 0.1, "sgemm_gflops": 200.0}
    assert describe_load({"before": calm, "after": calm, **contention(calm, calm, 2, 2)}, 2).startswith(
        "Not contended: 1-min load average 0.1")
