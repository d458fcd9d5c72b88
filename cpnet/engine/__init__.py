"""Training and evaluation engine: optimiser and schedule, the training loop, checkpoints, evaluation, and the
distributed layer (``cpnet.engine.distributed``: torchrun process group, DDP, sharded evaluation).

The engine takes models, loaders and options as objects: it imports neither the config nor ``cpnet.data`` (batches
arrive as :mod:`cpnet.batch` types). ``cpnet.app`` turns a config into these calls, for the CLI and the demo.
"""

from cpnet.engine.checkpoint import atomic_save, check_compatible, load_checkpoint
from cpnet.engine.loop import EpochEnd, NonFiniteLossError, TrainOptions, evaluate, fit, train_one_epoch
from cpnet.engine.optim import LRSchedule, build_optimizer, parameter_groups

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
