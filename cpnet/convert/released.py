"""The authors' released TensorFlow CPNets (GitHub ``xingyul/cpnet``) as state dicts of the ``*_released_*`` presets.

Their variables, by scope: ``conv0`` (stem), ``group{g}/block{i}/conv{1,2,3}`` and ``…/convshortcut`` (stage g+1 of
ours), ``…/pointnet/conv_bottle0``, ``…/pointnet/conv{j}``, ``…/pointnet/conv_final`` and ``…/pointnet/bn_final``
(the CP module) and ``fc``; each conv holds ``weights`` and ``biases`` and, when batch-normalised, ``bn/{beta,
gamma,moving_mean,moving_variance}``. Layouts: conv kernels (T, H, W, C_in, C_out), the pair MLP's (1, 1, C_in,
C_out), fc (C_in, C_out). The pair MLP's input is [Δ, x_p, x_q] in both, so its first layer maps column for column.

Backbone convs have a bias there and none here: a bias b before a BatchNorm folds exactly into its running mean
(BN(x + b) with mean μ is BN(x) with mean μ − b; in training mode the batch mean absorbs b anyway). Optimiser slots
(``…/Momentum``) and ``global_step`` are ignored; any other variable left over is an error, as is a missing one or
a shape that does not fit, each naming the variable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cpnet.models.cp import CPModule
from cpnet.models.resnet import STAGES, VideoResNet

IGNORED_SUFFIXES = ("/Momentum", "/ExponentialMovingAverage")
IGNORED_NAMES = ("global_step",)
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def _conv_bn(ours: tuple[str, str], tf: str) -> Iterator[tuple[str, str, str]]:
    """(our key, TF variable, kind) of a bias-free conv followed by a BN: the TF conv's bias folds into the BN."""
    yield f"{ours[0]}.weight", f"{tf}/weights", "conv"
    for name in ("weight", "bias", "running_var"):
        yield f"{ours[1]}.{name}", f"{tf}/bn/{_BN[name]}", "vector"
    yield f"{ours[1]}.running_mean", f"{tf}/bn/moving_mean", f"fold:{tf}/biases"


def _cp(ours: str, tf: str, cp: CPModule) -> Iterator[tuple[str, str, str]]:
    if cp.reduce is not None:
        yield f"{ours}.reduce.0.weight", f"{tf}/conv_bottle0/weights", "conv"
        yield f"{ours}.reduce.0.bias", f"{tf}/conv_bottle0/biases", "vector"
        for name, tf_name in _BN.items():
            yield f"{ours}.reduce.1.{name}", f"{tf}/conv_bottle0/bn/{tf_name}", "vector"
    for j in range(len(cp.layers)):
        yield f"{ours}.layers.{j}.weight", f"{tf}/conv{j}/weights", "linear"
        yield f"{ours}.layers.{j}.bias", f"{tf}/conv{j}/biases", "vector"
        for name, tf_name in _BN.items():
            yield f"{ours}.norms.{j}.{name}", f"{tf}/conv{j}/bn/{tf_name}", "vector"
    yield f"{ours}.out_conv.weight", f"{tf}/conv_final/weights", "conv"
    yield f"{ours}.out_conv.bias", f"{tf}/conv_final/biases", "vector"
    for name, tf_name in _BN.items():
        yield f"{ours}.out_bn.{name}", f"{tf}/bn_final/{tf_name}", "vector"


def variable_map(model: VideoResNet) -> list[tuple[str, str, str]]:
    """(our state-dict key, TF variable name, kind) for every parameter and BN statistic of ``model``; kind is
    ``conv``, ``linear``, ``fc``, ``vector`` or ``fold:<bias variable>`` (a running mean minus that bias)."""
    if model.conv1.bias is not None or not isinstance(model.conv1, nn.Conv3d):
        raise ValueError("only plain VideoResNets (no SMART stem) map onto the released graph")
    rows = list(_conv_bn(("conv1", "bn1"), "conv0"))
    for g, stage in enumerate(STAGES):
        for i, block in enumerate(getattr(model, stage)):
            tf = f"group{g}/block{i}"
            for j in (1, 2, 3):
                if hasattr(block, f"conv{j}"):
                    rows += _conv_bn((f"{stage}.{i}.conv{j}", f"{stage}.{i}.bn{j}"), f"{tf}/conv{j}")
            if block.downsample is not None:
                rows += _conv_bn((f"{stage}.{i}.downsample.0", f"{stage}.{i}.downsample.1"), f"{tf}/convshortcut")
            if block.cp is not None:
                rows += _cp(f"{stage}.{i}.cp", f"{tf}/pointnet", block.cp)
            if getattr(block, "nl", None) is not None:
                raise ValueError(f"{stage}.{i} has a non-local block: the released graph has none")
    rows += [("fc.weight", "fc/weights", "fc"), ("fc.bias", "fc/biases", "vector")]
    return rows


def tf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The TF variable shape that becomes a tensor of ``shape`` (ours) of this kind."""
    if kind == "conv":  # (O, I, T, H, W) ← (T, H, W, I, O)
        return (*shape[2:], shape[1], shape[0])
    if kind == "linear":  # (O, I) ← (1, 1, I, O)
        return (1, 1, shape[1], shape[0])
    if kind == "fc":  # (O, I) ← (I, O)
        return (shape[1], shape[0])
    return tuple(shape)


def _to_ours(kind: str, value: np.ndarray) -> np.ndarray:
    if kind == "conv":
        return np.transpose(value, (4, 3, 0, 1, 2))
    if kind == "linear":
        return value.reshape(value.shape[-2:]).T
    if kind == "fc":
        return value.T
    return value


def released_state_dict(variables: Mapping[str, np.ndarray], model: VideoResNet,
                        checkpoint: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``model``'s state dict from the TF ``variables`` (name → array) of a released CPNet; ``model`` (a
    ``*_released_*`` preset with the checkpoint's class count) gives the shapes and dtypes. Errors name the first
    variable that is missing, has a shape that does not fit, or is left over."""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, name, kind in variable_map(model):
        target = own[key]
        expected = tf_shape("vector" if kind.startswith("fold:") else kind, tuple(target.shape))
        value = _variable(variables, name, expected, key, checkpoint)
        used.add(name)
        if kind.startswith("fold:"):
            bias_name = kind[len("fold:"):]
            value = value - _variable(variables, bias_name, expected, key, checkpoint)
            used.add(bias_name)
        out[key] = torch.from_numpy(np.ascontiguousarray(_to_ours(kind, value))).to(target.dtype)
    left = sorted(n for n in variables if n not in used and not n.endswith(IGNORED_SUFFIXES)
                  and n not in IGNORED_NAMES)
    if left:
        raise ValueError(f"{checkpoint}: variable {left[0]!r} has no place in the model ({len(left)} left over): "
                         "is this a checkpoint of another architecture or depth?")
    for key, value in own.items():  # BN step counters: not in TF; keep the model's
        out.setdefault(key, value.clone())
    return out


def _variable(variables: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], key: str,
              checkpoint: str) -> np.ndarray:
    if name not in variables:
        raise ValueError(f"{checkpoint}: missing variable {name!r} (for {key}); is this a checkpoint of another "
                         "architecture?")
    value = np.asarray(variables[name])
    if tuple(value.shape) != shape:
        raise ValueError(f"{checkpoint}: variable {name!r} has shape {tuple(value.shape)}, expected {shape} for "
                         f"{key}: the checkpoint and the preset differ (depth, width or class count)")
    return value.astype(np.float64)


def read_label_file(path: str | Path) -> list[str]:
    """Class names in the order the released training used: Jester's ``jester-v1-labels.csv`` (one per line) or
    Something-Something v2's ``something-something-v2-labels.json`` (template → index)."""
    from cpnet.data import jester, ssv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    if path.suffix.lower() == ".json":
        return ssv2.read_classes(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return jester.read_classes(path)
    raise ValueError(f"{path}: expected Jester's labels .csv or Something-Something v2's labels .json")


def released_class_rows(class_names: list[str]) -> list[int]:
    """The released classifier's row of each class, for the classes in label-file order.

    Their training numbered the classes by sorted name, not in the label file's order: gulpio's ``label2idx`` is
    ``sorted(set(labels))`` (``utils/gulpio/GulpAdapter.py``) over Jester's class names, and over SSv2's templates with
    ``[ ] ( ) '`` removed (``utils/data_preparation/something-something/gen_json.py``). Taking these rows of their
    fc puts the classes in the label file's order, the order cpnet's readers number them in.
    """
    key = [name.translate(_TEMPLATE_MARKS) for name in class_names]
    released = sorted(range(len(class_names)), key=lambda i: key[i])  # released row r holds class released[r]
    rows = [0] * len(class_names)
    for row, index in enumerate(released):
        rows[index] = row
    return rows


_TEMPLATE_MARKS = str.maketrans("", "", "[]()'")


def released_test_config(preset: str, options: dict, labels: str | Path) -> dict:
    """The config stored with a converted model: the released test settings (their ``command_test.sh.*``: 12
    frames at stride 2, the crop size of the model, 8 clips x 6 crops) and the dataset its label file names, so
    ``cpnet eval --checkpoint FILE --set data.root=DIR`` evaluates as the authors did."""
    size = 112 if preset.endswith("_112") else 224
    dataset = "ssv2" if Path(labels).suffix.lower() == ".json" else "jester"
    return {"name": f"released_{preset}", "model": {"name": preset, "options": options},
            "data": {"dataset": dataset, "num_frames": 12, "stride": 2, "sampling": "dense", "size": size,
                     "short_side": size},
            "eval": {"protocol": "released"}}


@dataclass
class ReleasedModel:
    """A released checkpoint mapped onto a preset: the model holding its weights (classes in label-file order, eval
    mode), the preset and the options it needs, the class names, the TF prefix read, and the released test settings
    as a plain config dict."""

    model: VideoResNet
    preset: str
    options: dict
    class_names: list[str]
    source: Path
    test_config: dict


def convert_released(checkpoint: str | Path, preset: str, labels: str | Path) -> ReleasedModel:
    """Read a released TF checkpoint (``PREFIX`` of ``PREFIX.index`` / ``.data-*``) and map it onto ``preset`` with
    the classes of ``labels``; the weights are loaded into the preset once, so they fit it exactly."""
    from cpnet.convert.tf_checkpoint import read_tf_checkpoint, resolve_tf_prefix
    from cpnet.models.registry import create_model, list_models

    if "_released_" not in preset or preset not in list_models():
        released = [m for m in list_models() if "_released_" in m]
        raise ValueError(f"--model must be a released preset ({', '.join(released)}), got {preset!r}")
    prefix = resolve_tf_prefix(checkpoint)
    variables = read_tf_checkpoint(prefix)
    class_names = read_label_file(labels)
    stem = variables.get("conv0/weights")
    if stem is None or np.ndim(stem) != 5:
        raise ValueError(f"{prefix}: no 5-D variable 'conv0/weights': not a checkpoint of a released CPNet")
    options = {} if stem.shape[-1] == 64 else {"width": int(stem.shape[-1])}  # reduced-width test models
    model = create_model(preset, num_classes=len(class_names), **options).eval()
    state = released_state_dict(variables, model, str(prefix))
    rows = released_class_rows(class_names)
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][rows], state["fc.bias"][rows]  # label-file order
    model.load_state_dict(state)
    return ReleasedModel(model, preset, options, class_names, Path(prefix),
                         released_test_config(preset, options, labels))
