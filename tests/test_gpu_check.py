"""scripts/gpu-check.sh: its steps, and a clean refusal where no CUDA device exists (CI); on a GPU machine run it
directly (README, "Check a GPU")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from cpnet.app.config import load_config
from cpnet.device import autocast

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"


def test_gpu_check_lists_its_steps():
    out = subprocess.run(["bash", str(SCRIPT), "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cuda_tests", "knn_bench", "train_fp16", "train_bf16_channels_last", "ddp_nccl", "export_cuda"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_without_cuda_says_so_and_checks_nothing():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "no CUDA device" in done.stderr and "summary" not in done.stdout


def test_mixed_precision_dtype_is_a_checked_choice():
    assert load_config(None, ["train.amp_dtype=bfloat16"]).train.amp_dtype == "bfloat16"
    with pytest.raises(ValueError, match="train.amp_dtype"):
        load_config(None, ["train.amp_dtype=float8"])
    with pytest.raises(ValueError, match="bfloat16"):
        autocast(torch.device("cpu"), True, "half")
    assert isinstance(autocast(torch.device("cpu"), True, "bfloat16"), type(autocast(torch.device("cpu"), False)))
