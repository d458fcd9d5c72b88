"""SGD with parameter groups and a per-step learning-rate schedule (warmup, then step or cosine decay).

The schedule is a plain function of the optimiser step, so its whole state is one integer: checkpoints stay
plain data (``torch.load(weights_only=True)``) and resuming at any step gives the same learning rates.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

SCHEDULES = ("step", "cosine", "constant")  # learning-rate schedules LRSchedule knows


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False,
                     backbone_lr_mult: float = 1.0, head: str = "fc") -> list[dict]:
    """Split trainable parameters into a decayed group and, unless ``decay_norm_and_bias``, a no-decay group; with
    ``backbone_lr_mult`` ≠ 1 each splits again into the classifier (module ``head``) and the rest, whose learning
    rate is scaled by ``backbone_lr_mult`` (``lr_scale`` of the group; :class:`LRSchedule` applies it).

    Normalisation weights and biases are the 0-D/1-D parameters; decaying them shrinks BN scales for no
    regularisation benefit (and would pull the CP module's zero-initialised output BN towards zero).
    """
    if backbone_lr_mult < 0:
        raise ValueError(f"backbone_lr_mult must be >= 0, got {backbone_lr_mult}")
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decayed = not (param.ndim <= 1 and not decay_norm_and_bias)
        in_head = name == head or name.startswith(head + ".") or f".{head}." in f".{name}"
        scale = 1.0 if in_head else backbone_lr_mult
        groups.setdefault((decayed, scale), []).append(param)
    return [{"params": params, "weight_decay": weight_decay if decayed else 0.0, "lr_scale": scale}
            for (decayed, scale), params in sorted(groups.items(), key=lambda item: (not item[0][0], -item[0][1]))]


def build_optimizer(
    model: nn.Module,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    decay_norm_and_bias: bool = False,
    backbone_lr_mult: float = 1.0,
) -> torch.optim.SGD:
    """SGD over ``model``'s trainable parameters (see :func:`parameter_groups`)."""
    if nesterov and momentum <= 0:
        raise ValueError(f"nesterov momentum needs momentum > 0, got {momentum}")
    groups = parameter_groups(model, weight_decay, decay_norm_and_bias, backbone_lr_mult)
    if not groups:
        raise ValueError("the model has no trainable parameter (is every stage frozen?)")
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def linear_scaled_lr(lr: float, global_batch: int, reference_batch: int) -> float:
    """The linear scaling rule (Goyal et al., 2017): ``lr`` was tuned for ``reference_batch`` clips per optimiser
    step; a step over ``global_batch`` clips averages over proportionally more samples and takes a proportionally
    larger step, ``lr * global_batch / reference_batch``."""
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(f"batch sizes must be >= 1, got global {global_batch} and reference {reference_batch}")
    return lr * global_batch / reference_batch


class LRSchedule:
    """Learning rate per optimiser step: linear warmup, then ``step`` (x gamma every step_size epochs), ``cosine``
    (down to min_lr at the last step) or ``constant``. Call :meth:`step` after every optimiser step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        base_lr: float,
        steps_per_epoch: int,
        epochs: int,
        kind: str = "step",
        step_size: int = 40,
        gamma: float = 0.1,
        min_lr: float = 0.0,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError(f"a schedule needs steps_per_epoch >= 1 and epochs >= 1, got {steps_per_epoch}, {epochs}")
        self.optimizer = optimizer
        self.base_lr, self.kind, self.gamma, self.min_lr = base_lr, kind, gamma, min_lr
        self.steps_per_epoch, self.total_steps = steps_per_epoch, steps_per_epoch * epochs
        self.step_size = step_size
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        self.warmup_start_factor = warmup_start_factor
        self.last_step = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        """The learning rate used by optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            start = self.warmup_start_factor
            return self.base_lr * (start + (1.0 - start) * step / self.warmup_steps)
        if self.kind == "step":
            return self.base_lr * self.gamma ** (step // (self.step_size * self.steps_per_epoch))
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps - 1)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base_lr

    @property
    def lr(self) -> float:
        return self.lr_at(self.last_step)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self._apply()


BN_MOMENTUM_SCHEDULES = ("default", "released")


def bn_momentum_schedule(kind: str, step_size: int) -> Callable[[int], float] | None:
    """The BatchNorm momentum of each epoch (PyTorch's convention: the weight of the new batch), or None to leave
    every BatchNorm's own (0.1 in PyTorch).

    ``"released"`` is the authors' TensorFlow schedule (``get_bn_decay`` in their ``train.py``): decay
    ``min(0.99, 1 − 0.5 · 0.5^⌊step / decay_step⌋)`` with the learning rate's decay step, i.e. momentum 0.5 for the
    first ``step_size`` epochs, halved every ``step_size`` epochs, never below 0.01.
    """
    if kind not in BN_MOMENTUM_SCHEDULES:
        raise ValueError(f"unknown BN momentum schedule {kind!r}; expected one of {', '.join(BN_MOMENTUM_SCHEDULES)}")
    if kind == "default":
        return None
    if step_size < 1:
        raise ValueError(f"the released BN momentum schedule needs step_size >= 1 epochs, got {step_size}")
    return lambda epoch: max(0.01, 0.5 * 0.5 ** (epoch // step_size))


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Set the momentum of every BatchNorm in ``model``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum
