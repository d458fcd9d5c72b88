"""The explorer's data: one forward traces every CP module as the single-module capture does, the page carries
exactly that trace (packed arrays decoded back), is self-contained, and `cpnet visualize --html` writes it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import cpnet
from cpnet.app.predict import load_clip
from cpnet.app.visualize import trace_clip
from cpnet.cli import main
from cpnet.models.cp import CPModule
from cpnet.reports.cp_hooks import capture_cp
from cpnet.reports.explorer import grid_centres, pack, unpack
from cpnet.reports.visualize import correspondences
from tests.reports.conftest import CLASSES


def page_data(html: str) -> dict:
    """The JSON a page was built with (the inverse of explorer_html's escaping is JSON's own)."""
    found = re.search(r'<script type="application/json" id="cpnet-data">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def test_trace_clip_traces_every_cp_module_as_the_single_capture_does(explorer_checkpoint):
    ck, clip = explorer_checkpoint
    trace = trace_clip(ck, clip)
    loaded = load_clip(clip, ck)
    assert list(trace.modules) == ["layer2.0.cp", "layer3.0.cp"]
    assert trace.modules["layer2.0.cp"].grid == (4, 12, 12) and trace.modules["layer3.0.cp"].grid == (4, 3, 3)
    for name, m in trace.modules.items():
        ref = correspondences(capture_cp(loaded.model, loaded.clip, name))  # one forward per module
        assert m.name == name and m.k == 3 and m.width == ref.width
        assert np.array_equal(m.proposals, ref.proposals) and np.array_equal(m.wins, ref.wins)
        assert np.array_equal(m.active, ref.active) and m.response == pytest.approx(ref.response, rel=1e-5)
        assert m.proposals.shape == m.wins.shape == (np.prod(m.grid), 3) and m.wins.sum() > 0
    assert np.array_equal(trace.frames, loaded.frames) and trace.frames.shape == (4, 48, 48, 3)
    with torch.inference_mode():
        probs = torch.softmax(loaded.model(loaded.clip)[0], 0).numpy()
    assert trace.probs == pytest.approx(probs, rel=1e-5) and trace.class_names == CLASSES
    assert [name for name, _ in trace.top(5)] == [CLASSES[i] for i in np.argsort(-probs)]  # 3 classes: 3 shown
    # layer2 (12 feature rows, no shrink): the centres of an even tiling; layer3 (6 rows, every 2nd): rows 0, 2, 4
    assert trace.modules["layer2.0.cp"].rows == pytest.approx((np.arange(12) + 0.5) / 12)
    assert trace.modules["layer3.0.cp"].cols == pytest.approx([0.5 / 6, 2.5 / 6, 4.5 / 6])
    layer3 = trace.modules["layer3.0.cp"]
    assert layer3.nearest(2, 0.1, 0.9) == (2 * 3 + 0) * 3 + 2 and layer3.nearest(1, 0.45, 0.3) == (1 * 3 + 1) * 3 + 1


def test_grid_centres_of_tf1s_bilinear_resize():
    # TF1's legacy resize of 7 rows to 7 // 2 = 3 samples row i at i * 7 / 3
    cp = CPModule(channels=8, k=2, mlp=[4], shrink=2, resample="bilinear_tf1")
    assert grid_centres(cp, 7, 3) == pytest.approx([(i * 7 / 3 + 0.5) / 7 for i in range(3)])
    assert grid_centres(CPModule(channels=8, k=2, mlp=[4], shrink=2), 7, 4) == pytest.approx([0.5 / 7, 2.5 / 7,
                                                                                              4.5 / 7, 6.5 / 7])


@pytest.mark.parametrize(("top", "dtype"), [(0, "uint8"), (255, "uint8"), (256, "uint16"), (65535, "uint16"),
                                            (65536, "uint32")])
def test_pack_takes_the_smallest_width_and_round_trips(top, dtype):
    values = np.array([[0, top], [top // 2, 1]])
    packed = pack(values)
    assert packed["dtype"] == dtype and unpack(packed).tolist() == [0, top, top // 2, 1]
    with pytest.raises(ValueError, match="non-negative"):
        pack(np.array([3, -1]))


def test_cli_html_writes_one_self_contained_page_of_the_trace(explorer_checkpoint, tmp_path, monkeypatch, capsys):
    ck, clip = explorer_checkpoint
    monkeypatch.chdir(tmp_path)
    assert main(["visualize", "--checkpoint", str(ck), "--input", str(clip), "--html", "explore.html"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explore.html"]  # no correspondences.* without --out
    size = (tmp_path / "explore.html").stat().st_size
    assert "wrote explore.html" in printed and f"{size / 1e6:.2f} MB" in printed
    assert "explorer: 2 CP modules (layer2.0.cp, layer3.0.cp), 4 frames" in printed
    html = (tmp_path / "explore.html").read_text(encoding="utf-8")
    # self-contained: nothing to fetch (every src/href a data: URI or an in-page #reference), a CSP forbidding it
    assert not re.search(r"<script[^>]+src=|<link[^>]+stylesheet|@import", html)
    assert all(v.startswith(("data:", "#")) for v in re.findall(r'(?:src|href)="([^"]*)"', html))
    assert "default-src 'none'" in html and html.count("</script>") == 2  # a class name cannot close the script
    data = page_data(html)
    trace = trace_clip(ck, clip)
    assert [m["name"] for m in data["modules"]] == list(trace.modules)
    for packed, m in zip(data["modules"], trace.modules.values()):
        assert packed["grid"] == list(m.grid) and packed["k"] == m.k and packed["width"] == m.width
        assert unpack(packed["proposals"]).tolist() == m.proposals.ravel().tolist()
        assert unpack(packed["wins"]).tolist() == m.wins.ravel().tolist()
        strength = unpack(packed["strength"])
        assert strength.max() == 255 and strength.argmax() == m.response.argmax()
        assert packed["rows"] == pytest.approx(m.rows.tolist(), abs=1e-5)
    assert len(data["frames"]) == 4 and all(f.startswith("data:image/jpeg;base64,") for f in data["frames"])
    assert [name for name, _ in data["top"]] == [name for name, _ in trace.top(5)]
    first = trace.modules["layer2.0.cp"]  # it opens on the first module's strongest point, the table's first query
    t, h, w = np.unravel_index(first.response.argmax(), first.grid)
    assert data["start"] == {"module": "layer2.0.cp", "t": t, "y": pytest.approx(first.rows[h]),
                             "x": pytest.approx(first.cols[w])}


def test_cli_html_beside_the_png_opens_at_the_given_module_and_point(explorer_checkpoint, tmp_path, capsys):
    ck, clip = explorer_checkpoint
    page, out = tmp_path / "pages" / "p.html", tmp_path / "viz"
    assert main(["visualize", "--checkpoint", str(ck), "--input", str(clip), "--html", str(page), "--out", str(out),
                 "--module", "layer3.0.cp", "--points", "1,2,0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert (out / "correspondences.png").exists() and (out / "correspondences.csv").exists()
    assert [(r["query_t"], r["query_h"], r["query_w"]) for r in rows[:1]] == [(1, 2, 0)]
    start = page_data(page.read_text(encoding="utf-8"))["start"]
    assert start == {"module": "layer3.0.cp", "t": 1, "y": pytest.approx(4.5 / 6), "x": pytest.approx(0.5 / 6)}
    assert main(["visualize", "--checkpoint", str(ck), "--input", str(clip), "--html", str(page),
                 "--module", "layer9.cp", "--force"]) == 2
    assert "no CP module named 'layer9.cp'; expected one of layer2.0.cp, layer3.0.cp" in capsys.readouterr().err


def test_the_ssv2_released_model_at_224_traces_and_pages_within_a_few_megabytes():
    """Issue 25.4: the SSv2 model (`cpnet_r34_released_224`: five CP modules, 224² crops), here at width 8 with
    random weights on a 12-frame clip: every module traced, the page well under 5 MB."""
    from cpnet.reports.explorer import explorer_html, trace_model

    torch.manual_seed(0)
    model = cpnet.create_model("cpnet_r34_released_224", num_classes=174, width=8).eval()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (12, 224, 224, 3), dtype=np.uint8)
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float().div(255)  # (1, 3, 12, 224, 224)
    trace = trace_model(model, clip, frames, [f"template {i}" for i in range(174)])
    assert len(trace.modules) == 5
    for m in trace.modules.values():
        assert m.proposals.shape == (np.prod(m.grid), m.k) and (m.proposals < np.prod(m.grid)).all()
    page = explorer_html(trace, "ssv2", None, None)
    assert len(page.encode()) < 5e6  # random frames compress worst: a real clip's page is smaller
