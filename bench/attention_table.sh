#!/usr/bin/env bash
# attention_table.sh: the course notes' attention table (bench/attention_table.c): causal attention alone, naive and
# flash, one head of size d = 16, 32, 64, 128 over T = 256 .. 16384: forward and backward ms (mean +- std over 3
# calls after 1 warm-up), the op's memory, and "OOM (needs X)" rows where the plan exceeds 1 GiB (the naive
# (B,NH,T,T) matrices at T = 16384). On the CPU (a few minutes on 2 cores); on the GPU too (up to T = 16384 for both,
# within its free memory) when `nvidia-smi -L` sees one and the binary was built with CUDA. --save writes
# bench/results/attention_table-<date>-<commit>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    "" | --save) ;;
    *) echo "attention_table.sh: $1: unknown argument (expected --save or nothing)" >&2; exit 2 ;;
esac
make -s build/bench/attention_table >&2
bin=build/bench/attention_table
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty')
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
{
    echo "benchmark: attention table (bench/attention_table.sh), $(date -u +%Y-%m-%d), commit $commit, $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo
    "$bin" --device cpu --d 16,32,64,128 --seq-len 256,1024,4096,8192,16384 --warmup 1 --reps 3 --memory-gib 1
    if nvidia-smi -L >/dev/null 2>&1 && "$bin" --device cuda --d 16 --seq-len 16 --reps 2 --warmup 0 >/dev/null 2>&1; then
        echo
        "$bin" --device cuda --d 16,32,64,128 --seq-len 256,1024,4096,8192,16384 --warmup 2 --reps 10
    else
        echo
        echo "gpu: skipped ($(nvidia-smi -L >/dev/null 2>&1 && echo 'binary built without CUDA' || echo 'nvidia-smi -L sees no GPU'))"
    fi
    echo
    echo "elapsed: $(($(date +%s) - start)) s"
} | tee "$tmp"
if [ "${1:-}" = "--save" ]; then
    f=bench/results/attention_table-$(date -u +%Y%m%d)-${commit%+dirty}.txt
    cp "$tmp" "$f"
    echo "saved: $f"
fi
