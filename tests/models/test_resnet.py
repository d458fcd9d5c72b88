"""The video ResNet and its presets: every preset forward/backward/gradients, placement, names, overrides."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cpnet.models.resnet as resnet
from cpnet.models.nonlocal_block import NonLocalBlock
from cpnet.models.registry import create_model, list_models
from cpnet.models.resnet import BasicBlock
from tests.models.reference2d import ResNet2d

RELEASED = ["cpnet_r101_released_112", "cpnet_r101_released_224", "cpnet_r18_released_112",
            "cpnet_r18_released_224", "cpnet_r34_released_112", "cpnet_r34_released_224"]
PRESETS = sorted(["artnet_r18", "c2d_r101", "c2d_r18", "c2d_r34", "c2d_r50", "c3d_r18", "cpnet_r101", "cpnet_r18",
                  "cpnet_r34", "nl_r18", *RELEASED])
TINY = {"width": 8, "num_classes": 5}
CLIP = (2, 3, 4, 64, 64)  # layer4 is 2×2: (T−1)·H·W = 12 candidates, enough for k = 12 at every CP site


def test_registry_lists_every_preset():
    assert list_models() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_forward_backward_every_parameter_learns(name):
    torch.manual_seed(0)
    model = create_model(name, cp_init_gamma=1.0, **TINY)  # γ = 1 so gradients pass the CP output BN
    for m in model.modules():
        if isinstance(m, NonLocalBlock):
            nn.init.ones_(m.bn.weight)  # same for the non-local block's zero-initialised BN
    logits = model(torch.randn(*CLIP))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.pow(2).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("extended, backbone", [("cpnet_r18", "c2d_r18"), ("cpnet_r101", "c2d_r101"),
                                                ("nl_r18", "c2d_r18")])
@pytest.mark.parametrize("train", [False, True])
def test_fresh_extension_is_exactly_its_backbone(extended, backbone, train):
    torch.manual_seed(0)
    base = create_model(backbone, **TINY)
    model = create_model(extended, **TINY)
    result = model.load_state_dict(base.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all((".cp." in k or ".nl." in k) for k in result.missing_keys)
    model.train(train)
    base.train(train)
    model.dropout.p = base.dropout.p = 0.0
    clip = torch.randn(*CLIP)
    with torch.no_grad():
        assert torch.equal(model(clip), base(clip))


def test_parameter_names_match_torchvision_layout():
    for bottleneck, preset, layers in ((False, "c2d_r18", [2, 2, 2, 2]), (True, "c2d_r50", [3, 4, 6, 3])):
        ours = create_model(preset, num_classes=1000, width=8).state_dict()
        ref = ResNet2d(bottleneck, layers, width=8).state_dict()
        assert list(ours) == list(ref)
        for key, value in ref.items():
            if value.dim() == 4:  # conv kernels gain a time axis of length 1 in C2D
                assert ours[key].shape == value.shape[:2] + (1,) + value.shape[2:]


def test_c3d_kernels_and_stem_stride():
    model = create_model("c3d_r18", **TINY)
    assert model.conv1.weight.shape == (8, 3, 3, 7, 7) and model.conv1.padding == (1, 3, 3)
    assert model.layer2[0].conv1.weight.shape[2:] == (3, 3, 3)
    assert model.layer2[0].downsample[0].weight.shape[2:] == (1, 1, 1)
    assert model.forward_features(torch.randn(1, 3, 5, 64, 64)).shape == (1, 64, 5, 2, 2)  # no temporal stride
    stride1 = create_model("c2d_r18", stem_stride=1, **TINY)
    assert stride1.forward_features(torch.randn(1, 3, 2, 32, 32)).shape == (1, 64, 2, 2, 2)  # 32 → 32 → 16 → … 2


@pytest.mark.parametrize("name, temporal", [("c2d_r18", 1), ("c3d_r18", 3), ("artnet_r18", 3)])
def test_stem_kernel_keeps_the_feature_sizes(name, temporal):
    small = create_model(name, stem_kernel=3, stem_stride=1, **TINY)
    stem = small.conv1 if name != "artnet_r18" else small.conv1.relation
    assert stem.weight.shape[2:] == (temporal, 3, 3) and stem.padding == (temporal // 2, 1, 1)
    x = torch.randn(1, 3, 2, 32, 32)
    assert small.forward_features(x).shape == create_model(name, stem_stride=1, **TINY).forward_features(x).shape


@pytest.mark.parametrize("name", ["c2d_r18", "c3d_r18", "cpnet_r18"])
def test_strided_stem_without_pool_gives_the_pooled_stride_1_sizes(name):
    x = torch.randn(1, 3, 2, 32, 32)
    pooled = create_model(name, stem_stride=1, cp_k=2, **TINY)
    strided = create_model(name, stem_stride=2, stem_pool=False, cp_k=2, **TINY)
    assert isinstance(strided.maxpool, nn.Identity) and isinstance(pooled.maxpool, nn.MaxPool3d)
    assert strided.forward_features(x).shape == pooled.forward_features(x).shape == (1, 64, 2, 2, 2)
    # the stem's output is computed at the pooled size directly: a quarter of the positions of stride 1
    stem = strided.relu(strided.bn1(strided.conv1(x)))
    assert stem.shape[-2:] == (16, 16) and strided.maxpool(stem) is stem
    assert set(strided.state_dict()) == set(pooled.state_dict())  # the pool has no weights: checkpoints match


class _Recorder(nn.Module):
    """Stands in for CPModule: records its arguments and input, returns 2·s."""

    def __init__(self, channels, k, mlp, **kwargs):
        super().__init__()
        self.args = (channels, k, list(mlp), kwargs)
        self.inputs: list[torch.Tensor] = []

    def forward(self, s):
        self.inputs.append(s.detach().clone())
        return 2 * s


def _cp_sites(monkeypatch, name, **overrides):
    monkeypatch.setattr(resnet, "CPModule", _Recorder)
    model = create_model(name, **overrides)
    sites = {n: m.args for n, m in model.named_modules() if isinstance(m, _Recorder)}
    return model, sites


@pytest.mark.parametrize("name, sites, k, mlp", [
    ("cpnet_r18", ["layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"], 8, (1 / 4, 1 / 2)),
    ("cpnet_r34", ["layer2.2", "layer2.3", "layer3.3", "layer3.4", "layer3.5"], 12, (1 / 4, 1 / 2)),
    ("cpnet_r101", ["layer2.2", "layer2.3", "layer3.20", "layer3.21", "layer3.22"], 4, (1 / 16, 1 / 8)),
])
def test_cp_presets_follow_spec_table(monkeypatch, name, sites, k, mlp):
    with torch.device("meta"):
        _, found = _cp_sites(monkeypatch, name)
    assert list(found) == [f"{s}.cp" for s in sites]
    expansion = 4 if name == "cpnet_r101" else 1
    for site, (channels, got_k, got_mlp, kwargs) in found.items():
        c = 64 * 2 ** (int(site[5]) - 1) * expansion
        assert (channels, got_k, got_mlp) == (c, k, [round(f * c) for f in mlp])
        assert kwargs == {"bottleneck": None, "shrink": None, "init_gamma": 0.0, "block_size": None,
                          "recompute": False, "coords": "normalized", "resample": "subsample"}


def test_cp_options_reach_the_module(monkeypatch):
    with torch.device("meta"):
        _, found = _cp_sites(monkeypatch, "cpnet_r18", cp_k=3, cp_mlp=(16, 0.5), cp_bottleneck=0.125,
                             cp_shrink={"layer2": 2}, cp_init_gamma=1.0, cp_block_size=64, cp_recompute=True,
                             cp_coords="grid", cp_resample="bilinear_tf1")
    channels, k, mlp, kwargs = found["layer2.0.cp"]
    assert (channels, k, mlp) == (128, 3, [16, 64])
    assert kwargs == {"bottleneck": 16, "shrink": 2, "init_gamma": 1.0, "block_size": 64, "recompute": True,
                      "coords": "grid", "resample": "bilinear_tf1"}
    assert found["layer3.0.cp"][3]["shrink"] is None


def test_cp_reads_pre_relu_sum_and_nl_reads_block_output():
    torch.manual_seed(0)
    seen = []
    nl = NonLocalBlock(8)
    nl.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    block = BasicBlock(8, 8, 1, 1, cp=_Recorder(8, 1, [1]), nl=nl).eval()
    out = block(torch.randn(2, 8, 3, 5, 5))
    s = block.cp.inputs[0]
    assert (s < 0).any()  # the pre-ReLU sum, not the block output
    torch.testing.assert_close(seen[0], torch.relu(3 * s))  # relu(s + cp(s)) with cp(s) = 2s
    torch.testing.assert_close(out, seen[0])  # fresh NL block is the identity


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match=r"unknown model override 'cp_kk'.*did you mean cp_k"):
        create_model("cpnet_r18", cp_kk=4)


@pytest.mark.parametrize("overrides, message", [
    ({"cp_at": {"layer5": (0,)}}, "unknown stage 'layer5'"),
    ({"layers": (1, 1, 1, 1)}, r"cp_at: block indices \[1\] out of range for layer2 with 1 blocks"),
    ({"block": "wide"}, "block must be 'basic' or 'bottleneck'"),
    ({"layers": (2, 2, 2)}, "layers must be 4 positive ints"),
    ({"stem_stride": 4}, "stem_stride must be 1 or 2"),
    ({"stem_kernel": 4}, "stem_kernel must be an odd positive int, got 4"),
    ({"stem_pool": "no"}, "stem_pool must be true or false, got 'no'"),
    ({"temporal_kernel": 2}, "temporal_kernel must be an odd size"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"width": 0}, "width must be a positive int"),
    ({"cp_mlp": ()}, "cp_mlp must list at least one width"),
    ({"cp_mlp": (0.25, -1)}, "cp_mlp width must be a positive"),
    ({"cp_shrink": {"layer2": 0}}, r"cp_shrink\['layer2'\] must be an int >= 1"),
])
def test_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model("cpnet_r18", **overrides)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"expected a clip of shape \(N, 3, T, H, W\), got \(2, 3, 32, 32\)"):
        create_model("c2d_r18", **TINY)(torch.randn(2, 3, 32, 32))


def test_public_api():
    import cpnet
    import cpnet.models as models

    for name in ("CPModule", "NonLocalBlock", "SMARTBlock", "VideoResNet", "LoadReport", "load_imagenet",
                 "count_params", "count_params_paper", "create_model", "list_models", "register_model"):
        assert callable(getattr(models, name)), name
    assert cpnet.create_model is models.create_model and cpnet.list_models() == PRESETS


def test_integer_clip_is_refused_naming_the_dtype():
    model = create_model("c2d_r18", **TINY)
    with pytest.raises(ValueError, match="torch.uint8"):
        model(torch.zeros(1, 3, 2, 32, 32, dtype=torch.uint8))


def test_same_padding_pads_like_tensorflow_at_stride_2():
    """TF 'SAME' on an even size at stride 2 pads only the bottom and right: windows start at 0, not at -1."""
    model = create_model("c2d_r18", padding="same", **TINY)
    conv = model.layer2[0].conv1  # 3×3 at stride 2
    x = torch.randn(1, 8, 2, 16, 16)
    expected = F.conv3d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=(1, 2, 2))
    torch.testing.assert_close(conv(x), expected)
    symmetric = create_model("c2d_r18", **TINY).layer2[0].conv1
    symmetric.load_state_dict(conv.state_dict())
    assert not torch.allclose(symmetric(x), expected)  # PyTorch's padding reads every window one pixel off
    stem = create_model("c2d_r18", padding="same", stem_stride=2, **TINY)
    y = torch.randn(1, 3, 1, 32, 32)
    torch.testing.assert_close(stem.conv1(y), F.conv3d(F.pad(y, (2, 3, 2, 3)), stem.conv1.weight, stride=(1, 2, 2)))
    pooled = stem.maxpool(y)  # pads with -inf at the bottom and right only
    torch.testing.assert_close(pooled, F.max_pool3d(F.pad(y, (0, 1, 0, 1), value=-1e9), (1, 3, 3), (1, 2, 2)))
    assert set(model.state_dict()) == set(create_model("c2d_r18", **TINY).state_dict())


def test_bn_eps_and_stride_on_the_first_1x1():
    model = create_model("cpnet_r101", bn_eps=1e-3, stride_1x1=True, **TINY)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.eps == 1e-3 for m in norms)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 2, 2) and block.conv2.stride == (1, 1, 1)
    default = create_model("cpnet_r101", **TINY).layer2[0]
    assert default.conv1.stride == (1, 1, 1) and default.conv2.stride == (1, 2, 2)
    x = torch.randn(1, 3, 2, 64, 64)
    assert model.forward_features(x).shape == create_model("cpnet_r101", **TINY).forward_features(x).shape


@pytest.mark.parametrize("name", RELEASED)
def test_released_presets_are_options_of_the_one_resnet(name):
    model = create_model(name, **TINY)
    stride = 1 if name.endswith("112") else 2
    assert type(model) is resnet.VideoResNet and model.conv1.stride == (1, stride, stride)
    res3 = [b.cp for b in model.layer2 if b.cp is not None]
    res4 = [b.cp for b in model.layer3 if b.cp is not None]
    assert res3 and res4 and all(cp.shrink == 2 for cp in res3) and all(cp.shrink is None for cp in res4)
    assert all(cp.resample == "bilinear_tf1" and cp.init_gamma == 0.0 and cp.k == (4 if "r101" in name else 8)
               for cp in res3 + res4)
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
