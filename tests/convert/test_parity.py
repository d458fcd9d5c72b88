"""Parity with TensorFlow: a released-layout CPNet R34 that TensorFlow built, ran and saved, converted and run here.

The fixture (``tests/fixtures/released_r34_w8``, written by ``tools/tf_reference/write_parity_fixtures.py`` from a
TensorFlow re-implementation of the authors' graph, ``tools/tf_reference/released_graph.py``) holds a TF checkpoint
of the R34 CPNet at 112² layout with its widths divided by 8 (random weights, non-trivial BN statistics and conv
biases, CP output γ ≠ 0), a clip, TF's logits, every block's output and the neighbours each CP module chose.
Converted by cpnet's own reader and ``released_state_dict`` into ``cpnet_r34_released_112``, the model must give
the same logits and block outputs within 1e-4 in float32, relative: ``max|ours − TF| / max|TF|`` over the tensor.
No TensorFlow needed.

``python -m tests.convert.test_parity FOLDER`` prints the same figures for any fixture the writer made (the
full-width one in ``tools/tf_reference/README.md``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

import cpnet.models.cp as cp_module
from cpnet.convert import read_tf_checkpoint
from cpnet.convert.released import released_state_dict
from cpnet.models.registry import create_model
from tests.helpers import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "released_r34_w8"
TOLERANCE = 1e-4
STAGES = ("layer1", "layer2", "layer3", "layer4")


def relative_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """max|ours − reference| / max|reference| over the whole tensor."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def load_fixture(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "expected.npz") as npz:
        return {key: npz[key] for key in npz.files}


def run_converted(folder: Path, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Convert the fixture's checkpoint and run its clip: logits, every block's output as ``res{g}_{i}_out``
    (TF's N, T, H, W, C layout) and each CP module's neighbour indices as ``knn/group{g}/block{i}``."""
    model = create_model("cpnet_r34_released_112", num_classes=int(expected["classes"]),
                         width=int(expected["width"])).eval()
    model.load_state_dict(released_state_dict(read_tf_checkpoint(folder / "model.ckpt"), model, str(folder)))
    outputs: dict[str, torch.Tensor] = {}
    cp_sites: list[str] = []
    for g, stage in enumerate(STAGES):
        for i, block in enumerate(getattr(model, stage)):
            name = f"res{g}_{i}_out"
            block.register_forward_hook(lambda _m, _in, out, name=name: outputs.__setitem__(name, out.clone()))
            if block.cp is not None:
                cp_sites.append(f"group{g}/block{i}")
    neighbours: list[torch.Tensor] = []
    knn = cp_module.cross_frame_knn

    def recording_knn(*args, **kwargs):
        neighbours.append(knn(*args, **kwargs))
        return neighbours[-1]

    clip = torch.from_numpy(expected["clip"]).permute(0, 4, 1, 2, 3)  # (N, T, H, W, 3) → (N, 3, T, H, W)
    with torch.no_grad(), mock.patch.object(cp_module, "cross_frame_knn", recording_knn):
        start = time.perf_counter()
        logits = model(clip.contiguous())
        seconds = time.perf_counter() - start
    result = {name: out.permute(0, 2, 3, 4, 1).numpy() for name, out in outputs.items()}  # → (N, T, H, W, C)
    result.update({f"knn/{site}": idx.numpy() for site, idx in zip(cp_sites, neighbours)})
    result.update(logits=logits.numpy(), forward_seconds=np.array(seconds))
    return result


def differing_neighbour_sets(ours: np.ndarray, reference: np.ndarray) -> int:
    """How many points' k neighbours differ as sets (the order within k is free)."""
    return int((np.sort(ours, axis=-1) != np.sort(reference, axis=-1)).any(-1).sum())


def parity(folder: Path) -> dict[str, float | int]:
    """Relative differences of the logits and of every block's output, differing neighbour sets of every CP module."""
    expected = load_fixture(folder)
    ours = run_converted(folder, expected)
    figures: dict[str, float | int] = {}
    for name, reference in expected.items():
        if name == "logits" or (name.startswith("res") and name.endswith("_out")):
            assert ours[name].shape == reference.shape, (name, ours[name].shape, reference.shape)
            figures[name] = relative_difference(ours[name], reference)
        elif name.startswith("knn/"):
            figures[name] = differing_neighbour_sets(ours[name], reference)
    figures["cpnet_forward_seconds"] = float(ours["forward_seconds"])
    return figures


@pytest.fixture(scope="module")
def figures() -> dict[str, float | int]:
    if not (FIXTURE / "expected.npz").is_file():
        pytest.fail(f"parity fixture missing: {FIXTURE} (tools/tf_reference/write_parity_fixtures.py writes it)")
    return parity(FIXTURE)


def test_fixture_is_a_nontrivial_released_model():
    variables = read_tf_checkpoint(FIXTURE / "model.ckpt")
    assert variables["conv0/weights"].shape == (1, 7, 7, 3, int(load_fixture(FIXTURE)["width"]))
    for name, value in variables.items():
        if name.endswith("/biases") or name.endswith("/moving_mean"):
            assert np.abs(value).min() > 0, name
        if name.endswith("/moving_variance"):
            assert np.abs(value - 1).max() > 0.1, name
        if "bn_final/gamma" in name:
            assert np.abs(value).min() > 0.1, name
    cp_sites = sorted(n.split("/pointnet/")[0] for n in variables if n.endswith("/pointnet/bn_final/gamma"))
    assert cp_sites == ["group1/block2", "group1/block3", "group2/block3", "group2/block4", "group2/block5"]


def test_neighbours_are_tensorflows(figures):
    knn = {name: n for name, n in figures.items() if name.startswith("knn/")}
    assert len(knn) == 5 and all(n == 0 for n in knn.values()), knn


def test_every_block_output_matches_tensorflow(figures):
    blocks = {name: d for name, d in figures.items() if name.startswith("res")}
    assert len(blocks) == 3 + 4 + 6 + 3
    worst = max(blocks, key=blocks.get)
    assert blocks[worst] <= TOLERANCE, f"{worst}: relative difference {blocks[worst]:.3g} (all: {blocks})"


def test_logits_match_tensorflow(figures):
    assert figures["logits"] <= TOLERANCE, figures


def test_convert_tf_command_gives_tensorflows_logits(tmp_path, capsys):
    """`cpnet convert tf` on the TF-written checkpoint, then the model rebuilt from the written cpnet checkpoint."""
    from cpnet.cli import main
    from cpnet.engine.checkpoint import load_checkpoint, load_model_state

    expected = load_fixture(FIXTURE)
    labels = tmp_path / "jester-v1-labels.csv"
    labels.write_text("".join(f"class {i}\n" for i in range(int(expected["classes"]))))
    out = tmp_path / "released.pt"
    assert main(["convert", "tf", "--checkpoint", str(FIXTURE / "model.ckpt"), "--model", "cpnet_r34_released_112",
                 "--labels", str(labels), "--out", str(out)]) == 0
    capsys.readouterr()
    ckpt = load_checkpoint(out)
    model = create_model(ckpt["model_name"], num_classes=ckpt["num_classes"], **ckpt["config"]["model"]["options"])
    load_model_state(model.eval(), ckpt["model"], out)
    with torch.no_grad():
        logits = model(torch.from_numpy(expected["clip"]).permute(0, 4, 1, 2, 3).contiguous()).numpy()
    assert relative_difference(logits, expected["logits"]) <= TOLERANCE


if __name__ == "__main__":
    print(json.dumps(parity(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE), indent=1))
