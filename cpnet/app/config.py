"""Experiment configuration: one typed schema, one YAML file per experiment, ``--set key=value`` overrides.

Only the application layer (``cpnet.app``: the CLI's subcommands and the demo call it) holds a whole
:class:`Config`; models, datasets and the engine take explicit arguments.
A YAML file lists only what differs from the defaults below. Every key is checked: an unknown key fails with the
nearest valid names (a typo never silently falls back to a default). ``model.options`` is free-form: it is
forwarded to ``cpnet.create_model`` as keyword overrides, which validates it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cpnet.app.config_bounds import CONFIG_BOUNDS, check_upper, load_yaml, read_config_text
from cpnet.data.annotations import DATASETS as READERS
from cpnet.data.sampling import SAMPLINGS
from cpnet.data.synthetic import DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL
from cpnet.data.views import PROTOCOL_NAMES as PROTOCOLS
from cpnet.device import AMP_DTYPES, DEVICES
from cpnet.engine.optim import BN_MOMENTUM_SCHEDULES, SCHEDULES
from cpnet.files import atomic_write_text
from cpnet.models.bounds import check_nested

# Each vocabulary is defined once, where it is implemented; "synthetic" is the built-in set, read as Jester.
DATASETS = ("synthetic", *READERS)


@dataclass
class ModelConfig:
    """Which preset to build and the keyword overrides passed to ``cpnet.create_model``."""

    name: str = "cpnet_r18"
    options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # weights loaded before training: ImageNet ResNet weights (SPEC §2; a torchvision-layout
    # state dict or tensorpack's ImageNet-ResNet{18,34,50,101}.npz), a cpnet checkpoint to fine-tune, or "none"
    # (from scratch; what every real-dataset config says when it does not name a file)


@dataclass
class SyntheticConfig:
    """Size of the built-in synthetic dataset written (or reused) in the Jester layout when dataset=synthetic."""

    num_train: int = DEFAULT_NUM_TRAIN
    num_val: int = DEFAULT_NUM_VAL
    num_frames: int = 8
    size: int = 32
    seed: int = 0


@dataclass
class DataConfig:
    """Where the videos are and how clips are sampled and augmented (SPEC §3)."""

    dataset: str = "synthetic"
    root: str = "data/synthetic"
    train_split: str = "train"
    val_split: str = "validation"
    num_frames: int = 8
    stride: int = 1
    sampling: str = "dense"
    size: int = 32
    short_side: int | None = None
    flip: bool = True
    color_jitter: bool = True
    skip_bad: bool = False
    max_bad_fraction: float = 0.01  # with skip_bad: stop the run once more than this fraction of an epoch is bad
    workers: int = 2
    cache_mb: int = 0  # keep up to this many MiB of decoded frames in memory, decoding a small set once per run
    # instead of once per epoch; needs workers: 0 (worker processes would each fill and lose their own copy)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class OptimConfig:
    """SGD and its learning-rate schedule (the released recipe: lr 0.01, momentum 0.9, x0.1 every 20/40 epochs)."""

    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = False  # by default BN parameters and biases get no weight decay
    schedule: str = "step"
    step_size: int = 40  # epochs between decays (schedule=step)
    gamma: float = 0.1
    min_lr: float = 0.0  # final learning rate (schedule=cosine)
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    # Linear scaling rule: lr (and min_lr) x global batch / reference_batch, where the global batch is
    # train.batch_size x processes x train.accumulate; reference_batch None: the batch of one process.
    scale_lr: bool = False
    reference_batch: int | None = None
    # BatchNorm momentum: "default" (each layer's, 0.1) or "released" (the authors' schedule: 0.5, halved every
    # step_size epochs, at least 0.01)
    bn_momentum: str = "default"
    backbone_lr_mult: float = 1.0  # learning rate of everything but the classifier, relative to lr (fine-tuning)


@dataclass
class TrainConfig:
    """The training loop: budget, batch, precision, reproducibility, and the DDP options under torchrun."""

    epochs: int = 40
    batch_size: int = 8  # per process: the global batch is batch_size x processes x accumulate
    accumulate: int = 1  # gradient accumulation steps per optimiser step
    label_smoothing: float = 0.0
    amp: bool = True  # mixed precision; used on CUDA only
    amp_dtype: str = "float16"  # "float16" (loss-scaled) or "bfloat16" (Ampere and newer GPUs)
    seed: int = 0
    val_every: int = 1  # validate after every n-th epoch and after the last one
    deterministic: bool = True  # deterministic kernels: the same figures again on the same machine and torch build
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    channels_last: bool = False  # keep the model's weights and activations channels-last (N, T, H, W, C in memory),
    # for training and evaluation: oneDNN's CPU convolutions ran 1.1-1.2x faster so (the demo's C2D and C3D steps)
    flush_denormal: bool = True  # on CPU, treat denormal floats as zero while training: tiny weights and gradients
    # otherwise go denormal as training proceeds and x86 arithmetic on them is slow (demo steps grew 1.3x by epoch 3)
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)
    # Fine-tuning: stages whose parameters do not train ("stem", "layer1" … "layer4", or any module name) — their
    # BatchNorm statistics stay fixed too — and freeze_bn: every BatchNorm keeps its running statistics
    freeze: list[str] = field(default_factory=list)
    freeze_bn: bool = False
    # Progress inside an epoch, for batch jobs (nohup, SLURM, CI: stdout is a file, so no progress bar): a line
    # every log_every iterations (0: not by count) and, when stdout is not a terminal, every log_seconds seconds
    # (0: never); every record_seconds at most one of them is also kept in metrics.jsonl (and TensorBoard)
    log_every: int = 0
    log_seconds: float = 30.0
    record_seconds: float = 300.0


@dataclass
class EvalConfig:
    """Test-time views (SPEC §4): a named protocol, optionally with clips/crops overridden."""

    protocol: str = "single"
    clips: int | None = None
    crops: int | None = None
    batch_size: int = 8


@dataclass
class Config:
    """A whole experiment."""

    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------------------------------------------
# dict <-> dataclass with type checks


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, e.g. ``optim.lr`` (sections included, e.g. ``optim``)."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}{name}"
        keys.append(key)
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, key + "."))
    return keys


def _unknown_key_error(key: str) -> ValueError:
    leaf = key.rsplit(".", 1)[-1]
    # The right name in the wrong section first (`train.lr` -> `optim.lr`), then spelling neighbours at the same depth.
    close = [k for k in valid_keys() if k.rsplit(".", 1)[-1] == leaf]
    same_depth = [k for k in valid_keys() if k.count(".") == key.count(".")]
    close += [k for k in difflib.get_close_matches(key, same_depth, n=3, cutoff=0.6) if k not in close]
    hint = f"; did you mean {', '.join(repr(c) for c in close[:4])}?" if close else ""
    return ValueError(f"unknown config key {key!r}{hint}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted for floats, lists for tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ValueError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {key!r}: expected a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value] if args else list(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise ValueError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        if name not in hints:
            raise _unknown_key_error(f"{prefix}{name}")
        kwargs[name] = _coerce(value, hints[name], f"{prefix}{name}")
    return cls(**kwargs)


def _check_choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"config key {key!r}: {value!r} is not one of {', '.join(map(str, choices))}")


def _check_positive(cfg: Config, keys: Sequence[str], allow_zero: bool = False) -> None:
    for key in keys:
        value = get_key(cfg, key)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"config key {key!r}: expected a value {bound}, got {value!r}")


def validate(cfg: Config) -> Config:
    """Check enumerations and ranges that the types alone do not express; returns ``cfg``."""
    _check_choice("data.dataset", cfg.data.dataset, DATASETS)
    _check_choice("data.sampling", cfg.data.sampling, SAMPLINGS)
    _check_choice("optim.schedule", cfg.optim.schedule, SCHEDULES)
    _check_choice("optim.bn_momentum", cfg.optim.bn_momentum, BN_MOMENTUM_SCHEDULES)
    _check_choice("train.amp_dtype", cfg.train.amp_dtype, AMP_DTYPES)
    _check_choice("eval.protocol", cfg.eval.protocol, PROTOCOLS)
    _check_choice("train.device", cfg.train.device, DEVICES)
    _check_positive(cfg, ["data.num_frames", "data.stride", "data.size", "data.short_side", "optim.step_size",
                          "train.epochs", "train.batch_size", "train.accumulate", "train.threads", "train.val_every",
                          "optim.reference_batch", "eval.clips", "eval.crops", "eval.batch_size",
                          "data.synthetic.num_train",
                          "data.synthetic.num_val", "data.synthetic.num_frames", "data.synthetic.size"])
    _check_positive(cfg, ["optim.lr", "optim.momentum", "optim.weight_decay", "optim.min_lr", "optim.warmup_epochs",
                          "data.workers", "data.cache_mb", "data.max_bad_fraction", "train.label_smoothing",
                          "train.log_every", "train.log_seconds", "train.record_seconds"],
                    allow_zero=True)
    check_upper(lambda key: get_key(cfg, key))
    if not 0.0 <= cfg.train.label_smoothing < 1.0:
        smoothing = cfg.train.label_smoothing
        raise ValueError(f"config key 'train.label_smoothing': expected a value in [0, 1), got {smoothing}")
    if cfg.data.cache_mb and cfg.data.workers:
        raise ValueError(f"config key 'data.cache_mb': a frame cache needs data.workers: 0, got data.workers: "
                         f"{cfg.data.workers} (worker processes would each fill and lose their own copy)")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:
        raise ValueError("config key 'optim.nesterov': nesterov needs optim.momentum > 0")
    return cfg


def config_from_dict(data: dict | None, source: str | Path | None = None) -> Config:
    """Build and validate a :class:`Config` from nested mappings (missing keys keep their defaults). The mappings
    may come from a file (a checkpoint's config; ``source`` names it in every error): they are walked within
    :data:`~cpnet.app.config_bounds.CONFIG_BOUNDS` before anything in them is used or formatted."""
    try:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a mapping of sections, got {type(data).__name__}")
        check_nested(data, "the config", CONFIG_BOUNDS)
        return validate(_from_dict(Config, data))
    except ValueError as e:
        if source is None:
            raise
        raise ValueError(f"{source}: {e}") from None


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dicts/lists/scalars: YAML- and ``torch.load(weights_only=True)``-safe."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------------------------
# overrides, files


def get_key(cfg: Config, key: str) -> Any:
    """The value at dotted ``key`` of ``cfg``."""
    value: Any = cfg
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)``; the value is parsed as YAML (``[1, 2]``, ``null``, ``true``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {text!r}: expected key=value, e.g. optim.lr=0.1")
    if len(text) > 10_000:
        raise ValueError(f"override {key[:100]!r}…: {len(text):,} characters, more than the limit of 10,000")
    value = load_yaml(raw, f"override {text!r}: the value") if raw.strip() else ""
    return key, value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Set each ``key=value`` of ``overrides`` into the nested dict ``data`` (in place, returned)."""
    schema = set(valid_keys())
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        # Keys inside a free-form mapping (model.options.cp_k) are valid once their mapping's key is.
        known = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in schema), None)
        if known is None or (known != key and not isinstance(get_key(Config(), known), dict)):
            raise _unknown_key_error(key)
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read the YAML experiment file ``path`` (None: the defaults), apply ``overrides``, validate. The file and the
    override values are bounded (:mod:`cpnet.app.config_bounds`: no YAML aliases, size, nesting, numeric fields)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = load_yaml(read_config_text(path), f"config file {path}") or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {path}: expected a mapping of sections, got {type(data).__name__}")
    apply_overrides(data, overrides)
    try:
        return config_from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}" if path is not None else str(e)) from None


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text (every key, defaults included)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config to ``path`` atomically (a private temporary sibling, flushed, then renamed)."""
    return atomic_write_text(path, dump_config(cfg))
