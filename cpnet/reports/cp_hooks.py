"""Looking inside CP modules from the outside: find them, capture what they see with forward hooks, and redo their
search. Nothing here changes a module's forward code; hooks are removed before the functions return.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from cpnet.models.cp import CPModule
from cpnet.ops.knn import cross_frame_knn
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
    x = cp.reduce(s) if cp.reduce is not None else s
    if cp.shrink and cp.shrink > 1:
        x = x[..., :: cp.shrink, :: cp.shrink]  # (N, C', T, H/r, W/r): the module's own subsampling
    return to_points(x)  # (N, P, C')


def search_grid(cp: CPModule, s: torch.Tensor) -> tuple[int, int, int]:
    """(T, H', W'): the grid of points ``cp`` searches for input s (N, C, T, H, W)."""
    r = cp.shrink if cp.shrink and cp.shrink > 1 else 1
    t, h, w = s.shape[2:]
    return t, -(-h // r), -(-w // r)


def neighbours(cp: CPModule, s: torch.Tensor) -> torch.Tensor:
    """The module's proposals for input s: int64 (N, P, k) indices into the P = T·H'·W' search points."""
    return cross_frame_knn(search_points(cp, s), s.shape[2], cp.k, cp.block_size)


@dataclass
class CPCapture:
    """One forward of a CP module inside its model: its input s (N, C, T, H, W), the last MLP layer's BatchNorm
    output before the ReLU (N·P·k, mlp[-1]) and the module's output CP(s) (N, C, T, H, W)."""

    name: str
    module: CPModule
    inputs: torch.Tensor
    last_layer: torch.Tensor
    output: torch.Tensor


@torch.inference_mode()
def capture_cp(model: nn.Module, clip: torch.Tensor, name: str | None = None) -> CPCapture:
    """Run ``model`` (eval mode) on ``clip`` and capture the CP module ``name`` (default: the first) with hooks.

    The last MLP layer's BatchNorm is a submodule called on the (N·P·k, m) pre-activations, so a hook on it sees
    every pair's activation before the ReLU and the max-pool over k.
    """
    name, cp = find_cp(model, name)
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str, pick):
        def hook(_module, args, output=None) -> None:
            seen.setdefault(key, pick(args, output).detach().clone())
        return hook

    handles = [cp.register_forward_pre_hook(keep("inputs", lambda a, o: a[0])),
               cp.register_forward_hook(keep("output", lambda a, o: o)),
               cp.norms[-1].register_forward_hook(keep("last_layer", lambda a, o: o))]
    try:
        model.eval()(clip)
    finally:
        for handle in handles:
            handle.remove()
    return CPCapture(name, cp, seen["inputs"], seen["last_layer"], seen["output"])
