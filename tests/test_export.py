"""Export: ONNX (run in ONNX Runtime) and TorchScript (reloaded) against eager PyTorch, the kNN's neighbours through
the exported graph, and `cpnet export` end to end from a checkpoint. Small models (width 8), 4 frames of 64²."""

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import cpnet
from cpnet import export
from cpnet.app.config import config_from_dict, config_to_dict
from cpnet.cli import main
from cpnet.engine.checkpoint import atomic_save, make_checkpoint
from cpnet.export import export_onnx, export_torchscript, rounding_sensitivity, verify_onnx, verify_torchscript
from cpnet.models.cp import CPModule
from cpnet.ops.knn import cross_frame_knn, cross_frame_knn_dense
from cpnet.ops.video import to_points

FRAMES, SIZE = 4, 64  # cpnet_r18's last stage is then 2×2: (T−1)·H·W = 12 >= k = 8
MODELS = ["c2d_r18", "cpnet_r18", "cpnet_r34"]
TOL = 1e-4


def small_model(name: str, num_classes: int = 5) -> nn.Module:
    """A width-8 preset whose CP modules start with γ = 1, so the CP path changes the output (γ = 0 would hide it)."""
    torch.manual_seed(0)
    options = {"cp_init_gamma": 1.0} if name.startswith("cpnet") else {}
    return cpnet.create_model(name, num_classes=num_classes, width=8, **options)


def randomize_norms(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial eval-mode BatchNorms (running statistics and affine parameters)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            m.weight.data.copy_(1 + 0.3 * torch.randn(c, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))


class Clip(nn.Module):
    """Wraps a module taking (N, C, T, H, W) so the export helpers know its input channels."""

    def __init__(self, inner: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.inner, self.in_channels = inner, in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class KNN(nn.Module):
    """Clip (N, C, T, H, W) → cross-frame neighbour indices (N, P, k), searched in float64 so no rounding
    difference between ONNX Runtime and PyTorch can swap two near-equal neighbours."""

    def __init__(self, k: int, block_size: int | None) -> None:
        super().__init__()
        self.k, self.block_size = k, block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cross_frame_knn(to_points(x).double(), int(x.shape[2]), self.k, self.block_size)


needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="ONNX export tests need onnx and onnxruntime (pip install 'cpnet[export]')",
)


@needs_onnx
@pytest.mark.parametrize("name", MODELS)
def test_onnx_runs_in_onnxruntime_like_pytorch_with_a_dynamic_batch(name, tmp_path):
    import onnxruntime as ort

    model = small_model(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", FRAMES, SIZE)
    assert model.training  # the caller's mode is restored
    (clip_input,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
    assert clip_input.name == "clip" and clip_input.shape == ["batch", 3, FRAMES, SIZE, SIZE]
    assert verify_onnx(model, path, FRAMES, SIZE, batch_sizes=(1, 2)) <= TOL  # traced at batch 1, run at 1 and 2


@needs_onnx
@pytest.mark.parametrize("shrink", [None, 2])
def test_exported_cp_module_gives_the_pytorch_output(shrink, tmp_path):
    torch.manual_seed(0)
    cp = CPModule(8, k=5, mlp=[4, 8], shrink=shrink, init_gamma=1.0, block_size=32)  # 1 to 4 row blocks a split
    randomize_norms(cp)
    model = Clip(cp, in_channels=8)
    path = export_onnx(model, tmp_path / "cp.onnx", frames=4, size=8)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 8, 4, 8, 8)).abs().mean() > 0.1  # the comparison below is not of zeros
    assert verify_onnx(model, path, 4, 8, batch_sizes=(1, 2, 3)) <= TOL


@needs_onnx
def test_exported_knn_picks_the_same_neighbours(tmp_path):
    import onnxruntime as ort

    # 16² points per frame: long enough rows and columns for the grouped top-k; 128-row blocks: 2 to 4 per split.
    model = Clip(KNN(k=3, block_size=128), in_channels=8)
    path = export_onnx(model, tmp_path / "knn.onnx", frames=4, size=16)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        clip = torch.randn(batch, 8, 4, 16, 16, generator=torch.Generator().manual_seed(batch))
        got = session.run(None, {"clip": clip.numpy()})[0]  # (N, P, k)
        expected = cross_frame_knn_dense(to_points(clip).double(), 4, 3)
        np.testing.assert_array_equal(got, expected.numpy())


@needs_onnx
def test_onnx_opset_is_the_one_asked_for(tmp_path):
    import onnx

    model = small_model("c2d_r18")
    path = export_onnx(model, tmp_path / "m.onnx", FRAMES, SIZE, opset=13)
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")] == [13]
    with pytest.raises(ValueError, match="opset must be an integer in 11..20"):
        export_onnx(model, tmp_path / "m.onnx", FRAMES, SIZE, opset=21)


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_reloads_and_matches_pytorch(name, tmp_path):
    model = small_model(name)
    path = export_torchscript(model, tmp_path / f"{name}.torchscript.pt", FRAMES, SIZE)
    assert verify_torchscript(model, path, FRAMES, SIZE, batch_sizes=(1, 2)) <= TOL


def test_rounding_sensitivity_is_the_eager_models_own_float32_noise():
    model = small_model("c2d_r18")
    floor = rounding_sensitivity(model, FRAMES, SIZE, batch_sizes=(1,))
    assert 0 < floor < 1e-4  # a smooth model moves by about the input change
    assert rounding_sensitivity(model, FRAMES, SIZE, batch_sizes=(1,), relative=1e-3) > 100 * floor
    assert model.training


def test_export_refuses_a_clip_the_model_cannot_take(tmp_path):
    # 4 frames of 16²: cpnet_r18's last stage is 1×1, so only 3 points lie in other frames for k = 8.
    with pytest.raises(ValueError, match=r"cannot export at 4 frames of 16x16: .*k=8 cannot be satisfied"):
        export_torchscript(small_model("cpnet_r18"), tmp_path / "m.pt", 4, 16)
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        export_torchscript(small_model("c2d_r18"), tmp_path / "m.pt", 0, 64)
    with pytest.raises(ValueError, match=r"the model is on meta: move it with model.cpu\(\) first"):
        export_torchscript(small_model("c2d_r18").to("meta"), tmp_path / "m.pt", 4, 64)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        verify_torchscript(small_model("c2d_r18"), tmp_path / "missing.pt", 4, 64)


# --- cpnet export ---------------------------------------------------------------------------------------------

CLASSES = ["a", "b", "c"]


def write_checkpoint(tmp_path, name: str) -> tuple:
    """A checkpoint as `cpnet train` writes it (model, config, class names) for a width-8 ``name``."""
    cfg = config_from_dict({"model": {"name": name, "options": {"width": 8, "cp_init_gamma": 1.0}
                                      if name.startswith("cpnet") else {"width": 8}},
                            "data": {"num_frames": FRAMES, "size": SIZE}})
    model = cpnet.create_model(name, num_classes=len(CLASSES), **cfg.model.options)
    meta = {"model_name": name, "num_classes": len(CLASSES), "class_names": CLASSES, "config": config_to_dict(cfg)}
    return atomic_save(make_checkpoint(model, epoch=3, meta=meta), tmp_path / "run" / "checkpoint_best.pt"), model


@needs_onnx
def test_cli_exports_onnx_next_to_the_checkpoint_with_a_sidecar(tmp_path, capsys):
    import onnxruntime as ort

    ckpt, model = write_checkpoint(tmp_path, "c2d_r18")
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx"]) == 0
    out = ckpt.parent / f"checkpoint_best_{FRAMES}x{SIZE}.onnx"  # clip shape from the checkpoint's config
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "ONNX Runtime (CPU) vs PyTorch, batch 1 and 2: max abs difference" in printed
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["class_names"] == CLASSES and sidecar["model"] == "c2d_r18" and sidecar["opset"] == 17
    assert sidecar["input"]["shape"] == ["batch", 3, FRAMES, SIZE, SIZE] and sidecar["output"]["shape"] == ["batch", 3]
    assert 0 <= sidecar["max_abs_diff_vs_pytorch"] <= TOL
    clip = torch.randn(2, 3, FRAMES, SIZE, SIZE)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"clip": clip.numpy()})[0]
    with torch.no_grad():  # the checkpoint's weights, not a fresh model's
        np.testing.assert_allclose(got, model.eval()(clip).numpy(), atol=TOL)


def test_cli_exports_safetensors_that_create_model_loads_with_settings_and_class_names(tmp_path, capsys):
    from safetensors import safe_open

    ckpt, model = write_checkpoint(tmp_path, "cpnet_r18")
    assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors"]) == 0
    out = ckpt.parent / "checkpoint_best.safetensors"  # weights fit every clip shape: no T x S in the name
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "gives back all" in printed and not out.with_name(out.name + ".json").exists()
    with safe_open(str(out), "pt") as f:
        meta = {key: json.loads(value) for key, value in f.metadata().items() if key != "format"}
    assert meta["model_name"] == "cpnet_r18" and meta["class_names"] == CLASSES and meta["num_classes"] == 3
    assert meta["options"] == {"width": 8, "cp_init_gamma": 1.0}
    back = cpnet.create_model("cpnet_r18", pretrained=out).eval()  # width 8 and 3 classes come from the file
    clip = torch.randn(1, 3, FRAMES, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(back(clip), model.eval()(clip))
    assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors"]) == 2  # exists: needs --force
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--out", str(ckpt)]) == 2
    assert "is the checkpoint" in capsys.readouterr().err and torch.load(ckpt, weights_only=True)["epoch"] == 3


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_cli_exports_torchscript_at_the_asked_clip_shape(tmp_path, capsys):
    ckpt, model = write_checkpoint(tmp_path, "cpnet_r18")
    out = tmp_path / "deploy" / "model.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--frames", "3", "--size", "96",
                 "--out", str(out)]) == 0
    assert "reloaded TorchScript vs PyTorch" in capsys.readouterr().out
    assert json.loads((tmp_path / "deploy" / "model.pt.json").read_text())["input"]["shape"] == ["batch", 3, 3, 96, 96]
    clip = torch.randn(1, 3, 3, 96, 96)
    with torch.no_grad():
        np.testing.assert_allclose(torch.jit.load(str(out))(clip), model.eval()(clip), atol=TOL)


def test_cli_errors_are_one_line(tmp_path, capsys):
    ckpt, _ = write_checkpoint(tmp_path, "cpnet_r18")
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--size", "16"]) == 2
    assert "cannot export at 4 frames of 16x16" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--format", "torchscript"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.parametrize("installed, args, expected", [
    ({"onnx"}, [], "needs the package(s) onnxruntime: pip install onnxruntime (or pip install 'cpnet[export]'); "
                   "or pass --no-verify"),
    (set(), ["--no-verify"], "needs the package(s) onnx: pip install onnx (or pip install 'cpnet[export]')"),
])
def test_cli_names_the_missing_onnx_package(installed, args, expected, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    hidden = {"onnx", "onnxruntime"} - installed

    def find_spec(name, *rest):
        return None if name in hidden else real(name, *rest) if name not in installed else object()

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    ckpt, _ = write_checkpoint(tmp_path, "c2d_r18")
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", *args]) == 2
    assert expected in capsys.readouterr().err
    assert not list(ckpt.parent.glob("*.onnx"))  # refused before exporting


@pytest.mark.parametrize("floor, code", [(1e-3, 0), (1e-4, 1)])
def test_cli_accepts_a_difference_above_tolerance_only_within_pytorchs_rounding_noise(floor, code, tmp_path, capsys,
                                                                                    monkeypatch):
    monkeypatch.setattr(export, "verify_torchscript", lambda *a, **k: 5e-4)  # e.g. a swapped near-tied neighbour
    monkeypatch.setattr(export, "rounding_sensitivity", lambda *a, **k: floor)
    ckpt, _ = write_checkpoint(tmp_path, "c2d_r18")
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript"]) == code
    captured = capsys.readouterr()
    assert "max abs difference 5.00e-04 (tolerance 0.0001)" in captured.out
    assert ("accepted: the export is as close to PyTorch as float32 rounding allows" in captured.out) == (code == 0)
    assert ("differs from PyTorch by 5.00e-04" in captured.err) == (code == 1)
    sidecar = json.loads((ckpt.parent / f"checkpoint_best_{FRAMES}x{SIZE}.torchscript.pt.json").read_text())
    assert sidecar["pytorch_rounding_sensitivity"] == floor


@needs_onnx
def test_onnx_fed_by_cpnet_preprocess_and_a_users_own_decoder_matches_cpnet_predict(tmp_path, capsys):
    """Issue 23.4: the sidecar says every step a clip needs; cpnet.preprocess applies it to frames decoded by the
    user's own PyAV loop, and ONNX Runtime on them gives cpnet predict's probabilities to 1e-5."""
    import av
    import onnxruntime as ort

    from tests.data.media import indexed_frames, write_video

    ckpt, _ = write_checkpoint(tmp_path, "cpnet_r18")
    video = write_video(tmp_path / "clip.webm", indexed_frames(20, 80, 100))  # another shape than the crop
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    spec = sidecar["preprocessing"]
    assert {"num_frames", "stride", "sampling", "size", "short_side", "resize", "crop", "channel_order", "mean",
            "std", "layout"} <= set(spec)
    assert sidecar["model_file"] == out.name and len(sidecar["model_sha256"]) == 64
    with av.open(str(video)) as container:  # "the user's own decoder"
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    clips = cpnet.preprocess(frames, spec)  # (views, 3, T, S, S)
    assert clips.shape == (1, 3, FRAMES, SIZE, SIZE) and clips.dtype == np.float32
    logits = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"clip": clips})[0]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).mean(axis=0)
    capsys.readouterr()
    assert main(["predict", str(video), "--checkpoint", str(ckpt), "--json", "--topk", "3"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    for entry in top:
        assert probs[CLASSES.index(entry["class"])] == pytest.approx(entry["probability"], abs=1e-5)


def test_a_safetensors_export_gets_a_plain_files_mode_and_the_preprocessing(tmp_path):
    """Issue 23.8: `export --format safetensors` wrote mode 0600 under umask 022 (the other formats 0644)."""
    import os

    from safetensors import safe_open

    ckpt, _ = write_checkpoint(tmp_path, "c2d_r18")
    old = os.umask(0o022)
    try:
        assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--no-verify"]) == 0
    finally:
        os.umask(old)
    out = ckpt.parent / "checkpoint_best.safetensors"
    assert out.stat().st_mode & 0o777 == 0o644
    with safe_open(str(out), "pt") as f:
        spec = json.loads(f.metadata()["preprocessing"])
    assert spec["num_frames"] == FRAMES and spec["size"] == SIZE


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_export_says_what_it_checks_and_why_a_difference_is_accepted(tmp_path, capsys, monkeypatch):
    """Issue 23.4: the check announces itself while it runs; a difference above the tolerance is named as such,
    with the reason it is accepted (PyTorch's own rounding sensitivity) or refused."""
    ckpt, _ = write_checkpoint(tmp_path, "cpnet_r18")
    monkeypatch.setattr(export, "verify_torchscript", lambda *args, **kwargs: 3e-4)  # a kNN near-tie's size
    monkeypatch.setattr(export, "rounding_sensitivity", lambda *args, **kwargs: 2e-4)
    out = tmp_path / "m.torchscript.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checking: reloaded TorchScript against PyTorch" in printed
    assert "3.00e-04 is above the tolerance 0.0001: measuring how far PyTorch itself moves" in printed
    assert "accepted" in printed
    monkeypatch.setattr(export, "rounding_sensitivity", lambda *args, **kwargs: 1e-5)
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--out", str(out), "--force"]) == 1
    assert "more than 2x PyTorch's own rounding sensitivity" in capsys.readouterr().err


def test_a_preprocessing_spec_read_from_a_sidecar_is_bounded_and_named():
    """The sidecar is a file a deployment reads back: its sizes are bounded before anything is allocated."""
    from cpnet.data.preprocess import Preprocessing

    good = {"num_frames": 8, "stride": 2, "sampling": "dense", "size": 112, "short_side": 128}
    assert Preprocessing.from_dict(good) == Preprocessing(8, 2, "dense", 112, 128)
    with pytest.raises(ValueError, match=r"preprocessing size: expected an integer in \[1, 4096\], got 1000000000"):
        Preprocessing.from_dict({**good, "size": 10**9})
    with pytest.raises(ValueError, match="preprocessing: missing stride"):
        Preprocessing.from_dict({k: v for k, v in good.items() if k != "stride"})
    with pytest.raises(ValueError, match="preprocessing protocol"):
        Preprocessing.from_dict({**good, "protocol": "everything"})
    with pytest.raises(ValueError, match=r"frames: expected uint8 RGB"):
        cpnet.preprocess(np.zeros((4, 8, 8, 3), np.float32), good)


def test_an_export_at_another_crop_size_scales_the_short_side_alike(tmp_path):
    from cpnet.app.export import export_preprocessing

    cfg = config_from_dict({"data": {"num_frames": 8, "size": 112, "short_side": 128}})
    assert export_preprocessing(cfg, 8, 112).short_side == 128
    assert export_preprocessing(cfg, 16, 224).short_side == 256 and export_preprocessing(cfg, 16, 224).num_frames == 16
