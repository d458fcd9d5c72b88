"""The main job, ``cpnet demo``: what CPNet is for, shown in minutes on a laptop CPU.

It writes (or reuses) the synthetic motion dataset in the Jester layout, trains C2D, NL, C3D and CPNet on it with
the same small backbone through the real Jester reader (epochs per model: see FULL), evaluates each on the
validation split, and writes a report. The synthetic classes come in time-reversed pairs (SPEC §6): an order-blind
model (C2D, and a non-local C2D) cannot beat 50 % on the videos of paired classes, while CPNet (signed Δt in its
pair features) and C3D can. The configs shipped as ``configs/synthetic/*_8x32.yaml`` are exactly
:func:`demo_config` at full size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cpnet.app.config import Config, config_from_dict
from cpnet.app.runfolder import RunFolder
from cpnet.metrics import subset_accuracy
from cpnet.reports.figures import plot_per_class
from cpnet.reports.machine import contention, describe, describe_load, load_average, machine_info, snapshot

if TYPE_CHECKING:  # the cache is made (and its module imported) only when the demo runs
    from cpnet.data.cache import FrameCache

# key -> (label, preset, extra model options). One placement for both the CP and the NL block: layer2 block 0,
# where the maps are 8x8 at 32x32 input with stem_stride=1. CP's output BN starts at gamma=1: with the paper's
# gamma=0 (right for ImageNet fine-tuning) a from-scratch CPNet learns far slower on this budget (SPEC §1.7).
# Its displacements are in grid steps (cp_coords="grid"): with SPEC's (t/T, h/H, w/W) a one-frame step is 1/8 and
# the same run reached 22 % after 2 epochs against 80 % (measured); k is 4 and the MLP 16 wide (the backbone is
# tiny; k 4 trains 1.3x faster per step than k 8 here).
MODELS: dict[str, tuple[str, str, dict]] = {
    "c2d": ("C2D", "c2d_r18", {}),
    "nl": ("NL", "nl_r18", {"nl_at": {"layer2": [0]}}),
    "c3d": ("C3D", "c3d_r18", {}),
    "cpnet": ("CPNet", "cpnet_r18", {"cp_at": {"layer2": [0]}, "cp_k": 4, "cp_mlp": [16, 16], "cp_init_gamma": 1.0,
                                     "cp_coords": "grid"}),
}


@dataclass(frozen=True)
class DemoSize:
    """Dataset size, clip shape, backbone width and training budget of the demo's models."""

    num_train: int
    num_val: int
    num_frames: int
    size: int
    epochs: dict[str, int]  # per model key: see FULL for why they differ
    batch_size: int
    lr: float
    width: int
    layers: tuple[int, int, int, int]
    workers: int  # DataLoader processes decoding JPEGs (0: the training process decodes)
    threads: int  # torch compute threads
    cache_mb: int = 0  # decoded frames kept in memory: the set is decoded once for all models, not once per epoch
    write_workers: int = 1  # processes writing the dataset on a first run (nothing else runs then): 2 wrote the
    # full set in 17 s against 28 s with 1 on a 2-core machine
    channels_last: bool = False  # channels-last weights and activations: steps 1.05-1.2x faster on CPU, but other
    # rounding: one of six FULL runs then learnt rotate-clockwise to 74 % only (85-100 % in the others), so FULL keeps
    # the plain layout, whose six runs are the README's
    smoke_test: bool = False  # a size that only checks every step runs (QUICK): its report says so
    stem_kernel: int = 3  # a 3x3 stem instead of ResNet's 7x7 at stride 1 on 32x32 input: the same feature sizes, and
    # 1.2x (C2D) to 1.7x (C3D) faster training steps on a 2-core AVX2 CPU (the 7x7 stem's backward dominated C3D)


# Epochs: C2D and NL cannot exceed 50 % within a time-reversed pair at any budget (their frames are identically
# distributed), so one epoch shows what they do; C3D reaches 94 % in one (99.7 % in two, 99.9 % in three: one keeps
# the whole demo near 10 minutes on a slow AVX2-only CPU); CPNet needs 6 to learn the direction of rotation reliably
# (measured: at 3 epochs it stayed near chance on the rotation pair for every setting tried - k, MLP width, a second
# CP module, CP at 16x16, learning rate, no augmentation - while every other class was >= 96 %; at 6 it reached
# >= 96 % on both rotation classes). The report prints each model's epochs.
FULL = DemoSize(num_train=7200, num_val=900, num_frames=8, size=32,
                epochs={"c2d": 1, "nl": 1, "c3d": 1, "cpnet": 6}, batch_size=16, lr=0.05, width=8,
                layers=(1, 1, 1, 1), workers=0, threads=2, cache_mb=256, write_workers=2)
QUICK = DemoSize(num_train=54, num_val=27, num_frames=4, size=16, epochs={key: 1 for key in MODELS}, batch_size=9,
                 lr=0.05, width=4, layers=(1, 1, 1, 1), workers=0, threads=1, cache_mb=16, smoke_test=True)


SMOKE_TEST = ("A smoke test (cpnet demo --quick): a few dozen 16x16 clips and one epoch per model check that every "
              "step runs; the accuracies mean nothing. `cpnet demo` runs the comparison.")


def demo_config(key: str, size: DemoSize = FULL, data_root: str = "data/synthetic", seed: int = 0) -> Config:
    """The experiment config of demo model ``key`` (c2d, nl, c3d, cpnet) at ``size``; ``seed`` is the training seed
    (initial weights, batch order, augmentation; the dataset itself is always the same)."""
    if key not in MODELS:
        raise ValueError(f"unknown demo model {key!r}; expected one of {', '.join(MODELS)}")
    _, preset, extra = MODELS[key]
    if key not in size.epochs:
        raise ValueError(f"the demo size gives no epochs for model {key!r}")
    epochs = size.epochs[key]
    options = {"width": size.width, "layers": list(size.layers), "stem_stride": 1, "stem_kernel": size.stem_kernel,
               "dropout": 0.0, **extra}
    return config_from_dict({
        "name": f"synthetic_{key}",
        "model": {"name": preset, "options": options},
        "data": {"dataset": "synthetic", "root": data_root, "num_frames": size.num_frames, "size": size.size,
                 "short_side": size.size, "workers": size.workers, "cache_mb": size.cache_mb,
                 "synthetic": {"num_train": size.num_train, "num_val": size.num_val, "num_frames": size.num_frames,
                               "size": size.size, "seed": 0}},
        "optim": {"lr": size.lr, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "schedule": "cosine",
                  "warmup_epochs": 0.2},
        # Validated after the last epoch only: the demo evaluates every model once after training anyway.
        "train": {"epochs": epochs, "batch_size": size.batch_size, "seed": seed, "threads": size.threads,
                  "channels_last": size.channels_last,
                  "val_every": epochs},
        "eval": {"protocol": "single", "batch_size": 2 * size.batch_size},
    })


DEMO_MARK = ".cpnet-demo"  # in every run folder the demo writes: the demo replaces only its own runs


def _demo_run_dir(path: Path) -> RunFolder:
    """The run folder of one demo model, its previous demo run (and only a demo's) cleared by ``force``."""
    run = RunFolder(path)
    if run.run_files() and not (path / DEMO_MARK).is_file():
        raise ValueError(f"{path} holds a run the demo did not write; choose another --out for the demo")
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_MARK).touch()
    return run


def demo_command(out: str | Path = "runs/demo", data: str | Path | None = None, *, quick: bool = False,
                 models: list[str] | None = None, threads: int | None = None, seed: int = 0,
                 progress: bool | None = None) -> dict:
    """``cpnet demo``: :func:`run_demo` at the quick or full size, ``threads`` overriding the size's."""
    size = QUICK if quick else FULL
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        size = replace(size, threads=threads)
    return run_demo(out, data, models=models, size=size, seed=seed, progress=progress)


def run_demo(out_dir: str | Path = "runs/demo", data_dir: str | Path | None = None, *, quick: bool = False,
             models: list[str] | None = None, size: DemoSize | None = None, seed: int = 0,
             progress: bool | None = None, log: Callable[[str], None] = print) -> dict:
    """Train and evaluate each demo model; write ``report.md``, ``per_class.png`` and ``summary.json``.
    ``size`` replaces the preset (FULL, or QUICK with ``quick``) to try other budgets; ``seed`` is the training
    seed of every model (the dataset does not change with it)."""
    from cpnet.app.datasets import prepare_data, read_split
    from cpnet.data.cache import FrameCache

    out = Path(out_dir)
    size = size or (QUICK if quick else FULL)
    data_root = str(data_dir) if data_dir is not None else str(out / "data")
    keys = models or list(MODELS)
    runs = {key: _demo_run_dir(out / "runs" / key) for key in keys}  # refused before any work when not the demo's
    results: dict[str, dict] = {}
    machine = machine_info(threads=size.threads)
    before = {"load1": load_average(), "sgemm_gflops": machine["sgemm_gflops"]}
    log(f"machine: {describe(machine)}; 1-min load average {before['load1']}")
    start = time.perf_counter()
    data = replace(demo_config(keys[0], size, data_root, seed).data, workers=size.write_workers)
    prepare_data(data, log)  # once, untimed per model; reused if present
    cache = FrameCache(size.cache_mb * 2**20) if size.cache_mb else None  # one for all models: decoded once
    if cache is not None and size.write_workers > 1:  # decode with every core before training needs one core
        split_data = demo_config(keys[0], size, data_root, seed).data
        paths = [r.path for split in ("train", "validation") for r in read_split(split_data, split).records]
        t0 = time.perf_counter()
        frames = cache.preload(paths, workers=size.write_workers)
        log(f"decoded {frames} frames of {len(paths)} clips into memory in {time.perf_counter() - t0:.1f} s")
    data_seconds = time.perf_counter() - start
    for key in keys:
        results[key] = _train_and_score(key, demo_config(key, size, data_root, seed), runs[key], cache, progress, log)
    total_seconds = time.perf_counter() - start
    after = snapshot(size.threads)  # the sgemm again: a machine that got busier during the run runs it slower
    load = {"before": before, "after": after, **contention(before, after, size.threads, machine["cores"])}
    summary = {"models": results, "size": asdict(size), "seed": seed, "data": data_root, "data_seconds": data_seconds,
               "total_seconds": total_seconds, "machine": machine, "load": load, "smoke_test": size.smoke_test}
    write_report(out, summary)
    log(format_table(results))
    if summary["smoke_test"]:
        log(SMOKE_TEST)
    if load["contended"]:
        log(f"warning: the machine was shared during the demo: {'; '.join(load['reasons'])}; its times are slower "
            "than this machine gives alone")
    log(f"report: {out / 'report.md'}")
    return summary


def _train_and_score(key: str, cfg: Config, run: RunFolder, cache: FrameCache | None, progress: bool | None,
                     log: Callable[[str], None]) -> dict:
    """Train demo model ``key`` into ``run``, evaluate it, and return its row of the report."""
    from cpnet.app.evaluate import eval_run
    from cpnet.app.train import train_run
    from cpnet.data.synthetic import TIME_REVERSED_PAIRS

    log(f"== {MODELS[key][0]} ({cfg.model.name}) ==")
    t0 = time.perf_counter()
    trained = train_run(cfg, run.path, force=True, progress=progress, prepare=False, cache=cache, log=log)
    train_seconds = time.perf_counter() - t0
    evaluated = eval_run(cfg, run.last, run.path / "eval", cache=cache, log=log)
    names = list(evaluated.summary["per_class_accuracy"])
    paired = [names.index(n) for pair in TIME_REVERSED_PAIRS for n in pair]
    predictions = evaluated.video_scores.argmax(axis=1)
    return {"label": MODELS[key][0], "model": cfg.model.name, "top1": evaluated.summary["video_top1"],
            "pair_top1": subset_accuracy(evaluated.video_labels, predictions, paired), "params": trained["params"],
            "epochs": cfg.train.epochs, "train_seconds": train_seconds,
            "per_class": evaluated.summary["per_class_accuracy"]}


def format_table(results: dict[str, dict]) -> str:
    """The demo's one table, as markdown (readable as plain text too)."""
    lines = ["| model | preset | top-1 | top-1 within time-reversed pairs | parameters | epochs | training time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results.values():
        lines.append(f"| {r['label']} | {r['model']} | {100 * r['top1']:.1f} % | {100 * r['pair_top1']:.1f} % | "
                     f"{r['params'] / 1e6:.3f} M | {r['epochs']} | {r['train_seconds']:.0f} s |")
    return "\n".join(lines)


def _decoding(size: dict) -> str:
    where = f"{size['workers']} decoding worker(s)" if size["workers"] else "the training process"
    if size.get("cache_mb"):
        return f"JPEGs decoded once by {where} and kept in memory for every model and epoch"
    return f"JPEGs decoded by {where} every epoch"


def write_report(out: Path, summary: dict) -> None:
    """``summary.json``, ``per_class.png`` (per-class top-1 of every model) and ``report.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    results = summary["models"]
    plot_per_class(results, out / "per_class.png")
    s = summary["size"]
    classes = list(next(iter(results.values()))["per_class"])
    per_class = ["| class | " + " | ".join(r["label"] for r in results.values()) + " |",
                 "|---|" + "---:|" * len(results)]
    for name in classes:
        cells = [r["per_class"][name] for r in results.values()]
        per_class.append(f"| {name} | " + " | ".join("-" if c is None else f"{100 * c:.0f} %" for c in cells) + " |")
    text = [
        "# cpnet demo: order-blind vs order-aware models on time-reversed motion",
        "",
        *([f"**{SMOKE_TEST}**", ""] if summary.get("smoke_test") else []),
        f"Synthetic motion clips ({s['num_train']} training, {s['num_val']} validation; {s['num_frames']} frames of "
        f"{s['size']}x{s['size']}), read through the Jester reader from `{summary['data']}`. Every model: the same "
        f"ResNet-like backbone (width {s['width']}, blocks {s['layers']}, {s['stem_kernel']}x{s['stem_kernel']} stem), "
        f"batch {s['batch_size']}, SGD lr {s['lr']} cosine, training seed {summary['seed']}, on {s['threads']} torch "
        f"thread(s), {_decoding(s)}; epochs per model in the table (C2D and NL cannot "
        "exceed 50 % within a pair at any budget; CPNet needs the longest schedule to learn the direction of "
        "rotation). Top-1 on the validation split, one centre view.",
        "",
        format_table(results),
        "",
        "Top-1 within time-reversed pairs is the top-1 accuracy over the videos of the eight paired classes "
        "(slide left/right, up/down, grow/shrink, rotate clockwise/counter-clockwise). Both classes of a pair have "
        "the same distribution of single frames, so a model blind to frame order (C2D, NL) cannot exceed 50 % there.",
        "",
        "![per-class top-1](per_class.png)",
        "",
        *per_class,
        "",
        f"Total time {summary['total_seconds']:.0f} s, of which {summary['data_seconds']:.0f} s writing or checking "
        "the dataset. Training time includes the validation after the last epoch. Run folders (config, metrics, "
        "checkpoints, eval report): `runs/<model>/`.",
        "",
        f"Machine: {describe(summary['machine'])}. Times scale with the machine (a 2-core AVX2-only CPU is about "
        "2-4x slower than an AVX-512 one); accuracies are the same on the same machine and torch build, and may "
        "differ slightly elsewhere (rounding changes which neighbour or which tied maximum wins).",
        *(["", f"Load: {describe_load(summary['load'], s['threads'])}"] if "load" in summary else []),
    ]
    (out / "report.md").write_text("\n".join(text) + "\n")
