#!/usr/bin/env bash
# What cpnet does on a CUDA GPU, checked in one call on a bare machine: the CUDA tests of the kNN and the CP module,
# the speed tables (CPNet against C2D, the kNN against the bare matmul), short synthetic trainings with mixed
# precision (float16; bfloat16 with channels-last), a one-process NCCL DDP training, and an export run on the GPU.
#
#   bash scripts/gpu-check.sh            # run every step; GPU_CHECK_OUT=DIR: where the results go
#   bash scripts/gpu-check.sh --dry-run  # set up, show each step's command and check it would start; no GPU needed
#   bash scripts/gpu-check.sh --list     # the steps' names
#
# Needs only a python with torch (and numpy, Pillow, PyYAML, tqdm, matplotlib, safetensors, onnx, onnxruntime,
# pytest, hypothesis): $PYTHON, else .venv/bin/python when there is one, else python3. cpnet is used from this source
# tree (PYTHONPATH), never installed. PyAV is needed by no step; when it does not import and .whl/ holds an av wheel
# (README, "Check a GPU"), that wheel is installed offline into a temporary folder and put on PYTHONPATH.
#
# Each step has its own time limit and the whole run a budget (GPU_CHECK_BUDGET, default 470 s, so it ends within
# 8 minutes); a step that fails or times out does not stop the next. Into GPU_CHECK_OUT (default: a new temporary
# folder) go summary.txt, rewritten as each step starts and ends, and one log per step (its last 100 lines once it
# has ended): 8 files at most. Exit status: 0 all passed, 1 a step failed, 2 the set-up failed, 3 no CUDA device.
set -uo pipefail

STEPS=(cuda_tests speed_runtime speed_knn train_fp16 train_bf16_channels_last ddp_nccl export_cuda)
declare -A LIMIT=([cuda_tests]=80 [speed_runtime]=110 [speed_knn]=60 [train_fp16]=60 [train_bf16_channels_last]=45
                  [ddp_nccl]=60 [export_cuda]=45)  # seconds; budgets, not measurements
CONFIG=configs/synthetic/cpnet_8x32.yaml
LOG_LINES=100

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "gpu-check: $*" >&2; [ -z "${WORK:-}" ] || rm -rf "$WORK"; exit 2; }

MODE=run
case "${1:-}" in
    "") ;;
    --dry-run) MODE=dry ;;
    --list) printf '%s\n' "${STEPS[@]}"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT" || die "cannot enter $ROOT"
STARTED=$SECONDS
BUDGET=${GPU_CHECK_BUDGET:-470}

# ---- set-up: the python, cpnet from this tree, the results and work folders, PyAV -------------------------------
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python
else PY=python3
fi
command -v "$PY" >/dev/null || die "no python: '$PY' is not a command (set PYTHON)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t cpnet-gpu-check-out.XXXXXX)}
WORK=$(mktemp -d -t cpnet-gpu-check-work.XXXXXX) || die "cannot create a work folder"
mkdir -p "$OUT" || die "cannot create the results folder $OUT"

# One interpreter start (torch takes seconds to import): python and torch versions, where cpnet comes from, the GPU.
FACTS=$("$PY" -c '
import os, platform, torch, cpnet
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(platform.python_version(), torch.__version__, os.path.dirname(os.path.realpath(cpnet.__file__)), gpu, sep="\t")
' 2>"$WORK/facts.err") || die "$PY cannot import torch and cpnet: $(tail -n 1 "$WORK/facts.err")"
IFS=$'\t' read -r PYVER TORCH CPNET GPU <<<"${FACTS##*$'\n'}"
[ "$CPNET" = "$ROOT/cpnet" ] || die "$PY imports cpnet from '$CPNET', not from this tree ($ROOT/cpnet)"

setup_pyav() {  # sets PYAV to how PyAV stands; a brought wheel is installed offline when av does not import
    local wheel="" version
    if ! "$PY" -c 'import av' 2>/dev/null; then
        wheel=$(find .whl -maxdepth 1 -name 'av-*.whl' 2>/dev/null | sort -V | tail -n 1)
        if [ -z "$wheel" ]; then
            PYAV="PyAV not installed, no wheel in .whl/ (no step needs it: cpnet imports av only to open a video)"
            return
        fi
        if ! "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$WORK/site" \
                "$wheel" >"$WORK/pyav-install.log" 2>&1; then
            PYAV="PyAV not installed: $wheel did not install ($(tail -n 1 "$WORK/pyav-install.log"))"
            return
        fi
        export PYTHONPATH="$WORK/site:$PYTHONPATH"
    fi
    if version=$("$PY" -c 'import av; print(av.__version__)' 2>&1); then
        PYAV="PyAV $version${wheel:+ from $wheel (installed offline into $WORK/site)}"
    else
        PYAV="PyAV does not import: ${version##*$'\n'}"
    fi
}
setup_pyav

# ---- the steps: one command each --------------------------------------------------------------------------------
step_command() {  # sets CMD to step $1's command line
    local tiny=(--set data.root="$WORK/data" --set data.synthetic.num_train=270 --set data.synthetic.num_val=90
                --set train.epochs=1 --set train.device=cuda --set train.batch_size=18 --no-progress)
    case $1 in
        cuda_tests)  # every test marked cuda under tests/ops and tests/models: the kNN and the CP module on CUDA
            CMD=("$PY" -m pytest -q -ra -p no:cacheprovider -m cuda tests/ops tests/models) ;;
        speed_runtime)  # CPNet R34 against C2D R34 at the released Jester setting: inference and a training
            # step, each in float32 and in float16 autocast with channels-last (scripts/gpu_check.py SPEED_RUNS)
            CMD=("$PY" scripts/gpu_check.py speed "$WORK/bench") ;;
        speed_knn)  # cross_frame_knn against the bare matmul and the dense formulation, every benchmark size
            CMD=("$PY" benchmarks/knn.py --device cuda --repeats 3) ;;
        train_fp16)
            CMD=("$PY" -m cpnet train --config "$CONFIG" --out "$WORK/fp16" "${tiny[@]}" --set train.amp=true
                 --set train.amp_dtype=float16) ;;
        train_bf16_channels_last)
            CMD=("$PY" -m cpnet train --config "$CONFIG" --out "$WORK/bf16" "${tiny[@]}" --set train.amp=true
                 --set train.amp_dtype=bfloat16 --set train.channels_last=true) ;;
        ddp_nccl)  # one process, NCCL, SyncBatchNorm
            CMD=("$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m cpnet train --config "$CONFIG"
                 --out "$WORK/ddp" "${tiny[@]}" --set train.sync_bn=true) ;;
        export_cuda)  # TorchScript and ONNX of train_fp16's checkpoint; the TorchScript archive run on the GPU
            CMD=("$PY" scripts/gpu_check.py export "$WORK/fp16/checkpoint_last.pt" "$WORK/export") ;;
        *) die "no step '$1'" ;;
    esac
}

cpnet_args() {  # sets ARGS to what follows `-m cpnet` in CMD
    local i
    ARGS=()
    for ((i = 1; i < ${#CMD[@]}; i++)); do
        if [ "${CMD[i-1]}" = -m ] && [ "${CMD[i]}" = cpnet ]; then ARGS=("${CMD[@]:i+1}"); return; fi
    done
}

probe() {  # the dry run's check that step $1 would start: its program, module or script, and its arguments
    local name=$1
    step_command "$name"
    command -v "${CMD[0]}" >/dev/null || { echo "not a command: ${CMD[0]}"; return 1; }
    case $name in
        cuda_tests)
            "$PY" -m pytest -q -p no:cacheprovider --collect-only -m cuda tests/ops tests/models | tail -n 1 ;;
        speed_knn)
            "$PY" benchmarks/knn.py --help >/dev/null && echo "benchmarks/knn.py --help: ok" ;;
        speed_runtime)
            "$PY" scripts/gpu_check.py speed --dry-run "$WORK/bench" | tail -n 1 ;;
        ddp_nccl)
            "$PY" -m torch.distributed.run --help >/dev/null && echo "torch.distributed.run --help: ok" &&
                cpnet_args && "$PY" scripts/gpu_check.py parse -- "${ARGS[@]}" ;;
        export_cuda)
            "$PY" scripts/gpu_check.py export --help >/dev/null && "$PY" -m cpnet export --help >/dev/null &&
                echo "scripts/gpu_check.py export --help, python -m cpnet export --help: ok" ;;
        *)
            cpnet_args && "$PY" scripts/gpu_check.py parse -- "${ARGS[@]}" ;;
    esac
}

HEADER="gpu-check: python $PYVER ($PY), torch $TORCH
cpnet from $ROOT/cpnet (PYTHONPATH)
$PYAV
results in $OUT; work in $WORK"

declare -A STATUS
write_summary() {  # summary.txt as things stand; $1: a closing line
    {
        echo "$HEADER"
        local i name
        for i in "${!STEPS[@]}"; do
            name=${STEPS[i]}
            printf '  %d %-26s %s\n' $((i + 1)) "$name" "${STATUS[$name]:-pending}"
        done
        echo "${1:-}"
    } >"$OUT/summary.txt"
}

if [ "$MODE" = dry ]; then
    echo "$HEADER"
    failed=0
    for name in "${STEPS[@]}"; do
        step_command "$name"
        echo "== $name (limit ${LIMIT[$name]}s): $(printf '%q ' "${CMD[@]}")"
        if result=$(probe "$name" 2>&1); then STATUS[$name]="would start: ${result##*$'\n'}"
        else STATUS[$name]="WOULD FAIL: ${result##*$'\n'}"; failed=1
        fi
        echo "   ${STATUS[$name]}"
    done
    closing="dry run: $([ $failed = 0 ] && echo "every step would start" || echo "a step would FAIL to start");"
    closing+=" CUDA device: $GPU$([ "$GPU" = none ] && echo " (a real run here exits 3: no CUDA device)")"
    write_summary "$closing"
    echo "$closing"
    rm -rf "$WORK"
    exit $failed
fi

if [ "$GPU" = none ]; then
    write_summary "no CUDA device visible to torch $TORCH: nothing checked"
    echo "gpu-check: no CUDA device visible to torch ($TORCH): nothing to check" >&2
    rm -rf "$WORK"
    exit 3
fi
HEADER+=$'\n'"GPU: $GPU; budget ${BUDGET}s"
echo "$HEADER"
export CPNET_REQUIRE_CUDA=1  # tests/conftest.py: the cuda tests must run, not skip

# ---- the run: each step under its own limit, within the budget; results written as they come ----------------------
failed=0
for i in "${!STEPS[@]}"; do
    name=${STEPS[i]}
    log="$OUT/$((i + 1))-$name.log"
    left=$((BUDGET - (SECONDS - STARTED) - 5))  # 5 s for a kill after the limit
    limit=$((left < LIMIT[$name] ? left : LIMIT[$name]))
    if [ "$left" -lt 10 ]; then
        STATUS[$name]="SKIPPED (budget spent)"; failed=1; write_summary; continue
    fi
    step_command "$name"
    STATUS[$name]="running (limit ${limit}s)"; write_summary
    echo "== $name (limit ${limit}s): $(printf '%q ' "${CMD[@]}")"
    echo "\$ $(printf '%q ' "${CMD[@]}")" >"$log"
    start=$SECONDS
    timeout -k 5 "$limit" "${CMD[@]}" >>"$log" 2>&1
    rc=$?
    took=$((SECONDS - start))
    case $rc in
        0) STATUS[$name]="ok        ${took}s" ;;
        124|137) STATUS[$name]="TIMEOUT   ${took}s (limit ${limit}s)"; failed=1 ;;
        *) STATUS[$name]="FAILED    ${took}s (exit $rc)"; failed=1 ;;
    esac
    cp "$log" "$WORK/$name.log"
    tail -n "$LOG_LINES" "$WORK/$name.log" >"$log"
    write_summary
    tail -n 15 "$log"
done

closing="$([ $failed = 0 ] && echo "all ${#STEPS[@]} steps passed" || echo "NOT all passed: see above");"
closing+=" $((SECONDS - STARTED))s in all"
write_summary "$closing"
echo
cat "$OUT/summary.txt"
exit $failed
