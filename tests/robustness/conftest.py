"""Fixtures for the robustness matrix: the tiny official-layout trees of the data tests, a tiny synthetic Jester
set, a tiny training config and one trained run that the model and CLI rows share (all CPU, seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cpnet.data.synthetic import write_jester
from tests.data.conftest import jester_root, kinetics_root, ssv2_root  # noqa: F401 (fixtures reused here)

TINY_MODEL = {"name": "c2d_r18", "options": {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1, "dropout": 0.0}}
SYNTHETIC = {"num_train": 24, "num_val": 9, "num_frames": 4, "size": 16, "seed": 0}


def tiny_config(root: str | Path, epochs: int = 2, **sections: dict) -> dict:
    """A config dict for a seconds-long CPU run on the Jester-layout tree ``root``; ``sections`` update sections."""
    cfg = {
        "name": "tiny",
        "model": TINY_MODEL,
        "data": {"dataset": "jester", "root": str(root), "num_frames": 4, "size": 16, "short_side": 16, "workers": 0},
        "optim": {"lr": 0.05, "schedule": "constant"},
        "train": {"epochs": epochs, "batch_size": 6, "threads": 1, "device": "cpu"},
        "eval": {"batch_size": 9},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The synthetic motion set in the Jester layout: 24 train + 9 validation clips of 4 frames of 16x16."""
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
