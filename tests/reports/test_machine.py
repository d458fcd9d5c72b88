"""The machine description recorded in reports: CPU model, capability, threads, measured sgemm rate."""

import torch

from cpnet.reports.machine import cpu_model, describe, machine_info, sgemm_gflops


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
