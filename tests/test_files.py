"""cpnet.files: the one atomic writer. A finished write replaces the file whole with a plain write's permissions;
a failed or interrupted one leaves the old file and no temporary."""

from __future__ import annotations

import os
import stat

import pytest

from cpnet.files import TEMP_MARK, atomic_output, atomic_write_text


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_finished_write_replaces_the_file_with_a_plain_writes_mode(tmp_path):
    path = tmp_path / "deep" / "config.yaml"
    umask = os.umask(0o022)
    try:
        atomic_write_text(path, "old\n")
        atomic_write_text(path, "new\n")
    finally:
        os.umask(umask)
    assert path.read_text() == "new\n" and os.listdir(path.parent) == ["config.yaml"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not tempfile.mkstemp's private 0o600


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous export")
    with pytest.raises(type(error)):
        with atomic_output(path) as tmp:
            assert tmp.parent == tmp_path and TEMP_MARK in tmp.name and tmp.name.startswith(".")
            tmp.write_bytes(b"half an exp")
            raise error
    assert path.read_bytes() == b"the previous export" and os.listdir(tmp_path) == ["model.onnx"]
