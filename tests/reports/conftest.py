"""A trained-looking checkpoint with two CP modules on different search grids (layer2: 12×12; layer3: shrunk by 2
to 3×3, its points not the centres of an even tiling) and a 4-frame clip, for the explorer's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cpnet
from cpnet.app.config import config_from_dict, config_to_dict
from cpnet.engine.checkpoint import atomic_save, make_checkpoint
from tests.data.media import write_frame_folder

EXPLORER_OPTIONS = {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1, "cp_at": {"layer2": [0], "layer3": [0]},
                    "cp_k": 3, "cp_shrink": {"layer3": 2}, "cp_init_gamma": 1.0, "dropout": 0.0}
CLASSES = ["slide </script> left", "wave & clap", "turn"]  # names a page must show as text, never as markup


def explorer_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = cpnet.create_model("cpnet_r18", num_classes=len(CLASSES), **EXPLORER_OPTIONS)
    for m in model.modules():  # non-trivial BN statistics, so the eval-mode MLP is not the identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def explorer_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, frame folder of 6 frames 52×60: the model sees the centre 4 frames, 48² centre crop)."""
    folder = tmp_path_factory.mktemp("explorer")
    cfg = config_from_dict({"model": {"name": "cpnet_r18", "options": EXPLORER_OPTIONS},
                            "data": {"num_frames": 4, "size": 48, "short_side": 48}})
    meta = {"model_name": "cpnet_r18", "num_classes": len(CLASSES), "class_names": CLASSES,
            "config": config_to_dict(cfg)}
    path = atomic_save(make_checkpoint(explorer_model(), epoch=1, meta=meta), folder / "ck.pt")
    yy, xx = np.mgrid[0:52, 0:60]
    frames = np.stack([np.stack([(xx * 4 + 40 * t) % 256, yy * 4, np.full_like(xx, 60 * t)], -1)
                       for t in range(6)]).astype(np.uint8)  # (6, 52, 60, 3): gradients that shift in time
    return path, write_frame_folder(folder / "clip", frames)
