"""A run folder: every file name in it, and the rules for starting, resuming and replacing a run there.

A run folder holds ``config.yaml`` (the resolved config), ``labels.json`` (class names in label order),
``metrics.jsonl`` (one line per epoch), ``checkpoint_last.pt`` (everything a resume needs), ``checkpoint_best.pt``
(weights of the best validated epoch), ``tensorboard/`` (when TensorBoard is installed), one
``eval_<split>_<protocol>/`` report folder per evaluation (``cpnet eval``'s default; any report folder inside counts
as the run's) and ``.lock``, which a training holds.

Starting a run where one exists is refused unless asked for: ``resume`` continues it, ``force`` replaces its run
files (and only those: anything else the folder holds stays). A training holds an exclusive lock on the folder
for its whole duration, so a second training into the same folder is refused with the holder's process id, host
and start time instead of interleaving its metrics and checkpoints with the first.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from cpnet.engine.checkpoint import BEST, LAST
from cpnet.engine.runlog import METRICS, TENSORBOARD
from cpnet.files import atomic_write_text

try:  # POSIX advisory locks; without them (Windows) a run folder is not locked
    import fcntl
except ImportError:  # pragma: no cover - not a supported platform for training
    fcntl = None  # type: ignore[assignment]

CONFIG = "config.yaml"
LABELS = "labels.json"
LOCK = ".lock"
EVAL_PREFIX = "eval_"
EVAL_FILES = ("eval.json", "predictions.npz", "per_class.csv", "confusion.csv", "confusion.png")


class RunFolderBusyError(ValueError):
    """Another process is training into this run folder (the folder cannot be used now: a usage error)."""


class RunFolder:
    """The files of one run folder (it need not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def labels(self) -> Path:
        return self.path / LABELS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    def eval_dir(self, split: str, protocol: str) -> Path:
        """Where ``cpnet eval`` writes the report of ``split`` under ``protocol`` by default."""
        return self.path / f"{EVAL_PREFIX}{split}_{protocol}"

    def run_files(self) -> list[Path]:
        """The run files present (what a new run would overwrite)."""
        if not self.path.is_dir():
            return []
        named = [self.config, self.labels, self.metrics, self.last, self.best, self.path / TENSORBOARD]
        evals = sorted(p for p in self.path.iterdir() if p.is_dir() and is_eval_dir(p))
        return [p for p in named if p.exists()] + evals

    def checkpoint(self) -> Path:
        """The best checkpoint, else the last one."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"run folder not found: {self.path}")
        for path in (self.best, self.last):
            if path.is_file():
                return path
        raise FileNotFoundError(f"no {BEST} or {LAST} in {self.path}: is it a cpnet run folder?")

    def prepare(self, *, resume: bool = False, force: bool = False) -> list[Path]:
        """Check that a training may start here: ``resume`` needs a last checkpoint; a fresh start needs a folder
        without run files, unless ``force``, which deletes them (and returns them)."""
        if resume:
            if not self.last.is_file():
                raise FileNotFoundError(f"--resume: no {LAST} in {self.path}")
            return []
        present = self.run_files()
        if present and not force:
            names = ", ".join(p.name for p in present)
            raise ValueError(f"{self.path} already holds a run ({names}); pass --resume to continue it, --force to "
                             "replace it, or choose another --out")
        for path in present:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return present

    def write_labels(self, class_names: Sequence[str]) -> Path:
        """``labels.json``, written atomically."""
        return atomic_write_text(self.labels, json.dumps(list(class_names), indent=1) + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's exclusive lock (``.lock``, holding this process's id, host and start time) for the
        duration, and remove it after; refuse with the holder's details when another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            yield
            return
        lock = self.path / LOCK
        fd = _acquire(lock)
        try:
            started = datetime.datetime.now().isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
            yield
        finally:
            lock.unlink(missing_ok=True)  # before the release: whoever opens the name next makes a new lock
            os.close(fd)


def _acquire(lock: Path) -> int:
    """An open descriptor of ``lock`` holding its exclusive flock; the lock file is the one at that name (a holder
    that removed it as it finished leaves a stale inode behind, which is retried)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "a process that just started"
            os.close(fd)
            raise RunFolderBusyError(f"{lock.parent} is in use by another training ({holder}); wait for it to "
                                     "finish or choose another --out") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # removed (or replaced) between our open and our lock: try the current file


def is_eval_dir(path: Path) -> bool:
    """Whether ``path`` holds a cpnet evaluation report (``eval.json``) and nothing else but report files."""
    names = {p.name for p in path.iterdir()}
    return "eval.json" in names and names <= set(EVAL_FILES)


def prepare_eval_dir(path: str | Path) -> Path:
    """A report folder an evaluation may write: absent, empty, or an earlier cpnet report (whose files are removed
    first, so none of them survives as a stale part of the new report). Anything else is refused."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"report folder {path} is a file; choose another --out")
        if any(path.iterdir()) and not is_eval_dir(path):
            raise ValueError(f"report folder {path} holds files that are not a cpnet evaluation report; choose "
                             "another --out")
        for name in EVAL_FILES:
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path
