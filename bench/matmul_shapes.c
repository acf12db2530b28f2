/*
 * matmul_shapes.c: the forward GEMM out (N,M) = x (N,d) . W (M,d)^T (op_matmul_forward, no bias) timed across a
 * sweep of output widths M, to show how the width of a layer alone moves its speed: a GEMM is cut into tiles
 * (cuBLAS: 64 to 256 columns; OpenBLAS: a micro-kernel of 4 to 16), and a width one past a tile boundary pays for a
 * whole extra tile (tile quantization); on a GPU the tiles are run in waves of one per SM, and a last wave that is
 * nearly empty costs a whole wave (wave quantization).
 *   --sweep dff:   widths near 8/3·d, the SwiGLU MLP width that matches a 4·d GELU MLP's parameters (3 matrices of
 *                  d x F against 2 of d x 4d), every multiple of 8 within ±64 plus M ± 1 around each multiple of 64;
 *                  the best width there (highest TFLOPS, i.e. least time per FLOP, within ±10% of 8/3·d) is marked.
 *   --sweep vocab: widths near GPT-2's V = 50257 (odd), padded to 8, 32, 64, 128 (llm.c's Vp = 50304) and beyond.
 * FLOPs per call 2·N·d·M. Timing follows the device method: random inputs (never zeros), warm-up, batches of calls
 * between two syncs (a batch lasts at least 2 ms, so the host clock and the launch are a small part), the median over
 * --repeats batches; several input sets rotate so a cache-sized problem is not timed from the cache. After timing,
 * a few output elements are poisoned, recomputed by one more call, and checked against an fp64 dot product, so a
 * GEMM that did not run or ran wrong is reported instead of timed.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "ops.h"

#define SHAPES_MAX 4096        // widths in one sweep
#define SETS_MAX 8             // input sets rotated
#define SETS_BYTES (128 << 20) // rotate until the inputs (x and W) of all sets reach this (past a GPU's L2)
#define BATCH_MIN_S 2e-3       // a timed batch of calls lasts at least this long
#define CHECKS 4               // output elements checked against fp64 per width
#define VOCAB_GPT2 50257

// ---- command line: one table gives both the parser and --help ----
typedef struct Options {
    const char *device, *sweep, *precision;
    int d, tokens, from, to, step, threads, repeats, devices;
} Options;

typedef enum { OPT_INT, OPT_STR, OPT_FLAG } OptType;
typedef struct OptSpec {
    const char *flag;
    OptType type;
    size_t offset;
    const char *def, *help;
} OptSpec;

#define OPT(f, t, field, def, help) {f, t, offsetof(Options, field), def, help}
static const OptSpec OPTS[] = {
    OPT("--device", OPT_STR, device, "auto", "cpu | cuda | auto (cuda when built in and a GPU is present)"),
    OPT("--d", OPT_INT, d, "768", "model width d: the GEMM's inner dimension K"),
    OPT("--tokens", OPT_INT, tokens, "0", "rows N = B*T (0: 4096 on a GPU, 512 on the CPU)"),
    OPT("--sweep", OPT_STR, sweep, "dff", "dff (widths near 8/3*d) | vocab (widths near 50257)"),
    OPT("--from", OPT_INT, from, "0", "first width of an explicit sweep (with --to; replaces the default list)"),
    OPT("--to", OPT_INT, to, "0", "last width of an explicit sweep"),
    OPT("--step", OPT_INT, step, "8", "step of an explicit sweep"),
    OPT("--threads", OPT_INT, threads, "0", "CPU threads (0: all cores)"),
    OPT("--repeats", OPT_INT, repeats, "0", "timed batches per width, median reported (0: 20 on a GPU, 5 on the CPU)"),
    OPT("--precision", OPT_STR, precision, "bf16", "GPU matmul precision: fp32 | tf32 | bf16 (tensor cores)"),
    OPT("--devices", OPT_FLAG, devices, "0", "print the devices this binary can run on (cpu, cuda), one a line"),
};
#define NOPTS (sizeof OPTS / sizeof OPTS[0])

// A user error: one line naming the flag and what was expected, exit status 2.
__attribute__((format(printf, 1, 2), noreturn)) static void die_user(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "matmul_shapes: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void opt_set(Options *o, const OptSpec *s, const char *v) {
    char *p = (char *)o + s->offset;
    if (s->type == OPT_STR) {
        *(const char **)p = v;
        return;
    }
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < 0 || x > 100000000) die_user("%s %s: expected a non-negative integer", s->flag, v);
    *(int *)p = (int)x;
}

static void usage(FILE *f) {
    fprintf(f, "usage: matmul_shapes [options]\n"
               "Times out (N,M) = x (N,d) . W (M,d)^T over a sweep of widths M; prints ms, TFLOPS and efficiency.\n");
    for (size_t i = 0; i < NOPTS; i++)
        fprintf(f, "  %-12s %-4s %s%s%s%s\n", OPTS[i].flag,
                OPTS[i].type == OPT_INT ? "INT" : OPTS[i].type == OPT_STR ? "STR" : "", OPTS[i].help,
                OPTS[i].type == OPT_FLAG ? "" : " [", OPTS[i].type == OPT_FLAG ? "" : OPTS[i].def,
                OPTS[i].type == OPT_FLAG ? "" : "]");
}

static void parse_args(Options *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < NOPTS; i++)
        if (OPTS[i].type != OPT_FLAG) opt_set(o, &OPTS[i], OPTS[i].def);
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            usage(stdout);
            exit(0);
        }
        size_t i = 0;
        while (i < NOPTS && strcmp(argv[a], OPTS[i].flag)) i++;
        if (i == NOPTS) die_user("%s: unknown option (--help lists them)", argv[a]);
        if (OPTS[i].type == OPT_FLAG) {
            *(int *)((char *)o + OPTS[i].offset) = 1;
            continue;
        }
        if (a + 1 >= argc) die_user("%s: expected a value", argv[a]);
        opt_set(o, &OPTS[i], argv[++a]);
    }
    if (strcmp(o->device, "cpu") && strcmp(o->device, "cuda") && strcmp(o->device, "auto"))
        die_user("--device %s: expected cpu, cuda or auto", o->device);
    if (strcmp(o->sweep, "dff") && strcmp(o->sweep, "vocab"))
        die_user("--sweep %s: expected dff or vocab", o->sweep);
    if (strcmp(o->precision, "fp32") && strcmp(o->precision, "tf32") && strcmp(o->precision, "bf16"))
        die_user("--precision %s: expected fp32, tf32 or bf16", o->precision);
    if (o->d < 1) die_user("--d: expected 1 or more");
    if ((o->from > 0) != (o->to > 0)) die_user("--from and --to: give both, or neither");
    if (o->from > o->to) die_user("--from, --to: expected from <= to");
    if (o->step < 1) die_user("--step: expected 1 or more");
    if (o->from > 0 && (o->to - o->from) / o->step + 1 > SHAPES_MAX)
        die_user("--from, --to, --step: more than 4096 widths; raise --step");
}

// ---- the sweep ----
static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

// Sorted, without duplicates or widths < 1. Returns the count.
static int sweep_widths(const Options *o, int center, int *m) {
    int n = 0;
    if (o->from > 0) {
        for (int v = o->from; v <= o->to; v += o->step) m[n++] = v;
    } else if (!strcmp(o->sweep, "dff")) {
        const int lo = center - 64, hi = center + 64;
        m[n++] = center;
        for (int v = (lo + 7) / 8 * 8; v <= hi; v += 8) m[n++] = v;
        for (int v = (lo + 63) / 64 * 64; v <= hi; v += 64) m[n++] = v - 1, m[n++] = v + 1;
    } else {
        // GPT-2's V; padded to 8, 16, 32, 128 (50304, llm.c's Vp), 1024 (51200); and the multiples of 64 and 128 on
        // either side, to show what one tile past a boundary costs.
        static const int V[] = {50176, 50240, 50241, 50256, VOCAB_GPT2, 50264, 50272, 50303, 50304, 50305, 50368,
                                50432, 51200};
        for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) m[n++] = V[i];
    }
    qsort(m, (size_t)n, sizeof *m, cmp_int);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (m[i] >= 1 && (k == 0 || m[i] != m[k - 1])) m[k++] = m[i];
    return k;
}

// ---- inputs ----
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rng_uniform(void) {  // xorshift64*, uniform in [-1, 1)
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 23) - 1.0f;
}

static void cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, n, "%s", colon);
        break;
    }
    fclose(f);
}

static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct Bench {
    Backend *be;
    int N, d, nsets, next;
    float *x[SETS_MAX], *w[SETS_MAX], *out;          // backend memory
    float *hx[SETS_MAX], *hw[SETS_MAX];              // host copies for the fp64 check
} Bench;

// Seconds per call over `iters` calls between two syncs, each call on the next input set.
static double time_batch(Bench *b, int M, int iters) {
    backend_sync(b->be);
    const double t0 = backend_now_s();
    for (int i = 0; i < iters; i++) {
        op_matmul_forward(b->be, b->out, b->x[b->next], b->w[b->next], NULL, b->N, b->d, M);
        b->next = (b->next + 1) % b->nsets;
    }
    backend_sync(b->be);
    return (backend_now_s() - t0) / iters;
}

// Poison CHECKS output elements, run one call, compare them with fp64 dot products. Returns the worst ratio
// |err| / (rtol * sum_k |x_k w_k|) (<= 1 passes; NaN, an unwritten element, gives INFINITY).
static double check_width(Bench *b, int M, double rtol) {
    const int s = b->next;
    size_t at[CHECKS];
    const float nan = NAN;
    for (int c = 0; c < CHECKS; c++) {
        const size_t row = c == 0 ? 0 : c == 1 ? (size_t)b->N - 1 : (size_t)(0.5f * (rng_uniform() + 1) * (b->N - 1));
        const size_t col = c == 0 ? (size_t)M - 1 : c == 1 ? 0 : (size_t)(0.5f * (rng_uniform() + 1) * (M - 1));
        at[c] = row * M + col;
        backend_to_device(b->be, b->out + at[c], &nan, sizeof nan);
    }
    time_batch(b, M, 1);
    double worst = 0;
    for (int c = 0; c < CHECKS; c++) {
        float got;
        backend_to_host(b->be, &got, b->out + at[c], sizeof got);
        const float *xr = b->hx[s] + at[c] / M * b->d, *wr = b->hw[s] + at[c] % M * b->d;
        double ref = 0, mag = 0;
        for (int k = 0; k < b->d; k++) ref += (double)xr[k] * wr[k], mag += fabs((double)xr[k] * wr[k]);
        const double r = fabs(got - ref) / (rtol * mag + 1e-30);
        worst = r <= worst ? worst : isnan(r) ? INFINITY : r;
    }
    return worst;
}

int main(int argc, char **argv) {
    Options o;
    parse_args(&o, argc, argv);

    int have_cuda = 0;
#ifdef GPTRAIN_CUDA
    have_cuda = backend_cuda_device_count() > 0;
#endif
    if (o.devices) {
        printf("cpu\n%s", have_cuda ? "cuda\n" : "");
        return 0;
    }
    const int use_cuda = !strcmp(o.device, "cuda") || (!strcmp(o.device, "auto") && have_cuda);
    if (use_cuda && !have_cuda) {
#ifdef GPTRAIN_CUDA
        die_user("--device cuda: no GPU found (cudaGetDeviceCount is 0)");
#else
        die_user("--device cuda: this binary was built without CUDA (make found no nvcc)");
#endif
    }

    Backend be;
    char machine[600], cpu[256];
    double rtol = 1e-4;  // fp32 accumulating d products of |x w| <= 1: far under 1e-4 of sum |x w|
    if (use_cuda) {
#ifdef GPTRAIN_CUDA
        char err[256];
        const int mode = !strcmp(o.precision, "fp32") ? 0 : !strcmp(o.precision, "tf32") ? 1 : 2;
        if (backend_cuda_init(&be, 0, mode, err, sizeof err)) die_user("%s", err);
        backend_cuda_describe(&be, machine, sizeof machine);
        rtol = mode == 0 ? 1e-4 : mode == 1 ? 2e-3 : 1e-2;  // inputs rounded to 10 or 7 mantissa bits
#endif
    } else {
        if (backend_init(&be, BACKEND_CPU, o.threads) && backend_init(&be, BACKEND_CPU_REF, o.threads))
            die_user("--device cpu: no CPU backend built in");
        cpu_model(cpu, sizeof cpu);
        snprintf(machine, sizeof machine, "%s, %d threads (backend %s)", cpu, be.threads, be.name);
    }
    const int N = o.tokens ? o.tokens : use_cuda ? 4096 : 512;
    const int repeats = o.repeats ? o.repeats : use_cuda ? 20 : 5;
    const int warmup = use_cuda ? 5 : 1;
    const double center_f = 8.0 * o.d / 3.0;
    const int center = (int)lround(center_f);

    int *widths = malloc(SHAPES_MAX * sizeof *widths);
    if (!widths) die_user("out of host memory");
    const int nw = sweep_widths(&o, center, widths);
    const int Mmax = widths[nw - 1];

    Bench b = {.be = &be, .N = N, .d = o.d};
    const size_t xbytes = (size_t)N * o.d * sizeof(float), wbytes = (size_t)Mmax * o.d * sizeof(float);
    b.nsets = (int)((SETS_BYTES + xbytes + wbytes - 1) / (xbytes + wbytes));
    b.nsets = b.nsets < 1 ? 1 : b.nsets > SETS_MAX ? SETS_MAX : b.nsets;
    for (int s = 0; s < b.nsets; s++) {
        b.hx[s] = backend_host_alloc(xbytes, "matmul_shapes x (host)");
        b.hw[s] = backend_host_alloc(wbytes, "matmul_shapes W (host)");
        for (size_t i = 0; i < xbytes / sizeof(float); i++) b.hx[s][i] = rng_uniform();
        for (size_t i = 0; i < wbytes / sizeof(float); i++) b.hw[s][i] = rng_uniform();
        b.x[s] = backend_alloc(&be, xbytes, "matmul_shapes x");
        b.w[s] = backend_alloc(&be, wbytes, "matmul_shapes W");
        backend_to_device(&be, b.x[s], b.hx[s], xbytes);
        backend_to_device(&be, b.w[s], b.hw[s], wbytes);
    }
    b.out = backend_alloc(&be, (size_t)N * Mmax * sizeof(float), "matmul_shapes out");

    const char *commit = getenv("GPTRAIN_COMMIT");
    printf("benchmark: forward GEMM out (N,M) = x (N,d) . W (M,d)^T through op_matmul_forward, 2*N*d*M FLOPs\n");
    printf("machine:   %s\n", machine);
    printf("blas:      %s\n", use_cuda ? "cuBLAS (cublasGemmEx)" : backend_cpu_blas_name());
    printf("commit:    %s\n", commit && *commit ? commit : "unknown (set GPTRAIN_COMMIT)");
    printf("shape:     N=%d tokens, d=%d, sweep %s (%d widths %d..%d%s), precision %s\n", N, o.d,
           o.from ? "explicit" : o.sweep, nw, widths[0], Mmax, o.from ? "" : !strcmp(o.sweep, "dff") ?
           ", 8/3*d and multiples of 8 within 64, M+-1 around multiples of 64" : ", GPT-2's 50257 and paddings",
           use_cuda ? o.precision : "fp32");
    printf("timing:    %d warm-up call%s, median of %d batches (each >= %.0f ms, synced), %d input set%s rotated\n",
           warmup, warmup > 1 ? "s" : "", repeats, BATCH_MIN_S * 1e3, b.nsets, b.nsets > 1 ? "s" : "");
    fflush(stdout);

    double *ms = malloc((size_t)nw * sizeof *ms), *spread = malloc((size_t)nw * sizeof *spread);
    double *t = malloc((size_t)repeats * sizeof *t);
    if (!ms || !spread || !t) die_user("out of host memory");
    double worst_check = 0;
    int worst_at = 0;
    for (int i = 0; i < nw; i++) {
        const int M = widths[i];
        double t1 = 0;  // the last warm-up call sizes the batches
        for (int w = 0; w < warmup; w++) t1 = time_batch(&b, M, 1);
        int iters = (int)ceil(BATCH_MIN_S / (t1 > 1e-9 ? t1 : 1e-9));
        iters = iters < 1 ? 1 : iters > 1000 ? 1000 : iters;
        for (int r = 0; r < repeats; r++) t[r] = time_batch(&b, M, iters);
        ms[i] = median(t, repeats) * 1e3;
        spread[i] = (t[repeats - 1] - t[0]) / (ms[i] * 1e-3) * 100;
        const double c = check_width(&b, M, rtol);
        if (!(c <= worst_check)) worst_check = c, worst_at = M;
    }

    // Best TFLOPS over the sweep (the efficiency reference) and, for dff, within ±10% of 8/3*d.
    int best = 0, best_near = -1;
    double tf[SHAPES_MAX];
    for (int i = 0; i < nw; i++) {
        tf[i] = 2.0 * N * o.d * widths[i] / (ms[i] * 1e-3) / 1e12;
        if (tf[i] > tf[best]) best = i;
        if (fabs(widths[i] - center_f) <= 0.1 * center_f && (best_near < 0 || tf[i] > tf[best_near])) best_near = i;
    }
    const int dff = !strcmp(o.sweep, "dff");
    printf("\n%8s %10s %9s %7s %7s %5s %5s\n", "M", "ms", "TFLOPS", "eff%", "spread%", "M%64", "M%128");
    for (int i = 0; i < nw; i++) {
        const char *mark = dff && i == best_near ? "  <- best d_ff near 8/3*d"
                           : !dff && i == best ? "  <- best TFLOPS"
                           : dff && widths[i] == center ? "  (8/3*d)"
                           : !dff && widths[i] == VOCAB_GPT2 ? "  (GPT-2 V)" : "";
        printf("%8d %10.3f %9.3f %7.1f %7.1f %5d %5d%s\n", widths[i], ms[i], tf[i], 100 * tf[i] / tf[best], spread[i],
               widths[i] % 64, widths[i] % 128, mark);
    }

    // What the table says, in numbers: per-FLOP speed of aligned widths against odd ones.
    double e64 = 0, eodd = 0;
    int n64 = 0, nodd = 0;
    for (int i = 0; i < nw; i++) {
        if (widths[i] % 64 == 0) e64 += tf[i] / tf[best], n64++;
        if (widths[i] % 2) eodd += tf[i] / tf[best], nodd++;
    }
    double sp[SHAPES_MAX];
    memcpy(sp, spread, (size_t)nw * sizeof *sp);
    printf("\nnoise: run-to-run spread (max - min of the batches) is %.1f%% of the median at the median width; "
           "differences in eff%% smaller than that are noise\n", median(sp, nw));
    if (n64 && nodd)
        printf("quantization: widths that are multiples of 64 average %.1f%% of the best TFLOPS, odd widths %.1f%% "
               "(%d and %d widths)\n", 100 * e64 / n64, 100 * eodd / nodd, n64, nodd);
    if (dff) {
        if (best_near < 0) {
            printf("best d_ff: no width within 10%% of 8/3*d = %.1f in this sweep\n", center_f);
        } else {
            const int F = widths[best_near];
            printf("best d_ff near 8/3*d = %.1f (within 10%%): %d at %.3f TFLOPS; a SwiGLU MLP of width F costs "
                   "3*2*N*d*F = %.2f GFLOP here, %.3f ms at that rate\n", center_f, F, tf[best_near],
                   6.0 * N * o.d * F / 1e9, 6.0 * N * o.d * F / (tf[best_near] * 1e12) * 1e3);
        }
    } else {
        int fast = -1, at_v = -1;
        for (int i = 0; i < nw; i++) {
            if (widths[i] >= VOCAB_GPT2 && (fast < 0 || ms[i] < ms[fast])) fast = i;
            if (widths[i] == VOCAB_GPT2) at_v = i;
        }
        if (fast >= 0 && at_v >= 0)
            printf("vocab: the fastest width >= %d is %d, %.3f ms against %.3f ms at %d (%+.1f%% time for %+d columns)\n",
                   VOCAB_GPT2, widths[fast], ms[fast], ms[at_v], VOCAB_GPT2, 100 * (ms[fast] / ms[at_v] - 1),
                   widths[fast] - VOCAB_GPT2);
    }
    printf("check: %d elements per width against fp64, worst %.3g of the %s tolerance (at M=%d)\n", CHECKS,
           worst_check, use_cuda ? o.precision : "fp32", worst_at);
    if (!(worst_check <= 1)) {
        fprintf(stderr, "matmul_shapes: internal error: the GEMM at M=%d is wrong (%.3g x tolerance)\n", worst_at,
                worst_check);
        return 1;
    }

    for (int s = 0; s < b.nsets; s++) {
        backend_free(&be, b.x[s]);
        backend_free(&be, b.w[s]);
        backend_host_free(b.hx[s]);
        backend_host_free(b.hw[s]);
    }
    backend_free(&be, b.out);
    free(widths), free(ms), free(spread), free(t);
    return 0;
}
