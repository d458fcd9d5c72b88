"""Registered presets (SPEC §2): each published variant is a few settings for the one ``VideoResNet``.

``create_model(name, num_classes=400, **overrides)`` calls the preset; any ``VideoResNet`` argument can be
overridden (``width=16``, ``stem_stride=1``, ``cp_k=4``, ``cp_init_gamma=1.0``, ``dropout=0.0``, ``layers=...``).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from cpnet.models.registry import register_model
from cpnet.models.resnet import VideoResNet

OVERRIDES = tuple(p for p in inspect.signature(VideoResNet).parameters if p != "num_classes")

_R18 = {"block": "basic", "layers": (2, 2, 2, 2)}
_R34 = {"block": "basic", "layers": (3, 4, 6, 3)}
_R50 = {"block": "bottleneck", "layers": (3, 4, 6, 3)}
_R101 = {"block": "bottleneck", "layers": (3, 4, 23, 3)}
_EVERY_BLOCK_RES3_RES5 = {"layer2": (0, 1), "layer3": (0, 1), "layer4": (0, 1)}


def build(settings: dict[str, Any], num_classes: int, overrides: dict[str, Any]) -> VideoResNet:
    """``VideoResNet(**settings)`` with ``overrides`` replacing settings; an unknown override is a ValueError."""
    for key in overrides:
        if key not in OVERRIDES:
            close = difflib.get_close_matches(key, OVERRIDES, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown model override {key!r}{hint} (valid: {', '.join(OVERRIDES)})")
    return VideoResNet(num_classes=num_classes, **{**settings, **overrides})


@register_model
def c2d_r18(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """C2D ResNet-18: the 2D backbone applied to every frame (supp. Table 1 baseline)."""
    return build(_R18, num_classes, overrides)


@register_model
def c2d_r34(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """C2D ResNet-34 (the SSv2/Jester backbone)."""
    return build(_R34, num_classes, overrides)


@register_model
def c2d_r50(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """C2D ResNet-50 (bottleneck)."""
    return build(_R50, num_classes, overrides)


@register_model
def c2d_r101(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """C2D ResNet-101 (bottleneck; the Kinetics large model's backbone)."""
    return build(_R101, num_classes, overrides)


@register_model
def cpnet_r18(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """CPNet R18: CP after every block of res3–res5 (6), k 8, MLP [C/4, C/2] (supp. Table 1)."""
    cp = {"cp_at": _EVERY_BLOCK_RES3_RES5, "cp_k": 8, "cp_mlp": (1 / 4, 1 / 2)}
    return build({**_R18, **cp}, num_classes, overrides)


@register_model
def cpnet_r34(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """CPNet R34: CP at res3 blocks 2, 3 and res4 blocks 3, 4, 5; k 12, MLP [C/4, C/2] (supp. Table 3)."""
    cp = {"cp_at": {"layer2": (2, 3), "layer3": (3, 4, 5)}, "cp_k": 12, "cp_mlp": (1 / 4, 1 / 2)}
    return build({**_R34, **cp}, num_classes, overrides)


@register_model
def cpnet_r101(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """CPNet R101: CP at res3 blocks 2, 3 and res4 blocks 20, 21, 22; k 4, MLP [C/16, C/8] (supp. Table 2)."""
    cp = {"cp_at": {"layer2": (2, 3), "layer3": (20, 21, 22)}, "cp_k": 4, "cp_mlp": (1 / 16, 1 / 8)}
    return build({**_R101, **cp}, num_classes, overrides)


@register_model
def nl_r18(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """Non-local R18: an embedded-Gaussian NL block after every block of res3–res5 (6)."""
    return build({**_R18, "nl_at": _EVERY_BLOCK_RES3_RES5}, num_classes, overrides)


@register_model
def c3d_r18(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """C3D R18: every k×k kernel 3×k×k (stem 3×7×7), temporal stride 1, no temporal downsampling."""
    return build({**_R18, "temporal_kernel": 3}, num_classes, overrides)


@register_model
def artnet_r18(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """ARTNet R18: C3D R18 with SMART blocks in the stem and as the second conv of every block of res2–res4 (res5
    plain 3×3×3), where the released ``112_artnet_resnet_18_deploy.prototxt`` puts them. 33.55 in the supplement's
    convention (it prints 31.81, C3D's figure; see :mod:`cpnet.models.smart`)."""
    smart = {"smart_stem": True, "smart_at": {"layer1": (0, 1), "layer2": (0, 1), "layer3": (0, 1)}}
    return build({**_R18, "temporal_kernel": 3, **smart}, num_classes, overrides)


# The authors' released TensorFlow models (GitHub xingyul/cpnet, models/c2d_resnet{18,34,101}_cp_{112,224}.py), as
# options of the same ResNet: TF 'SAME' padding, BN ε 1e-3, the res3 search on a 2× smaller grid resampled with
# TF1's bilinear resize, γ of the CP output BN starting at 0, and the stem conv at stride 1 for 112² input (Jester)
# or 2 for 224² (Something-Something v2). Their conv biases fold into the BNs when converting (cpnet.convert).
_RELEASED = {"padding": "same", "bn_eps": 1e-3, "cp_shrink": {"layer2": 2}, "cp_resample": "bilinear_tf1",
             "cp_coords": "normalized", "cp_init_gamma": 0.0, "dropout": 0.5}
_RELEASED_CP = {
    "r18": {**_R18, "cp_at": {"layer2": (0, 1), "layer3": (0, 1)}, "cp_k": 8, "cp_mlp": (1 / 4, 1 / 2)},
    "r34": {**_R34, "cp_at": {"layer2": (2, 3), "layer3": (3, 4, 5)}, "cp_k": 8, "cp_mlp": (1 / 4, 1 / 2)},
    "r101": {**_R101, "cp_at": {"layer2": (2, 3), "layer3": (20, 21, 22)}, "cp_k": 4, "cp_mlp": (1 / 8,),
             "cp_bottleneck": 1 / 8, "stride_1x1": True},
}


def _released(depth: str, size: int, num_classes: int, overrides: dict[str, Any]) -> VideoResNet:
    return build({**_RELEASED_CP[depth], **_RELEASED, "stem_stride": 1 if size == 112 else 2}, num_classes, overrides)


@register_model
def cpnet_r18_released_112(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """The released CPNet R18 for 112² clips: CP after both blocks of res3 and res4, k 8, MLP [C/4, C/2]."""
    return _released("r18", 112, num_classes, overrides)


@register_model
def cpnet_r18_released_224(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """The released CPNet R18 for 224² clips (stem conv at stride 2)."""
    return _released("r18", 224, num_classes, overrides)


@register_model
def cpnet_r34_released_112(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """The released CPNet R34 for 112² clips (the Jester checkpoint): CP at res3 blocks 2, 3 and res4 blocks
    3, 4, 5, k 8, MLP [C/4, C/2]."""
    return _released("r34", 112, num_classes, overrides)


@register_model
def cpnet_r34_released_224(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """The released CPNet R34 for 224² clips (the Something-Something v2 checkpoint; stem conv at stride 2)."""
    return _released("r34", 224, num_classes, overrides)


@register_model
def cpnet_r101_released_112(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """The released CPNet R101 for 112² clips: bottlenecks striding on their first 1×1, CP at res3 blocks 2, 3
    and res4 blocks 20, 21, 22, k 4, a C/8 bottleneck before the search and MLP [C/8]."""
    return _released("r101", 112, num_classes, overrides)


@register_model
def cpnet_r101_released_224(num_classes: int = 400, **overrides: Any) -> VideoResNet:
    """The released CPNet R101 for 224² clips (stem conv at stride 2)."""
    return _released("r101", 224, num_classes, overrides)
