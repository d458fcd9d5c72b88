"""Registered presets (SPEC §2): each published variant is a few settings for the one ``VideoResNet``.

``create_model(name, num_classes=400, **overrides)`` calls the preset; any ``VideoResNet`` argument can be
overridden (``width=16``, ``stem_stride=1``, ``cp_k=4``, ``cp_init_gamma=1.0``, ``dropout=0.0``, ``layers=...``).
"""

from __future__ import annotations

import difflib
import inspect

from cpnet.models.registry import register_model
from cpnet.models.resnet import VideoResNet

OVERRIDES = tuple(p for p in inspect.signature(VideoResNet).parameters if p != "num_classes")

_R18 = {"block": "basic", "layers": (2, 2, 2, 2)}
_R34 = {"block": "basic", "layers": (3, 4, 6, 3)}
_R50 = {"block": "bottleneck", "layers": (3, 4, 6, 3)}
_R101 = {"block": "bottleneck", "layers": (3, 4, 23, 3)}
_EVERY_BLOCK_RES3_RES5 = {"layer2": (0, 1), "layer3": (0, 1), "layer4": (0, 1)}


def build(settings: dict, num_classes: int, overrides: dict) -> VideoResNet:
    """``VideoResNet(**settings)`` with ``overrides`` replacing settings; an unknown override is a ValueError."""
    for key in overrides:
        if key not in OVERRIDES:
            close = difflib.get_close_matches(key, OVERRIDES, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown model override {key!r}{hint} (valid: {', '.join(OVERRIDES)})")
    return VideoResNet(num_classes=num_classes, **{**settings, **overrides})


@register_model
def c2d_r18(num_classes: int = 400, **overrides) -> VideoResNet:
    """C2D ResNet-18: the 2D backbone applied to every frame (supp. Table 1 baseline)."""
    return build(_R18, num_classes, overrides)


@register_model
def c2d_r34(num_classes: int = 400, **overrides) -> VideoResNet:
    """C2D ResNet-34 (the SSv2/Jester backbone)."""
    return build(_R34, num_classes, overrides)


@register_model
def c2d_r50(num_classes: int = 400, **overrides) -> VideoResNet:
    """C2D ResNet-50 (bottleneck)."""
    return build(_R50, num_classes, overrides)


@register_model
def c2d_r101(num_classes: int = 400, **overrides) -> VideoResNet:
    """C2D ResNet-101 (bottleneck; the Kinetics large model's backbone)."""
    return build(_R101, num_classes, overrides)


@register_model
def cpnet_r18(num_classes: int = 400, **overrides) -> VideoResNet:
    """CPNet R18: CP after every block of res3–res5 (6), k 8, MLP [C/4, C/2] (supp. Table 1)."""
    cp = {"cp_at": _EVERY_BLOCK_RES3_RES5, "cp_k": 8, "cp_mlp": (1 / 4, 1 / 2)}
    return build({**_R18, **cp}, num_classes, overrides)


@register_model
def cpnet_r34(num_classes: int = 400, **overrides) -> VideoResNet:
    """CPNet R34: CP at res3 blocks 2, 3 and res4 blocks 3, 4, 5; k 12, MLP [C/4, C/2] (supp. Table 3)."""
    cp = {"cp_at": {"layer2": (2, 3), "layer3": (3, 4, 5)}, "cp_k": 12, "cp_mlp": (1 / 4, 1 / 2)}
    return build({**_R34, **cp}, num_classes, overrides)


@register_model
def cpnet_r101(num_classes: int = 400, **overrides) -> VideoResNet:
    """CPNet R101: CP at res3 blocks 2, 3 and res4 blocks 20, 21, 22; k 4, MLP [C/16, C/8] (supp. Table 2)."""
    cp = {"cp_at": {"layer2": (2, 3), "layer3": (20, 21, 22)}, "cp_k": 4, "cp_mlp": (1 / 16, 1 / 8)}
    return build({**_R101, **cp}, num_classes, overrides)


@register_model
def nl_r18(num_classes: int = 400, **overrides) -> VideoResNet:
    """Non-local R18: an embedded-Gaussian NL block after every block of res3–res5 (6)."""
    return build({**_R18, "nl_at": _EVERY_BLOCK_RES3_RES5}, num_classes, overrides)


@register_model
def c3d_r18(num_classes: int = 400, **overrides) -> VideoResNet:
    """C3D R18: every k×k kernel 3×k×k (stem 3×7×7), temporal stride 1, no temporal downsampling."""
    return build({**_R18, "temporal_kernel": 3}, num_classes, overrides)


@register_model
def artnet_r18(num_classes: int = 400, **overrides) -> VideoResNet:
    """ARTNet R18: C3D R18 with SMART blocks in the stem and as the second conv of every block of res2–res4."""
    smart = {"smart_stem": True, "smart_at": {"layer1": (0, 1), "layer2": (0, 1), "layer3": (0, 1)}}
    return build({**_R18, "temporal_kernel": 3, **smart}, num_classes, overrides)
