"""`cpnet predict` with a tiny trained C2D (the robustness suite's one-epoch run): text and JSON output, --topk,
--device, --views averaging checked against the per-view softmax computed by hand, the timeline files, and a video
read as a live stream (every --stride, --max-seconds, Ctrl-C, a refreshed terminal line)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from cpnet.app.predict import predict_file
from cpnet.app.trained import load_trained
from cpnet.cli import main
from cpnet.data.stream import StreamReader
from cpnet.data.synthetic import CLASS_NAMES
from cpnet.data.transforms import eval_transform, view_transform
from cpnet.data.video import read_clip
from cpnet.data.views import view_protocol
from tests.data.media import indexed_frames, write_video

FPS = 12
NUM_FRAMES = 48  # 4 s at 12 fps
T, SIZE = 4, 16  # the tiny config's clip: 4 frames, stride 1, 16x16


@pytest.fixture(scope="module")
def checkpoint(trained_run):  # noqa: F811 (the imported fixture)
    return str(trained_run / "checkpoint_best.pt")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 4 s, 12 fps, 32x48 H.264 video (wide: the 3 crops of a view protocol differ)."""
    frames = indexed_frames(NUM_FRAMES, 32, 48, step=4)
    return str(write_video(tmp_path_factory.mktemp("predict") / "long.mp4", frames, fps=FPS, codec="libx264"))


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_trained(checkpoint, torch.device("cpu"))[0]


def _predict(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys, *argv: str) -> dict:
    code, out, err = _predict(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@torch.inference_mode()
def _softmax_of(model, clips: list[torch.Tensor]) -> np.ndarray:
    """The mean over views of each view's softmax, one view at a time."""
    return np.mean([torch.softmax(model(c[None]).double(), dim=1)[0].numpy() for c in clips], axis=0)


def _by_class(result: dict) -> dict[str, float]:
    return {c["class"]: c["probability"] for c in result["top"]}


def test_text_output_ranks_topk_classes_and_top_still_works(capsys, video, checkpoint):
    for option, k in (("--topk", 3), ("--top", 2)):
        code, out, err = _predict(capsys, video, "--checkpoint", checkpoint, option, str(k), "--device", "cpu")
        assert code == 0
        header, *lines = out.strip().splitlines()
        assert header.startswith(f"{video}: ") and "single views" in header  # which video the list is about
        assert [line.split()[0] for line in lines] == [f"{i}." for i in range(1, k + 1)]
        assert {line.split()[1] for line in lines} <= set(CLASS_NAMES)
        assert "clips/s on cpu" in err  # throughput on stderr: stdout stays the header and the ranked list


def test_json_states_classes_model_checkpoint_views_and_throughput(capsys, video, checkpoint):
    result = _json(capsys, video, "--checkpoint", checkpoint, "--topk", "3", "--device", "cpu")
    assert set(result) == {"source", "model", "checkpoint", "device", "views", "top", "clips", "seconds",
                           "clips_per_s"}
    assert result["model"] == "c2d_r18" and result["checkpoint"] == checkpoint and result["source"] == video
    assert result["device"] == "cpu"
    assert result["views"] == {"protocol": "single", "clips": 1, "crops": 1, "per_prediction": 1}
    probs = [c["probability"] for c in result["top"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert {c["class"] for c in result["top"]} <= set(CLASS_NAMES)
    assert result["clips"] == 1 and result["clips_per_s"] > 0 and result["seconds"] > 0


def test_single_view_is_the_centre_clip_and_crop(capsys, video, checkpoint, model):
    result = _json(capsys, video, "--checkpoint", checkpoint, "--topk", str(len(CLASS_NAMES)), "--device", "cpu")
    frames = read_clip(video, np.arange(22, 26))  # the centre 4 of 48 frames
    expected = _softmax_of(model, [eval_transform(frames, SIZE, SIZE)])
    got = _by_class(result)
    assert [got[name] for name in CLASS_NAMES] == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.mark.parametrize("protocol", ["kinetics", "released"])
def test_views_average_the_softmax_of_every_view(capsys, video, checkpoint, model, protocol):
    result = _json(capsys, video, "--checkpoint", checkpoint, "--views", protocol, "--topk", str(len(CLASS_NAMES)),
                   "--device", "cpu")
    views = view_protocol(protocol)
    clips = []
    for clip in range(views.clips):
        frames = read_clip(video, views.clip_indices(NUM_FRAMES, T, 1, "dense", clip))
        clips += [view_transform(frames, SIZE, views, SIZE, crop) for crop in range(views.crops)]
    assert not torch.equal(clips[0], clips[1])  # the crops differ on this wide video
    expected = _softmax_of(model, clips)
    assert result["views"]["per_prediction"] == views.views == result["clips"]
    got = _by_class(result)
    assert [got[name] for name in CLASS_NAMES] == pytest.approx(expected.tolist(), abs=1e-5)


def test_predict_file_keeps_its_api(video, checkpoint):
    pairs = predict_file(video, checkpoint, top=3)
    assert len(pairs) == 3 and all(name in CLASS_NAMES and 0 < p < 1 for name, p in pairs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_one_line_error(capsys, video, checkpoint):
    code, _, err = _predict(capsys, video, "--checkpoint", checkpoint, "--device", "cuda")
    assert code == 2 and "--device=cuda" in err and len(err.strip().splitlines()) == 1


@pytest.mark.cuda
def test_device_cuda_matches_cpu(capsys, video, checkpoint):
    on_cpu = _json(capsys, video, "--checkpoint", checkpoint, "--device", "cpu", "--views", "kinetics")
    on_gpu = _json(capsys, video, "--checkpoint", checkpoint, "--device", "cuda", "--views", "kinetics")
    assert on_gpu["device"].startswith("cuda")
    assert [c["probability"] for c in on_gpu["top"]] == pytest.approx([c["probability"] for c in on_cpu["top"]],
                                                                      abs=1e-4)


def test_timeline_writes_one_row_per_window_json_and_png(capsys, video, checkpoint, model, tmp_path):
    out = tmp_path / "timeline"
    argv = [video, "--checkpoint", checkpoint, "--window", "1", "--stride", "0.5", "--out", str(out), "--topk", "3",
            "--device", "cpu"]
    code, stdout, _ = _predict(capsys, *argv)
    assert code == 0 and "7 windows" in stdout and "clips/s" in stdout
    rows = (out / "timeline.csv").read_text().strip().splitlines()
    assert rows[0].split(",") == ["window", "start_s", "end_s", "class_1", "probability_1", "class_2",
                                  "probability_2", "class_3", "probability_3"]
    assert len(rows) == 1 + 7 and [r.split(",")[1] for r in rows[1:]] == ["0", "0.5", "1", "1.5", "2", "2.5", "3"]
    timeline = json.loads((out / "timeline.json").read_text())
    assert len(timeline["windows"]) == 7 and timeline["fps"] == FPS and timeline["num_frames"] == NUM_FRAMES
    assert timeline["window_s"] == 1 and timeline["stride_s"] == 0.5 and timeline["clips"] == 7
    assert len(timeline["series"]) == 3 and all(len(v) == 7 for v in timeline["series"].values())
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Window 2 is 1-2 s, frames 12-23: its clip is the centre 4 of them, frames 16-19.
    expected = _softmax_of(model, [eval_transform(read_clip(video, np.arange(16, 20)), SIZE, SIZE)])
    best = timeline["windows"][2]["top"][0]
    assert best["probability"] == pytest.approx(expected.max(), abs=1e-5)
    assert best["class"] == CLASS_NAMES[int(expected.argmax())]


def test_timeline_refuses_existing_files_without_force(capsys, video, checkpoint, tmp_path):
    argv = [video, "--checkpoint", checkpoint, "--window", "2", "--out", str(tmp_path), "--device", "cpu"]
    assert _predict(capsys, *argv)[0] == 0
    code, _, err = _predict(capsys, *argv)
    assert code == 2 and "timeline.csv" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert _predict(capsys, *argv, "--force")[0] == 0
    timeline = _json(capsys, *argv, "--force")
    assert [(w["start_s"], w["end_s"]) for w in timeline["windows"]] == [(0, 2), (2, 4)]


def test_a_video_read_as_a_stream_predicts_every_stride(capsys, video, checkpoint):
    code, out, _ = _predict(capsys, video, "--stream", "--checkpoint", checkpoint, "--stride", "1", "--device", "cpu")
    assert code == 0
    *lines, summary = out.strip().splitlines()
    assert [float(line.split()[0].rstrip("s")) for line in lines] == [0.25, 1.25, 2.25, 3.25]
    assert all(len(line.split()) == 1 + 2 * 5 for line in lines)  # time, then 5 x (class, probability)
    assert summary.startswith("stopped (end of stream): 4 predictions over 4.0 s") and "clips/s" in summary


def test_stream_json_lines_stop_after_max_seconds(capsys, video, checkpoint, model):
    code, out, err = _predict(capsys, video, "--stream", "--checkpoint", checkpoint, "--max-seconds", "2", "--json",
                              "--topk", str(len(CLASS_NAMES)), "--device", "cpu")
    assert code == 0, err
    *rows, summary = (json.loads(line) for line in out.strip().splitlines())
    # One clip span (4 frames = 1/3 s) apart, ending at frames 3, 7, ..., 23: those before 2 s.
    assert [round(r["time_s"] * FPS) for r in rows] == [3, 7, 11, 15, 19, 23]
    assert summary["stopped"] == "after --max-seconds 2" and summary["predictions"] == 6 and summary["clips"] == 6
    assert summary["span_s"] == pytest.approx(4 / FPS) and summary["clips_per_s"] > 0
    assert summary["model"] == "c2d_r18" and summary["views"]["protocol"] == "single"
    # The ring's clip is prepared exactly as evaluation prepares frames 0-3 of the file.
    expected = _softmax_of(model, [eval_transform(read_clip(video, np.arange(4)), SIZE, SIZE)])
    got = _by_class(rows[0])
    assert [got[name] for name in CLASS_NAMES] == pytest.approx(expected.tolist(), abs=1e-5)


def test_ctrl_c_closes_the_source_prints_a_summary_and_exits_0(capsys, video, checkpoint, monkeypatch):
    real_frames, closed = StreamReader.frames, []

    def frames_then_ctrl_c(self):
        for i, item in enumerate(real_frames(self)):
            if i == 6:
                raise KeyboardInterrupt
            yield item

    real_close = StreamReader.close
    monkeypatch.setattr(StreamReader, "frames", frames_then_ctrl_c)
    monkeypatch.setattr(StreamReader, "close", lambda self: (closed.append(True), real_close(self)))
    code, out, _ = _predict(capsys, video, "--stream", "--checkpoint", checkpoint, "--device", "cpu")
    assert code == 0 and closed
    *lines, summary = out.strip().splitlines()
    assert len(lines) == 1 and summary.startswith("stopped (interrupted): 1 predictions") and "clips/s" in summary


def test_a_terminal_sees_one_refreshed_line(capsys, video, checkpoint, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = _predict(capsys, video, "--stream", "--checkpoint", checkpoint, "--stride", "1", "--device", "cpu")
    assert code == 0
    live, summary = out.rstrip("\n").split("\n")
    assert live.count("\r") == 4 and live.count("\x1b[K") == 4 and summary.startswith("stopped (end of stream)")


@pytest.mark.parametrize(
    "extra, message",
    [(["--stride", "1"], "--stride needs --window"), (["--max-seconds", "1"], "--stream"),
     (["--topk", "0"], "--topk must be >= 1"), (["--window", "0"], "--window must be > 0"),
     (["--stream", "--out", "x"], "--out writes a timeline")],
)
def test_option_mistakes_are_one_line_errors(capsys, video, checkpoint, extra, message):
    code, _, err = _predict(capsys, video, "--checkpoint", checkpoint, "--device", "cpu", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_or_unsuitable_sources_name_themselves(capsys, checkpoint, synthetic_root, tmp_path):  # noqa: F811
    code, _, err = _predict(capsys, str(tmp_path / "gone.mp4"), "--stream", "--checkpoint", checkpoint)
    assert code == 2 and "gone.mp4" in err
    folder = synthetic_root / "20bn-jester-v1" / "1"
    code, _, err = _predict(capsys, str(folder), "--stream", "--checkpoint", checkpoint)
    assert code == 2 and "frame folder" in err


def test_a_frame_folder_timeline_plays_at_fps(capsys, checkpoint, synthetic_root, tmp_path):  # noqa: F811
    folder = synthetic_root / "20bn-jester-v1" / "1"  # 4 frames: 1 s at --fps 4
    timeline = _json(capsys, str(folder), "--checkpoint", checkpoint, "--window", "0.5", "--fps", "4", "--out",
                     str(tmp_path), "--device", "cpu")
    assert timeline["fps"] == 4 and timeline["num_frames"] == 4 and timeline["duration_s"] == 1
    assert [(w["start_s"], w["end_s"]) for w in timeline["windows"]] == [(0, 0.5), (0.5, 1.0)]


@pytest.mark.robustness
def test_a_dangling_timeline_symlink_is_refused_and_never_written_through(capsys, video, checkpoint, tmp_path):
    """Issue 24 #12: timeline.csv as a dangling symlink in --out skipped the 'exists' check and was written
    through the link."""
    out, target = tmp_path / "timeline", tmp_path / "elsewhere.csv"
    out.mkdir()
    (out / "timeline.csv").symlink_to(target)
    argv = [video, "--checkpoint", checkpoint, "--window", "2", "--out", str(out), "--device", "cpu"]
    code, _, err = _predict(capsys, *argv)
    assert code == 2 and "timeline.csv already exists" in err and not target.exists()
    assert _predict(capsys, *argv, "--force")[0] == 0
    assert not target.exists() and not (out / "timeline.csv").is_symlink()  # the link replaced, not followed


def test_a_video_given_as_the_checkpoint_is_named_without_torchs_unsafe_advice(capsys, video):
    """Issue 23.7: `predict --checkpoint video.mp4` relayed torch's advice to load with weights_only=False."""
    code, _, err = _predict(capsys, video, "--checkpoint", video)
    assert code == 2 and "not a PyTorch file at all" in err and "weights_only" not in err


def test_overlay_writes_the_video_with_its_predictions_drawn(capsys, video, checkpoint, tmp_path):
    """Issue 23.6: `predict --overlay out.mp4` (mmaction2's demo video): every frame of the input, with the top
    classes of the window around it and a running timeline drawn on it."""
    video = str(write_video(tmp_path / "big.mp4", indexed_frames(24, 144, 240, step=8), fps=FPS, codec="libx264"))
    out = tmp_path / "overlay.mp4"
    code, printed, err = _predict(capsys, video, "--checkpoint", checkpoint, "--overlay", str(out), "--topk", "2")
    assert code == 0, err
    assert f"wrote {out}" in printed and printed.splitlines()[0].startswith(f"{video}: ")
    drawn, source = read_clip(out, np.arange(24)), read_clip(video, np.arange(24))
    assert drawn.shape == source.shape  # every frame, the same size
    box = np.abs(drawn[:, 4:16, 4:60].astype(int) - source[:, 4:16, 4:60]).mean()  # the labels at the top left
    strip = np.abs(drawn[:, -8:].astype(int) - source[:, -8:]).mean()  # the running timeline along the bottom
    middle = np.abs(drawn[:, 60:90, 120:200].astype(int) - source[:, 60:90, 120:200]).mean()  # nothing drawn
    assert box > 10 and strip > 10 and middle < 4
    code, _, err = _predict(capsys, video, "--checkpoint", checkpoint, "--overlay", str(out))
    assert code == 2 and "already exists" in err  # nothing replaced without --force
    code, _, err = _predict(capsys, video, "--checkpoint", checkpoint, "--overlay", str(tmp_path / "o.gif"))
    assert code == 2 and "expected a video file name ending in .mp4" in err
