#!/bin/sh
# run.sh SECONDS: `make fuzz`. Seeds each target's corpus with valid files made by ./gptrain (or $GPTRAIN_BIN; a
# shard, a checkpoint, a tokenizer.txt of each type, a tiny encoder.json/vocab.bpe pair), then runs the four
# libFuzzer targets for SECONDS each (default $FUZZ_SECONDS, else 20). Exits non-zero on a finding (libFuzzer writes
# the crashing input as build/fuzz/crash-*); the corpora grow under build/fuzz/corpus-*. Ends with one case per
# target and the "N passed, N failed" tally, so tests/run_all.sh can run it (make test-sanitize does).
secs=${1:-${FUZZ_SECONDS:-20}}
G=${GPTRAIN_BIN:-./gptrain}
B=build/fuzz
set -e
rm -rf "$B/seed"   # a second make test-sanitize in the same tree: the seed run starts fresh (no earlier checkpoint)
mkdir -p "$B/corpus-shard" "$B/corpus-ckpt" "$B/corpus-tokenizer" "$B/corpus-gpt2" "$B/seed"
head -c 3000 data/tinyshakespeare/input.txt >"$B/seed/small.txt"
$G prepare --input "$B/seed/small.txt" --out "$B/seed/data" >/dev/null
cp "$B/seed/data/val_000000.bin" "$B/corpus-shard/val.bin"
cp "$B/seed/data/tokenizer.txt" "$B/corpus-tokenizer/char.txt"
printf 'gptrain-tokenizer 1\ntype gpt2\nvocab_size 50257\n' >"$B/corpus-tokenizer/gpt2.txt"
$G train --data "$B/seed/data" --preset micro --n-layer 1 --d-model 16 --n-head 1 --batch 1 --seq-len 8 \
    --steps 2 --stop-at-step 1 --eval-every 0 --out "$B/seed/run" --peak-tflops 1 >/dev/null
cp "$B/seed/run/checkpoints/ckpt_00000001.bin" "$B/corpus-ckpt/ckpt.bin"
# GPT-2 files: a small consistent pair (the 256 byte tokens' JSON entries are not needed for the parser to start).
printf '{"a": 0, "b": 1, "ab": 2, "\\u0120": 3}\377#version: 0.2\na b\n' >"$B/corpus-gpt2/pair.bin"
set +e
status=0
passed=0
failed=0
for t in shard ckpt tokenizer gpt2; do
    echo "== fuzz_$t for $secs s"
    if (cd "$B" && ./fuzz_$t -max_total_time="$secs" -max_len=65536 -print_final_stats=1 "corpus-$t") >"$B/log-$t" 2>&1; then
        grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units" "$B/log-$t"
        echo "ok   fuzz_$t: $secs s, no finding"
        passed=$((passed + 1))
    else
        grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|ERROR|SUMMARY" "$B/log-$t"
        echo "FAIL fuzz_$t: a finding (log: $B/log-$t)"
        failed=$((failed + 1))
        status=1
    fi
done
ls "$B"/crash-* "$B"/leak-* "$B"/timeout-* 2>/dev/null && status=1
[ $status -eq 0 ] && echo "fuzz: no findings" || echo "fuzz: FINDINGS (see $B)"
[ $status -ne 0 ] && [ $failed -eq 0 ] && failed=1
echo "$passed passed, $failed failed"
exit $status
