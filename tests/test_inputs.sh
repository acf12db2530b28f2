#!/bin/sh
# test_inputs.sh: what gptrain does with input files that are not what they should be. A FIFO where a shard,
# tokenizer.txt, a prepare --input (or one of its documents) or a GPT-2 tokenizer file belongs is refused at once in
# one line naming it (each run under timeout 10: a hang shows as exit 124, not 2); tokenizer.txt is parsed strictly
# (vocab_size 65abc, a stray line, a byte out of range: refused naming the line).
# Run from the repository root after `make`.
. tests/lib.sh

D=$T/data
head -c 20000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$D" >"$T/prep" 2>&1 && [ -f "$D/train_000000.bin" ] \
    && ok "prepare: a small dataset to break" || bad "prepare" "$(cat "$T/prep")"
RUN="--preset micro --batch 4 --seq-len 32 --steps 2 --eval-every 0 --eval-steps 1 --threads 2"

# copy_data NAME: a copy of the dataset in $T/NAME
copy_data() { rm -rf "$T/$1"; cp -r "$D" "$T/$1"; }

# ---- FIFOs where a regular file belongs ----
copy_data fifo_train && rm "$T/fifo_train/train_000000.bin" && mkfifo "$T/fifo_train/train_000000.bin"
expect_error "a FIFO as train_000000.bin" 2 "$T/fifo_train/train_000000.bin: is a FIFO, expected a regular file" \
    timeout 10 $G train $RUN --data "$T/fifo_train" --out "$T/o"
copy_data fifo_val && rm "$T/fifo_val/val_000000.bin" && mkfifo "$T/fifo_val/val_000000.bin"
expect_error "a FIFO as val_000000.bin" 2 "$T/fifo_val/val_000000.bin: is a FIFO, expected a regular file" \
    timeout 10 $G train $RUN --data "$T/fifo_val" --out "$T/o"
mkdir -p "$T/fifo_glob" && mkfifo "$T/fifo_glob/train_000009.bin"
expect_error "a FIFO matched by --train-data" 2 "$T/fifo_glob/train_000009.bin: is a FIFO, expected a regular file" \
    timeout 10 $G train $RUN --train-data "$T/fifo_glob/train_*.bin" --val-data "$D/val_*.bin" --out "$T/o"
# tokenizer.txt as the data's vocabulary (info --data, as train's model resolution reads it) and beside an llm.c
# model file (sample --checkpoint).
copy_data fifo_tok && rm "$T/fifo_tok/tokenizer.txt" && mkfifo "$T/fifo_tok/tokenizer.txt"
expect_error "a FIFO as tokenizer.txt (info --data)" 2 "$T/fifo_tok/tokenizer.txt: is a FIFO, expected a regular file" \
    timeout 10 $G info --data "$T/fifo_tok" --preset micro
expect_error "a FIFO as tokenizer.txt (train --data)" 2 "tokenizer.txt: is a FIFO, expected a regular file" \
    timeout 10 $G train $RUN --data "$T/fifo_tok" --vocab-size 65 --out "$T/o"
mkfifo "$T/config.fifo"
expect_error "a FIFO as --config" 2 "\-\-config $T/config.fifo: is a FIFO, expected a regular file" \
    timeout 10 $G train --config "$T/config.fifo"
expect_error "--config /dev/zero" 2 "\-\-config /dev/zero: is a character device" timeout 10 $G train --config /dev/zero
expect_error "--config DIR" 2 "\-\-config $T: is a directory" timeout 10 $G train --config "$T"
expect_error "plot /dev/zero" 2 "/dev/zero: is a character device" timeout 10 $G plot /dev/zero --out "$T/p.png"
mkfifo "$T/resume.fifo"
expect_error "a FIFO as --resume" 2 "$T/resume.fifo: is a FIFO" \
    timeout 10 $G train $RUN --data "$D" --out "$T/o" --resume "$T/resume.fifo"
$G train $RUN --data "$D" --out "$T/run" >"$T/run.out" 2>&1 || bad "a run to sample from" "$(tail -3 "$T/run.out")"
mkdir -p "$T/fifo_model" && cp "$T/run/model.bin" "$T/fifo_model/" && mkfifo "$T/fifo_model/tokenizer.txt"
expect_error "a FIFO as tokenizer.txt beside --checkpoint" 2 "$T/fifo_model/tokenizer.txt: is a FIFO, expected a regular file" \
    timeout 10 $G sample --checkpoint "$T/fifo_model/model.bin" --tokens 5
mkfifo "$T/in.fifo"
expect_error "prepare --input FIFO" 2 "\-\-input $T/in.fifo: is a FIFO, expected a regular file" \
    timeout 10 $G prepare --input "$T/in.fifo" --out "$T/p1"
mkdir -p "$T/docs" && echo "some text" >"$T/docs/a.txt" && mkfifo "$T/docs/b.txt"
expect_error "prepare --input DIR holding a FIFO b.txt" 2 "\-\-input $T/docs/b.txt: is a FIFO, expected a regular file" \
    timeout 10 $G prepare --input "$T/docs" --out "$T/p2"
mkdir -p "$T/gpt2" && cp data/gpt2/encoder.json "$T/gpt2/" && mkfifo "$T/gpt2/vocab.bpe"
expect_error "a FIFO as the GPT-2 vocab.bpe" 2 "$T/gpt2/vocab.bpe: a FIFO, not a regular file" \
    env GPTRAIN_GPT2_DIR="$T/gpt2" timeout 10 $G prepare --input "$T/small.txt" --tokenizer gpt2 --out "$T/p3"
[ ! -e "$T/p1" ] && [ ! -e "$T/p3/train_000000.bin" ] && ok "the refused prepares wrote nothing" \
    || bad "refused prepares" "$(ls "$T/p1" "$T/p3" 2>&1 | tr '\n' ' ')"

# ---- tokenizer.txt parsed strictly ----
V=$(sed -n 's/^vocab_size //p' "$D/tokenizer.txt")
copy_data vocab_abc && sed -i "s/^vocab_size .*/vocab_size ${V}abc/" "$T/vocab_abc/tokenizer.txt"
expect_error "vocab_size ${V}abc (info --data)" 2 "$T/vocab_abc/tokenizer.txt: line 3: vocab_size '${V}abc', expected a decimal integer" \
    $G info --data "$T/vocab_abc" --preset micro
expect_error "vocab_size ${V}abc (train --data)" 2 "line 3: vocab_size '${V}abc', expected a decimal integer" \
    $G train $RUN --data "$T/vocab_abc" --out "$T/o"
copy_data bytes_bad && sed -i 's/^bytes \([0-9]*\) /bytes \1x /' "$T/bytes_bad/tokenizer.txt"
expect_error "a bytes entry 10x" 2 "$T/bytes_bad/tokenizer.txt: line 4: bytes entry 1 '10x'" \
    $G info --data "$T/bytes_bad" --preset micro
copy_data stray && echo "vocab_size_extra 3" >>"$T/stray/tokenizer.txt"
expect_error "a stray line in tokenizer.txt" 2 "$T/stray/tokenizer.txt: line 5: 'vocab_size_extra 3'" \
    $G info --data "$T/stray" --preset micro

# ---- a shard truncated under a running training ----
# The run would take minutes; once step 1 is printed the shard (36 KB: nine pages, every one read again by the next
# batches) is emptied in place, so the loader's next read of it faults (SIGBUS) and the guard names the shard.
# run_then SHELL-CMD NAME: start a long run on a copy of the data, run SHELL-CMD (with $pid) after step 1, and leave
# the exit status in $st (124: still running after 10 s, then killed).
run_then() {
    copy_data "$2"
    $G train --preset micro --batch 4 --seq-len 32 --steps 100000 --eval-every 0 --eval-steps 1 --threads 2 \
        --print-every 1 --data "$T/$2" --out "$T/$2.out" >"$T/$2.log" 2>"$T/err" &
    pid=$!
    i=0
    while [ $i -lt 400 ] && ! grep -q "^ *1/100000" "$T/$2.log" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
    eval "$1"
    i=0
    while [ $i -lt 100 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -0 $pid 2>/dev/null && { kill -9 $pid; wait $pid; st=124; return; }
    wait $pid
    st=$?
}
run_then ': >"$T/bus/train_000000.bin"' bus
msg="$T/bus/train_000000.bin changed on disk while training read it (truncated or rewritten in place): training cannot continue; the last checkpoint is intact: restore the data and resume (--resume auto)"
[ "$st" -eq 2 ] && [ "$(cat "$T/err")" = "gptrain: error: $msg" ] \
    && ok "a shard emptied during training: exit 2, $(cat "$T/err")" \
    || bad "shard emptied during training" "exit $st, expected 2; stderr: $(head -c 400 "$T/err")"
run_then 'truncate -s 4096 "$T/bus2/train_000000.bin"' bus2
[ "$st" -eq 2 ] && grep -q "^gptrain: error: $T/bus2/train_000000.bin changed on disk while training read it" "$T/err" \
    && [ "$(grep -c . "$T/err")" -eq 1 ] && ok "a shard cut to 4096 bytes during training: exit 2, named" \
    || bad "shard cut during training" "exit $st, expected 2; stderr: $(head -c 400 "$T/err")"
# A SIGBUS that is no shard's (sent by kill: no faulting address) still takes the default action.
run_then 'kill -BUS $pid' busk
[ "$st" -eq 135 ] && ! grep -q "changed on disk" "$T/err" && ok "kill -BUS: the default action (exit 135), no shard named" \
    || bad "kill -BUS" "exit $st, expected 135; stderr: $(head -c 300 "$T/err")"

# ---- prepare killed between its renames ----
# Set A (3 train shards) with its input text beside it; then set B (5 train shards, other text) killed after its
# second rename (GPTRAIN_TEST_DIE_AFTER_RENAMES, as a kill -9 there would): train_000000.bin and train_000001.bin are
# B's, the rest A's. Every reader must refuse the directory until a prepare runs to the end.
M=$T/mix
tail -c 20000 data/tinyshakespeare/input.txt >"$T/other.txt"
mkdir -p "$M" && cp "$T/small.txt" "$M/input.txt" && echo "keep" >"$M/notes.txt.new"
$G prepare --input "$M/input.txt" --out "$M" --shard-tokens 7000 >"$T/pa" 2>&1 && [ -f "$M/train_000002.bin" ] \
    && [ ! -e "$M/.prepare-incomplete" ] && ok "prepare set A: 3 train shards, no marker left" || bad "prepare A" "$(cat "$T/pa")"
GPTRAIN_TEST_DIE_AFTER_RENAMES=2 $G prepare --input "$T/other.txt" --out "$M" --shard-tokens 4000 >"$T/pb" 2>&1
st=$?
[ "$st" -eq 9 ] && [ -f "$M/.prepare-incomplete" ] && grep -q "^rename $M/train_000004.bin.new $M/train_000004.bin$" "$M/.prepare-incomplete" \
    && ok "prepare B killed after 2 renames: the marker lists its renames" || bad "prepare B killed" "exit $st: $(cat "$T/pb"; ls -a "$M" | tr '\n' ' ')"
WANT="an interrupted prepare left a mix of two datasets here ($M/.prepare-incomplete): run gptrain prepare again"
expect_error "train --data on the mixed directory" 2 "^gptrain: error: --data $M: $WANT$" $G train $RUN --data "$M" --out "$T/o"
expect_error "info --data on the mixed directory" 2 "^gptrain: error: --data $M: $WANT$" $G info --data "$M" --preset micro
expect_error "--train-data glob into the mixed directory" 2 "^gptrain: error: --train-data $M/train_\*.bin: $WANT$" \
    $G train $RUN --train-data "$M/train_*.bin" --val-data "$D/val_*.bin" --vocab-size 65 --out "$T/o"
: >"$M/train_000000.bin.new.tmp.12345.0"
$G prepare --input "$T/other.txt" --out "$M" --shard-tokens 9000 >"$T/pc" 2>&1 && [ ! -e "$M/.prepare-incomplete" ] \
    && [ "$(cd "$M" && ls train_* | tr '\n' ' ')" = "train_000000.bin train_000001.bin " ] \
    && ok "a fresh prepare completes: marker gone, exactly its 2 train shards" || bad "fresh prepare" "$(cat "$T/pc"; ls -a "$M" | tr '\n' ' ')"
left=$(cd "$M" && ls -a | grep -e '\.new' -e '\.tmp\.' | tr '\n' ' ')
[ "$left" = "notes.txt.new " ] && cmp -s "$M/input.txt" "$T/small.txt" \
    && ok "the killed prepare's staged and temporary files are removed; other files (input.txt, notes.txt.new) kept" \
    || bad "leftovers" "left: '$left'"
$G train $RUN --data "$M" --out "$T/mixrun" >"$T/mixrun.out" 2>&1 && ok "train --data on the re-prepared directory runs" \
    || bad "train after re-prepare" "$(tail -2 "$T/mixrun.out")"

finish
