"""Looking inside CP modules from the outside: find them, capture their input with a forward hook and rerun them
through their public analysis methods (:meth:`CPModule.search`, :meth:`CPModule.trace`). Nothing here changes a
module's forward; hooks are removed before the functions return.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from cpnet.models.cp import CPModule
from cpnet.ops.video import to_points


def cp_modules(model: nn.Module) -> dict[str, CPModule]:
    """Every CP module of ``model`` by its qualified name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, CPModule)}


def find_cp(model: nn.Module, name: str | None = None) -> tuple[str, CPModule]:
    """The CP module called ``name`` (default: the first one); a ValueError lists the valid names."""
    modules = cp_modules(model)
    if not modules:
        raise ValueError(f"the model ({type(model).__name__}) has no CP module to look at; use a cpnet_* preset")
    if name is None:
        return next(iter(modules.items()))
    if name not in modules:
        raise ValueError(f"no CP module named {name!r}; expected one of {', '.join(modules)}")
    return name, modules[name]


def search_points(cp: CPModule, s: torch.Tensor) -> torch.Tensor:
    """The (N, P, C') points ``cp`` searches for its input s (N, C, T, H, W): after its bottleneck and shrink."""
    return to_points(cp.search_features(s))  # (N, C', T, H', W') → (N, P, C')


def search_grid(cp: CPModule, s: torch.Tensor) -> tuple[int, int, int]:
    """(T, H', W'): the grid of points ``cp`` searches for input s (N, C, T, H, W)."""
    return cp.search_grid(s)


def neighbours(cp: CPModule, s: torch.Tensor) -> torch.Tensor:
    """The module's proposals for input s: int64 (N, P, k) indices into the P = T·H'·W' search points."""
    return cp.search(s)[1]


@dataclass
class CPCapture:
    """One forward of a CP module inside its model: its input s (N, C, T, H, W), the last MLP layer's BatchNorm
    output before the ReLU (N·P·k, mlp[-1]), the module's output CP(s) (N, C, T, H, W), and from the same forward
    the search grid (T, H', W'), the proposals (N, P, k) and CP(s) at the search points (N, C, T, H', W')."""

    name: str
    module: CPModule
    inputs: torch.Tensor
    last_layer: torch.Tensor
    output: torch.Tensor
    grid: tuple[int, int, int]
    proposals: torch.Tensor
    search_output: torch.Tensor


@torch.inference_mode()
def capture_cp(model: nn.Module, clip: torch.Tensor, name: str | None = None) -> CPCapture:
    """Run ``model`` (eval mode) on ``clip`` and capture the CP module ``name`` (default: the first).

    A pre-hook on the module keeps its input s; the module then reruns on s with :meth:`CPModule.trace`, which
    keeps every pair's last-layer activation before the ReLU and the max-pool over k (the model's own forward
    folds those BatchNorms away in eval mode).
    """
    name, cp = find_cp(model, name)
    seen: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, args: tuple) -> None:
        seen.setdefault("inputs", args[0].detach().clone())

    handle = cp.register_forward_pre_hook(keep)
    try:
        model.eval()(clip)
    finally:
        handle.remove()
    trace = cp.trace(seen["inputs"])
    return CPCapture(name, cp, seen["inputs"], trace.pair_activations, trace.output, trace.grid, trace.neighbours,
                     trace.search_output)


@torch.inference_mode()
def capture_all(model: nn.Module, clip: torch.Tensor) -> tuple[torch.Tensor, dict[str, CPCapture]]:
    """One forward of ``model`` (eval mode) on ``clip``: its logits (N, classes) and a :class:`CPCapture` of every
    CP module, by name in forward order (as :func:`capture_cp` for one, without a forward per module)."""
    modules = cp_modules(model)
    if not modules:
        raise ValueError(f"the model ({type(model).__name__}) has no CP module to look at; use a cpnet_* preset")
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, cp in modules.items():
        def keep(_module: nn.Module, args: tuple, name: str = name) -> None:
            seen.setdefault(name, args[0].detach().clone())

        handles.append(cp.register_forward_pre_hook(keep))
    try:
        logits = model.eval()(clip)
    finally:
        for handle in handles:
            handle.remove()
    captures = {}
    for name, cp in modules.items():
        trace = cp.trace(seen[name])
        captures[name] = CPCapture(name, cp, seen[name], trace.pair_activations, trace.output, trace.grid,
                                   trace.neighbours, trace.search_output)
    return logits, captures
