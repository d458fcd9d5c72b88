"""The compiled half of the CPU kNN: running top-k selection in C (``csrc/knn_select.c``), built on first use.

torch.topk copies and partially sorts every row it is given (1.4–5 ns per element on this project's 2-core CPU,
the slow end on rows shorter than 64·k), which costs more than the matmul that produced the scores. The C code
folds each tile of dot products into the running k-best lists of its rows and of its columns: a few vector
compares per 16 scores, and a sorted insert only for the few that beat a list's current worst. The whole search
then takes about as long as the half matmul it needs (benchmarks/README.md, "kNN").

The library has no Python or torch headers: plain C with a C ABI, compiled with the system C compiler (``$CC``,
default ``cc``) in well under a second and loaded with ctypes, cached under ``$CPNET_CACHE_DIR`` (default
``$XDG_CACHE_HOME/cpnet`` or ``~/.cache/cpnet``) by a hash of the source, compiler and flags. Where no compiler
works, the kNN falls back to its pure-torch path with one warning.

``CPNET_KNN_BACKEND`` chooses: ``auto`` (default: native on CPU when it builds), ``native`` (an error when it does
not build), ``torch`` (never build or load it).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["BACKENDS", "available", "backend_from_env", "build_error", "load", "threading_kind", "update"]

BACKENDS = ("auto", "native", "torch")
ABI_VERSION = 2
_SOURCES = ("knn_select.c", "knn_select_impl.h")
_FLAGS = ("-O3", "-shared", "-fPIC", "-pthread", "-std=c99", "-D_POSIX_C_SOURCE=200112L")
# OpenMP when the compiler has it: the library then shares torch's libgomp (loaded already under the same soname
# from torch's Linux wheel) and its worker threads. Measured at 2 threads: the selection took twice as long on
# fresh POSIX threads, which competed with torch's OpenMP workers still spinning after each matmul.
_THREADING_FLAGS = (("-fopenmp",), ())
_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib": the loaded library, or "error": why it could not be had


def backend_from_env() -> str:
    """The backend ``CPNET_KNN_BACKEND`` asks for (default ``auto``); ValueError naming a bad value."""
    value = os.environ.get("CPNET_KNN_BACKEND", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"CPNET_KNN_BACKEND={value!r} is not one of {', '.join(BACKENDS)}")
    return value


def _cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("CPNET_CACHE_DIR"):
        dirs.append(Path(os.environ["CPNET_CACHE_DIR"]))
    xdg = os.environ.get("XDG_CACHE_HOME")
    dirs.append(Path(xdg) / "cpnet" if xdg else Path.home() / ".cache" / "cpnet")
    dirs.append(Path(tempfile.gettempdir()) / f"cpnet-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    return dirs


def _compile(out_dir: Path, cmd: list[str], target: Path) -> None:
    """Run the compile command into ``target`` atomically: a temporary name, then a rename (concurrent builds by
    several processes, e.g. DDP ranks, each produce a whole file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".knn_select-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        done = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_stale(out_dir: Path, keep: Path) -> None:
    """Delete libraries built from other versions of the sources (a process that has one loaded keeps it)."""
    for old in out_dir.glob("knn_select-*.so"):
        if old != keep:
            try:
                old.unlink()
            except OSError:
                pass


def _build() -> ctypes.CDLL:
    """Find or compile the library: with OpenMP first (threads shared with torch's runtime), else plain pthreads."""
    compiler = os.environ.get("CC", "cc")
    src = Path(__file__).parent / "csrc"
    errors = []
    for out_dir in _cache_dirs():
        for extra in _THREADING_FLAGS:
            flags = (*_FLAGS, *extra)
            digest = hashlib.sha256()
            for name in _SOURCES:
                digest.update((src / name).read_bytes())
            digest.update(" ".join((compiler, *flags, platform.machine(), platform.system())).encode())
            target = out_dir / f"knn_select-{digest.hexdigest()[:16]}.so"
            try:
                if not target.exists():
                    _compile(out_dir, [compiler, *flags, str(src / _SOURCES[0]), "-lm"], target)
                    _remove_stale(out_dir, keep=target)
                lib = ctypes.CDLL(str(target))
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                errors.append(f"{out_dir}: {err}")
                continue
            return _declare(lib, target, "openmp" if extra else "pthreads")
    raise RuntimeError("could not build the native kNN selection: " + "; ".join(errors))


def _declare(lib: ctypes.CDLL, path: Path, threads: str) -> ctypes.CDLL:
    """Check the ABI version and declare the entry points' C signatures."""
    if lib.cpnet_knn_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{path} has ABI {lib.cpnet_knn_abi_version()}, expected {ABI_VERSION}")
    for name in ("cpnet_knn_update_f32", "cpnet_knn_update_f64"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_void_p, ctypes.c_void_p,
                       *[ctypes.c_int64] * 5, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.cpnet_threads = threads  # type: ignore[attr-defined]
    return lib


def load() -> ctypes.CDLL | None:
    """The native library, built and loaded once per process; None (and one warning) when it cannot be built."""
    with _lock:
        if "lib" not in _state and "error" not in _state:
            try:
                _state["lib"] = _build()
            except (OSError, RuntimeError, AttributeError) as err:
                _state["error"] = str(err)
                if backend_from_env() == "auto":
                    warnings.warn(f"cpnet: {err}; the CPU kNN uses its slower pure-torch path "
                                  "(set CPNET_KNN_BACKEND=torch to skip the build)", RuntimeWarning, stacklevel=3)
        return _state.get("lib")  # type: ignore[return-value]


def available() -> bool:
    """Whether the native selection can be used in this process (builds it on the first call)."""
    return load() is not None


def threading_kind() -> str | None:
    """How the loaded library runs threads: "openmp" (torch's runtime) or "pthreads"; None when not loaded."""
    lib = load()
    return None if lib is None else lib.cpnet_threads  # type: ignore[attr-defined]


def build_error() -> str | None:
    """Why the native library could not be built, or None."""
    load()
    return _state.get("error")  # type: ignore[return-value]


def update(dot: torch.Tensor, sq: torch.Tensor, val: torch.Tensor, idx: torch.Tensor, row0: int, col0: int, *,
           rows: bool, cols: bool, frame_points: int = 0) -> None:
    """Fold a tile of dot products into the running lists, in place.

    dot: (N, R, B) contiguous CPU, dot[b, i, j] = x_p·x_q for points p = row0 + i, q = col0 + j; sq: (N, P) the
    squared norms ‖x‖² of every point. val, idx: (N, P, k) running lists of every point (values −‖x_p − x_q‖² plus
    the list owner's own ‖x‖², best first, dtype of ``dot``; int64 indices; empty slots −inf / −1). ``rows``
    updates the rows' lists with the tile's columns, ``cols`` the columns' lists with its rows (then the two point
    ranges must not overlap). ``frame_points`` > 0 skips pairs within one frame (rows only).
    """
    lib = load()
    if lib is None:
        raise RuntimeError(f"the native kNN selection is not available: {build_error()}")
    if dot.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"native kNN update: dot must be float32 or float64, got {dot.dtype}")
    fn = lib.cpnet_knn_update_f32 if dot.dtype == torch.float32 else lib.cpnet_knn_update_f64
    for t in (dot, sq, val, idx):
        if t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError("native kNN update needs contiguous CPU tensors")
    n, r, c = dot.shape
    _, p, k = val.shape
    if sq.dtype != dot.dtype or val.dtype != dot.dtype or idx.dtype != torch.long or val.shape != idx.shape:
        raise ValueError("native kNN update: sq and val must have dot's dtype, idx must be int64 and val's shape")
    if sq.shape != (n, p) or val.shape[0] != n or not (0 <= row0 <= p - r and 0 <= col0 <= p - c):
        raise ValueError(f"native kNN update: tile ({n}, {r}, {c}) at ({row0}, {col0}) does not fit lists "
                         f"{tuple(val.shape)} and norms {tuple(sq.shape)}")
    if cols and frame_points:
        raise ValueError("native kNN update: frame_points applies to row updates only")
    status = fn(dot.data_ptr(), sq.data_ptr(), n, r, c, val.data_ptr(), idx.data_ptr(), p, k, row0, col0,
                frame_points, int(rows), int(cols), torch.get_num_threads())
    if status != 0:
        raise RuntimeError(f"native kNN update failed with status {status}")
