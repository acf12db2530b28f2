#!/bin/sh
# test_untrusted.sh: inputs gptrain must not trust. Model sizes past the config's caps (a d_model whose 4*C overflows
# an int, from a flag or from an edited model file header), a model above 1e12 parameters and a plan above 2^60 bytes
# are one-line errors; `info` with B*T above 2^31 reports tokens/s without an int overflow.
# Run from the repository root after `make`.
. tests/lib.sh

D=$T/data
head -c 20000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$D" >"$T/prep" 2>&1 || bad "prepare" "$(tail -3 "$T/prep")"
$G train --data "$D" --preset micro --batch 2 --seq-len 32 --steps 2 --eval-every 0 --eval-steps 1 --threads 2 \
    --out "$T/run" >"$T/run.out" 2>&1 && [ -f "$T/run/model.bin" ] \
    && ok "a micro model trained for 2 steps: $(wc -c <"$T/run/model.bin") bytes" || bad "train" "$(tail -3 "$T/run.out")"

# edit_header SRC DST OFFSET VALUES...: DST is SRC with int32 header fields from word OFFSET on replaced by VALUES.
edit_header() {
    /usr/bin/python3 - "$@" <<'PY'
import struct, sys
src, dst, off, vals = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(v) for v in sys.argv[4:]]
b = bytearray(open(src, "rb").read())
struct.pack_into("<%di" % len(vals), b, 4 * off, *vals)
open(dst, "wb").write(b)
PY
}
mkdir -p "$T/bad"
cp "$T/run/tokenizer.txt" "$T/bad/"
edit_header "$T/run/model.bin" "$T/bad/wide.bin" 5 1 536870912      # header[5..6] = NH, C: 4*C overflows an int

# ---- model sizes, from flags and from a file header: capped before any arithmetic ----
expect_error "a header with C=536870912 (4*C overflows) names the cap" 2 \
    "wide.bin: header describes an invalid model (--d-model 536870912: expected 1..1048576)" \
    timeout 5 $G train --data "$D" --init-from "$T/bad/wide.bin" --steps 1 --threads 2 --out "$T/x3"

expect_error "--d-model 536870912 --n-head 1" 2 "\-\-d-model 536870912: expected 1..1048576" \
    timeout 5 $G train --data "$D" --preset micro --d-model 536870912 --n-head 1 --steps 1 --threads 2 --out "$T/x5"
expect_error "--n-layer 65537" 2 "\-\-n-layer 65537: expected 1..65536" \
    timeout 5 $G info --preset micro --vocab-size 65 --n-layer 65537
expect_error "a model above 1e12 parameters" 2 "a model of 5.278e+13 parameters (L=65536 C=8192 .*expected at most 1e+12" \
    timeout 5 $G info --preset micro --vocab-size 65 --n-layer 65536 --d-model 8192 --n-head 1
expect_error "a plan above 2^60 bytes (B*NH*T*T would wrap a size_t)" 2 \
    "\-\-batch 1000000 --seq-len 16777216: the plan needs 6.76e+21 bytes, more than the" \
    timeout 5 $G info --preset micro --vocab-size 65 --batch 1000000 --max-seq-len 16777216

# ---- info with B*T = 2^32 tokens: the roofline's tokens/s is B*T / t, not an int that wrapped to 0 ----
timeout 10 $G info --preset micro --vocab-size 65 --batch 65536 --seq-len 65536 --max-seq-len 65536 >"$T/info" 2>&1
/usr/bin/python3 - "$T/info" <<'PY' >"$T/py" 2>&1 && ok "info --batch 65536 --seq-len 65536: $(cat "$T/py")" || bad "info B*T" "$(cat "$T/py")"
import re, sys
m = re.search(r"roofline lower bound per micro-step \(B=65536, T=65536\): ([\d.]+) ms .*; (-?\d+) tokens/s at best",
              open(sys.argv[1]).read())
assert m, open(sys.argv[1]).read()[-600:]
ms, tok = float(m.group(1)), float(m.group(2))
want = 65536.0 * 65536 / (ms / 1e3)
assert abs(tok - want) <= 1e-4 * want, f"{tok:.0f} tokens/s printed, B*T/t = {want:.0f}"
print(f"{tok:.0f} tokens/s = B*T / {ms} ms")
PY

finish
