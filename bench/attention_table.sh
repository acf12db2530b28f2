#!/usr/bin/env bash
# attention_table.sh: the course notes' attention table (bench/attention_table.c): causal attention alone, naive and
# flash, one head of size d = 16, 32, 64, 128 over T = 256 .. 16384: forward and backward ms (mean +- std over 3
# calls after 1 warm-up), the op's memory, and "OOM (needs X)" rows where the plan exceeds 1 GiB (the naive
# (B,NH,T,T) matrices at T = 16384). On the CPU (a few minutes on 2 cores); on the GPU too (up to T = 16384 for both,
# within its free memory) when `nvidia-smi -L` sees one and the binary was built with CUDA. --save writes
# bench/results/attention_table-<date>-<commit>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/report.sh
report_args attention_table "$@"
make -s build/bench/attention_table >&2
bin=build/bench/attention_table
report() {
    echo "benchmark: attention table (bench/attention_table.sh), $(date -u +%Y-%m-%d), commit $COMMIT, $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo
    "$bin" --device cpu --d 16,32,64,128 --seq-len 256,1024,4096,8192,16384 --warmup 1 --reps 3 --memory-gib 1
    echo
    if nvidia-smi -L >/dev/null 2>&1 && "$bin" --device cuda --d 32 --seq-len 16 --reps 2 --warmup 0 >/dev/null 2>&1; then
        "$bin" --device cuda --d 16,32,64,128 --seq-len 256,1024,4096,8192,16384 --warmup 2 --reps 10
    else
        echo "gpu: skipped ($(gpu_skip_reason))"
    fi
}
report_run attention_table report
