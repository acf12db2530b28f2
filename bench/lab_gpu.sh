#!/usr/bin/env bash
# lab_gpu.sh: the performance lab's device results in one call (issue 7's GPU part):
#   bash bench/lab_gpu.sh [--save]        (env: STEPS=10 WARMUP=3)
#   1. gptrain bench --sweep recompute=none,selective,full --sweep batch=8,16,32,64 for GPT-2 124M at T = 1024 on
#      the GPU (bf16, flash attention): tokens/s, MFU/HFU, the planner's memory beside the measured device memory;
#      configurations the planner says cannot fit are reported as OOM without being launched;
#   2. the course table (gptrain bench --course): forward/backward ms, mean and std, with 0 and with WARMUP warm-up
#      steps, for the presets small, medium, large, xl, 2.7b at B = 1, T = 1024;
#   3. gptrain plan for the same 124M configuration (predicted memory per recompute mode, largest batch, roofline).
# The planner's OOM check uses the GPU's free memory less 1.5 GiB (context and workspaces) as --memory-gib.
# Prints the machine (nvidia-smi -L) and the commit; --save writes everything to bench/results/lab_gpu-<date>-<commit>.txt.
# Without a GPU it says so and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
case "${1:-}" in
    "" | --save) ;;
    *) echo "lab_gpu.sh: $1: unknown argument (expected --save or nothing)" >&2; exit 2 ;;
esac
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/lab_gpu: skipped: no GPU (nvidia-smi -L sees none)"
    exit 0
fi
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
W=build/bench-lab-gpu
mkdir -p "$W"
make -s gptrain || { echo "bench/lab_gpu: build failed" >&2; exit 1; }
. bench/python.sh
# Random GPT-2 token ids for the largest batch of the sweep (Tiny Shakespeare's GPT-2 val split, ~33.8K tokens, is
# smaller than one batch of 64 x 1024).
"$PY" bench/synthetic_shards.py --out "$W/data" --train-tokens $((64 * 1024 * (STEPS + WARMUP + 2) + 1)) \
    --val-tokens $((64 * 1024 + 1)) || exit 1
# The memory to plan for: the GPU's free memory less 1.5 GiB for the CUDA context and cuBLAS workspaces of each run,
# so the planner reports what cannot fit as OOM without launching it.
MEM_GIB=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits -i 0 | awk '{printf "%.1f", $1 / 1024 - 1.5}')
BASE="--data $W/data --device cuda --precision bf16 --seq-len 1024 --steps $STEPS --warmup $WARMUP --memory-gib $MEM_GIB"
{
    echo "benchmark: performance lab on the GPU (bench/lab_gpu.sh), $(date -u +%Y-%m-%d)"
    echo "machine:   $(nvidia-smi -L | sed 's/ (UUID: [^)]*)//' | paste -sd';' -)"
    echo "commit:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty')"
    echo
    echo "== gptrain plan --preset gpt2-124m --batch 16 --seq-len 1024 --device cuda --attention flash --memory-gib $MEM_GIB"
    ./gptrain plan --preset gpt2-124m --batch 16 --seq-len 1024 --device cuda --attention flash --memory-gib "$MEM_GIB" 2>&1
    echo
    echo "== sweep: GPT-2 124M, recompute x batch"
    # shellcheck disable=SC2086
    ./gptrain bench $BASE --preset gpt2-124m --sweep recompute=none,selective,full --sweep batch=8,16,32,64 \
        --csv "$W/sweep.csv" 2>&1
    echo
    echo "== course table: presets at B=1, T=1024"
    # shellcheck disable=SC2086
    ./gptrain bench $BASE --batch 1 --course 2>&1
} | tee "$W/report.txt"
if [ "${1:-}" = "--save" ]; then
    f=bench/results/lab_gpu-$(date -u +%Y%m%d)-$(git rev-parse --short HEAD 2>/dev/null || echo unknown).txt
    cp "$W/report.txt" "$f"
    echo "saved $f"
fi
