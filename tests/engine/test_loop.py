"""Engine: optimiser groups, schedules, the loop (loss decreases, skips, NaN stop), checkpoints and exact resume.

Uses a tiny in-test dataset (random clips whose label is the sign of their mean over time) and a tiny model, so
it depends on neither the data pipeline nor the model zoo.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cpnet.app.runfolder import BEST, LAST, RunFolder
from cpnet.app.train import fit_in
from cpnet.engine import (
    LRSchedule,
    NonFiniteLossError,
    TrainOptions,
    atomic_save,
    build_optimizer,
    check_compatible,
    load_checkpoint,
    parameter_groups,
)


def fit(model, opt, sched, train, val, *, out_dir, resume=False, **kw):
    """The engine's fit keeping each epoch in the run folder ``out_dir``, as ``cpnet train`` does."""
    return fit_in(RunFolder(out_dir), model, opt, sched, train, val, resume=resume, **kw)


class ToyClips(Dataset):
    """(3, T, 4, 4) clips; class 1 when the clip brightens over time. Items listed in ``bad`` are unreadable."""

    def __init__(self, n: int = 48, bad: tuple[int, ...] = (), nan_epoch: int | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        ramp = torch.linspace(-1, 1, 4)[None, :, None, None]  # (1, T, 1, 1)
        sign = (2 * self.labels - 1).float()[:, None, None, None, None]  # (n, 1, 1, 1, 1)
        self.clips = torch.randn(n, 3, 4, 4, 4, generator=g) * 0.5 + sign * ramp
        self.bad, self.nan_epoch = set(bad), nan_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if i in self.bad:
            return None
        if self.nan_epoch is not None and self.epoch >= self.nan_epoch:
            return torch.full_like(self.clips[i], float("nan")), int(self.labels[i]), i
        return self.clips[i], int(self.labels[i]), i


def collate(batch):
    good = [b for b in batch if b is not None]
    if not good:
        return torch.zeros(0, 3, 4, 4, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0), len(batch)
    clips, labels, index = zip(*good)
    return torch.stack(clips), torch.tensor(labels), torch.tensor(index), len(batch) - len(good)


class ToyNet(nn.Module):
    def __init__(self, bn: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (2, 1, 1))
        self.bn = nn.BatchNorm3d(8) if bn else nn.Identity()
        self.drop = nn.Dropout(0.2)  # consumes the global RNG: exact resume must restore it
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4))  # (N, 8)
        return self.fc(self.drop(x))


def make_run(tmp_path, epochs=3, lr=0.1, bad=(), max_bad=0.0, accumulate=1, name="run", nan_epoch=None):
    torch.manual_seed(0)
    data = ToyClips(bad=bad, nan_epoch=nan_epoch)
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=3)
    train = DataLoader(data, batch_size=8, sampler=sampler, collate_fn=collate)
    val = DataLoader(ToyClips(), batch_size=16, collate_fn=collate)
    model = ToyNet()
    opt = build_optimizer(model, lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = LRSchedule(opt, base_lr=lr, steps_per_epoch=math.ceil(len(train) / accumulate), epochs=epochs,
                       kind="cosine", warmup_epochs=0.5)
    opts = TrainOptions(epochs=epochs, accumulate=accumulate, label_smoothing=0.1, max_bad_fraction=max_bad,
                        progress=False)
    meta = {"model_name": "toy", "num_classes": 2, "class_names": ["down", "up"], "config": {"a": [1, 2]}}
    kwargs = dict(device=torch.device("cpu"), options=opts, out_dir=tmp_path / name, meta=meta, log=lambda s: None)
    return model, opt, sched, train, val, kwargs


def test_val_every_validates_every_nth_and_the_last_epoch(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=3)
    kw["options"] = TrainOptions(epochs=3, progress=False, val_every=2)
    summary = fit(model, opt, sched, train, val, **kw)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ["val_top1" in r for r in records] == [False, True, True]
    # Only validated epochs compete for "best": before the first validation there is none.
    assert "best_top1" not in records[0]
    assert summary["best_top1"] == max(records[1]["val_top1"], records[2]["val_top1"])
    assert load_checkpoint(tmp_path / "run" / BEST)["epoch"] in (2, 3)


def test_the_epoch_line_shows_the_lr_of_the_first_and_last_step(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=2)  # warm-up over half of epoch 1, then cosine
    lines = []
    kw["log"] = lines.append
    fit(model, opt, sched, train, val, **kw)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = sched.steps_per_epoch
    assert [(r["lr"], r["lr_last"]) for r in records] == [(sched.lr_at(0), sched.lr_at(steps - 1)),
                                                          (sched.lr_at(steps), sched.lr_at(2 * steps - 1))]
    assert records[0]["lr"] < records[0]["lr_last"]  # warm-up: the epoch ran mostly above its first lr
    first = next(line for line in lines if line.startswith("epoch 1/"))
    assert f"lr {records[0]['lr']:.3g}→{records[0]['lr_last']:.3g}" in first


def test_parameter_groups_exclude_norm_and_bias_by_default():
    model = ToyNet()
    groups = parameter_groups(model, weight_decay=0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model.conv.weight), id(model.fc.weight)}
    assert groups[1]["weight_decay"] == 0.0
    assert len(parameter_groups(model, 0.1, decay_norm_and_bias=True)) == 1


def test_schedules_warmup_step_cosine():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    step = LRSchedule(opt, base_lr=1.0, steps_per_epoch=10, epochs=6, kind="step", step_size=2, gamma=0.1,
                      warmup_epochs=1, warmup_start_factor=0.1)
    assert step.lr_at(0) == pytest.approx(0.1) and step.lr_at(5) == pytest.approx(0.55)
    assert step.lr_at(10) == 1.0 and step.lr_at(20) == pytest.approx(0.1) and step.lr_at(59) == pytest.approx(0.01)
    cos = LRSchedule(opt, base_lr=1.0, steps_per_epoch=10, epochs=2, kind="cosine", min_lr=0.1)
    assert cos.lr_at(0) == 1.0 and cos.lr_at(19) == pytest.approx(0.1)
    assert all(cos.lr_at(s) >= cos.lr_at(s + 1) for s in range(19))
    cos.step()
    assert opt.param_groups[0]["lr"] == cos.lr_at(1)
    with pytest.raises(ValueError, match="linear"):
        LRSchedule(opt, base_lr=1.0, steps_per_epoch=1, epochs=1, kind="linear")


def test_two_epochs_lower_the_loss_and_write_run_folder(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=2)
    summary = fit(model, opt, sched, train, val, **kw)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["train_loss"] < records[0]["train_loss"]
    assert {"lr", "val_top1", "val_top5", "skipped", "data_seconds", "step_seconds"} <= set(records[0])
    assert summary["epochs"] == 2 and summary["best_top1"] == max(r["val_top1"] for r in records)
    ckpt = load_checkpoint(tmp_path / "run" / LAST)
    assert ckpt["epoch"] == 2 and ckpt["class_names"] == ["down", "up"] and ckpt["config"] == {"a": [1, 2]}
    assert {"optimizer", "schedule", "scaler", "rng", "model"} <= set(ckpt)
    assert (tmp_path / "run" / BEST).is_file()


def test_resumed_run_ends_with_exactly_the_uninterrupted_parameters(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, name="full")
    fit(model, opt, sched, train, val, **kw)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    class Crash(Exception):
        pass

    def crash_after_first(line):  # the epoch line is logged once the epoch is kept
        if line.startswith("epoch 1/"):
            raise Crash

    model, opt, sched, train, val, kw = make_run(tmp_path, name="cut")
    kw["log"] = crash_after_first
    with pytest.raises(Crash):
        fit(model, opt, sched, train, val, **kw)
    torch.manual_seed(123)  # a fresh process would have other RNG states: resume must restore them
    model, opt, sched, train, val, kw = make_run(tmp_path, name="cut")
    torch.randn(100)
    stale = tmp_path / "cut" / f".{LAST}.tmp4242"  # as left by a process killed mid-write
    stale.write_bytes(b"partial")
    stale_metrics = tmp_path / "cut" / ".metrics.jsonl.tmp-0123456789abcdef"  # cpnet.files' temporary
    stale_metrics.write_text('{"epoch": 9}\n')
    fit(model, opt, sched, train, val, resume=True, **kw)
    assert not stale.exists()
    assert not stale_metrics.exists()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    torch.manual_seed(0)
    a, b = ToyNet(bn=False), ToyNet(bn=False)  # without BN, two half batches give exactly the big batch's gradient
    b.load_state_dict(a.state_dict())
    a.drop.p = b.drop.p = 0.0
    data = ToyClips(n=32)
    for model, batch, acc in ((a, 16, 1), (b, 8, 2)):
        loader = DataLoader(data, batch_size=batch, collate_fn=collate)
        opt = build_optimizer(model, lr=0.1)
        sched = LRSchedule(opt, base_lr=0.1, steps_per_epoch=2, epochs=1, kind="constant")
        fit(model, opt, sched, loader, None, device=torch.device("cpu"), out_dir=tmp_path / str(acc),
            options=TrainOptions(epochs=1, accumulate=acc, progress=False), meta={}, log=lambda s: None)
        assert load_checkpoint(tmp_path / str(acc) / LAST)["schedule"] == {"last_step": 2}
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, msg=name)
    assert not torch.equal(a.fc.weight, ToyNet(bn=False).fc.weight)


def test_skipped_clips_are_counted_and_bounded(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=1, bad=(1, 5), max_bad=0.1)
    summary = fit(model, opt, sched, train, val, **kw)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["skipped"] == 2 and summary["skipped"] == 2 and record["train_samples"] == 46
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=1, bad=(1, 5, 7), max_bad=0.05, name="r2")
    with pytest.raises(ValueError, match="3 clips could not be read"):
        fit(model, opt, sched, train, val, **kw)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=2, nan_epoch=1)
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 2, batch 1"):
        fit(model, opt, sched, train, val, **kw)
    kept = load_checkpoint(tmp_path / "run" / LAST)
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_checkpoint_safety(tmp_path, monkeypatch):
    path = atomic_save({"format": "cpnet-checkpoint", "version": 1, "model_name": "toy", "num_classes": 2},
                       tmp_path / "c.pt")
    check_compatible(load_checkpoint(path), "toy", 2)
    with pytest.raises(ValueError, match="model 'toy'.*and 2 classes"):
        check_compatible(load_checkpoint(path), "cpnet_r18", 400)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a cpnet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt is not a loadable"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        atomic_save({"format": "x"}, path)
    assert load_checkpoint(path)["model_name"] == "toy"  # the previous file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "junk.pt", "other.pt"]  # no temporary left


def test_summarize_counts_each_video_once_and_reports_unreadable_videos():
    from cpnet.engine.evaluation import ViewLogits, summarize

    # 3 videos x 2 views; every view of video 1 was unreadable (skip_bad), so it is absent.
    logits = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 1.0]], dtype=np.float32)
    views = ViewLogits(logits, labels=np.array([0, 0, 0, 0]), video_index=np.array([0, 0, 2, 2]),
                       view_index=np.array([0, 1, 0, 1]))
    result = summarize(views, num_videos=3, class_names=["a", "b"])
    s = result.summary
    assert s["num_videos"] == 2 and s["skipped_videos"] == 1 and s["num_views"] == 4
    assert s["video_top1"] == 0.5 and s["clip_top1"] == 0.5
    assert result.videos.tolist() == [0, 2] and result.video_scores.shape == (2, 2)
    assert s["per_class_accuracy"] == {"a": 0.5, "b": None}
    unlabelled = summarize(ViewLogits(logits, np.full(4, -1), views.video_index, views.view_index), 3, ["a", "b"])
    assert unlabelled.summary["labelled"] is False and unlabelled.confusion is None


def test_window_of_unreadable_clips_skips_the_step_with_an_enabled_scaler(tmp_path):
    # With AMP on, a GradScaler that saw no backward refuses to step; a batch with no readable clip must not crash
    # (CPU scaler here, enabled, so the CUDA-only AMP path is exercised without a GPU).
    from cpnet.engine import train_one_epoch

    model, opt, sched, train, val, kw = make_run(tmp_path, epochs=1, bad=tuple(range(48)), max_bad=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_one_epoch(model, train, opt, sched, device=torch.device("cpu"), options=kw["options"],
                            scaler=scaler, epoch=0)
    assert stats["skipped"] == 48 and stats["train_samples"] == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sched.state_dict()["last_step"] == len(train)  # the schedule still advanced
