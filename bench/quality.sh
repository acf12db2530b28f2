#!/usr/bin/env bash
# quality.sh: the training-quality benchmark: nanoGPT's CPU Shakespeare configuration (the ./run.sh default:
# 4L 4H d128, context 64, batch 12, 2000 steps, lr 1e-3 cosine to 1e-4, warmup 100, beta2 0.99, wd 0.1, clip 1.0)
# trained by gptrain for each seed in SEEDS (default "1337"), and, with TORCH=1, the same model trained by the
# PyTorch reference (tests/ref/gpt_ref.py --bench --eval). Prints each final validation loss over the whole val split.
# Takes ~4 minutes per gptrain seed and ~8-15 per PyTorch run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-1337}
make -s gptrain
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./gptrain prepare --input data/tinyshakespeare/input.txt --out "$tmp/data" --tokenizer char --val-fraction 0.1 >/dev/null
echo "quality: commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
for s in $SEEDS; do
    ./gptrain train --data "$tmp/data" --seed "$s" --eval-every 0 --print-every 100000 --out "$tmp/out$s" >"$tmp/log$s"
    echo "gptrain seed $s: $(grep '^done:' "$tmp/log$s")"
done
if [ "${TORCH:-0}" = 1 ]; then
    echo "pytorch seed 1337: $(/usr/bin/python3 tests/ref/gpt_ref.py --bench --eval --data "$tmp/data" --steps 2000 --threads "$(nproc)")"
fi
