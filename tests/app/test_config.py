"""Config schema: YAML load, --set overrides, typo suggestions, type and range checks, round trip."""


import pytest
import yaml

from cpnet.app.config import (
    Config,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    save_config,
    valid_keys,
)
from tests.helpers import ROOT

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_defaults_are_valid_and_documented_keys_exist():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert {"optim.lr", "train.epochs", "data.synthetic.num_train", "model.options"} <= set(valid_keys())


def test_yaml_file_only_lists_differences(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("model: {name: c2d_r18, options: {width: 16}}\noptim: {lr: 1, schedule: cosine}\n")
    cfg = load_config(path)
    assert cfg.model.name == "c2d_r18" and cfg.model.options == {"width": 16}
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)  # an int is accepted for a float
    assert cfg.optim.momentum == 0.9  # default kept


def test_overrides_are_yaml_parsed_and_dotted(tmp_path):
    cfg = load_config(None, ["optim.lr=0.5", "data.short_side=null", "model.options.cp_at={layer2: [0]}",
                             "train.threads=3", "optim.nesterov=true", "name=abc"])
    assert cfg.optim.lr == 0.5
    assert cfg.data.short_side is None
    assert cfg.model.options == {"cp_at": {"layer2": [0]}}
    assert cfg.train.threads == 3 and cfg.optim.nesterov is True and cfg.name == "abc"


@pytest.mark.parametrize(
    "override, expected",
    [("optim.lrr=1", "'optim.lr'"), ("train.lr=1", "'optim.lr'"), ("trian.epochs=2", "'train.epochs'"),
     ("data.synthetic.num_trian=4", "'data.synthetic.num_train'"), ("lr=3", "'optim.lr'")],
)
def test_unknown_key_names_nearest_valid_key(override, expected):
    with pytest.raises(ValueError, match="unknown config key") as info:
        load_config(None, [override])
    assert expected in str(info.value)


def test_unknown_key_in_yaml_names_file_and_nearest_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("optim:\n  momentun: 0.9\n")
    with pytest.raises(ValueError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "'optim.momentum'" in str(info.value)


@pytest.mark.parametrize(
    "override, fragment",
    [("optim.lr=abc", "expected float"), ("train.epochs=1.5", "expected int"), ("train.amp=3", "expected bool"),
     ("optim.schedule=linear", "not one of"), ("train.epochs=0", "> 0"), ("train.val_every=0", "train.val_every"),
     ("train.label_smoothing=1.0", "[0, 1)"),
     ("data.dataset=imagenet", "not one of"), ("optim=3", "mapping"), ("optim.lr", "key=value")],
)
def test_bad_values_are_refused_with_the_key(override, fragment):
    with pytest.raises(ValueError) as info:
        load_config(None, [override])
    assert fragment in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)


def test_parse_override_values():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=") == ("a", "")
    assert parse_override("a=x=y") == ("a", "x=y")


def test_round_trip_through_saved_yaml(tmp_path):
    cfg = load_config(None, ["model.options.width=16", "eval.clips=2", "optim.lr=0.02"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg
    assert config_to_dict(cfg)["optim"]["lr"] == 0.02


@pytest.mark.parametrize("path", CONFIGS, ids=[p.relative_to(p.parents[1]).as_posix() for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert path.stem.startswith(cfg.model.name.split("_")[0])
    assert f"{cfg.data.num_frames}x{cfg.data.size}" in path.stem
