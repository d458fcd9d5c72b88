"""Config read from files is bounded before it is expanded or used (issue 24, attacks 2, 3 and 7): YAML aliases
are refused, nesting and size are bounded, and numeric fields have upper bounds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cpnet.app.config import Config, config_from_dict, config_to_dict, load_config, parse_override, validate
from cpnet.app.config_bounds import MAX_CLIP_PIXELS, MAX_CONFIG_BYTES, UPPER_BOUNDS
from tests.helpers import ROOT

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


# The 692-byte billion laughs of the audit: nine levels of ten aliases each, 10^9 strings once expanded.
LAUGHS = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n" + "".join(
    f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


def test_yaml_aliases_are_refused_in_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text("model:\n  options:\n    " + LAUGHS.replace("\n", "\n    ").rstrip() + "\n")
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^config file {path} is not valid YAML: line 4: an alias \(\*name\); "
                                         "configs may not use YAML aliases"):
        load_config(path)
    assert time.perf_counter() - started < 2.0


def test_a_merge_key_through_aliases_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {lr: 0.1}\noptim:\n  <<: *base\n")
    with pytest.raises(ValueError, match=r"line 3: an alias"):
        load_config(path)


def test_yaml_aliases_are_refused_in_an_override() -> None:
    with pytest.raises(ValueError, match=r"^override .*: the value is not valid YAML: line 1: an alias"):
        parse_override("model.options.cp_at=" + "{" + LAUGHS.replace("\n", ", ").rstrip(", ") + "}")


def test_deep_yaml_nesting_is_refused_before_it_recurses(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("model:\n  options:\n    x: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ValueError, match=r"nested more than 32 levels deep \(the limit\)"):
        load_config(path)


def test_an_oversized_config_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "#" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ValueError, match=rf"^config file {path} is [\d,]+ bytes, more than the limit of"):
        load_config(path)


def test_a_checkpoint_config_with_nested_shared_options_is_refused_quickly() -> None:
    node: list = ["x"]
    for _ in range(9):
        node = [node] * 10
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"^the config.*(more than [\d,]+ values|nested more than \d+ levels)"):
        config_from_dict({"model": {"options": {"cp_at": node}}})
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("section, key, value", [
    ("data", "size", 8000), ("data", "short_side", 8000), ("data", "num_frames", 100_000),
    ("eval", "batch_size", 10**6), ("eval", "clips", 10**5),
])
def test_numeric_fields_from_a_checkpoint_have_upper_bounds(section: str, key: str, value: int) -> None:
    bound = UPPER_BOUNDS[f"{section}.{key}"]
    with pytest.raises(ValueError, match=rf"^config key '{section}\.{key}': expected a value <= {bound:,}, "
                                         rf"got {value}$"):
        config_from_dict({section: {key: value}})


def test_the_audits_8000_pixel_checkpoint_config_is_refused() -> None:
    data = config_to_dict(Config())
    data["data"].update(size=8000, short_side=8000)
    with pytest.raises(ValueError, match=r"^config key 'data.size': expected a value <= 1,024, got 8000$"):
        config_from_dict(data)


def test_a_clip_beyond_the_pixel_bound_is_refused() -> None:
    cfg = Config()
    cfg.data.num_frames, cfg.data.size, cfg.data.short_side = 1024, 1024, 2048
    with pytest.raises(ValueError, match=rf"a clip of 1024 frames at 2048x2048 is [\d,]+ pixels, more than the "
                                         rf"limit of {MAX_CLIP_PIXELS:,}$"):
        validate(cfg)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_is_within_the_bounds(path: Path) -> None:
    load_config(path)


def test_a_checkpoint_config_error_names_the_file_given() -> None:
    with pytest.raises(ValueError, match=r"^runs/x/checkpoint_best\.pt: config key 'data.size': expected a value "
                                         r"<= 1,024, got 8000$"):
        config_from_dict({"data": {"size": 8000}}, source="runs/x/checkpoint_best.pt")
