"""`cpnet visualize`: hooks capture a CP module faithfully, channel wins sum to the module's width, CLI output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cpnet
from cpnet.app.config import config_from_dict, config_to_dict
from cpnet.cli import main
from cpnet.engine.checkpoint import atomic_save, make_checkpoint
from cpnet.ops.video import pair_features, point_coords
from cpnet.reports.cp_hooks import CPCapture, capture_cp, neighbours, search_points
from cpnet.reports.tables import read_csv
from cpnet.reports.visualize import channel_wins, correspondence_rows, correspondences, point_index
from tests.data.media import write_frame_folder

OPTIONS = {"width": 4, "layers": [1, 1, 1, 1], "stem_stride": 1, "cp_at": {"layer2": [0]}, "cp_k": 4,
           "cp_init_gamma": 1.0, "dropout": 0.0}


def tiny_model(**extra) -> torch.nn.Module:
    torch.manual_seed(0)
    model = cpnet.create_model("cpnet_r18", num_classes=3, **{**OPTIONS, **extra})
    for m in model.modules():  # non-trivial BN statistics, so the eval-mode MLP is not the identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_channel_wins_by_hand():
    # one point, k = 3 proposals, 5 channels (pre-ReLU): proposal 0 wins channels 0 and 3, proposal 2 wins 1.
    # Channel 2 (max −0.5) and channel 4 (max exactly 0) are 0 after the ReLU: activated by no proposal, counted for
    # none, although an arg-max before the ReLU would hand them to proposals 2 and 0.
    pre = torch.tensor([[5.0, 0.0, -1.0, 9.0, 0.0],
                        [1.0, 1.0, -3.0, 2.0, -1.0],
                        [0.0, 4.0, -0.5, 1.0, 0.0]])  # (k, m)
    assert channel_wins(pre, 1, 1, 3).tolist() == [[[2, 0, 1]]]
    assert channel_wins(-pre.abs() - 1, 1, 1, 3).tolist() == [[[0, 0, 0]]]  # nothing activated: no wins at all


def test_rows_count_activated_channels_of_a_hand_built_trace():
    # N = 1 clip, grid (2, 1, 1): P = 2 points, k = 1 proposal each (the other frame), m = 3 channels.
    # point 0's pair activates channels 0 and 2; point 1's activates none (values ≤ 0 after BN, 0 after the ReLU).
    last = torch.tensor([[0.7, -0.2, 1.5], [0.0, -4.0, -0.1]])  # (N·P·k, m)
    capture = CPCapture(name="layer2.0.cp", module=None, inputs=torch.zeros(1, 4, 2, 1, 1), last_layer=last,
                        output=torch.zeros(1, 4, 2, 1, 1), grid=(2, 1, 1), proposals=torch.tensor([[[1], [0]]]),
                        search_output=torch.tensor([[1.0, 2.0]]).view(1, 1, 2, 1, 1).expand(1, 4, 2, 1, 1))
    corr = correspondences(capture)
    assert corr.wins.tolist() == [[2], [0]] and corr.active.tolist() == [2, 0] and corr.width == 3
    rows = correspondence_rows(corr, [0, 1])
    assert [(r["active_wins"], r["active"], r["width"]) for r in rows] == [(2, 2, 3), (0, 0, 3)]
    assert "wins" not in rows[0]  # the column says what it counts


@pytest.mark.parametrize("extra", [{}, {"cp_shrink": {"layer2": 2}, "cp_mlp": [3, 5]}])
def test_capture_matches_an_independent_recomputation(extra):
    model = tiny_model(**extra)
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.inference_mode():
        expected = model(clip)
    cap = capture_cp(model, clip)
    with torch.inference_mode():
        assert torch.equal(model(clip), expected)  # hooks changed nothing and are gone
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())

    cp = cap.module
    points = search_points(cp, cap.inputs)  # (N, P, C)
    idx = neighbours(cp, cap.inputs)  # (N, P, k)
    t, hs, ws = cap.inputs.shape[2], *(-(-d // (cp.shrink or 1)) for d in cap.inputs.shape[3:])
    with torch.inference_mode():  # the plain SPEC §1.5 formulation from the module's own layers
        h = pair_features(points, point_coords(t, hs, ws), idx)  # (N, P, k, 2C+3)
        for i, (layer, norm) in enumerate(zip(cp.layers, cp.norms)):
            h = norm(layer(h if i == 0 else F.relu(h)).flatten(0, 2)).view(*idx.shape, -1)  # (N, P, k, m_i)
    torch.testing.assert_close(cap.last_layer.view_as(h), h, rtol=1e-4, atol=1e-4)

    corr = correspondences(cap, sample=1)
    assert corr.grid == (t, hs, ws) and corr.width == cp.mlp[-1]
    # every point: its activated channels (positive after the ReLU and the max over k) split among its proposals
    activated = (F.relu(h[1]).amax(dim=1) > 0).sum(dim=-1)  # (P, k, m) → (P, m) → (P,)
    assert (corr.wins.sum(axis=1) == corr.active).all() and (corr.active == activated.numpy()).all()
    assert 0 < corr.active.sum() < corr.active.size * cp.mlp[-1]  # some channels are activated, not all of them
    frame = np.arange(t * hs * ws) // (hs * ws)
    assert (frame[corr.proposals] != frame[:, None]).all()  # proposals lie in other frames
    assert corr.response == pytest.approx(cap.output[1, :, :, ::cp.shrink or 1, ::cp.shrink or 1]
                                          .flatten(1).norm(dim=0).numpy(), rel=1e-5)


@pytest.fixture
def checkpoint(tmp_path):
    cfg = config_from_dict({"model": {"name": "cpnet_r18", "options": OPTIONS},
                            "data": {"num_frames": 4, "size": 32, "short_side": 32}})
    meta = {"model_name": "cpnet_r18", "num_classes": 3, "class_names": ["a", "b", "c"],
            "config": config_to_dict(cfg)}
    path = atomic_save(make_checkpoint(tiny_model(), epoch=1, meta=meta), tmp_path / "ck.pt")
    frames = np.random.default_rng(0).integers(0, 255, (6, 36, 44, 3), dtype=np.uint8)
    return path, write_frame_folder(tmp_path / "clip", frames)


def test_cli_prints_what_it_writes(checkpoint, tmp_path, capsys):
    ck, clip = checkpoint
    out = tmp_path / "viz"
    assert main(["visualize", "--checkpoint", str(ck), "--input", str(clip), "--out", str(out), "--points", "1,2,3",
                 "3,7,7", "--module", "layer2.0.cp"]) == 0
    printed = capsys.readouterr().out.splitlines()
    table = read_csv(out / "correspondences.csv")
    assert (out / "correspondences.png").stat().st_size > 0
    assert len(table) == 2 * 4  # two query points x k = 4 proposals
    header = printed[1].split()
    shown = [dict(zip(header, line.split())) for line in printed[2:2 + len(table)]]
    assert shown == [{key: r[key] for key in header} for r in table]
    assert [(r["query_t"], r["query_h"], r["query_w"]) for r in table[::4]] == [("1", "2", "3"), ("3", "7", "7")]
    for q in range(2):
        mine = [r for r in table if r["query"] == str(q)]
        assert sum(int(r["active_wins"]) for r in mine) == int(mine[0]["active"]) <= int(table[0]["width"]) == 4

    again = ["visualize", "--checkpoint", str(ck), "--input", str(clip), "--out", str(out), "--num-points", "3"]
    assert main(again) == 2 and "correspondences.csv already exists; pass --force" in capsys.readouterr().err
    assert main([*again, "--json", "--force"]) == 0
    rows = json.loads(capsys.readouterr().out)
    responses = [r["response"] for r in rows[::4]]
    assert len(rows) == 12 and responses == sorted(responses, reverse=True)  # the strongest responses first


def test_cli_errors(checkpoint, tmp_path, capsys):
    ck, clip = checkpoint
    base = ["visualize", "--checkpoint", str(ck), "--input", str(clip), "--out", str(tmp_path / "o")]
    assert main([*base, "--points", "4,0,0"]) == 2
    assert "off the module's search grid" in capsys.readouterr().err
    assert main([*base, "--points", "1,2"]) == 2
    assert "t,h,w" in capsys.readouterr().err
    assert main([*base, "--module", "layer3.0.cp"]) == 2
    assert "layer2.0.cp" in capsys.readouterr().err
    assert main([*base[:4], str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_point_index_round_trip():
    grid = (3, 4, 5)
    assert point_index(grid, (2, 3, 4)) == 59 and point_index(grid, (0, 0, 0)) == 0
    with pytest.raises(ValueError, match="off the module's search grid"):
        point_index(grid, (0, 4, 0))
