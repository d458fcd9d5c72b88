"""Model tests run single-threaded: the tiny convs here are dominated by OpenMP hand-offs, and on the shared 2-core CI
machine two threads measured up to 50× slower than one (c2d_r101 at width 8: 4.3 s vs 0.05 s per forward)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
