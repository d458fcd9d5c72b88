"""ImageNet initialisation against an independent 2D ResNet (tests/models/reference2d.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpnet.models.imagenet import load_imagenet
from cpnet.models.registry import create_model
from tests.models.reference2d import ResNet2d, randomized

WIDTH = 8


def _save(tmp_path, model: torch.nn.Module, name: str = "imagenet.pth", wrap: str | None = None) -> str:
    state = model.state_dict()
    obj = {wrap: {f"module.{k}": v for k, v in state.items()}, "epoch": 90} if wrap else state
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def _per_frame(ref: ResNet2d, clip: torch.Tensor, fn: str) -> torch.Tensor:
    """The 2D reference applied to every frame: (N, 3, T, H, W) -> stacked over dim 2 (features) or 1 (logits)."""
    outs = [getattr(ref, fn)(clip[:, :, t]) for t in range(clip.shape[2])]
    return torch.stack(outs, dim=2 if fn == "features" else 1)


@pytest.mark.parametrize("preset, bottleneck, layers", [("c2d_r18", False, [2, 2, 2, 2]),
                                                        ("c2d_r50", True, [3, 4, 6, 3])])
@torch.no_grad()
def test_c2d_reproduces_2d_resnet_per_frame(tmp_path, preset, bottleneck, layers):
    torch.manual_seed(0)
    ref = randomized(ResNet2d(bottleneck, layers, width=WIDTH))
    model = create_model(preset, num_classes=1000, width=WIDTH).eval()
    report = load_imagenet(model, _save(tmp_path, ref), verbose=False)
    assert report.missing == [] and report.unexpected == [] and report.skipped == [] and report.inflated == []
    clip = torch.randn(2, 3, 3, 48, 40)
    torch.testing.assert_close(model.forward_features(clip), _per_frame(ref, clip, "features"), atol=1e-5,
                               rtol=1e-5)
    # Average pooling over T·H·W then a linear fc equals averaging the per-frame 2D logits.
    torch.testing.assert_close(model(clip), _per_frame(ref, clip, "forward").mean(dim=1), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_other_class_count_keeps_fc_init_and_checkpoint_wrappers(tmp_path, capsys):
    ref = randomized(ResNet2d(False, [2, 2, 2, 2], width=WIDTH))
    model = create_model("cpnet_r18", num_classes=7, width=WIDTH)
    fc_before = model.fc.weight.clone()
    cp_before = {k: v.clone() for k, v in model.state_dict().items() if ".cp." in k}
    report = load_imagenet(model, _save(tmp_path, ref, wrap="state_dict"))
    assert report.skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(model.fc.weight, fc_before)
    assert torch.equal(model.conv1.weight[:, :, 0], ref.conv1.weight)
    cp_keys = {k for k in cp_before if not k.endswith("num_batches_tracked")}
    assert set(report.missing) == cp_keys | {"fc.weight", "fc.bias"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in cp_before.items())
    out = capsys.readouterr().out
    assert f"missing ({len(cp_keys) + 2}): layer2.0.cp.*, layer2.1.cp.*," in out
    assert "skipped (2): fc.*" in out


@torch.no_grad()
def test_model_wrapper_and_unexpected_keys(tmp_path):
    ref = randomized(ResNet2d(False, [2, 2, 2, 2], width=WIDTH))
    state = {"model": {**ref.state_dict(), "extra.weight": torch.ones(3)}}
    torch.save(state, tmp_path / "ckpt.pth")
    model = create_model("nl_r18", num_classes=1000, width=WIDTH)
    report = load_imagenet(model, tmp_path / "ckpt.pth", verbose=False)
    assert report.unexpected == ["extra.weight"]
    assert report.missing and all(".nl." in k for k in report.missing)
    assert torch.equal(model.fc.weight, ref.fc.weight)


@torch.no_grad()
def test_inflation_into_c3d(tmp_path):
    torch.manual_seed(0)
    layers = [1, 1, 1, 1]
    ref = randomized(ResNet2d(False, layers, width=WIDTH))
    model = create_model("c3d_r18", num_classes=1000, width=WIDTH, layers=tuple(layers)).eval()
    report = load_imagenet(model, _save(tmp_path, ref), verbose=False)
    assert "conv1.weight" in report.inflated and "layer1.0.conv2.weight" in report.inflated
    assert "layer2.0.downsample.0.weight" not in report.inflated  # 1×1 shortcuts stay 1×1×1
    expected = ref.layer3[0].conv1.weight.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
    assert torch.equal(model.layer3[0].conv1.weight, expected)
    # A temporally constant clip: each 3-tap conv sums three equal frames times kernel/3, so the 2D response is
    # reproduced exactly wherever no zero padding reached. With 9 temporal convs (stem + 8 in the blocks) the
    # padding corrupts 9 frames at each end, leaving frames 9 and 10 of 20 exact.
    frame = torch.randn(1, 3, 32, 32)
    clip = frame.unsqueeze(2).expand(1, 3, 20, 32, 32)
    feats = model.forward_features(clip)
    want = ref.features(frame)
    for t in (9, 10):
        torch.testing.assert_close(feats[:, :, t], want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(feats[:, :, 0], want, atol=1e-3)  # the ends do feel the padding


@torch.no_grad()
def test_artnet_loads_around_smart_blocks(tmp_path):
    ref = randomized(ResNet2d(False, [2, 2, 2, 2], width=WIDTH))
    model = create_model("artnet_r18", num_classes=1000, width=WIDTH)
    report = load_imagenet(model, _save(tmp_path, ref), verbose=False)
    for key in ("conv1.weight", "bn1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer3.1.bn2.bias"):
        assert key in report.skipped
    assert "layer4.0.conv2.weight" in report.inflated and "layer1.0.conv1.weight" in report.inflated
    assert "layer1.0.bn2.weight" in report.missing and "layer2.1.conv2.relation.weight" in report.missing
    assert report.unexpected == []
    assert torch.equal(model.layer4[1].bn2.running_mean, ref.layer4[1].bn2.running_mean)
    # Exactly the stem and the second conv of every block of res2–res4 are SMART: those convs and their BNs are the
    # only file entries skipped; every other conv is inflated (res5 is plain 3×3×3), every SMART entry keeps its init.
    smart = ["conv1", *(f"layer{s}.{b}.conv2" for s in (1, 2, 3) for b in (0, 1))]
    bns = ["bn1", *(f"layer{s}.{b}.bn2" for s in (1, 2, 3) for b in (0, 1))]
    assert {k.rsplit(".", 1)[0] for k in report.skipped} == set(smart) | set(bns)
    kernels = {k for k, v in ref.state_dict().items() if v.dim() == 4 and v.shape[-1] > 1}  # the k×k convs
    assert set(report.inflated) == {k for k in kernels if k.rsplit(".", 1)[0] not in smart}
    inside = [k for k in model.state_dict() if k.split(".")[0] == "conv1" or any(k.startswith(f"{m}.") for m in smart)]
    assert inside and {k for k in inside if not k.endswith("num_batches_tracked")} <= set(report.missing)
    assert not any(".pool.weight" in k for k in model.state_dict())  # the fixed pooling is not a checkpoint entry


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    path = _save(tmp_path, ResNet2d(False, [2, 2, 2, 2], width=WIDTH))
    with pytest.raises(ValueError, match=r"'conv1.weight'.*\(8, 3, 7, 7\).*\(16, 3, 1, 7, 7\)"):
        load_imagenet(create_model("c2d_r18", width=16), path, verbose=False)


def test_depth_mismatch_is_explained(tmp_path):
    path = _save(tmp_path, ResNet2d(False, [2, 2, 2, 2], width=WIDTH))
    with pytest.raises(ValueError, match=r"ResNet-18 .*but the model is a ResNet-34"):
        load_imagenet(create_model("c2d_r34", width=WIDTH), path, verbose=False)
    bottleneck = _save(tmp_path, ResNet2d(True, [3, 4, 6, 3], width=WIDTH), name="r50.pth")
    with pytest.raises(ValueError, match=r"ResNet-50 \(bottleneck.*ResNet-34 \(basic"):
        load_imagenet(create_model("c2d_r34", width=WIDTH), bottleneck, verbose=False)


def test_bad_files(tmp_path):
    model = create_model("c2d_r18", width=WIDTH)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_imagenet(model, tmp_path / "nowhere.pth")
    torch.save({"epoch": 3}, tmp_path / "notweights.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_imagenet(model, tmp_path / "notweights.pth")
    (tmp_path / "garbage.pth").write_text("hello")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_imagenet(model, tmp_path / "garbage.pth")
    with pytest.raises(ValueError, match="VideoResNet"):
        load_imagenet(torch.nn.Linear(2, 2), tmp_path / "notweights.pth")


def _as_tensorpack(ref: ResNet2d, suffix: str = "") -> dict[str, np.ndarray]:
    """``ref`` as tensorpack's ImageNet-ResNet*.npz holds it: TF layouts, tensorpack names (``suffix`` ``":0"`` as
    some dumps write them)."""
    arrays: dict[str, np.ndarray] = {}

    def conv_bn(scope: str, conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> None:
        arrays[f"{scope}/W"] = conv.weight.numpy().transpose(2, 3, 1, 0)  # (O, I, kh, kw) → (kh, kw, I, O)
        for name, attr in (("gamma", "weight"), ("beta", "bias"), ("mean/EMA", "running_mean"),
                           ("variance/EMA", "running_var")):
            arrays[f"{scope}/bn/{name}"] = getattr(bn, attr).numpy()

    conv_bn("conv0", ref.conv1, ref.bn1)
    for g in range(4):
        for i, block in enumerate(getattr(ref, f"layer{g + 1}")):
            for j in (1, 2, 3):
                if hasattr(block, f"conv{j}"):
                    conv_bn(f"group{g}/block{i}/conv{j}", getattr(block, f"conv{j}"), getattr(block, f"bn{j}"))
            if block.downsample is not None:
                conv_bn(f"group{g}/block{i}/convshortcut", *block.downsample)
    arrays["linear/W"], arrays["linear/b"] = ref.fc.weight.numpy().T, ref.fc.bias.numpy()
    return {f"{name}{suffix}": value for name, value in arrays.items()}


@pytest.mark.parametrize("preset, bottleneck, layers, suffix", [("c2d_r18", False, [2, 2, 2, 2], ""),
                                                                ("c2d_r50", True, [3, 4, 6, 3], ":0")])
@torch.no_grad()
def test_tensorpack_npz_reproduces_2d_resnet_per_frame(tmp_path, preset, bottleneck, layers, suffix):
    torch.manual_seed(0)
    ref = randomized(ResNet2d(bottleneck, layers, width=WIDTH))
    path = tmp_path / "ImageNet-ResNet.npz"
    np.savez_compressed(path, **_as_tensorpack(ref, suffix))
    model = create_model(preset, num_classes=1000, width=WIDTH).eval()
    report = load_imagenet(model, path, verbose=False)
    assert report.missing == [] and report.unexpected == [] and report.skipped == [] and report.inflated == []
    assert sorted(report.loaded) == sorted(k for k in ref.state_dict() if not k.endswith("num_batches_tracked"))
    clip = torch.randn(2, 3, 3, 48, 40)
    torch.testing.assert_close(model.forward_features(clip), _per_frame(ref, clip, "features"), atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(model(clip), _per_frame(ref, clip, "forward").mean(dim=1), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_tensorpack_npz_inflates_into_c3d_and_reports_other_entries(tmp_path):
    layers = [1, 1, 1, 1]
    ref = randomized(ResNet2d(False, layers, width=WIDTH))
    extras = {"global_step:0": np.array(450000), "conv0/b": np.ones(WIDTH, np.float32)}
    np.savez(tmp_path / "tp.npz", **_as_tensorpack(ref), **extras)
    model = create_model("c3d_r18", num_classes=10, width=WIDTH, layers=tuple(layers))
    report = load_imagenet(model, tmp_path / "tp.npz", verbose=False)
    assert sorted(report.unexpected) == ["conv0/b", "global_step"]
    assert report.skipped == ["fc.weight", "fc.bias"]  # 1000 classes into 10
    assert "layer3.0.conv1.weight" in report.inflated
    expected = ref.layer3[0].conv1.weight.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
    assert torch.equal(model.layer3[0].conv1.weight, expected)
    assert torch.equal(model.layer2[0].downsample[1].running_var, ref.layer2[0].downsample[1].running_var)


def test_npz_of_other_names_or_damaged_is_refused(tmp_path):
    model = create_model("c2d_r18", width=WIDTH)
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match=r"other.npz is an .npz without tensorpack ResNet names.*holds weights"):
        load_imagenet(model, tmp_path / "other.npz", verbose=False)
    np.savez(tmp_path / "pickled.npz", obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read .*pickled.npz as a NumPy .npz"):
        load_imagenet(model, tmp_path / "pickled.npz", verbose=False)
