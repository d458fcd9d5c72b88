"""Suite-wide settings (one intra-op thread, the property tests' Hypothesis profile) and the fixtures several
folders share: tiny datasets in the official layouts (helpers in ``tests.data.media``), the tiny synthetic set and
one trained run.

The suite's tensors are tiny; on a 2-core machine OpenMP hand-offs then dominate, and two threads measured up to
50× slower than one on small convs. Tests that need more threads set them themselves.

A test marked ``@pytest.mark.cuda`` runs where ``torch.cuda.is_available()`` and is skipped elsewhere, so the same
suite runs on CPU (CI) and on a GPU; ``pytest -m cuda`` selects those tests alone. scripts/gpu-check.sh sets
CPNET_REQUIRE_CUDA=1, under which they refuse to start rather than skip where torch sees no GPU. Nothing imported
here needs PyAV (the media helpers import it on first use), so that selection runs where PyAV is not installed.

Property tests (``@given``) run under the profile ``$CPNET_FUZZ`` names: ``ci`` (the default, what ``pytest -q``
and CI run) draws the same examples on every run (``derandomize``: the seed comes from the test itself, no example
database), so the suite cannot turn red by chance; ``long`` draws fresh random examples, many more of them
(``$CPNET_FUZZ_EXAMPLES``, default 2,000 per test), and prints how to reproduce a failure. The tests set no example
count of their own, so the profile decides it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from tests.data.media import write_jester_tree, write_kinetics_tree, write_ssv2_tree
from tests.helpers import SYNTHETIC, tiny_config, write_config

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    cuda_tests = [item for item in items if item.get_closest_marker("cuda") is not None]
    if cuda_tests and os.environ.get("CPNET_REQUIRE_CUDA") == "1":  # set by scripts/gpu-check.sh
        raise pytest.UsageError(f"CPNET_REQUIRE_CUDA=1 but torch.cuda.is_available() is False: the {len(cuda_tests)} "
                                "cuda tests would only be skipped")
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in cuda_tests:
        item.add_marker(skip)


@pytest.fixture
def jester_root(tmp_path):
    """Jester: 4 train, 2 validation, 2 test videos of 6 frames (24x40), frames in ``20bn-jester-v1/``."""
    return write_jester_tree(
        tmp_path / "jester",
        {
            "train": [("101", "Swiping Left"), ("102", "Swiping Right"), ("103", "Thumb Up"), ("104", "Swiping Left")],
            "validation": [("201", "Turning Hand Clockwise"), ("202", "Thumb Up")],
            "test": [("301", None), ("302", None)],
        },
    )


@pytest.fixture
def ssv2_root(tmp_path):
    """SSv2: 3 train, 1 validation, 1 test webm videos of 8 frames (32x48)."""
    return write_ssv2_tree(
        tmp_path / "ssv2",
        {
            "train": [
                ("11", "Pushing [something] from left to right"),
                ("12", "Holding [something] next to [something]"),
                ("13", "Pushing [something] from right to left"),
            ],
            "validation": [("21", "Holding [something] next to [something]")],
            "test": [("31", None)],
        },
    )


@pytest.fixture
def kinetics_root(tmp_path):
    """Kinetics: train CSV of 3 clips (1 missing on disk) under ``train/<label>/``, val CSV of 2 flat-in-split."""
    root = tmp_path / "kinetics"
    rows = [("abseiling", "aaa", 5, 15), ("air drumming", "bbb", 0, 10), ("zumba", "ccc", 30, 40)]
    write_kinetics_tree(root, "train", rows, write_media=[True, False, True])
    write_kinetics_tree(root, "val", [("zumba", "ddd", 1, 11), ("abseiling", "eee", 2, 12)], layout="split")
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The synthetic motion set in the Jester layout: 24 train + 9 validation clips of 4 frames of 16x16."""
    from cpnet.data.synthetic import write_jester

    return write_jester(tmp_path_factory.mktemp("synthetic"), **SYNTHETIC)


@pytest.fixture
def synthetic_copy(synthetic_root, tmp_path) -> Path:
    """A private copy of the synthetic set that a test may damage."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "synthetic"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_root) -> Path:
    """A one-epoch run folder of the tiny C2D on the synthetic set (config.yaml, checkpoints, metrics.jsonl)."""
    from cpnet.cli import main

    base = tmp_path_factory.mktemp("trained")
    config = write_config(base / "tiny.yaml", tiny_config(synthetic_root, epochs=1))
    assert main(["train", "--config", str(config), "--out", str(base / "run"), "--no-progress"]) == 0
    return base / "run"
