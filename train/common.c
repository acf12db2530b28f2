/*
 * common.c: pieces the subcommands share: user-error exit, model and backend resolution from flags, directory and
 * file helpers, and the start-up GEMM that measures the CPU's peak FLOPS for MFU/HFU.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "gptrain.h"
#include "ops.h"

void die_user(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gptrain: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(EXIT_USER);
}

void resolve_model(Options *o, GPTConfig *cfg, int *T, int fallback_vocab) {
    char err[512];
    memset(cfg, 0, sizeof(*cfg));
    if (gpt_config_preset(cfg, o->preset))
        die_user("--preset '%s': unknown; expected one of %s", o->preset, gpt_config_preset_names());
    // A preset that is a whole recipe (nanoGPT's train_shakespeare_char.py, whose learning rate, warm-up, decay and
    // beta2 are our defaults already): its batch, steps and dropout too, each unless given.
    if (!strcmp(o->preset, "shakespeare-char")) {
        if (!cli_given(o, "batch")) o->batch = 64;
        if (!cli_given(o, "steps")) o->steps = 5000;
        if (!cli_given(o, "dropout")) o->dropout = 0.2;
    }
    if (o->n_layer) cfg->n_layer = o->n_layer;
    if (o->n_head) cfg->n_head = o->n_head;
    if (o->d_model) cfg->d_model = o->d_model;
    if (o->d_ff) cfg->d_ff = o->d_ff;
    else if (o->d_model) cfg->d_ff = 0;  // a new width without a new d_ff means 4*C, not the preset's F
    if (o->max_seq_len) cfg->max_seq_len = o->max_seq_len;
    if (o->n_layer < 0 || o->n_head < 0 || o->d_model < 0 || o->d_ff < 0 || o->max_seq_len < 0 || o->seq_len < 0 ||
        o->vocab_size < 0)
        die_user("model sizes must be positive (0 means 'from the preset'): check --n-layer --n-head --d-model "
                 "--d-ff --max-seq-len --seq-len --vocab-size");
    if (o->memory_gib < 0) die_user("--memory-gib %g: expected 0 (what the machine has) or a positive size", o->memory_gib);
    if (o->bandwidth_gbs < 0)
        die_user("--bandwidth-gbs %g: expected 0 (measure, or an H100's) or a positive bandwidth", o->bandwidth_gbs);
    if (o->peak_tflops < 0) die_user("--peak-tflops %g: expected 0 (measure) or a positive peak", o->peak_tflops);
    int data_vocab = 0;
    if (o->data[0]) {
        if (data_vocab_size(o->data, &data_vocab, err, sizeof err)) die_user("--data %s: %s", o->data, err);
    }
    if (o->vocab_size) {
        if (data_vocab && o->vocab_size < data_vocab)
            die_user("--vocab-size %d is smaller than the dataset's vocabulary %d (%s/tokenizer.txt)", o->vocab_size,
                     data_vocab, o->data);
        cfg->vocab_size = o->vocab_size;
    } else if (data_vocab) cfg->vocab_size = data_vocab;
    else if (!cfg->vocab_size) cfg->vocab_size = fallback_vocab;
    if (!cfg->vocab_size) die_user("--data: expected the directory `gptrain prepare` wrote (or --vocab-size)");
    if (gpt_config_finalize(cfg, err, sizeof err)) die_user("%s", err);
    *T = o->seq_len ? o->seq_len : cfg->max_seq_len;
    if (*T > cfg->max_seq_len)
        die_user("--seq-len %d exceeds the model's maximum sequence length %d (--max-seq-len)", *T, cfg->max_seq_len);
    // Write the resolved shape back so the printed configuration is the one that runs.
    o->n_layer = cfg->n_layer;
    o->n_head = cfg->n_head;
    o->d_model = cfg->d_model;
    o->d_ff = cfg->d_ff;
    o->max_seq_len = cfg->max_seq_len;
    o->vocab_size = cfg->vocab_size;
    o->seq_len = *T;
}

void resolve_backend(Options *o, Backend *be, int gpu) {
    if (o->threads < 0) die_user("--threads %d: expected 0 (all cores) or more", o->threads);
    // More threads than CPUs only slows every step (each parallel loop waits for its descheduled threads).
    cpu_set_t cpus;
    const int ncpu = !sched_getaffinity(0, sizeof cpus, &cpus) ? CPU_COUNT(&cpus) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > 0 && o->threads > ncpu)
        die_user("--threads %d: this process may use %d CPU%s, and more threads than CPUs only slow each step: give "
                 "at most %d (0: all)", o->threads, ncpu, ncpu == 1 ? "" : "s", ncpu);
    const int want_cuda = !strcmp(o->device, "cuda");
#ifdef GPTRAIN_CUDA
    if (want_cuda || (!strcmp(o->device, "auto") && backend_cuda_device_count() > 0)) {
        char err[512];
        if (!strcmp(o->precision, "auto")) o->precision = "bf16";   // tensor cores by default on a GPU
        const int mode = resolve_matmul_mode(o);
        // Each rank drives the GPU of its local rank (dist.c finds it from the launcher or, failing that, from the
        // ranks that share this node).
        const int device = gpu, count = backend_cuda_device_count();
        if (device >= count && count > 0)
            die_user("local rank %d has no GPU of its own (%d on this node): launch at most %d ranks per node", device,
                     count, count);
        if (backend_cuda_init(be, device, mode, err, sizeof err)) die_user("%s", err);
        be->dtype = resolve_dtype(o);
        be->grad_dtype = resolve_grad_dtype(o);
        return;
    }
#else
    if (want_cuda) die_user("--device cuda: this binary was built without CUDA (make found no nvcc); use --device cpu");
#endif
    if (!strcmp(o->precision, "auto")) o->precision = "fp32";
    if (strcmp(o->precision, "fp32"))
        die_user("--precision %s: only on --device cuda (the CPU computes in fp32)", o->precision);
    BackendKind kind = !strcmp(o->cpu_kernels, "reference") ? BACKEND_CPU_REF : BACKEND_CPU;
    if (backend_init(be, kind, o->threads))
        die_user("--cpu-kernels %s: not built into this binary (make found no OpenBLAS); use --cpu-kernels reference",
                 o->cpu_kernels);
    be->grad_dtype = resolve_grad_dtype(o);   // fp32: bf16 gradients are a user error here
}

int resolve_matmul_mode(const Options *o) {
    return !strcmp(o->precision, "tf32") ? 1 : !strcmp(o->precision, "bf16") ? 2 : !strcmp(o->precision, "fp16") ? 3 : 0;
}

DType resolve_dtype(Options *o) {
    if (!strcmp(o->precision, "auto")) o->precision = !strcmp(o->device, "cuda") ? "bf16" : "fp32";
    return !strcmp(o->precision, "bf16") ? DTYPE_BF16 : DTYPE_F32;
}

DType resolve_grad_dtype(Options *o) {
    if (strcmp(o->grad_dtype, "bf16")) return DTYPE_F32;
    if (resolve_dtype(o) != DTYPE_BF16)
        die_user("--grad-dtype bf16: only with --precision bf16 on --device cuda (here --precision %s)", o->precision);
    return DTYPE_BF16;
}

AttentionKind resolve_attention(Options *o, Backend *be, const GPTConfig *cfg) {
    const int gpu = be ? be->kind == BACKEND_CUDA : !strcmp(o->device, "cuda");
    const int hs = cfg->d_model / cfg->n_head, hs_ok = FLASH_GPU_HEAD_SIZE_OK(hs);
    if (be) be->deterministic = !strcmp(o->deterministic, "on");
    const int drop = o->dropout > 0;   // the flash kernels do not drop the attention probabilities: naive does
    if (!strcmp(o->attention, "auto")) {
        o->attention = gpu && hs_ok && (!be || !strcmp(o->precision, "bf16")) ? "flash" : "naive";
        if (drop && !strcmp(o->attention, "flash")) {
            o->attention = "naive";
            printf("--attention auto: naive, since --dropout %g drops the attention probabilities, which the flash "
                   "kernels do not\n", o->dropout);
        }
    }
    if (drop && !strcmp(o->attention, "flash"))
        die_user("--attention flash: the flash kernels do not drop the attention probabilities that --dropout %g "
                 "drops; use --attention naive or auto (or --dropout 0)", o->dropout);
    if (!strcmp(o->attention, "flash") && gpu && !hs_ok)
        die_user("--attention flash: head size %d (--d-model %d / --n-head %d) is not one the GPU kernels take "
                 "(32, 64, 80, 96, 128); use --attention naive", hs, cfg->d_model, cfg->n_head);
    return !strcmp(o->attention, "flash") ? ATTN_FLASH : ATTN_NAIVE;
}

double memory_cap_bytes(const Options *o, Backend *be, const char **what) {
    if (o->memory_gib > 0) {
        *what = "--memory-gib";
        return o->memory_gib * 1073741824.0;
    }
#ifdef GPTRAIN_CUDA
    if (be && be->kind == BACKEND_CUDA) {
        *what = "95% of the free GPU memory";   // the rest for cuBLAS workspaces and the allocator's rounding
        return 0.95 * (double)backend_cuda_free_bytes(be);
    }
#endif
    if (!be && !strcmp(o->device, "cuda")) {   // planning on paper (info) for a GPU not present here
        *what = "an H100's 80 GiB x 95% (give --memory-gib)";
        return 0.95 * 80 * 1073741824.0;
    }
    *what = "90% of MemAvailable";
    double kib = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
    if (f) fclose(f);
    return 0.9 * kib * 1024.0;
}

// "1.50 GiB" or, under 1 GiB, "51.200 MiB" (so a small cap and what B+1 needs stay distinguishable).
static const char *fmt_bytes(char *buf, size_t n, double bytes) {
    if (bytes >= 1073741824.0) snprintf(buf, n, "%.2f GiB", bytes / 1073741824.0);
    else snprintf(buf, n, "%.3f MiB", bytes / 1048576.0);
    return buf;
}

int resolve_batch_auto(Options *o, Backend *be, const GPTConfig *cfg, int T, RecomputeMode rc, AttentionKind attn,
                       int shards) {
    const char *what;
    const double cap = memory_cap_bytes(o, be, &what);
    double need_next = 0;
    const DType dt = be ? be->dtype : resolve_dtype(o), gdt = be ? be->grad_dtype : resolve_grad_dtype(o);
    // ZeRO-1: what one rank's shards save of the batch-independent state (gpt_memory_shard) is room for activations.
    GPTMemory whole, shard;
    gpt_memory_plan(cfg, 1, T, attn, dt, gdt, &whole);
    shard = whole;
    gpt_memory_shard(&shard, shards);
    const double saved = (double)(whole.param_bytes + whole.param_copy_bytes + whole.grad_bytes + whole.optim_bytes) -
                         (double)(shard.param_bytes + shard.param_copy_bytes + shard.grad_bytes + shard.optim_bytes);
    const int B = gpt_max_batch(cfg, T, rc, attn, dt, gdt, cap, -saved, 1 << 16, &need_next);
    char a[32], b[32];
    if (B < 1)
        die_user("--batch auto: even B=1 needs %s, more than the %s of %s (--recompute full, --attention flash or a "
                 "shorter --seq-len need less)", fmt_bytes(a, sizeof a, need_next), fmt_bytes(b, sizeof b, cap), what);
    char z[64] = "";
    if (shards > 1) snprintf(z, sizeof z, ", one rank of %d with --zero 1", shards);
    printf("--batch auto: B=%d, the largest that fits %s (%s) with --recompute %s, --attention %s and %s "
           "activations%s; B=%d would need %s\n", B, fmt_bytes(a, sizeof a, cap), what, gpt_recompute_name(rc),
           gpt_attention_name(attn), dtype_name(dt), z, B + 1, fmt_bytes(b, sizeof b, need_next));
    o->batch = B;
    return B;
}

int make_dirs(const char *path, const char *flag, char *err, size_t errlen) {
    if (file_mkdirs(path, flag, err, errlen)) return -1;
    char buf[4096];
    // Prove we can write there now, before any work is done.
    snprintf(buf, sizeof buf, "%s/.gptrain-write-test-%d", path, (int)getpid());
    int fd = open(buf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: directory is not writable (%s)", flag, path, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(buf);
    return 0;
}

int copy_file_atomic(const char *src, const char *dst, char *err, size_t errlen) {
    FILE *in = file_open_input(src, err, errlen);
    if (!in) return -1;
    char tmp[4096];
    FILE *out = file_create_tmp(dst, tmp, sizeof tmp, err, errlen);
    if (!out) { fclose(in); return -1; }
    char buf[65536];
    size_t n;
    int ok = 1;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) { ok = 0; break; }
    if (ferror(in)) ok = 0;
    fclose(in);
    return file_commit_tmp(out, tmp, dst, ok, err, errlen);
}

double measure_peak_tflops(Backend *be) {
    // Peak is the machine's, not the chosen kernels': measure with the fastest GEMM built in (OpenBLAS when present)
    // on the run's thread count, so --cpu-kernels reference shows a low MFU instead of a peak that its own naive
    // loops set. Square GEMMs of n = 768 (0.9 GFLOP each), repeated for at least 0.3 s and at least 10 times; the best
    // repetition counts, since a few milliseconds of one rep can be lost to the other core being busy elsewhere.
    Backend fast;
    if (be->kind == BACKEND_CPU_REF && !backend_init(&fast, BACKEND_CPU, be->threads)) be = &fast;
    const int n = 768;
    float *a = backend_host_alloc((size_t)n * n * sizeof(float), "peak GEMM");
    float *b = backend_host_alloc((size_t)n * n * sizeof(float), "peak GEMM");
    float *c = backend_host_alloc((size_t)n * n * sizeof(float), "peak GEMM");
    for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
    double best = 1e30, start = backend_now_s();
    for (int r = 0; r < 11 || backend_now_s() - start < 0.3; r++) {
        double t0 = backend_now_s();
        op_matmul_forward(be, c, a, b, NULL, n, n, n);
        double dt = backend_now_s() - t0;
        if (r > 0 && dt < best) best = dt;  // the first run warms caches and threads
    }
    backend_host_free(a);
    backend_host_free(b);
    backend_host_free(c);
    return 2.0 * n * n * (double)n / best / 1e12;
}
