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

# A library an attacker plants where the loader looks: its constructor runs at dlopen, before any check in Python,
# and writes the file $CPNET_TEST_MARKER names, so a test sees whether it was ever loaded.
PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("CPNET_TEST_MARKER");
    FILE *f = marker ? fopen(marker, "w") : NULL;
    if (f) { fputs("the planted library ran\n", f); fclose(f); }
}
int cpnet_knn_abi_version(void) { return -1; }
"""
