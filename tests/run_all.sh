#!/bin/sh
# run_all.sh: the `make test` driver. Runs every test binary given as arguments, then the shell tests in tests/,
# then the PyTorch-fixture test a second time against a fixture freshly regenerated from tests/ref/gpt_ref.py (so
# the committed fixture can never drift from its script). Each test prints one line per case and its own
# "N passed, N failed"; this script adds them up and prints the suite's total as its last line.
passed=0
failed=0
out=$(mktemp)
run() {  # run NAME CMD...: show its output, add its tally (a run without a tally line counts as one failure)
    name=$1; shift
    echo "== $name"
    "$@" >"$out" 2>&1
    status=$?
    cat "$out"
    tally=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    if [ -z "$tally" ]; then
        echo "FAIL $name: exited $status without a 'N passed, N failed' line"
        failed=$((failed + 1))
        return
    fi
    p=${tally%% passed*}
    f=${tally#*, }; f=${f%% failed*}
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited $status"
        failed=$((failed + 1))
    fi
}
# A binary's name is its path below build/ (tests/test_gpu, emu/tests/test_gpu: the emulated GPU's build).
for bin in "$@"; do run "${bin#build/}" "$bin"; done
# RUN_ALL_SH: which shell tests, a list of paths or globs (default all of tests/test_*.sh), each named by its path
# below tests/; RUN_ALL_FIXTURE=0 skips the fixture regeneration.
for sh in ${RUN_ALL_SH:-tests/test_*.sh}; do [ -f "$sh" ] && run "${sh#tests/}" sh "$sh"; done
fresh=$(mktemp -d)
if [ "${RUN_ALL_FIXTURE:-1}" = 0 ]; then
    :
elif /usr/bin/python3 tests/ref/gpt_ref.py --fixture "$fresh/fixture.bin" >"$fresh/log" 2>&1; then
    run "test_model_ref (fixture regenerated from tests/ref/gpt_ref.py)" build/tests/test_model_ref "$fresh/fixture.bin"
else
    cat "$fresh/log"
    echo "FAIL fixture regeneration: /usr/bin/python3 tests/ref/gpt_ref.py --fixture failed (python3-torch installed?)"
    failed=$((failed + 1))
fi
rm -rf "$fresh" "$out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
