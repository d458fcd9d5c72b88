"""Suite-wide settings: one intra-op thread, and CUDA tests that select themselves.

The suite's tensors are tiny; on a 2-core machine OpenMP hand-offs then dominate, and two threads measured up to
50× slower than one on small convs. Tests that need more threads set them themselves.

A test marked ``@pytest.mark.cuda`` runs where ``torch.cuda.is_available()`` and is skipped elsewhere, so the same
suite runs on CPU (CI) and on a GPU; ``pytest -m cuda`` selects those tests alone. scripts/gpu-check.sh sets
CPNET_REQUIRE_CUDA=1, under which they refuse to start rather than skip where torch sees no GPU.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    cuda_tests = [item for item in items if item.get_closest_marker("cuda") is not None]
    if cuda_tests and os.environ.get("CPNET_REQUIRE_CUDA") == "1":  # set by scripts/gpu-check.sh
        raise pytest.UsageError(f"CPNET_REQUIRE_CUDA=1 but torch.cuda.is_available() is False: the {len(cuda_tests)} "
                                "cuda tests would only be skipped")
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in cuda_tests:
        item.add_marker(skip)
