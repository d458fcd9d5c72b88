"""``cpnet models``: every registered preset with its parameter counts, beside the supplement's where it prints
one, and the one-module variants the supplement's NL-R18 and CPNet-R18 counts correspond to."""

from __future__ import annotations

from typing import Any

import torch

from cpnet.models.params import ONE_MODULE_VARIANTS, SUPPLEMENT_TABLE1, count_params, count_weights_paper
from cpnet.models.registry import create_model, list_models


def _paper_weights(name: str, num_classes: int, **options: Any) -> tuple[int, int]:
    """(all parameters, the supplement's integer count) of preset ``name`` built on the meta device."""
    with torch.device("meta"):  # counts only: no memory, no initialisation
        model = create_model(name, num_classes=num_classes, **options)
    return count_params(model), count_weights_paper(model)


def _supplement(name: str, num_classes: int) -> float | None:
    """The supplement's Table 1 count for preset ``name``; None where it prints none or for another class count."""
    return SUPPLEMENT_TABLE1.get(name) if num_classes == 400 else None


def one_module_variant(name: str, num_classes: int = 400) -> dict:
    """Preset ``name`` with the single res3 module of ``ONE_MODULE_VARIANTS``: its counts and its increment in
    weights over the base model (C2D-R18), beside the supplement's figure for the preset."""
    spec = ONE_MODULE_VARIANTS[name]
    params, weights = _paper_weights(name, num_classes, **spec["options"])
    _, base = _paper_weights(spec["base"], num_classes)
    options = {key: {stage: list(blocks) for stage, blocks in value.items()} for key, value in spec["options"].items()}
    return {"options": options, "base": spec["base"], "params": params, "params_paper": weights / 2**20,
            "increment_weights": weights - base, "paper": _supplement(name, num_classes)}


def model_table(num_classes: int = 400) -> list[dict]:
    """One row per preset: name, all parameters, our count in the supplement's convention (2^20), the supplement's
    printed count (``paper``; None where it prints none, and for any class count but its 400) and, for NL-R18 and
    CPNet-R18, the one-module variant that the supplement's figure corresponds to (``one_module``)."""
    rows = []
    for name in list_models():
        params, weights = _paper_weights(name, num_classes)
        row = {"name": name, "params": params, "params_paper": weights / 2**20,
               "paper": _supplement(name, num_classes)}
        if name in ONE_MODULE_VARIANTS:
            row["one_module"] = one_module_variant(name, num_classes)
        rows.append(row)
    return rows
