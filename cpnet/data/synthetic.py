"""The built-in synthetic motion dataset: textured shapes moving over textured backgrounds (SPEC §6).

Classes come in time-reversed pairs (slide left <-> right, up <-> down, grow <-> shrink, rotate clockwise <->
counter-clockwise) plus a static class. For each pair the generator draws one *canonical* clip — endpoint states,
textures, distractors and noise all from distributions that do not depend on which class of the pair is asked
for — and the second class of the pair gets that clip played backwards. So a clip of one class reversed is a clip
of its partner with exactly the same probability, both classes share one distribution of individual frames, and
only a model that sees frame order (C3D, CPNet with its signed Δt) can tell them apart; an order-blind model
(C2D with temporal average pooling, non-local C2D) stays at 50 % within each pair.

Clip ``i`` is generated from the seed sequence ``(seed, stream, i)`` alone, so any clip can be made on its own,
in any worker, in any order.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from cpnet.data.render import SHAPES, draw_shape, random_plaid

CLASS_NAMES = [
    "static",
    "slide_left",
    "slide_right",
    "slide_up",
    "slide_down",
    "grow",
    "shrink",
    "rotate_clockwise",
    "rotate_counterclockwise",
]
TIME_REVERSED_PAIRS = [
    ("slide_left", "slide_right"),
    ("slide_up", "slide_down"),
    ("grow", "shrink"),
    ("rotate_clockwise", "rotate_counterclockwise"),
]
FLIP_PAIRS = [("slide_left", "slide_right"), ("rotate_clockwise", "rotate_counterclockwise")]
DEFAULT_NOISE = 0.04  # std of per-pixel Gaussian noise, in [0, 1] intensity units
DEFAULT_DISTRACTORS = 1  # small shapes drifting in random directions behind the main one

# class -> (motion kind, played backwards?). The canonical direction of each kind is the un-reversed class.
_MOTIONS = {
    "static": ("static", False),
    "slide_right": ("slide_x", False),
    "slide_left": ("slide_x", True),
    "slide_down": ("slide_y", False),
    "slide_up": ("slide_y", True),
    "grow": ("scale", False),
    "shrink": ("scale", True),
    "rotate_clockwise": ("rotate", False),
    "rotate_counterclockwise": ("rotate", True),
}
ROTATE_GAIN = 1.3  # rotating shape: radius 0.22-0.3 and total turn 0.5-0.85 pi, both scaled by this (see _trajectory)


def _trajectory(rng: np.random.Generator, kind: str, num_frames: int, size: int) -> dict[str, np.ndarray]:
    """Per-frame states (T,) of the main shape, moving linearly between two endpoint states in the canonical
    direction. Sizes are fractions of the frame so motion stays visible at any resolution (at 32 px and 8 frames:
    slides 2-3 px per frame, turns 17-28 degrees per frame, growth by a factor 2.2-2.8).

    The rotating shape is the largest (radius 0.29-0.39 of the frame) so that its rim moves 2.8-6 px per frame:
    with the earlier radius 0.22-0.3 and 13-22 degrees per frame (1.6-3.7 px) most of the turn stayed inside one
    cell of a 4-pixel feature grid, and the demo's CPNet (CP module on 8x8 maps) told clockwise from
    counter-clockwise at chance (86 % top-1 overall; 96 % after this change, same model and budget)."""
    ramp = np.linspace(0.0, 1.0, num_frames)  # (T,)
    const = np.ones(num_frames)
    angle = rng.uniform(0, 2 * np.pi) * const
    if kind in ("slide_x", "slide_y"):
        r = rng.uniform(0.13, 0.19) * size
        travel = rng.uniform(0.45, 0.65) * size
        lo = travel / 2 + 0.4 * r  # the path's centre keeps most of the shape inside at both ends
        along = rng.uniform(lo, size - lo) + travel * (ramp - 0.5)
        across = rng.uniform(r, size - r) * const
        cx, cy = (along, across) if kind == "slide_x" else (across, along)
        radius = r * const
    elif kind == "scale":
        small = rng.uniform(0.09, 0.12) * size
        big = small * rng.uniform(2.2, 2.8)
        radius = small + (big - small) * ramp
        cx, cy = (rng.uniform(0.6 * big, size - 0.6 * big) * const for _ in range(2))
    elif kind == "rotate":
        r = rng.uniform(0.22, 0.3) * size * ROTATE_GAIN
        angle = angle + rng.uniform(0.5 * np.pi, 0.85 * np.pi) * ROTATE_GAIN * ramp
        cx, cy = (rng.uniform(0.8 * r, size - 0.8 * r) * const for _ in range(2))
        radius = r * const
    elif kind == "static":
        r = rng.uniform(0.13, 0.25) * size
        cx, cy = (rng.uniform(r, size - r) * const for _ in range(2))
        radius = r * const
    else:
        raise ValueError(f"unknown motion kind {kind!r}")
    return {"cx": cx, "cy": cy, "radius": radius, "angle": angle}


def _scene(rng: np.random.Generator, num_frames: int, size: int, distractors: int) -> tuple[np.ndarray, bool]:
    """Textured background with drifting distractor shapes, float (T, H, W, 3), and whether the main shape should
    be dark. Distractor velocities are symmetric in direction, so the scene is as likely forwards as backwards."""
    dark_background = rng.random() < 0.5  # the main shape takes the other polarity, so it always stands out
    lightness = rng.uniform(0.15, 0.4) if dark_background else rng.uniform(0.6, 0.85)
    background = random_plaid(rng, lightness, rng.uniform(0.1, 0.3), (0.2 * size, 0.5 * size))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # (H, W) pixel centres
    canvas = np.repeat(background(xx, yy)[None], num_frames, axis=0)  # (T, H, W, 3)
    ramp = np.linspace(-0.5, 0.5, num_frames)  # (T,) centred, so reversing time negates the velocity
    for _ in range(distractors):
        shape = SHAPES[rng.integers(len(SHAPES))]
        texture = random_plaid(rng, rng.uniform(0.1, 0.9), 0.25, (0.12 * size, 0.25 * size))
        r = rng.uniform(0.06, 0.1) * size
        heading, travel = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.25) * size
        cx = rng.uniform(0, size) + travel * np.cos(heading) * ramp
        cy = rng.uniform(0, size) + travel * np.sin(heading) * ramp
        angle = np.full(num_frames, rng.uniform(0, 2 * np.pi))
        draw_shape(canvas, shape, texture, cx, cy, np.full(num_frames, r), angle, texture_scale=r)
    return canvas, not dark_background


def make_clip(
    rng: np.random.Generator,
    label: int | str,
    num_frames: int = 8,
    size: int = 32,
    noise: float = DEFAULT_NOISE,
    distractors: int = DEFAULT_DISTRACTORS,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One clip of class ``label`` (index or name): uint8 (T, size, size, 3) frames and the main shape's per-frame
    states {cx, cy, radius, angle} (each (T,), pixels and radians).

    The random draws do not depend on which class of a time-reversed pair is asked for: the second class gets the
    first one's clip reversed. So ``make_clip(rng(s), a)`` reversed equals ``make_clip(rng(s), b)`` for a pair (a, b).
    """
    name = CLASS_NAMES[label] if isinstance(label, (int, np.integer)) else label
    if name not in _MOTIONS:
        raise ValueError(f"unknown synthetic class {label!r}; expected an index < {len(CLASS_NAMES)} or {CLASS_NAMES}")
    if num_frames < 2 or size < 8 or noise < 0 or distractors < 0:
        raise ValueError(
            f"need num_frames >= 2, size >= 8, noise >= 0, distractors >= 0; got {num_frames}, {size}, {noise}, "
            f"{distractors}"
        )
    kind, backwards = _MOTIONS[name]
    canvas, dark_shape = _scene(rng, num_frames, size, distractors)
    states = _trajectory(rng, kind, num_frames, size)
    lightness = rng.uniform(0.1, 0.4) if dark_shape else rng.uniform(0.6, 0.9)
    texture = random_plaid(rng, lightness, rng.uniform(0.25, 0.45), (0.12 * size, 0.25 * size))
    shape = SHAPES[rng.integers(len(SHAPES))]
    draw_shape(canvas, shape, texture, **states, texture_scale=float(states["radius"].mean()))
    canvas += rng.normal(0.0, noise, size=canvas.shape) if noise > 0 else 0.0
    frames = np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8)  # (T, H, W, 3)
    if backwards:
        frames = np.ascontiguousarray(frames[::-1])
        states = {k: v[::-1].copy() for k, v in states.items()}
    return frames, states


class SyntheticMotion(torch.utils.data.Dataset):
    """In-memory synthetic motion clips: item ``i`` is ``(frames uint8 (T, size, size, 3), label)``, generated on
    demand from ``(seed, stream, i)``; labels cycle through the classes so every class has the same count (±1).
    Use ``stream`` to draw disjoint sets from one seed (``write_jester`` uses 0 for train, 1 for validation)."""

    class_names = CLASS_NAMES
    flip_pairs = FLIP_PAIRS
    time_reversed_pairs = TIME_REVERSED_PAIRS

    def __init__(
        self,
        num_clips: int,
        num_frames: int = 8,
        size: int = 32,
        seed: int = 0,
        noise: float = DEFAULT_NOISE,
        distractors: int = DEFAULT_DISTRACTORS,
        stream: int = 0,
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.num_clips, self.num_frames, self.size = num_clips, num_frames, size
        self.seed, self.noise, self.distractors, self.stream = seed, noise, distractors, stream
        make_clip(np.random.default_rng(0), 0, num_frames, size, noise, distractors)  # validate arguments now

    def __len__(self) -> int:
        return self.num_clips

    def label(self, index: int) -> int:
        return index % len(CLASS_NAMES)

    def clip(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Frames and main-shape states of clip ``index``."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range [0, {self.num_clips})")
        rng = np.random.default_rng([self.seed, self.stream, index])
        return make_clip(rng, self.label(index), self.num_frames, self.size, self.noise, self.distractors)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.clip(index)[0], self.label(index)


MANIFEST = "cpnet-synthetic.json"
DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL = 7200, 900  # clips written by default (the demo's set)
GENERATOR_VERSION = 2  # bump when the generator's output changes, so existing datasets are regenerated
MEDIA_DIR = "20bn-jester-v1"


def _write_range(args: tuple[dict, int, int, int, int, str]) -> int:
    """Worker: write clips [start, stop) of one stream as JPEG folders named by id; returns how many."""
    params, stream, start, stop, first_id, media = args
    ds = SyntheticMotion(stop, params["num_frames"], params["size"], params["seed"], params["noise"],
                         params["distractors"], stream)  # fmt: skip
    for index in range(start, stop):
        folder = Path(media) / str(first_id + index)
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(ds[index][0]):
            Image.fromarray(frame).save(folder / f"{t + 1:05d}.jpg", quality=params["quality"])
    return stop - start


def _reusable(out: Path, params: dict) -> bool:
    """True when ``out`` already holds a complete dataset made with ``params``; otherwise clear what an earlier
    run of ours left there (never a folder without our manifest) and make sure ``out`` exists."""
    manifest = out / MANIFEST
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old.get("complete") and old.get("args") == params:
            return True
        for name in (MEDIA_DIR, "jester-v1-labels.csv", "jester-v1-train.csv", "jester-v1-validation.csv"):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no {MANIFEST}; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    return False


def _write_clips(media: Path, params: dict, workers: int, progress: bool) -> None:
    """Write every train and validation clip, in chunks spread over ``workers`` processes."""
    num_train, num_val = params["num_train"], params["num_val"]
    jobs = []
    for stream, count, first_id in ((0, num_train, 1), (1, num_val, num_train + 1)):
        chunk = max(1, min(200, -(-count // max(1, 4 * workers))))
        jobs += [(params, stream, s, min(s + chunk, count), first_id, str(media)) for s in range(0, count, chunk)]
    with tqdm(total=num_train + num_val, desc="synthetic clips", unit="clip", disable=not progress) as bar:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for n in pool.imap_unordered(_write_range, jobs):
                    bar.update(n)
        else:
            for job in jobs:
                bar.update(_write_range(job))


def write_jester(
    out_dir: str | Path,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    num_frames: int = 8,
    size: int = 32,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    distractors: int = DEFAULT_DISTRACTORS,
    quality: int = 90,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Write the synthetic set in the Jester layout and return ``out_dir``:
    ``jester-v1-labels.csv``, ``jester-v1-{train,validation}.csv`` (``id;Label``) and
    ``20bn-jester-v1/<id>/00001.jpg …``, plus a manifest of the arguments and the flip pairs.

    Train clips come from stream 0 and validation clips from stream 1 of ``seed``, with ids 1 … num_train and then
    on. An existing complete dataset written with the same arguments is reused; one written with other arguments
    (or left incomplete) is replaced. A non-empty folder without a manifest is refused rather than overwritten.
    """
    out = Path(out_dir)
    params = dict(num_train=num_train, num_val=num_val, num_frames=num_frames, size=size, seed=seed, noise=noise,
                  distractors=distractors, quality=quality, version=GENERATOR_VERSION)  # fmt: skip
    if num_train < 1 or num_val < 0 or not 1 <= quality <= 100:
        raise ValueError(
            f"need num_train >= 1, num_val >= 0 and quality in [1, 100]; got {num_train}, {num_val}, {quality}"
        )
    SyntheticMotion(1, num_frames, size, seed, noise, distractors)  # validates the generator arguments
    if _reusable(out, params):
        return out
    info = {"generator": "cpnet.data.synthetic", "args": params, "class_names": CLASS_NAMES,
            "flip_pairs": FLIP_PAIRS, "time_reversed_pairs": TIME_REVERSED_PAIRS}  # fmt: skip
    (out / MANIFEST).write_text(json.dumps({**info, "complete": False}, indent=1))
    _write_clips(out / MEDIA_DIR, params, workers, progress)
    (out / "jester-v1-labels.csv").write_text("".join(f"{name}\n" for name in CLASS_NAMES))
    for split, count, first_id in (("train", num_train, 1), ("validation", num_val, num_train + 1)):
        rows = [f"{first_id + i};{CLASS_NAMES[i % len(CLASS_NAMES)]}\n" for i in range(count)]
        (out / f"jester-v1-{split}.csv").write_text("".join(rows))
    (out / MANIFEST).write_text(json.dumps({**info, "complete": True}, indent=1))
    return out
