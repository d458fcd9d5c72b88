"""Runs under torchrun: the process group from the environment, DDP wrapping, samplers and the few collectives.

``torchrun`` (directly, or under SLURM as ``srun torchrun``) starts one process per device and gives each
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`session` opens the default
process group from them (NCCL on CUDA, gloo on CPU) and closes it afterwards. Without those variables every helper
here is the single-process identity, so the engine runs the same code either way and a plain run is unchanged.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset, DistributedSampler, Sampler

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The torchrun variables of ``environ`` (default ``os.environ``); None when RANK and WORLD_SIZE are unset."""
    environ = os.environ if environ is None else environ
    if "RANK" not in environ and "WORLD_SIZE" not in environ:
        return None
    missing = [name for name in TORCHRUN_VARS if name not in environ]
    if missing:
        raise ValueError(f"incomplete torchrun environment: {', '.join(missing)} not set (launch with torchrun, "
                         "which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)")
    try:
        env = LaunchEnv(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ["LOCAL_RANK"]))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                         f"{environ['RANK']!r}, {environ['WORLD_SIZE']!r}, {environ['LOCAL_RANK']!r}") from None
    if not (env.world_size >= 1 and 0 <= env.rank < env.world_size and env.local_rank >= 0):
        raise ValueError(f"need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got RANK={env.rank} "
                         f"WORLD_SIZE={env.world_size} LOCAL_RANK={env.local_rank}")
    return env


@contextlib.contextmanager
def session(device: str = "auto", timeout: timedelta | None = None) -> Iterator[LaunchEnv | None]:
    """Open the default process group for a torchrun launch and destroy it on exit; otherwise do nothing.

    ``device`` is ``train.device``: NCCL when it resolves to CUDA (each process then uses ``cuda:LOCAL_RANK``),
    gloo on CPU. ``timeout`` bounds every collective (PyTorch's default when None). Re-entrant: inside an open group
    it only yields.
    """
    env = launch_env()
    if env is None or dist.is_initialized():
        yield env
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        if env.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} CUDA devices: "
                             "--nproc_per_node must not exceed the GPUs of a node")
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    try:
        yield env
        dist.barrier()  # no rank tears gloo down while another still talks to it
    finally:
        # DDP wrappers and their reducers hold the group in reference cycles; left to the interpreter's exit, gloo's
        # threads were destroyed mid-teardown ("terminate called without an active exception", SIGABRT).
        gc.collect()
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0, or a single process: the one that logs, shows progress and writes files."""
    return get_rank() == 0


def main_only(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on rank 0 (or in a single process); a log that says nothing on the other ranks."""
    return log if is_main() else _silent


def _silent(message: str) -> None:
    """The log of ranks other than 0."""


def _comm_device() -> torch.device:
    """NCCL only moves CUDA tensors; gloo moves CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def sum_over_ranks(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64; the values themselves in a single process)."""
    if get_world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def all_gather_rows(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Concatenate, in rank order, every rank's rows of each 1-D or 2-D array; ranks may hold any number of rows.

    All ranks pass arrays of the same dtypes; a rank without rows may give a 2-D array zero columns wide. Rows are
    padded to the longest rank for ``all_gather`` and the padding is cut off again, so nothing is duplicated.
    """
    world = get_world_size()
    if world == 1:
        return list(arrays)
    device = _comm_device()
    # per rank: [rows, width of each array] (a 1-D array has width 0)
    meta = torch.tensor([len(arrays[0])] + [a.shape[1] if a.ndim == 2 else 0 for a in arrays], device=device)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta)
    table = torch.stack(metas).cpu()  # (world, 1 + len(arrays))
    counts, rows = table[:, 0].tolist(), int(table[:, 0].max())
    out = []
    for j, a in enumerate(arrays):
        width = int(table[:, j + 1].max())
        shape = (rows, width) if a.ndim == 2 else (rows,)
        padded = torch.zeros(shape, dtype=torch.from_numpy(a[:0]).dtype, device=device)  # (rows[, width])
        if len(a):
            padded[: len(a)] = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        out.append(torch.cat([p[:n] for p, n in zip(parts, counts)]).cpu().numpy())  # (sum of counts[, width])
    return out


def wrap_model(model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``device``) in a process group; ``model`` otherwise.

    ``sync_bn`` turns every BatchNorm into SyncBatchNorm first (statistics over the global batch, for small
    per-GPU batches); PyTorch implements it for GPUs only, so it is refused on CPU.
    """
    if not dist.is_initialized():
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU); "
                             "set train.sync_bn=false")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (its state dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def train_sampler(dataset: Dataset, seed: int) -> DistributedSampler:
    """This rank's shuffled share of ``dataset``; reshuffled by ``set_epoch`` (the loop calls it every epoch).

    Each epoch is one permutation of the whole set (seeded by ``seed`` and the epoch) cut into ``world_size``
    disjoint shares; the last few indices repeat to even the shares out, which is harmless for training.
    """
    return DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=True, seed=seed)


class ShardBatchSampler(Sampler[list[int]]):
    """Evaluation batches for one rank: the single-process batches ``[0, b), [b, 2b), …`` dealt out round-robin.

    No index is padded or repeated, so gathered results count every item exactly once; and every item is computed
    in the same batch as in a single-process run, so its outputs are bit-identical to that run's.
    """

    def __init__(self, size: int, batch_size: int, rank: int | None = None, world_size: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size, self.batch_size = size, batch_size
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {self.rank} of {self.world_size}")

    def __iter__(self) -> Iterator[list[int]]:
        starts = range(self.rank * self.batch_size, self.size, self.world_size * self.batch_size)
        for start in starts:
            yield list(range(start, min(start + self.batch_size, self.size)))

    def __len__(self) -> int:
        batches = -(-self.size // self.batch_size)
        return len(range(self.rank, batches, self.world_size))
