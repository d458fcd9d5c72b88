"""Writing files so that a crash, a full disk or Ctrl-C never leaves part of one: the one way cpnet writes the
files a user keeps (checkpoints, configs, metrics, exports, weights).

:func:`atomic_output` hands the writer a new temporary file beside the target; when the writer is done its bytes
are flushed to disk and it is renamed over the target (the commit point; the same folder keeps the rename on one
file system, hence atomic), then the folder itself is flushed so the rename survives a power cut. On any error the
temporary is removed and the target keeps what it held. Temporaries are named ``.<name>.tmp-<random>`` and created
with ``O_EXCL`` (never through a file or link someone put there) and the mode a plain ``open()`` would give.

This module sits at the bottom of the package: it imports nothing of cpnet and no torch.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TEMP_MARK", "atomic_output", "atomic_write_text", "fsync_folder"]

TEMP_MARK = ".tmp-"  # in the name of every temporary: ``.<name>.tmp-<16 hex>``


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A new, empty temporary file beside ``path`` for a writer to fill; renamed over ``path`` on a clean exit,
    removed on any error (an interrupt included). The folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(8)}")
    # 0o666 less the umask, as for open(): an export or a config gets the permissions a plain write would give.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)  # the bytes reach the disk before the rename makes them the file
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_output`: readers see the old file or the whole new one."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def fsync_folder(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
