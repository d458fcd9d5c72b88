"""Data-loading throughput: clips per second for the synthetic generator and the readers.

    .venv/bin/python benchmarks/data.py [--quick] [--json results.json]

Cases: the synthetic generator (in memory, and written to disk as JPEGs); the Jester-layout reader (JPEG frame
folders) and the video reader (SSv2-like VP8 webm, Kinetics-like H.264 mp4), each at 112² (short side 128) and
224² (short side 256), through a DataLoader with 1 and 2 worker processes, with the training transforms (random
offset, random resized crop, colour jitter, flip). Media are written to a temporary folder first and read back
repeatedly, so they come from the page cache, as a small dataset does after its first epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpnet.data.dataset import ClipDataset  # noqa: E402
from cpnet.data.records import DatasetSplit, VideoRecord  # noqa: E402
from cpnet.data.synthetic import SyntheticMotion, make_clip, write_jester  # noqa: E402

# name -> (frame width, height, frames per video, fps, codec); heights match the datasets' short sides.
SOURCES = {
    "jester": (227, 128, 24, 12, None),  # Jester's 176x100 frames scaled to the 128 short side of its recipe
    "jester@240": (427, 240, 24, 12, None),
    "ssv2": (427, 240, 48, 12, "libvpx"),
    "kinetics": (340, 256, 250, 25, "libx264"),
}


def source_frames(num_frames: int, width: int, height: int, seed: int) -> np.ndarray:
    """Textured moving-shape frames at the requested size (synthetic clips rendered small and scaled up)."""
    frames, _ = make_clip(np.random.default_rng(seed), seed % 9, num_frames, 64, 0.03, 2)
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def write_media(root: Path, name: str, videos: int) -> list[VideoRecord]:
    width, height, frames, fps, codec = SOURCES[name]
    records = []
    for v in range(videos):
        clip = source_frames(frames, width, height, v)
        if codec is None:
            folder = root / name / str(v)
            folder.mkdir(parents=True)
            for t, f in enumerate(clip):
                Image.fromarray(f).save(folder / f"{t + 1:05d}.jpg", quality=90)
            records.append(VideoRecord(str(v), folder, 0, frames))
            continue
        path = root / f"{name}_{v}.{'webm' if codec == 'libvpx' else 'mp4'}"
        with av.open(str(path), "w") as c:
            s = c.add_stream(codec, rate=fps)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            s.options = {"preset": "veryfast"} if codec == "libx264" else {"b": "1M"}
            for f in clip:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        records.append(VideoRecord(str(v), path, 0, None))
    return records


def loader_rate(records: list[VideoRecord], clips: int, size: int, workers: int, stride: int) -> float:
    """Training clips per second through a DataLoader (after one warm-up batch per worker)."""
    reps = -(-clips // len(records)) + 2 * workers
    split = DatasetSplit(records * reps, ["a"])
    ds = ClipDataset(split, num_frames=8, stride=stride, size=size, train=True)
    batch = 8
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True)
    it = iter(loader)
    for _ in range(workers):
        next(it)
    start, n = time.perf_counter(), 0
    while n < clips:
        n += len(next(it)[0])
    return n / (time.perf_counter() - start)


def synthetic_rates(clips: int, tmp: Path) -> list[dict]:
    ds = SyntheticMotion(clips)
    start = time.perf_counter()
    for i in range(clips):
        ds[i]
    in_memory = clips / (time.perf_counter() - start)
    start = time.perf_counter()
    write_jester(tmp / "synthetic", num_train=clips, num_val=0)
    written = clips / (time.perf_counter() - start)
    return [
        {"case": "synthetic generator, in memory", "size": 32, "workers": 0, "clips_per_s": in_memory},
        {
            "case": "synthetic generator, written as JPEG (write_jester)",
            "size": 32,
            "workers": 0,
            "clips_per_s": written,
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips and videos (about a minute)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--only", choices=["synthetic", "jester", "ssv2", "kinetics"], help="run one group of cases")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    clips = 64 if args.quick else 384
    videos = 4 if args.quick else 12
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "synthetic"):
            results += synthetic_rates(clips * 4, tmp)
        cases = [("jester", 112, 1), ("jester@240", 224, 1), ("ssv2", 112, 2), ("ssv2", 224, 2), ("kinetics", 112, 8),
                 ("kinetics", 224, 8)]  # fmt: skip
        media = {}
        for name, size, stride in cases:
            if args.only not in (None, name.split("@")[0]):
                continue
            if name not in media:
                media[name] = write_media(tmp, name, videos)
            w, h = SOURCES[name][:2]
            for workers in (1, 2):
                rate = loader_rate(media[name], clips, size, workers, stride)
                label = f"{name.split('@')[0]} reader ({w}x{h} source, 8 frames, stride {stride})"
                results.append({"case": label, "size": size, "workers": workers, "clips_per_s": rate})
                print(f"{label:60s} {size:4d}  {workers} workers  {rate:7.1f} clips/s", flush=True)
    print("\n| case | output | workers | clips/s |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['case']} | 8×{r['size']}² | {r['workers']} | {r['clips_per_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
