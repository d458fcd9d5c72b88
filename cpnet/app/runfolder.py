"""A run folder: every file name in it, every write into it, and the rules for starting, resuming and replacing a
run there.

A run folder holds ``config.yaml`` (the resolved config), ``labels.json`` (class names in label order),
``metrics.jsonl`` (one line per epoch), ``checkpoint_last.pt`` (everything a resume needs), ``checkpoint_best.pt``
(weights of the best validated epoch), ``tensorboard/`` (when TensorBoard is installed), one
``eval_<split>_<protocol>/`` report folder per evaluation (``cpnet eval``'s default; any report folder inside counts
as the run's: ``eval.json``, ``predictions.npz``, ``per_class.csv``, ``confusion.csv``, ``confusion.png``) and
``.lock``, which a training holds. Every file is written through :mod:`cpnet.files` (whole or not at all); the
metrics are appended a line at a time, and a line that a crash or a full disk cut short is dropped on resume.

Starting a run where one exists is refused unless asked for: ``resume`` continues it, ``force`` replaces its run
files (and only those: anything else the folder holds stays). A training holds an exclusive lock on the folder
for its whole duration, so a second training into the same folder is refused with the holder's process id, host
and start time instead of interleaving its metrics and checkpoints with the first.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import shutil
import socket
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cpnet.engine.checkpoint import atomic_save
from cpnet.files import TEMP_MARK, atomic_write_text

if TYPE_CHECKING:  # the loop is not imported to name its type: predict and eval read run folders without it
    from cpnet.engine.loop import EpochEnd

try:  # POSIX advisory locks; without them (Windows) a run folder is not locked
    import fcntl
except ImportError:  # pragma: no cover - not a supported platform for training
    fcntl = None  # type: ignore[assignment]

CONFIG = "config.yaml"
LABELS = "labels.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"
LOCK = ".lock"
EVAL_PREFIX = "eval_"
EVAL_JSON, PREDICTIONS, PER_CLASS, CONFUSION_CSV, CONFUSION_PNG = (
    "eval.json", "predictions.npz", "per_class.csv", "confusion.csv", "confusion.png")
EVAL_FILES = (EVAL_JSON, PREDICTIONS, PER_CLASS, CONFUSION_CSV, CONFUSION_PNG)


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

    def read_metrics(self, upto_epoch: int | None = None) -> tuple[list[dict], str | None]:
        """The metrics records (of epochs up to ``upto_epoch``), and a note when a last line cut short by a crash
        or a full disk was left out. A damaged line before the last is an error naming the file and line."""
        return read_metrics(self.metrics, upto_epoch)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporaries that a process killed mid-write left here (of a checkpoint, the config, the
        labels or the metrics: every ``cpnet.files`` temporary); returns them. A killed process never reaches its
        own clean-up; the temporaries never hold a complete file (the rename is the commit point)."""
        if not self.path.is_dir():
            return []
        stale = [p for p in self.path.glob(f".*{TEMP_MARK}*") if p.is_file()]
        stale += [p for p in self.path.glob(".*.pt.tmp[0-9]*") if p.is_file()]  # named so before cpnet.files
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def recorder(self, keep_epochs: int = 0, progress_seconds: float = 300.0) -> RunRecorder:
        """What a training keeps of each epoch here (``fit``'s ``on_epoch_end``) and of its progress inside an
        epoch (``on_progress``, at most every ``progress_seconds``); metrics of epochs after ``keep_epochs``, left
        by an interrupted run, are dropped first."""
        return RunRecorder(self, keep_epochs, progress_seconds)

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
        try:  # never through a symlink: the lock file is written, and a link could name any file of the user's
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError:
            if os.path.islink(lock):
                raise ValueError(f"{lock} is a symbolic link; expected cpnet's lock file (a run folder's .lock is "
                                 "never a link): remove it") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise ValueError(f"{lock} is not a plain file of its own (a hard link or a special file); expected "
                             "cpnet's lock file: remove it")
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
    return EVAL_JSON in names and names <= set(EVAL_FILES)


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


# --- what a training keeps ------------------------------------------------------------------------------------------

def read_metrics(path: Path, upto_epoch: int | None = None, progress: bool | None = False
                 ) -> tuple[list[dict], str | None]:
    """The epoch records of the metrics file ``path`` (none when it does not exist; with ``progress``, the records
    of progress inside an epoch instead, those with an ``iteration``; with ``progress=None``, both, in file order)
    and a note naming a last line that is incomplete (no newline, or not JSON), which is left out."""
    if not path.is_file():
        return [], None
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # a file written whole ends in a newline: ``tail`` is then ""
    records, note = [], None
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(complete) and not tail:
                note = f"dropped the last line of {path}, cut short by an interrupted write ({line[:40]!r}…)"
                break
            raise ValueError(f"{path}, line {number}: not a JSON record ({line[:60]!r}); expected one JSON object "
                             "per line as cpnet writes them") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise ValueError(f"{path}, line {number}: expected a JSON object with an integer 'epoch'")
        if progress is None or ("iteration" in record) == progress:
            records.append(record)
    if tail.strip():
        note = f"dropped the last line of {path}, cut short by an interrupted write ({tail[:40]!r}…)"
    if upto_epoch is not None:
        records = [r for r in records if r["epoch"] <= upto_epoch]
    return records, note


class RunRecorder:
    """Keeps each epoch of a training in its run folder, in an order that a crash at any point leaves consistent:
    the best checkpoint (when the epoch is the best), then the last checkpoint, then the metrics line. So the
    metrics never name a best epoch newer than ``checkpoint_best.pt``, and a resume (from ``checkpoint_last.pt``)
    restores a metrics line the crash kept from being written, from the checkpoint itself. Scalars go to
    TensorBoard too when it is installed."""

    def __init__(self, run: RunFolder, keep_epochs: int = 0, progress_seconds: float = 300.0) -> None:
        self.run, self.progress_seconds, self.last_progress = run, progress_seconds, time.monotonic()
        run.path.mkdir(parents=True, exist_ok=True)
        kept, _ = read_metrics(run.metrics, upto_epoch=keep_epochs, progress=None)  # a torn last line dropped
        atomic_write_text(run.metrics, "".join(json.dumps(r) + "\n" for r in kept))
        self.tb = _tensorboard(run.path / TENSORBOARD)

    def progress(self, record: dict) -> None:
        """Keep a progress record (``fit``'s ``on_progress``) when ``progress_seconds`` have passed since the last
        one kept; every one goes to TensorBoard, at the global iteration."""
        now = time.monotonic()
        if self.progress_seconds > 0 and now - self.last_progress >= self.progress_seconds:
            self.last_progress = now
            self._append(record)
        if self.tb is not None:
            step = (record["epoch"] - 1) * record["iterations"] + record["iteration"]
            for key in ("train_loss", "lr", "data_seconds", "step_seconds", "peak_memory_mb"):
                self.tb.add_scalar(f"progress/{key}", record[key], step)

    def restore(self, record: dict) -> None:
        """Write ``record`` (the last checkpoint's own) when the metrics lack its epoch."""
        kept, _ = self.run.read_metrics()
        if record and not any(r["epoch"] == record.get("epoch") for r in kept):
            self.write(record)

    def epoch_end(self, end: EpochEnd) -> None:
        if end.is_best:
            atomic_save(end.weights(), self.run.best)
        atomic_save(end.resume_state(), self.run.last)
        self.write(end.record)

    def write(self, record: dict) -> None:
        """Append ``record`` as one line (non-finite numbers as null) and mirror its scalars to TensorBoard."""
        self._append(record)
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tb.add_scalar(key, value, record["epoch"])
            self.tb.flush()

    def _append(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.run.metrics, "a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(log_dir))
