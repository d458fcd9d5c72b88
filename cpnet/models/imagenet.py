"""ImageNet initialisation: load a torchvision-layout 2D ResNet state dict into a ``VideoResNet``.

Also read, recognised by their content: tensorpack's ``ImageNet-ResNet{18,34,50,101}.npz`` (the initialisation of
the authors' released CPNets; GitHub ``tensorpack/tensorpack``, ``examples/ResNet``), an ``.npz`` of TF variables
named ``conv0/W``, ``conv0/bn/{gamma,beta,mean/EMA,variance/EMA}``, ``group{g}/block{i}/conv{j}/…``,
``group{g}/block{i}/convshortcut/…`` and ``linear/{W,b}`` (a ``:0`` suffix is allowed). Their convs have no bias
(a BN follows each), so the names and layouts translate one to one into torchvision's: kernels (kh, kw, I, O) →
(O, I, kh, kw), ``linear/W`` (I, O) → ``fc.weight`` (O, I); bottlenecks stride on the 3×3 conv, as torchvision's
do. tensorpack pads as TF ``'SAME'`` (the stem and strided convs one pixel off torchvision's symmetric padding) with
BN ε 1e-5: build the model with ``padding="same"`` to reproduce its 2D function exactly.

Parameters map by name (our ResNet keeps torchvision's names). A 2D conv kernel (O, I, kh, kw) goes into a C2D conv
(O, I, 1, kh, kw) unchanged, and into a C3D conv (O, I, t, kh, kw) inflated: repeated over time and divided by t,
so a temporally constant clip gives the 2D response away from the clip's ends. The fc loads only when its shape
matches (1000 classes). Parameters only our model has (CP, non-local, SMART) keep their init. A conv replaced by a
SMART block (ARTNet's stem and the second conv of every block of res2–res4) is skipped with the BN after it: that BN
now normalises the block's 1×1×1 fusion of 1.5C channels, not the conv's output, and the SMART branches keep their
init (ARTNet trains them from scratch; its fixed pair pooling is a buffer and never loads). Any other shape mismatch
is an error, since it means the checkpoint is not the architecture asked for.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cpnet.models.resnet import STAGES, VideoResNet
from cpnet.models.smart import SMARTBlock


@dataclass
class LoadReport:
    """What ``load_imagenet`` did, key by key (keys are state-dict names).

    ``loaded``: copied from the file (``inflated`` ones included); ``inflated``: 2D kernels repeated over time;
    ``missing``: model entries the file did not set (they keep their init); ``unexpected``: file entries with no
    counterpart in the model; ``skipped``: file entries deliberately left out (fc of another class count, convs
    replaced by SMART blocks and the BN after them).
    """

    loaded: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _model_keys: list[str] = field(default_factory=list, repr=False)
    _file_keys: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """A few human-readable lines; a module whose every entry is listed shows as ``prefix.*``."""
        lines = [f"loaded {len(self.loaded)} tensors ({len(self.inflated)} inflated over time)"]
        for name, universe in (("missing", self._model_keys), ("unexpected", self._file_keys),
                               ("skipped", self._file_keys)):
            keys = getattr(self, name)
            shown = _compact(keys, universe)
            lines.append(f"{name} ({len(keys)}): {', '.join(shown) if shown else '-'}")
        return "\n".join(lines)


def load_imagenet(model: nn.Module, path: str | Path, verbose: bool = True) -> LoadReport:
    """Initialise ``model`` (a ``VideoResNet``) from the 2D ResNet state dict saved at ``path``.

    The file holds a state dict, or a checkpoint dict with it under ``"state_dict"`` or ``"model"`` (a DataParallel
    ``module.`` prefix is removed), or is one of tensorpack's ImageNet ResNet ``.npz`` files (keys in the report
    then use torchvision's names). Prints the report unless ``verbose`` is False, and returns it.
    """
    if not isinstance(model, VideoResNet):
        raise ValueError(f"load_imagenet expects a cpnet VideoResNet, got {type(model).__name__}")
    state = _read_state_dict(Path(path))
    _check_depth(model, state, path)
    targets = model.state_dict()  # tensors share storage with the model: copy_ writes into it
    report = LoadReport(_model_keys=list(targets), _file_keys=list(state))
    smart = {name for name, m in model.named_modules() if isinstance(m, SMARTBlock)}
    for key, value in state.items():
        if _replaced_by_smart(key, smart):
            report.skipped.append(key)
        elif key not in targets:
            report.unexpected.append(key)
        elif key.startswith("fc.") and value.shape != targets[key].shape:
            report.skipped.append(key)  # another class count: the fc keeps its init
        else:
            with torch.no_grad():
                targets[key].copy_(_fit(key, value, targets[key], report))
            report.loaded.append(key)
    done = set(report.loaded)
    report.missing = [k for k in targets if k not in done and not k.endswith("num_batches_tracked")]
    if verbose:
        print(f"load_imagenet({path}):\n{report.summary()}")
    return report


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict stored at ``path``, unwrapped from a checkpoint and a ``module.`` prefix."""
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet weights not found: {path}")
    if _is_npz(path):
        return read_tensorpack_resnet(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or non-torch file: say which file
        raise ValueError(f"cannot read {path} as a PyTorch state dict: {e}") from e
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a dict of tensors, possibly under 'state_dict' or "
                         "'model')")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _is_npz(path: Path) -> bool:
    """A NumPy ``.npz`` archive: a zip of ``.npy`` members (``torch.save``'s zip archives hold none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return bool(names) and all(name.endswith(".npy") for name in names)


_TENSORPACK_BN = {"gamma": "weight", "beta": "bias", "mean/EMA": "running_mean", "variance/EMA": "running_var"}
_TENSORPACK_NAME = re.compile(r"(conv0|group\d/block\d+/conv(?:\d|shortcut))/(W|bn/(?:{}))".format(
    "|".join(_TENSORPACK_BN)))


def read_tensorpack_resnet(path: str | Path) -> dict[str, torch.Tensor]:
    """tensorpack's ImageNet ResNet ``.npz`` as a torchvision-layout 2D state dict. Entries of other names (a
    conv bias, training counters) keep their own names, so ``load_imagenet`` reports them as unexpected."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name.removesuffix(":0"): npz[name] for name in npz.files}
    except Exception as e:  # a damaged archive or pickled members: say which file
        raise ValueError(f"cannot read {path} as a NumPy .npz of arrays: {e}") from e
    if "conv0/W" not in arrays:
        found = ", ".join(sorted(arrays)[:4]) or "nothing"
        raise ValueError(f"{path} is an .npz without tensorpack ResNet names (expected conv0/W, conv0/bn/gamma, "
                         f"group0/block0/conv1/W, …, linear/W); it holds {found}")
    state: dict[str, torch.Tensor] = {}
    for name, value in arrays.items():
        m = _TENSORPACK_NAME.fullmatch(name)
        if name in ("linear/W", "linear/b"):
            state[f"fc.{'weight' if name.endswith('W') else 'bias'}"] = torch.from_numpy(value.T.copy())
        elif m is None:
            state[name] = torch.from_numpy(value) if value.dtype.kind in "biuf" else torch.empty(0)
        else:
            conv, bn = _torchvision_modules(m[1])
            if m[2] == "W":  # (kh, kw, I, O) → (O, I, kh, kw)
                state[f"{conv}.weight"] = torch.from_numpy(value.transpose(3, 2, 0, 1).copy())
            else:
                state[f"{bn}.{_TENSORPACK_BN[m[2][len('bn/'):]]}"] = torch.from_numpy(value)
    return state


def _torchvision_modules(scope: str) -> tuple[str, str]:
    """(conv, BN) module names of torchvision's ResNet for a tensorpack conv scope: ``conv0`` the stem,
    ``group{g}/block{i}/conv{j}`` a block's conv, ``…/convshortcut`` its projection shortcut."""
    if scope == "conv0":
        return "conv1", "bn1"
    m = re.fullmatch(r"group(\d)/block(\d+)/conv(\d|shortcut)", scope)
    assert m is not None, scope
    block = f"layer{int(m[1]) + 1}.{m[2]}"
    if m[3] == "shortcut":
        return f"{block}.downsample.0", f"{block}.downsample.1"
    return f"{block}.conv{m[3]}", f"{block}.bn{m[3]}"


def _check_depth(model: VideoResNet, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse a checkpoint of another depth or block type, with both architectures in the message."""
    blocks = [0, 0, 0, 0]
    for key in state:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            stage = int(m.group(1)) - 1
            blocks[stage] = max(blocks[stage], int(m.group(2)) + 1)
    kind = "bottleneck" if any(re.match(r"layer\d\.\d+\.conv3\.", k) for k in state) else "basic"
    if tuple(blocks) != model.layers or kind != model.block:
        raise ValueError(f"{path} holds a {_describe(kind, blocks)} but the model is a "
                         f"{_describe(model.block, model.layers)}; load weights of the same depth")


def _describe(kind: str, layers: list[int] | tuple[int, ...]) -> str:
    """E.g. 'ResNet-18 (basic blocks [2, 2, 2, 2] in layer1/layer2/layer3/layer4)'."""
    depth = (3 if kind == "bottleneck" else 2) * sum(layers) + 2
    return f"ResNet-{depth} ({kind} blocks {list(layers)} in {'/'.join(STAGES)})"


def _replaced_by_smart(key: str, smart: set[str]) -> bool:
    """True for a file key of a conv the model replaced by a SMART block, or of the BN right after it."""
    module = key.rsplit(".", 1)[0]
    conv = re.sub(r"(^|\.)bn(\d)$", r"\1conv\2", module)
    return module in smart or conv in smart


def _fit(key: str, value: torch.Tensor, target: torch.Tensor, report: LoadReport) -> torch.Tensor:
    """``value`` shaped like ``target``: equal, a 2D kernel unsqueezed (t = 1) or inflated (t > 1), else an error."""
    if value.shape == target.shape:
        return value
    if value.dim() == 4 and target.dim() == 5 and value.shape == target.shape[:2] + target.shape[3:]:
        t = target.shape[2]
        if t > 1:
            report.inflated.append(key)
        # (O, I, kh, kw) -> (O, I, t, kh, kw), each time slice kernel / t so the temporal sum reproduces the 2D one
        return value.unsqueeze(2).expand_as(target) / t
    raise ValueError(f"shape mismatch for {key!r}: checkpoint has {tuple(value.shape)}, model expects "
                     f"{tuple(target.shape)}")


def _compact(keys: list[str], universe: list[str]) -> list[str]:
    """``keys`` with every fully listed module collapsed to ``prefix.*`` (outermost such module), order kept.

    BN step counters count as listed, since ``missing`` leaves them out.
    """
    listed = set(keys) | {k for k in universe if k.endswith("num_batches_tracked")}
    total: dict[str, int] = {}
    hit: dict[str, int] = {}
    for key in universe:
        parts = key.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            total[prefix] = total.get(prefix, 0) + 1
            hit[prefix] = hit.get(prefix, 0) + (key in listed)
    out: list[str] = []
    for key in keys:
        parts = key.split(".")
        prefixes = (".".join(parts[:i]) for i in range(1, len(parts)))
        shown = next((f"{p}.*" for p in prefixes if total.get(p) and hit[p] == total[p]), key)
        if shown not in out:
            out.append(shown)
    return out
