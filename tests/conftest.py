"""Suite-wide settings: one intra-op thread, and CUDA tests that select themselves.

The suite's tensors are tiny; on a 2-core machine OpenMP hand-offs then dominate, and two threads measured up to
50× slower than one on small convs. Tests that need more threads set them themselves.

A test marked ``@pytest.mark.cuda`` runs where ``torch.cuda.is_available()`` and is skipped elsewhere, so the same
suite runs on CPU (CI) and on a GPU; ``pytest -m cuda`` selects those tests alone (scripts/gpu-check.sh).
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
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
