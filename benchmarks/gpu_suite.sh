#!/usr/bin/env bash
# The GPU measurements of the performance issue in one unattended run, most important first. Each step writes its
# JSON report and log under OUT as soon as it ends and has its own time limit, so a run cut short still leaves
# the steps before. Run from the project root on a machine with one GPU:
#
#   OUT=/tmp/gpu OFFICIAL_REPO=~/synergize-motion-appearance bash benchmarks/gpu_suite.sh
#
# OFFICIAL_REPO (a clone of ShaelynZ/synergize-motion-appearance, with torch installed) adds the official
# PyTorch frames/s on the same card; STEP_TIMEOUT (seconds, default 240) limits each step. CONFIG, BATCH and
# LARGE_BATCH (default configs/paper.py, 16 and 64) shrink it for a smoke run:
#
#   CONFIG=configs/tiny.py BATCH=2 LARGE_BATCH=4 OUT=/tmp/smoke bash benchmarks/gpu_suite.sh
set -u
OUT=${OUT:-benchmarks/results/gpu_suite}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
CONFIG=${CONFIG:-configs/paper.py}
BATCH=${BATCH:-16}
LARGE_BATCH=${LARGE_BATCH:-64}
mkdir -p "$OUT"

step() {
  local name=$1
  shift
  local start=$SECONDS
  timeout "$STEP_TIMEOUT" "$@" --config "$CONFIG" --out "$OUT/$name.json" >"$OUT/$name.log" 2>&1
  local status=$?
  echo "$name: exit $status after $((SECONDS - start)) s"
  grep -E "s  median|device time per call|wall time per call" "$OUT/$name.log" | head -n 4
}

python -c "import jax; print(jax.devices()[0].device_kind, 'jax', jax.__version__)"
infer="python benchmarks/inference.py --batch-sizes $BATCH,$LARGE_BATCH --repeats 5"
train="python benchmarks/train_step.py --batch-sizes $BATCH --repeats 3"
profile="python benchmarks/op_profile.py --batch-size $BATCH --dtype bfloat16 --depth 2"
step inference_bf16_xla $infer --dtypes bfloat16 --attention xla
step inference_bf16_pallas $infer --dtypes bfloat16 --attention pallas
step profile_inference_bf16_xla $profile --what inference --attention xla
step train_bf16_xla $train --dtypes bfloat16 --attention xla
step train_bf16_pallas $train --dtypes bfloat16 --attention pallas
step profile_inference_bf16_pallas $profile --what inference --attention pallas
if [ -n "${OFFICIAL_REPO:-}" ]; then
  step inference_official $infer --dtypes float32,bfloat16 --attention pallas --official-repo "$OFFICIAL_REPO"
fi
step profile_train_bf16_xla $profile --what train --attention xla
