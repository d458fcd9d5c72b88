"""What several test folders share: the repository root, and a tiny training config on the synthetic set (the
fixtures built from them live in ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

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
