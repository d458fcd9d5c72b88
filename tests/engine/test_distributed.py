"""Distributed training and evaluation on CPU with gloo: 2 processes on loopback, tiny models, bounded in time.

The end-to-end tests launch the real command line under torchrun (``python -m torch.distributed.run``) on a tiny
synthetic set; the collective helpers run in 2 processes started with ``torch.multiprocessing``. A GPU case (NCCL,
SyncBatchNorm) runs where CUDA is available and skips elsewhere.
"""

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import yaml
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cpnet.app.runfolder import LAST
from cpnet.app.trained import load_trained
from cpnet.cli import main
from cpnet.engine import distributed
from cpnet.engine.checkpoint import load_checkpoint, load_model_state, make_checkpoint
from cpnet.engine.distributed import ShardBatchSampler, launch_env
from cpnet.engine.optim import linear_scaled_lr
from tests.helpers import ROOT

TIMEOUT = 120  # seconds for one torchrun launch; a hang fails instead of blocking the suite
TINY = {
    "name": "tiny_ddp",
    "model": {"name": "c3d_r18", "options": {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1, "dropout": 0.0}},
    "data": {"dataset": "synthetic", "num_frames": 2, "size": 16, "short_side": 16, "workers": 0, "flip": False,
             "synthetic": {"num_train": 90, "num_val": 18, "num_frames": 4, "size": 20, "seed": 1}},
    "optim": {"lr": 0.05, "schedule": "constant", "scale_lr": True},
    "train": {"epochs": 3, "batch_size": 9, "threads": 1},
    "eval": {"batch_size": 10},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node nproc -m cpnet ARGS`` on loopback."""
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "cpnet", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 2-process training run: (run folder, torchrun result)."""
    base = tmp_path_factory.mktemp("ddp")
    config = base / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "root": str(base / "data")}}))
    out = base / "run"
    result = torchrun("train", "--config", str(config), "--out", str(out), "--no-progress")
    return out, result


def test_two_process_training_lowers_the_loss_and_writes_one_run_folder(ddp_run):
    out, result = ddp_run
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_best.pt", "checkpoint_last.pt", "config.yaml",
                                                     "labels.json", "metrics.jsonl"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]  # rank 1 wrote nothing
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert all(r["train_samples"] == 90 and r["val_samples"] == 18 for r in records)  # summed over both ranks
    assert all(r["lr"] == pytest.approx(0.1) for r in records)  # 0.05 x global batch 18 / one process's 9
    assert result.stdout.count("done: 3 epochs") == 1 and result.stdout.count("epoch 3/3") == 1  # rank 0 prints
    assert "2 processes" in result.stdout and "global batch 18" in result.stdout


def test_checkpoint_loads_in_one_process_and_resumes_at_another_world_size(ddp_run, tmp_path):
    out, _ = ddp_run
    ckpt = torch.load(out / LAST, weights_only=True)
    assert ckpt["epoch"] == 3 and not any(k.startswith("module.") for k in ckpt["model"])
    model, _, cfg = load_trained(out / LAST, torch.device("cpu"))
    assert cfg.name == "tiny_ddp" and model(torch.randn(2, 3, 2, 16, 16)).shape == (2, 9)
    copy = tmp_path / "run"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert main(["train", "--resume", "--out", str(copy), "--no-progress", "--set", "train.epochs=4"]) == 0
    resumed = load_checkpoint(copy / LAST)
    steps_one_process = 90 // 9  # 10 full batches of 9 in one process, against 5 per rank with two
    assert resumed["epoch"] == 4 and resumed["schedule"]["last_step"] == 4 * steps_one_process
    assert json.loads((copy / "metrics.jsonl").read_text().splitlines()[-1])["lr"] == pytest.approx(0.05)


def test_two_process_evaluation_equals_one_process(ddp_run, tmp_path):
    out, _ = ddp_run
    args = ["--clips", "2", "--crops", "3", "--set", "eval.batch_size=10"]  # 108 views: 6 + 5 uneven batches
    torchrun("eval", "--run-dir", str(out), "--out", str(tmp_path / "two"), *args)
    assert main(["eval", "--run", str(out), "--out", str(tmp_path / "one"), *args]) == 0
    one, two = np.load(tmp_path / "one" / "predictions.npz"), np.load(tmp_path / "two" / "predictions.npz")
    assert one.files == two.files and len(one["logits"]) == 108
    for key in one.files:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    assert json.loads((tmp_path / "one" / "eval.json").read_text()) == json.loads(
        (tmp_path / "two" / "eval.json").read_text())


# ----------------------------------------------------------------------------------------------------------------
# collectives in 2 spawned processes


class Views(Dataset):
    """``videos x views`` random clips as ViewDataset items ``(clip, label, video, view)``."""

    def __init__(self, videos: int, views: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.clips = torch.randn(videos * views, 3, 2, 4, 4, generator=g)
        self.views = views

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        return self.clips[i], i // self.views % 3, i // self.views, i % self.views


class Clips(Dataset):
    """Training clips of one rank; NaN clips make that rank's loss non-finite."""

    def __init__(self, nan: bool) -> None:
        self.clips = torch.full((8, 3, 2, 4, 4), float("nan")) if nan else torch.randn(8, 3, 2, 4, 4)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        return self.clips[i], i % 3, i


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Flatten(), nn.Linear(4 * 2 * 4 * 4, 3))


def _check_gather(rank: int) -> None:
    from cpnet.engine.evaluation import collect_view_logits

    model, data, cpu = tiny_net().eval(), Views(videos=5, views=3), torch.device("cpu")  # 15 views
    for batch in (4, 16):  # 4 batches dealt 2 + 2; one batch, so rank 1 has none
        with torch.no_grad():  # what one process computes, batch by batch
            reference = torch.cat([model(c) for c, *_ in DataLoader(data, batch_size=batch)]).numpy()  # (15, 3)
        loader = DataLoader(data, batch_sampler=ShardBatchSampler(len(data), batch))
        views = collect_view_logits(model, loader, device=cpu)
        assert np.array_equal(views.logits, reference), batch  # the single-process batches: bit-identical
        assert views.video_index.tolist() == [i // 3 for i in range(15)] and views.view_index.tolist() == [0, 1, 2] * 5
    padded = DistributedSampler(data, shuffle=False)  # 16 indices: one view twice
    views = collect_view_logits(model, DataLoader(data, batch_size=4, sampler=padded), device=cpu)
    assert len(views.logits) == 15 and np.allclose(views.logits, reference, atol=1e-6)


def _check_training_agreement(rank: int) -> None:
    from cpnet.engine.loop import NonFiniteLossError, TrainOptions, train_one_epoch
    from cpnet.engine.optim import LRSchedule

    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="sync_bn=true needs CUDA"):
        distributed.wrap_model(tiny_net(), cpu, sync_bn=True)
    model = distributed.wrap_model(tiny_net(), cpu)
    ckpt = make_checkpoint(model, epoch=1, meta={})
    assert not any(k.startswith("module.") for k in ckpt["model"])
    load_model_state(tiny_net(), ckpt["model"])
    assert distributed.sum_over_ranks([rank, 1]) == [1.0, 2.0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = LRSchedule(opt, base_lr=0.1, steps_per_epoch=2, epochs=1, kind="constant")
    loader = DataLoader(Clips(nan=rank == 1), batch_size=4)
    expected = "loss is nan" if rank == 1 else "not finite on another rank"
    with pytest.raises(NonFiniteLossError, match=expected):  # both ranks stop at the same step: no hang
        train_one_epoch(model, loader, opt, sched, device=cpu, options=TrainOptions(epochs=1, progress=False),
                        scaler=torch.amp.GradScaler("cuda", enabled=False), epoch=0)


def _worker(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    with distributed.session("cpu", timeout=timedelta(seconds=30)) as env:
        assert env.rank == rank and distributed.get_world_size() == world
        assert distributed.is_main() == (rank == 0)
        _check_gather(rank)
        _check_training_agreement(rank)
    assert not torch.distributed.is_initialized()


def test_collectives_in_two_processes():
    mp.spawn(_worker, args=(2, free_port()), nprocs=2, join=True)


# ----------------------------------------------------------------------------------------------------------------
# single-process pieces


def test_shard_batch_sampler_deals_the_single_process_batches_once():
    single = list(ShardBatchSampler(23, 4, rank=0, world_size=1))
    assert single == [list(range(i, min(i + 4, 23))) for i in range(0, 23, 4)]
    shards = [list(ShardBatchSampler(23, 4, rank=r, world_size=3)) for r in range(3)]
    assert [len(ShardBatchSampler(23, 4, rank=r, world_size=3)) for r in range(3)] == [2, 2, 2]
    assert sorted(b[0] for shard in shards for b in shard) == [b[0] for b in single]
    assert sorted(i for shard in shards for b in shard for i in b) == list(range(23))
    assert list(ShardBatchSampler(3, 4, rank=1, world_size=2)) == []
    with pytest.raises(ValueError, match="rank 2 of 2"):
        ShardBatchSampler(3, 4, rank=2, world_size=2)


def test_training_sampler_reshuffles_every_epoch():
    sampler = distributed.train_sampler(list(range(20)), seed=3)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] != orders[1] and orders[0] == orders[2] and sorted(orders[1]) == list(range(20))


def test_launch_env_reads_torchrun_variables():
    assert launch_env({}) is None
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    assert launch_env(env) == distributed.LaunchEnv(rank=3, world_size=8, local_rank=1)
    with pytest.raises(ValueError, match="MASTER_PORT not set"):
        launch_env({k: v for k, v in env.items() if k != "MASTER_PORT"})
    with pytest.raises(ValueError, match="RANK < WORLD_SIZE"):
        launch_env({**env, "RANK": "8"})
    with distributed.session("cpu") as outside:  # no torchrun variables: a plain process, no group
        assert outside is None and not torch.distributed.is_initialized()


def test_linear_scaling_rule():
    assert linear_scaled_lr(0.01, 256, 32) == pytest.approx(0.08)
    assert linear_scaled_lr(0.1, 8, 32) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="reference 0"):
        linear_scaled_lr(0.1, 8, 0)


@pytest.mark.cuda  # NCCL, SyncBatchNorm
def test_one_gpu_process_with_nccl_sync_bn_and_amp(tmp_path):
    config = tmp_path / "gpu.yaml"
    cfg = {**TINY, "data": {**TINY["data"], "root": str(tmp_path / "data")},
           "train": {**TINY["train"], "epochs": 1, "device": "cuda", "sync_bn": True, "amp": True}}
    config.write_text(yaml.safe_dump(cfg))
    torchrun("train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress", nproc=1)
    model, ckpt, _ = load_trained(tmp_path / "run" / LAST, torch.device("cpu"))
    assert any(k.endswith("running_var") for k in ckpt["model"]) and not any(k.startswith("module.")
                                                                             for k in ckpt["model"])
