#!/bin/sh
# test_reliability.sh: what gptrain writes, and what it refuses to write over (the failures a hostile but fair user
# found, each reproduced). Writers replace only regular files (a FIFO, a directory, a device stay what they are; a
# symbolic link is written through, keeping its target's mode); two writers of one path each leave a whole file;
# a second run on one --out, --checkpoint-dir or --log is refused naming the first; a run that completed its last
# step leaves model.bin and tokenizer.txt however it ends (--stop-at-step = --steps, SIGTERM in the last step, a
# closed pipe, a requeued --resume auto), and a failed final write saves the model elsewhere and says where; a
# checkpoint directory holds one trajectory (a fresh run into it is refused, a branch sets the abandoned future
# aside, --keep-last prunes only its own, --resume auto falls back past a corrupt newest checkpoint); the JSONL log
# is never a shard, never duplicates steps after a resume, and a failed log write warns once while training goes on;
# temp files of killed writers are cleaned; flag sanity (--grad-accum, --threads, --profile, --memory-gib,
# --bandwidth-gbs, --max-skipped). Run from the repository root after `make`.
. tests/lib.sh
losses() { /usr/bin/python3 -c "import json,sys; print(' '.join(repr(json.loads(l)['loss']) for l in open(sys.argv[1])))" "$1"; }
# wait_row FILE PATTERN: until a run's output FILE has a line matching PATTERN (at most 20 s).
wait_row() {
    i=0
    while [ $i -lt 400 ] && ! grep -q "$2" "$1" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
}
steps_of() { /usr/bin/python3 -c "import json,sys; print(' '.join(str(json.loads(l)['step']) for l in open(sys.argv[1])))" "$1"; }

D=$T/data
head -c 20000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$D" >"$T/prep" 2>&1 || bad "prepare" "$(cat "$T/prep")"
RUN="--data $D --preset micro --batch 4 --seq-len 32 --warmup-steps 1 --eval-every 0 --eval-steps 2 --threads 2"
$G train $RUN --steps 4 --out "$T/m" >"$T/m.out" 2>&1 || bad "a 4-step run" "$(tail -2 "$T/m.out")"
$G train $RUN --steps 4 --lr 3e-3 --out "$T/m2" >"$T/m2.out" 2>&1 || bad "another 4-step run" "$(tail -2 "$T/m2.out")"

# ---- 1. writers replace only regular files ----
mkfifo "$T/fifo"
expect_error "export --out FIFO is refused" 2 "is a FIFO, not a regular file" $G export --from "$T/m" --out "$T/fifo"
[ -p "$T/fifo" ] && ok "the FIFO is still a FIFO" || bad "export FIFO" "$T/fifo was replaced"
mkdir "$T/adir"
expect_error "export --out DIR names the directory (not 'short write')" 2 "is a directory, not a regular file" \
    $G export --from "$T/m" --out "$T/adir"
if [ "$(id -u)" = 0 ] && mknod "$T/null" c 1 3 2>/dev/null; then
    expect_error "export --out a character device is refused" 2 "is a character device" \
        $G export --from "$T/m" --out "$T/null"
    [ -c "$T/null" ] && ok "the device node is still a device" || bad "export device" "$T/null was replaced"
fi
$G export --from "$T/m" --out "$T/real.bin" >/dev/null 2>&1
chmod 600 "$T/real.bin"
ln -s real.bin "$T/link.bin"
$G export --from "$T/m2" --out "$T/link.bin" >"$T/ln.out" 2>&1
[ -L "$T/link.bin" ] && cmp -s "$T/real.bin" "$T/m2/model.bin" && [ "$(stat -c %a "$T/real.bin")" = 600 ] \
    && ok "export through a symbolic link writes its target (mode 600 kept) and keeps the link" \
    || bad "export symlink" "link $(ls -l "$T/link.bin"), mode $(stat -c %a "$T/real.bin"): $(cat "$T/ln.out")"
printf '{"step": 1, "loss": 4.0}\n{"step": 2, "loss": 3.5}\n' >"$T/tiny.jsonl"
expect_error "plot --out FIFO is refused" 2 "is a FIFO, not a regular file" $G plot "$T/tiny.jsonl" --out "$T/fifo"
expect_error "ab --csv FIFO is refused before any trial" 2 "\-\-csv $T/fifo: is a FIFO, not a regular file" \
    timeout 60 $G ab $RUN --a "--batch 2" --b "--batch 4" --trials 1 --steps 1 --warmup 0 --csv "$T/fifo"
[ -p "$T/fifo" ] && ok "the FIFO is still a FIFO after ab" || bad "ab FIFO" "$T/fifo was replaced"

# ---- 2. two writers of one path each leave a whole file; two runs on one directory are refused ----
GPTRAIN_TEST_PAUSE_BEFORE_RENAME=2 $G export --from "$T/m" --out "$T/two.bin" >"$T/two1.out" 2>&1 &
p1=$!
sleep 0.5
$G export --from "$T/m2" --out "$T/two.bin" >"$T/two2.out" 2>&1
s2=$?
wait $p1
s1=$?
[ $s1 -eq 0 ] && [ $s2 -eq 0 ] && cmp -s "$T/two.bin" "$T/m/model.bin" && ! ls "$T" | grep -q "two.bin.tmp" \
    && ok "two exports to one path: both succeed, the last rename wins whole, no temp file left" \
    || bad "two writers" "exits $s1 $s2; $(cat "$T/two1.out" "$T/two2.out"); $(ls "$T" | grep two)"
# A long run holds --out; a second run there, or on its checkpoint directory or its log, is refused.
$G train $RUN --steps 100000 --print-every 1 --out "$T/busy" --log "$T/busy.jsonl" >"$T/busy.out" 2>&1 &
pb=$!
wait_row "$T/busy.out" "^ *1/100000"
expect_error "a second train on one --out is refused, naming the first" 2 "in use by another gptrain (pid $pb)" \
    $G train $RUN --steps 2 --out "$T/busy"
expect_error "a second train on one --checkpoint-dir is refused" 2 "\-\-checkpoint-dir .* in use by another gptrain" \
    $G train $RUN --steps 2 --out "$T/other" --checkpoint-dir "$T/busy/checkpoints"
expect_error "a second train on one --log is refused" 2 "another gptrain is writing it" \
    $G train $RUN --steps 2 --out "$T/other2" --log "$T/busy.jsonl"
kill -TERM $pb
wait $pb

# ---- 3. a run that completed its last step leaves its model, however it ends ----
$G train $RUN --steps 4 --out "$T/s" --stop-at-step 4 >"$T/s.out" 2>&1
st=$?
[ $st -eq 0 ] && cmp -s "$T/s/model.bin" "$T/m/model.bin" && cmp -s "$T/s/tokenizer.txt" "$D/tokenizer.txt" \
    && ok "--stop-at-step N --steps N: exit 0 with model.bin (the straight run's) and tokenizer.txt" \
    || bad "stop at the last step" "exit $st: $(tail -2 "$T/s.out"); $(ls "$T/s")"
rm -f "$T/s/model.bin" "$T/s/tokenizer.txt"
$G train $RUN --steps 4 --out "$T/s" --resume auto >"$T/s2.out" 2>&1
st=$?
[ $st -eq 0 ] && cmp -s "$T/s/model.bin" "$T/m/model.bin" && grep -q "is at the last step" "$T/s2.out" \
    && ok "--resume auto from a checkpoint of the last step writes the missing model (exit 0, not 'nothing to do')" \
    || bad "resume at the last step" "exit $st: $(tail -2 "$T/s2.out")"
# SIGTERM during the last step (each step evaluates 30 batches, so the signal lands inside it).
$G train $RUN --steps 3 --print-every 1 --eval-every 1 --eval-steps 30 --out "$T/lt" >"$T/lt.out" 2>&1 &
pl=$!
wait_row "$T/lt.out" "^ *2/3"
kill -TERM $pl
wait $pl
st=$?
$G train $RUN --steps 3 --out "$T/lt3" >/dev/null 2>&1
[ $st -eq 0 ] && cmp -s "$T/lt/model.bin" "$T/lt3/model.bin" && [ -f "$T/lt/tokenizer.txt" ] \
    && ok "SIGTERM during the last step: the run completes (exit 0) with the straight run's model.bin" \
    || bad "SIGTERM in the last step" "exit $st: $(tail -2 "$T/lt.out"); $(ls "$T/lt")"
# SIGHUP (a closed terminal) stops like SIGTERM: a checkpoint, exit 129.
$G train $RUN --steps 100000 --print-every 1 --out "$T/hup" >"$T/hup.out" 2>&1 &
ph=$!
wait_row "$T/hup.out" "^ *2/100000"
kill -HUP $ph
wait $ph
st=$?
[ $st -eq 129 ] && ls "$T/hup/checkpoints" | grep -q ckpt_ && grep -q "(SIGHUP)" "$T/hup.out" \
    && ok "SIGHUP: the step finishes, a checkpoint is written, exit 129" \
    || bad "SIGHUP" "exit $st: $(tail -2 "$T/hup.out")"
# A reader that goes away (gptrain train | head) does not kill the run.
{ $G train $RUN --steps 4 --print-every 1 --out "$T/pipe"; echo $? >"$T/pipe.rc"; } | head -n 1 >/dev/null
[ "$(cat "$T/pipe.rc")" = 0 ] && cmp -s "$T/pipe/model.bin" "$T/m/model.bin" \
    && ok "train | head -n 1: SIGPIPE is ignored, the run ends with exit 0 and its model" \
    || bad "SIGPIPE" "exit $(cat "$T/pipe.rc"), $(ls "$T/pipe" 2>&1)"
# A final model.bin that cannot be written: the weights go to TMPDIR, and the error says where.
mkdir "$T/tmpdir"
TMPDIR=$T/tmpdir GPTRAIN_TEST_FAIL_PATH=resc/model.bin GPTRAIN_TEST_FAIL_WRITE_AFTER=1000 \
    expect_error "a failed final model.bin write says where the model was saved instead" 2 \
    "the trained model is saved instead in $T/tmpdir/gptrain-rescue-" $G train $RUN --steps 4 --out "$T/resc"
cmp -s "$T"/tmpdir/gptrain-rescue-*/model.bin "$T/m/model.bin" && [ ! -f "$T/resc/model.bin" ] \
    && ok "the rescued model.bin is the run's (and no partial model.bin in --out)" \
    || bad "rescue" "$(ls -R "$T/tmpdir" "$T/resc")"

# ---- 4 (log). --log at a shard is refused, the shard untouched ----
cp "$D/val_000000.bin" "$T/val.copy"
expect_error "--log pointing at a shard is refused" 2 "is the data shard" $G train $RUN --steps 2 --out "$T/lg" \
    --log "$D/val_000000.bin"
cmp -s "$D/val_000000.bin" "$T/val.copy" && ok "that shard is unchanged" || bad "log at shard" "the shard changed"
cp "$T/val.copy" "$D/val_000000.bin"   # (so that a failure here does not fail the cases below)

# ---- 5. one trajectory per checkpoint directory ----
C=$T/tr/checkpoints
$G train $RUN --steps 8 --checkpoint-every 2 --keep-last 0 --out "$T/tr" >"$T/tr.out" 2>&1
expect_error "a fresh run into a directory with checkpoints is refused" 2 "holds 4 checkpoints of an earlier run" \
    $G train $RUN --steps 8 --checkpoint-every 2 --out "$T/tr"
$G train $RUN --steps 8 --checkpoint-every 2 --out "$T/tr2" --stop-at-step 2 >/dev/null 2>&1
expect_error "resuming another directory's run into this one is refused" 2 "is a checkpoint of another run" \
    $G train $RUN --steps 8 --checkpoint-every 2 --out "$T/tr" --resume "$T/tr2/checkpoints/ckpt_00000002.bin"
# Branch at step 2 with another learning rate: the later checkpoints of the first run are set aside, pruning keeps
# the branch's own, and --resume auto continues the branch.
$G train $RUN --steps 8 --checkpoint-every 2 --keep-last 2 --lr 2e-3 --out "$T/tr" --resume "$C/ckpt_00000002.bin" \
    --stop-at-step 4 >"$T/br.out" 2>&1
aside=$(ls -d "$C"/abandoned_after_2_* 2>/dev/null)
[ "$(ls "$C" | grep ckpt_ | tr '\n' ' ')" = "ckpt_00000002.bin ckpt_00000004.bin " ] && [ -n "$aside" ] \
    && [ "$(ls "$aside" | tr '\n' ' ')" = "ckpt_00000004.bin ckpt_00000006.bin ckpt_00000008.bin " ] \
    && ok "a branch at step 2 sets steps 4-8 of the first run aside and --keep-last 2 keeps its own 2 and 4" \
    || bad "branch" "$(ls -R "$C"): $(tail -2 "$T/br.out")"
$G train $RUN --steps 8 --checkpoint-every 2 --keep-last 2 --lr 2e-3 --out "$T/tr" --resume auto >"$T/br2.out" 2>&1
grep -q "resume: $C/ckpt_00000004.bin: step 4" "$T/br2.out" && [ -f "$T/tr/model.bin" ] \
    && ok "--resume auto continues the branch (step 4), not the first run's newer step 8" \
    || bad "resume the branch" "$(grep resume "$T/br2.out")"
# A corrupt newest checkpoint: --resume auto warns and falls back to the one before it.
$G train $RUN --steps 8 --checkpoint-every 2 --keep-last 0 --out "$T/cr" --stop-at-step 4 >/dev/null 2>&1
printf 'X' | dd of="$T/cr/checkpoints/ckpt_00000004.bin" bs=1 seek=5000 conv=notrunc 2>/dev/null
$G train $RUN --steps 8 --checkpoint-every 2 --keep-last 0 --out "$T/cr" --resume auto >"$T/cr.out" 2>&1
st=$?
$G train $RUN --steps 8 --out "$T/cr8" >/dev/null 2>&1
[ $st -eq 0 ] && grep -q "warning: --resume auto: passing over .*ckpt_00000004.bin (.*corrupt)" "$T/cr.out" \
    && grep -q "resume: .*ckpt_00000002.bin: step 2" "$T/cr.out" && cmp -s "$T/cr/model.bin" "$T/cr8/model.bin" \
    && ok "--resume auto passes over a corrupt newest checkpoint with a warning and ends on the straight run's weights" \
    || bad "corrupt newest" "exit $st: $(grep -i "resume\|warn\|error" "$T/cr.out")"
X=$T/tr2/checkpoints/ckpt_00000002.bin
cp "$X" "$T/ck.copy"
expect_error "export --checkpoint X --out X is refused" 2 "is the file export reads" $G export --checkpoint "$X" --out "$X"
expect_error "export over another checkpoint is refused" 2 "is a gptrain checkpoint" $G export --from "$T/m" --out "$X"
cmp -s "$T/ck.copy" "$X" && ok "the checkpoint is unchanged" \
    || bad "export over a checkpoint" "it changed"
cp "$D/tokenizer.txt" "$T/tok.copy"
expect_error "train --out at a data directory is refused" 2 "is a data directory" $G train $RUN --steps 2 --out "$D"
cmp -s "$T/tok.copy" "$D/tokenizer.txt" && ok "the data's tokenizer.txt is unchanged" || bad "out at data" "changed"

# ---- 8. a failed log write warns once, and training goes on to its model ----
GPTRAIN_TEST_FAIL_PATH=f.jsonl GPTRAIN_TEST_FAIL_WRITE_AFTER=600 $G train $RUN --steps 4 --out "$T/fl" \
    --log "$T/f.jsonl" >"$T/fl.out" 2>"$T/fl.err"
st=$?
[ $st -eq 0 ] && [ "$(grep -c "warning: --log .*write failed" "$T/fl.err")" -eq 1 ] && cmp -s "$T/fl/model.bin" "$T/m/model.bin" \
    && ok "a log on a full disk: one warning, exit 0, the model written" \
    || bad "log write failure" "exit $st: $(cat "$T/fl.err")"
expect_error "--log /dev/full (not a file the run can own) is refused" 2 "not a regular file" \
    $G train $RUN --steps 2 --out "$T/full" --log /dev/full

# ---- 9. a model is decoded only with its own tokenizer ----
mkdir "$T/pair"
cp "$T/m/model.bin" "$T/pair/"
/usr/bin/python3 - "$D/tokenizer.txt" "$T/pair/tokenizer.txt" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
for i, l in enumerate(lines):
    if l.startswith("bytes "):
        b = l.split()[1:]
        b[1], b[2] = b[2], b[1]   # another run's tokenizer: same size, two tokens swapped
        lines[i] = "bytes " + " ".join(b)
open(sys.argv[2], "w").write("\n".join(lines))
PY
expect_error "sample refuses a model beside another run's tokenizer.txt" 2 "was trained with another tokenizer" \
    $G sample --from "$T/pair" --tokens 5 --prompt "First"
$G sample --from "$T/m" --tokens 5 --prompt "First" >"$T/sm.out" 2>&1 && ok "and samples with its own" \
    || bad "sample own tokenizer" "$(cat "$T/sm.out")"

# ---- 12. temp files of killed writers; the log after a resume from an older step; flag sanity ----
$G train $RUN --steps 6 --checkpoint-every 2 --keep-last 0 --out "$T/k9" --log "$T/k9.jsonl" >/dev/null 2>&1
: >"$T/k9/checkpoints/ckpt_00000008.bin.tmp"
: >"$T/k9/checkpoints/ckpt_00000008.bin.tmp.99999.0"
: >"$T/k9/model.bin.tmp.99999.3"
: >"$T/k9/checkpoints/notes.tmp.txt"
$G train $RUN --steps 6 --checkpoint-every 2 --keep-last 0 --out "$T/k9" --log "$T/k9.jsonl" \
    --resume "$T/k9/checkpoints/ckpt_00000002.bin" >"$T/k9.out" 2>&1
[ "$(ls "$T/k9" "$T/k9/checkpoints" | grep -c '\.tmp\.[0-9]*\.[0-9]*$\|\.bin\.tmp$')" -eq 0 ] \
    && [ -f "$T/k9/checkpoints/notes.tmp.txt" ] \
    && ok "a run removes the temp files killed writers left (and only those)" \
    || bad "stale temp files" "$(ls "$T/k9" "$T/k9/checkpoints")"
[ "$(steps_of "$T/k9.jsonl")" = "1 2 3 4 5 6" ] \
    && ok "a resume from step 2 of a 6-step log keeps steps 1-2 and rewrites 3-6: no duplicate steps" \
    || bad "log after resume" "steps $(steps_of "$T/k9.jsonl")"
expect_error "--grad-accum 2147483647 is refused" 2 "\-\-grad-accum 2147483647: expected at most 65536" \
    $G train $RUN --steps 2 --grad-accum 2147483647 --out "$T/x"
expect_error "--threads beyond the CPUs is refused" 2 "\-\-threads 100000: this process may use" \
    $G train $RUN --steps 2 --threads 100000 --out "$T/x"
expect_error "--profile beyond --steps is refused" 2 "\-\-profile 9: expected 0 (off) or a step of the run, 1 to --steps 2" \
    $G train $RUN --steps 2 --profile 9 --out "$T/x"
expect_error "a negative --bandwidth-gbs is refused" 2 "\-\-bandwidth-gbs -5" $G info --preset micro --bandwidth-gbs -5
expect_error "a negative --memory-gib is refused" 2 "\-\-memory-gib -1" $G train $RUN --steps 2 --memory-gib -1 --out "$T/x"
expect_error "--nan-policy skip stops as diverged past --max-skipped" 3 "more than --max-skipped 3: the run diverged" \
    $G train $RUN --steps 6 --lr 1e30 --nan-policy skip --max-skipped 3 --out "$T/nan"
[ ! -f "$T/nan/model.bin" ] && ok "a diverged run writes no model.bin" || bad "diverged" "model.bin written"
finish
