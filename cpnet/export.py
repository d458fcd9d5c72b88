"""Export a model out of PyTorch for deployment — ONNX (dynamic batch) and TorchScript — and check the result
against the eager model on random input.

Both formats go through ``torch.jit.trace``: the model's Python control flow (the CP module's loops over frame
blocks and row blocks, its top-k group choices) runs once at export and is unrolled into a graph fixed to one clip
shape, T frames of S×S pixels. Only the batch size stays symbolic. The kNN becomes plain MatMul, TopK and
GatherElements nodes, so the exported graph picks the same neighbours as PyTorch (up to float ties).

ONNX uses torch's TorchScript-based exporter (``dynamo=False``), which needs only the ``onnx`` package and marks
the batch axis dynamic through ``dynamic_axes``. The torch.export-based exporter (torch's default) would also need
``onnxscript``, and a symbolic batch does not survive the kNN's memory-bounded block size, a Python int computed
from the batch.

Everything here runs on CPU, in eval mode (BatchNorm running statistics, no dropout); the model's own
training/eval state is restored afterwards. Every file is written through ``cpnet.files.atomic_output``: a crash or
a full disk mid-export leaves the previous file at the path, never part of a new one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cpnet.files import atomic_output

__all__ = ["DEFAULT_OPSET", "FORMATS", "example_input", "export_onnx", "export_torchscript",
           "verify_onnx", "verify_torchscript", "rounding_sensitivity", "require"]

# Opset 17 (ONNX 1.12, 2022): every op the models need (TopK with a dynamic k, GatherElements, ScatterND) exists
# since opset 11–13, and 17 is read by every ONNX Runtime since 1.12 and by TensorRT 8.6, so it is the most widely
# loadable choice that is still recent. The TorchScript-based exporter writes opsets 7 to 20.
DEFAULT_OPSET = 17
FORMATS = ("onnx", "torchscript")  # graphs; weights alone: cpnet.models.save_safetensors
INPUT_NAME, OUTPUT_NAME, BATCH_AXIS = "clip", "logits", "batch"

# Which packages each step needs, and the pip line that installs them (also the `export` extra of cpnet).
_PACKAGES = {"onnx export": ("onnx",), "onnx verification": ("onnx", "onnxruntime")}


# torch >= 2.5 takes ``dynamo`` (and 2.9 made the torch.export-based exporter the default); before, the
# TorchScript-based exporter is the only one and the argument does not exist.
_TORCHSCRIPT_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def require(step: str) -> None:
    """Raise ModuleNotFoundError naming the packages to install when ``step`` (a key of ``_PACKAGES``) lacks one."""
    missing = [name for name in _PACKAGES[step] if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"{step} needs the package(s) {', '.join(missing)}: pip install {' '.join(missing)} "
            f"(or pip install 'cpnet[export]')",
            name=missing[0],
        )


def example_input(model: nn.Module, frames: int, size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A reproducible random clip (batch, C_in, frames, size, size) for tracing or checking ``model``."""
    for name, value in (("frames", frames), ("size", size), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    devices = {t.device.type for t in (*model.parameters(), *model.buffers())}
    if devices - {"cpu"}:
        raise ValueError(f"export and its check run on the CPU; the model is on {', '.join(sorted(devices))}: "
                         "move it with model.cpu() first")
    channels = getattr(model, "in_channels", 3)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, frames, size, size, generator=generator)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode without gradients, each submodule's training flag restored on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, flag in flags:
            m.train(flag)


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the warnings every export of these models raises by design: shape checks turned into constants (the
    graph is fixed to one clip shape on purpose), the legacy-exporter notice (chosen on purpose, see above) and
    torch.jit's deprecation notices (TorchScript is the format the caller asked for)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\._internal\.")
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        yield


def _check_traceable(model: nn.Module, clip: torch.Tensor) -> None:
    """Run ``model`` once eagerly so an input it cannot take fails with its own message, naming the export size."""
    try:
        model(clip)
    except ValueError as e:
        _, _, frames, size, _ = clip.shape
        raise ValueError(f"cannot export at {frames} frames of {size}x{size}: {e}") from None


def export_onnx(model: nn.Module, path: str | Path, frames: int, size: int, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as an ONNX graph taking ``clip`` (batch, C_in, frames, size, size) float32 to ``logits``
    (batch, K), the batch axis dynamic. A file at ``path`` is replaced only by a complete export (``atomic_output``).
    Returns the path."""
    require("onnx export")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 11 <= opset <= 20:
        raise ValueError(f"opset must be an integer in 11..20 (the TorchScript-based exporter's range), got {opset!r}")
    path = Path(path)
    clip = example_input(model, frames, size)
    with _eval_mode(model), _quiet_tracing():
        _check_traceable(model, clip)
        with atomic_output(path) as tmp:
            torch.onnx.export(model, (clip,), str(tmp), **_TORCHSCRIPT_EXPORTER, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}})
    return path


def export_torchscript(model: nn.Module, path: str | Path, frames: int, size: int) -> Path:
    """Write ``model`` traced at clips of (·, C_in, frames, size, size) as a TorchScript archive (``torch.jit.load``
    reads it without cpnet); the batch size stays free. A file at ``path`` is replaced only by a complete export
    (``atomic_output``). Returns the path."""
    path = Path(path)
    clip = example_input(model, frames, size)
    with _eval_mode(model), _quiet_tracing():
        _check_traceable(model, clip)
        # check_trace re-runs and compares graphs; verify_torchscript compares outputs, which is what matters.
        traced = torch.jit.trace(model, (clip,), check_trace=False)
        with atomic_output(path) as tmp:
            torch.jit.save(traced, str(tmp))
    return path


def _max_abs_diff(model: nn.Module, run, frames: int, size: int, batch_sizes: Sequence[int], seed: int) -> float:
    """Largest |run(clip) − model(clip)| over random clips of each batch size; ``run`` maps a tensor to an array."""
    if not batch_sizes:
        raise ValueError("batch_sizes must list at least one batch size")
    worst = 0.0
    with _eval_mode(model):
        for i, batch in enumerate(batch_sizes):
            clip = example_input(model, frames, size, batch, seed=seed + i)
            expected = model(clip).numpy()  # (batch, K)
            got = np.asarray(run(clip))
            if got.shape != expected.shape:
                raise ValueError(f"exported model returned shape {got.shape} for batch {batch}, "
                                 f"PyTorch {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def verify_onnx(model: nn.Module, path: str | Path, frames: int, size: int, batch_sizes: Sequence[int] = (1, 2),
                seed: int = 1) -> float:
    """Check the ONNX file at ``path`` (ONNX checker) and run it in ONNX Runtime on CPU against ``model`` in eval
    mode; returns the max abs difference of the logits over random clips of each of ``batch_sizes``."""
    require("onnx verification")
    import onnx
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    onnx.checker.check_model(str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(clip: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: clip.numpy()})[0]

    return _max_abs_diff(model, run, frames, size, batch_sizes, seed)


def verify_torchscript(model: nn.Module, path: str | Path, frames: int, size: int,
                       batch_sizes: Sequence[int] = (1, 2), seed: int = 1) -> float:
    """Reload the TorchScript archive at ``path`` and compare it with ``model`` in eval mode; returns the max abs
    difference of the logits over random clips of each of ``batch_sizes``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file not found: {path}")
    with _quiet_tracing():
        loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(clip: torch.Tensor) -> np.ndarray:
        return loaded(clip).numpy()

    return _max_abs_diff(model, run, frames, size, batch_sizes, seed)



def rounding_sensitivity(model: nn.Module, frames: int, size: int, batch_sizes: Sequence[int] = (1, 2),
                         seed: int = 1, relative: float = 1e-6, trials: int = 2) -> float:
    """How far the eager model's own logits move when its input changes at float32 rounding level: the largest
    |model(x·(1 + relative·ε)) − model(x)| over ``trials`` draws of ε ~ N(0, 1), on the clips ``verify_*`` use.

    Why: a CP model's kNN is discontinuous — two near-tied distances swap neighbours under a rounding change —
    so at full size an export can differ from PyTorch by more than a fixed tolerance while being exactly as
    faithful as float32 allows (measured: cpnet_r18 at 8×224², ONNX Runtime 1.5–3.6e-4 apart, PyTorch itself
    1.8–3.9e-4 under this perturbation). A real export error shows far above this floor.
    """
    generator = torch.Generator().manual_seed(seed)

    def perturbed(clip: torch.Tensor) -> np.ndarray:
        noise = torch.randn(clip.shape, generator=generator)
        return model(clip * (1 + relative * noise)).numpy()

    return max(_max_abs_diff(model, perturbed, frames, size, batch_sizes, seed) for _ in range(trials))
