#!/usr/bin/env bash
# vs_pytorch.sh: gptrain beside PyTorch on the same work, in one run: nanoGPT's CPU Shakespeare configuration
# (4 layers, 4 heads, d_model 128, context 64, batch 12, AdamW lr 1e-3 warmup 100 cosine to 1e-4, beta2 0.99,
# weight decay 0.1, clip 1.0) for STEPS steps (default 300) on THREADS threads (default: all cores), fp32 both.
# The PyTorch side is tests/ref/gpt_ref.py --bench (Debian's torch, its BLAS). Reports tokens/s of each as the median
# step after 10 warm-up steps, and the ratio. --save writes the report to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
THREADS=${THREADS:-$(nproc)}
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "bench: /usr/bin/python3 cannot import torch (apt-get install python3-torch)" >&2; exit 1; }
make -s gptrain
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./gptrain prepare --input data/tinyshakespeare/input.txt --out "$tmp/data" --tokenizer char --val-fraction 0.1 >/dev/null
cfg=(--n-layer 4 --n-head 4 --d-model 128 --seq-len 64 --batch 12 --steps "$STEPS" --lr 1e-3 --min-lr 1e-4
     --warmup-steps 100 --beta2 0.99 --weight-decay 0.1 --grad-clip 1.0)
./gptrain train --data "$tmp/data" "${cfg[@]}" --eval-every 0 --eval-steps 1 --threads "$THREADS" --print-every 100000 \
    --log "$tmp/gptrain.jsonl" --out "$tmp/out" >"$tmp/gptrain.log"
ours=$(/usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in open('$tmp/gptrain.jsonl')]
t = sorted(r['tokens_per_s'] for r in rows[10:] or rows)
print('%.1f' % t[len(t) // 2])")
theirs=$(/usr/bin/python3 tests/ref/gpt_ref.py --bench --data "$tmp/data" "${cfg[@]}" --threads "$THREADS" |
         /usr/bin/python3 -c "import json, sys; print('%.1f' % json.load(sys.stdin)['tokens_per_s'])")
report=$(cat <<EOT
benchmark: nanoGPT CPU Shakespeare config (4L 4H d128 T64 B12, AdamW, fp32), $STEPS steps, $THREADS threads
machine:   $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(date -u +%Y-%m-%d)
commit:    $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')
torch:     $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')
gptrain:   $ours tokens/s (median step after 10 warm-up steps)
pytorch:   $theirs tokens/s (median step after 10 warm-up steps)
ratio:     $(/usr/bin/python3 -c "print('%.2fx' % ($ours / $theirs))") (gptrain / pytorch)
EOT
)
echo "$report"
if [ "${1:-}" = --save ]; then
    mkdir -p bench/results
    f="bench/results/vs_pytorch-$(date -u +%Y%m%d)-$(git rev-parse --short HEAD).txt"
    echo "$report" >"$f"
    echo "saved: $f"
fi
