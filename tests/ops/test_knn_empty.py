"""A batch of no clips gives an empty (0, P, k) index tensor, as the dense reference does, on every path (issue 24:
it raised ZeroDivisionError)."""

from __future__ import annotations

import pytest
import torch

from cpnet.ops.knn import cross_frame_knn, cross_frame_knn_dense
from tests.ops.native_helpers import NEEDS_CC

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


@pytest.mark.parametrize("backend", ["torch", pytest.param("native", marks=NEEDS_CC)])
@pytest.mark.parametrize("method", ["auto", "rows", "pairs"])
@pytest.mark.parametrize("points", [9, 400], ids=["small", "large"])
def test_a_batch_of_no_clips_gives_empty_lists(backend: str, method: str, points: int) -> None:
    x = torch.randn(0, 4 * points, 8)
    idx = cross_frame_knn(x, 4, 3, method=method, backend=backend)
    assert idx.shape == (0, 4 * points, 3) and idx.dtype == torch.long
    assert idx.shape == cross_frame_knn_dense(x, 4, 3).shape
