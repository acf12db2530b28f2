#!/bin/sh
# test_lessons.sh: every lesson of docs/lessons.md in its reduced form (bench/lessons.sh all --quick, the micro model
# for a few steps), so the guide cannot rot: each lesson prints its table, and what the guide teaches from it holds
# in the small too: the plan = what the run allocates (1); the first step slower than the warm ones (2); a row per
# batch size and per recompute mode, full recompute's HFU above its MFU (3, 4); gradient accumulation's step equal to
# the big batch's with less memory planned (5); naive and flash attention rows (6); the per-op profile (7); the
# all-reduce's comm_ms and exposed_comm_ms with 2 ranks (8, where MPI is built in); bf16 on the emulated GPU halves
# the activations (and with bf16 gradients the gradients) and keeps the loss within bf16 rounding of fp32's (9,
# where build/emu/gptrain is built).
. tests/lib.sh
GPTRAIN_BIN=$G GPTRAIN_EMU_BIN=build/emu/gptrain bash bench/lessons.sh all --quick --out "$T/l" >"$T/out" 2>"$T/err" || bad "bench/lessons.sh all --quick" "$(tail -5 "$T/err")"
/usr/bin/python3 - "$T/out" <<'PY' >"$T/py" 2>&1 && ok "lessons (quick): $(cat "$T/py")" || bad "lessons" "$(cat "$T/py"; tail -30 "$T/out")"
import re, sys
t = open(sys.argv[1]).read()
parts = dict((int(m.group(1)), m.group(2)) for m in re.finditer(r"== lesson (\d): [^\n]*\n(.*?)(?=\n== lesson|\Z)", t, re.S))
assert sorted(parts) == list(range(1, 10)), sorted(parts)
m = re.search(r"memory plan: ([\d.]+) MiB in all; allocated through the backend: ([\d.]+) MiB", parts[1])
assert m and m.group(1) == m.group(2), parts[1]
assert "peak RSS" in parts[1]
m = re.search(r"first step ([\d.]+) ms: ([\d.]+)x the warm median", parts[2])
assert m and float(m.group(2)) > 0, parts[2]
assert len(re.findall(r"^batch=\d+ +\d+ ", parts[3], re.M)) == 2, parts[3]
rows = {r: re.search(r"^recompute=" + r + r" .* ([\d.]+)% +([\d.]+)% ", parts[4], re.M) for r in ("none", "selective", "full")}
assert all(rows.values()), parts[4]
assert float(rows["full"].group(2)) > float(rows["full"].group(1)), rows["full"].group(0)
m = re.search(r"step \d+ loss +([\d.]+) +([\d.]+) +([\d.e+-]+)", parts[5])
p = re.search(r"planned memory \(MiB\) +([\d.]+) +([\d.]+)", parts[5])
assert m and float(m.group(3)) <= 1e-5 and p and float(p.group(2)) < float(p.group(1)), parts[5]
assert len(re.findall(r"^(naive|flash) +64 +\d+ +[\d.]+ \+- ", parts[6], re.M)) == 4, parts[6]
assert re.search(r"^profile of step \d+", parts[7], re.M) and re.search(r"^matmul_forward ", parts[7], re.M), parts[7]
if "skipped: no MPI" not in parts[8]:
    assert re.search(r"off \(after the backward\) +[\d.]+ +[\d.]+ +[\d.]+", parts[8]), parts[8]
    assert re.search(r"on \(per layer, overlapped\) +[\d.]+ +[\d.]+ +[\d.]+", parts[8]), parts[8]
if "skipped: no emulated GPU" not in parts[9]:
    r9 = {k: re.search(r"^  " + re.escape(k) + r" +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +[\d.]+ +([\d.e+-]+)$",
                       parts[9], re.M) for k in ("fp32", "bf16", "bf16 + bf16 grads")}
    assert all(r9.values()), parts[9]
    f, b, g = (tuple(float(x) for x in r9[k].groups()) for k in ("fp32", "bf16", "bf16 + bf16 grads"))
    # bf16: half the activation bytes, a bf16 copy beside the fp32 weights, less in all; bf16 grads: half the grads
    # (columns: plan, weights, grads, activations, final loss, max |dloss|)
    assert abs(b[3] - f[3] / 2) <= 0.02 and b[1] > f[1] and b[0] < f[0] and abs(g[2] - f[2] / 2) <= 0.02, parts[9]
    assert 0 < b[5] < 0.05 and 0 < g[5] < 0.05, parts[9]   # the losses within bf16 rounding of fp32's, not equal
print("9 lessons; plan = allocated %s MiB; grad-accum loss difference %s; full recompute HFU %s%% > MFU %s%%"
      % (re.search(r"allocated through the backend: ([\d.]+)", parts[1]).group(1), m.group(3),
         rows["full"].group(2), rows["full"].group(1)))
PY
finish
