"""Where and in what precision a model runs: the device a setting names, and mixed precision around a forward.

The training loop, evaluation, predict and the benchmarks all take their device and autocast from here, so none of
them imports another to get them. This module sits near the bottom of the package: it imports torch and nothing of
cpnet.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

__all__ = ["AMP_DTYPES", "DEVICES", "autocast", "local_device", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")  # what train.device and --device accept
AMP_DTYPES = ("float16", "bfloat16")  # train.amp_dtype


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """The device a ``DEVICES`` name means for this process: ``auto`` picks CUDA when available; ``cuda`` becomes
    this process's GPU under torchrun (the one ``cpnet.engine.distributed.session`` selected). Asking for CUDA
    without one is an error naming ``setting``."""
    if name not in DEVICES:
        raise ValueError(f"{setting}={name!r}; expected one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting}=cuda but no CUDA device is available; use auto or cpu")
    return local_device(torch.device(name))


def local_device(device: torch.device) -> torch.device:
    """``cuda`` becomes this process's GPU (the one a process group selected); other devices are unchanged."""
    if device.type == "cuda" and device.index is None and dist.is_available() and dist.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def autocast(device: torch.device, amp: bool, dtype: str = "float16") -> contextlib.AbstractContextManager:
    """``dtype`` autocast on CUDA when ``amp``; a no-op elsewhere (CPU runs stay float32)."""
    if dtype not in AMP_DTYPES:
        raise ValueError(f"unknown mixed-precision dtype {dtype!r}; expected one of {', '.join(AMP_DTYPES)}")
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return contextlib.nullcontext()
