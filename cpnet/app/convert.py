"""``cpnet convert tf``: the authors' released TensorFlow CPNet checkpoints as cpnet checkpoints.

:mod:`cpnet.convert` reads the TF files and maps the weights; this module stores them as a checkpoint with the
released test settings as its config, so ``cpnet eval``, ``predict``, ``export``, ``visualize`` and ``train --init``
accept it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cpnet.app.config import config_from_dict, config_to_dict
from cpnet.convert.released import convert_released
from cpnet.convert.tf_checkpoint import resolve_tf_prefix
from cpnet.engine.checkpoint import atomic_save, make_checkpoint


def convert_tf(checkpoint: str | Path, preset: str, labels: str | Path, out: str | Path, *,
               force: bool = False) -> dict:
    """Convert the released TF ``checkpoint`` onto ``preset`` with the classes of ``labels`` and write a cpnet
    checkpoint to ``out`` (atomically: nothing partial is left on an error). Refuses an existing ``out`` unless
    ``force``. Returns the checkpoint's metadata."""
    out = Path(out)
    _refuse_inputs_as_output(out, checkpoint, labels)
    if out.exists() and not force:
        raise ValueError(f"{out} exists; pass --force to overwrite it")
    released = convert_released(checkpoint, preset, labels)
    cfg = config_from_dict(released.test_config)
    meta = {"model_name": released.preset, "num_classes": len(released.class_names),
            "class_names": released.class_names, "config": config_to_dict(cfg),
            "converted_from": str(released.source)}
    atomic_save(make_checkpoint(released.model, epoch=0, meta=meta), out)
    return meta


def _refuse_inputs_as_output(out: Path, checkpoint: str | Path, labels: str | Path) -> None:
    """``--out`` may never be one of the files read (the TF index or data shards, the label file), even with
    ``--force``: the conversion would replace its own input."""
    if not os.path.lexists(out):
        return
    prefix = resolve_tf_prefix(checkpoint)
    inputs = [Path(labels), prefix.with_name(prefix.name + ".index"), *prefix.parent.glob(prefix.name + ".data-*")]
    for path in inputs:
        if path.exists() and os.path.samefile(out, path):
            raise ValueError(f"--out {out} is the input {path}; expected a new file for the cpnet checkpoint")
