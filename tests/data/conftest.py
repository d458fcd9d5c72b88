"""Fixtures writing tiny datasets in the official layouts into ``tmp_path`` (helpers live in ``tests.data.media``)."""

from __future__ import annotations

import pytest

from tests.data.media import write_jester_tree, write_kinetics_tree, write_ssv2_tree


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
