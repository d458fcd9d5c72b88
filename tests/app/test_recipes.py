"""The paper's recipes as configs: every real-dataset config names its initialisation, 24-frame configs exist for
the headline figures, the ablation variants differ from the R18 Kinetics config only where they say; a missing init
file stops before any data is read; a zero-γ CPNet trained from scratch warns once; the released BN momentum
schedule sets what it says."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

import cpnet
from cpnet.app.config import config_to_dict, load_config
from cpnet.cli import main
from cpnet.data.synthetic import write_jester
from cpnet.engine.optim import bn_momentum_schedule, set_bn_momentum
from tests.helpers import ROOT, SYNTHETIC, tiny_config, write_config

CONFIGS = ROOT / "configs"
REAL = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "synthetic")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return write_jester(tmp_path_factory.mktemp("synthetic"), **SYNTHETIC)


@pytest.mark.parametrize("path", REAL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_real_dataset_config_states_its_initialisation(path):
    assert "init" in yaml.safe_load(path.read_text())["model"], f"{path} does not say model.init"
    cfg = load_config(path)
    assert cfg.model.init and (cfg.model.init == "none" or cfg.model.init.endswith(".npz"))


def test_24_frame_configs_for_the_headline_figures():
    for path, crop in (("ssv2/cpnet_r34_24x224.yaml", 224), ("jester/cpnet_r34_24x112.yaml", 112)):
        cfg = load_config(CONFIGS / path)
        assert (cfg.data.num_frames, cfg.data.size, cfg.model.name) == (24, crop, "cpnet_r34")
        assert cfg.data.num_frames * cfg.data.stride == 24  # the span of the released 12 frames at stride 2
        assert cfg.optim.bn_momentum == "released" and cfg.eval.protocol == "released"


def test_ablation_configs_differ_from_the_r18_kinetics_config_only_in_the_cp_options():
    base = config_to_dict(load_config(CONFIGS / "kinetics" / "cpnet_r18_8x224.yaml"))
    variants = sorted((CONFIGS / "kinetics" / "ablations").glob("*.yaml"))
    assert len(variants) >= 9
    built = set()
    for path in variants:
        cfg = config_to_dict(load_config(path))
        assert {k: v for k, v in cfg.items() if k not in ("name", "model")} == {
            k: v for k, v in base.items() if k not in ("name", "model")}, path
        assert cfg["model"]["name"] == "cpnet_r18" and set(cfg["model"]["options"]) <= {"cp_at", "cp_k"}
        model = cpnet.create_model("cpnet_r18", num_classes=400, **cfg["model"]["options"])
        cps = [m for m in model.modules() if isinstance(m, cpnet.CPModule)]
        built.add((len(cps), cps[0].k))
    assert {(1, 8), (2, 8), (4, 8), (6, 4), (6, 16), (6, 32)} <= built


def test_a_missing_init_file_stops_before_any_data_is_read(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "no_such_dataset", model={"init": str(tmp_path / "ImageNet-ResNet18.npz")})
    config = write_config(tmp_path / "c.yaml", cfg)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.init" in err and "ImageNet-ResNet18.npz: file not found" in err and "model.init: none" in err
    assert not (tmp_path / "run").exists() and "no_such_dataset" not in err


def _cp_config(root, **options):
    model = {"name": "cpnet_r18", "init": "none",
             "options": {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1, "dropout": 0.0, "cp_k": 2,
                         "cp_at": {"layer2": [0]}, **options}}
    return tiny_config(root, epochs=1, model=model)


def test_a_zero_gamma_cpnet_from_scratch_warns_once(synthetic_root, tmp_path):
    config = write_config(tmp_path / "cp.yaml", _cp_config(synthetic_root))
    with pytest.warns(UserWarning, match="trains from scratch") as caught:
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    messages = [str(w.message) for w in caught if "trains from scratch" in str(w.message)]
    assert len(messages) == 1 and "1 CP modules' output γ at 0" in messages[0] and "cp_init_gamma" in messages[0]
    open_start = write_config(tmp_path / "open.yaml", _cp_config(synthetic_root, cp_init_gamma=1.0))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*trains from scratch.*")
        assert main(["train", "--config", str(open_start), "--out", str(tmp_path / "b"), "--no-progress"]) == 0


def test_released_bn_momentum_schedule_halves_every_step_and_is_applied(synthetic_root, tmp_path):
    schedule = bn_momentum_schedule("released", step_size=2)
    assert [schedule(e) for e in range(0, 16, 2)] == [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.01, 0.01]
    assert bn_momentum_schedule("default", 2) is None
    with pytest.raises(ValueError, match="unknown BN momentum schedule"):
        bn_momentum_schedule("tf", 2)
    net = nn.Sequential(nn.BatchNorm3d(2), nn.Sequential(nn.BatchNorm2d(3)))
    set_bn_momentum(net, 0.25)
    assert [m.momentum for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] == [0.25, 0.25]
    cfg = tiny_config(synthetic_root, epochs=3, optim={"lr": 0.05, "schedule": "constant", "step_size": 2,
                                                        "bn_momentum": "released"})
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out),
                 "--no-progress"]) == 0
    records = [yaml.safe_load(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["bn_momentum"] for r in records] == [0.5, 0.5, 0.25]
    ckpt = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert ckpt["config"]["optim"]["bn_momentum"] == "released"


def _modules(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def test_the_readme_differences_table_names_options_that_do_what_it_says():
    """Each model option in README's "Differences from the released code" exists and changes what it says."""
    readme = (CONFIGS.parent / "README.md").read_text()
    table = readme[readme.index("## Differences from the released code"):]
    for option in ("cp_k=8", "cp_at=", "cp_bottleneck=0.125", "cp_shrink=", 'cp_resample="bilinear_tf1"',
                   "stride_1x1=True", 'padding="same"', "bn_eps=1e-3", "stem_stride=1", "optim.bn_momentum: released",
                   "--protocol released"):
        assert option in table, option
    tiny = {"width": 8, "num_classes": 5}
    r18 = cpnet.create_model("cpnet_r18", **tiny)
    released = cpnet.create_model("cpnet_r18", **tiny, cp_k=8, cp_at={"layer2": [0, 1], "layer3": [0, 1]},
                                  cp_shrink={"layer2": 2}, cp_resample="bilinear_tf1", padding="same", bn_eps=1e-3,
                                  stem_stride=1)
    cps = _modules(released, cpnet.CPModule)
    assert len(_modules(r18, cpnet.CPModule)) == 6 and len(cps) == 4 and {m.k for m in cps} == {8}
    assert {m.resample for m in cps} == {"bilinear_tf1"}
    assert {m.eps for m in _modules(released, nn.modules.batchnorm._BatchNorm)} == {1e-3}
    assert released.conv1.stride[-1] == 1 and r18.conv1.stride[-1] == 2
    clip = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        r18.eval(), released.eval()
        assert r18(clip).shape == released(clip).shape == (1, 5)
    r101 = cpnet.create_model("cpnet_r101", width=8, num_classes=5, cp_bottleneck=0.125, cp_mlp=[0.125],
                              stride_1x1=True)
    first = r101.layer2[0]
    assert first.conv1.stride[-1] == 2 and first.conv2.stride[-1] == 1  # the first 1×1 strides
    plain = cpnet.create_model("cpnet_r101", width=8, num_classes=5).layer2[0]
    assert plain.conv1.stride[-1] == 1 and plain.conv2.stride[-1] == 2
