"""The native (compiled C) selection of the CPU kNN: equal to the torch backend and the oracle, threads and tiles,
non-finite fallback, backend choice, a missing compiler, and k = 0 refused on both sides of the C call."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import cpnet.ops.knn as knn
from cpnet.ops import native
from cpnet.ops.knn import cross_frame_knn, cross_frame_knn_dense
from tests.helpers import ROOT
from tests.ops.native_helpers import NEEDS_CC

pytestmark = NEEDS_CC


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["rows", "pairs"])
def test_native_equals_dense_with_threads_and_small_tiles(
    dtype: torch.dtype, method: str, two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiles of 3 rows (and blocks of 5) split every frame pair; two threads claim rows of one tile concurrently and
    # merge their column candidates.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6 * 20, 7, generator=gen, dtype=torch.float64)
    dense = cross_frame_knn_dense(x, 6, 9)
    for tile in (3 * 20, 1 << 19):
        monkeypatch.setattr(knn, "NATIVE_TILE_ELEMENTS", tile)
        for block_size in (None, 5):
            got = cross_frame_knn(x.to(dtype), 6, 9, block_size=block_size, method=method, backend="native")
            if dtype == torch.float64:
                assert torch.equal(got, dense)
            else:  # float32 may order near-ties differently; the sets of distances agree
                d = ((x[:, :, None] - x[torch.arange(3)[:, None, None], got]) ** 2).sum(-1)
                ref = ((x[:, :, None] - x[torch.arange(3)[:, None, None], dense]) ** 2).sum(-1)
                torch.testing.assert_close(d, ref, rtol=1e-5, atol=1e-5)


def test_native_matches_torch_backend_at_a_larger_size(two_threads: None) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8 * 144, 16, generator=gen, dtype=torch.float64)  # 1,152 points: "auto" picks pairs
    assert torch.equal(cross_frame_knn(x, 8, 12, backend="native"), cross_frame_knn(x, 8, 12, backend="torch"))


def test_native_is_used_by_default_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CPNET_KNN_BACKEND", raising=False)
    calls = []
    real = native.update
    monkeypatch.setattr(native, "update", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    x = torch.randn(1, 4 * 9, 3, dtype=torch.float64)
    assert torch.equal(cross_frame_knn(x, 4, 2), cross_frame_knn_dense(x, 4, 2))
    assert calls


def test_env_selects_the_torch_backend_and_rejects_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "update", lambda *a, **kw: pytest.fail("native used"))
    monkeypatch.setenv("CPNET_KNN_BACKEND", "torch")
    x = torch.randn(1, 4 * 9, 3, dtype=torch.float64)
    assert torch.equal(cross_frame_knn(x, 4, 2), cross_frame_knn_dense(x, 4, 2))
    monkeypatch.setenv("CPNET_KNN_BACKEND", "fast")
    with pytest.raises(ValueError, match="CPNET_KNN_BACKEND='fast'"):
        cross_frame_knn(x, 4, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        cross_frame_knn(x, 4, 2, backend="gpu")


def test_non_finite_scores_fall_back_to_torch() -> None:
    # An infinite feature makes its distances inf (scores -inf or NaN), which never beat a list's empty slot: the
    # native lists stay short and the search is redone with torch.topk, which ranks them.
    x = torch.randn(1, 3 * 4, 2, dtype=torch.float64)
    x[0, 5, 0] = float("inf")
    got = cross_frame_knn(x, 3, 8, backend="native")
    assert got.shape == (1, 12, 8) and bool(((got >= 0) & (got < 12)).all())
    assert torch.equal(got, cross_frame_knn(x, 3, 8, backend="torch"))


def test_build_is_cached_and_a_missing_compiler_falls_back(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    assert native.available()
    built = list(tmp_path.glob("knn_select-*.so"))
    assert len(built) == 1
    # A second process finds the cached library and compiles nothing.
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native.subprocess, "run", lambda *a, **kw: pytest.fail("compiled again"))
    assert native.available()

    monkeypatch.undo()
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("CPNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "nocc"])
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    x = torch.randn(1, 2 * 4, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="pure-torch path"):
        assert torch.equal(cross_frame_knn(x, 2, 2), cross_frame_knn_dense(x, 2, 2))
    assert "no-such-compiler" in native.build_error()
    with pytest.raises(RuntimeError, match="backend='native'.*no-such-compiler"):
        cross_frame_knn(x, 2, 2, backend="native")
    monkeypatch.setattr(native, "_state", {})  # the next test builds (or finds) the real library again


def test_pthreads_build_without_openmp_matches(tmp_path, monkeypatch: pytest.MonkeyPatch, two_threads: None) -> None:
    # Compilers without OpenMP get the POSIX-threads build; it must give the same neighbours.
    monkeypatch.setenv("CPNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path])
    monkeypatch.setattr(native, "_THREADING_FLAGS", ((),))
    monkeypatch.setattr(native, "_state", {})
    assert native.threading_kind() == "pthreads"
    x = torch.randn(2, 6 * 30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    for method in ("rows", "pairs"):
        assert torch.equal(cross_frame_knn(x, 6, 7, method=method, backend="native"), cross_frame_knn_dense(x, 6, 7))


K_ZERO = """
import json, torch
from cpnet.ops import native
dot, sq = torch.randn(1, 2, 2, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64)
val, idx = torch.empty(1, 4, 0, dtype=torch.float64), torch.empty(1, 4, 0, dtype=torch.long)
try:
    native.update(dot, sq, val, idx, 0, 2, rows=True, cols=True)
    error = None
except ValueError as err:
    error = str(err)
fn = native.load().cpnet_knn_update_f64  # the C side, called without the Python checks
status = [fn(dot.data_ptr(), sq.data_ptr(), 1, 2, 2, val.data_ptr(), idx.data_ptr(), 4, k, 0, 2, 0, 1, 1, 1)
          for k in (0, -1)]
print(json.dumps({"error": error, "status": status}))
"""


def test_k_zero_is_refused_in_python_and_in_c() -> None:
    # In a subprocess: unchecked, k = 0 made the C code write before its lists and crash the process (rc 139).
    root = ROOT
    done = subprocess.run([sys.executable, "-c", K_ZERO], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and "k " in result["error"] and "got 0" in result["error"]
    assert result["status"] == [-3, -3]
