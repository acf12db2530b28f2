#!/usr/bin/env bash
# data_wait.sh: how long training steps wait for data with the prefetch thread, on the default CPU run (Tiny
# Shakespeare, char, preset tiny, B=12 T=64) for STEPS steps (default 200): the median, p99 and max of the log's
# data_wait_ms beside the median step_ms. --save writes the report to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-200}
make -s gptrain
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./gptrain prepare --input data/tinyshakespeare/input.txt --out "$tmp/data" >/dev/null
./gptrain train --data "$tmp/data" --steps "$STEPS" --eval-every 0 --eval-steps 1 --print-every 100000 \
    --log "$tmp/log.jsonl" --out "$tmp/out" >/dev/null
stats=$(/usr/bin/python3 - "$tmp/log.jsonl" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
d = sorted(x["data_wait_ms"] for x in r); s = sorted(x["step_ms"] for x in r)
print("data_wait_ms: median %.3f  p99 %.3f  max %.3f  (step_ms median %.1f, %d steps)"
      % (d[len(d) // 2], d[int(0.99 * (len(d) - 1))], d[-1], s[len(s) // 2], len(r)))
PY
)
report=$(cat <<EOT
benchmark: data_wait_ms with the prefetch thread, default run (tiny, B=12 T=64, char Tiny Shakespeare), warm cache
machine:   $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(date -u +%Y-%m-%d)
commit:    $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')
$stats
EOT
)
echo "$report"
if [ "${1:-}" = "--save" ]; then
    f=bench/results/data_wait-$(date -u +%Y%m%d)-$(git rev-parse --short HEAD).txt
    echo "$report" >"$f"
    echo "saved $f"
fi
