"""Shared by the kNN tests: the native backend's tests run wherever a C compiler is on PATH (as in CI); a
failing build there fails them instead of skipping."""

from __future__ import annotations

import os
import shutil

import pytest

NEEDS_CC = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler for the native kNN selection"
)
