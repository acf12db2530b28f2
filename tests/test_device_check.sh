#!/bin/sh
# test_device_check.sh: bench/device_check.sh --dry-run, the device check end to end on the emulated GPU (build/emu),
# so the one script a short GPU window runs cannot rot between windows: every stage runs and passes (llm.c, whose
# source is never here, is skipped with its line), every file it promises is written to $OUT, the summary names the
# device, driver, commit and command, the profile has its per-op table, the attention benchmark wrote its CSV rows,
# and the speed table has gptrain's and PyTorch's figures.
. tests/lib.sh
if [ ! -x build/emu/gptrain ]; then
    bad "build/emu/gptrain" "missing (make emu builds it)"
    finish
    exit 1
fi
O="$T/out"
OUT="$O" BUDGET_S=900 bash bench/device_check.sh --dry-run >"$T/run" 2>&1
rc=$?
S="$O/summary.txt"
[ $rc -eq 0 ] && grep -q "every stage passed" "$S" && ok "device_check.sh --dry-run: exit 0, every stage passed" \
    || bad "device_check.sh --dry-run" "exit $rc: $(grep -E 'FAIL|skipped: the' "$S" | head -3)"
for st in build test-gpu profile attention speed-gptrain speed-pytorch; do
    grep -q "^stage $st: ok" "$S" && [ -s "$O/$st.log" ] && ok "stage $st: $(grep "^stage $st:" "$S")" \
        || bad "stage $st" "$(grep "^stage $st" "$S"; tail -2 "$O/$st.log" 2>/dev/null)"
done
grep -q "^stage speed-llmc: skipped: llm.c's source was not carried" "$S" && ok "llm.c without its source: one line says skipped" \
    || bad "llm.c skip line" "$(grep llmc "$S")"
for k in "device: gptrain emulated GPU" "driver: " "commit: " "command: bash bench/device_check.sh --dry-run" \
    "build: gptrain build: CUDA"; do
    grep -q "^$k" "$S" && ok "summary names it: $(grep -m1 "^$k" "$S" | cut -c1-100)" || bad "summary line '$k'" "$(head -8 "$S")"
done
grep -q "matmul_forward" "$O/profile.log" && grep -q "roofline" "$O/profile.log" \
    && ok "profile: the per-op table ($(grep -c '^ *[a-z_]* *[0-9]' "$O/profile.log") lines)" \
    || bad "profile table" "$(tail -5 "$O/profile.log")"
[ "$(grep -c '^grid,flash-sm80,' "$O/attention/ours.csv" 2>/dev/null)" -ge 2 ] \
    && grep -q '^grid,flash-sm90,' "$O/attention/ours.csv" && grep -q '^memory,flash-sm80,' "$O/attention/ours.csv" \
    && ok "attention: ours.csv has the flash-sm80, flash-sm90 and memory rows ($(wc -l <"$O/attention/ours.csv") lines)" \
    || bad "attention CSV" "$(head -5 "$O/attention/ours.csv" 2>/dev/null; tail -3 "$O/attention.log")"
for mb in 3 auto; do
    grep -q "^stage speed-gptrain-b$mb: ok" "$S" && grep -Eq "^gptrain B=$mb \(B=[0-9]+\) +[0-9.]+ .* [0-9.]+ +[0-9.]+\$" "$S" \
        && ok "speed at B=$mb: $(grep "^gptrain B=$mb " "$S" | tr -s ' ')" \
        || bad "speed at B=$mb" "$(grep "speed-gptrain-b$mb\|^gptrain B=$mb" "$S")"
done
g=$(sed -n 's/^gptrain (bf16, flash) *\([0-9.]*\) .*/\1/p' "$S")
p=$(sed -n 's/^PyTorch (compile, SDPA) *\([0-9.]*\) .*/\1/p' "$S")
[ -n "$g" ] && [ -n "$p" ] && grep -q "^gptrain / PyTorch: [0-9.]*x" "$S" \
    && ok "speed table: gptrain $g tokens/s, PyTorch $p tokens/s, their ratio (dry run: not measurements)" \
    || bad "speed table" "$(grep -A6 '^speed:' "$S")"
[ -s "$O/speed-gptrain.jsonl" ] && [ -s "$O/profile.jsonl" ] && ok "the runs' JSONL logs are in OUT" \
    || bad "JSONL logs" "$(ls "$O")"
finish
