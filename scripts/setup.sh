#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with torch 2.13.0 and cpnet installed.
# torch is installed first, pinned, so the range in pyproject.toml is already satisfied and installing cpnet pulls no
# other torch. On this project's machines pip's configuration serves the CPU wheel of 2.13.0 from local disk; on
# other machines PyPI's default torch wheel for Linux is the CUDA build: to get the CPU build there, run with
# TORCH_INDEX_URL set to PyTorch's CPU wheel index (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extra=()
[ -n "${TORCH_INDEX_URL:-}" ] && extra=(--extra-index-url "$TORCH_INDEX_URL")
.venv/bin/python -m pip install -q --disable-pip-version-check "${extra[@]}" "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
