#!/bin/sh
# test_lab.sh: the performance lab on the CPU. `ab` and `bench` run tiny configurations and write well-formed tables,
# CSV and JSONL; bench reports a configuration that cannot fit as OOM from the planner without launching it; the
# planner's memory against what the allocator hands out and against the process's measured memory; --batch auto;
# --profile's per-op table against the FLOP count; `plan`'s sections; bad lab flags.
. tests/lib.sh

D=$T/data
$G prepare --input data/tinyshakespeare/input.txt --out "$D" >/dev/null 2>&1 || bad "prepare" "failed"
BASE="--data $D --preset micro --seq-len 32 --threads 2"

# ---- ab ----
if $G ab $BASE --a "--recompute none --batch 4" --b "--recompute full --batch 4" --trials 2 --steps 3 --warmup 1 \
    --csv "$T/ab.csv" --jsonl "$T/ab.jsonl" >"$T/ab.out" 2>&1; then
    ok "ab: two arms, 2 interleaved trials, exit 0"
else
    bad "ab" "$(tail -5 "$T/ab.out")"
fi
/usr/bin/python3 - "$T/ab.out" "$T/ab.csv" "$T/ab.jsonl" <<'PY' >"$T/py" 2>&1 \
    && ok "ab: table rows A and B, B/A ratio with its spread, one peak for both arms' MFU, CSV (2 rows x 16 columns) and JSONL parse" \
    || bad "ab output" "$(cat "$T/py")"
import csv, json, re, sys
out = open(sys.argv[1]).read()
assert re.search(r"^A: --recompute none --batch 4\s+\d+\s+[\d.]+ \([\d.]+-[\d.]+\)", out, re.M), out
assert re.search(r"^B: --recompute full --batch 4\s+\d+", out, re.M), out
m = re.search(r"B/A tokens/s: ([\d.]+) \(min ([\d.]+), max ([\d.]+) over 2 trial pairs\)", out)
assert m and float(m.group(2)) <= float(m.group(1)) <= float(m.group(3)), out
rows = list(csv.reader(open(sys.argv[2])))
assert len(rows) == 3 and all(len(r) == 16 for r in rows), rows
assert rows[1][0] == "A" and rows[1][1] == "ok" and float(rows[1][2]) > 0
# full recompute re-runs the forward: its hardware TFLOPS exceed its model TFLOPS; none's are equal
assert float(rows[2][7]) > float(rows[2][6]) and abs(float(rows[1][7]) - float(rows[1][6])) < 1e-9
# both arms' MFU is against one peak (the first run's measurement, passed on): model TFLOPS / MFU agree
pa, pb = float(rows[1][6]) / float(rows[1][8]), float(rows[2][6]) / float(rows[2][8])
assert abs(pa - pb) <= 2e-3 * pa, (pa, pb)
assert re.search(r"peak [\d.]+ TFLOPS measured by this first run", out), out
# the planner's total beside the measured memory: full recompute plans less than none at the same batch
assert 0 < float(rows[2][10]) < float(rows[1][10]) and float(rows[1][11]) > 0, rows
lines = [json.loads(l) for l in open(sys.argv[3])]
assert lines[0]["config"] == "A" and lines[1]["config"] == "B" and "ratio_b_over_a" in lines[2]
PY

# ---- bench: a grid, one configuration over the memory cap ----
if $G bench $BASE --sweep recompute=none,full --sweep batch=2,100000 --steps 2 --warmup 1 --memory-gib 2 \
    --csv "$T/b.csv" --jsonl "$T/b.jsonl" >"$T/b.out" 2>&1; then
    ok "bench: a 2x2 grid, exit 0"
else
    bad "bench" "$(tail -5 "$T/b.out")"
fi
/usr/bin/python3 - "$T/b.out" "$T/b.csv" "$T/b.jsonl" <<'PY' >"$T/py" 2>&1 \
    && ok "bench: 4 rows; batch=100000 reported 'OOM (needs X GiB, has 2.00 GiB)' and not launched; CSV and JSONL well-formed" \
    || bad "bench output" "$(cat "$T/py")"
import csv, json, re, sys
out = open(sys.argv[1]).read()
for rc in ("none", "full"):
    assert re.search(rf"^recompute={rc} batch=2\s+\d+\s+[\d.]+ \(", out, re.M), out
    m = re.search(rf"^recompute={rc} batch=100000\s+OOM \(needs ([\d.]+) GiB, has 2.00 GiB", out, re.M)
    assert m and float(m.group(1)) > 2, out
rows = list(csv.reader(open(sys.argv[2])))
assert len(rows) == 5 and all(len(r) == 16 for r in rows), rows
assert [r[1] == "ok" for r in rows[1:]] == [True, False, True, False], rows
runs = [json.loads(l) for l in open(sys.argv[3])]
assert [r["ok"] for r in runs] == [True, False, True, False] and "OOM" in runs[1]["error"]
PY
$G bench $BASE --course --batch 1 --steps 2 --warmup 1 --memory-gib 2 >"$T/c.out" 2>&1 \
    && grep -q "fwd ms (0 warm-up)" "$T/c.out" && grep -q "^preset=small .*+-" "$T/c.out" \
    && grep -q "^preset=2.7b .*OOM (needs" "$T/c.out" \
    && ok "bench --course: forward/backward mean +- std with and without warm-up; 2.7b OOM from the planner" \
    || bad "bench --course" "$(tail -8 "$T/c.out")"

# ---- the planner against the allocator and the process ----
$G train $BASE --batch 4 --steps 2 --eval-steps 1 --out "$T/m4" --log "$T/m4.jsonl" >"$T/m4.out" 2>&1
$G train $BASE --batch 256 --steps 2 --eval-steps 1 --out "$T/m64" --log "$T/m64.jsonl" >"$T/m64.out" 2>&1
/usr/bin/python3 - "$T/m4.out" "$T/m64.out" "$T/m4.jsonl" "$T/m64.jsonl" <<'PY' >"$T/py" 2>&1 \
    && ok "planner: allocated == planned exactly; measured memory grows with B as planned (within 5%)" \
    || bad "planner vs measured" "$(cat "$T/py")"
import json, re, sys
def plan(path):
    m = re.search(r"memory plan: ([\d.]+) MiB in all; allocated through the backend: ([\d.]+) MiB", open(path).read())
    assert m, path
    return float(m.group(1)), float(m.group(2))
p4, a4 = plan(sys.argv[1]); p64, a64 = plan(sys.argv[2])
assert p4 == a4 and p64 == a64, (p4, a4, p64, a64)
mem = lambda f: max(json.loads(l)["mem_mib"] for l in open(f))
d_meas, d_plan = mem(sys.argv[4]) - mem(sys.argv[3]), p64 - p4
assert d_plan > 50 and abs(d_meas - d_plan) <= 0.05 * d_plan, (d_meas, d_plan)
print(d_meas, d_plan)
PY

# ---- --batch auto ----
$G train $BASE --batch auto --memory-gib 0.05 --steps 1 --eval-steps 1 --out "$T/auto" >"$T/auto.out" 2>&1
/usr/bin/python3 - "$T/auto.out" <<'PY' >"$T/py" 2>&1 \
    && ok "--batch auto --memory-gib 0.05: the largest B whose plan fits; B+1 does not; the run uses it" \
    || bad "--batch auto" "$(cat "$T/py"; tail -3 "$T/auto.out")"
import re, sys
out = open(sys.argv[1]).read()
m = re.search(r"--batch auto: B=(\d+), the largest that fits ([\d.]+) MiB .* B=(\d+) would need ([\d.]+) MiB", out)
assert m, out
b, cap, b1, need = int(m.group(1)), float(m.group(2)), int(m.group(3)), float(m.group(4))
assert b >= 1 and b1 == b + 1 and need > cap == 51.2, m.groups()
plan = float(re.search(r"memory plan: ([\d.]+) MiB in all", out).group(1))
assert plan <= cap, (plan, cap)
assert re.search(rf"batch: B={b} ", out), out
PY
expect_error "--batch auto: nothing fits" 2 "even B=1 needs" $G train $BASE --batch auto --memory-gib 0.0001 --steps 1 \
    --out "$T/none"

# ---- --profile ----
$G train $BASE --batch 4 --steps 2 --profile 2 --eval-steps 1 --out "$T/p" >"$T/p.out" 2>&1
/usr/bin/python3 - "$T/p.out" <<'PY' >"$T/py" 2>&1 \
    && ok "--profile 2: per-op table; its FLOPs add up to the model's count (LM head at the padded Vp)" \
    || bad "--profile" "$(cat "$T/py")"
import re, sys
out = open(sys.argv[1]).read()
assert "profile of step 2:" in out, out
rows = re.findall(r"^(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)", out, re.M)
names = {r[0] for r in rows}
assert {"matmul_forward", "matmul_backward", "attention_forward", "attention_backward", "adamw"} <= names, names
gflop = sum(float(r[4]) for r in rows)
m = re.search(r"model: L=(\d+) NH=(\d+) C=(\d+) F=(\d+) V=(\d+) \(Vp=(\d+)\)", out)
L, NH, C, F, V, Vp = map(int, m.groups())
model = float(re.search(r"flops per step: model ([\d.e+]+)", out).group(1))
N = 4 * 32
expected = model + 3 * 2 * N * C * (Vp - V)   # the kernels multiply the padded rows too
assert abs(gflop * 1e9 - expected) <= 1e-3 * expected, (gflop * 1e9, expected)
PY

# ---- plan ----
$G plan --preset gpt2-124m --seq-len 1024 --batch 8 --device cuda --memory-gib 80 >"$T/plan" 2>&1 \
    && grep -q "inference KV cache: 2\*L\*C = 18432 values per token" "$T/plan" \
    && grep -q "roofline lower bound per micro-step" "$T/plan" \
    && grep -q "largest micro-batch at T=1024 within 80.00 GiB" "$T/plan" \
    && grep -q "mixed bf16" "$T/plan" \
    && ok "plan: KV cache per token, roofline bound, largest batch per recompute mode, bytes per parameter" \
    || bad "plan" "$(cat "$T/plan")"

$G info --preset gpt2-124m --d-model 770 --n-head 10 --d-ff 3000 >"$T/al" 2>&1 \
    && grep -q "warning: alignment: d_model 770 is not a multiple of 64" "$T/al" \
    && grep -q "warning: alignment: d_ff 3000" "$T/al" && grep -q "warning: alignment: head size 77" "$T/al" \
    && ! $G info --preset gpt2-124m | grep -q "warning: alignment" \
    && ok "info: alignment warnings for d_model, d_ff and head size; none for GPT-2 124M" \
    || bad "alignment warnings" "$(grep -i align "$T/al")"

# ---- bad lab input ----
expect_error "ab without --b" 2 "\-\-a and \-\-b" $G ab $BASE --a "--batch 2"
expect_error "bench: bad --sweep" 2 "\-\-sweep 'recompute'" $G bench $BASE --sweep recompute
expect_error "bench: bad --steps" 2 "\-\-steps 'x'" $G bench $BASE --sweep batch=2 --steps x
finish
