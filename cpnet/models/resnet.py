"""The one video ResNet: C2D or C3D kernels, basic or bottleneck blocks, CP / non-local / SMART placed by data.

Layout and parameter names follow torchvision's 2D ResNet (``conv1``, ``bn1``, ``layer1``..``layer4`` of blocks
``conv1/bn1/conv2/bn2(/conv3/bn3)/downsample.0/.1``, ``fc``), so an ImageNet state dict maps onto it by name; conv
weights carry an extra time dimension. Bottleneck blocks stride on their 3×3 conv, as torchvision does.

Kernels are ``1×k×k`` (C2D, ``temporal_kernel=1``) or ``t×k×k`` (C3D, ``temporal_kernel=3``) for every conv with a
spatial extent > 1; 1×1 convs (bottleneck ends, downsample shortcuts) stay 1×1×1. There is no temporal stride or
pooling anywhere. C2D convs are plain ``Conv3d`` with a 1×k×k kernel: on this CPU (oneDNN) that measured as fast as
folding T into N for ``conv2d`` (fwd+bwd, N=2, C=64, T=8, 56²: 49 ms vs 54 ms including the fold's copies).

For the authors' released TensorFlow models the same class takes TF's conventions as options: ``padding="same"``
(TF ``'SAME'``, asymmetric at stride 2), ``bn_eps=1e-3``, ``stride_1x1`` (bottlenecks striding on their first 1×1,
the original ResNet) and ``cp_resample="bilinear_tf1"``. Their convs' biases need no option: a bias followed by
BatchNorm folds exactly into the BN's running mean (see ``cpnet.convert``).

Extras hang off a block as attributes so the torchvision names stay intact: ``block.cp`` (CP module on the pre-ReLU
sum: ``relu(s + cp(s))``) and ``block.nl`` (non-local block after the block's output); SMART blocks replace a
block's ``conv2`` (or the stem's ``conv1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from cpnet.models.bounds import MAX_BLOCKS
from cpnet.models.cp import CPModule
from cpnet.models.layers import SameConv3d, SameMaxPool3d
from cpnet.models.nonlocal_block import NonLocalBlock
from cpnet.models.smart import SMARTBlock

STAGES = ("layer1", "layer2", "layer3", "layer4")
Placement = Mapping[str, Sequence[int]]


def _conv(in_channels: int, out_channels: int, k: int, temporal_kernel: int, stride: int = 1,
          same: bool = False) -> nn.Conv3d:
    """A k×k conv lifted to video: temporal extent ``temporal_kernel`` when k > 1, else 1×1×1; spatial stride only.
    ``same``: TF 'SAME' padding instead of PyTorch's symmetric k // 2."""
    t = temporal_kernel if k > 1 else 1
    if same:
        return SameConv3d(in_channels, out_channels, (t, k, k), stride=(1, stride, stride), bias=False)
    return nn.Conv3d(in_channels, out_channels, (t, k, k), stride=(1, stride, stride),
                     padding=(t // 2, k // 2, k // 2), bias=False)


def _middle_conv(channels: int, temporal_kernel: int, stride: int, smart: bool, same: bool) -> nn.Module:
    """A block's 3×3 conv, or the SMART block replacing it (always spatio-temporal 3×3×3)."""
    if smart:
        return SMARTBlock(channels, channels, (3, 3, 3), (1, stride, stride))
    return _conv(channels, channels, 3, temporal_kernel, stride, same)


class _Block(nn.Module):
    """Shared tail of both block types: shortcut add, optional CP on the pre-ReLU sum, ReLU, optional NL."""

    expansion = 1
    cp: nn.Module | None
    nl: nn.Module | None

    def _finish(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        s = residual + shortcut  # the pre-ReLU sum the CP module reads
        if self.cp is not None:
            s = s + self.cp(s)
        out = self.relu(s)
        return out if self.nl is None else self.nl(out)


class BasicBlock(_Block):
    """Two 3×3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, temporal_kernel: int, smart: bool = False,
                 cp: nn.Module | None = None, nl: nn.Module | None = None, same: bool = False,
                 stride_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, planes, 3, temporal_kernel, stride, same)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _middle_conv(planes, temporal_kernel, 1, smart, same)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = _shortcut(in_channels, planes, stride, same)
        self.cp = cp
        self.nl = nl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self._finish(x, self.bn2(self.conv2(out)))


class Bottleneck(_Block):
    """1×1 → 3×3 (strided) → 1×1 ×4 (ResNet-50/101), torchvision's layout; ``stride_1x1``: the first 1×1 strides
    instead (the original ResNet, and the authors' released R101)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, temporal_kernel: int, smart: bool = False,
                 cp: nn.Module | None = None, nl: nn.Module | None = None, same: bool = False,
                 stride_1x1: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = _conv(in_channels, planes, 1, temporal_kernel, stride if stride_1x1 else 1, same)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = _middle_conv(planes, temporal_kernel, 1 if stride_1x1 else stride, smart, same)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = _conv(planes, out_channels, 1, temporal_kernel, 1, same)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, same)
        self.cp = cp
        self.nl = nl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self._finish(x, self.bn3(self.conv3(out)))


def _shortcut(in_channels: int, out_channels: int, stride: int, same: bool) -> nn.Sequential | None:
    """1×1×1 projection + BN when the shape changes (torchvision's ``downsample``), else identity (None)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(_conv(in_channels, out_channels, 1, 1, stride, same), nn.BatchNorm3d(out_channels))


def _width(value: float | int, channels: int, what: str) -> int:
    """A width given as a fraction of ``channels`` (float) or absolutely (int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{what} must be a positive int (channels) or float (fraction of C), got {value!r}")
    return int(value) if isinstance(value, int) else max(1, round(value * channels))


def _check_placement(name: str, placement: Placement | None, layers: Sequence[int]) -> dict[str, set[int]]:
    """Validate a stage → block-indices mapping against the depth; returns it as sets."""
    out: dict[str, set[int]] = {}
    for stage, blocks in (placement or {}).items():
        if stage not in STAGES:
            raise ValueError(f"{name}: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        depth = layers[STAGES.index(stage)]
        bad = [b for b in blocks if not isinstance(b, int) or not 0 <= b < depth]
        if bad:
            raise ValueError(f"{name}: block indices {bad} out of range for {stage} with {depth} blocks "
                             f"(0..{depth - 1})")
        out[stage] = set(blocks)
    return out


class VideoResNet(nn.Module):
    """C2D/C3D ResNet for clips (N, 3, T, H, W) → logits (N, num_classes).

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        layers: blocks per stage layer1..layer4, e.g. (2, 2, 2, 2); at most ``MAX_BLOCKS`` (1000) in all
            (:mod:`cpnet.models.bounds`).
        num_classes: fc outputs.
        width: channels of layer1 (64 in the paper; small values build tiny models); stages double it.
        temporal_kernel: 1 for C2D (1×k×k kernels), 3 for C3D (3×k×k, stem 3×7×7, temporal padding 1).
        stem_stride: 2 (conv 7×7/2 + max-pool 3×3/2) or 1 (conv stride 1 + the max-pool: the released code's
            112² variant with the same feature sizes as 224²).
        stem_kernel: spatial size of the stem conv (7 in every ResNet; an odd number, e.g. 3 for tiny inputs, where
            a 7×7 stem at stride 1 costs more than the rest of a small network).
        stem_pool: the stem's 3×3/2 max-pool; without it, ``stem_stride=2`` gives the feature sizes of
            ``stem_stride=1`` with the pool, computing the stem at a quarter of the positions.
        dropout: drop probability before the fc.
        cp_at: stage → block indices that get a CP module on their pre-ReLU sum, e.g. {"layer2": (2, 3)}.
        cp_k: neighbours per point.
        cp_mlp: MLP widths, each a float fraction of the block's channels C or an int channel count.
        cp_bottleneck: optional 1×1×1 reduction before the search (fraction of C or int), None for none.
        cp_shrink: stage → spatial subsampling factor before the search (e.g. {"layer2": 2}), None for none.
        cp_init_gamma: initial γ of the CP output BN (0: a fresh CPNet is its C2D backbone).
        cp_block_size: kNN query block size (memory bound), None for the CP module's default.
        cp_recompute: recompute CP activations in backward instead of storing them.
        cp_coords: "normalized" (SPEC §1.3, t/T, h/H, w/W) or "grid" (grid steps) displacement units.
        nl_at: stage → block indices followed by a non-local block.
        nl_pool: 1×2×2 max-pool on φ and g of the non-local blocks.
        smart_at: stage → block indices whose middle conv is a SMART block (ARTNet).
        smart_stem: replace the stem conv by a SMART block (ARTNet).
        in_channels: input channels (3 for RGB).
        padding: "torch" (symmetric k // 2) or "same" (TF 'SAME' for every conv and the stem pool; the released
            TF models).
        bn_eps: ε of every BatchNorm (1e-5 in PyTorch; 1e-3 in the released TF models).
        stride_1x1: bottleneck blocks stride on their first 1×1 conv (the original ResNet; the released R101).
        cp_resample: how a CP module with ``cp_shrink`` resamples: "subsample" (every r-th pixel, output repeated)
            or "bilinear_tf1" (TF1's legacy bilinear resize down and back up; the released models).
    """

    def __init__(self, block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 400,
                 width: int = 64, temporal_kernel: int = 1, stem_stride: int = 2, stem_kernel: int = 7,
                 stem_pool: bool = True, dropout: float = 0.5, cp_at: Placement | None = None, cp_k: int = 8,
                 cp_mlp: Sequence[float | int] = (0.25, 0.5),
                 cp_bottleneck: float | int | None = None, cp_shrink: Mapping[str, int] | None = None,
                 cp_init_gamma: float = 0.0, cp_block_size: int | None = None, cp_recompute: bool = False,
                 cp_coords: str = "normalized", nl_at: Placement | None = None, nl_pool: bool = True,
                 smart_at: Placement | None = None,
                 smart_stem: bool = False, in_channels: int = 3, padding: str = "torch", bn_eps: float = 1e-5,
                 stride_1x1: bool = False, cp_resample: str = "subsample") -> None:
        super().__init__()
        _check_conventions(padding, bn_eps, smart_stem or bool(smart_at))
        same = padding == "same"
        _check_args(block, layers, num_classes, width, temporal_kernel, stem_stride, dropout)
        _check_stem(stem_kernel, stem_pool)
        self.block, self.layers, self.in_channels = block, tuple(layers), in_channels
        cp_sites = _check_placement("cp_at", cp_at, layers)
        nl_sites = _check_placement("nl_at", nl_at, layers)
        smart_sites = _check_placement("smart_at", smart_at, layers)
        shrink = _check_shrink(cp_shrink)
        cp_args = dict(k=cp_k, mlp=tuple(cp_mlp), bottleneck=cp_bottleneck, init_gamma=cp_init_gamma,
                       block_size=cp_block_size, recompute=cp_recompute, coords=cp_coords, resample=cp_resample)

        self.conv1 = _stem_conv(in_channels, width, temporal_kernel, stem_kernel, stem_stride, smart_stem, same)
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.stem_pool = stem_pool
        pool = SameMaxPool3d((1, 3, 3), (1, 2, 2)) if same else nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.maxpool = pool if stem_pool else nn.Identity()

        block_cls = BasicBlock if block == "basic" else Bottleneck
        channels = width
        for i, stage in enumerate(STAGES):
            planes, out = width * 2**i, width * 2**i * block_cls.expansion
            blocks = []
            for b in range(layers[i]):
                cp = _make_cp(out, cp_args, shrink.get(stage)) if b in cp_sites.get(stage, ()) else None
                nl = NonLocalBlock(out, pool=nl_pool) if b in nl_sites.get(stage, ()) else None
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(block_cls(channels, planes, stride, temporal_kernel,
                                        smart=b in smart_sites.get(stage, ()), cp=cp, nl=nl, same=same,
                                        stride_1x1=stride_1x1))
                channels = out
            setattr(self, stage, nn.Sequential(*blocks))
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self._init_backbone()
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = float(bn_eps)

    def _init_backbone(self) -> None:
        """He init for backbone convs, BN γ=1 β=0; CP and NL modules keep their own (zero-γ) init."""
        own_init = {id(m) for mod in self.modules() if isinstance(mod, (CPModule, NonLocalBlock))
                    for m in mod.modules()}
        for m in self.modules():
            if id(m) in own_init:
                continue
            if isinstance(m, nn.Conv3d) and not m.weight.is_meta:  # meta (a size check): no values to draw
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (PyTorch's default Linear init, as the
        constructor's), on the old one's device and dtype; the backbone and the dropout are kept."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        old = self.fc.weight
        self.fc = nn.Linear(self.num_features, num_classes, device=old.device, dtype=old.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, C_in, T, H, W) -> last-stage features (N, num_features, T, H/32, W/32): H/16 with stem_stride 1
        or without stem_pool, H/8 with both."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a clip of shape (N, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point clip (normalised RGB), got dtype {x.dtype}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features (N, C, T, H, W) -> logits (N, num_classes): average over T, H, W, dropout, fc."""
        pooled = self.avgpool(features).flatten(1)  # (N, C, 1, 1, 1) -> (N, C)
        return self.fc(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, C_in, T, H, W) -> logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))


def _stem_conv(in_channels: int, width: int, temporal_kernel: int, kernel: int, stride: int, smart: bool,
               same: bool) -> nn.Module:
    """The stem's t×k×k conv at spatial ``stride`` (TF 'SAME' padded with ``same``), or a SMART block."""
    if smart:
        return SMARTBlock(in_channels, width, (3, kernel, kernel), (1, stride, stride))
    size = (temporal_kernel, kernel, kernel)
    if same:
        return SameConv3d(in_channels, width, size, (1, stride, stride), bias=False)
    return nn.Conv3d(in_channels, width, size, (1, stride, stride), tuple(d // 2 for d in size), bias=False)


def _make_cp(channels: int, cp_args: dict, shrink: int | None) -> CPModule:
    """A CP module for a block with ``channels`` outputs; widths given as fractions resolve against it."""
    if not cp_args["mlp"]:
        raise ValueError("cp_mlp must list at least one width")
    mlp = [_width(w, channels, "cp_mlp width") for w in cp_args["mlp"]]
    bottleneck = cp_args["bottleneck"]
    if bottleneck is not None:
        bottleneck = _width(bottleneck, channels, "cp_bottleneck")
    return CPModule(channels, cp_args["k"], mlp, bottleneck=bottleneck, shrink=shrink,
                    init_gamma=cp_args["init_gamma"], block_size=cp_args["block_size"],
                    recompute=cp_args["recompute"], coords=cp_args["coords"], resample=cp_args["resample"])


def _check_shrink(cp_shrink: Mapping[str, int] | None) -> dict[str, int]:
    """Validate ``cp_shrink`` (stage → integer factor >= 1)."""
    out = {}
    for stage, factor in (cp_shrink or {}).items():
        if stage not in STAGES:
            raise ValueError(f"cp_shrink: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"cp_shrink[{stage!r}] must be an int >= 1, got {factor!r}")
        out[stage] = factor
    return out


def _check_conventions(padding: str, bn_eps: float, smart: bool) -> None:
    """Validate the padding convention and BN ε (``smart``: the model has SMART blocks)."""
    if padding not in ("torch", "same"):
        raise ValueError(f"padding must be 'torch' or 'same', got {padding!r}")
    if isinstance(bn_eps, bool) or not isinstance(bn_eps, (int, float)) or bn_eps <= 0:
        raise ValueError(f"bn_eps must be a positive number, got {bn_eps!r}")
    if padding == "same" and smart:
        raise ValueError("padding='same' is for the released plain ResNets; SMART blocks pad symmetrically")


def _check_stem(stem_kernel: int, stem_pool: bool) -> None:
    """Validate the stem's kernel size and pool switch."""
    if not isinstance(stem_kernel, int) or stem_kernel < 1 or stem_kernel % 2 == 0:
        raise ValueError(f"stem_kernel must be an odd positive int, got {stem_kernel!r}")
    if not isinstance(stem_pool, bool):
        raise ValueError(f"stem_pool must be true or false, got {stem_pool!r}")


def _check_args(block: str, layers: Sequence[int], num_classes: int, width: int, temporal_kernel: int,
                stem_stride: int, dropout: float) -> None:
    """Raise ValueError naming the first invalid constructor argument."""
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
        raise ValueError(f"layers must be 4 positive ints (blocks of layer1..layer4), got {layers!r}")
    if sum(layers) > MAX_BLOCKS:
        raise ValueError(f"layers={layers!r} asks for {sum(layers):,} residual blocks; at most {MAX_BLOCKS} are built "
                         "(cpnet.models.bounds.MAX_BLOCKS)")
    for name, value in (("num_classes", num_classes), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if temporal_kernel not in (1, 3, 5, 7):
        raise ValueError(f"temporal_kernel must be an odd size in (1, 3, 5, 7), got {temporal_kernel!r}")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
