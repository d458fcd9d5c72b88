"""The property tests cannot turn the suite red by chance: under plain ``pytest`` they run Hypothesis's ``ci``
profile (the same examples every run); ``CPNET_FUZZ=long`` draws fresh ones, many more (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]


def _profile(**env: str) -> str:
    """``derandomize max_examples database`` of the default settings once tests/conftest.py is imported."""
    code = ("import tests.conftest\nfrom hypothesis import settings\nd = settings.default\n"
            "print(d.derandomize, d.max_examples, d.database)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CPNET_FUZZ")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 or env, done.stderr
    return done.stdout.strip() if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


@pytest.mark.skipif(os.environ.get("CPNET_FUZZ", "ci") not in ("", "ci"), reason="a long fuzzing run")
def test_plain_pytest_draws_the_same_examples_every_run() -> None:
    assert settings.default.derandomize and settings.default.database is None
    def draw() -> list[int]:
        run: list[int] = []

        @given(st.integers())
        def prop(value: int) -> None:
            run.append(value)

        prop()
        return run

    assert draw() == draw()


def test_the_profiles_by_environment() -> None:
    assert _profile() == "True 120 None"
    assert _profile(CPNET_FUZZ="long", CPNET_FUZZ_EXAMPLES="5000").startswith("False 5000 ")
    assert "CPNET_FUZZ='often' is not a Hypothesis profile of this suite: ci, long" in _profile(CPNET_FUZZ="often")
