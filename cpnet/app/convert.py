"""``cpnet convert tf``: the authors' released TensorFlow CPNet checkpoints as cpnet checkpoints.

:mod:`cpnet.convert` reads the TF files and maps the weights; this module stores them as a checkpoint with the
released test settings as its config, so ``cpnet eval``, ``predict``, ``export``, ``visualize`` and ``train --init``
accept it.
"""

from __future__ import annotations

from pathlib import Path

from cpnet.app.config import config_from_dict, config_to_dict
from cpnet.convert.released import convert_released
from cpnet.engine.checkpoint import atomic_save, make_checkpoint


def convert_tf(checkpoint: str | Path, preset: str, labels: str | Path, out: str | Path, *,
               force: bool = False) -> dict:
    """Convert the released TF ``checkpoint`` onto ``preset`` with the classes of ``labels`` and write a cpnet
    checkpoint to ``out`` (atomically: nothing partial is left on an error). Refuses an existing ``out`` unless
    ``force``. Returns the checkpoint's metadata."""
    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"{out} exists; pass --force to overwrite it")
    released = convert_released(checkpoint, preset, labels)
    cfg = config_from_dict(released.test_config)
    meta = {"model_name": released.preset, "num_classes": len(released.class_names),
            "class_names": released.class_names, "config": config_to_dict(cfg),
            "converted_from": str(released.source)}
    atomic_save(make_checkpoint(released.model, epoch=0, meta=meta), out)
    return meta
