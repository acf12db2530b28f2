/*
 * attention_table.c: the course notes' attention table as one command: forward and backward time of causal attention
 * alone (ops.h op_attention_* and op_flash_attention_*), naive and flash, over head widths d (one head, so d_model =
 * head size d) x sequence lengths T, with the memory each needs and "OOM (needs X)" rows from the plan instead of a
 * launch when it exceeds the memory to plan for.
 *
 *   attention_table [--d 16,32,64,128] [--seq-len 256,1024,4096] [--batch 1] [--heads 1] [--warmup 2] [--reps 5]
 *                   [--memory-gib X] [--threads N] [--device cpu|cuda]
 *
 * Per (kind, d, T): random qkv and output gradient (never zeros), --warmup calls of forward + backward, then --reps
 * of each, timed one by one between backend syncs (the clock around a call that has finished): mean ± std in ms.
 * Memory: the bytes the op's buffers take (qkv, out, the output gradient and dqkv; naive: the (B,NH,T,T)
 * probabilities and the backward's scratch of that size, which grows as T²; flash: the log-sum-exp and the
 * workspace, which grow as T), at the backend's compute dtype: the planner's rule (model/plan.h), in bytes. The
 * memory to plan for is --memory-gib, else 90% of the host's MemAvailable (a GPU: 95% of its free memory).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "ops.h"

#define MAX_LIST 16

static int parse_list(const char *flag, const char *s, int *out) {
    int n = 0;
    while (*s) {
        char *end;
        const long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1 << 20 || n == MAX_LIST || (*end && *end != ',')) {
            fprintf(stderr, "attention_table: %s '%s': expected up to %d positive integers separated by commas\n", flag,
                    s, MAX_LIST);
            exit(2);
        }
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static double mem_available_bytes(void) {
    double kib = 0;
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib * 1024.0;
}

// The op's buffers in bytes (es: the compute dtype's size): what the table reports and the plan compares.
static double attention_bytes(int flash, int B, int T, int C, int NH, size_t es) {
    const double N = (double)B * T, TT = (double)B * NH * T * T;
    const double io = (3 * N * C + N * C + N * C + 3 * N * C) * es;   // qkv, out, dout, dqkv
    if (!flash) return io + 2 * TT * es;                              // the probabilities and the backward's scratch
    return io + 4.0 * B * NH * T + 4.0 * FLASH_WORK_FLOATS(B, T, C, NH, es);
}

static void fill(Backend *be, void *dev, size_t n, size_t es, unsigned seed) {
    float *h = malloc(n * sizeof(float));
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = ((s >> 8) * (1.0f / 16777216.0f) - 0.5f) * 2.0f;
    }
    if (es == 4) backend_to_device(be, dev, h, n * sizeof(float));
    else {   // bf16 bits (truncated: inputs only need to be random)
        uint16_t *b = malloc(n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &h[i], 4);
            b[i] = (uint16_t)(u >> 16);
        }
        backend_to_device(be, dev, b, n * sizeof(uint16_t));
        free(b);
    }
    free(h);
}

// "1.50 GiB", or under 1 GiB "51.20 MiB".
static const char *fmt_bytes(char *buf, size_t n, double bytes) {
    if (bytes >= 1073741824.0) snprintf(buf, n, "%.2f GiB", bytes / 1073741824.0);
    else snprintf(buf, n, "%.2f MiB", bytes / 1048576.0);
    return buf;
}

static void mean_std(const double *x, int n, double *mean, double *std) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *std = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

int main(int argc, char **argv) {
    int ds[MAX_LIST] = {16, 32, 64, 128}, nd = 4, ts[MAX_LIST] = {256, 1024, 4096}, nt = 3;
    int B = 1, NH = 1, warmup = 2, reps = 5, threads = 0, cuda = 0;
    double cap = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "attention_table: %s: expected a value\n", a); return 2; }
        if (!strcmp(a, "--d")) nd = parse_list(a, v, ds);
        else if (!strcmp(a, "--seq-len")) nt = parse_list(a, v, ts);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--heads")) NH = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--memory-gib")) cap = atof(v) * 1073741824.0;
        else if (!strcmp(a, "--device")) cuda = !strcmp(v, "cuda");
        else { fprintf(stderr, "attention_table: unknown flag %s\n", a); return 2; }
        i++;
    }
    if (B < 1 || NH < 1 || warmup < 0 || reps < 2) {
        fprintf(stderr, "attention_table: --batch and --heads at least 1, --warmup at least 0, --reps at least 2\n");
        return 2;
    }
    Backend be;
    const char *capwhat = "--memory-gib";
#ifdef GPTRAIN_CUDA
    if (cuda) {
        char err[256];
        if (backend_cuda_init(&be, 0, 0, err, sizeof err)) { fprintf(stderr, "attention_table: %s\n", err); return 2; }
        if (cap <= 0) cap = 0.95 * (double)backend_cuda_free_bytes(&be), capwhat = "95% of the free GPU memory";
    } else
#endif
    {
        if (cuda) { fprintf(stderr, "attention_table: --device cuda: this build has no CUDA backend\n"); return 2; }
        backend_init(&be, BACKEND_CPU, threads);
        if (cap <= 0) cap = 0.9 * mem_available_bytes(), capwhat = "90% of MemAvailable";
    }
    const size_t es = dtype_bytes(be.dtype);
    char capb[32];
    printf("attention alone, causal, B=%d, %d head%s of size d (d_model = %d x d), %s (%d threads), %s; memory to plan "
           "for %s (%s)\n", B, NH, NH == 1 ? "" : "s", NH, be.name, be.threads, dtype_name(be.dtype),
           fmt_bytes(capb, sizeof capb, cap), capwhat);
    printf("%-6s %5s %6s %22s %22s %12s\n", "kind", "d", "T", "forward ms", "backward ms", "memory MiB");
    for (int kind = 0; kind < 2; kind++)
        for (int a = 0; a < nd; a++)
            for (int b = 0; b < nt; b++) {
                const int d = ds[a], T = ts[b], C = d * NH;
                const double need = attention_bytes(kind, B, T, C, NH, es);
                if (kind && be.kind == BACKEND_CUDA && !FLASH_GPU_HEAD_SIZE_OK(d)) {
                    printf("%-6s %5d %6d   n/a: the GPU flash kernels take head sizes 32, 64, 80, 96, 128\n", "flash", d,
                           T);
                    continue;
                }
                if (need > cap) {
                    char nb[32], cb[32];
                    printf("%-6s %5d %6d %22s %22s   OOM (needs %s, has %s)\n", kind ? "flash" : "naive", d, T, "-", "-",
                           fmt_bytes(nb, sizeof nb, need), fmt_bytes(cb, sizeof cb, cap));
                    fflush(stdout);
                    continue;
                }
                const size_t N = (size_t)B * T, TT = (size_t)B * NH * T * T;
                void *qkv = backend_alloc(&be, 3 * N * C * es, "qkv"), *out = backend_alloc(&be, N * C * es, "out");
                void *dout = backend_alloc(&be, N * C * es, "dout"), *dqkv = backend_alloc(&be, 3 * N * C * es, "dqkv");
                void *att = kind ? NULL : backend_alloc(&be, TT * es, "att");
                void *scr = kind ? NULL : backend_alloc(&be, TT * es, "scratch");
                float *lse = kind ? backend_alloc(&be, (size_t)B * NH * T * 4, "lse") : NULL;
                float *work = kind ? backend_alloc(&be, FLASH_WORK_FLOATS(B, T, C, NH, es) * 4, "work") : NULL;
                fill(&be, qkv, 3 * N * C, es, 1);
                fill(&be, dout, N * C, es, 2);
                double f[64], g[64];
                const int n = reps < 64 ? reps : 64;
                for (int r = -warmup; r < n; r++) {
                    backend_sync(&be);
                    double t0 = backend_now_s();
                    if (kind) op_flash_attention_forward(&be, out, lse, work, qkv, B, T, C, NH);
                    else op_attention_forward(&be, out, att, NULL, qkv, B, T, C, NH, 0.0f, 0);
                    backend_sync(&be);
                    double t1 = backend_now_s();
                    if (kind) op_flash_attention_backward(&be, dqkv, work, dout, qkv, out, lse, B, T, C, NH);
                    else op_attention_backward(&be, dqkv, scr, dout, qkv, att, B, T, C, NH, 0.0f, 0);
                    backend_sync(&be);
                    double t2 = backend_now_s();
                    if (r >= 0) f[r] = (t1 - t0) * 1e3, g[r] = (t2 - t1) * 1e3;
                }
                double fm, fs, gm, gs;
                mean_std(f, n, &fm, &fs);
                mean_std(g, n, &gm, &gs);
                char fc[32], gc[32];
                snprintf(fc, sizeof fc, "%.3f +- %.3f", fm, fs);
                snprintf(gc, sizeof gc, "%.3f +- %.3f", gm, gs);
                printf("%-6s %5d %6d %22s %22s %12.2f\n", kind ? "flash" : "naive", d, T, fc, gc, need / 1048576.0);
                fflush(stdout);
                backend_free(&be, qkv);
                backend_free(&be, out);
                backend_free(&be, dout);
                backend_free(&be, dqkv);
                if (att) backend_free(&be, att);
                if (scr) backend_free(&be, scr);
                if (lse) backend_free(&be, lse);
                if (work) backend_free(&be, work);
            }
    printf("(mean +- std over %d calls after %d warm-up calls; memory: the op's buffers, qkv + out + dout + dqkv and "
           "naive's two (B,NH,T,T) matrices or flash's log-sum-exp and workspace)\n", reps, warmup);
    return 0;
}
