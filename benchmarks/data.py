"""Data-loading throughput: clips per second for the synthetic generator and the readers.

    .venv/bin/python benchmarks/data.py [--quick] [--json results.json]

    .venv/bin/python benchmarks/data.py --prepare-compare [--quick] [--json results.json]

Cases: the synthetic generator (in memory, and written to disk as JPEGs); the Jester-layout reader (JPEG frame
folders) and the video reader (SSv2-like VP8 webm, Kinetics-like H.264 mp4), each giving 8x112x112 and 8x224x224
clips through a DataLoader in-process (0) and with 1 and 2 worker processes, with the training transforms (random
offset, random resized crop, colour jitter, flip). CPU milliseconds per clip are measured in-process: they do not
depend on what else the machine runs, unlike clips/s. Media are written to a temporary folder first and read back
repeatedly, so they come from the page cache, as a small dataset does after its first epoch.

``--prepare-compare`` instead measures what ``cpnet data prepare reencode`` buys: Kinetics-like clips (10 s of
340x256 at 25 fps, H.264 with x264's defaults: a keyframe every 250 frames plus scene cuts, as downloaded clips
have) read as random dense 8x112x112 clips (stride 8), side by side with the same clips re-encoded with a keyframe
every 12 frames at their own size (keyframes only) and at short sides 160 and 128. Frames per keyframe and MB per
video are measured from the files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpnet.data import prepare  # noqa: E402
from cpnet.data.dataset import ClipDataset  # noqa: E402
from cpnet.data.records import DatasetSplit, VideoRecord  # noqa: E402
from cpnet.data.synthetic import SyntheticMotion, make_clip, write_jester  # noqa: E402

# name -> (frame width, height, frames per video, fps, codec); heights match the datasets' short sides.
SOURCES = {
    "jester": (176, 100, 36, 12, None),  # Jester's frames as distributed: 176x100, about 36 per video
    "jester@240": (427, 240, 36, 12, None),  # the same layout at SSv2's 240p, for 224x224 crops
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


def loader_rate(
    records: list[VideoRecord], seconds: float, size: int, workers: int, stride: int
) -> tuple[float, float]:
    """(clips per second, CPU ms per clip) through a DataLoader, measured for ``seconds`` after a warm-up batch per
    worker. CPU time is only measurable in-process, so it is reported for ``workers=0`` (else NaN)."""
    ds = ClipDataset(DatasetSplit(records, ["a"]), num_frames=8, stride=stride, size=size, train=True)
    sampler = RandomSampler(ds, replacement=True, num_samples=10**7)
    it = iter(DataLoader(ds, batch_size=8, sampler=sampler, num_workers=workers))
    for _ in range(max(1, workers)):
        next(it)
    start, cpu, n = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - start < seconds:
        n += len(next(it)[0])
    rate = n / (time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu) / n * 1e3 if workers == 0 else float("nan")
    del it  # shuts the workers down
    return rate, cpu_ms


def synthetic_rates(clips: int, tmp: Path) -> list[dict]:
    ds = SyntheticMotion(clips)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(clips):
        ds[i]
    in_memory = clips / (time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu) / clips * 1e3
    start = time.perf_counter()
    write_jester(tmp / "synthetic", num_train=clips, num_val=0)
    written = clips / (time.perf_counter() - start)
    return [
        {
            "case": "synthetic generator, in memory",
            "size": 32,
            "workers": 0,
            "clips_per_s": in_memory,
            "cpu_ms": cpu_ms,
        },
        {
            "case": "synthetic generator, written as JPEG (write_jester)",
            "size": 32,
            "workers": 0,
            "clips_per_s": written,
        },
    ]


def keyframe_spacing(path: Path) -> float:
    """Mean frames per keyframe of a video, from its packets."""
    with av.open(str(path)) as c:
        flags = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    return len(flags) / max(1, sum(flags))


def prepare_compare(tmp: Path, videos: int, seconds: float) -> list[dict]:
    """Clips/s of the Kinetics-like source and of its re-encodings (see the module docstring), in one run."""
    source = tmp / "downloaded"
    source.mkdir()
    write_media(source, "kinetics", videos)
    variants = [("downloaded 340x256", source, float("nan"))]
    for short_side in (256, 160, 128):
        start = time.perf_counter()
        report = prepare.reencode(source, tmp / f"short{short_side}", short_side, keyframe_interval=12, workers=2)
        assert not report.bad, report.bad
        label = "re-encoded 340x256" if short_side == 256 else f"re-encoded short side {short_side}"
        variants.append((label, tmp / f"short{short_side}", videos / (time.perf_counter() - start)))
    results = []
    for label, folder, encode_rate in variants:
        paths = sorted(folder.glob("*.mp4"))
        records = [VideoRecord(p.stem, p, 0, None) for p in paths]
        spacing = float(np.mean([keyframe_spacing(p) for p in paths]))
        megabytes = sum(p.stat().st_size for p in paths) / 1e6 / len(paths)
        for workers in (0, 2):
            rate, cpu_ms = loader_rate(records, seconds, 112, workers, 8)
            results.append({"case": label, "size": 112, "workers": workers, "clips_per_s": rate, "cpu_ms": cpu_ms,
                            "frames_per_keyframe": spacing, "mb_per_video": megabytes,
                            "reencode_videos_per_s": encode_rate})  # fmt: skip
            print(f"{label:34s} keyframe every {spacing:5.1f}  {megabytes:5.2f} MB/video  {workers} workers  "
                  f"{rate:7.1f} clips/s  {cpu_ms:6.1f} CPU ms", flush=True)  # fmt: skip
    return results


def print_compare(results: list[dict]) -> None:
    base = {r["workers"]: r["clips_per_s"] for r in results if r["case"].startswith("downloaded")}
    print("\n| Kinetics-like videos | frames per keyframe | MB per video | re-encoded videos/s | workers | clips/s "
          "| × downloaded | CPU ms/clip |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in results:
        cpu = f"{r['cpu_ms']:.1f}" if r["cpu_ms"] == r["cpu_ms"] else ""  # NaN: not measured
        enc = f"{r['reencode_videos_per_s']:.1f}" if r["reencode_videos_per_s"] == r["reencode_videos_per_s"] else ""
        print(f"| {r['case']} | {r['frames_per_keyframe']:.1f} | {r['mb_per_video']:.2f} | {enc} | {r['workers']} "
              f"| {r['clips_per_s']:.1f} | {r['clips_per_s'] / base[r['workers']]:.1f} | {cpu} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips and videos (about a minute)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--only", choices=["synthetic", "jester", "ssv2", "kinetics"], help="run one group of cases")
    parser.add_argument("--prepare-compare", action="store_true", help="Kinetics-like clips/s before and after "
                        "`cpnet data prepare reencode` (about 2 minutes; 1 with --quick)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seconds = 3.0 if args.quick else 10.0
    load = f"{os.getloadavg()[0]:.1f}"
    videos = 4 if args.quick else 12
    if args.prepare_compare:
        with tempfile.TemporaryDirectory() as tmp:
            results = prepare_compare(Path(tmp), 4 if args.quick else 6, 3.0 if args.quick else 6.0)
        print(f"\nload average before / after: {load} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print_compare(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "synthetic"):
            results += synthetic_rates(300 if args.quick else 2000, tmp)
        cases = [("jester", 112, 1), ("jester@240", 224, 1), ("ssv2", 112, 2), ("ssv2", 224, 2), ("kinetics", 112, 8),
                 ("kinetics", 224, 8)]  # fmt: skip
        media = {}
        for name, size, stride in cases:
            if args.only not in (None, name.split("@")[0]):
                continue
            if name not in media:
                media[name] = write_media(tmp, name, videos)
            w, h = SOURCES[name][:2]
            for workers in (0, 1, 2):
                rate, cpu_ms = loader_rate(media[name], seconds, size, workers, stride)
                label = f"{name.split('@')[0]} reader ({w}x{h} source, 8 frames, stride {stride})"
                results.append({"case": label, "size": size, "workers": workers, "clips_per_s": rate, "cpu_ms": cpu_ms})
                print(
                    f"{label:60s} {size:4d}  {workers} workers  {rate:7.1f} clips/s  {cpu_ms:5.1f} CPU ms", flush=True
                )
    print(f"\nload average before / after: {load} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\n| case | output | workers | clips/s | CPU ms/clip |\n|---|---|---|---|---|")
    for r in results:
        cpu_ms = r.get("cpu_ms", float("nan"))
        cpu = f"{cpu_ms:.1f}" if cpu_ms == cpu_ms else ""  # NaN: not measured
        print(f"| {r['case']} | 8×{r['size']}² | {r['workers']} | {r['clips_per_s']:.0f} | {cpu} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
