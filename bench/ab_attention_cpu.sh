#!/usr/bin/env bash
# ab_attention_cpu.sh: naive against flash attention on the CPU, measured with the lab itself (gptrain ab):
#   1. the default configuration (./run.sh: L=4, NH=4, C=128, T=64, B=12), where the (B,NH,T,T) buffers are small;
#   2. the same model at T = 1024, B = 2, where they are 4 x 2 x 4 x 1024^2 x 4 bytes = 128 MiB per forward (and a
#      copy for the backward's scratch) and flash keeps 32 KiB of logsumexp instead.
# 3 interleaved trial pairs of 2 warm-up + 8 measured steps each. --save writes
# bench/results/ab_attention_cpu-<date>-<commit>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    "" | --save) ;;
    *) echo "ab_attention_cpu.sh: $1: unknown argument (expected --save or nothing)" >&2; exit 2 ;;
esac
make -s gptrain
W=build/bench-ab-attention
mkdir -p "$W"
./gptrain prepare --input data/tinyshakespeare/input.txt --out "$W/data" >/dev/null
{
    echo "benchmark: naive vs flash attention on the CPU (bench/ab_attention_cpu.sh), $(date -u +%Y-%m-%d)"
    echo "machine:   $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs"
    echo "commit:    $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
    echo
    echo "== T=64, B=12 (the ./run.sh configuration)"
    ./gptrain ab --data "$W/data" --a "--attention naive" --b "--attention flash" --trials 3 --steps 8 --warmup 2
    echo
    echo "== T=1024, B=2 (--max-seq-len 1024)"
    ./gptrain ab --data "$W/data" --max-seq-len 1024 --seq-len 1024 --batch 2 --a "--attention naive" \
        --b "--attention flash" --trials 3 --steps 8 --warmup 2
} 2>&1 | tee "$W/report.txt"
if [ "${1:-}" = "--save" ]; then
    f=bench/results/ab_attention_cpu-$(date -u +%Y%m%d)-$(git rev-parse --short HEAD).txt
    cp "$W/report.txt" "$f"
    echo "saved $f"
fi
