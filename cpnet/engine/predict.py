"""Classify one video file or frame folder with a trained checkpoint (centre clip, centre crop)."""

from __future__ import annotations

from pathlib import Path

import torch

from cpnet.data.dataset import ViewDataset
from cpnet.data.records import DatasetSplit, VideoRecord


@torch.inference_mode()
def predict_file(path: Path, checkpoint: Path, top: int = 5, device: str = "cpu") -> list[tuple[str, float]]:
    """The ``top`` (class name, probability) pairs for the video or frame folder at ``path``, best first.

    The clip is sampled and transformed exactly as a single-view evaluation of the checkpoint's run would.
    """
    from cpnet.engine.runs import load_trained

    if not path.exists():
        raise FileNotFoundError(f"video or frame folder not found: {path}")
    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    model, ckpt, cfg = load_trained(checkpoint, torch.device(device))
    names = ckpt["class_names"]
    split = DatasetSplit(records=[VideoRecord(video_id=path.name, path=path, label=-1)], class_names=names)
    d = cfg.data
    views = ViewDataset(split, num_frames=d.num_frames, stride=d.stride, sampling=d.sampling, size=d.size,
                        short_side=d.short_side, clips=1, crops=1)
    clip = views[0][0]  # (3, T, size, size)
    probs = model(clip[None].to(device)).float().softmax(dim=1)[0]  # (K,)
    values, indices = probs.topk(min(top, len(names)))
    return [(names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]
