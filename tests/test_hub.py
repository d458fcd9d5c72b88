"""torch.hub from a local clone: ``hubconf.py`` lists one entry point per preset and loads trained weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import cpnet
from cpnet.models import save_safetensors
from tests.models.test_weights import CLASSES, TINY, assert_same_state, tiny_model, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def hub_entry_points() -> list[str]:
    """What ``torch.hub.list`` returns for this repository: the public callables of ``hubconf.py`` (torch 2.13's
    ``torch.hub.list`` takes no ``source`` argument and would fetch from GitHub, so its filter is applied here)."""
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted(f for f in dir(module) if callable(getattr(module, f)) and not f.startswith("_"))


def test_hub_lists_every_preset():
    assert hub_entry_points() == cpnet.list_models()


def test_hub_load_local_checkpoint(tmp_path):
    model = tiny_model()
    path = write_checkpoint(tmp_path / "ckpt.pt", model)
    loaded = torch.hub.load(str(ROOT), "c2d_r18", source="local", pretrained=str(path))
    assert_same_state(loaded.state_dict(), model.state_dict())


def test_hub_load_local_safetensors_new_classes(tmp_path):
    model = tiny_model()
    path = save_safetensors(model, tmp_path / "m.safetensors",
                            {"model_name": "c2d_r18", "options": TINY, "class_names": CLASSES})
    with pytest.warns(UserWarning, match="new classifier"):
        loaded = torch.hub.load(str(ROOT), "c2d_r18", source="local", pretrained=path, num_classes=5, **TINY)
    assert loaded.fc.out_features == 5
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)


def test_hub_load_local_without_weights():
    model = torch.hub.load(str(ROOT), "cpnet_r18", source="local", num_classes=4, width=4, cp_k=2)
    assert model(torch.randn(1, 3, 4, 64, 64)).shape == (1, 4)
