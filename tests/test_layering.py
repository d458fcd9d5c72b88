"""The package's layers, read from its own imports (every ``import cpnet…`` in every module, function-level ones
included): data flows one way, CLI → app → engine / data / reports / convert → models → ops, and nothing reaches
back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cpnet"

# What each part of cpnet imports from the rest of cpnet (besides itself): exactly these, no more (a new import that
# reaches up a layer fails) and no fewer (a rule that allows what the code never does is out of date). The bottom
# modules (batch, device, errors, files, metrics) import nothing of cpnet.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "batch": set(),
    "device": set(),
    "files": set(),
    "metrics": set(),
    "ops": set(),
    "models": {"ops", "files"},
    "data": {"batch", "errors", "files"},
    "engine": {"batch", "device", "errors", "files", "metrics"},
    "reports": {"files", "models", "ops"},
    "export": {"files"},
    "convert": {"data", "models"},
    "app": {"convert", "data", "device", "engine", "errors", "export", "files", "metrics", "models", "reports"},
    "cli": {"app", "errors"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    """The parts of cpnet that ``path`` imports (absolute imports; the package uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            # ``from cpnet import export`` imports the part cpnet.export
            names = [f"cpnet.{a.name}" for a in node.names] if node.module == "cpnet" else [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == "cpnet":
                found.add("cpnet")
            elif name.startswith("cpnet."):
                found.add(name.split(".")[1])
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _part(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_reaches_up_a_layer(path):
    part = _part(path)
    wrong = _imports(path) - ALLOWED[part] - {part}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({part}) imports cpnet.{', cpnet.'.join(sorted(wrong))}"


def test_every_allowed_import_is_made():
    """The table lists only imports the code makes: a rule nobody needs any more is removed with its last use."""
    made: dict[str, set[str]] = {part: set() for part in ALLOWED}
    for path in MODULES:
        made[_part(path)] |= _imports(path) - {_part(path)}
    unused = {part: sorted(ALLOWED[part] - made[part]) for part in ALLOWED if ALLOWED[part] - made[part]}
    assert not unused, f"allowed but never imported: {unused}"


def test_the_rules_of_the_issue_hold():
    """Nothing under engine, models or convert imports the config, the app or the CLI; nothing under ops imports
    models; the engine does not import the data layer; the CLI imports only the application and the errors."""
    for part in ("engine", "models", "convert"):
        assert not ALLOWED[part] & {"app", "cli", "config"}
    assert ALLOWED["cli"] == {"app", "errors"}
    assert "models" not in ALLOWED["ops"] and "data" not in ALLOWED["engine"]
    assert not (PACKAGE / "config.py").exists(), "the config lives in the application layer"


def test_predict_imports_no_training_loop():
    """``cpnet predict`` loads a model and classifies: importing it pulls in neither the training loop (and its
    progress bars) nor the training and evaluation workflows."""
    import subprocess
    import sys

    unwanted = ("cpnet.engine.loop", "cpnet.app.train", "cpnet.app.evaluate")
    code = f"import sys, cpnet.app.predict; print(sorted(m for m in {unwanted!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=PACKAGE.parent)
    assert done.stdout.strip() == "[]"
