"""Training and evaluation engine: optimiser and schedule, the training loop, checkpoints, evaluation, and the
distributed layer (``cpnet.engine.distributed``: torchrun process group, DDP, sharded evaluation).

The engine takes models, loaders and options as objects: it imports neither the config nor ``cpnet.data`` (batches
arrive as :mod:`cpnet.batch` types). ``cpnet.app`` turns a config into these calls, for the CLI and the demo.
"""

import importlib

# Loaded on first use (PEP 562), so that importing one engine module (checkpoints, say, for predict) does not pull in
# the training loop and its progress bars.
_HOMES = {
    "atomic_save": "checkpoint", "check_compatible": "checkpoint", "load_checkpoint": "checkpoint",
    "EpochEnd": "loop", "NonFiniteLossError": "loop", "TrainOptions": "loop", "evaluate": "loop", "fit": "loop",
    "train_one_epoch": "loop", "LRSchedule": "optim", "build_optimizer": "optim", "parameter_groups": "optim",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'cpnet.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cpnet.engine.{_HOMES[name]}"), name)


__all__ = [
    "EpochEnd",
    "LRSchedule",
    "NonFiniteLossError",
    "TrainOptions",
    "atomic_save",
    "build_optimizer",
    "check_compatible",
    "evaluate",
    "fit",
    "load_checkpoint",
    "parameter_groups",
    "train_one_epoch",
]
