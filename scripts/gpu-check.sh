#!/usr/bin/env bash
# What cpnet does on a CUDA GPU, checked in one go (under 5 minutes on one GPU): the CUDA tests, the kNN on CUDA
# against the bare matmul and the dense formulation at the benchmark's sizes, short synthetic trainings with mixed
# precision (float16, bfloat16) and channels-last, a one-process NCCL DDP training under torchrun, and an export
# run on CUDA; then one summary. Every step runs even when an earlier one fails; the exit status is 1 if any failed.
#
#   bash scripts/gpu-check.sh          # needs .venv (bash scripts/setup.sh) with a CUDA build of torch
#   bash scripts/gpu-check.sh --list   # the steps, without running them
#
# Without a CUDA device it says so and exits with status 3 (nothing was checked).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=${GPU_CHECK_DIR:-$(mktemp -d -t cpnet-gpu-check.XXXXXX)}
STEPS=(cuda_tests knn_bench train_fp16 train_bf16_channels_last ddp_nccl export_cuda)

if [ "${1:-}" = "--list" ]; then
    printf '%s\n' "${STEPS[@]}"
    exit 0
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu-check: no CUDA device visible to torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1)):" \
         "nothing to check" >&2
    exit 3
fi

CONFIG=configs/synthetic/cpnet_8x32.yaml
TINY=(--set data.root="$WORK/data" --set data.synthetic.num_train=270 --set data.synthetic.num_val=90
      --set train.epochs=1 --set train.device=cuda --set train.batch_size=18 --no-progress)
declare -A STATUS SECONDS_TAKEN

cuda_tests() {  # the ops (the kNN's CUDA case among them) and the distributed tests, NCCL/SyncBatchNorm included
    "$PY" -m pytest -q -p no:cacheprovider tests/ops tests/test_distributed.py
}
knn_bench() {  # cross_frame_knn vs the bare matmul and the dense formulation, every benchmark size
    "$PY" benchmarks/knn.py --device cuda --repeats 3
}
train_fp16() {
    .venv/bin/cpnet train --config "$CONFIG" --out "$WORK/fp16" "${TINY[@]}" --set train.amp=true \
        --set train.amp_dtype=float16
}
train_bf16_channels_last() {
    .venv/bin/cpnet train --config "$CONFIG" --out "$WORK/bf16" "${TINY[@]}" --set train.amp=true \
        --set train.amp_dtype=bfloat16 --set train.channels_last=true
}
ddp_nccl() {
    .venv/bin/torchrun --standalone --nproc_per_node 1 -m cpnet train --config "$CONFIG" --out "$WORK/ddp" \
        "${TINY[@]}" --set train.sync_bn=true
}
export_cuda() {
    .venv/bin/cpnet export --checkpoint "$WORK/fp16/checkpoint_last.pt" --format torchscript \
        --out "$WORK/model.torchscript.pt" && "$PY" - "$WORK/model.torchscript.pt" <<'EOF'
import sys, torch
model = torch.jit.load(sys.argv[1], map_location="cuda")
out = model(torch.randn(2, 3, 8, 32, 32, device="cuda"))
assert out.is_cuda and out.shape[0] == 2 and torch.isfinite(out).all(), out
print("TorchScript export runs on", torch.cuda.get_device_name(0), "->", tuple(out.shape))
EOF
}

echo "gpu-check: $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'); work in $WORK"
for step in "${STEPS[@]}"; do
    echo "== $step"
    start=$(date +%s)
    if "$step" > "$WORK/$step.log" 2>&1; then STATUS[$step]=ok; else STATUS[$step]=FAILED; fi
    SECONDS_TAKEN[$step]=$(( $(date +%s) - start ))
    tail -n 15 "$WORK/$step.log"
done

echo
echo "gpu-check summary (logs in $WORK):"
failed=0
for step in "${STEPS[@]}"; do
    printf '  %-28s %-7s %4ss\n' "$step" "${STATUS[$step]}" "${SECONDS_TAKEN[$step]}"
    [ "${STATUS[$step]}" = ok ] || failed=1
done
exit $failed
