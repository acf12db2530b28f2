#!/bin/sh
# test_plot.sh: `gptrain plot` and the lab's --plot. A short training log renders to a 1200x1000 PNG (signature and
# IHDR checked), also when the log has no MFU (unknown peak); bench --plot and ab --plot write PNGs; a missing log, a
# garbage line (named by its line number), an empty log and a missing gnuplot are one-line user errors; a gnuplot that
# fails or writes something that is not a PNG leaves the previous PNG untouched and no temporary file behind.
. tests/lib.sh

# png_size FILE: "W H" from a PNG's signature and IHDR chunk, or "not-a-png"
png_size() {
    /usr/bin/python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read(33)
if len(b) < 24 or b[:8] != b"\x89PNG\r\n\x1a\n" or b[12:16] != b"IHDR":
    print("not-a-png")
else:
    print(*struct.unpack(">II", b[16:24]))
PY
}

D=$T/data
$G prepare --input data/tinyshakespeare/input.txt --out "$D" >/dev/null 2>&1 || bad "prepare" "failed"
BASE="--data $D --preset micro --seq-len 32 --threads 2"
$G train $BASE --batch 2 --steps 12 --eval-every 4 --eval-steps 2 --log "$T/run.jsonl" --out "$T/model" \
    >"$T/train.out" 2>&1 || bad "train" "$(tail -3 "$T/train.out")"

# ---- a training log ----
if $G plot "$T/run.jsonl" >"$T/p.out" 2>&1 && [ "$(png_size "$T/run.png")" = "1200 1000" ]; then
    ok "plot: the log renders to run.png next to it, a 1200x1000 PNG"
else
    bad "plot" "$(cat "$T/p.out"); $(png_size "$T/run.png" 2>&1)"
fi
grep -q '"val_loss"' "$T/run.jsonl" && grep -q '"mfu": [0-9]' "$T/run.jsonl" \
    && ok "plot: the log it drew has val_loss and MFU records" || bad "plot input" "no val_loss or mfu in the log"
sed 's/"mfu": [0-9.]*/"mfu": null/; s/"hfu": [0-9.]*/"hfu": null/; s/"mem_mib": [0-9.]*/"mem_mib": 0.0/' \
    "$T/run.jsonl" >"$T/nomfu.jsonl"
if $G plot "$T/nomfu.jsonl" --out "$T/nomfu.png" >"$T/p.out" 2>&1 && [ "$(png_size "$T/nomfu.png")" = "1200 1000" ]; then
    ok "plot: a log without MFU/HFU or memory (unknown peak) still renders, those panels say so"
else
    bad "plot without mfu" "$(cat "$T/p.out")"
fi

# ---- the lab's bar charts ----
if $G bench $BASE --sweep recompute=none,full --steps 2 --warmup 1 --plot "$T/bench.png" >"$T/b.out" 2>&1 \
    && grep -q "^plot: $T/bench.png" "$T/b.out" && [ "$(png_size "$T/bench.png")" = "1200 1000" ]; then
    ok "bench --plot: a bar chart PNG of the grid"
else
    bad "bench --plot" "$(tail -3 "$T/b.out")"
fi
if $G ab $BASE --a "--batch 2" --b "--batch 4" --trials 2 --steps 2 --warmup 1 --plot "$T/ab.png" >"$T/a.out" 2>&1 \
    && [ "$(png_size "$T/ab.png")" = "1200 1000" ]; then
    ok "ab --plot: a bar chart PNG of the two arms with their min-max ranges"
else
    bad "ab --plot" "$(tail -3 "$T/a.out")"
fi

# ---- bad input ----
expect_error "plot: a missing log" 2 "$T/none.jsonl: cannot open" $G plot "$T/none.jsonl"
{ head -2 "$T/run.jsonl"; echo "this is not json"; } >"$T/garbage.jsonl"
expect_error "plot: a garbage line, named by number" 2 "garbage.jsonl:3: expected a JSON step record" \
    $G plot "$T/garbage.jsonl"
: >"$T/empty.jsonl"
expect_error "plot: an empty log" 2 "no step records" $G plot "$T/empty.jsonl"
expect_error "plot: no log named" 2 "expected a log file" $G plot
expect_error "plot: an unknown flag" 2 "unknown flag --bogus" $G plot "$T/run.jsonl" --bogus
mkdir -p "$T/nobin"
expect_error "plot: no gnuplot on PATH" 2 "apt-get install gnuplot-nox" env PATH="$T/nobin" $G plot "$T/run.jsonl"

# ---- atomic output: a failing gnuplot never replaces the previous PNG ----
mkdir -p "$T/fake" "$T/keep"
cp "$T/run.png" "$T/keep/old.png"
# A gnuplot that scribbles into its output file and then fails, as a crash mid-write would.
cat >"$T/fake/gnuplot" <<'EOF'
#!/bin/sh
out=$(sed -n 's/^set output "\(.*\)"$/\1/p' "$1")
printf 'half a png' >"$out"
echo "fake gnuplot: crashed" >&2
exit 1
EOF
chmod +x "$T/fake/gnuplot"
expect_error "plot: gnuplot fails mid-write" 2 "gnuplot failed: fake gnuplot: crashed" \
    env PATH="$T/fake:$PATH" $G plot "$T/run.jsonl" --out "$T/keep/old.png"
cmp -s "$T/run.png" "$T/keep/old.png" && [ "$(ls "$T/keep")" = "old.png" ] \
    && ok "plot: after the failure the previous PNG is intact and no temporary file is left" \
    || bad "plot atomic" "$(ls -la "$T/keep")"
# A gnuplot that exits 0 without drawing a PNG.
printf '#!/bin/sh\nout=$(sed -n '"'"'s/^set output "\\(.*\\)"$/\\1/p'"'"' "$1")\necho text >"$out"\n' >"$T/fake/gnuplot"
expect_error "plot: gnuplot writes something that is not a PNG" 2 "did not write a PNG" \
    env PATH="$T/fake:$PATH" $G plot "$T/run.jsonl" --out "$T/keep/old.png"
cmp -s "$T/run.png" "$T/keep/old.png" && [ "$(ls "$T/keep")" = "old.png" ] \
    && ok "plot: a non-PNG is refused, the previous PNG stays" || bad "plot non-png" "$(ls -la "$T/keep")"

finish
