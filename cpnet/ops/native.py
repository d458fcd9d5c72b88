"""The compiled half of the CPU kNN: running top-k selection in C (``csrc/knn_select.c``), built on first use.

torch.topk copies and partially sorts every row it is given (1.4–5 ns per element on this project's 2-core CPU,
the slow end on rows shorter than 64·k), which costs more than the matmul that produced the scores. The C code
folds each tile of dot products into the running k-best lists of its rows and of its columns: a few vector
compares per 16 scores, and a sorted insert only for the few that beat a list's current worst. The whole search
then takes about as long as the half matmul it needs (benchmarks/README.md, "kNN").

The library has no Python or torch headers: plain C with a C ABI, compiled with the system C compiler (``$CC``,
split like a shell command line, default ``cc``) in well under a second and loaded with ctypes. It is cached in
``$CPNET_CACHE_DIR`` when set, then in ``$XDG_CACHE_HOME/cpnet`` or ``~/.cache/cpnet``, named by the compiler and
a hash of the sources, compiler and flags, so libraries of different compilers coexist.

What is loaded: a cache folder is used only when it is a real folder (not a symbolic link) owned by this user and
writable by no one else, on a path that only this user or root can change: every component as written, links
followed one by one, must be a folder of this user or root writable by no one else, or a sticky one (like /tmp)
whose entry on the path belongs to this user or root (another user's link in /tmp is refused, not followed); the
folders it creates are mode 0700. Each build records the library's SHA-256 in ``<library>.sha256`` beside it. A
cached library is loaded only when it and its record are regular files that pass the same owner and mode checks
and its content has the recorded hash; the file is opened once (no links followed), hashed through that
descriptor and loaded through it (``/proc/self/fd/N``; elsewhere from a private copy of the hashed bytes), so the
bytes hashed are the bytes that run. Otherwise it is rebuilt, never loaded, and one warning names the file and
the reason. Where no cache folder can be used, the library is built in a folder private to this process
(tempfile.mkdtemp) that is deleted once the library is loaded; where no compiler works, the kNN falls back to its
pure-torch path with one warning.

``CPNET_KNN_BACKEND`` chooses: ``auto`` (default: native on CPU when it builds), ``native`` (an error when it does
not build), ``torch`` (never build or load it).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

from cpnet.ops.private_files import Refused as _Refused
from cpnet.ops.private_files import open_private as _open_private
from cpnet.ops.private_files import prepare_folder as _prepare_folder
from cpnet.ops.private_files import read_fd as _read_fd
from cpnet.ops.private_files import read_private as _read_private

__all__ = ["BACKENDS", "available", "backend_from_env", "build_error", "load", "threading_kind", "update"]

BACKENDS = ("auto", "native", "torch")
ABI_VERSION = 3
_SOURCES = ("knn_select.c", "knn_select_impl.h")
_FLAGS = ("-O3", "-shared", "-fPIC", "-pthread", "-std=c99", "-D_POSIX_C_SOURCE=200112L")
# OpenMP when the compiler has it: the library then shares torch's libgomp (loaded already under the same soname
# from torch's Linux wheel) and its worker threads. Measured at 2 threads: the selection took twice as long on
# fresh POSIX threads, which competed with torch's OpenMP workers still spinning after each matmul.
_THREADING_FLAGS = (("-fopenmp",), ())
_TEMP_PREFIX = ".knn_select-"  # a build's temporaries (the library and its hash record before their renames)
_STALE_TEMP_SECONDS = 600  # a temporary this old is a killed build's: a build takes about a second
_UNNAMED = re.compile(r"knn_select-[0-9a-f]{16}\.so")  # libraries named before the compiler was in the name
_STATUS = {-2: "frame_points applies to row updates only", -3: "k must be at least 1"}
_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib": the loaded library, or "error": why it could not be had
_held_fds: list[int] = []  # descriptors libraries were loaded through (see _load_verified)


def backend_from_env() -> str:
    """The backend ``CPNET_KNN_BACKEND`` asks for (default ``auto``); ValueError naming a bad value."""
    value = os.environ.get("CPNET_KNN_BACKEND", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"CPNET_KNN_BACKEND={value!r} is not one of {', '.join(BACKENDS)}")
    return value


def _cache_dirs() -> list[Path]:
    """The cache folders to try in turn: ``$CPNET_CACHE_DIR`` when set, then the user's cache folder. No folder
    where the platform has no user ids to check owners by: only the private folder of ``_build`` is used there."""
    if not hasattr(os, "getuid"):
        return []
    dirs = [Path(os.environ["CPNET_CACHE_DIR"])] if os.environ.get("CPNET_CACHE_DIR") else []
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        home = Path(xdg) / "cpnet" if xdg else Path.home() / ".cache" / "cpnet"
    except RuntimeError:  # no home folder to be found
        return dirs
    return dirs + [home] if home.is_absolute() else dirs


def _compiler() -> list[str]:
    """``$CC`` split like a shell command line ("ccache gcc" is a launcher and its compiler); ``cc`` by default."""
    try:
        return shlex.split(os.environ.get("CC", "")) or ["cc"]
    except ValueError as err:
        raise RuntimeError(f"CC={os.environ.get('CC')!r} is not a command line: {err}") from None


def _library_name(words: list[str], flags: tuple[str, ...], src: Path) -> tuple[str, str]:
    """(family, file name). The family ``knn_select-<compiler>-<8 hex>-`` stands for the compiler (its words and
    the programs they resolve to on PATH); the 16 hex after it hash the sources, compiler, flags and platform."""
    programs = [shutil.which(word) or word for word in words]
    compiler = hashlib.sha256("\0".join([*words, *programs]).encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9.+_-]+", "_", "-".join(os.path.basename(word) for word in words))[:32]
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((src / name).read_bytes())
    digest.update("\0".join((*words, *programs, *flags, platform.machine(), platform.system())).encode())
    family = f"knn_select-{slug}-{compiler}-"
    return family, f"{family}{digest.hexdigest()[:16]}.so"


def _record_path(library: Path) -> Path:
    """Where the SHA-256 of ``library`` is recorded (one line in ``sha256sum`` format)."""
    return library.with_name(library.name + ".sha256")


def _load_verified(path: Path, recorded: str | None) -> tuple[ctypes.CDLL, str]:
    """(the library, its SHA-256) of ``path``, opened once: the hash is taken of the open file and that same file
    is loaded, through ``/proc/self/fd/N`` where the system has it, else from a copy of the hashed bytes in a
    private folder made beside it. ``recorded``: the SHA-256 the file must have (_Refused, before any dlopen, when
    it differs); None to take it as it is (a library this process just built).

    A descriptor that was loaded through stays open for the life of the process: the dynamic loader knows the
    library by the name ``/proc/self/fd/N`` and would hand it out again for another file opened later as fd N."""
    fd = _open_private(path, "library")
    try:
        data = _read_fd(fd)
        digest = hashlib.sha256(data).hexdigest()
        if recorded is not None and digest != recorded:
            raise _Refused(f"library {path} does not have the SHA-256 recorded in {_record_path(path).name}")
        if not os.path.isdir("/proc/self/fd"):
            os.close(fd)
            return _load_copy(data, path), digest
        lib = ctypes.CDLL(f"/proc/self/fd/{fd}")
    except BaseException:
        if fd not in _held_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        raise
    _held_fds.append(fd)
    return lib, digest


def _load_copy(data: bytes, path: Path) -> ctypes.CDLL:
    """Load ``data`` from a copy in a folder made for it (mkdtemp, mode 0700) beside ``path``, whose folder has
    passed _prepare_folder; the copy is deleted once loaded."""
    folder = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX + "load-", dir=path.parent))
    try:
        copy = folder / path.name
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o700)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        return ctypes.CDLL(str(copy))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _load_cached(target: Path) -> ctypes.CDLL | None:
    """The cached library ``target``, None when there is none; _Refused, before any dlopen, when it or its hash
    record is not private or its content does not have the recorded SHA-256. The content hashed is the content
    loaded (_load_verified): a file swapped in after the hash is never what runs."""
    if not os.path.lexists(target):
        return None
    record = _record_path(target)
    if not os.path.lexists(record):
        raise _Refused(f"library {target} has no recorded SHA-256 ({record.name} is missing)")
    recorded = _read_private(record, "hash record").decode("ascii", "replace").split()[:1]
    return _load_verified(target, recorded[0] if recorded else "")[0]


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary in its folder and a rename: readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporaries of builds killed midway: ours, and older than _STALE_TEMP_SECONDS (a younger one may
    be a concurrent build's)."""
    for old in folder.glob(_TEMP_PREFIX + "*"):
        try:
            st = os.lstat(old)
            if st.st_uid == os.getuid() and time.time() - st.st_mtime > _STALE_TEMP_SECONDS:
                old.unlink()
        except OSError:
            pass


def _remove_other_versions(folder: Path, family: str, keep: Path) -> None:
    """Delete the compiler's libraries built from other sources or flags, with their hash records, and libraries
    named before compilers had their own names; other compilers' libraries stay. A process that has one loaded
    keeps it."""
    for old in folder.glob("knn_select-*"):
        if (old.name.startswith(family) and old.name not in (keep.name, _record_path(keep).name)) or \
                _UNNAMED.fullmatch(old.name):
            try:
                old.unlink()
            except OSError:
                pass


def _compile(cmd: list[str], target: Path) -> ctypes.CDLL:
    """Compile into a temporary in ``target``'s folder, load that very file, record its SHA-256 and rename it to
    ``target``: the process uses the library it built, whatever a concurrent build (another DDP rank) renames over
    ``target``. A failed or interrupted build removes its temporary."""
    _remove_stale_temporaries(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o700)  # the linker creates its output with the umask's mode, which may let the group write
        lib, digest = _load_verified(Path(tmp), None)
        _write_atomic(_record_path(target), f"{digest}  {target.name}\n")
        os.replace(tmp, target)
        return lib
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _build_in(folder: Path, words: list[str], refused: list[str], errors: list[str]) -> ctypes.CDLL | None:
    """The library from ``folder``: the cached one when it checks out, else compiled there, with OpenMP first
    (threads shared with torch's runtime), else plain pthreads. None when the folder or every build fails; the
    reasons are appended to ``refused`` (security refusals) and ``errors`` (the rest)."""
    src = Path(__file__).parent / "csrc"
    try:
        _prepare_folder(folder)
    except _Refused as why:
        refused.append(str(why))
        return None
    except OSError as err:
        errors.append(f"{folder}: {err}")
        return None
    for extra in _THREADING_FLAGS:
        flags = (*_FLAGS, *extra)
        family, name = _library_name(words, flags, src)
        target = folder / name
        try:
            try:
                lib = _load_cached(target)
            except _Refused as why:
                refused.append(f"{why}; not loaded")
                lib = None
            if lib is None:
                lib = _compile([*words, *flags, str(src / _SOURCES[0]), "-lm"], target)
                _remove_other_versions(folder, family, keep=target)
            return _declare(lib, target, "openmp" if extra else "pthreads")
        except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as err:
            errors.append(f"{folder}: {err}")
    return None


def _build() -> tuple[ctypes.CDLL, list[str]]:
    """The library, from the first cache folder that works, else built in a folder private to this process (made
    by mkdtemp, mode 0700, deleted once the library is loaded); with the refusals met on the way."""
    words = _compiler()
    refused: list[str] = []
    errors: list[str] = []
    for folder in _cache_dirs():
        lib = _build_in(folder, words, refused, errors)
        if lib is not None:
            return lib, refused
    private = Path(tempfile.mkdtemp(prefix="cpnet-knn-"))
    try:
        lib = _build_in(private, words, refused, errors)
    finally:
        shutil.rmtree(private, ignore_errors=True)  # a loaded library stays mapped
    if lib is None:
        raise RuntimeError("could not build the native kNN selection: " + "; ".join(refused + errors))
    return lib, refused


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
    lib.cpnet_path = str(path)  # type: ignore[attr-defined]
    return lib


def load() -> ctypes.CDLL | None:
    """The native library, built and loaded once per process; None (and one warning) when it cannot be built.
    Files and folders refused on the way (not private, or not matching their recorded hash) are named in one
    warning too, also when a library was then built elsewhere."""
    with _lock:
        if "lib" not in _state and "error" not in _state:
            refused: list[str] = []
            try:
                _state["lib"], refused = _build()
            except (OSError, RuntimeError, AttributeError) as err:
                _state["error"] = str(err)
                if backend_from_env() == "auto":
                    warnings.warn(f"cpnet: {err}; the CPU kNN uses its slower pure-torch path "
                                  "(set CPNET_KNN_BACKEND=torch to skip the build)", RuntimeWarning, stacklevel=3)
            if refused:
                warnings.warn(f"cpnet: {'; '.join(refused)}; the native kNN selection was loaded from "
                              f"{_state['lib'].cpnet_path} instead", RuntimeWarning, stacklevel=3)  # type: ignore
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
    if k < 1:
        raise ValueError(f"native kNN update: k (the last dimension of val and idx) must be at least 1, got {k}")
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
        raise RuntimeError(f"native kNN update failed with status {status} ({_STATUS.get(status, 'unknown')})")
