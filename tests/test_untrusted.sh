#!/bin/sh
# test_untrusted.sh: inputs gptrain must not trust. A model file whose header was edited (L=20000 on a 442 KB file, a
# width whose model would need 412 GB) is refused from its size, at once and without allocating, by sample and by
# train --init-from; a FIFO given as a model file is refused instead of waited on; model sizes past the config's caps
# (a d_model whose 4*C overflows an int, from a flag or from a header), a model above 1e12 parameters and a plan above
# 2^60 bytes are one-line errors; `info` with B*T above 2^31 reports tokens/s without an int overflow; `ab` with a
# TMPDIR holding quotes removes its own temporary directory and nothing else.
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
edit_header "$T/run/model.bin" "$T/bad/layers.bin" 4 20000          # header[4] = L
edit_header "$T/run/model.bin" "$T/bad/wide.bin" 5 1 536870912      # header[5..6] = NH, C: 4*C overflows an int
edit_header "$T/run/model.bin" "$T/bad/big.bin" 5 1 65536           # C = 65536: 1e11 parameters, within the caps

# ---- a header is checked against the file's size before anything is allocated ----
# Each refusal runs under a 5 s timeout (the unchecked header took 12 s and 15.8 GB before refusing).
expect_error "sample --checkpoint with header L=20000 on a 442368-byte file" 2 \
    "layers.bin: 442368 bytes, but its header (L=20000 NH=2 C=64 F=256 V=[0-9]* maxT=32, fp32) needs 3998[0-9]* bytes: truncated or not a model file" \
    timeout 5 $G sample --checkpoint "$T/bad/layers.bin" --tokens 1 --threads 2
expect_error "train --init-from with header L=20000" 2 "^gptrain: error: --init-from: .*layers.bin: 442368 bytes, but its header (L=20000" \
    timeout 5 $G train --data "$D" --init-from "$T/bad/layers.bin" --steps 1 --threads 2 --out "$T/x1"
# Peak memory of that refusal against a plain refusal to open a missing file (the binary's own start-up, CUDA libraries
# included): within 100 MB.
if [ -x /usr/bin/time ]; then
    rss() { /usr/bin/time -f %M -o "$T/rss" timeout 5 "$@" >/dev/null 2>&1; tail -n 1 "$T/rss"; }
    r0=$(rss $G sample --checkpoint "$T/missing.bin" --tokens 1 --threads 2)
    r1=$(rss $G sample --checkpoint "$T/bad/layers.bin" --tokens 1 --threads 2)
    r2=$(rss $G train --data "$D" --init-from "$T/bad/layers.bin" --steps 1 --threads 2 --out "$T/x2")
    [ "$r1" -lt $((r0 + 102400)) ] && [ "$r2" -lt $((r0 + 102400)) ] \
        && ok "the L=20000 refusals peak at ${r1} KB (sample) and ${r2} KB (train) RSS, start-up alone ${r0} KB" \
        || bad "refusal memory" "sample ${r1} KB, train ${r2} KB, start-up ${r0} KB"
else
    ok "refusal memory: skipped: no /usr/bin/time"
fi
expect_error "a header with C=65536 (412 GB of weights) is refused by size, not by a failed allocation" 2 \
    "big.bin: 442368 bytes, but its header (L=2 NH=1 C=65536 F=262144 .*) needs 412366144512 bytes: truncated" \
    timeout 5 $G sample --checkpoint "$T/bad/big.bin" --tokens 1 --threads 2
# ---- a FIFO as a model file is refused, not waited on ----
mkfifo "$T/fifo.bin"
expect_error "sample --checkpoint FIFO" 2 "fifo.bin: is a FIFO, expected a regular file" \
    timeout 5 $G sample --checkpoint "$T/fifo.bin" --tokens 1 --threads 2
expect_error "train --init-from FIFO" 2 "\-\-init-from: .*fifo.bin: is a FIFO, expected a regular file" \
    timeout 5 $G train --data "$D" --init-from "$T/fifo.bin" --steps 1 --threads 2 --out "$T/x4"

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

# ---- ab's temporary directory under a TMPDIR with quotes ----
# TMPDIR="$T/victim' '$T/tmp": the old cleanup, system("rm -rf '<TMPDIR>/gptrain-lab-XXXXXX'"), ran
# rm -rf '$T/victim' '$T/tmp/gptrain-lab-XXXXXX': it deleted $T/victim and left its own directory behind.
Q="$T/victim' '$T/tmp"
mkdir -p "$Q" "$T/victim"
echo keep >"$T/victim/keep"
TMPDIR=$Q $G ab --data "$D" --preset micro --seq-len 32 --threads 2 --a "--batch 2" --b "--batch 2" --trials 1 \
    --steps 1 --warmup 0 >"$T/ab.out" 2>&1 || bad "ab under a quoted TMPDIR" "$(tail -3 "$T/ab.out")"
left=$(ls -A "$Q")
[ -f "$T/victim/keep" ] && [ -z "$left" ] \
    && ok "ab under TMPDIR=\"\$T/victim' '\$T/tmp\": \$T/victim survives, the lab's temporary directory is removed" \
    || bad "ab cleanup" "victim: $(ls -A "$T/victim" 2>&1); left in TMPDIR: $left"

finish
