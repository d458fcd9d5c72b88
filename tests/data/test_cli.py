"""`cpnet data synth` and `cpnet data check` through cpnet.cli.main."""

from __future__ import annotations

import json
import shutil

from cpnet.cli import main
from tests.data.media import indexed_frames, write_frame_folder


def test_synth_then_check_passes(tmp_path, capsys):
    out = tmp_path / "synth"
    assert (
        main(["data", "synth", "--out", str(out), "--train", "18", "--val", "9", "--frames", "4", "--size", "16"]) == 0
    )
    assert str(out) in capsys.readouterr().out
    assert (out / "20bn-jester-v1" / "27" / "00004.jpg").is_file()
    assert main(["data", "check", "--dataset", "jester", "--root", str(out)]) == 0
    text = capsys.readouterr().out
    assert "jester train: 18 videos, 9 classes, 0 missing, 0 undecodable" in text
    assert "jester validation: 9 videos" in text and "static 2, slide_left 2" in text
    assert "check passed" in text
    (out / "20bn-jester-v1" / "5" / "00002.jpg").write_bytes(b"")
    assert main(["data", "check", "--dataset", "jester", "--root", str(out), "--workers", "2", "--split", "val"]) == 0
    assert main(["data", "check", "--dataset", "jester", "--root", str(out), "--workers", "2", "--split", "train"]) == 1
    assert "undecodable 5:" in capsys.readouterr().out


def test_check_fails_on_bad_media_and_names_them(jester_root, capsys):
    media = jester_root / "20bn-jester-v1"
    (media / "103" / "00002.jpg").write_bytes(b"not a jpeg")
    shutil.rmtree(media / "201")
    shutil.rmtree(media / "104")
    write_frame_folder(media / "104", indexed_frames(1))  # 1 frame where the others have 6
    assert main(["data", "check", "--dataset", "jester", "--root", str(jester_root), "--split", "train"]) == 1
    text = capsys.readouterr().out
    assert "undecodable 103:" in text and "00002.jpg" in text
    assert "outliers (1): 104 (1)" in text and "check FAILED: 1 undecodable" in text
    assert main(["data", "check", "--dataset", "jester", "--root", str(jester_root), "--split", "val"]) == 1
    assert "missing (1): 201" in capsys.readouterr().out
    args = ["data", "check", "--dataset", "jester", "--root", str(jester_root), "--split", "val", "--allow-missing"]
    assert main(args) == 0


def test_check_kinetics_quick_with_json_report(kinetics_root, tmp_path, capsys):
    report = tmp_path / "report.json"
    args = ["data", "check", "--dataset", "kinetics", "--root", str(kinetics_root), "--quick", "--json", str(report)]
    assert main(args) == 1  # one clip of the train list is missing
    assert "missing (1): bbb_000000_000010" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert [r["split"] for r in data] == ["train", "validation"] and data[1]["frames"]["median"] == 10
    assert main([*args, "--allow-missing"]) == 2  # the report of the first run is kept unless --force
    assert "--json" in capsys.readouterr().err and json.loads(report.read_text()) == data
    assert main([*args, "--allow-missing", "--force"]) == 0


def test_check_user_errors_exit_2(tmp_path, capsys):
    assert main(["data", "check", "--dataset", "ssv2", "--root", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["data", "check", "--dataset", "ssv2", "--root", str(tmp_path)]) == 2
    assert "something-something-v2-labels.json" in capsys.readouterr().err
    assert main(["data"]) == 2
