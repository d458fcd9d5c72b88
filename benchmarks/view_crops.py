"""Test-time view transform: crops cut in source pixels (what ``view_transform`` does for the spread protocols) side
by side with resizing the whole frame first and cropping it (what it did before), per view.

    python benchmarks/view_crops.py [--repeats 5] [--threads 1]

A random uint8 clip of 8 frames at 256x340 (Kinetics-like), the ``kinetics`` protocol's 3 crops at 224² and 112²;
rounds interleave the two ways, and the best round is reported in milliseconds per view. The two ways differ by at
most a few grey levels (tests/data/test_transforms.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpnet.data import transforms as T  # noqa: E402


def whole_frame_first(frames: torch.Tensor, size: int, protocol: T.ViewProtocol, crop: int) -> torch.Tensor:
    """The former way: resize the whole frame to the protocol's short side, then crop."""
    height, width = protocol.resized_size(frames.shape[1], frames.shape[2], protocol.short_side(size, None))
    top, left = protocol.crop_box(height, width, size, crop)
    x = T.resize(frames, height, width)[:, top : top + size, left : left + size]
    return T.normalize(x.float().div_(255))


def crop_first(frames: torch.Tensor, size: int, protocol: T.ViewProtocol, crop: int) -> torch.Tensor:
    return T.view_transform(frames, size, protocol, None, crop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (the best is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (DataLoader workers use one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = torch.randint(0, 256, (8, 256, 340, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    protocol = T.ViewProtocol("kinetics", clips=1, crops=3)
    print("| crop | whole frame first | crop first | ratio |\n|---|---:|---:|---:|")
    for size in (224, 112):
        best = {}
        for _ in range(args.repeats):
            for name, fn in (("whole", whole_frame_first), ("crop", crop_first)):
                start = time.perf_counter()
                for _ in range(20):
                    for crop in range(protocol.crops):
                        fn(frames, size, protocol, crop)
                ms = (time.perf_counter() - start) / (20 * protocol.crops) * 1e3
                best[name] = min(best.get(name, ms), ms)
        print(f"| {size}² | {best['whole']:.2f} ms | {best['crop']:.2f} ms | {best['crop'] / best['whole']:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
