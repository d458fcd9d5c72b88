"""Files and folders that no other user can change: the checks behind the native kNN library's cache
(:mod:`cpnet.ops.native`).

A path is trusted when every component as written, symbolic links followed one by one, is a folder of this user or
root that no one else can write, or a sticky folder (like /tmp) whose entry on the path belongs to this user or root
(in a sticky folder only an entry's owner can rename, remove or replace it). A file is private when it is a regular
file of this user that no one else can write; it is checked again on the open descriptor, so what is then read
through that descriptor is the file checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["Refused", "check_path", "check_private", "open_private", "prepare_folder", "read_fd", "read_private"]


class Refused(RuntimeError):
    """A folder or file that someone else could have written, or a library without its recorded hash."""


def check_private(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse ``path`` (its stat ``st``) unless it is no symbolic link, is owned by this user and is writable by
    no one else."""
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"{what} {path} is a symbolic link")
    if st.st_uid != os.getuid():
        raise Refused(f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})")
    if st.st_mode & 0o022:
        raise Refused(f"{what} {path} is writable by its group or others (mode {stat.S_IMODE(st.st_mode):o})")


def check_path(path: Path) -> None:
    """Refuse ``path`` unless no one but this user or root can change what it names: walk its components as
    written, symbolic links followed one by one (their targets walked the same way), and require of each folder
    on the way that it belongs to this user or root and is writable by no one else, or is sticky (like /tmp) and
    then each entry taken from it belongs to this user or root too (in a sticky folder only an entry's owner can
    rename, remove or replace it). A link that another user owns in /tmp is refused before it is followed, so it
    cannot be flipped between these checks and a later open."""
    uid = os.getuid()
    current = Path("/")
    pending = list(Path(os.path.abspath(path)).parts[1:])
    st, links = os.lstat(current), 0
    while True:
        if st.st_uid not in (uid, 0):
            raise Refused(f"{path} is inside {current}, owned by uid {st.st_uid}")
        shared = bool(st.st_mode & 0o022)
        if shared and not st.st_mode & stat.S_ISVTX:
            raise Refused(f"{path} is inside {current}, writable by its group or others "
                           f"(mode {stat.S_IMODE(st.st_mode):o}, not sticky)")
        while pending and pending[0] in ("", "."):
            pending.pop(0)
        if not pending:
            return
        name = pending.pop(0)
        if name == "..":  # ``current`` has no links left in it: its parent is the real one
            current = current.parent
            st = os.lstat(current)
            continue
        entry = current / name
        st = os.lstat(entry)
        if shared and st.st_uid not in (uid, 0):
            raise Refused(f"{path} goes through {entry}, owned by uid {st.st_uid} in the shared folder {current}")
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise Refused(f"{path} goes through more than 40 symbolic links")
            target = os.readlink(entry)
            pending[:0] = list(Path(target).parts[1:] if os.path.isabs(target) else Path(target).parts)
            current = Path("/") if os.path.isabs(target) else current
            st = os.lstat(current)
            continue
        if not stat.S_ISDIR(st.st_mode):
            if pending:
                raise NotADirectoryError(f"{entry} (on the way to {path}) is not a folder")
            return
        current = entry


def prepare_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents, mode 0700; refuse it unless it is a private folder (see
    check_private) on a path that only this user or root can change (see check_path). No other user, root
    aside, can then add, replace or rename anything in it, or anything on the way to it."""
    missing, path = [], folder
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        raise NotADirectoryError(f"{folder} is not a folder")
    check_private(folder, st, "cache folder")
    try:
        check_path(folder.parent)
    except Refused as why:
        raise Refused(f"cache folder {folder}: {why}") from None


def open_private(path: Path, what: str) -> int:
    """A read-only descriptor of ``path``, refused unless it is a regular file that passes check_private (checked
    on the open file, so what is then read or loaded through the descriptor is the file checked)."""
    check_private(path, os.lstat(path), what)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        check_private(path, st, what)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{what} {path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int) -> bytes:
    """Every byte of the open file ``fd`` from its start."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def read_private(path: Path, what: str) -> bytes:
    """The bytes of ``path``, refused unless it is a regular file that passes check_private (see open_private)."""
    fd = open_private(path, what)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)
