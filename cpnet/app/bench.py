"""``cpnet bench runtime|memory|profile``: the supplement's run-time curves, CP-vs-non-local memory, and where a
model's inference time goes. Each writes a CSV and a PNG into its output folder and returns its rows, a text table,
the files and one-line notes (the ratios); the CLI prints them or the rows as JSON.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cpnet.app.config import parse_override
from cpnet.device import resolve_device
from cpnet.reports.tables import text_table, write_csv


@dataclass
class BenchResult:
    """A benchmark's rows, its table, the files written, the notes to print under the table and the warnings."""

    rows: list[dict]
    table: str
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # why the figures may be unreliable (printed on stderr)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def output_folder(path: str | Path) -> Path:
    """Create ``--out`` up front: one that cannot be created (under a file, no permission) fails before the
    benchmark runs rather than after it, and with nothing but the error printed."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; expected a folder for the CSV and PNG")
    out.mkdir(parents=True, exist_ok=True)  # NotADirectoryError / PermissionError name the path
    return out


def _setup(device: str, threads: int | None, out: str | Path, names: list[str], force: bool) -> torch.device:
    """Check the options and the output folder, refusing results of an earlier run there (``names``) unless
    ``force``: all before the benchmark runs."""
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    where = resolve_device(device, "--device")
    folder = output_folder(out)
    existing = [folder / name for name in names if os.path.lexists(folder / name)]
    if existing and not force:
        raise ValueError(f"{existing[0]} already exists (an earlier benchmark's results); pass --force to replace "
                         "them, or choose another --out")
    if threads is not None:
        torch.set_num_threads(threads)
    return where


def _overrides(options: list[str]) -> dict:
    return dict(parse_override(text) for text in options)


def bench_runtime(model: str, *, size: int, frames: list[int], batch: list[int], baseline: str | None = None,
                  options: list[str] = (), num_classes: int = 400, repeats: int = 5, mode: str = "infer",
                  amp: str = "off", channels_last: bool = False, device: str = "auto", threads: int | None = None,
                  out: str | Path = "bench", force: bool = False) -> BenchResult:
    """Time per batch (median, min, max) and videos/s of ``model`` (and ``baseline``) over the frames x batch grid,
    for inference or (``mode="train"``) a training step; warns when the machine's load or a point's spread makes
    the figures unreliable."""
    from cpnet.reports.machine import contention, snapshot
    from cpnet.reports.runtime import AMP, MODES, plot_runtime, runtime_rows, unsteady_points

    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if amp not in ("off", *AMP):
        raise ValueError(f"--amp must be off, {' or '.join(AMP)}, got {amp!r}")
    if amp != "off" and resolve_device(device, "--device").type != "cuda":  # refused before --out is created
        raise ValueError(f"--amp {amp} needs CUDA: cpnet uses autocast on CUDA only (its CPU runs are float32); "
                         "use --amp off, or --device cuda on a machine with a GPU")
    stem = "_".join(["runtime"] + (["train"] if mode == "train" else []) + ([amp] if amp != "off" else [])
                    + (["channels_last"] if channels_last else []))
    where = _setup(device, threads, out, [f"{stem}.csv", f"{stem}.png"], force)
    used = torch.get_num_threads()
    cpu = where.type == "cpu"  # the sgemm rate only says something about a CPU run
    before = snapshot(used, sgemm=cpu)
    count = len(dict.fromkeys([model] + ([baseline] if baseline else [])))
    _log(f"timing {len(frames) * len(batch)} grid points x {count} model(s), {mode}: 1 warm-up and {repeats} timed "
         f"call(s) each, interleaved; 1-min load average {before['load1']}")
    rows = runtime_rows(model, size, frames, batch, baseline=baseline, overrides=_overrides(list(options)),
                        device=where, repeats=repeats, num_classes=num_classes, mode=mode,
                        amp=None if amp == "off" else amp, channels_last=channels_last, log=_log)
    after = snapshot(used, sgemm=cpu)
    out = Path(out)
    files = [write_csv(rows, out / f"{stem}.csv"), plot_runtime(rows, out / f"{stem}.png")]
    ratios = any("vs_baseline" in r for r in rows)
    table = text_table(_display(rows), ["model", "frames", "batch", "seconds", "min-max", "videos_per_s"]
                       + (["vs_baseline", "ratio_min-max"] if ratios else []),
                       {"seconds": ".4f", "videos_per_s": ".2f", "vs_baseline": ".2f"})
    what = "training step" if mode == "train" else "inference"
    notes = [f"{model} / {baseline} {what} at {size}², {r['frames']} frames, batch {r['batch']}: "
             f"{r['vs_baseline']:.2f}x ({r['vs_baseline_min']:.2f}-{r['vs_baseline_max']:.2f} over {repeats} "
             f"repeat{'s' if repeats != 1 else ''})" for r in rows if "vs_baseline" in r]
    notes.append(_load_note(before, after, used))
    return BenchResult(rows, table, files, notes, _runtime_warnings(rows, contention(before, after, used),
                                                                    unsteady_points(rows)))


def _load_note(before: dict, after: dict, threads: int) -> str:
    text = f"machine: 1-min load average {before['load1']} before the grid, {after['load1']} after, {threads} thread(s)"
    if "sgemm_gflops" in before:
        text += f"; sgemm {before['sgemm_gflops']} GFLOP/s before, {after['sgemm_gflops']} after"
    return text


def _display(rows: list[dict]) -> list[dict]:
    """The rows with their spreads as one compact cell each, for the printed table."""
    shown = []
    for r in rows:
        row = dict(r, **{"min-max": f"{r['seconds_min']:.4f}-{r['seconds_max']:.4f}"})
        if "vs_baseline" in r:
            row["ratio_min-max"] = f"{r['vs_baseline_min']:.2f}-{r['vs_baseline_max']:.2f}"
        shown.append(row)
    return shown


def _runtime_warnings(rows: list[dict], load: dict, unsteady: list[str]) -> list[str]:
    """Why the figures may not be the machine's: other work running (load average, sgemm) or points whose
    repeats disagree."""
    from cpnet.reports.runtime import SPREAD_LIMIT

    warnings = [f"the machine was shared: {reason}; the times are slower and the ratios noisier than on an "
                "idle machine" for reason in load["reasons"]]
    if unsteady:
        warnings.append(f"the repeats disagree (slowest over {SPREAD_LIMIT}x the fastest) at {len(unsteady)} of "
                        f"{len(rows)} points: {', '.join(unsteady)}; measure them again on a quieter machine (or "
                        "with more --repeats)")
    return warnings


def bench_memory(sizes: list[str] | None = None, *, k: int = 8, blocks: list[str] | None = None, repeats: int = 3,
                 device: str = "auto", threads: int | None = None, out: str | Path = "bench",
                 force: bool = False) -> BenchResult:
    """Forward+backward peak memory and time of one CP module against one non-local block at each size
    (``N,T,H,W,C``); ``device`` auto measures the CPU, and CUDA too when present."""
    from cpnet.reports.memory import DEFAULT_BLOCKS, REFERENCES, SIZES, memory_rows, plot_memory

    _setup(device, threads, out, ["memory.csv", "memory.png"], force)
    if device == "auto":  # the CPU always, and the GPU too when there is one
        devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    else:
        devices = (resolve_device(device, "--device").type,)
    shapes = SIZES
    if sizes:
        try:
            shapes = tuple(tuple(int(v) for v in s.split(",")) for s in sizes)
        except ValueError:
            raise ValueError(f"--sizes: expected N,T,H,W,C integers, got {sizes}") from None
        bad = [s for s in shapes if len(s) != 5]
        if bad:
            raise ValueError(f"--sizes: each size needs 5 values N,T,H,W,C, got {bad}")
    rows = memory_rows(shapes, tuple(blocks or DEFAULT_BLOCKS), k=k, devices=devices, repeats=repeats,
                       threads=threads, log=_log)
    out = Path(out)
    files = [write_csv(rows, out / "memory.csv"), plot_memory(rows, out / "memory.png")]
    ratios = [c for c in ("mem_vs_nl", "time_vs_nl", "mem_vs_nl_full", "time_vs_nl_full") if any(c in r for r in rows)]
    cols = ["block", "device", "N", "T", "H", "W", "C", "k", "peak_mb", "seconds", *ratios]
    table = text_table(rows, cols, {"peak_mb": ".1f", "seconds": ".3f", **{c: ".3f" for c in ratios}})
    notes = [f"{r['block']} / {ref} at N={r['N']} T={r['T']} {r['H']}x{r['W']} C={r['C']} ({r['device']}): memory "
             f"{_fraction(r[f'mem_vs_{ref}'], ref)}, time {r[f'time_vs_{ref}']:.2f}x"
             for r in rows if not r["block"].startswith("nl") for ref in REFERENCES if r.get(f"time_vs_{ref}")]
    return BenchResult(rows, table, files, notes)


def _fraction(ratio: float | None, ref: str) -> str:
    if ratio is None:
        return f"n/a (no growth measured for {ref})"
    return f"1/{1 / ratio:.1f}" if ratio > 0 else "0 (no growth measured)"


def bench_profile(model: str, *, size: int, frames: int = 8, batch: int = 1, options: list[str] = (),
                  num_classes: int = 400, repeats: int = 5, device: str = "auto", threads: int | None = None,
                  out: str | Path = "bench", force: bool = False) -> BenchResult:
    """The share of ``model``'s inference time in the backbone, the kNN, the pair MLP and the rest."""
    from cpnet.models.registry import create_model
    from cpnet.reports.profile import plot_profile, profile_model
    from cpnet.reports.runtime import check_grid

    where = _setup(device, threads, out, ["profile.csv", "profile.png"], force)
    check_grid(size, [frames], [batch], repeats, 1)
    torch.manual_seed(0)
    net = create_model(model, num_classes=num_classes, **_overrides(list(options))).to(where)
    clip = torch.randn(batch, 3, frames, size, size).to(where)  # (N, 3, T, H, W)
    rows = profile_model(net, clip, repeats=repeats)
    for r in rows:
        r |= {"model": model, "size": size, "frames": frames, "batch": batch, "device": where.type,
              "threads": torch.get_num_threads()}
    out = Path(out)
    title = f"{model}, {batch}x{frames}x{size}², {where.type}"
    files = [write_csv(rows, out / "profile.csv"), plot_profile(rows, out / "profile.png", title)]
    table = text_table(rows, ["component", "seconds", "share"], {"seconds": ".4f", "share": ".3f"})
    return BenchResult(rows, table, files)
