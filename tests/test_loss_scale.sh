#!/bin/sh
# test_loss_scale.sh: --loss-scale (dynamic loss scaling for --precision fp16). On the CPU in fp32, where nothing
# overflows: a fixed and a dynamic power-of-two scale give bitwise the unscaled run (losses, gradient norms and the
# final model), the dynamic scale doubles after each --loss-scale-window good updates, and a run stopped and resumed
# keeps its scale (the checkpoint holds it) and ends bitwise where the uninterrupted one does. Bad values get one line
# naming the flag. On the emulated GPU (build/emu/gptrain) with fp16 tensor-core matmuls and a first scale of 2^24,
# whose scaled logits gradient (2^24 / B*T) is beyond fp16's 65504: the first updates are skipped as overflows, the
# scale halves on each, training then proceeds, and the summary counts the skips.
. tests/lib.sh
head -c 120000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$T/data" >/dev/null
RUN="--data $T/data --preset micro --batch 2 --seq-len 32 --steps 6 --eval-every 0 --eval-steps 1 --print-every 1 --threads 2"
field() {   # field NAME FILE: the values of a JSONL number field, one per line
    sed -n "s/.*\"$1\": \([-0-9.e+]*\).*/\1/p" "$2"
}

$G train $RUN --loss-scale off --out "$T/off" --log "$T/off.jsonl" >"$T/off.out" 2>&1 || bad "unscaled run" "$(tail -2 "$T/off.out")"
$G train $RUN --loss-scale 1024 --out "$T/fixed" --log "$T/fixed.jsonl" >"$T/fixed.out" 2>&1 \
    || bad "fixed scale run" "$(tail -2 "$T/fixed.out")"
$G train $RUN --loss-scale dynamic --loss-scale-init 1024 --loss-scale-window 2 --out "$T/dyn" --log "$T/dyn.jsonl" \
    >"$T/dyn.out" 2>&1 || bad "dynamic scale run" "$(tail -2 "$T/dyn.out")"
for r in fixed dyn; do
    if cmp -s "$T/off/model.bin" "$T/$r/model.bin" && [ "$(field loss "$T/off.jsonl")" = "$(field loss "$T/$r.jsonl")" ] \
        && [ "$(field grad_norm "$T/off.jsonl")" = "$(field grad_norm "$T/$r.jsonl")" ]; then
        ok "fp32, --loss-scale $r: bitwise the unscaled run (model.bin, losses, gradient norms)"
    else
        bad "fp32, --loss-scale $r" "differs from the unscaled run: $(field grad_norm "$T/$r.jsonl" | head -2 | tr '\n' ' ')"
    fi
done
scales=$(field loss_scale "$T/dyn.jsonl" | tr '\n' ' ')
[ "$scales" = "1024 1024 2048 2048 4096 4096 " ] && ok "dynamic scale doubles every 2 good updates: $scales" \
    || bad "dynamic scale growth" "got '$scales', expected '1024 1024 2048 2048 4096 4096 '"
[ -z "$(field loss_scale "$T/off.jsonl")" ] && ok "no loss scaling: no loss_scale in the log" \
    || bad "loss_scale without scaling" "$(head -1 "$T/off.jsonl")"
grep -q "0 overflow skips (loss scale now 8192)" "$T/dyn.out" && ok "summary: $(grep -o '[0-9]* overflow skips ([^)]*)' "$T/dyn.out")" \
    || bad "summary line" "$(grep '^done' "$T/dyn.out")"

# Stopped after step 3 and resumed: the checkpoint carries the dynamic scale and its count of good updates.
$G train $RUN --loss-scale dynamic --loss-scale-init 1024 --loss-scale-window 2 --stop-at-step 3 --out "$T/res" \
    --log "$T/res.jsonl" >"$T/res1.out" 2>&1 || bad "stopped run" "$(tail -2 "$T/res1.out")"
$G train $RUN --loss-scale dynamic --loss-scale-init 1024 --loss-scale-window 2 --resume auto --out "$T/res" \
    --log "$T/res.jsonl" >"$T/res2.out" 2>&1 || bad "resumed run" "$(tail -2 "$T/res2.out")"
if cmp -s "$T/dyn/model.bin" "$T/res/model.bin" && [ "$(field loss_scale "$T/res.jsonl" | tr '\n' ' ')" = "$scales" ]; then
    ok "stop at step 3 and resume: the same scales ($scales) and bitwise the same model"
else
    bad "resume with dynamic scaling" "scales $(field loss_scale "$T/res.jsonl" | tr '\n' ' ')"
fi

expect_error "--loss-scale 3 (not a power of two)" 2 "--loss-scale 3: expected auto, off, dynamic or a power of two" \
    $G train $RUN --loss-scale 3 --out "$T/bad"
expect_error "--loss-scale-init 1000" 2 "--loss-scale-init 1000: expected a power of two" \
    $G train $RUN --loss-scale dynamic --loss-scale-init 1000 --out "$T/bad"
expect_error "--loss-scale-window 0" 2 "--loss-scale-window 0: expected at least 1" \
    $G train $RUN --loss-scale-window 0 --out "$T/bad"

# fp16 on the emulated GPU: overflows first, then training.
E=build/emu/gptrain
if [ -x "$E" ]; then
    $E train $RUN --device cuda --precision fp16 --loss-scale-init 16777216 --out "$T/fp16" --log "$T/fp16.jsonl" \
        >"$T/fp16.out" 2>&1
    rc=$?
    n_over=$(grep -c '"overflow": true' "$T/fp16.jsonl" 2>/dev/null)
    first=$(field loss_scale "$T/fp16.jsonl" | head -$((n_over + 1)) | tr '\n' ' ')
    want=$(awk -v n="$n_over" 'BEGIN { s = 16777216; for (i = 0; i <= n; i++) { printf "%d ", s; s /= 2 } }')
    last_overflow=$(grep -n '"overflow": true' "$T/fp16.jsonl" | tail -1 | cut -d: -f1)
    if [ $rc -eq 0 ] && [ "$n_over" -ge 1 ] && [ "$n_over" -lt 6 ] && [ "$first" = "$want" ] \
        && [ "$last_overflow" = "$n_over" ] && grep -q "$n_over overflow skips" "$T/fp16.out" \
        && grep -q "0 updates skipped" "$T/fp16.out"; then
        ok "fp16 from 2^24: the first $n_over updates overflow and are skipped, the scale halves ($first), then it trains"
    else
        bad "fp16 overflow" "exit $rc, $n_over overflows, scales '$first' (expected '$want'); $(grep '^done\|error' "$T/fp16.out")"
    fi
    losses=$(field loss "$T/fp16.jsonl" | tr '\n' ' ')
    awk -v l="$losses" 'BEGIN { n = split(l, a, " "); for (i = 1; i <= n; i++) if (a[i] != a[i] + 0 || a[i] > 10) exit 1; exit n == 6 ? 0 : 1 }' \
        && ok "fp16: every loss finite ($losses)" || bad "fp16 losses" "$losses"
else
    echo "skip fp16 overflow on the emulated GPU: build/emu/gptrain missing (make emu)"
fi
finish
