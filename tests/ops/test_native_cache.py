"""The native kNN library's cache loads nothing that another user could have written.

A library whose constructor writes a marker file is planted where the loader looks; each run loads the native
selection in a fresh subprocess (the constructor would run at dlopen, before any check in Python) and the marker
must stay absent. Planting files owned by another user needs root; those cases skip without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cpnet.ops import native
from tests.helpers import ROOT
from tests.ops.native_helpers import PLANTED_C

OTHER_UID = 12345  # a user that is not us
AS_ROOT = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                             reason="planting another user's files needs root")
pytestmark = [pytest.mark.skipif(shutil.which("cc") is None, reason="no cc for the native kNN selection"),
              pytest.mark.robustness]  # an attack: `pytest -m robustness`

PROBE = """
import json, warnings
from tests.helpers import ROOT
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from cpnet.ops import native
    ok = native.available()
print(json.dumps({"available": ok, "error": native.build_error(), "warnings": [str(w.message) for w in caught]}))
"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: our own HOME, a /tmp stand-in (world-writable and sticky) as TMPDIR, no cpnet or
    compiler settings, and the marker path for the planted library."""
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    shared.chmod(0o1777)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("CPNET_") and key not in ("CC", "HOME", "TMPDIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(shared), PYTHONPATH=str(ROOT),
               CPNET_TEST_MARKER=str(tmp_path / "marker"))
    return {**env, **extra}


def _probe(env: dict[str, str]) -> dict:
    """Load the native selection in a subprocess: {"available", "error", "warnings"}."""
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> dict[str, bytes]:
    """The libraries a default build writes (name: bytes): the names the loader looks for."""
    base = tmp_path_factory.mktemp("genuine")
    assert _probe(_env(base, CPNET_CACHE_DIR=str(base / "cache")))["available"]
    built = {lib.name: lib.read_bytes() for lib in (base / "cache").glob("knn_select-*.so")}
    assert built
    return built


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> bytes:
    """A shared library whose constructor writes $CPNET_TEST_MARKER."""
    base = tmp_path_factory.mktemp("planted")
    (base / "planted.c").write_text(PLANTED_C)
    subprocess.run(["cc", "-shared", "-fPIC", str(base / "planted.c"), "-o", str(base / "planted.so")], check=True)
    return (base / "planted.so").read_bytes()


def _plant(folder: Path, names: list[str], content: bytes, *, recorded: bytes | None = None,
           owner: int | None = None, record: bool = True) -> None:
    """Write ``content`` under each name in ``folder`` with a hash record (of ``recorded``, default the content
    itself: a planter can write a matching one), all owned by ``owner`` when given."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        files = [folder / name]
        files[0].write_bytes(content)
        files[0].chmod(0o755)
        if record:
            files.append(folder / f"{name}.sha256")
            files[1].write_text(f"{_sha256(content if recorded is None else recorded)}  {name}\n")
        for path in files if owner is not None else []:
            os.chown(path, owner, owner)


def _marker_absent(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    assert not marker.exists(), "the planted library was loaded: its constructor ran"


@AS_ROOT
def test_unusable_home_does_not_fall_back_to_the_shared_temp_folder(tmp_path, genuine, planted) -> None:
    # Another user pre-created $TMPDIR/cpnet-<uid>, the folder older versions fell back to.
    planted_dir = tmp_path / "shared" / f"cpnet-{os.getuid()}"
    env = _env(tmp_path, HOME="/dev/null")
    _plant(planted_dir, list(genuine), planted, owner=OTHER_UID)
    os.chown(planted_dir, OTHER_UID, OTHER_UID)
    result = _probe(env)
    _marker_absent(tmp_path)
    assert result["available"], result  # built in a private folder of its own...
    assert os.listdir(tmp_path / "shared") == [planted_dir.name]  # ...which is gone afterwards


@AS_ROOT
def test_missing_compiler_falls_back_to_torch_not_to_a_planted_library(tmp_path, genuine, planted) -> None:
    planted_dir = tmp_path / "shared" / f"cpnet-{os.getuid()}"
    (tmp_path / "empty-bin").mkdir()
    env = _env(tmp_path, PATH=str(tmp_path / "empty-bin"))  # no cc; the home cache is writable
    _plant(planted_dir, list(genuine), planted, owner=OTHER_UID)
    os.chown(planted_dir, OTHER_UID, OTHER_UID)
    result = _probe(env)
    _marker_absent(tmp_path)
    assert not result["available"]
    assert any("pure-torch path" in message for message in result["warnings"]), result


def _cache_owned_by_another_user(tmp_path: Path, genuine: dict, planted: bytes) -> Path:
    folder = tmp_path / "theirs"
    _plant(folder, list(genuine), planted, owner=OTHER_UID)
    os.chown(folder, OTHER_UID, OTHER_UID)
    return folder


def _world_writable_cache(tmp_path: Path, genuine: dict, planted: bytes) -> Path:
    # Our own folder and files, the record matching: only the folder's mode stands between them and dlopen.
    folder = tmp_path / "open"
    _plant(folder, list(genuine), planted)
    folder.chmod(0o777)
    return folder


def _symlinked_cache(tmp_path: Path, genuine: dict, planted: bytes) -> Path:
    _plant(tmp_path / "elsewhere", list(genuine), planted)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    return tmp_path / "link"


@AS_ROOT
@pytest.mark.parametrize("make, reason", [
    (_cache_owned_by_another_user, f"owned by uid {OTHER_UID}"),
    (_world_writable_cache, "writable by its group or others"),
    (_symlinked_cache, "is a symbolic link"),
], ids=["owned-by-another-uid", "world-writable", "symlink"])
def test_a_cache_folder_that_is_not_ours_alone_is_refused(tmp_path, genuine, planted, make, reason) -> None:
    folder = make(tmp_path, genuine, planted)
    result = _probe(_env(tmp_path, CPNET_CACHE_DIR=str(folder)))
    _marker_absent(tmp_path)
    assert result["available"], result  # built in the home cache instead
    assert list((tmp_path / "home" / ".cache" / "cpnet").glob("knn_select-*.so"))
    assert any(str(folder) in message and reason in message for message in result["warnings"]), result


def _symlinked_library(cache: Path, names: list[str], planted: bytes, genuine: dict) -> None:
    _plant(cache.parent / "elsewhere", names, planted)
    _plant(cache, names, planted)  # the record matches the planted content: only the link gives it away
    for name in names:
        (cache / name).unlink()
        (cache / name).symlink_to(cache.parent / "elsewhere" / name)


def _library_owned_by_another_user(cache: Path, names: list[str], planted: bytes, genuine: dict) -> None:
    _plant(cache, names, planted, owner=OTHER_UID)


def _content_differs_from_record(cache: Path, names: list[str], planted: bytes, genuine: dict) -> None:
    for name in names:
        _plant(cache, [name], planted, recorded=genuine[name])


def _no_record(cache: Path, names: list[str], planted: bytes, genuine: dict) -> None:
    _plant(cache, names, planted, record=False)


@AS_ROOT
@pytest.mark.parametrize("make, reason", [
    (_symlinked_library, "is a symbolic link"),
    (_library_owned_by_another_user, f"owned by uid {OTHER_UID}"),
    (_content_differs_from_record, "does not have the SHA-256 recorded"),
    (_no_record, "has no recorded SHA-256"),
], ids=["symlink", "owned-by-another-uid", "hash-differs", "hash-missing"])
def test_a_cached_library_that_fails_its_checks_is_rebuilt_not_loaded(tmp_path, genuine, planted, make,
                                                                       reason) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    make(cache, list(genuine), planted, genuine)
    result = _probe(_env(tmp_path, CPNET_CACHE_DIR=str(cache)))
    _marker_absent(tmp_path)
    assert result["available"], result
    assert any(reason in message and "not loaded" in message for message in result["warnings"]), result
    rebuilt = [cache / name for name in genuine if (cache / name).exists()]
    assert rebuilt
    for lib in rebuilt:  # replaced by a library of our own, recorded with its hash
        st = os.lstat(lib)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
        assert (cache / f"{lib.name}.sha256").read_text().split()[0] == _sha256(lib.read_bytes())


def test_cache_folders_are_made_private_and_each_library_recorded(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "new" / "cpnet"
    monkeypatch.setenv("CPNET_CACHE_DIR", str(cache))
    monkeypatch.setattr(native, "_state", {})
    assert native.available()
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache.parent).st_mode) == 0o700
    (lib,) = cache.glob("knn_select-*.so")
    assert os.stat(lib).st_mode & 0o022 == 0
    assert (cache / f"{lib.name}.sha256").read_text() == f"{_sha256(lib.read_bytes())}  {lib.name}\n"
