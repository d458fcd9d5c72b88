"""Options and meta read from a weights file are bounded before they are formatted or expanded (issue 24, attack 2
and the 100,000-deep safetensors metadata)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from cpnet.models import create_model
from cpnet.models.bounds import MAX_OPTIONS, NestedBounds, brief, check_nested
from cpnet.models.weights import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, SAFETENSORS_FORMAT, load_weights

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


def shared_bomb(levels: int, fanout: int = 10) -> list:
    """A list that nests shared references ``levels`` deep: tiny in memory and in a pickle, ``fanout**levels``
    strings once expanded (a ``repr`` of nine levels is tens of GB)."""
    node: list = ["x" * 10]
    for _ in range(levels):
        node = [node] * fanout
    return node


def bomb_checkpoint(path: Path, options: dict) -> Path:
    config = {"model": {"name": "c2d_r18", "options": options}}
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": {}, "model_name": "c2d_r18",
                "num_classes": 3, "class_names": ["a", "b", "c"], "config": config}, path)
    return path


def test_check_nested_stops_at_its_bound_however_far_the_references_expand() -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"^opts holds more than 1,000 values \(repeated references counted"):
        check_nested(shared_bomb(30), "opts", NestedBounds(depth=64, values=1000, text=100))
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("value, match", [
    ([[[["deep"]]]], r"^opts\.a\[0\]\[0\]: nested more than 3 levels deep \(the limit\)$"),
    ("y" * 101, r"^opts\.a: a text of 101 characters, more than the limit of 100$"),
    (2**2000, r"^opts\.a: an integer of 2,001 bits, more than the limit of 1024$"),
], ids=["depth", "text", "integer"])
def test_check_nested_names_the_place_and_the_bound(value, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_nested({"a": value}, "opts", NestedBounds(depth=3, values=1000, text=100))


def test_a_checkpoint_with_nested_shared_options_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = bomb_checkpoint(tmp_path / "bomb.pt", {"cp_at": shared_bomb(9)})
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^{path}: .*(more than [\d,]+ values|nested more than 10 levels)") as caught:
        load_weights(path)
    assert time.perf_counter() - started < 5.0
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 500


def test_create_model_bounds_the_options_it_would_put_in_a_message() -> None:
    # Six levels (a million strings, 10 MB as text): formatted into the "would have N parameters" message before.
    with pytest.raises(ValueError, match=r"^model options holds more than 10,000 values"):
        create_model("c2d_r18", num_classes=3, cp_at=shared_bomb(6))


def test_create_model_refuses_too_many_options() -> None:
    options = {f"option_{i}": i for i in range(MAX_OPTIONS + 1)}
    with pytest.raises(ValueError, match=rf"^model options: {MAX_OPTIONS + 1} options, more than the limit of "
                                         rf"{MAX_OPTIONS}$"):
        create_model("c2d_r18", num_classes=3, **options)


def test_deeply_nested_safetensors_metadata_is_a_value_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "deep.safetensors"
    deep = "[" * 100_000 + "]" * 100_000
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": SAFETENSORS_FORMAT, "model_name": '"c2d_r18"',
                                                          "options": deep})
    with pytest.raises(ValueError, match=rf"^{path}: metadata entry 'options' nests deeper than"):
        load_weights(path)


def test_safetensors_options_nested_beyond_the_bound_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "nested.safetensors"
    options = json.dumps({"cp_at": [[[[[[[[[[1]]]]]]]]]]})
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": SAFETENSORS_FORMAT, "model_name": '"c2d_r18"',
                                                          "options": options})
    with pytest.raises(ValueError, match=rf"^{path}: .*nested more than \d+ levels deep"):
        load_weights(path)


def test_brief_keeps_a_mapping_in_order_and_cuts_long_values() -> None:
    assert brief({"width": 4, "layers": [1, 1]}) == "{'width': 4, 'layers': [1, 1]}"
    assert len(brief(shared_bomb(9))) < 1000
