"""scripts/gpu-check.sh: its steps, a clean refusal where no CUDA device exists, and a rehearsal of the bare GPU
machine on the CPU: a copy of the working tree (what travels to that machine), a python that has torch and the
other packages but neither cpnet nor PyAV, a clean PYTHONPATH; the script must set itself up from the tree alone
and show that every step would start. On a GPU machine run the script itself (README, "Check a GPU")."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from cpnet.app.config import load_config
from cpnet.cli import main as cpnet_main
from cpnet.device import autocast

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
STEPS = ["cuda_tests", "speed_runtime", "speed_knn", "train_fp16", "train_bf16_channels_last", "ddp_nccl",
         "export_cuda"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def test_gpu_check_lists_its_steps():
    out = subprocess.run(["bash", str(SCRIPT), "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert out == STEPS


def test_gpu_check_refuses_an_unknown_argument():
    done = subprocess.run(["bash", str(SCRIPT), "--dryrun"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument '--dryrun'" in done.stderr and "--dry-run" in done.stderr


@NO_CUDA
def test_gpu_check_without_cuda_says_so_and_checks_nothing(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GPU_CHECK_OUT": str(tmp_path)})
    assert done.returncode == 3 and "no CUDA device" in done.stderr and "summary" not in done.stdout
    assert "nothing checked" in (tmp_path / "summary.txt").read_text()


@NO_CUDA
def test_cuda_tests_refuse_to_skip_when_the_gpu_check_requires_cuda():
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/ops/test_knn.py"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CPNET_REQUIRE_CUDA": "1"})
    assert done.returncode == 4 and "CPNET_REQUIRE_CUDA=1 but torch.cuda.is_available() is False" in done.stderr


def test_mixed_precision_dtype_is_a_checked_choice():
    assert load_config(None, ["train.amp_dtype=bfloat16"]).train.amp_dtype == "bfloat16"
    with pytest.raises(ValueError, match="train.amp_dtype"):
        load_config(None, ["train.amp_dtype=float8"])
    with pytest.raises(ValueError, match="bfloat16"):
        autocast(torch.device("cpu"), True, "half")
    assert isinstance(autocast(torch.device("cpu"), True, "bfloat16"), type(autocast(torch.device("cpu"), False)))


def _helper():
    """scripts/gpu_check.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_checks_a_command_line_without_running_it(capsys):
    parse = _helper().parse
    assert parse(["train", "--config", "configs/synthetic/cpnet_8x32.yaml", "--set", "train.amp=true", "--out",
                  "/nonexistent/run", "--no-progress"]) == 0
    assert "cpnet train: options, config, overrides and model names valid" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown config key 'train.amp_dtyp'; did you mean 'train.amp_dtype'"):
        parse(["train", "--config", "configs/synthetic/cpnet_8x32.yaml", "--set", "train.amp_dtyp=bfloat16"])
    with pytest.raises(SystemExit, match="no config file configs/nope.yaml"):
        parse(["train", "--config", "configs/nope.yaml"])
    with pytest.raises(SystemExit, match="unknown model 'c2d_r35'"):
        parse(["bench", "runtime", "--model", "cpnet_r34", "--baseline", "c2d_r35", "--device", "cuda"])
    with pytest.raises(SystemExit):  # argparse: exit 2 and its message on stderr
        parse(["bench", "runtime", "--model", "cpnet_r34", "--devices", "cuda"])
    assert "unrecognized arguments: --devices" in capsys.readouterr().err


@pytest.mark.slow
def test_export_step_exports_and_compares_the_archive_on_a_device(tmp_path, capsys):
    """The export step's own logic, on the CPU: a checkpoint from a one-epoch training, TorchScript and ONNX
    exports (each verified by `cpnet export`), the archive's logits on the device against the CPU."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    run = tmp_path / "run"
    assert cpnet_main(["train", "--config", str(ROOT / "configs/synthetic/cpnet_8x32.yaml"), "--out", str(run),
                       "--set", f"data.root={tmp_path / 'data'}", "--set", "data.synthetic.num_train=18",
                       "--set", "data.synthetic.num_val=9", "--set", "train.epochs=1", "--set", "train.batch_size=9",
                       "--set", "train.device=cpu", "--no-progress"]) == 0
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "export",
                           str(run / "checkpoint_last.pt"), str(tmp_path / "export"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"TorchScript on cpu: logits \(2, 9\), max \|cpu - cpu\| = 0\.00e\+00", done.stdout)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "model.onnx", "model.onnx.json", "model.torchscript.pt", "model.torchscript.pt.json"]
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "export",
                              str(run / "nope.pt"), str(tmp_path / "x")], capture_output=True, text=True)
    assert missing.returncode == 1 and "no checkpoint at" in missing.stderr and "train_fp16" in missing.stderr


# ---- the rehearsal ------------------------------------------------------------------------------------------------

def _copy_of_the_tree(dest: Path) -> Path:
    """The files that travel to the GPU machine: tracked, and untracked but not ignored (no .venv, no caches)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout to tell which files travel")
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _bare_python(dest: Path) -> Path:
    """A `python3` with this interpreter's packages (torch, numpy, pytest...) but without cpnet and with PyAV
    hidden, as on the bare GPU machine: a new venv whose site-packages names ours in a .pth file. Python does not
    process the .pth files inside a folder that a .pth adds, so the editable install of cpnet is not seen there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    bare_site = next(dest.glob("lib/python*/site-packages"))
    (bare_site / "ours.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    (bare_site / "av").mkdir()
    (bare_site / "av" / "__init__.py").write_text('raise ImportError("PyAV is hidden for the rehearsal")\n')
    python = dest / "bin" / "python3"
    imports = subprocess.run([str(python), "-c", "import torch, pytest\ntry:\n import cpnet\nexcept ImportError:\n"
                              " print('no cpnet')\ntry:\n import av\nexcept ImportError:\n print('no av')"],
                             capture_output=True, text=True, cwd=dest, env=_clean_env(dest / "bin"))
    if imports.stdout.split("\n")[:2] != ["no cpnet", "no av"]:
        pytest.skip(f"cannot make a python without cpnet and PyAV here: {imports.stdout + imports.stderr}")
    return dest / "bin"


def _clean_env(bin_dir: Path, **extra: str) -> dict:
    """No PYTHONPATH, PYTHON or VIRTUAL_ENV: `python3` is the bare one, found first on PATH."""
    return {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8", **extra}


def _fake_av_wheel(folder: Path) -> str:
    """A stand-in `av` wheel (a pure-Python package reporting version 0.0.dev0): the rehearsal checks the offline
    install path of the real wheel, which is 35 MB and comes from PyPI (README)."""
    folder.mkdir()
    name = "av-0.0.dev0-py3-none-any.whl"
    info = "av-0.0.dev0.dist-info"
    files = {"av/__init__.py": '__version__ = "0.0.dev0"\n',
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: av\nVersion: 0.0.dev0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: cpnet-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / name, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return name


@pytest.mark.slow
def test_rehearsal_on_a_bare_python_every_step_would_start(tmp_path):
    tree = _copy_of_the_tree(tmp_path / "tree")
    bin_dir = _bare_python(tmp_path / "bare")
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(tree / "scripts" / "gpu-check.sh"), "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=_clean_env(bin_dir, GPU_CHECK_OUT=str(out)))
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    # Set up from the tree alone: the bare python3, cpnet from the copy through PYTHONPATH, no PyAV and no wheel.
    assert re.search(r"^gpu-check: python 3\.\d+\.\d+ \(python3\), torch ", text, re.M), text
    assert f"cpnet from {tree.resolve()}/cpnet (PYTHONPATH)" in text
    assert "PyAV not installed, no wheel in .whl/" in text
    # Every step's command is the bare python3 running a module or a file of the tree, and it would start.
    commands = dict(re.findall(r"^== (\w+) \(limit \d+s\): (.*)$", text, re.M))
    assert list(commands) == STEPS
    assert ".venv" not in text and "torchrun" not in text
    for name, command in commands.items():
        assert re.match(r"python3 (-m (pytest|cpnet|torch\.distributed\.run) |benchmarks/|scripts/)", command), name
    assert commands["ddp_nccl"].startswith("python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m "
                                           "cpnet train ")
    assert "-m cuda tests/ops tests/models" in commands["cuda_tests"]
    assert text.count("   would start: ") == len(STEPS) and "WOULD FAIL" not in text
    assert re.search(r"would start: [1-9]\d*/\d+ tests collected", text), "no CUDA test selected by -m cuda"
    # Results: a summary naming every step, within the 8 files that come back.
    summary = (out / "summary.txt").read_text()
    assert all(name in summary for name in STEPS) and len(list(out.iterdir())) <= 8
    if torch.cuda.is_available():
        return
    assert "a real run here exits 3: no CUDA device" in text
    # A real run: a brought av wheel installs offline before anything else; then no CUDA device, nothing checked.
    wheel = _fake_av_wheel(tree / ".whl")
    done = subprocess.run(["bash", str(tree / "scripts" / "gpu-check.sh")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=_clean_env(bin_dir, GPU_CHECK_OUT=str(out)))
    assert done.returncode == 3 and "no CUDA device" in done.stderr, done.stdout + done.stderr
    assert f"PyAV 0.0.dev0 from .whl/{wheel} (installed offline" in (out / "summary.txt").read_text()
