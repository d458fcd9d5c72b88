"""Suite-wide settings: one intra-op thread, and the property tests' Hypothesis profile.

The suite's tensors are tiny; on a 2-core machine OpenMP hand-offs then dominate, and two threads measured up to
50× slower than one on small convs. Tests that need more threads set them themselves.

Property tests (``@given``) run under the profile ``$CPNET_FUZZ`` names: ``ci`` (the default, what ``pytest -q``
and CI run) draws the same examples on every run (``derandomize``: the seed comes from the test itself, no example
database), so the suite cannot turn red by chance; ``long`` draws fresh random examples, many more of them
(``$CPNET_FUZZ_EXAMPLES``, default 2,000 per test), and prints how to reproduce a failure. The tests set no example
count of their own, so the profile decides it.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

FUZZ_PROFILES = ("ci", "long")
settings.register_profile("ci", max_examples=120, derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("CPNET_FUZZ_EXAMPLES", "2000")),
                          derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
_profile = os.environ.get("CPNET_FUZZ", "").strip() or "ci"
if _profile not in FUZZ_PROFILES:
    raise pytest.UsageError(f"CPNET_FUZZ={_profile!r} is not a Hypothesis profile of this suite: "
                            f"{', '.join(FUZZ_PROFILES)}")
settings.load_profile(_profile)

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)
