"""The synthetic motion set: deterministic, visible motion, and exact time-reversal symmetry within each pair."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cpnet.data import render
from cpnet.data.annotations import load_split
from cpnet.data.synthetic import (
    CLASS_NAMES,
    FLIP_PAIRS,
    MANIFEST,
    TIME_REVERSED_PAIRS,
    SyntheticMotion,
    make_clip,
    write_jester,
)
from cpnet.data.video import read_clip


def test_class_list_pairs_and_static():
    required = {"static", "slide_left", "slide_right", "slide_up", "slide_down", "grow", "shrink"}
    assert required | {"rotate_clockwise", "rotate_counterclockwise"} <= set(CLASS_NAMES)
    paired = [name for pair in TIME_REVERSED_PAIRS for name in pair]
    assert len(paired) == len(set(paired)) and set(paired) | {"static"} == set(CLASS_NAMES)
    assert set(FLIP_PAIRS) == {("slide_left", "slide_right"), ("rotate_clockwise", "rotate_counterclockwise")}


@pytest.mark.parametrize("noise,distractors", [(0.0, 0), (0.1, 3)])
@pytest.mark.parametrize("pair", TIME_REVERSED_PAIRS)
def test_a_clip_reversed_is_its_partner_under_the_same_draws(pair, noise, distractors):
    """The property order-blind models cannot get around: with the same random draws, class a's clip played
    backwards is exactly class b's clip, so both have the same probability. A generator that draws start states
    per class (e.g. always starting centred) fails this."""
    a, b = pair
    for seed in range(4):
        frames_a, states_a = make_clip(np.random.default_rng(seed), a, 8, 32, noise, distractors)
        frames_b, states_b = make_clip(np.random.default_rng(seed), b, 8, 32, noise, distractors)
        np.testing.assert_array_equal(frames_b, frames_a[::-1])
        for key in states_a:
            np.testing.assert_allclose(states_b[key], states_a[key][::-1])


def test_pair_classes_share_one_distribution_of_frames():
    """Statistical check over the dataset itself: pooled over all frames, the two classes of a pair show the same
    distribution of shape states, while their first frames (order-aware) clearly differ."""
    ds = SyntheticMotion(9 * 150, num_frames=8, size=32, seed=7)
    states: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in CLASS_NAMES}
    for i in range(len(ds)):
        states[CLASS_NAMES[ds.label(i)]].append(ds.clip(i)[1])
    key_of = {"slide_left": "cx", "slide_up": "cy", "grow": "radius"}
    for a, b in TIME_REVERSED_PAIRS:
        if a not in key_of:
            continue
        key = key_of[a]
        pooled_a = np.concatenate([s[key] for s in states[a]])
        pooled_b = np.concatenate([s[key] for s in states[b]])
        scale = pooled_a.std() + pooled_b.std()
        assert abs(pooled_a.mean() - pooled_b.mean()) < 0.1 * scale, (a, b)
        qa, qb = np.quantile(pooled_a, [0.1, 0.5, 0.9]), np.quantile(pooled_b, [0.1, 0.5, 0.9])
        assert np.abs(qa - qb).max() < 0.15 * scale, (a, b)
        first_a = np.mean([s[key][0] for s in states[a]])
        first_b = np.mean([s[key][0] for s in states[b]])
        assert abs(first_a - first_b) > 0.5 * scale, f"{a}/{b}: first frames should differ"
    # Rotation: pooled orientations (mod 2 pi) have the same histogram; the turning directions are opposite.
    hists = [
        np.histogram(np.concatenate([s["angle"] for s in states[n]]) % (2 * np.pi), bins=6, range=(0, 2 * np.pi))[0]
        for n in ("rotate_clockwise", "rotate_counterclockwise")
    ]
    assert np.abs(hists[0] - hists[1]).max() < 0.25 * hists[0].mean()


def test_each_class_moves_as_named_and_visibly():
    """Every class moves the named way, by amounts visible on a coarse feature grid: at 32 px a rotating shape's
    rim moves >= 2.5 px per frame (below that, a CP module on 8x8 maps could not tell the turning direction)."""
    ds = SyntheticMotion(9 * 10, num_frames=8, size=32, seed=1)
    for i in range(len(ds)):
        name = CLASS_NAMES[ds.label(i)]
        s = ds.clip(i)[1]
        dx, dy, dr, da = (np.diff(s[k]) for k in ("cx", "cy", "radius", "angle"))
        expected = {
            "slide_right": dx >= 1.5, "slide_left": dx <= -1.5, "slide_down": dy >= 1.5, "slide_up": dy <= -1.5,
            "grow": dr > 0.3, "shrink": dr < -0.3,
            "rotate_clockwise": da >= np.deg2rad(12), "rotate_counterclockwise": da <= -np.deg2rad(12),
            "static": (dx == 0) & (dy == 0) & (dr == 0) & (da == 0),
        }[name]  # fmt: skip
        assert np.all(expected), name
        if name.startswith("rotate"):
            assert np.all(np.abs(da) * s["radius"][1:] >= 2.5), f"{name}: rim moves too little per frame"


def test_increasing_angle_turns_clockwise_on_screen():
    """Image y points down, so clockwise on screen takes the shape's 'up' side to its right."""
    centroids = []
    for angle in (0.0, np.pi / 2):
        canvas = np.zeros((1, 41, 41, 3))
        white = render.Plaid((0.0, 0.0), (1.0, 1.0), (0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
        one = np.ones(1)
        render.draw_shape(canvas, "half_disk", white, 20.5 * one, 20.5 * one, 15 * one, angle * one, 15.0)
        mass = canvas[0, ..., 0]
        yy, xx = np.mgrid[0:41, 0:41] + 0.5
        centroids.append(((mass * xx).sum() / mass.sum() - 20.5, (mass * yy).sum() / mass.sum() - 20.5))
    (x0, y0), (x1, y1) = centroids
    assert y0 < -3 and abs(x0) < 1, "at angle 0 the half disk points up"
    assert x1 > 3 and abs(y1) < 1, "a quarter turn clockwise points it right"


def test_clips_are_deterministic_and_parameters_matter():
    a, b = SyntheticMotion(20, seed=3), SyntheticMotion(20, seed=3)
    np.testing.assert_array_equal(a[13][0], b[13][0])
    assert not np.array_equal(a[13][0], SyntheticMotion(20, seed=4)[13][0])
    assert not np.array_equal(a[13][0], SyntheticMotion(20, seed=3, stream=1)[13][0])
    assert [a.label(i) for i in range(9)] == list(range(9))
    frames, label = SyntheticMotion(9, num_frames=5, size=24, noise=0, distractors=0)[0]
    assert frames.shape == (5, 24, 24, 3) and frames.dtype == np.uint8 and CLASS_NAMES[label] == "static"
    assert all(np.array_equal(f, frames[0]) for f in frames), "no noise, no distractors: a static clip is still"
    noisy = SyntheticMotion(9, num_frames=5, size=24, noise=0.05, distractors=0)[0][0]
    assert not np.array_equal(noisy[0], noisy[1])
    with pytest.raises(ValueError, match="num_frames"):
        SyntheticMotion(5, num_frames=1)


def test_write_jester_layout_reuse_and_reader(tmp_path):
    root = write_jester(tmp_path / "synth", num_train=18, num_val=9, num_frames=4, size=16, seed=2)
    assert (root / "jester-v1-labels.csv").read_text().split("\n")[:2] == CLASS_NAMES[:2]
    assert (root / "jester-v1-train.csv").read_text().splitlines()[1] == "2;slide_left"
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["complete"] and manifest["args"]["num_train"] == 18
    train = load_split("jester", root, "train")
    val = load_split("jester", root, "val")
    assert len(train.records) == 18 and len(val.records) == 9 and val.records[0].video_id == "19"
    assert train.class_names == CLASS_NAMES and set(train.flip_pairs) == set(FLIP_PAIRS)
    assert all(r.num_frames == 4 for r in train.records)
    reference = SyntheticMotion(9, num_frames=4, size=16, seed=2, stream=1)
    decoded = read_clip(val.records[3].path, range(4))
    assert val.records[3].label == reference.label(3)
    assert np.abs(decoded.astype(int) - reference[3][0]).mean() < 8  # JPEG error only

    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert write_jester(root, num_train=18, num_val=9, num_frames=4, size=16, seed=2) == root
    assert (root / MANIFEST).stat().st_mtime_ns == stamp, "same arguments: reused, not rewritten"
    write_jester(root, num_train=9, num_val=9, num_frames=4, size=16, seed=2)
    assert len(load_split("jester", root, "train").records) == 9, "other arguments: regenerated"

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(ValueError, match="not empty"):
        write_jester(foreign, num_train=9, num_val=0)


def test_write_jester_with_worker_processes_writes_the_same_files(tmp_path):
    args = dict(num_train=12, num_val=3, num_frames=3, size=12, seed=5)
    one = write_jester(tmp_path / "one", **args)
    two = write_jester(tmp_path / "two", **args, workers=2)
    names = sorted(p.relative_to(one) for p in (one / "20bn-jester-v1").rglob("*.jpg"))
    assert len(names) == 15 * 3 and names == sorted(p.relative_to(two) for p in (two / "20bn-jester-v1").rglob("*.jpg"))
    assert all((one / n).read_bytes() == (two / n).read_bytes() for n in names)
