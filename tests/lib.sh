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

# kill_rank NAME JOB MARK OUT READY SECS: find Open MPI rank 1's process among those whose command line holds MARK
# (within 20 s), wait until OUT has a line matching READY (empty: half a second), kill it, and pass when the job JOB
# then ends within SECS seconds with a message naming rank 1 in OUT (never a hang: a job still running is killed).
kill_rank() {
    name=$1 job=$2 mark=$3 out=$4 ready=$5 secs=$6
    i=0
    victim=
    while [ $i -lt 200 ] && [ -z "$victim" ]; do
        for p in $(pgrep -f "$mark" 2>/dev/null); do
            tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=1$' && victim=$p
        done
        sleep 0.1
        i=$((i + 1))
    done
    if [ -z "$victim" ]; then
        kill -9 "$job" 2>/dev/null
        pkill -9 -f "$mark"
        bad "$name" "could not find rank 1's process"
        return
    fi
    if [ -n "$ready" ]; then
        i=0
        while [ $i -lt 300 ] && ! grep -q -e "$ready" "$out"; do sleep 0.1; i=$((i + 1)); done
    else
        sleep 0.5
    fi
    kill -9 "$victim"
    i=0
    while [ $i -lt $((secs * 10)) ] && kill -0 "$job" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$job" 2>/dev/null; then
        kill -9 "$job"
        pkill -9 -f "$mark"
        bad "$name" "the job was still running $secs s after rank 1 died"
    elif grep -qi "rank 1" "$out"; then
        ok "$name: the job ended in $((i / 10)) s: $(grep -i -m1 'rank 1' "$out" | head -c 150)"
    else
        bad "$name" "no message naming rank 1: $(tail -3 "$out")"
    fi
}

# finish: the tally line, and the exit status
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
