"""Shared by the kNN tests: the native backend's tests run wherever a C compiler is on PATH (as in CI); a
failing build there fails them instead of skipping."""

from __future__ import annotations

import os
import shlex
import shutil

import pytest


def _compiler_found() -> bool:
    """Whether the program that ``$CC`` (split like a shell command line, default ``cc``) starts with is on PATH."""
    try:
        words = shlex.split(os.environ.get("CC", "")) or ["cc"]
    except ValueError:
        return False
    return shutil.which(words[0]) is not None


NEEDS_CC = pytest.mark.skipif(not _compiler_found(), reason="no C compiler for the native kNN selection")
