#!/usr/bin/env bash
# tokenizer.sh: GPT-2 BPE encoding speed, gptrain's C tokenizer beside OpenAI's encoder.py algorithm (the Python
# oracle tests/ref/bpe_ref.py, which needs the `regex` module: PYTHON=... to choose the interpreter) on the same text
# (default the vendored Tiny Shakespeare, 1.1 MB), in one run; both with an empty cache, 5 runs, best of each.
# The token sequences are compared (sha256 of the ids), so the two do the same work. --save writes bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
TEXT=${TEXT:-data/tinyshakespeare/input.txt}
PYTHON=${PYTHON:-python3}
$PYTHON -c 'import regex' 2>/dev/null || { echo "bench: $PYTHON cannot import regex (pip install regex, or PYTHON=...)" >&2; exit 1; }
make -s gptrain
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
best_c=
for i in 1 2 3 4 5; do
    s=$(./gptrain prepare --input "$TEXT" --out "$tmp/d" --tokenizer gpt2 | sed -n 's/.*encoded in \([0-9.]*\) s.*/\1/p')
    best_c=$(printf '%s\n%s\n' "$s" "${best_c:-$s}" | sort -g | head -1)
done
ours_sha=$($PYTHON - "$tmp/d" <<'PY'
import hashlib, sys
t = b"".join(open(f"{sys.argv[1]}/{s}_000000.bin", "rb").read()[1024:] for s in ("train", "val"))
print(len(t) // 2 - 1, hashlib.sha256(t[2:]).hexdigest())   # drop the leading <|endoftext|>
PY
)
theirs=$($PYTHON - "$TEXT" <<'PY'
import hashlib, struct, sys, time
sys.path.insert(0, "tests/ref")
import bpe_ref
text = open(sys.argv[1], "rb").read()
best = None
for _ in range(5):
    enc = bpe_ref.Encoder("data/gpt2")          # a fresh cache each run, as gptrain starts with
    t0 = time.perf_counter(); ids = enc.encode(text); dt = time.perf_counter() - t0
    best = dt if best is None else min(best, dt)
print("%.4f %d %s" % (best, len(ids), hashlib.sha256(struct.pack("<%dH" % len(ids), *ids)).hexdigest()))
PY
)
read -r best_py n_py sha_py <<<"$theirs"
read -r n_c sha_c <<<"$ours_sha"
bytes=$(stat -c %s "$TEXT")
report=$(cat <<EOT
benchmark: GPT-2 BPE encode of $TEXT ($bytes bytes), best of 5, cold cache per run
machine:   $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(date -u +%Y-%m-%d)
commit:    $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')
gptrain (C, data/gpt2_bpe.c):            $best_c s  $(awk "BEGIN{printf \"%.1f\", $bytes/1e6/$best_c}") MB/s  $n_c tokens
encoder.py algorithm (Python $($PYTHON -c 'import regex,sys;print(sys.version.split()[0], "regex", regex.__version__)')): $best_py s  $(awk "BEGIN{printf \"%.2f\", $bytes/1e6/$best_py}") MB/s  $n_py tokens
same ids:  $([ "$sha_c" = "$sha_py" ] && echo yes || echo "NO ($sha_c vs $sha_py)")
ratio:     gptrain is $(awk "BEGIN{printf \"%.1f\", $best_py/$best_c}")x faster
EOT
)
echo "$report"
if [ "${1:-}" = "--save" ]; then
    f=bench/results/tokenizer-$(date -u +%Y%m%d)-$(git rev-parse --short HEAD).txt
    echo "$report" >"$f"
    echo "saved $f"
fi
