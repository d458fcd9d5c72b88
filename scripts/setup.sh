#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with the CPU build of torch 2.13.0 and cpnet installed.
# torch is installed first, pinned, so the range in pyproject.toml is already satisfied and no CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
