"""Robustness matrix, command-line rows: every subcommand given a missing path (or, for commands that only write,
an output path that cannot be created) exits non-zero with exactly one line on stderr naming that path, never a
traceback. The case list is checked against the parser, so a new subcommand without a row fails here."""

from __future__ import annotations

import argparse

import pytest

from cpnet.cli import build_parser, main
from tests.helpers import ROOT, tiny_config, write_config

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`

TF_CHECKPOINT = ROOT / "tests" / "fixtures" / "tf_checkpoint" / "train" / "model.ckpt-2"
TINY_OPTIONS = ["--option", "width=4", "--option", "layers=[1,1,1,1]", "--size", "16", "--frames", "2", "--batch",
                "1", "--repeats", "1"]

# (subcommand, argv, the path the error must name). Placeholders: {missing} does not exist; {blocked} lies under
# a regular file, so it can be neither read nor created; {run}, {ckpt}, {evaluated} (an evaluation folder),
# {video}, {config} are real.
CASES = [
    ("data synth", ["data", "synth", "--out", "{blocked}", "--train", "1", "--val", "0"], "{blocked}"),
    ("data check", ["data", "check", "--dataset", "jester", "--root", "{missing}"], "{missing}"),
    ("data check", ["data", "check", "--dataset", "list", "--root", "{missing}"], "{missing}"),
    ("data prepare reencode", ["data", "prepare", "reencode", "--src", "{missing}", "--out", "{missing}_out",
                               "--short-side", "16"], "{missing}"),
    ("data prepare frames", ["data", "prepare", "frames", "--src", "{missing}", "--out", "{missing}_out"],
     "{missing}"),
    ("data prepare lists", ["data", "prepare", "lists", "--root", "{missing}", "--out", "{missing}_out"], "{missing}"),
    ("train", ["train", "--config", "{missing}.yaml"], "{missing}.yaml"),
    ("train", ["train", "--resume", "--out", "{missing}"], "{missing}"),
    ("train", ["train", "--config", "{config}", "--out", "{missing}_run", "--set", "data.root={missing}"],
     "{missing}"),
    ("train", ["train", "--config", "{config}", "--out", "{missing}_run", "--init", "{missing}.pth"],
     "{missing}.pth"),
    ("eval", ["eval", "--run", "{missing}"], "{missing}"),
    ("eval", ["eval", "--checkpoint", "{missing}.pt"], "{missing}.pt"),
    ("eval", ["eval", "--run", "{run}", "--config", "{missing}.yaml"], "{missing}.yaml"),
    ("eval", ["eval", "--checkpoint", "{ckpt}", "--set", "data.root={missing}", "--out", "{missing}_eval"],
     "{missing}"),
    ("predict", ["predict", "{missing}.mp4", "--checkpoint", "{ckpt}"], "{missing}.mp4"),
    ("predict", ["predict", "{video}", "--checkpoint", "{missing}.pt"], "{missing}.pt"),
    ("export", ["export", "--checkpoint", "{missing}.pt", "--format", "torchscript"], "{missing}.pt"),
    ("visualize", ["visualize", "--checkpoint", "{missing}.pt", "--input", "{video}"], "{missing}.pt"),
    ("visualize", ["visualize", "--checkpoint", "{ckpt}", "--input", "{missing}.mp4"], "{missing}.mp4"),
    ("compare", ["compare", "{missing}", "{run}"], "{missing}"),
    ("compare", ["compare", "{evaluated}", "{missing}"], "{missing}"),
    ("bench runtime", ["bench", "runtime", "--model", "c2d_r18", *TINY_OPTIONS, "--out", "{blocked}"], "{blocked}"),
    ("bench profile", ["bench", "profile", "--model", "c2d_r18", *TINY_OPTIONS, "--out", "{blocked}"], "{blocked}"),
    ("bench memory", ["bench", "memory", "--sizes", "1,2,4,4,8", "--blocks", "cp", "--repeats", "1",
                      "--out", "{blocked}"], "{blocked}"),
    ("demo", ["demo", "--quick", "--models", "c2d", "--out", "{missing}_demo", "--data", "{blocked}"], "{blocked}"),
    ("convert tf", ["convert", "tf", "--checkpoint", "{missing}.ckpt", "--model", "cpnet_r18_released_112",
                    "--labels", "{missing}.csv", "--out", "{missing}.pt"], "{missing}.ckpt"),
    ("convert tf", ["convert", "tf", "--checkpoint", str(TF_CHECKPOINT), "--model", "cpnet_r18_released_112",
                    "--labels", "{missing}.csv", "--out", "{missing}.pt"], "{missing}.csv"),
]
NO_PATH_ARGUMENT = {"models"}  # prints the preset table; reads and writes no file


@pytest.fixture(scope="module")
def evaluated(trained_run, tmp_path_factory):
    """An evaluation folder (eval.json, predictions) of the shared run, for `cpnet compare`."""
    out = tmp_path_factory.mktemp("evaluated") / "eval"
    assert main(["eval", "--run", str(trained_run), "--out", str(out)]) == 0
    return out


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    """Every runnable (sub)command of the parser, e.g. 'train', 'data check', 'bench memory'."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands(sub, f"{prefix}{name} ") or {f"{prefix}{name}"}
    return found


def test_every_subcommand_has_a_missing_path_row():
    assert _commands(build_parser()) - NO_PATH_ARGUMENT == {command for command, _, _ in CASES}


@pytest.mark.parametrize("command, argv, named", CASES, ids=[" ".join(c[1][:2]) + f"-{i}" for i, c in
                                                             enumerate(CASES)])
def test_missing_path_gives_one_line_naming_it(command, argv, named, trained_run, evaluated, synthetic_root,
                                               tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything a command writes by default lands here
    (tmp_path / "a_file").write_text("a regular file")
    values = {"missing": str(tmp_path / "no_such_thing"), "blocked": str(tmp_path / "a_file" / "out"),
              "run": str(trained_run), "evaluated": str(evaluated), "ckpt": str(trained_run / "checkpoint_last.pt"),
              "video": str(synthetic_root / "20bn-jester-v1" / "1"),
              "config": str(write_config(tmp_path / "c.yaml", tiny_config(synthetic_root)))}
    code = main([arg.format(**values) for arg in argv])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code != 0, captured.out
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"cpnet {command.split()[0]}: error: ") and named.format(**values) in err, err


@pytest.mark.parametrize("command", ["predict", "visualize"])
def test_undecodable_input_gives_one_line_naming_it(command, trained_run, tmp_path, capsys):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # an MP4 header and nothing after it
    ckpt = str(trained_run / "checkpoint_last.pt")
    argv = ["predict", str(bad), "--checkpoint", ckpt] if command == "predict" else \
        ["visualize", "--checkpoint", ckpt, "--input", str(bad), "--out", str(tmp_path / "v")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"cpnet {command}: error: {bad}: "), err
