"""The package's layers, read from its own imports (every ``import cpnet…`` in every module, function-level ones
included): data flows one way, CLI → app → engine / data / reports → models → ops, and nothing reaches back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cpnet"

# What each part of cpnet may import from the rest of cpnet (besides itself). The bottom modules (batch, errors,
# files, metrics) import nothing of cpnet; "cpnet" is the top-level package itself.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "batch": set(),
    "files": set(),
    "metrics": set(),
    "ops": set(),
    "models": {"ops", "errors", "files"},
    "data": {"batch", "errors", "files"},
    "engine": {"batch", "errors", "files", "metrics"},
    "reports": {"models", "ops", "metrics", "batch", "errors", "files"},
    "export": {"models", "ops", "errors", "files"},
    "convert": {"app", "data", "engine", "models", "errors", "files"},
    "app": {"cpnet", "data", "engine", "models", "ops", "reports", "metrics", "batch", "errors", "files"},
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
            names = [node.module or ""]
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


def test_the_rules_of_the_issue_hold():
    """Nothing under engine or models imports the config, the app or the CLI; nothing under ops imports models;
    the engine does not import the data layer."""
    for part in ("engine", "models"):
        assert not ALLOWED[part] & {"app", "cli", "config"}
    assert "models" not in ALLOWED["ops"] and "data" not in ALLOWED["engine"]
    assert not (PACKAGE / "config.py").exists(), "the config lives in the application layer"
