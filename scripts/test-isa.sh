#!/usr/bin/env bash
# The numerically sensitive tests (ops, models with the pair MLP, the TensorFlow parity, the demo's quick run)
# again, with torch, oneDNN and MKL held to a narrower instruction set than this CPU may have, as on other machines:
# AVX2 (the common AMD/older Intel cloud CPU), then torch's portable "default" kernels. Results may round
# differently there; the tests must hold for every valid rounding. Extra arguments go to pytest.
# The robustness cases (attacks, injected failures) test no arithmetic and run once, in the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
SENSITIVE=(tests/ops tests/models tests/convert tests/app/test_demo.py)
echo "== AVX2 emulation: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2"
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    .venv/bin/python -m pytest -q -p no:cacheprovider -m "not robustness" "${SENSITIVE[@]}" "$@"
echo "== portable kernels: ATEN_CPU_CAPABILITY=default"
ATEN_CPU_CAPABILITY=default .venv/bin/python -m pytest -q -p no:cacheprovider -m "not robustness" tests/ops "$@"
