# lib.sh: what the shell tests share (sourced, not run): a scratch folder removed on exit, one line per case, the
# "N passed, N failed" tally, and expect_error for bad inputs. $G is the program under test: ./gptrain, or
# GPTRAIN_BIN (make test-sanitize runs these tests on build/sanitize/gptrain).
G=${GPTRAIN_BIN:-./gptrain}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# expect_error NAME STATUS PATTERN CMD...: the command exits with STATUS and its stderr has PATTERN on one line
expect_error() {
    name=$1 want=$2 pattern=$3; shift 3
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" -ne "$want" ]; then bad "$name" "exit $got, expected $want; stderr: $(head -c 300 "$T/err")"; return; fi
    if ! grep -q -e "$pattern" "$T/err"; then bad "$name" "stderr lacks '$pattern': $(head -c 300 "$T/err")"; return; fi
    if [ "$(grep -c . "$T/err")" -ne 1 ]; then bad "$name" "expected one line on stderr, got: $(cat "$T/err")"; return; fi
    ok "$name: $(cat "$T/err")"
}

# finish: the tally line, and the exit status
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
