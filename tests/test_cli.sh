#!/bin/sh
# test_cli.sh: the gptrain program end to end. A short training run (metrics, JSONL, evaluation, model file,
# sample) and one case per bad input, each asserting the exit status, the one-line message naming the flag or file,
# and that nothing existing was overwritten. Run from the repository root after `make`.
. tests/lib.sh

(cd data/tinyshakespeare && sha256sum --quiet -c input.txt.sha256) >"$T/sha" 2>&1 \
    && grep -q 86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed data/tinyshakespeare/input.txt.sha256 \
    && ok "vendored Tiny Shakespeare matches its published sha256" || bad "vendored corpus" "$(cat "$T/sha")"
D=$T/data
$G prepare --input data/tinyshakespeare/input.txt --out "$D" --tokenizer char --val-fraction 0.1 >"$T/prep" 2>&1 \
    && [ -f "$D/train_000000.bin" ] && [ -f "$D/val_000000.bin" ] && [ -f "$D/tokenizer.txt" ] \
    && ok "prepare writes train/val shards and tokenizer" || bad "prepare" "$(cat "$T/prep")"

# ---- a short run: metrics every step, JSONL, eval, model file, sample ----
RUN="--data $D --preset micro --batch 4 --seq-len 32 --warmup-steps 2 --eval-every 10 --eval-steps 4 --threads 2"
if $G train $RUN --steps 20 --lr 3e-3 --log "$T/log.jsonl" --out "$T/run" >"$T/train" 2>&1; then
    ok "train: a 20-step micro run exits 0"
else
    bad "train" "$(tail -5 "$T/train")"
fi
/usr/bin/python3 - "$T/log.jsonl" <<'PY' >"$T/py" 2>&1 && ok "train: JSONL has 20 rows with every metric; loss falls; HFU = MFU; val_loss on eval steps" || bad "train JSONL" "$(cat "$T/py")"
import json, sys, math
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 20, len(rows)
keys = ["step", "loss", "lr", "grad_norm", "step_ms", "tokens_per_s", "model_tflops", "hw_tflops", "mfu", "hfu"]
for r in rows:
    for k in keys:
        assert k in r and math.isfinite(r[k]), (k, r)
    assert r["hfu"] == r["mfu"] and r["mfu"] > 0, r
assert [r["step"] for r in rows] == list(range(1, 21))
assert rows[-1]["loss"] < rows[0]["loss"] - 0.3, (rows[0]["loss"], rows[-1]["loss"])
assert "val_loss" in rows[9] and "val_loss" in rows[19] and "val_loss" not in rows[4]
assert abs(rows[0]["lr"] - 1.5e-3) < 1e-9, rows[0]["lr"]  # warmup: lr * 1/2
PY
# stdout: one line for the configuration (the whole of it in OUT/config.txt, reusable as --config), a row per step
# of a run this short, eval lines, and the summary block at the end.
grep -q "val_loss" "$T/train" && grep -q "ETA" "$T/train" && grep -q "  batch = 4" "$T/run/config.txt" \
    && grep -q "the resolved configuration is in $T/run/config.txt" "$T/train" && ! grep -q "  batch = 4" "$T/train" \
    && [ "$(grep -cE '^ +[0-9]+/20 ' "$T/train")" = 20 ] \
    && grep -qE "^summary: [0-9.]+ ms per step, [0-9]+ tokens/s, MFU [0-9.]+%, HFU [0-9.]+% of " "$T/train" \
    && grep -qE "^  val_loss: final [0-9.]+, best [0-9.]+ at step (10|20)$" "$T/train" \
    && grep -q "^  model $T/run/model.bin; configuration $T/run/config.txt; log $T/log.jsonl" "$T/train" \
    && ok "train: stdout shows a line for the configuration (OUT/config.txt holds it), a row per step, eval lines, the summary block" \
    || bad "train stdout" "$(head -3 "$T/train"; tail -4 "$T/train")"
# --version: one line naming the version, the commit built from, the options and the compiler; every run starts with it.
v=$($G --version)
want=$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)
echo "$v" | grep -qE "^gptrain [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-z-]+\): OpenBLAS (yes|no), MPI (yes|no)[^,]*, CUDA [^,]+(, [^,]+)*, NCCL (yes|no|emulated); (gcc|clang) " \
    && echo "$v" | grep -q "(commit $want)" && [ "$(head -1 "$T/train")" = "$v" ] && [ "$($G version)" = "$v" ] \
    && [ "$(head -1 "$T/run/config.txt")" = "# $v" ] \
    && ok "--version: $v; the first line of a run and of OUT/config.txt" || bad "--version" "'$v' (commit $want); run's first line: $(head -1 "$T/train")"
# Help a newcomer reads: gptrain help CMD = gptrain CMD --help, lines under 100 columns, an example that parses;
# train's flags under their sections in order, each flag of the resolved configuration listed once, * required.
hbad=
for c in prepare train sample export info plan ab bench plot; do
    $G help $c >"$T/h1" 2>&1 && $G $c --help >"$T/h2" 2>&1 && cmp -s "$T/h1" "$T/h2" || hbad="$hbad $c:differs"
    long=$(awk 'length($0) > 99' "$T/h1" | head -1)
    [ -z "$long" ] || hbad="$hbad $c:long($long)"
    ex=$(sed -n '/^example:$/{n;s/^  gptrain //p}' "$T/h1")
    [ -n "$ex" ] || { hbad="$hbad $c:no-example"; continue; }
    eval "\$G $ex --help" >/dev/null 2>"$T/herr" || hbad="$hbad $c:example($(cat "$T/herr"))"
done
$G train --help >"$T/ht"
$G prepare --help >"$T/hp"
secs=$(grep -E '^[a-z][a-z ]+:$' "$T/ht" | grep -v '^example:$' | tr '\n' '/')
missing=$(sed -n 's/^  \([a-z0-9-]*\) = .*/\1/p' "$T/run/config.txt" | while read -r k; do
    [ "$(grep -cE "^  [* ] --$k( |\$)" "$T/ht")" = 1 ] || echo "$k"; done)
[ -z "$hbad" ] && [ "$secs" = "general:/data:/model:/batch:/optimizer and schedule:/precision and speed:/checkpoints:/evaluation and logging:/distributed:/" ] \
    && [ -z "$missing" ] && grep -q '^  \* --data DIR ' "$T/ht" && grep -q '^  \* --train-data GLOB ' "$T/ht" \
    && grep -q '^\* required: one of --data DIR and --train-data GLOB' "$T/ht" && grep -q '^  \* --input FILE|DIR ' "$T/hp" \
    && ok "help: gptrain help CMD = CMD --help for 9 commands, lines < 100 columns, examples parse; train's sections in order, every flag once, required ones marked" \
    || bad "help" "problems:$hbad; sections $secs; flags missing or repeated: $missing"
# --verbose on prints the whole configuration; a long run prints about 1% of its steps (the log keeps every one).
$G train $RUN --steps 300 --eval-every 0 --verbose on --log "$T/long.jsonl" --out "$T/long" >"$T/tl" 2>&1
rows=$(grep -cE '^ +[0-9]+/300 ' "$T/tl")
grep -q "  batch = 4" "$T/tl" && [ "$rows" -ge 100 ] && [ "$rows" -le 110 ] && [ "$(wc -l <"$T/long.jsonl")" = 300 ] \
    && ok "--verbose on: the whole configuration on stdout; 300 steps: $rows rows printed (every 3rd, and every 10 s), 300 logged" \
    || bad "--verbose / row cadence" "$rows rows; $(head -2 "$T/tl")"
# ---- --attention flash (no T x T buffer) against naive: the same run, losses within fp32 rounding ----
$G train $RUN --steps 20 --lr 3e-3 --attention naive --log "$T/naive.jsonl" --out "$T/run_naive" >"$T/tn" 2>&1 \
  && $G train $RUN --steps 20 --lr 3e-3 --attention flash --log "$T/flash.jsonl" --out "$T/run_flash" >"$T/tf" 2>&1 \
  && grep -q "attention flash" "$T/tf" && grep -q "attention naive" "$T/tn" \
  && /usr/bin/python3 - "$T/naive.jsonl" "$T/flash.jsonl" <<'PY' >"$T/py" 2>&1 \
  && ok "train --attention flash: 20 steps, losses equal naive's within 1e-4; hardware FLOPs include the QK^T recompute" \
  || bad "train --attention flash" "$(cat "$T/py"; tail -3 "$T/tf")"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 20
worst = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b))
assert worst <= 1e-4, worst
# flash: hardware FLOPs > model FLOPs (the backward recomputes S); naive: equal
assert all(y["hw_tflops"] > y["model_tflops"] for y in b) and all(x["hw_tflops"] == x["model_tflops"] for x in a)
PY
$G info --preset gpt2-124m --batch 8 --seq-len 1024 --attention flash >"$T/if" 2>&1 \
  && $G info --preset gpt2-124m --batch 8 --seq-len 1024 --attention naive >"$T/in" 2>&1 \
  && /usr/bin/python3 - "$T/in" "$T/if" <<'PY' >"$T/py" 2>&1 \
  && ok "info --attention flash: activations smaller by L*B*NH*T*(T-1)*4 bytes (the probabilities)" \
  || bad "info --attention" "$(cat "$T/py")"
import re, sys
def act(path):
    for line in open(path):
        if "activations, --recompute none" in line:
            return float(re.search(r"([0-9.]+) MiB", line).group(1))
    raise SystemExit("no activations line in " + path)
n, f = act(sys.argv[1]), act(sys.argv[2])
want = 12 * 8 * 12 * 1024 * 1023 * 4 / 1048576
assert abs((n - f) - want) < 0.02, (n, f, n - f, want)
PY
# The mixed-precision anatomy of GPT-2 124M (B=16, T=1024, flash) against the closed form: P parameters (with the
# vocabulary padding) take 4P master + 2P bf16 copy + 4P gradients + 8P AdamW = 18 bytes each; the activations kept
# with --recompute none are, per layer, 8NC + 2NF bf16 values (ln1, qkv 3, atty, residual2, ln2, residual3; fch,
# fch_gelu) and 4N + NH*N fp32 (two LayerNorms' mean and rstd, the logsumexp), plus encoded, proj_out, lnf (3NC) and
# the logits (N*Vp) in bf16 and lnf's statistics and the losses (3N) in fp32; in fp32 every bf16 byte counts twice.
# With --grad-dtype bf16 the gradients take 2P: 16 bytes per parameter, nothing else changes.
$G info --preset gpt2-124m --batch 16 --seq-len 1024 --device cuda --precision bf16 >"$T/ib" 2>&1 \
  && $G info --preset gpt2-124m --batch 16 --seq-len 1024 --device cuda --precision fp32 --attention flash >"$T/i32" 2>&1 \
  && $G info --preset gpt2-124m --batch 16 --seq-len 1024 --device cuda --precision bf16 --grad-dtype bf16 >"$T/ibg" 2>&1 \
  && /usr/bin/python3 - "$T/ib" "$T/i32" "$T/ibg" <<'PY' >"$T/py" 2>&1 \
  && ok "info --precision bf16 (124M, B=16 T=1024): $(cat "$T/py")" \
  || bad "info: the mixed-precision anatomy" "$(cat "$T/py")"
import re, sys
sys.path.insert(0, "tests/ref")
from info_table import lines
b, f = lines(sys.argv[1]), lines(sys.argv[2])
P, L, C, F, NH, Vp, N = 124475904, 12, 768, 3072, 12, 50304, 16 * 1024
MiB = 1048576
want = {"weights (fp32 master)": 4 * P, "weights' bf16 copy (the ops read)": 2 * P, "gradients (fp32)": 4 * P,
        "AdamW state (m, v)": 8 * P}
for k, v in want.items():
    assert abs(b[k] - v / MiB) < 0.006, (k, b[k], v / MiB)
assert "weights' bf16 copy (the ops read)" not in f, "fp32 has no copy"
def acts(e):   # bytes per compute-dtype element e
    return L * ((8 * N * C + 2 * N * F) * e + (4 * N + NH * N) * 4) + (3 * N * C + N * Vp) * e + 3 * N * 4
assert abs(b["activations, --recompute none"] - acts(2) / MiB) < 0.006, (b["activations, --recompute none"], acts(2) / MiB)
assert abs(f["activations, --recompute none"] - acts(4) / MiB) < 0.006, (f["activations, --recompute none"], acts(4) / MiB)
tot = sum(b[k] for k in want) * MiB / P
assert abs(tot - 18) < 1e-4, tot
assert re.search(r"bytes per parameter for weights, gradients and optimizer: 18 here", open(sys.argv[1]).read())
g = lines(sys.argv[3])
assert "gradients (fp32)" not in g and abs(g["gradients (bf16)"] - 2 * P / MiB) < 0.006, g
for k in b:
    if k != "gradients (fp32)" and not k.startswith("total"):
        assert g[k] == b[k], (k, g[k], b[k])
assert abs(b["total, --recompute none"] - g["total, --recompute none"] - 2 * P / MiB) < 0.02
assert re.search(r"bytes per parameter for weights, gradients and optimizer: 16 here", open(sys.argv[3]).read())
print("weights 4+2, gradients 4, AdamW 8 = 18 bytes/param (16 with --grad-dtype bf16: gradients 2); activations "
      "%.2f MiB = the closed form (fp32: %.2f MiB, %.3fx)"
      % (b["activations, --recompute none"], f["activations, --recompute none"],
         b["activations, --recompute none"] / f["activations, --recompute none"]))
PY
# ZeRO-1 over 8 GPUs (--gpus 8 --zero 1): one rank keeps 1/8 of the moments (8P/8) and, under bf16, of the master
# (4P/8); the bf16 copy (2P) and the gradients (4P) whole, padded to 8 shards of a multiple of 128: 7.5 bytes per
# parameter (fp32: 4 + 4 + 1 = 9); the activations as without.
$G info --preset gpt2-124m --batch 16 --seq-len 1024 --device cuda --precision bf16 --gpus 8 --zero 1 >"$T/iz" 2>&1 \
  && $G info --preset gpt2-124m --batch 16 --seq-len 1024 --device cuda --precision fp32 --gpus 8 --zero 1 >"$T/iz32" 2>&1 \
  && /usr/bin/python3 - "$T/ib" "$T/iz" "$T/iz32" <<'PY' >"$T/py" 2>&1 \
  && ok "info --gpus 8 --zero 1 (124M): $(cat "$T/py")" || bad "info: ZeRO-1 per rank" "$(cat "$T/py")"
import re, sys
sys.path.insert(0, "tests/ref")
from info_table import lines
b, z = lines(sys.argv[1]), lines(sys.argv[2])
P, MiB = 124475904, 1048576
shard = -(-(-(-P // 8)) // 128) * 128
want = {"weights (fp32 master, shard)": 4 * shard, "weights' bf16 copy (the ops read)": 2 * 8 * shard,
        "gradients (fp32)": 4 * 8 * shard, "AdamW state (m, v; shard)": 8 * shard}
for k, v in want.items():
    assert abs(z[k] - v / MiB) < 0.006, (k, z[k], v / MiB)
assert z["activations, --recompute none"] == b["activations, --recompute none"]
text, t32 = open(sys.argv[2]).read(), open(sys.argv[3]).read()
assert "per rank of 8 with --zero 1: optimizer state in shards of %d" % shard in text, text[:600]
assert re.search(r"bytes per parameter for weights, gradients and optimizer: 7.5 here", text)
assert re.search(r"bytes per parameter for weights, gradients and optimizer: 9 here", t32)
print("shards of %d: master 4/8 + bf16 copy 2 + gradients 4 + AdamW 8/8 = 7.5 bytes/param (fp32: 9); the total "
      "%.0f MiB vs %.0f MiB without" % (shard, z["total, --recompute none"], b["total, --recompute none"]))
PY
# --batch auto for one rank of a ZeRO-1 group: the room its shards leave goes to the batch (1.5B in 40 GiB: more
# than without), and what it plans still fits.
$G info --preset gpt2-1.5b --batch auto --seq-len 1024 --device cuda --precision bf16 --memory-gib 40 >"$T/ia" 2>&1
$G info --preset gpt2-1.5b --batch auto --seq-len 1024 --device cuda --precision bf16 --memory-gib 40 --gpus 8 --zero 1 >"$T/iaz" 2>&1
/usr/bin/python3 - "$T/ia" "$T/iaz" <<'PY' >"$T/py" 2>&1 && ok "--batch auto with --zero 1: $(cat "$T/py")" || bad "--batch auto with --zero 1" "$(cat "$T/py")"
import re, sys
a, z = open(sys.argv[1]).read(), open(sys.argv[2]).read()
b = int(re.search(r"--batch auto: B=(\d+)", a).group(1))
m = re.search(r"--batch auto: B=(\d+), .*, one rank of 8 with --zero 1; B=\d+ would need ([0-9.]+) GiB", z)
bz, need = int(m.group(1)), float(m.group(2))
total = float(re.search(r"  total, --recompute none\s+([0-9.]+) MiB", z).group(1))
assert bz > b and total <= 40 * 1024 and need > 40, (b, bz, total, need)
print("1.5B in 40 GiB: B=%d (one rank of 8 with ZeRO-1: its plan %.0f MiB) against B=%d without" % (bz, total, b))
PY
$G sample --from "$T/run" --tokens 50 --prompt "ROMEO:" --seed 7 >"$T/s1" 2>&1
$G sample --from "$T/run" --tokens 50 --prompt "ROMEO:" --seed 7 >"$T/s2" 2>&1
n=$(head -c -1 "$T/s1" | wc -c)
[ "$n" -eq 56 ] && cmp -s "$T/s1" "$T/s2" && ok "sample: 50 characters after the prompt, repeatable for a seed" \
    || bad "sample" "got $n bytes: $(cat "$T/s1")"
$G train $RUN --steps 3 --recompute full --log "$T/full.jsonl" --out "$T/runfull" >"$T/tf" 2>&1
/usr/bin/python3 -c "
import json,sys
r=[json.loads(l) for l in open('$T/full.jsonl')]
assert all(x['hfu'] > x['mfu'] for x in r), r" 2>"$T/py" && ok "train --recompute full: HFU > MFU" || bad "recompute full HFU" "$(cat "$T/py")"
$G info --preset gpt2-124m --batch 8 --seq-len 1024 >"$T/info" 2>&1 && grep -q "124439808" "$T/info" \
    && grep -q "recompute selective" "$T/info" && grep -q "recompute full" "$T/info" \
    && ok "info: gpt2-124m parameters and activation memory per recompute mode" || bad "info" "$(cat "$T/info")"
printf 'steps = 2\n# a comment\nbatch=2\n' >"$T/cfg"
$G train $RUN --config "$T/cfg" --batch 3 --out "$T/runcfg" >"$T/tc" 2>&1 && grep -q "  steps = 2" "$T/runcfg/config.txt" \
    && grep -q "  batch = 3" "$T/runcfg/config.txt" && ok "--config applies key=value lines; the command line overrides them" \
    || bad "--config" "$(head -20 "$T/tc")"
# ---- a train-only set (prepare --val-fraction 0): refused without a val source; --eval-every -1 or --val-data ----
D0=$T/noval
$G prepare --input data/tinyshakespeare/input.txt --out "$D0" --tokenizer char --val-fraction 0 >"$T/p0" 2>&1 \
    && [ -f "$D0/train_000000.bin" ] && [ ! -e "$D0/val_000000.bin" ] && grep -q "no val split" "$T/p0" \
    && ok "prepare --val-fraction 0: a train split only, and says so" || bad "prepare --val-fraction 0" "$(cat "$T/p0")"
R0="--data $D0 --preset micro --batch 4 --seq-len 32 --threads 2 --steps 3"
expect_error "train on a set without val" 2 "\-\-data $D0: has no val split (prepared with --val-fraction 0?): give --val-data GLOB, or --eval-every -1" \
    $G train $R0 --out "$T/nv0"
expect_error "--eval-every below -1" 2 "\-\-eval-every -2: expected -1 (never), 0 (only at the end) or more" \
    $G train $R0 --eval-every -2 --out "$T/nv0"
$G train $R0 --eval-every -1 --log "$T/nv1.jsonl" --out "$T/nv1" >"$T/tnv1" 2>&1 \
    && grep -q "no validation (--eval-every -1); prefetch" "$T/tnv1" && grep -q "; no validation (--eval-every -1);" "$T/tnv1" \
    && ! grep -q "^eval " "$T/tnv1" && ! grep -q val_loss "$T/nv1.jsonl" && [ "$(wc -l <"$T/nv1.jsonl")" = 3 ] \
    && [ -f "$T/nv1/model.bin" ] && ok "train --eval-every -1 on a train-only set: 3 steps, no evaluation, the model written" \
    || bad "train --eval-every -1" "$(tail -4 "$T/tnv1")"
$G train $R0 --val-data "$D/val_*.bin" --eval-steps 2 --log "$T/nv2.jsonl" --out "$T/nv2" >"$T/tnv2" 2>&1 \
    && grep -q "^eval  step 3/3: val_loss" "$T/tnv2" && grep -q val_loss "$T/nv2.jsonl" \
    && ok "train --data DIR --val-data GLOB: the train-only set validated on another's val shards" \
    || bad "train --data + --val-data" "$(tail -4 "$T/tnv2")"

# ---- bad input: one line, exit 2, nothing overwritten ----
mkdir -p "$T/keep" && echo precious >"$T/keep/model.bin"
expect_error "unknown flag" 2 "unknown flag '--bogus'" $G train $RUN --bogus 1
expect_error "bad integer" 2 "\-\-batch: 'abc' is not an integer" $G train $RUN --batch abc
expect_error "bad choice" 2 "\-\-recompute: 'most' is not one of none|selective|full" $G train $RUN --recompute most
expect_error "config that does not divide" 2 "\-\-d-model 100 is not divisible by --n-head 3" $G train $RUN --d-model 100 --n-head 3
expect_error "T larger than the model's max" 2 "\-\-seq-len 64 exceeds the model's maximum sequence length 32" $G train $RUN --seq-len 64
expect_error "total-batch-tokens not a multiple" 2 "\-\-total-batch-tokens 1000 is not a multiple" $G train $RUN --total-batch-tokens 1000
expect_error "unknown config key" 2 "$T/cfg2:1: unknown key 'stepz'" sh -c "printf 'stepz=3\n' >$T/cfg2; $G train $RUN --config $T/cfg2"
expect_error "missing data dir" 2 "$T/nope" $G train $RUN --data "$T/nope" --out "$T/keep"
mkdir -p "$T/trunc" && cp "$D/tokenizer.txt" "$D/val_000000.bin" "$T/trunc/" && head -c 5000 "$D/train_000000.bin" >"$T/trunc/train_000000.bin"
expect_error "truncated shard" 2 "train_000000.bin.*truncated" $G train $RUN --data "$T/trunc" --out "$T/keep"
mkdir -p "$T/magic" && cp "$D/tokenizer.txt" "$D/val_000000.bin" "$T/magic/" \
    && { printf '\071\071\071\071'; tail -c +5 "$D/train_000000.bin"; } >"$T/magic/train_000000.bin"
expect_error "wrong-magic shard" 2 "train_000000.bin.*magic" $G train $RUN --data "$T/magic" --out "$T/keep"
mkdir -p "$T/vocab" && cp "$D/train_000000.bin" "$D/val_000000.bin" "$T/vocab/" \
    && awk '/^bytes/ { printf "bytes"; for (i = 2; i <= 41; i++) printf " %s", $i; print ""; next }
            /^vocab_size/ { print "vocab_size 40"; next } { print }' "$D/tokenizer.txt" >"$T/vocab/tokenizer.txt"
expect_error "tokens outside the vocabulary" 2 "outside the vocabulary" $G train $RUN --data "$T/vocab" --vocab-size 40 --out "$T/keep"
expect_error "unwritable --out" 2 "\-\-out $T/keep/model.bin/x" $G train $RUN --out "$T/keep/model.bin/x"
expect_error "unwritable --log" 2 "\-\-log $T/no/such/dir/log.jsonl" $G train $RUN --log "$T/no/such/dir/log.jsonl" --out "$T/keep"
expect_error "NaN loss stops the run (--nan-policy stop)" 3 "not finite" $G train $RUN --steps 6 --lr 1e30 --out "$T/keep"
[ "$(cat "$T/keep/model.bin")" = precious ] && ok "failed runs left the existing model.bin untouched" \
    || bad "nothing overwritten" "$T/keep/model.bin changed"
$G train $RUN --steps 6 --lr 1e30 --nan-policy skip --log "$T/nan.jsonl" --out "$T/nanrun" >"$T/ns" 2>&1 \
    && grep -q '"skipped": true' "$T/nan.jsonl" && ok "--nan-policy skip skips non-finite updates and finishes" \
    || bad "--nan-policy skip" "$(tail -3 "$T/ns")"
expect_error "prepare: missing input" 2 "$T/none.txt" $G prepare --input "$T/none.txt" --out "$T/p"
expect_error "sample: missing model" 2 "$T/empty/model.bin" $G sample --from "$T/empty"
expect_error "multi-process launch refused" 2 "WORLD_SIZE=2" env WORLD_SIZE=2 $G train $RUN --out "$T/keep"
expect_error "device cuda without a CUDA build" 2 "\-\-device cuda" $G train $RUN --device cuda --out "$T/keep"
expect_error "--grad-dtype bf16 on the CPU" 2 "\-\-grad-dtype bf16: only with --precision bf16 on --device cuda" \
    $G train $RUN --grad-dtype bf16 --out "$T/keep"
# Data parallelism on paper: the ring all-reduce time is 2(N-1)/N x gradient bytes / bandwidth.
$G info --preset gpt2-124m --seq-len 1024 --batch 16 --gpus 8 --link ib >"$T/info" 2>&1
/usr/bin/python3 - "$T/info" <<'PY' >"$T/py" 2>&1 && ok "info --gpus 8 --link ib: $(grep all-reduce "$T/info" | head -c 140)" || bad "info --gpus" "$(cat "$T/py")"
import re, sys
t = open(sys.argv[1]).read()
mib = float(re.search(r"all-reduce of ([0-9.]+) MiB", t).group(1))
ms = float(re.search(r"bandwidth: ([0-9.]+) ms", t).group(1))
want = 2 * 7 / 8 * mib * 1048576 / 50e9 * 1e3
assert abs(ms - want) <= 1e-3 * want, (ms, want)
# Memory per rank: fp32 weights, gradients and AdamW = 4P + 4P + 8P; with --zero 1 the moments in 8 shards: 4P + 4P + P.
# ZeRO-1's reduce-scatter of the gradients + all-gather of the fp32 weights: (N-1)/N x (4P + 4P) / bandwidth.
m = re.search(r"memory per rank: weights ([0-9.]+) MiB \+ gradients ([0-9.]+) MiB \+ AdamW ([0-9.]+) MiB = ([0-9.]+) MiB; "
              r"with --zero 1 ([0-9.]+) MiB \(the moments in 8 shards\)", t)
w, g, opt, tot, zero = (float(x) for x in m.groups())
assert abs(opt - 2 * w) < 0.01 and abs(tot - (w + g + opt)) < 0.02 and abs(zero - (w + g + opt / 8)) < 0.02, m.groups()
zms = float(re.search(r"--zero 1: reduce-scatter .* \(not overlapped\): ([0-9.]+) ms", t).group(1))
zwant = 7 / 8 * (g + w) * 1048576 / 50e9 * 1e3
assert abs(zms - zwant) <= 1e-3 * zwant, (zms, zwant)
PY
# The bucketed overlap on paper (124M, 8 ranks, NVLink): one bucket per layer (12 C^2 + 13 C fp32 gradients = 28.4 MB,
# over 25 MiB) and the embeddings' (Vp C + maxT C + 2 C), sent when the backward ends after layer 0's, whose transfer
# the layers' backward cannot hide either: exposed = (layer + embeddings) x 2(N-1)/N x 4 bytes / 450 GB/s.
$G info --preset gpt2-124m --seq-len 1024 --batch 16 --gpus 8 --link nvlink >"$T/info8" 2>&1
/usr/bin/python3 - "$T/info8" <<'PY' >"$T/py" 2>&1 && ok "info --gpus 8: $(grep -o 'overlapped (.*' "$T/info8")" || bad "info buckets" "$(cat "$T/py")"
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"overlapped \(--bucket-mb 25: (\d+) buckets\): ([0-9.]+) ms exposed past the backward, ([0-9.]+) ms of it", t)
assert m, t
C, Vp, maxT = 768, 50304, 1024
per = 2 * 7 / 8 * 4 / 450e9 * 1e3
layer, emb = (12 * C * C + 13 * C) * per, (Vp * C + maxT * C + 2 * C) * per
assert int(m.group(1)) == 13, m.group(1)
assert abs(float(m.group(3)) - emb) < 1e-3, (m.group(3), emb)
assert abs(float(m.group(2)) - (layer + emb)) < 1e-3, (m.group(2), layer + emb)
PY
# llm.c shards with no tokenizer.txt beside them (ids below 100): the model's vocabulary is the user's (--vocab-size
# 100), every token is checked against it (V=50 refused, naming the shard), and sampling speaks token ids since
# GPT-2's tokenizer (kept for decoding) does not fit; ids outside the vocabulary are refused.
/usr/bin/python3 bench/synthetic_shards.py --out "$T/ids" --train-tokens 20000 --val-tokens 4000 --vocab 100
IDS="--train-data $T/ids/train_*.bin --val-data $T/ids/val_*.bin --preset micro --batch 4 --seq-len 32 --steps 3 --eval-steps 2"
$G train $IDS --vocab-size 100 --out "$T/idr" >"$T/idr.out" 2>&1
$G sample --from "$T/idr" --tokens 8 --prompt "1 2 3" >"$T/ids.txt" 2>"$T/ids.err"
grep -q "^data: no tokenizer.txt beside the shards: the model's vocabulary V=100 is used" "$T/idr.out" \
    && grep -qE "^1 2 3( [0-9]+){8}$" "$T/ids.txt" && grep -q "printed as token ids" "$T/ids.err" \
    && /usr/bin/python3 -c "import sys; sys.exit(not all(int(x) < 100 for x in open(sys.argv[1]).read().split()))" "$T/ids.txt" \
    && ok "llm.c shards without a tokenizer train with --vocab-size 100; sampling prints token ids: $(cat "$T/ids.txt")" \
    || bad "shards without a tokenizer" "$(grep -E 'data:|error' "$T/idr.out"; cat "$T/ids.txt" "$T/ids.err")"
expect_error "a token outside --vocab-size 50" 2 "$T/ids/train_000000.bin: token [0-9]* at position [0-9]* is outside the vocabulary (size 50)" \
    $G train $IDS --vocab-size 50 --out "$T/idr50"
expect_error "a token id outside the vocabulary in the prompt" 2 "\-\-prompt '1 200': expected token ids 0..99" \
    $G sample --from "$T/idr" --tokens 2 --prompt "1 200"
finish
