"""Fuzzing the three annotation parsers and the frame-name detection with hypothesis: any input either parses into
a consistent split / pattern or raises the documented error (ValueError, with FileNotFoundError for absent files)
naming the file. Inputs mix near-valid structure (right separators, known labels, plausible ids) with arbitrary
text and bytes; examples are bounded so the whole module runs in seconds."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpnet.data.annotations import load_split
from cpnet.data.frames import IMAGE_EXTENSIONS, detect_pattern, read_frames
from cpnet.data.records import DatasetSplit, MediaError
from tests.data.media import indexed_frames, write_frame_folder

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # count: conftest
LABELS = ["Swiping Left", "Thumb Up", "Doing other things"]
TEMPLATES = ["Pushing [something] from left to right", "Holding [something]"]

ids = st.one_of(st.integers(0, 30).map(str), st.text(st.sampled_from("0123456789abc-_ ./"), max_size=6))
fields = st.one_of(st.sampled_from([*LABELS, "", " ", "Waving"]), st.text(max_size=8))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True), st.text(max_size=6))
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8
)


def expect_parse_or_error(dataset: str, root: Path, split: str, files: tuple[str, ...]) -> DatasetSplit | None:
    """Load ``split``; on success check the split is consistent, on error that it is a documented one naming one
    of ``files``."""
    try:
        result = load_split(dataset, root, split, warn_missing=False)
    except (ValueError, FileNotFoundError) as e:
        assert any(name in str(e) for name in files), f"{type(e).__name__} names no file: {e}"
        return None
    assert result.records or result.missing
    listed = [r.video_id for r in result.records] + result.missing
    assert len(set(listed)) == len(listed), "a video id appears twice"
    assert all(-1 <= r.label < result.num_classes for r in result.records)
    assert all(r.path.exists() for r in result.records)
    return result


@pytest.fixture
def media(tmp_path) -> Path:
    """A media folder holding a few real clips (frame folders '1', '2', '3'), so that some ids resolve."""
    for vid in ("1", "2", "3"):
        write_frame_folder(tmp_path / "media" / vid, indexed_frames(2, 8, 8))
    return tmp_path / "media"


def _fresh_root(base: Path, media: Path | None) -> Path:
    root = Path(tempfile.mkdtemp(dir=base))
    if media is not None:
        for item in media.iterdir():
            (root / item.name).symlink_to(item)
    return root


@FUZZ
@given(
    labels=st.one_of(st.lists(st.sampled_from(LABELS), max_size=4).map("\n".join), st.text(max_size=40)),
    rows=st.lists(st.tuples(ids, st.sampled_from([";", ",", "\t", "", ";;"]), fields), max_size=6),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
    split=st.sampled_from(["train", "test"]),
)
def test_jester_parser(tmp_path, media, labels, rows, raw, split):
    root = _fresh_root(tmp_path, media)
    (root / "jester-v1-labels.csv").write_text(labels)
    text = "\n".join(f"{vid}{sep}{name}" for vid, sep, name in rows).encode()
    (root / f"jester-v1-{split}.csv").write_bytes(raw if raw is not None else text)
    result = expect_parse_or_error("jester", root, split, ("jester-v1-labels.csv", f"jester-v1-{split}.csv"))
    if result is not None and split == "train":
        assert all(r.label >= 0 for r in result.records), "a training video without a label"
    shutil.rmtree(root)


def _ssv2_items(draw_ids, draw_templates) -> st.SearchStrategy:
    item = st.fixed_dictionaries({"id": draw_ids}, optional={"template": draw_templates, "label": st.text(max_size=4)})
    return st.lists(st.one_of(item, json_values), max_size=5)


@FUZZ
@given(
    labels=st.one_of(
        st.just({t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(TEMPLATES)}),
        st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-1, 3).map(str), json_scalars), max_size=4),
        json_values,
    ),
    items=st.one_of(
        _ssv2_items(st.one_of(ids, st.integers(0, 5), json_scalars),
                    st.one_of(st.sampled_from(TEMPLATES), json_values)),
        json_values,
    ),
    raw=st.one_of(st.none(), st.binary(max_size=30), st.just(b"[" * 5000)),
)
def test_ssv2_parser(tmp_path, labels, items, raw):
    root = _fresh_root(tmp_path, None)
    for vid in ("1", "2"):
        (root / f"{vid}.webm").write_bytes(b"")  # present on disk; decoding is not the parser's business
    (root / "something-something-v2-labels.json").write_text(json.dumps(labels))
    split_file = root / "something-something-v2-train.json"
    split_file.write_bytes(raw if raw is not None else json.dumps(items).encode())
    expect_parse_or_error("ssv2", root, "train", ("something-something-v2-labels.json", split_file.name))
    shutil.rmtree(root)


HEADERS = ["label,youtube_id,time_start,time_end,split", "youtube_id,time_start,time_end,split",
           "label,youtube_id,time_start,time_end,split,is_cc", "youtube_id,label", ""]
times = st.one_of(st.integers(-5, 20).map(str), st.sampled_from(["1.5", "nan", "inf", "-inf", "1e400", "", "x"]))


@FUZZ
@given(
    header=st.one_of(st.sampled_from(HEADERS), st.text(max_size=20)),
    rows=st.lists(
        st.lists(st.one_of(st.sampled_from(["zumba", "abseiling", '"air, drumming"', "a1b2c"]), times, fields),
                 max_size=7).map(",".join),
        max_size=5,
    ),
    raw=st.one_of(st.none(), st.binary(max_size=40), st.just(b"label,youtube_id,time_start,time_end\nz,a\x00,1,2\n")),
    split=st.sampled_from(["train", "validation"]),
)
def test_kinetics_parser(tmp_path, header, rows, raw, split):
    root = _fresh_root(tmp_path, None)
    (root / "zumba").mkdir()
    for stem in ("a1b2c_000001_000002", "zumba_000000_000000"):
        (root / "zumba" / f"{stem}.mp4").write_bytes(b"")
    name = "train.csv" if split == "train" else "val.csv"
    (root / name).write_bytes(raw if raw is not None else "\n".join([header, *rows]).encode())
    expect_parse_or_error("kinetics", root, split, (name, "train.csv"))
    shutil.rmtree(root)


frame_names = st.one_of(
    st.builds("{}{}{}".format, st.sampled_from(["", "img_", "flow_x_", "frame", "a1b"]),
              st.one_of(st.integers(0, 12).map(str), st.integers(0, 12).map("{:05d}".format), st.just("٣")),
              st.sampled_from([*IMAGE_EXTENSIONS, ".JPG", ".txt", ".jpg.part", ""])),
    st.text(st.characters(blacklist_characters="/\\\0", blacklist_categories=("Cs",)), min_size=1, max_size=10),
)


@FUZZ
@given(names=st.lists(frame_names, max_size=10, unique=True))
def test_frame_name_detection(tmp_path, names):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    for name in names:
        if name not in (".", "..") and len(name.encode()) < 200:
            (folder / name).write_bytes(b"")
    try:
        pattern = detect_pattern(folder)
    except MediaError as e:
        assert str(folder) in str(e)
        return
    finally:
        files = {p.name for p in folder.iterdir()}
    assert pattern.count >= 1 and pattern.ext.lower() in IMAGE_EXTENSIONS
    frame_files = [pattern.name(i) for i in range(pattern.count)]
    if pattern.contiguous:
        assert set(frame_files) <= files, f"detected names {frame_files} are not all in {sorted(files)}"
    else:
        with pytest.raises(MediaError, match="numbering has gaps"):
            read_frames(folder, [0])
    shutil.rmtree(folder)
