"""`cpnet data prepare`: re-encoding, frame extraction and list files, on tiny videos written into ``tmp_path``."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cpnet.cli import main
from cpnet.data import prepare
from cpnet.data.annotations import load_split
from cpnet.data.frames import count_frames as count_folder_frames
from cpnet.data.video import read_clip
from tests.data.media import frame_index_of, indexed_frames, write_frame_folder, write_video

NUM_FRAMES = 24  # per source video, 48x32 (landscape) or 32x48 (portrait), 12 fps


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """Three sources: nested H.264 (with a space in a folder name), a portrait VP8 webm, and an mp4 at the top."""
    root = tmp_path / "src"
    write_video(root / "run" / "a b" / "one.mp4", indexed_frames(NUM_FRAMES, 32, 48), codec="libx264")
    write_video(root / "run" / "two.webm", indexed_frames(NUM_FRAMES, 48, 32, seed=1), codec="libvpx")
    write_video(root / "three.mp4", indexed_frames(NUM_FRAMES, 32, 48, seed=2), codec="mpeg4")
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def keyframes(path: Path) -> tuple[list[int], int, int, int, str]:
    """(keyframe positions in presentation order, frame count, width, height, codec) read from the packets."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = sorted((p for p in container.demux(stream) if p.size), key=lambda p: p.pts)
        ctx = stream.codec_context
        return [i for i, p in enumerate(packets) if p.is_keyframe], len(packets), ctx.width, ctx.height, ctx.name


def test_output_size_is_even_keeps_aspect_and_never_upscales():
    assert prepare.output_size(340, 256, 128) == (170, 128)
    assert prepare.output_size(256, 340, 160) == (160, 212)
    assert prepare.output_size(341, 255, 128) == (172, 128)  # 171.1 rounds to the even 172
    assert prepare.output_size(100, 60, 128) == (100, 60)  # already small: kept
    assert prepare.output_size(101, 61, 128) == (100, 60)  # odd sizes round down


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_reencode_sets_short_side_and_keyframe_interval(src, tmp_path, codec):
    out = tmp_path / "out"
    report = prepare.reencode(src, out, 16, keyframe_interval=5, codec=codec)
    assert report.done == ["run/a b/one.mp4", "run/two.webm", "three.mp4"] and not report.bad and not report.skipped
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "run/a b/one.mp4", "run/two.mp4", "three.mp4"
    ]  # fmt: skip
    for name, size in (("run/a b/one.mp4", (24, 16)), ("run/two.mp4", (16, 24))):
        keys, n, width, height, name_of_codec = keyframes(out / name)
        assert (width, height, n) == (*size, NUM_FRAMES)
        assert name_of_codec == {"libx264": "h264", "mpeg4": "mpeg4"}[codec]
        assert keys[0] == 0 and max(np.diff([*keys, n])) <= 5 and len(keys) >= math.ceil(NUM_FRAMES / 5)
        # The reader decodes the re-encoded file frame-accurately, a seek included.
        clip = read_clip(out / name, [0, 11, 23])
        assert clip.shape == (3, size[1], size[0], 3) and [frame_index_of(f) for f in clip] == [0, 11, 23]


def test_reencode_fps_and_the_default_codec(src, tmp_path):
    out = tmp_path / "out"
    prepare.reencode(src, out, 16, fps=6)
    _, n, *_, codec = keyframes(out / "three.mp4")
    assert n == NUM_FRAMES // 2 and codec == ("h264" if "libx264" in av.codecs_available else "mpeg4")
    assert [frame_index_of(f) for f in read_clip(out / "three.mp4", [0, 1, 11])] == [0, 2, 22]  # every other frame


def test_frames_layout_count_and_size(src, tmp_path):
    out = tmp_path / "frames"
    report = prepare.extract_frames(src, out, short_side=16)
    assert report.summary() == "3 done, 0 skipped (already done), 0 bad"
    assert sorted(p.name for p in out.iterdir()) == ["run__a b__one", "run__two", "three"]
    assert sorted(p.name for p in (out / "three").iterdir())[:2] == ["00001.jpg", "00002.jpg"]
    for name in ("run__a b__one", "run__two", "three"):
        assert count_folder_frames(out / name) == NUM_FRAMES
        assert min(Image.open(out / name / "00001.jpg").size) == 16
    assert [frame_index_of(f) for f in read_clip(out / "run__two", [0, 23])] == [0, 23]
    tree = tmp_path / "tree"
    prepare.extract_frames(src, tree, keep_tree=True, fps=4)
    assert count_folder_frames(tree / "run" / "a b" / "one") == NUM_FRAMES // 3
    assert Image.open(tree / "run" / "two" / "00001.jpg").size == (32, 48)  # source size by default


def test_resume_skips_done_outputs_and_redoes_unfinished_ones(src, tmp_path):
    out = tmp_path / "out"
    assert len(prepare.reencode(src, out, 16).done) == 3
    before = tree_hashes(out)
    again = prepare.reencode(src, out, 16)
    assert again.summary() == "0 done, 3 skipped (already done), 0 bad" and tree_hashes(out) == before
    # A killed run leaves a temporary and no output: the next run removes the temporary and redoes that output.
    (out / "three.mp4").unlink()
    (out / ".three.mp4.cpnet-partial").write_bytes(b"half a video")
    (out / "run" / ".two.mp4.cpnet-partial").write_bytes(b"half a video")
    third = prepare.reencode(src, out, 16)
    assert (third.done, third.stale_removed, len(third.skipped)) == (["three.mp4"], 2, 2)
    assert not list(out.rglob("*.cpnet-partial")) and tree_hashes(out) == before
    forced = prepare.reencode(src, out, 16, keyframe_interval=3, force=True)
    assert len(forced.done) == 3 and not list(out.rglob(".*")) and tree_hashes(out) != before
    frames = tmp_path / "frames"
    prepare.extract_frames(src, frames)
    (frames / ".run__two.cpnet-partial").mkdir()
    (frames / ".run__two.cpnet-partial" / "00001.jpg").write_bytes(b"x")
    assert prepare.extract_frames(src, frames).stale_removed == 1 and not (frames / ".run__two.cpnet-partial").exists()


def test_bad_inputs_are_named_counted_and_exit_1(src, tmp_path, capsys):
    (src / "junk.mp4").write_bytes(b"not a video")
    good = (src / "run" / "two.webm").read_bytes()
    (src / "cut.webm").write_bytes(good[: len(good) // 2])  # a truncated download
    write_video(src / "three.webm", indexed_frames(4))  # its output three.mp4 is also three.mp4's
    out = tmp_path / "out"
    assert main(["data", "prepare", "reencode", "--src", str(src), "--out", str(out), "--short-side", "16"]) == 1
    text = capsys.readouterr().out
    assert "3 done, 0 skipped (already done), 3 bad" in text
    assert f"bad junk.mp4: {src / 'junk.mp4'}: not a readable video" in text
    assert f"bad cut.webm: {src / 'cut.webm'}: truncated: " in text
    assert f"bad three.webm: {src / 'three.webm'}: its output" in text and "collides with that of three.mp4" in text
    assert not (out / "junk.mp4").exists() and not (out / "cut.mp4").exists() and not list(out.rglob(".*"))
    args = ["data", "prepare", "frames", "--src", str(src / "run"), "--out", str(tmp_path / "f"), "--workers", "2"]
    assert main(args) == 0 and "2 done, 0 skipped (already done), 0 bad" in capsys.readouterr().out


def test_originals_are_never_touched(src, tmp_path):
    before = tree_hashes(src)
    prepare.reencode(src, tmp_path / "out", 16)
    prepare.reencode(src, tmp_path / "out", 16, force=True)
    prepare.extract_frames(src, tmp_path / "frames", short_side=16, keep_tree=True)
    assert tree_hashes(src) == before and sorted(os.listdir(src)) == ["run", "three.mp4"]


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_an_output_folder_overlapping_the_source_is_refused(src, where, capsys):
    out = {"same": src, "inside": src / "run" / "small", "around": src.parent}[where]
    before = tree_hashes(src.parent)
    for step in ("reencode", "frames"):
        assert main(["data", "prepare", step, "--src", str(src), "--out", str(out), "--short-side", "16"]) == 2
        assert "overlaps --src" in capsys.readouterr().err
    assert tree_hashes(src.parent) == before and not (src / "run" / "small").exists()


def test_a_symlink_into_the_source_is_not_written_through(src, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run").symlink_to(src / "run")
    before = tree_hashes(src)
    report = prepare.reencode(src, out, 16)
    assert report.done == ["three.mp4"] and "resolves into --src" in report.bad["run/two.webm"]
    assert tree_hashes(src) == before


def test_parallel_workers_give_the_same_outputs(src, tmp_path):
    one = prepare.reencode(src, tmp_path / "one", 16, keyframe_interval=4, workers=1)
    two = prepare.reencode(src, tmp_path / "two", 16, keyframe_interval=4, workers=2)
    assert (one.done, one.bad) == (two.done, two.bad)
    assert_equivalent_trees(tmp_path / "one", tmp_path / "two")
    f1 = prepare.extract_frames(src, tmp_path / "f1", short_side=16, workers=1)
    f2 = prepare.extract_frames(src, tmp_path / "f2", short_side=16, workers=2)
    assert (f1.done, f1.bad) == (f2.done, f2.bad)
    assert_equivalent_trees(tmp_path / "f1", tmp_path / "f2")


def decoded(path: Path) -> np.ndarray:
    """A video's frames, or one image, as an int array (frames, H, W, 3)."""
    if path.suffix == ".mp4":
        with av.open(str(path)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(int)
    return np.asarray(Image.open(path).convert("RGB"), dtype=int)[None]


def assert_equivalent_trees(a: Path, b: Path) -> None:
    """The two folders hold the same files, decoding to the same frame counts and sizes and to pixels within a few
    grey levels. Not the same bytes: x264 sometimes encoded one source differently in two processes (seen about one
    suite run in four; decoded frames up to 6 grey levels apart)."""
    names = sorted(tree_hashes(a))
    assert names == sorted(tree_hashes(b))
    for name in names:
        x, y = decoded(a / name), decoded(b / name)
        assert x.shape == y.shape, (name, x.shape, y.shape)
        assert np.abs(x - y).max() <= 16 and np.abs(x - y).mean() <= 1.0, name


def test_bad_options_name_the_value(src, tmp_path):
    with pytest.raises(ValueError, match="short side 15: expected an even"):
        prepare.reencode(src, tmp_path / "out", 15)
    with pytest.raises(ValueError, match="fps 0: expected"):
        prepare.extract_frames(src, tmp_path / "out", fps=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos under"):
        prepare.reencode(tmp_path / "empty", tmp_path / "out", 16)
    with pytest.raises(FileNotFoundError, match="source folder not found"):
        prepare.reencode(tmp_path / "nope", tmp_path / "out", 16)


def write_folder_tree(root: Path) -> Path:
    """``root/{train,val}/<class>/<video or frame folder>`` plus one loose, unlabelled test video."""
    for split, items in {"train": [("air drumming", "a.mp4"), ("zumba", "b"), ("zumba", "c.webm")],
                         "val": [("zumba", "d"), ("air drumming", "e.mp4")]}.items():  # fmt: skip
        for cls, name in items:
            if name.endswith((".mp4", ".webm")):
                codec = "mpeg4" if name.endswith(".mp4") else "libvpx"
                write_video(root / split / cls / name, indexed_frames(4), codec=codec)
            else:
                write_frame_folder(root / split / cls / name, indexed_frames(3))
    write_video(root / "test" / "f.webm", indexed_frames(4))
    return root


def test_lists_from_a_folder_tree_read_back_as_the_same_dataset(tmp_path, capsys):
    root = write_folder_tree(tmp_path / "data")
    out = tmp_path / "lists"
    assert main(["data", "prepare", "lists", "--root", str(root), "--out", str(out)]) == 0
    assert "train.txt (3 videos), validation.txt (2 videos), test.txt (1 videos)" in capsys.readouterr().out
    assert (out / "classes.txt").read_text() == "air drumming\nzumba\n"
    assert (out / "train.txt").read_text() == (
        "../data/train/air drumming/a.mp4 0\n../data/train/zumba/b 1\n../data/train/zumba/c.webm 1\n"
    )
    assert (out / "test.txt").read_text() == "../data/test/f.webm -1\n"
    for split in ("train", "validation", "test"):
        listed, folder = load_split("list", out, split), load_split("folder", root, split)
        assert listed.class_names == folder.class_names
        assert [(r.path.resolve(), r.label) for r in listed.records] == [
            (r.path.resolve(), r.label) for r in folder.records
        ]
    assert prepare.write_lists(root, out) == {"train": 3, "validation": 2, "test": 1}  # same content: fine
    (out / "classes.txt").write_text("mine\n")
    with pytest.raises(ValueError, match="classes.txt exists with other content"):
        prepare.write_lists(root, out)
    prepare.write_lists(root, out, force=True)
    assert (out / "classes.txt").read_text() == "air drumming\nzumba\n"


def test_lists_refuse_names_that_would_not_read_back(tmp_path):
    root = write_folder_tree(tmp_path / "data")
    write_frame_folder(root / "train" / "zumba" / "clip 7", indexed_frames(2))
    with pytest.raises(ValueError, match="clip 7: this name cannot be written to a list file"):
        prepare.write_lists(root, root)
    assert not (root / "train.txt").exists()


def test_prepare_without_a_step_prints_help(capsys):
    assert main(["data", "prepare"]) == 2
    assert "reencode" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_a_video_is_bad_not_a_hang(src, tmp_path, capsys):
    os.mkfifo(src / "pipe.mp4")  # av.open on a FIFO waits for a writer forever
    out = tmp_path / "out"
    assert main(["data", "prepare", "reencode", "--src", str(src), "--out", str(out), "--short-side", "16"]) == 1
    text = capsys.readouterr().out
    assert "bad pipe.mp4: " in text and "not a regular file" in text and "3 done" in text


def test_lists_advise_a_command_that_exists_and_name_the_files_they_leave_out(tmp_path, capsys):
    """Issue 23.5 and 23.6: the advice named `train --dataset list --root D`, which does not exist; a file that is
    neither a video nor a frame folder was dropped without a word, and MPEG-TS (.ts) was one of them."""
    import shlex

    from cpnet.app.config import load_config

    root = write_folder_tree(tmp_path / "data")
    (root / "train" / "zumba" / "notes.txt").write_text("not a video\n")
    (root / "train" / "zumba" / "d.ts").write_bytes(b"")  # an MPEG-TS file: read as a video now
    out = tmp_path / "lists"
    with pytest.warns(UserWarning, match=r"folder train: 1 file\(s\) ignored.*\.txt x1: zumba/notes.txt"):
        assert main(["data", "prepare", "lists", "--root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train.txt (4 videos)" in printed and "d.ts" in (out / "train.txt").read_text()
    advice = printed.split("train with: ", 1)[1].split()
    assert advice[:2] == ["cpnet", "train"]
    overrides = [advice[i + 1] for i, word in enumerate(advice) if word == "--set"]
    cfg = load_config(None, overrides)  # every advised key exists
    assert cfg.data.dataset == "list" and cfg.data.root == str(out), shlex.join(advice)


def test_prepare_counts_the_files_it_does_not_take_as_videos(tmp_path, capsys):
    src = tmp_path / "src"
    write_video(src / "a.mp4", indexed_frames(4, 32, 48), codec="libx264")
    (src / "README.txt").write_text("my notes\n")
    assert main(["data", "prepare", "frames", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "1 done" in printed and "source folder: 1 file(s) ignored" in printed and "README.txt" in printed
