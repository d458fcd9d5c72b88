"""The native library's cache path and load hold against another user racing them (issue 24, attack 1).

The attack: ``XDG_CACHE_HOME=/tmp/x`` where ``/tmp/x`` is another user's symbolic link to the victim's home; once
cpnet's checks pass, the other user flips the link and ``dlopen``, reopening the file by path, loads their library.
Being another user needs root, so the link's owner is changed for real when the suite runs as root and through
``os.lstat`` otherwise; the flip between the hash and the load is done by a hook on the hash.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import types
import warnings
from pathlib import Path

import pytest

from cpnet.ops import native
from cpnet.ops.private_files import Refused, prepare_folder
from tests.ops.native_helpers import NEEDS_CC, PLANTED_C

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

OTHER_UID = 12345  # a user that is not us


def _owned_by_another_user(link: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``link`` (itself, not its target) belong to OTHER_UID: for real as root, else as ``os.lstat`` sees it."""
    if os.geteuid() == 0:
        os.lchown(link, OTHER_UID, OTHER_UID)
        return
    real_lstat = os.lstat

    def lstat(path, *args, **kwargs):  # noqa: ANN001, ANN202 - os.lstat's own signature
        st = real_lstat(path, *args, **kwargs)
        if os.fspath(path) != str(link):
            return st
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, OTHER_UID, OTHER_UID, st.st_size,
                               int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))

    monkeypatch.setattr(os, "lstat", lstat)


def _sticky_link(tmp_path: Path) -> tuple[Path, Path]:
    """(``<tmp>/shared/x``, ``<tmp>/home``): a link in a sticky world-writable folder (a /tmp stand-in) to a
    private folder of ours."""
    shared, home = tmp_path / "shared", tmp_path / "home"
    shared.mkdir()
    shared.chmod(0o1777)
    home.mkdir(mode=0o700)
    (shared / "x").symlink_to(home, target_is_directory=True)
    return shared / "x", home


@pytest.fixture
def shared_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``<tmp>/shared/x``: a link in a sticky world-writable folder (a /tmp stand-in), owned by another user and
    pointing at a folder of ours."""
    link, _ = _sticky_link(tmp_path)
    _owned_by_another_user(link, monkeypatch)
    return link


def test_a_cache_path_through_another_users_link_in_a_sticky_folder_is_refused(shared_link: Path) -> None:
    with pytest.raises(Refused, match=rf"{shared_link}, owned by uid {OTHER_UID} in the shared folder"):
        prepare_folder(shared_link / "cpnet")


def test_our_own_link_in_a_sticky_folder_is_followed(tmp_path: Path) -> None:
    link, home = _sticky_link(tmp_path)
    prepare_folder(link / "cpnet")
    assert (home / "cpnet").is_dir()


def test_a_link_target_outside_our_folders_is_checked_too(tmp_path: Path) -> None:
    # Our own link, but to a folder that another user can write: the target's path is walked like any other.
    open_dir, home = tmp_path / "open", tmp_path / "home"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    home.mkdir(mode=0o700)
    (home / "cache").symlink_to(open_dir, target_is_directory=True)
    with pytest.raises(Refused, match=r"writable by its group or others \(mode 777, not sticky\)"):
        prepare_folder(home / "cache" / "cpnet")


@NEEDS_CC
def test_the_xdg_cache_through_another_users_link_is_not_used(shared_link: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CPNET_CACHE_DIR", "CPNET_KNN_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_link))
    monkeypatch.setattr(native, "_state", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.available()
    assert not list((tmp_path / "home").glob("cpnet/knn_select-*.so")), "built through the other user's link"
    assert any(f"owned by uid {OTHER_UID}" in str(w.message) for w in caught), [str(w.message) for w in caught]


@NEEDS_CC
def test_the_library_loaded_is_the_file_hashed_even_when_swapped_in_between(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CPNET_CACHE_DIR", str(cache))
    monkeypatch.setenv("CPNET_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.delenv("CPNET_KNN_BACKEND", raising=False)
    monkeypatch.setattr(native, "_state", {})
    assert native.available()  # the genuine library, built and recorded in the cache
    target = Path(native.load().cpnet_path)
    genuine = target.read_bytes()
    (tmp_path / "planted.c").write_text(PLANTED_C)
    planted = tmp_path / "planted.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(tmp_path / "planted.c"), "-o", str(planted)], check=True)
    planted.chmod(0o700)

    real_sha256 = hashlib.sha256
    swapped = []

    def sha256(data: bytes = b"") -> object:
        """Hash as usual; the moment the genuine library's bytes are hashed, swap the planted one in at its path."""
        digest = real_sha256(data)
        if data == genuine and not swapped:
            os.replace(planted, target)
            swapped.append(target)
        return digest

    monkeypatch.setattr(native, "hashlib", types.SimpleNamespace(sha256=sha256))
    monkeypatch.setattr(native, "_state", {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lib = native.load()
    assert swapped, "the hook never ran: the cached library was not hashed"
    assert not (tmp_path / "marker").exists(), "the library swapped in after the hash was loaded"
    assert lib is not None and lib.cpnet_knn_abi_version() == native.ABI_VERSION
