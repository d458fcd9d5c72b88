"""Robustness matrix, model size rows: options that ask for an enormous model (as a checkpoint's ``model.options``
can) are refused with a ValueError naming them, quickly and before any weight is allocated; the limit is the
operator's (``$CPNET_MAX_PARAMS``), never an option's."""

from __future__ import annotations

import resource
import time

import pytest

from cpnet.models import MAX_PARAMS, create_model, list_models, max_params, presets
from cpnet.models.bounds import MAX_BLOCKS, PARAMS_ENV, params_on_meta

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@pytest.mark.parametrize("options,match", [
    ({"width": 10**6}, r"width=1000000 would have 2,724,003,497,000,400 parameters, more than the limit"),
    ({"num_classes": 10**10}, r"num_classes=10000000000 would have .* parameters, more than the limit"),
    ({"width": 10**12}, r"width=1000000000000 cannot be laid out"),
    ({"in_channels": 10**8}, r"in_channels=100000000 would have .* parameters"),
    ({"layers": [10**9, 1, 1, 1]}, r"layers=\[1000000000, 1, 1, 1\] asks for 1,000,000,003 residual blocks"),
])
def test_enormous_options_are_refused_before_allocating(options, match):
    before, start = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(ValueError, match=match):
        create_model("c2d_r18", **options)
    assert time.perf_counter() - start < 1.0
    assert _peak_rss_mb() - before < 100  # the model itself would be terabytes; nothing of it was allocated


def test_a_checkpoint_option_cannot_lift_the_limit():
    with pytest.raises(ValueError, match="unknown model override 'max_params'"):
        create_model("c2d_r18", width=10**6, max_params=10**30)


def test_the_limit_is_the_environments(monkeypatch):
    monkeypatch.setenv(PARAMS_ENV, "1000")
    assert max_params() == 1000
    tiny = {"width": 4, "layers": [1, 1, 1, 1], "num_classes": 3}
    with pytest.raises(ValueError, match=rf"more than the limit of 1,000; set {PARAMS_ENV}"):
        create_model("c2d_r18", **tiny)
    monkeypatch.setenv(PARAMS_ENV, "100000")
    assert create_model("c2d_r18", **tiny).fc.out_features == 3
    monkeypatch.setenv(PARAMS_ENV, "lots")
    with pytest.raises(ValueError, match=rf"{PARAMS_ENV} must be a positive integer .* got 'lots'"):
        create_model("c2d_r18", **tiny)
    monkeypatch.delenv(PARAMS_ENV)
    assert max_params() == MAX_PARAMS == 2**30


def test_every_preset_fits_well_within_the_default_limits():
    for name in list_models():
        count = params_on_meta(getattr(presets, name))  # the preset builder, 400 classes, on the meta device
        assert count < MAX_PARAMS / 20, name  # cpnet_r101, the largest, has 44.3 M
    assert 33 * 30 <= MAX_BLOCKS  # R101's 33 blocks, with room
