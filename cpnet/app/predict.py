"""Classify with a trained checkpoint: one video file or frame folder, a long video window by window (a timeline),
or a live source (camera, network stream) as it arrives.

Every clip is prepared as evaluation prepares it. A file's views are those of a :class:`~cpnet.data.views.
ViewProtocol` over the whole file (a one-record :class:`~cpnet.data.dataset.ViewDataset`, as ``cpnet eval``); a
timeline window's and a live ring's are the same protocol's clips placed inside the window or the ring, cropped by
the same :func:`~cpnet.data.transforms.view_transform`. The softmax is averaged over the views, as ``cpnet eval``
averages a video's. Throughput (clips/s) counts the model's forward passes only, so it measures the model on the
device, not the decoder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from cpnet.app.config import DataConfig
from cpnet.app.datasets import single_file_clip, view_dataset
from cpnet.app.trained import load_trained
from cpnet.data.frames import media_kind
from cpnet.data.records import DatasetSplit, VideoRecord
from cpnet.data.stream import FrameRing, StreamReader, is_live_source, media_timing, time_windows, window_frames
from cpnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, view_transform
from cpnet.data.video import read_clip
from cpnet.data.views import PROTOCOL_NAMES, ViewProtocol, view_protocol
from cpnet.device import autocast, resolve_device
from cpnet.files import atomic_write_text
from cpnet.metrics import softmax
from cpnet.reports.tables import write_csv
from cpnet.reports.timeline import plot_timeline

__all__ = ["Predictor", "check_source", "classify_file", "is_live_source", "load_clip", "load_predictor",
           "predict_file", "predict_stream", "predict_timeline", "write_timeline"]

TIMELINE_FILES = ("timeline.csv", "timeline.json", "timeline.png")


@dataclass
class Predictor:
    """A trained checkpoint ready to classify clips under one view protocol. It counts the clips it ran and the
    seconds the model took for them (forward pass until the logits are on the host)."""

    model: torch.nn.Module  # in eval mode, on ``device``
    data: DataConfig  # the checkpoint's clip settings: num_frames, stride, sampling, size, short_side
    class_names: list[str]
    model_name: str
    checkpoint: Path
    device: torch.device
    protocol: ViewProtocol
    batch_size: int = 8
    amp: bool = False
    clips: int = 0
    model_seconds: float = 0.0

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.model_seconds if self.model_seconds > 0 else 0.0

    def header(self) -> dict:
        """What every JSON output states about the model and its views."""
        p = self.protocol
        return {"model": self.model_name, "checkpoint": str(self.checkpoint), "device": str(self.device),
                "views": {"protocol": p.name, "clips": p.clips, "crops": p.crops, "per_prediction": p.views}}

    @torch.inference_mode()
    def classify(self, batches: Iterable[torch.Tensor]) -> np.ndarray:
        """The mean softmax (K,) over every view in ``batches`` (float (B, 3, T, S, S) each)."""
        logits = []
        for batch in batches:
            start = time.perf_counter()
            with autocast(self.device, self.amp):
                out = self.model(batch.to(self.device)).float()
            logits.append(out.cpu().numpy())  # (B, K); the copy to the host waits for the device
            self.model_seconds += time.perf_counter() - start
            self.clips += len(batch)
        if not logits:
            raise ValueError("no view to classify")
        return softmax(np.concatenate(logits)).mean(axis=0)  # (V, K) -> (K,)

    def clip_indices(self, num_frames: int) -> list[np.ndarray]:
        """Positions (T,) of each of the protocol's clips among ``num_frames`` frames (a window, the ring)."""
        d = self.data
        return [self.protocol.clip_indices(num_frames, d.num_frames, d.stride, d.sampling, c)
                for c in range(self.protocol.clips)]

    def view_batches(self, clips: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """Every crop of each uint8 (T, H, W, 3) clip prepared as evaluation does, in batches (B, 3, T, S, S)."""
        views = (view_transform(frames, self.data.size, self.protocol, self.data.short_side, crop)
                 for frames in clips for crop in range(self.protocol.crops))
        return _batched(views, self.batch_size)

    def frames_probs(self, frames: np.ndarray) -> np.ndarray:
        """The mean softmax over the protocol's views placed in uint8 (N, H, W, 3) frames held in memory."""
        return self.classify(self.view_batches(frames[i] for i in self.clip_indices(len(frames))))

    def top(self, probs: np.ndarray, k: int) -> list[dict]:
        """The ``k`` most probable classes of (K,) ``probs``, best first."""
        order = np.argsort(-probs, kind="stable")[:k]
        return [{"class": self.class_names[i], "probability": float(probs[i])} for i in order]

    def throughput(self, started: float) -> dict:
        return {"clips": self.clips, "seconds": time.perf_counter() - started, "clips_per_s": self.clips_per_s}


def _batched(views: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    pending: list[torch.Tensor] = []
    for view in views:
        pending.append(view)
        if len(pending) == size:
            yield torch.stack(pending)  # (B, 3, T, S, S)
            pending = []
    if pending:
        yield torch.stack(pending)


def load_predictor(checkpoint: Path, device: str = "auto", views: str = "single") -> Predictor:
    """The checkpoint's model on ``device`` (auto, cpu or cuda) with the views of protocol ``views``."""
    if views not in PROTOCOL_NAMES:
        raise ValueError(f"--views {views!r}; expected one of {', '.join(PROTOCOL_NAMES)}")
    where = resolve_device(device, "--device")
    model, ckpt, cfg = load_trained(checkpoint, where)
    data = dataclasses.replace(cfg.data, skip_bad=False)  # one input: a bad file is an error, not a skipped view
    return Predictor(model, data, list(ckpt["class_names"]), cfg.model.name, Path(checkpoint), where,
                     view_protocol(views), batch_size=cfg.eval.batch_size, amp=cfg.train.amp)


@dataclass
class PredictOutcome:
    """What ``cpnet predict`` did: ``kind`` (``file``, ``timeline`` or ``live``), its JSON-ready result and the
    timeline files written."""

    kind: str
    result: dict
    files: list[Path]


def predict_command(source: str, checkpoint: str | Path, *, topk: int = 5, device: str = "auto",
                    views: str = "single", window: float | None = None, stride: float | None = None,
                    out: str | Path | None = None, force: bool = False, fps: float = 12.0, stream: bool = False,
                    fmt: str | None = None, max_seconds: float | None = None, overlay: str | Path | None = None,
                    emit: Callable[[dict], None] = print) -> PredictOutcome:
    """``cpnet predict``: classify a file, a file's windows (``window``: a timeline written to ``out``, default
    ``<name>_timeline``), a file drawn over (``overlay``: the video with its predictions, see
    :func:`cpnet.app.overlay.overlay_video`) or a live source (a device, a URL, or any file with ``stream``;
    ``emit`` gets each prediction)."""
    live = stream or is_live_source(source)
    _check_options(source, live, window=window, stride=stride, out=out, force=force, fmt=fmt,
                   max_seconds=max_seconds, overlay=overlay)
    check_source(source, live)
    predictor = load_predictor(Path(checkpoint), device, views)
    if overlay is not None:
        from cpnet.app.overlay import overlay_video

        result, written = overlay_video(predictor, Path(source), Path(overlay), topk=topk, window=window,
                                        stride=stride, force=force, folder_fps=fps)
        return PredictOutcome("timeline", result, [written])
    if live:
        return PredictOutcome("live", predict_stream(predictor, source, topk=topk, window=window, stride=stride,
                                                     max_seconds=max_seconds, fmt=fmt, fallback_fps=fps, emit=emit),
                              [])
    path = Path(source)
    if window is None:
        return PredictOutcome("file", classify_file(predictor, path, topk), [])
    result = predict_timeline(predictor, path, window=window, stride=stride, topk=topk, folder_fps=fps)
    folder = Path(out) if out else Path(f"{path.stem or path.name}_timeline")
    return PredictOutcome("timeline", result, write_timeline(result, folder, force=force))


def _check_options(source: str, live: bool, *, window: float | None, stride: float | None, out: str | Path | None,
                   force: bool, fmt: str | None, max_seconds: float | None, overlay: str | Path | None) -> None:
    """Refuse options that do not apply to the kind of source: each names itself."""
    if overlay is not None:
        if live or out is not None:
            raise ValueError("--overlay draws on a video file (not a live source) and writes only the video; "
                             "--out is for the timeline files of --window")
        return
    if live:
        for option, value in (("--out", out), ("--force", force)):
            if value:
                raise ValueError(f"{option} writes a timeline of a video file; {source} is read as a live source")
        return
    if max_seconds is not None or fmt:
        raise ValueError(f"--max-seconds and --format are for live sources; pass --stream to read {source} as one")
    if window is None:
        for option, value in (("--stride", stride), ("--out", out), ("--force", force)):
            if value:
                raise ValueError(f"{option} needs --window SECONDS (a timeline) or a live source")


def check_source(source: str, live: bool) -> None:
    """Refuse a missing file or folder (FileNotFoundError naming it), and a folder read as a live source."""
    if live and is_live_source(source):
        return
    kind = media_kind(Path(source))  # FileNotFoundError naming the path; MediaError for a FIFO or device
    if live and kind == "folder":
        raise ValueError(f"{source} is a frame folder; a live source is a video file, a device or a URL")


def classify_file(pred: Predictor, path: Path, topk: int) -> dict:
    """The top ``topk`` classes of a whole video file or frame folder under ``pred``'s views, as a JSON-ready dict
    with the model, checkpoint, views and throughput."""
    _check_topk(topk)
    started = time.perf_counter()
    path = Path(path)
    split = DatasetSplit(records=[VideoRecord(video_id=path.name, path=path, label=-1)], class_names=pred.class_names)
    views = view_dataset(pred.data, split, pred.protocol)
    probs = pred.classify(_batched((views[i][0] for i in range(len(views))), pred.batch_size))
    return {"source": str(path), **pred.header(), "top": pred.top(probs, topk), **pred.throughput(started)}


def predict_file(path: Path, checkpoint: Path, top: int = 5, device: str = "cpu",
                 views: str = "single") -> list[tuple[str, float]]:
    """The ``top`` (class name, probability) pairs for the video or frame folder at ``path``, best first: the
    softmax averaged over the views of protocol ``views`` (default: the single centre clip, centre crop)."""
    _check_topk(top)
    check_source(str(path), live=False)
    result = classify_file(load_predictor(checkpoint, device, views), Path(path), top)
    return [(c["class"], c["probability"]) for c in result["top"]]


def _check_topk(topk: int) -> None:
    if topk < 1:
        raise ValueError(f"--topk must be >= 1, got {topk}")


def _check_seconds(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0 seconds, got {value}")


# --- a long video, window by window --------------------------------------------------------------------------------

def predict_timeline(pred: Predictor, path: Path, *, window: float, stride: float | None = None, topk: int = 5,
                     folder_fps: float = 12.0) -> dict:
    """For each window of ``window`` seconds every ``stride`` seconds (default: ``window``), the protocol's clips
    sampled inside the window and its top ``topk`` classes. Timing comes from the container (a frame folder plays
    at ``folder_fps``). Returns the JSON-ready timeline; ``series`` holds, for the ``topk`` classes with the highest
    peak, the probability in every window."""
    _check_topk(topk)
    _check_seconds(window=window, stride=stride)
    started, path = time.perf_counter(), Path(path)
    stride = stride or window
    timing = media_timing(path, folder_fps)
    windows, probs = [], []
    for i, (start, end) in enumerate(time_windows(timing.duration, window, stride)):
        probs.append(_window_probs(pred, path, *window_frames(start, end, timing.fps, timing.num_frames)))
        windows.append({"index": i, "start_s": start, "end_s": end, "top": pred.top(probs[-1], topk)})
    table = np.stack(probs)  # (windows, K)
    peaks = np.argsort(-table.max(axis=0), kind="stable")[:topk]  # the classes to follow over time
    return {"source": str(path), **pred.header(), "fps": timing.fps, "num_frames": timing.num_frames,
            "duration_s": timing.duration, "window_s": window, "stride_s": stride, "windows": windows,
            "series": {pred.class_names[c]: table[:, c].tolist() for c in peaks}, **pred.throughput(started)}


def _window_probs(pred: Predictor, path: Path, first: int, count: int) -> np.ndarray:
    """The mean softmax over the protocol's views placed in frames [first, first + count) of ``path``."""
    clips = [first + positions for positions in pred.clip_indices(count)]  # each (T,)
    frames = read_clip(path, np.concatenate(clips), clamp_end=True)  # (clips * T, H, W, 3), decoded in one pass
    return pred.classify(pred.view_batches(np.split(frames, len(clips))))


def write_timeline(result: dict, out: Path, force: bool = False) -> list[Path]:
    """timeline.csv (one row per window: times and the top classes), timeline.json (``result``) and timeline.png
    (the ``series`` over time) in ``out``, each whole or not at all; existing files (a dangling symlink included)
    are refused unless ``force``, and a symlink is then replaced, never written through."""
    out = Path(out)
    paths = [out / name for name in TIMELINE_FILES]
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not force:
        raise ValueError(f"{existing[0]} already exists; pass --force to replace the timeline files in {out}")
    out.mkdir(parents=True, exist_ok=True)
    write_csv([_csv_row(w) for w in result["windows"]], paths[0])
    atomic_write_text(paths[1], json.dumps(result, indent=1) + "\n")
    times = [(w["start_s"] + w["end_s"]) / 2 for w in result["windows"]]
    title = (f"{result['model']} ({Path(result['checkpoint']).name}) on {Path(result['source']).name}, "
             f"{result['views']['protocol']} views")
    plot_timeline(times, result["series"], paths[2], title, window=result["window_s"])
    return paths


def _csv_row(window: dict) -> dict:
    row = {"window": window["index"], "start_s": window["start_s"], "end_s": window["end_s"]}
    for rank, c in enumerate(window["top"], 1):
        row[f"class_{rank}"], row[f"probability_{rank}"] = c["class"], c["probability"]
    return row


# --- a live source -------------------------------------------------------------------------------------------------

@dataclass
class _Progress:
    predictions: int = 0
    seconds: float = 0.0  # of the source read so far
    stopped: str = "end of stream"


def predict_stream(pred: Predictor, source: str, *, topk: int = 5, window: float | None = None,
                   stride: float | None = None, max_seconds: float | None = None, fmt: str | None = None,
                   fallback_fps: float = 12.0, emit: Callable[[dict], None] = print) -> dict:
    """Decode ``source`` (a device, URL or file read as live) into a ring of the clip's span (``window`` seconds
    if given) and classify the ring every ``stride`` seconds of the source (default: one span), calling ``emit``
    with ``{"time_s", "start_s", "top"}``. Stops at the end of the source, after ``max_seconds`` of it, or on
    Ctrl-C; the container is closed either way. Returns the JSON-ready summary, ``stopped`` saying why."""
    _check_topk(topk)
    _check_seconds(window=window, stride=stride, max_seconds=max_seconds)
    started = time.perf_counter()
    progress = _Progress()
    reader = StreamReader(source, fmt=fmt, fallback_fps=fallback_fps)
    span = max(1, round(window * reader.fps)) if window else clip_span(pred.data)
    ring = FrameRing(span)
    every = stride or span / reader.fps
    try:
        _follow(pred, reader, ring, every, max_seconds, topk, emit, progress)
    except KeyboardInterrupt:
        progress.stopped = "interrupted"
    finally:
        reader.close()
    return {"source": source, **pred.header(), "stopped": progress.stopped, "predictions": progress.predictions,
            "stream_seconds": progress.seconds, "fps": reader.fps, "span_s": span / reader.fps, "stride_s": every,
            **pred.throughput(started)}


def clip_span(data: DataConfig) -> int:
    """Frames one dense clip covers, (T - 1) * stride + 1 (segment sampling: T * stride, one segment each)."""
    if data.sampling == "dense":
        return (data.num_frames - 1) * data.stride + 1
    return data.num_frames * data.stride


def _follow(pred: Predictor, reader: StreamReader, ring: FrameRing, every: float, max_seconds: float | None,
            topk: int, emit: Callable[[dict], None], progress: _Progress) -> None:
    """Push every frame into ``ring``; once full, classify it every ``every`` seconds of the source."""
    next_at, slack = 0.0, 0.5 / reader.fps  # half a frame: timestamps rounded to the time base still count
    for t, frame in reader.frames():
        if max_seconds is not None and t >= max_seconds:
            progress.stopped = f"after --max-seconds {max_seconds:g}"
            return
        ring.push(t, frame)
        progress.seconds = t + 1 / reader.fps
        if ring.full and t + slack >= next_at:
            _emit_ring(pred, ring, topk, emit, progress)
            next_at = t + every
    if progress.predictions == 0 and len(ring):  # a source shorter than one span: its frames, loop-padded
        _emit_ring(pred, ring, topk, emit, progress)


def _emit_ring(pred: Predictor, ring: FrameRing, topk: int, emit: Callable[[dict], None], progress: _Progress) -> None:
    times = ring.times
    probs = pred.frames_probs(ring.stack())
    progress.predictions += 1
    emit({"time_s": times[-1], "start_s": times[0], "top": pred.top(probs, topk)})


# --- the clip `cpnet visualize` draws --------------------------------------------------------------------------------

class LoadedClip(NamedTuple):
    model: torch.nn.Module  # in eval mode
    clip: torch.Tensor  # (1, 3, T, S, S) as the model sees it
    frames: np.ndarray  # uint8 (T, S, S, 3), the same clip for display
    class_names: list[str]
    model_name: str  # the checkpoint's preset, e.g. cpnet_r34_released_112


def load_clip(path: Path, checkpoint: Path, device: str = "cpu") -> LoadedClip:
    """A checkpoint's model and the centre clip, centre crop of one file (the single-view prediction's clip)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video or frame folder not found: {path}")
    model, ckpt, cfg = load_trained(checkpoint, torch.device(device))
    clip = single_file_clip(cfg.data, path, ckpt["class_names"])  # (3, T, S, S), normalised
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    frames = ((clip * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0)  # (T, S, S, 3)
    return LoadedClip(model, clip[None].to(device), frames.numpy(), list(ckpt["class_names"]),
                      cfg.model.name)
