"""What ``cpnet data prepare`` does with a user's own videos: re-encode them small with short keyframe intervals
(:func:`reencode`), extract JPEG frames in the Jester layout (:func:`extract_frames`), and write ``list`` files for a
``folder`` tree (:func:`write_lists`).

Why re-encode: the reader seeks to the keyframe before the first wanted frame and decodes forward from there
(:mod:`cpnet.data.video`). Downloaded clips often have one keyframe every 250 frames, so a random clip decodes up
to 250 frames it throws away, each at the full download size; a small short side and a keyframe every ~12 frames
cut both.

Safety. The source tree is only read: an output folder equal to, inside or around the source folder is refused.
Each output is written under a temporary name beside it (``.<name>.cpnet-partial``) and renamed when complete, so
an output that exists is complete: a second run skips it (resume) unless ``force``, and temporaries left by a
killed run are removed when the next run starts. Two runs into the same output folder at once are not supported.
Sources go through the reader's checks (regular files only, the frame limits of :mod:`cpnet.data.frames`); one that
fails, or decodes clearly fewer frames than its container announces, is reported as bad with the reason and the
others go on.
"""

from __future__ import annotations

import errno
import math
import multiprocessing
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from cpnet.data.generic import load_folder
from cpnet.data.layout import SPLITS
from cpnet.data.pyav import av  # imported on first use: cpnet runs without PyAV until a video is opened
from cpnet.data.records import MediaError, ignored_summary
from cpnet.data.video import (  # the reader's checks, shared
    VIDEO_EXTENSIONS,
    announced_frames,
    check_decoded,
    decode_from,
    open_video,
)
from cpnet.files import atomic_write_text

__all__ = ["PrepareReport", "extract_frames", "output_size", "pick_codec", "reencode", "write_lists"]

CODECS = ("libx264", "mpeg4")  # in order of preference
# libx264: constant quality (CRF 20 is visually close at these sizes). mpeg4 has no CRF: a fixed quantizer instead.
CODEC_OPTIONS = {"libx264": {"crf": "20", "preset": "fast"}, "mpeg4": {"qmin": "4", "qmax": "4"}}
JPEG_QUALITY = 90
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: no source is to blame
ID_SEPARATOR = "__"  # flat frame-folder ids: 'train/abseiling/x.mp4' -> 'train__abseiling__x'
_PARTIAL, _OLD = "cpnet-partial", "cpnet-old"


@dataclass
class PrepareReport:
    """Outcome of one run, by source path relative to the source folder; ``bad`` maps it to the reason."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    stale_removed: int = 0
    ignored: list[str] = field(default_factory=list)  # files under the source folder that are not videos

    def summary(self) -> str:
        text = f"{len(self.done)} done, {len(self.skipped)} skipped (already done), {len(self.bad)} bad"
        return text + (f"; {ignored_summary(self.ignored, 'source folder')}" if self.ignored else "")


@dataclass(frozen=True)
class _Job:
    """One source to convert, as sent to a worker process."""

    kind: str  # "reencode" or "frames"
    rel: str
    source: Path
    output: Path
    short_side: int | None
    fps: float | None
    keyframe_interval: int = 12
    codec: str = "libx264"


def pick_codec() -> str:
    """libx264 when this PyAV build has it, else mpeg4 (every FFmpeg build has it)."""
    for name in CODECS:
        if name in av.codecs_available:
            return name
    raise RuntimeError(f"this PyAV build has none of the encoders {CODECS}")


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the short side is ``short_side``, both even (as yuv420p needs), aspect kept.
    Never upscales: a frame whose short side is already at most ``short_side`` keeps its size, rounded down to even."""
    scale = min(1.0, short_side / min(width, height))

    def even(side: int) -> int:
        return max(2, min(side // 2 * 2, math.floor(side * scale / 2 + 0.5) * 2))

    return even(width), even(height)


def _temp(output: Path, tag: str = _PARTIAL) -> Path:
    return output.with_name(f".{output.name}.{tag}")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_folders(src: Path, out: Path) -> tuple[Path, Path]:
    """Resolved (src, out); refuses a missing source folder and an output folder that overlaps it."""
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"source folder not found: {src}")
    if not src.is_dir():
        raise NotADirectoryError(f"--src {src}: expected a folder of videos")
    rsrc, rout = src.resolve(), out.resolve()
    if _inside(rout, rsrc) or _inside(rsrc, rout):
        raise ValueError(
            f"--out {out} overlaps --src {src}: expected an output folder outside the source folder "
            "(the originals are never written to)"
        )
    return rsrc, rout


def find_videos(src: Path, ignored: list[str] | None = None) -> list[Path]:
    """Video files under ``src`` (any depth, extensions of :data:`VIDEO_EXTENSIONS`), relative and sorted; every
    other (not hidden) file is appended to ``ignored``, relative, so that a caller can say what it left out."""
    found = []
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            rel = Path(folder, f).relative_to(src)
            if Path(f).suffix.lower() in VIDEO_EXTENSIONS:
                found.append(rel)
            elif ignored is not None and not f.startswith("."):
                ignored.append(str(rel))
    if not found:
        raise FileNotFoundError(f"no videos under {src}: expected files ending in {', '.join(VIDEO_EXTENSIONS)}")
    return sorted(found)


def frame_folder_id(rel: Path, keep_tree: bool = False) -> str:
    """The frame folder of a source: its relative path without extension, folders joined by ``ID_SEPARATOR``
    ('train/abseiling/x.mp4' -> 'train__abseiling__x'), or kept as folders with ``keep_tree``. A name that would
    leave no folder of its own ('..mp4' is '.', the output folder itself; '...mp4' is '..', its parent) is a
    ValueError naming the source."""
    stem = rel.with_suffix("").as_posix()
    folder_id = stem if keep_tree else stem.replace("/", ID_SEPARATOR)
    if any(part in ("", ".", "..") for part in folder_id.split("/")):
        raise ValueError(f"{rel}: its frame folder would be {folder_id!r}, not a folder of its own (rename the file)")
    return folder_id


def _remove(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    else:
        return False
    return True


def _plan(src: Path, outputs: dict[Path, Path], force: bool) -> tuple[list[tuple[str, Path, Path]], PrepareReport]:
    """(relative source, source, output) for each source whose output is missing (each with ``force``), after
    removing stale temporaries. A source is bad when its output is, holds or lies inside another source's
    (``a.mp4`` and ``a.webm``), or resolves into ``src`` (through a symlink in the output folder)."""
    report, todo, claimed, around = PrepareReport(), [], {}, {}
    for rel, output in outputs.items():
        clash = around.get(output) or next((claimed[p] for p in (output, *output.parents) if p in claimed), None)
        if clash is not None or _inside(output.parent.resolve(), src):
            why = f"its output {output} collides with that of {clash}" if clash else f"{output} resolves into --src"
            report.bad[str(rel)] = f"{src / rel}: {why}"
            continue
        claimed[output] = rel
        around.update((p, rel) for p in output.parents)
        report.stale_removed += _remove(_temp(output)) + _remove(_temp(output, _OLD))
        if os.path.lexists(output) and not force:
            report.skipped.append(str(rel))
        else:
            todo.append((str(rel), src / rel, output))
    return todo, report


def _rates(path: Path, stream: av.VideoStream, fps: float | None) -> tuple[Fraction, float]:
    """(output frame rate, input frames per output frame)."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate or rate <= 0:
        raise MediaError(f"{path}: frame rate unknown; cannot keep or convert the timing")
    if fps is None:
        return Fraction(rate), 1.0
    return Fraction(fps).limit_denominator(1001), float(rate) / fps


def _source_frames(container: av.container.InputContainer, path: Path, ratio: float) -> Iterator[av.VideoFrame]:
    """The decoded frames resampled to the output rate: output frame k is input frame round(k * ``ratio``).
    Raises MediaError when nothing decodes or clearly fewer frames decode than the container announces."""
    announced = announced_frames(container)
    k = n = 0
    for pos, frame in decode_from(container, path, 0):
        n += 1
        while math.floor(k * ratio + 0.5) <= pos:
            k += 1
            yield frame
    check_decoded(path, n, announced)


def _encode(job: _Job, temp: Path) -> None:
    """Re-encode ``job.source`` into ``temp`` (MP4, video only)."""
    with open_video(job.source) as inp, av.open(str(temp), "w", format="mp4") as out:
        rate, ratio = _rates(job.source, inp.streams.video[0], job.fps)
        stream = None
        for k, frame in enumerate(_source_frames(inp, job.source, ratio)):
            if stream is None:
                stream = out.add_stream(job.codec, rate=rate)
                stream.width, stream.height = output_size(frame.width, frame.height, job.short_side)
                stream.pix_fmt = "yuv420p"
                stream.options = {**CODEC_OPTIONS[job.codec], "g": str(job.keyframe_interval)}
            small = frame.reformat(width=stream.width, height=stream.height, format="yuv420p", interpolation="AREA")
            small.pts, small.time_base = k, 1 / rate  # a fresh timeline: frames may be dropped or repeated
            for packet in stream.encode(small):
                out.mux(packet)
        for packet in stream.encode() if stream is not None else ():
            out.mux(packet)


def _extract(job: _Job, temp: Path) -> None:
    """Write the frames of ``job.source`` as ``temp/00001.jpg …``."""
    temp.mkdir()
    with open_video(job.source) as inp:
        _, ratio = _rates(job.source, inp.streams.video[0], job.fps) if job.fps else (None, 1.0)
        size = None
        for k, frame in enumerate(_source_frames(inp, job.source, ratio)):
            if size is None:
                size = (frame.width, frame.height)
                size = output_size(*size, job.short_side) if job.short_side else size
            image = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_image()
            image.save(temp / f"{k + 1:05d}.jpg", quality=JPEG_QUALITY)


def _run_job(job: _Job) -> tuple[str, str | None]:
    """(relative source, None or why it is bad). The output appears only when complete; a failure leaves nothing."""
    temp = _temp(job.output)
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        (_encode if job.kind == "reencode" else _extract)(job, temp)
        if os.path.lexists(job.output):  # --force: move the old output aside, put the new one in, drop the old
            old = _temp(job.output, _OLD)
            os.replace(job.output, old)
            os.replace(temp, job.output)
            _remove(old)
        else:
            os.replace(temp, job.output)
        return job.rel, None
    except BaseException as e:
        _remove(temp)
        if isinstance(e, OSError) and e.errno in _NO_SPACE:  # the disk, not the source: stop, naming the output
            raise OSError(e.errno, f"{os.strerror(e.errno)} while writing {job.output} (from {job.source}); "
                                   "stopped: the outputs finished so far are kept, free space and run again") from None
        if isinstance(e, (MediaError, FileNotFoundError)):
            return job.rel, str(e)
        if isinstance(e, av.FFmpegError):
            return job.rel, f"{job.source}: {job.kind} failed ({getattr(e, 'strerror', None) or e})"
        raise


def _execute(jobs: list[_Job], report: PrepareReport, workers: int, progress: bool, desc: str) -> PrepareReport:
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    results = []
    with tqdm(total=len(jobs), desc=desc, unit="video", disable=not progress) as bar:
        pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 and len(jobs) > 1 else None
        try:
            for result in pool.imap_unordered(_run_job, jobs) if pool else map(_run_job, jobs):
                results.append(result)
                bar.update()
        finally:
            if pool:
                pool.terminate()  # after the last result (all done) or on an error or Ctrl-C (stop the others)
    for rel, error in sorted(results):
        if error is None:
            report.done.append(rel)
        else:
            report.bad[rel] = error
    report.bad = dict(sorted(report.bad.items()))
    return report


def _check_options(short_side: int | None, fps: float | None, keyframe_interval: int = 1) -> None:
    if short_side is not None and (short_side < 2 or short_side % 2):
        raise ValueError(f"short side {short_side}: expected an even number of pixels >= 2 (yuv420p needs even sizes)")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps {fps}: expected a frame rate > 0")
    if keyframe_interval < 1:
        raise ValueError(f"keyframe interval {keyframe_interval}: expected at least 1 frame")


def reencode(
    src: str | Path, out: str | Path, short_side: int, *, keyframe_interval: int = 12, fps: float | None = None,
    codec: str | None = None, workers: int = 1, force: bool = False, progress: bool = False,
) -> PrepareReport:  # fmt: skip
    """Re-encode every video under ``src`` into ``out/<same relative path>.mp4``: short side ``short_side`` (even,
    never upscaled), a keyframe at least every ``keyframe_interval`` frames, ``fps`` frames per second (default:
    the source's), ``codec`` (default :func:`pick_codec`), video only."""
    _check_options(short_side, fps, keyframe_interval)
    codec = codec or pick_codec()
    if codec not in CODEC_OPTIONS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    src, out = _check_folders(Path(src), Path(out))
    ignored: list[str] = []
    outputs = {rel: out / rel.with_suffix(".mp4") for rel in find_videos(src, ignored)}
    todo, report = _plan(src, outputs, force)
    report.ignored = ignored
    jobs = [_Job("reencode", *item, short_side, fps, keyframe_interval, codec) for item in todo]
    return _execute(jobs, report, workers, progress, "re-encoding")


def extract_frames(
    src: str | Path, out: str | Path, *, short_side: int | None = None, fps: float | None = None,
    keep_tree: bool = False, workers: int = 1, force: bool = False, progress: bool = False,
) -> PrepareReport:  # fmt: skip
    """Write the frames of every video under ``src`` as ``out/<id>/00001.jpg …`` (JPEG quality ``JPEG_QUALITY``),
    ids from :func:`frame_folder_id`; ``short_side`` (default: the source size) and ``fps`` as in :func:`reencode`."""
    _check_options(short_side, fps)
    src, out = _check_folders(Path(src), Path(out))
    outputs, unnamed, ignored = {}, {}, []
    for rel in find_videos(src, ignored):
        try:
            outputs[rel] = out / frame_folder_id(rel, keep_tree)
        except ValueError as e:
            unnamed[str(rel)] = f"{src}/{e}"
    todo, report = _plan(src, outputs, force)
    report.bad.update(unnamed)
    report.ignored = ignored
    jobs = [_Job("frames", *item, short_side, fps) for item in todo]
    return _execute(jobs, report, workers, progress, "extracting frames")


def _list_entry(path: Path, out: Path) -> str:
    """``path`` relative to the list folder, refused (ValueError naming it) when a list line would not read back as
    this path: a line break, surrounding spaces, or a last word of digits (read as a TSN frame count)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out))
    words = rel.split()
    if "\n" in rel or "\r" in rel or rel != rel.strip() or (len(words) > 1 and words[-1].isdigit()):
        raise ValueError(
            f"{path}: this name cannot be written to a list file (expected no line break, no "
            "surrounding spaces and no last word of digits); rename it"
        )
    return rel


def write_lists(root: str | Path, out: str | Path, *, force: bool = False) -> dict[str, int]:
    """From a ``folder`` tree ``root/<split>/<class>/<video or frame folder>``, write ``out/classes.txt`` (the class
    names, one a line) and ``out/<split>.txt`` (``path label`` lines: paths relative to ``out``, labels as class
    indices, -1 for unlabelled videos) for every split folder found; returns videos per split. Existing list files
    that differ are refused unless ``force``."""
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found or not a folder: {root}")
    splits = {}
    for split in SPLITS:
        try:
            splits[split] = load_folder(root, split)
            if splits[split].ignored:
                warnings.warn(splits[split].ignored_summary(), stacklevel=2)
        except FileNotFoundError:
            continue
    if not splits:
        raise FileNotFoundError(f"no split folder in {root}: expected train/, val/ or test/ with class folders")
    texts = {"classes.txt": "".join(f"{name}\n" for name in next(iter(splits.values())).class_names)}
    for split, data in splits.items():
        texts[f"{split}.txt"] = "".join(f"{_list_entry(r.path, out)} {r.label}\n" for r in data.records)
    for name, text in texts.items():
        if (out / name).exists() and (out / name).read_text() != text and not force:
            raise ValueError(f"{out / name} exists with other content; expected a new output folder, or --force")
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return {split: len(data.records) for split, data in splits.items()}
