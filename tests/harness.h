/*
 * harness.h: the tiny test vocabulary every C test in tests/ shares. A test binary runs its cases, prints one line per
 * case ("ok   name: detail" or "FAIL name: detail"), and ends with "N passed, N failed"; its exit status is non-zero
 * when any case failed. tests/run_all.sh adds the per-binary tallies into the suite's last line.
 */
#ifndef GPTRAIN_TEST_HARNESS_H
#define GPTRAIN_TEST_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int harness_passed = 0, harness_failed = 0;

#define HARNESS_UNUSED __attribute__((unused))

// Record one case. cond decides; the detail is printed either way so a passing line still shows the measured error.
HARNESS_UNUSED static void harness_case(int cond, const char *name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s %s: ", cond ? "ok  " : "FAIL", name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (cond) harness_passed++; else harness_failed++;
}

// Print the closing tally and return the process exit status.
HARNESS_UNUSED static int harness_finish(void) {
    printf("%d passed, %d failed\n", harness_passed, harness_failed);
    return harness_failed ? 1 : 0;
}

// Max error of a (fp32) against ref (fp64) with the rule |a-b| <= atol + rtol*|b|, atol = rtol * rms(ref) (sums with
// cancellation make tiny elements noisy relative to themselves but not relative to the tensor's scale). Returns the
// largest violation ratio err/(atol+rtol*|b|) (<= 1 passes; NaN or Inf in a gives INFINITY) and its index.
HARNESS_UNUSED static double harness_compare(const float *a, const double *ref, size_t n, double rtol, size_t *where) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += ref[i] * ref[i];
    double atol = rtol * sqrt(ss / (n ? (double)n : 1.0)) + 1e-30;
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) { if (where) *where = i; return INFINITY; }
        double r = fabs((double)a[i] - ref[i]) / (atol + rtol * fabs(ref[i]));
        if (r > worst) { worst = r; wi = i; }
    }
    if (where) *where = wi;
    return worst;
}

#endif
