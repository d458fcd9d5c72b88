"""How big `cpnet visualize --html` makes its page: a preset at random weights (default the released Jester R34,
five CP modules, k = 8) on one synthetic 12-frame clip at 112² (a textured shape sliding over a textured, noisy
background: JPEG's hard case), through the CLI. Prints the file size and what takes it.

    .venv/bin/python benchmarks/explorer_size.py [--model cpnet_r34] [--frames 12] [--size 112] [--keep DIR]

--keep DIR keeps the checkpoint, the clip and the page (docs/explorer.png is a screenshot of that page,
``tools/explorer_screenshot.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

import cpnet
from cpnet.app.config import config_from_dict, config_to_dict
from cpnet.cli import main
from cpnet.data.synthetic import make_clip
from cpnet.engine.checkpoint import atomic_save, make_checkpoint


def measure(model_name: str, frames: int, size: int, folder: Path) -> dict:
    classes = [f"class {i}" for i in range(27)]
    cfg = config_from_dict({"model": {"name": model_name},
                            "data": {"num_frames": frames, "size": size, "short_side": size, "stride": 1}})
    meta = {"model_name": model_name, "num_classes": len(classes), "class_names": classes,
            "config": config_to_dict(cfg)}
    torch.manual_seed(0)
    model = cpnet.create_model(model_name, num_classes=len(classes), cp_init_gamma=1.0)
    checkpoint = atomic_save(make_checkpoint(model, epoch=0, meta=meta), folder / f"{model_name}_random.pt")
    clip, _ = make_clip(np.random.default_rng(0), "slide_right", num_frames=frames, size=size)
    video = folder / "slide_right"
    video.mkdir()
    from PIL import Image

    for t, frame in enumerate(clip):
        Image.fromarray(frame).save(video / f"{t + 1:05d}.png")
    page = folder / "explore.html"
    assert main(["visualize", "--checkpoint", str(checkpoint), "--input", str(video), "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="cpnet-data">(.*?)</script>', html, re.S).group(1))
    return {"model": model_name, "frames": frames, "size": size, "bytes": page.stat().st_size,
            "frame_bytes": sum(len(f) for f in data["frames"]),
            "module_bytes": {m["name"]: len(json.dumps(m)) for m in data["modules"]},
            "grids": {m["name"]: m["grid"] for m in data["modules"]}}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cpnet_r34_released_112")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--keep", type=Path, help="folder to keep the checkpoint, clip and page in")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = measure(args.model, args.frames, args.size, args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = measure(args.model, args.frames, args.size, Path(tmp))
    print(json.dumps(result, indent=1))
    print(f"{result['model']}, {args.frames} frames at {args.size}²: {result['bytes'] / 1e6:.2f} MB "
          f"(frames {result['frame_bytes'] / 1e6:.2f} MB, {len(result['grids'])} modules "
          f"{sum(result['module_bytes'].values()) / 1e6:.2f} MB)")


if __name__ == "__main__":
    run()
