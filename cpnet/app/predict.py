"""Classify one video file or frame folder with a trained checkpoint (centre clip, centre crop)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from cpnet.app.datasets import single_file_clip
from cpnet.app.runs import load_trained
from cpnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@torch.inference_mode()
def predict_file(path: Path, checkpoint: Path, top: int = 5, device: str = "cpu") -> list[tuple[str, float]]:
    """The ``top`` (class name, probability) pairs for the video or frame folder at ``path``, best first.

    The clip is sampled and transformed exactly as a single-view evaluation of the checkpoint's run would.
    """
    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video or frame folder not found: {path}")
    model, clip, _, names = load_clip(path, checkpoint, device)
    probs = model(clip).float().softmax(dim=1)[0]  # (K,)
    values, indices = probs.topk(min(top, len(names)))
    return [(names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


class LoadedClip(NamedTuple):
    model: torch.nn.Module  # in eval mode
    clip: torch.Tensor  # (1, 3, T, S, S) as the model sees it
    frames: np.ndarray  # uint8 (T, S, S, 3), the same clip for display
    class_names: list[str]


def load_clip(path: Path, checkpoint: Path, device: str = "cpu") -> LoadedClip:
    """A checkpoint's model and the centre clip of one file, as :func:`predict_file` classifies it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video or frame folder not found: {path}")
    model, ckpt, cfg = load_trained(checkpoint, torch.device(device))
    clip = single_file_clip(cfg.data, path, ckpt["class_names"])  # (3, T, S, S), normalised
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    frames = ((clip * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0)  # (T, S, S, 3)
    return LoadedClip(model, clip[None].to(device), frames.numpy(), list(ckpt["class_names"]))
