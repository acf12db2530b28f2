#!/bin/sh
# test_attention_table.sh: bench/attention_table.c (the course notes' attention table) in a reduced form: naive and
# flash over d = 16, 32 x T = 64, 128, 512 on the CPU with 2 MiB to plan for: a row per (kind, d, T) with positive
# forward and backward times, the memory the plan gives (naive: qkv + out + dout + dqkv and two T x T matrices, in
# fp32), "OOM (needs X)" instead of a launch where it exceeds the cap (naive at T = 512, whose T x T matrices alone
# take 2 MiB), and flash's memory below naive's at every T.
. tests/lib.sh
B=build/bench/attention_table
if [ ! -x "$B" ]; then
    bad "build/bench/attention_table" "missing (make test builds it)"
    finish
    exit 1
fi
"$B" --d 16,32 --seq-len 64,128,512 --reps 2 --warmup 1 --threads 2 --memory-gib 0.001953125 >"$T/t" 2>&1
/usr/bin/python3 - "$T/t" <<'PY' >"$T/py" 2>&1 && ok "attention table (reduced): $(cat "$T/py")" || bad "attention table" "$(cat "$T/py"; cat "$T/t")"
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(naive|flash)\s+(\d+)\s+(\d+)\s+(.*)$", line)
    if m:
        rows[(m.group(1), int(m.group(2)), int(m.group(3)))] = m.group(4)
assert len(rows) == 12, rows
oom = 0
for (kind, d, T), rest in rows.items():
    need = 4 * (8 * T * d + (2 * T * T if kind == "naive" else 0))
    if kind == "naive" and need > 2 * 1048576:
        m = re.match(r"-\s+-\s+OOM \(needs ([\d.]+) MiB, has 2.00 MiB\)", rest)
        assert m and abs(float(m.group(1)) - need / 2**20) < 0.006, (kind, d, T, rest)
        oom += 1
        continue
    m = re.match(r"([\d.]+) \+- ([\d.]+)\s+([\d.]+) \+- ([\d.]+)\s+([\d.]+)$", rest)
    assert m, (kind, d, T, rest)
    f, b, mem = float(m.group(1)), float(m.group(3)), float(m.group(5))
    assert f > 0 and b > 0, (kind, d, T, rest)
    if kind == "naive":
        assert abs(mem - need / 1048576) < 0.006, (kind, d, T, mem, need / 1048576)
    else:
        n = rows[("naive", d, T)]
        nm = float(n.split()[-1]) if "OOM" not in n else float(re.search(r"needs ([\d.]+)", n).group(1))
        assert mem < nm, (d, T, mem, nm)
assert oom == 2, oom
print("12 rows, times positive, memory = the plan, naive at T=512 OOM (%s) without a launch, flash's memory below naive's"
      % re.search(r"needs [\d.]+ MiB", rows[("naive", 16, 512)]).group(0))
PY
finish
