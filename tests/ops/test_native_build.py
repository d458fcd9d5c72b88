"""Building the native kNN library: compilers that keep their own libraries, a launcher in $CC, and builds that
fail or were killed midway leave nothing behind."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from cpnet.ops import native

pytestmark = [pytest.mark.skipif(shutil.which("cc") is None, reason="no cc for the native kNN selection"),
              pytest.mark.robustness]  # an attack or a failure injected: `pytest -m robustness`


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder as $CPNET_CACHE_DIR (and an unusable home cache behind it), a fresh process state."""
    monkeypatch.setenv("CPNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", "/dev/null")
    monkeypatch.setenv("CPNET_KNN_BACKEND", "auto")
    monkeypatch.setattr(native, "_state", {})
    return tmp_path / "cache"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc beside cc")
def test_two_compilers_keep_their_own_libraries(cache, monkeypatch: pytest.MonkeyPatch) -> None:
    for compiler in ("cc", "gcc"):
        monkeypatch.setenv("CC", compiler)
        monkeypatch.setattr(native, "_state", {})
        assert native.available()
    libraries = sorted(lib.name for lib in cache.glob("knn_select-*.so"))
    assert len(libraries) == 2, libraries
    # Back to cc: its library is still there, so nothing is compiled.
    monkeypatch.setenv("CC", "cc")
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native.subprocess, "run", lambda *a, **kw: pytest.fail("compiled again"))
    assert native.available()
    assert sorted(lib.name for lib in cache.glob("knn_select-*.so")) == libraries
    assert [name.split("-")[1] for name in libraries] == ["cc", "gcc"]  # named by their compilers


def test_cc_is_split_like_a_shell_command_line(cache, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A launcher (as in CC="ccache gcc") whose path has a space in it, quoted.
    log = tmp_path / "launched"
    launcher = _script(tmp_path / "my launcher", f'echo "$1" >> {shlex.quote(str(log))}\nexec "$@"\n')
    monkeypatch.setenv("CC", f"{shlex.quote(str(launcher))} cc")
    assert native.available(), native.build_error()
    assert log.read_text().split() == ["cc"]
    (lib,) = cache.glob("knn_select-*.so")
    assert lib.name.startswith("knn_select-my_launcher-cc-")


def test_stale_temporaries_are_removed_and_fresh_ones_kept(cache) -> None:
    cache.mkdir(mode=0o700)
    hour_ago = time.time() - 3600
    killed = [cache / ".knn_select-killed1.so", cache / ".knn_select-killed2.tmp"]  # older and current names
    for path in killed:
        path.write_bytes(b"half a library")
        os.utime(path, (hour_ago, hour_ago))
    running = cache / ".knn_select-running.tmp"  # a concurrent build's, seconds old
    running.write_bytes(b"being written")
    assert native.available()
    assert not any(path.exists() for path in killed)
    assert running.exists()


@pytest.mark.parametrize("compiler", [
    'for a; do [ "$prev" = -o ] && printf half > "$a"; prev=$a; done; echo "out of memory" >&2; exit 1\n',
    'for a; do [ "$prev" = -o ] && printf "not a library" > "$a"; prev=$a; done; exit 0\n',
], ids=["compiler-fails", "output-is-not-a-library"])
def test_failed_builds_leave_nothing_behind(compiler: str, cache, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    private_parent = tmp_path / "tmp"
    private_parent.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private_parent))  # where the private fallback folder goes
    monkeypatch.setenv("CC", str(_script(tmp_path / "broken-cc", compiler)))
    with pytest.warns(RuntimeWarning, match="pure-torch path"):
        assert not native.available()
    assert sorted(os.listdir(cache)) == []
    assert os.listdir(private_parent) == []
    # The next start tries again rather than loading what the failed build left.
    monkeypatch.setenv("CC", "cc")
    monkeypatch.setattr(native, "_state", {})
    assert native.available()
