/*
 * train.c: `gptrain train`, the training loop. Per optimizer step: grad-accum micro-steps of (take the prefetched
 * batch, forward, backward), gradient averaging over ranks (dist/), global-norm clipping folded into AdamW, the
 * learning-rate schedule, and a metrics row (stdout table and JSONL) with loss, lr, grad norm, step time, time spent
 * waiting for data, tokens/s, model and hardware TFLOPS, MFU and HFU. FLOPs come from the model's own op walk
 * (gpt_flops), not from 6N. Checkpoints every --checkpoint-every steps, at --stop-at-step and on SIGINT/SIGTERM
 * (the current step finishes first; a second signal kills at once, and the atomic write keeps the last checkpoint
 * whole); --resume continues bit for bit, since weights, moments, AdamW's count, the step and the loader position
 * are the whole state.
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"
#include "dist.h"
#include "gptrain.h"
#include "ops.h"
#include "plot.h"
#include "schedule.h"
#include "selfcheck.h"
#include "trainer.h"

static int is_power_of_two(double x) {
    int e;
    return isfinite(x) && x > 0 && frexp(x, &e) == 0.5;
}

static LossScale loss_scale_from(const Options *o) {
    LossScale ls = {0, 0, o->loss_scale_window, 1.0, 0, 0};
    const char *s = o->loss_scale;
    if (!strcmp(s, "auto")) ls.on = ls.dynamic = !strcmp(o->precision, "fp16");
    else if (!strcmp(s, "dynamic")) ls.on = ls.dynamic = 1;
    else if (strcmp(s, "off")) {
        char *end;
        errno = 0;
        const double v = strtod(s, &end);
        if (end == s || *end || errno || !is_power_of_two(v) || v < LOSS_SCALE_MIN || v > LOSS_SCALE_MAX)
            die_user("--loss-scale %s: expected auto, off, dynamic or a power of two from 2^-24 to 2^64", s);
        ls.on = 1;
        ls.scale = v;
    }
    if (ls.dynamic) ls.scale = o->loss_scale_init;
    return ls;
}

// Resident memory of this process now, in MiB (/proc/self/statm's second field, in pages). The run reports the
// maximum over its steps: the peak of training itself, not of start-up probes freed before the first step.
static double rss_mib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

// --profile: the per-op table of one step. Each op's roofline bound is max(FLOPs / peak, bytes / bandwidth); the
// percent column is bound / measured time (100% = at the roofline). Ops were synced around, so their sum exceeds an
// unprofiled step's time a little; "other" is the step's time outside any op (host work, data, communication).
static void print_profile(const OpProfile *p, int step, double step_s, double peak_tflops, double bw_gbs) {
    double sum = 0;
    for (int i = 0; i < p->nrows; i++) sum += p->rows[i].seconds;
    printf("profile of step %d: %.2f ms (ops %.2f ms, other %.2f ms); roofline: peak %.4g TFLOPS, bandwidth %.4g GB/s\n",
           step, step_s * 1e3, sum * 1e3, (step_s - sum) * 1e3, peak_tflops, bw_gbs);
    printf("%-26s %6s %10s %7s %11s %10s %9s %9s %10s %8s\n", "op", "calls", "ms", "share", "GFLOP", "MB", "TFLOPS",
           "GB/s", "bound_ms", "%bound");
    for (int i = 0; i < p->nrows; i++) {
        const OpProfileRow *r = &p->rows[i];
        const double bound = fmax(peak_tflops > 0 ? r->flops / (peak_tflops * 1e12) : 0, r->bytes / (bw_gbs * 1e9));
        printf("%-26s %6d %10.3f %6.1f%% %11.4f %10.2f %9.4f %9.2f %10.3f %7.1f%%\n", r->name, r->calls,
               r->seconds * 1e3, 100 * r->seconds / step_s, r->flops / 1e9, r->bytes / 1e6,
               r->flops / r->seconds / 1e12, r->bytes / r->seconds / 1e9, bound * 1e3, 100 * bound / r->seconds);
    }
    fflush(stdout);
}

static void check_options(const Options *o) {
    if (o->batch < 1 && o->batch != CLI_AUTO) die_user("--batch %d: expected at least 1 (or auto)", o->batch);
    if (o->grad_accum < 1) die_user("--grad-accum %d: expected at least 1", o->grad_accum);
    if (o->steps < 1) die_user("--steps %d: expected at least 1", o->steps);
    if (o->total_batch_tokens < 0) die_user("--total-batch-tokens %d: expected 0 (off) or more", o->total_batch_tokens);
    if (o->lr < 0) die_user("--lr %g: expected a non-negative learning rate", o->lr);
    if (o->min_lr < 0 || o->min_lr > o->lr) die_user("--min-lr %g: expected 0 <= min-lr <= --lr %g", o->min_lr, o->lr);
    if (o->warmup_steps < 0) die_user("--warmup-steps %d: expected 0 or more", o->warmup_steps);
    if (o->weight_decay < 0) die_user("--weight-decay %g: expected 0 or more", o->weight_decay);
    if (o->beta1 < 0 || o->beta1 >= 1) die_user("--beta1 %g: expected 0 <= beta1 < 1", o->beta1);
    if (o->beta2 < 0 || o->beta2 >= 1) die_user("--beta2 %g: expected 0 <= beta2 < 1", o->beta2);
    if (o->eps <= 0) die_user("--eps %g: expected a positive epsilon", o->eps);
    if (o->grad_clip < 0) die_user("--grad-clip %g: expected 0 (off) or a positive norm", o->grad_clip);
    if (o->eval_every < -1)
        die_user("--eval-every %d: expected -1 (never), 0 (only at the end) or more", o->eval_every);
    if (o->eval_steps < 0) die_user("--eval-steps %d: expected 0 (whole split) or more", o->eval_steps);
    if (o->print_every < 0) die_user("--print-every %d: expected 0 (automatic) or a number of steps", o->print_every);
    if (o->peak_tflops < 0) die_user("--peak-tflops %g: expected 0 (measure) or a positive peak", o->peak_tflops);
    if (o->checkpoint_every < 0) die_user("--checkpoint-every %d: expected 0 (off) or more", o->checkpoint_every);
    if (o->keep_last < 0) die_user("--keep-last %d: expected 0 (keep all) or more", o->keep_last);
    if (o->zero != 0 && o->zero != 1) die_user("--zero %d: expected 0 (off) or 1 (sharded optimizer state)", o->zero);
    if (!(o->dropout >= 0 && o->dropout < 1)) die_user("--dropout %g: expected a probability in [0, 1)", o->dropout);
    if (o->stop_at_step < 0 || o->stop_at_step > o->steps)
        die_user("--stop-at-step %d: expected 0 (off) up to --steps %d", o->stop_at_step, o->steps);
    // A micro-step is at least one forward and backward: 65536 of them per update is already days on any machine.
    if (o->grad_accum > 65536) die_user("--grad-accum %d: expected at most 65536 micro-steps per update", o->grad_accum);
    if (o->profile < 0 || o->profile > o->steps)
        die_user("--profile %d: expected 0 (off) or a step of the run, 1 to --steps %d", o->profile, o->steps);
    if (o->max_skipped < 0) die_user("--max-skipped %d: expected 0 (no limit) or more", o->max_skipped);
    if (!is_power_of_two(o->loss_scale_init) || o->loss_scale_init < LOSS_SCALE_MIN ||
        o->loss_scale_init > LOSS_SCALE_MAX)
        die_user("--loss-scale-init %g: expected a power of two from 2^-24 to 2^64", o->loss_scale_init);
    if (o->loss_scale_window < 1) die_user("--loss-scale-window %d: expected at least 1", o->loss_scale_window);
}

// --total-batch-tokens sets the micro-steps per update; it must be a whole number of micro-batches on every rank.
static int resolve_grad_accum(const Options *o, int B, int T, int world) {
    if (!o->total_batch_tokens) return o->grad_accum;
    long per_micro = (long)B * T * world;
    if (o->total_batch_tokens % per_micro)
        die_user("--total-batch-tokens %d is not a multiple of --batch x --seq-len x ranks = %d x %d x %d = %ld",
                 o->total_batch_tokens, B, T, world, per_micro);
    int n = (int)(o->total_batch_tokens / per_micro);
    if (cli_given(o, "grad_accum") && o->grad_accum != n)
        die_user("--grad-accum %d contradicts --total-batch-tokens %d (which needs %d micro-steps); give one of them",
                 o->grad_accum, o->total_batch_tokens, n);
    return n;
}

static double eval_loss(GPT *g, DataLoader *val, int batches, Dist *dist) {
    data_loader_reset(val);
    double sum = 0;
    char err[1024];
    for (int i = 0; i < batches; i++) {
        const int32_t *in, *tg;
        if (data_loader_next_batch(val, &in, &tg, NULL, err, sizeof err)) die_user("%s", err);
        sum += gpt_forward(g, in, tg, val->B, val->T, 0.0f);
    }
    // Each rank evaluated its own stride of the split: the mean over all of them.
    return dist_allreduce_sum(dist, sum / batches) / dist->world;
}

// ---- signals: the first SIGINT/SIGTERM/SIGHUP (Ctrl-C, a scheduler's time limit, a closed terminal) asks the loop to
// stop after the current step; the handler resets itself, so a second one terminates at once. SIGPIPE is ignored:
// `gptrain train | head` must not kill a run when the reader goes away (its output is then lost, not the model). ----
static volatile sig_atomic_t stop_signal = 0;
static void on_stop_signal(int sig) { stop_signal = sig; }
static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}
static const char *signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

// The resolved configuration as text (stored in checkpoints, compared on resume).
static char *resolved_text(const Options *o) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) die_user("out of memory");
    cli_print_resolved(f, o, CMD_TRAIN);
    fclose(f);
    return buf;
}

// The value of `key` in resolved text ("  key = value" lines), copied into val; 0 when absent.
static int text_value(const char *text, const char *key, char *val, size_t n) {
    size_t klen = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        while (*l == ' ') l++;
        if (!strncmp(l, key, klen) && !strncmp(l + klen, " = ", 3)) {
            const char *v = l + klen + 3, *e = strchr(v, '\n');
            size_t m = e ? (size_t)(e - v) : strlen(v);
            snprintf(val, n, "%.*s", (int)m, v);
            return 1;
        }
    }
    return 0;
}

// Flags that change nothing of the trajectory (where files go, how often to print, how to run, resume itself; how
// the ranks average and shard: the same sums either way, tested byte for byte).
static int key_is_free(const char *key) {
    static const char *const FREE[] = {"resume", "stop-at-step", "checkpoint-dir", "checkpoint-every", "keep-last",
                                       "log", "out", "print-every", "threads", "device", "cpu-kernels", "peak-tflops",
                                       "eval-every", "eval-steps", "init-from", "data", "train-data", "val-data",
                                       "max-skipped", "zero", "comm-overlap", "bucket-mb", "cpu-affinity", NULL};
    for (int i = 0; FREE[i]; i++)
        if (!strcmp(key, FREE[i])) return 1;
    return 0;
}

// A resumed run must read the same data in the same order as the one that wrote the checkpoint: refuse, listing
// every difference, when the shape of the batch, the ranks or the seed differ. Other flags (learning rate, steps,
// weight decay...) may change: each difference is printed as a warning, since the trajectory will then differ from
// an uninterrupted run.
static void check_resume_config(const char *path, const CkptHeader *h, const char *ck_text, const char *now_text,
                                int B, int T, int accum, int world, int shuffle, uint64_t seed) {
    char diff[2048] = "";
    size_t len = 0;
#define DIFF(name, was, now)                                                                                    \
    if ((long long)(was) != (long long)(now))                                                                   \
        len += (size_t)snprintf(diff + len, len < sizeof diff ? sizeof diff - len : 0, "%s%s %lld (checkpoint) vs %lld (now)", \
                                len ? ", " : "", name, (long long)(was), (long long)(now));
    DIFF("--batch", h->batch, B);
    DIFF("--seq-len", h->seq_len, T);
    DIFF("--grad-accum", h->grad_accum, accum);
    DIFF("ranks", h->world, world);
    DIFF("--shuffle on", h->shuffle, shuffle);
    DIFF("--seed", h->seed, seed);
#undef DIFF
    if (len) die_user("--resume %s: the checkpoint's run differs: %s", path, diff);
    // Everything else: compare the resolved flags line by line.
    for (const char *l = now_text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        while (*l == ' ') l++;
        const char *eq = strstr(l, " = ");
        if (!eq) continue;
        char key[64], now[512], was[512];
        snprintf(key, sizeof key, "%.*s", (int)(eq - l), l);
        if (key_is_free(key) || !text_value(now_text, key, now, sizeof now)) continue;
        if (!text_value(ck_text, key, was, sizeof was)) continue;
        if (strcmp(now, was))
            printf("warning: resuming with --%s %s (the checkpoint's run had %s): the run will differ from an "
                   "uninterrupted one\n", key, now, was);
    }
}

// Rank 0 writes DIR/ckpt_<step>.bin and prunes; returns 0 or prints why not (a failed checkpoint stops the run).
static int write_checkpoint(const char *dir, int rank, const GPT *g, int step, int B, int T, int accum, int world,
                            int shuffle, uint64_t seed, uint64_t batches, int skipped, const LossScale *ls,
                            double last_val, const char *cfg_text, const char *tok_text, int keep, uint64_t run_id,
                            char *path, size_t pathlen) {
    ckpt_path_for_step(dir, step, path, pathlen);
    if (rank != 0) {   // a sharded model's states are gathered from every rank as rank 0 saves them (ckpt_save)
        for (int i = 0; i < 3; i++) gpt_state_to_host(g, (GPTState)i, NULL);
        return 0;
    }
    CkptHeader h;
    memset(&h, 0, sizeof h);
    h.batch = B;
    h.seq_len = T;
    h.grad_accum = accum;
    h.world = world;
    h.shuffle = shuffle;
    h.seed = seed;
    h.step = step;
    h.train_batches = batches;
    h.skipped = skipped;
    h.loss_scale = ls->on ? ls->scale : 0;
    h.loss_scale_good = ls->good;
    h.overflow_skips = ls->overflows;
    h.last_val_loss = last_val;
    h.run_id = run_id;
    char err[1024];
    double t0 = backend_now_s();
    if (ckpt_save(path, g, &h, cfg_text, tok_text, err, sizeof err)) {
        fprintf(stderr, "gptrain: error: checkpoint: %s\n", err);
        return -1;
    }
    printf("checkpoint step %d -> %s (%.1f MiB, %.2f s)\n", step, path,
           (sizeof h + h.payload_bytes) / 1048576.0, backend_now_s() - t0);
    ckpt_prune(dir, keep, run_id);
    return 0;
}

// Where the train/val shards and the tokenizer come from: --data DIR, or --train-data/--val-data globs (the
// tokenizer then from tokenizer.txt beside the first train shard's directory, else GPT-2's, as llm.c's shards are).
static void open_data(Options *o, DataLoader *train_dl, DataLoader *val_dl, int B, int T, int rank, int world,
                      int vocab, char *err, size_t errlen) {
    const int shuffle = !strcmp(o->shuffle, "on");
    if (o->train_data[0] ? data_loader_open_glob(train_dl, o->train_data, "--train-data", B, T, rank, world, shuffle,
                                                 (uint64_t)o->seed, vocab, err, errlen)
                         : data_loader_open(train_dl, o->data, "train", B, T, rank, world, shuffle, (uint64_t)o->seed,
                                            vocab, err, errlen))
        die_user("%s", err);
    if (o->eval_every == -1) return;   // never evaluated: no val data is read (val_dl stays empty)
    if (!o->val_data[0]) {   // --data DIR's own val split, which `prepare --val-fraction 0` does not write
        char p[4200];
        snprintf(p, sizeof p, "%s/val_000000.bin", o->data);
        if (access(p, F_OK))
            die_user("--data %s: has no val split (prepared with --val-fraction 0?): give --val-data GLOB, or "
                     "--eval-every -1 to train without validation", o->data);
    }
    if (o->val_data[0] ? data_loader_open_glob(val_dl, o->val_data, "--val-data", B, T, rank, world, 0,
                                               (uint64_t)o->seed, vocab, err, errlen)
                       : data_loader_open(val_dl, o->data, "val", B, T, rank, world, 0, (uint64_t)o->seed, vocab, err,
                                          errlen))
        die_user("%s", err);
}

// The tokenizer text of the data (carried into checkpoints and copied next to model.bin); path gets the file it came
// from (GPT-2's built-in text: a name for messages).
// Returns 1 when the shards have no tokenizer.txt beside them and GPT-2's is assumed (for decoding only: the model's
// vocabulary is then the user's, and the loader checks every token against it), else 0.
static int data_tokenizer_text(Options *o, char *text, size_t cap, char *path) {
    if (o->train_data[0]) {
        char pat[4096];
        snprintf(pat, sizeof pat, "%s", o->train_data);
        snprintf(path, 4096, "%s/tokenizer.txt", dirname(pat));
        if (access(path, F_OK)) {
            snprintf(text, cap, "%s", GPT2_TOKENIZER_TEXT);
            snprintf(path, 4096, "GPT-2's tokenizer");
            return 1;
        }
    } else snprintf(path, 4096, "%s/tokenizer.txt", o->data);
    char err[4400];
    char *t = file_read_text(path, TOKENIZER_FILE_MAX < cap - 1 ? TOKENIZER_FILE_MAX : cap - 1, err, sizeof err);
    if (!t) die_user("%s %s", o->train_data[0] ? "--train-data:" : "--data:", err);
    snprintf(text, cap, "%s", t);
    free(t);
    return 0;
}

// The model shape from --init-from's llm.c file: the shape flags default to it and must agree with it when given.
static void apply_init_from(Options *o) {
    GPTConfig fc;
    char err[1024];
    if (modelfile_read_config(o->init_from, &fc, NULL, err, sizeof err)) die_user("--init-from: %s", err);
#define TAKE(field, flag, value)                                                                                   \
    if (cli_given(o, #field) && o->field != (value))                                                         \
        die_user("--%s %d contradicts --init-from %s, which has %d", flag, o->field, o->init_from, (value));   \
    o->field = (value);
    TAKE(n_layer, "n-layer", fc.n_layer);
    TAKE(n_head, "n-head", fc.n_head);
    TAKE(d_model, "d-model", fc.d_model);
    TAKE(d_ff, "d-ff", fc.d_ff);
    TAKE(max_seq_len, "max-seq-len", fc.max_seq_len);
    TAKE(vocab_size, "vocab-size", fc.vocab_size);
#undef TAKE
}


static void format_eta(char *buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

static void print_row_header(void) {
    printf("%11s %8s %9s %8s %9s %9s %8s %8s %6s %6s %8s\n", "step", "loss", "lr", "gnorm", "step_ms", "tok/s",
           "TFLOPS", "hwTFLOPS", "MFU", "HFU", "ETA");
}

static void print_row(const RunMetrics *m, int steps, double eta_s) {
    char stepbuf[32], eta[32], mfu[16], hfu[16];
    snprintf(stepbuf, sizeof stepbuf, "%d/%d", m->step, steps);
    format_eta(eta, sizeof eta, eta_s);
    if (isfinite(m->mfu)) snprintf(mfu, sizeof mfu, "%5.1f%%", 100 * m->mfu); else snprintf(mfu, sizeof mfu, "%6s", "n/a");
    if (isfinite(m->hfu)) snprintf(hfu, sizeof hfu, "%5.1f%%", 100 * m->hfu); else snprintf(hfu, sizeof hfu, "%6s", "n/a");
    printf("%11s %8.4f %9.3e %8.4f %9.2f %9.0f %8.4f %8.4f %s %s %8s%s\n", stepbuf, m->loss, m->lr, m->grad_norm,
           m->step_ms, m->tokens_per_s, m->model_tflops, m->hw_tflops, mfu, hfu, eta,
           m->overflow ? "  (update skipped: the scaled gradients overflowed)"
           : m->skipped ? "  (update skipped: non-finite)"
                        : "");
}

// The JSONL log belongs to the run but matters less than the model: a failed write (a full disk) warns once, closes
// the log and training goes on.
static const char *log_path = "";

static void log_close(FILE **f, const char *path) {
    if (!*f) return;
    const int bad = fflush(*f) || fsync(fileno(*f));
    const int e = errno;
    if (fclose(*f) || bad)
        fprintf(stderr, "gptrain: warning: --log %s: write failed (%s): the log may lack its last lines\n", path,
                strerror(bad ? e : errno));
    *f = NULL;
}

static void write_json(FILE **f, const RunMetrics *m, double val_loss) {
    if (!*f) return;
    // JSON has no NaN; a non-finite loss is written as null so the file stays parseable.
    char loss[32], gn[32], mfu[32], hfu[32], line[1024];
    if (isfinite(m->loss)) snprintf(loss, sizeof loss, "%.6f", m->loss); else strcpy(loss, "null");
    if (isfinite(m->grad_norm)) snprintf(gn, sizeof gn, "%.6f", m->grad_norm); else strcpy(gn, "null");
    if (isfinite(m->mfu)) snprintf(mfu, sizeof mfu, "%.6f", m->mfu); else strcpy(mfu, "null");   // unknown peak
    if (isfinite(m->hfu)) snprintf(hfu, sizeof hfu, "%.6f", m->hfu); else strcpy(hfu, "null");
    int n = snprintf(line, sizeof line,
                     "{\"step\": %d, \"loss\": %s, \"lr\": %.6e, \"grad_norm\": %s, \"step_ms\": %.3f, "
                     "\"data_wait_ms\": %.3f, \"tokens_per_s\": %.1f, \"model_tflops\": %.6f, \"hw_tflops\": %.6f, "
                     "\"mfu\": %s, \"hfu\": %s, \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, \"opt_ms\": %.3f, "
                     "\"comm_ms\": %.3f, \"exposed_comm_ms\": %.3f, \"mem_mib\": %.1f%s",
                     m->step, loss, m->lr, gn, m->step_ms, m->data_ms, m->tokens_per_s, m->model_tflops,
                     m->hw_tflops, mfu, hfu, m->fwd_ms, m->bwd_ms, m->opt_ms, m->comm_ms, m->exposed_comm_ms,
                     m->mem_mib, m->skipped ? ", \"skipped\": true" : "");
    if (m->loss_scale > 0 && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - n, ", \"loss_scale\": %.17g%s", m->loss_scale,
                      m->overflow ? ", \"overflow\": true" : "");
    if (!isnan(val_loss) && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - n, ", \"val_loss\": %.6f", val_loss);
    if (n < (int)sizeof line) n += snprintf(line + n, sizeof line - n, "}\n");
    errno = 0;
    if (n >= (int)sizeof line || file_write(*f, line, (size_t)n) || fflush(*f)) {
        fprintf(stderr, "gptrain: warning: --log %s: write failed at step %d (%s): no more log lines; training "
                "continues\n", log_path, m->step, errno ? strerror(errno) : "line too long");
        fclose(*f);
        *f = NULL;
    }
}

// "final val_loss X" for the done line, or what stands for it in a run without validation.
static const char *val_text(const Options *o, double val, char *buf, size_t n) {
    if (o->eval_every == -1) snprintf(buf, n, "no validation (--eval-every -1)");
    else snprintf(buf, n, "final val_loss %.4f", val);
    return buf;
}

// The JSONL log, locked for this run (a second gptrain appending to it is refused) and never one of the shards the
// run reads. A fresh run starts it empty; a resumed one keeps the lines up to its step and appends, so a resume from
// an older checkpoint does not leave the later steps of the abandoned run in it twice.
static FILE *open_log(const char *path, int start_step, const DataLoader *train, const DataLoader *val) {
    struct stat ls;
    if (!stat(path, &ls)) {
        const DataLoader *dls[2] = {train, val};
        for (int d = 0; d < 2; d++)
            for (size_t i = 0; i < dls[d]->nshards; i++) {
                struct stat ss;
                if (!stat(dls[d]->paths[i], &ss) && ss.st_dev == ls.st_dev && ss.st_ino == ls.st_ino)
                    die_user("--log %s: is the data shard %s that this run reads", path, dls[d]->paths[i]);
            }
        if (!S_ISREG(ls.st_mode)) die_user("--log %s: is not a regular file", path);
    }
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) die_user("--log %s: cannot open for writing (%s)", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) die_user("--log %s: another gptrain is writing it", path);
    FILE *f = fdopen(fd, "r+");
    if (!f) die_user("--log %s: cannot open for writing (%s)", path, strerror(errno));
    file_watch(f, path);
    log_path = path;
    // Keep the lines of steps <= start_step (a fresh run keeps none), then write from there.
    char *line = NULL;
    size_t cap = 0;
    long keep = 0;
    while (start_step > 0 && getline(&line, &cap, f) > 0) {
        const double st = jsonl_number(line, "step");
        if (!(st <= start_step)) break;
        keep = ftell(f);
    }
    free(line);
    if (fflush(f) || ftruncate(fd, keep) || fseek(f, keep, SEEK_SET))
        die_user("--log %s: cannot truncate it for this run (%s)", path, strerror(errno));
    return f;
}

// One run per directory: rank 0, which writes every file, creates --out and --checkpoint-dir and locks both until it
// exits (before it looks for a checkpoint to resume, so two runs cannot both pick one). The other ranks only create
// them (a shared file system may hold one directory for all).
static void lock_run_dirs(const Options *o, int rank) {
    char err[4096], p[4200];
    // --out among the shards would put model.bin there and replace the data's own tokenizer.txt.
    struct stat od, dd;
    const char *shard_names[2] = {"train_000000.bin", "val_000000.bin"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", o->out, shard_names[i]);
        if (!access(p, F_OK))
            die_user("--out %s: is a data directory (it holds %s): the run would replace its tokenizer.txt; give "
                     "another --out", o->out, p);
    }
    if (o->data[0] && !stat(o->out, &od) && !stat(o->data, &dd) && od.st_dev == dd.st_dev && od.st_ino == dd.st_ino)
        die_user("--out %s: is the --data directory: the run would replace its tokenizer.txt; give another --out",
                 o->out);
    if (make_dirs(o->out, "--out", err, sizeof err)) die_user("%s", err);
    if (make_dirs(o->checkpoint_dir, "--checkpoint-dir", err, sizeof err)) die_user("%s", err);
    if (rank != 0) return;
    if (file_lock_dir(o->out, "--out", err, sizeof err) < 0) die_user("%s", err);
    struct stat a, b;
    const int same = !stat(o->out, &a) && !stat(o->checkpoint_dir, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    if (!same && file_lock_dir(o->checkpoint_dir, "--checkpoint-dir", err, sizeof err) < 0) die_user("%s", err);
    // Under the locks no other gptrain writes here: temporary files are what a killed writer left.
    file_remove_temps(o->checkpoint_dir, "ckpt_");
    file_remove_temps(o->out, "model.bin");
    file_remove_temps(o->out, "tokenizer.txt");
}

// The checkpoint directory holds one trajectory. A fresh run refuses a directory with checkpoints (it would
// overwrite some and --resume auto would then mix the two runs); a resumed run continues the checkpoint's trajectory
// (its run id), refuses another run's checkpoints and sets aside the later ones of the run it branches off from.
static uint64_t adopt_checkpoint_dir(const Options *o, const char *resume_path, const CkptHeader *rh, int rank) {
    char err[4400], newest[4200];
    if (!resume_path[0]) {
        const int n = rank == 0 ? ckpt_count(o->checkpoint_dir, newest, sizeof newest) : 0;
        if (n)
            die_user("--checkpoint-dir %s: holds %d checkpoint%s of an earlier run (newest %s): a fresh run here would "
                     "overwrite them: continue that run with --resume auto, or give another --out or --checkpoint-dir",
                     o->checkpoint_dir, n, n == 1 ? "" : "s", newest);
        return ckpt_new_run_id();
    }
    if (rank == 0) {
        char moved[4200];
        if (ckpt_adopt_dir(o->checkpoint_dir, rh->run_id, (long)rh->step, moved, sizeof moved, err, sizeof err))
            die_user("--resume %s: %s", resume_path, err);
        if (moved[0])
            printf("resume: this run branches off at step %lld: the later checkpoints of %s are moved into %s\n",
                   (long long)rh->step, o->checkpoint_dir, moved);
    }
    return rh->run_id ? rh->run_id : ckpt_new_run_id();
}

// The end of a run that completed its last step: tokenizer.txt, then model.bin (so a model never sits beside
// another run's tokenizer: sample checks the pair). When --out cannot take them (a full disk), the weights of the
// whole run are not lost: they go to ${TMPDIR:-/tmp}/gptrain-rescue-<pid>/, and the error says where.
static void write_final_model(const GPT *g, const char *out, const char *tok_text, int rank) {
    // The weights on the host first: a sharded master (ZeRO-1 under bf16) is gathered from every rank, which all
    // call this; rank 0 writes.
    float *w = rank == 0 ? malloc(g->mem.num_params * sizeof(float) + 1) : NULL;
    gpt_state_to_host(g, GPT_STATE_PARAMS, w);
    if (rank != 0) return;
    if (!w) die_user("--out: out of memory for the %zu-byte staging buffer of the final model",
                     g->mem.num_params * sizeof(float));
    char err[4400], model_path[4200], tok_dst[4200];
    snprintf(model_path, sizeof model_path, "%s/model.bin", out);
    snprintf(tok_dst, sizeof tok_dst, "%s/tokenizer.txt", out);
    char tmp_tok[4300];
    FILE *tf = file_create_tmp(tok_dst, tmp_tok, sizeof tmp_tok, err, sizeof err);
    int rc = !tf || file_commit_tmp(tf, tmp_tok, tok_dst, !file_write(tf, tok_text, strlen(tok_text)), err,
                                    sizeof err);
    const uint32_t tok_id = modelfile_tokenizer_id(tok_text);
    if (!rc) rc = modelfile_save_weights(&g->cfg, w, g->mem.num_params, model_path, 0, tok_id, err, sizeof err);
    if (!rc) {
        free(w);
        return;
    }
    const char *tmpdir = getenv("TMPDIR");
    char rescue[4000], rerr[4400] = "";
    snprintf(rescue, sizeof rescue, "%s/gptrain-rescue-%d", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    int saved = !file_mkdirs(rescue, "rescue", rerr, sizeof rerr);
    if (saved) {
        snprintf(model_path, sizeof model_path, "%s/model.bin", rescue);
        snprintf(tok_dst, sizeof tok_dst, "%s/tokenizer.txt", rescue);
        tf = file_create_tmp(tok_dst, tmp_tok, sizeof tmp_tok, rerr, sizeof rerr);
        saved = tf && !file_commit_tmp(tf, tmp_tok, tok_dst, !file_write(tf, tok_text, strlen(tok_text)), rerr,
                                       sizeof rerr) &&
                !modelfile_save_weights(&g->cfg, w, g->mem.num_params, model_path, 0, tok_id, rerr, sizeof rerr);
    }
    free(w);
    if (saved)
        die_user("--out: %s; the trained model is saved instead in %s (model.bin, tokenizer.txt): move it into %s",
                 err, rescue, out);
    die_user("--out: %s; no copy could be saved either (%s)", err, rerr);
}

// What a run holds, released on every way out of it (a diverged run and a failed checkpoint too: ASan's leak check
// in make test-sanitize sees every exit).
static void free_run(Backend *be, GPT *g, DataLoader *train, DataLoader *val, char *cfg_text, float *grad_stage) {
    backend_staging_free(be, grad_stage);
    gpt_destroy(g);
    data_loader_close(train);
    data_loader_close(val);
    free(cfg_text);
}

static void launch_bucket(void *ctx, int layer) {
    CommCtx *c = ctx;
    const double t0 = backend_now_s();
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const ParamInfo *p = &c->g->param_info[i];
        if (layer >= 0 && p->per_layer) {
            const size_t n = p->rows * p->cols;
            dist_iallreduce_sum(c->dist, (float *)c->g->grads_mem + p->offset + (size_t)layer * n, n);
        } else if (layer < 0 && !p->per_layer)
            dist_iallreduce_sum(c->dist, (float *)c->g->grads_mem + p->offset, p->numel);
    }
    c->launch_s += backend_now_s() - t0;
}

// The same on GPU ranks: the layer's slices join the open bucket, which goes out as one NCCL group on the
// communication stream once it holds bucket_bytes (or, layer -1, the backward is done), so a small model does not
// pay a launch per tensor and a large one starts sending while the layers below are still computing.
static void launch_bucket_nccl(void *ctx, int layer) {
    CommCtx *c = ctx;
    const double t0 = backend_now_s();
    const size_t es = dtype_bytes(c->g->grad_dtype);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const ParamInfo *p = &c->g->param_info[i];
        size_t off, n;
        if (layer >= 0 && p->per_layer) n = p->rows * p->cols, off = p->offset + (size_t)layer * n;
        else if (layer < 0 && !p->per_layer) n = p->numel, off = p->offset;
        else continue;
        c->bufs[c->nbufs] = (char *)c->g->grads_mem + off * es;
        c->ns[c->nbufs++] = n;
        c->open_bytes += (double)n * es;
        if (c->nbufs == (int)(sizeof c->bufs / sizeof c->bufs[0])) break;   // never: a layer has < 4x the tensors
    }
    if (c->nbufs && (layer < 0 || c->open_bytes >= c->bucket_bytes ||
                     c->nbufs + NUM_PARAM_TENSORS > (int)(sizeof c->bufs / sizeof c->bufs[0]))) {
        dist_nccl_allreduce_mean_async(c->dist, c->bufs, c->ns, c->nbufs, c->g->grad_dtype == DTYPE_BF16);
        c->nbufs = 0;
        c->open_bytes = 0;
    }
    c->launch_s += backend_now_s() - t0;
}

// ZeRO-1's all-gather for the sharded model (GPT.allgather): NCCL for device memory, MPI for host memory.
static void zero_allgather(void *ctx, const void *send, void *recv, size_t count, size_t elem) {
    CommCtx *c = ctx;
#ifdef GPTRAIN_NCCL
    if (c->dist->nccl) {
        dist_nccl_allgather(c->dist, send, recv, count, elem);
        return;
    }
#endif
    dist_allgather_bytes(c->dist, send, recv, count * elem);
}

// The loader's allocator callbacks carry no Backend: they use the one cmd_train set up.
static Backend *staging_backend;
// The step's timing marks (backend.h): three per micro-step (forward, backward, end), three micro-steps' worth in
// turn, and the end of the step.
#define MARK_MICRO(micro, k) (3 * ((micro) % 3) + (k))
#define MARK_DONE 9

// Add micro-step `micro`'s forward and backward device time (waits for its end mark, which by then is usually past:
// the two micro-steps after it are already queued).
static void micro_phase_times(Backend *be, int micro, double *fwd_s, double *bwd_s) {
    *fwd_s += backend_mark_seconds(be, MARK_MICRO(micro, 0), MARK_MICRO(micro, 1));
    *bwd_s += backend_mark_seconds(be, MARK_MICRO(micro, 1), MARK_MICRO(micro, 2));
}

static void *staging_alloc(size_t bytes, const char *what) { return backend_staging_alloc(staging_backend, bytes, what); }
static void staging_free(void *p) { backend_staging_free(staging_backend, p); }

void trainer_free(Trainer *t) {
    free_run(&t->be, &t->g, &t->train_dl, &t->val_dl, t->cfg_text, t->grad_stage);
}

// The run's header: the resolved configuration (reusable as --config), the machine, the model's size, FLOPs and
// memory; and the peak FLOPS the MFU divides by.
static void print_run_header(Trainer *t) {
    Options *o = t->o;
    if (!strcmp(o->verbose, "on")) printf("gptrain train: resolved configuration\n%s", t->cfg_text);
    else
        printf("gptrain train: %d steps of --preset %s; the resolved configuration is in %s/config.txt (reusable as "
               "--config; --verbose on prints it here)\n", o->steps, o->preset, o->out);
    gpt_flops(&t->cfg, t->B, t->T, t->attn, &t->fl);
#ifdef GPTRAIN_CUDA
    // The GPU's deterministic flash backward recomputes S and dP once more in its dQ pass.
    if (t->be.kind == BACKEND_CUDA && t->attn == ATTN_FLASH && t->be.deterministic)
        for (int m = 0; m < 3; m++) t->fl.hardware[m] += 2 * t->fl.attn_qk;
#endif
    t->peak = o->peak_tflops;
    t->peak_src = "--peak-tflops";
    const GPTMemory *mem = &t->g.mem;
#ifdef GPTRAIN_CUDA
    if (t->be.kind == BACKEND_CUDA) {
        char desc[512];
        backend_cuda_describe(&t->be, desc, sizeof desc);
        printf("device: cuda: %s; ranks: %d (%s%s)\n", desc, t->dist.world, t->dist.backend,
               t->dist.nccl && strcmp(t->dist.backend, "nccl") ? ", gradients over NCCL" : "");
        if (t->peak <= 0) {
            t->peak = backend_cuda_peak_tflops(&t->be, o->precision);
            t->peak_src = "datasheet, dense";
            if (t->peak <= 0) {
                t->peak_src = "unknown GPU";
                printf("warning: no peak-FLOPS entry for this GPU: MFU and HFU print n/a (give --peak-tflops)\n");
            }
        }
        size_t ctx, used = backend_cuda_used_bytes(&t->be, &ctx);
        const double predicted = (double)gpt_memory_total(mem, t->rc);
        printf("device memory: predicted %.1f MiB for the model's buffers; measured %.1f MiB in use = %.1f MiB CUDA "
               "context, cuBLAS and the backend's scratch + %.1f MiB allocated since\n",
               predicted / 1048576.0, used / 1048576.0, ctx / 1048576.0, (used - ctx) / 1048576.0);
    } else
#endif
    {
        if (t->peak <= 0) {
            t->peak = measure_peak_tflops(&t->be);
            t->peak_src = "measured: best fp32 GEMM 768^3 at start-up";
        }
        printf("device: %s, %d threads, matmuls: %s; ranks: %d (%s)\n", t->be.name, t->be.threads,
               t->be.kind == BACKEND_CPU ? backend_cpu_blas_name() : "reference loops", t->dist.world, t->dist.backend);
    }
    printf("model: L=%d NH=%d C=%d F=%d V=%d (Vp=%d) maxT=%d; %zu parameters (%zu with vocabulary padding)%s%s\n",
           t->cfg.n_layer, t->cfg.n_head, t->cfg.d_model, t->cfg.d_ff, t->cfg.vocab_size, t->cfg.padded_vocab,
           t->cfg.max_seq_len,
           mem->num_params_real, mem->num_params, o->init_from[0] && !t->resume_path[0] ? "; weights from " : "",
           o->init_from[0] && !t->resume_path[0] ? o->init_from : "");
    printf("batch: B=%d T=%d grad_accum=%d -> %ld tokens per step; recompute %s; attention %s%s\n", t->B, t->T,
           t->accum,
           (long)t->B * t->T * t->accum * t->dist.world, gpt_recompute_name(t->rc), gpt_attention_name(t->attn),
           t->be.deterministic ? " (deterministic)" : "");
    if (o->dropout > 0)
        printf("dropout %g in training: after the embeddings, on the attention probabilities, after the attention "
               "projection and after the MLP; none in evaluation\n", o->dropout);
    char copy_mib[64] = "";
    if (mem->param_copy_bytes)
        snprintf(copy_mib, sizeof copy_mib, " + %.2f MiB bf16 copy", mem->param_copy_bytes / 1048576.0);
    printf("memory (%s activations): weights %.2f MiB%s, grads %.2f MiB (%s), AdamW %.2f MiB, activations %.2f MiB, "
           "scratch %.2f MiB\n", dtype_name(mem->dtype), mem->param_bytes / 1048576.0, copy_mib,
           mem->grad_bytes / 1048576.0, dtype_name(mem->grad_dtype), mem->optim_bytes / 1048576.0,
           mem->act_bytes[t->rc] / 1048576.0, mem->grad_act_bytes / 1048576.0);
    printf("memory plan: %.2f MiB in all; allocated through the backend: %.2f MiB\n",
           gpt_memory_total(mem, t->rc) / 1048576.0, t->be.bytes_allocated / 1048576.0);
    if (t->zero)
        printf("zero: optimizer state sharded over %d rank%s: %zu elements each (rank 0: [%zu, %zu)); gradients "
               "reduce-scattered, AdamW on the shard, the %s weights all-gathered\n", mem->shards,
               mem->shards == 1 ? "" : "s", mem->shard, t->g.shard_lo, t->g.shard_hi,
               mem->param_copy_bytes ? "bf16" : "fp32");
    printf("flops per step: model %.4g, hardware %.4g (%.4g per token); peak %.4g TFLOPS (%s)\n",
           t->fl.model * t->accum,
           t->fl.hardware[t->rc] * t->accum, t->fl.model / ((double)t->B * t->T), t->peak, t->peak_src);
    printf("data: train %zu tokens in %zu shard%s, ", t->train_dl.ntok, t->train_dl.nshards,
           t->train_dl.nshards == 1 ? "" : "s");
    if (o->eval_every == -1) printf("no validation (--eval-every -1); prefetch thread on\n");
    else
        printf("val %zu tokens in %zu (%d eval batches); prefetch thread on\n", t->val_dl.ntok, t->val_dl.nshards,
               t->eval_batches);
    printf("checkpoints: %s", o->checkpoint_dir);
    if (o->checkpoint_every) printf(", every %d steps", o->checkpoint_every);
    printf(", on SIGINT/SIGTERM; keep %d\n", o->keep_last);
    if (t->resume_path[0])
        printf("resume: %s: step %d, loader at batch %llu\n", t->resume_path, t->start_step,
               (unsigned long long)t->rh.train_batches);
    print_row_header();
    fflush(stdout);
}

// Set up: every user error is found here, before anything is written; then the model (from a checkpoint, llm.c
// weights or the seed), the loaders' prefetch, the log, the header and the step's buffers. Returns 1 when a resumed
// run was already at its last step (its model is written: nothing to run), else 0.
int trainer_setup(Trainer *t, Options *o) {
    char err[1024];
    memset(t, 0, sizeof *t);
    t->o = o;
    if (dist_init(&t->dist, err, sizeof err)) die_user("%s", err);
    // Rank 0 speaks for the group: the other ranks' stdout goes nowhere (errors still reach stderr).
    if (t->dist.rank != 0 && !freopen("/dev/null", "w", stdout))
        die_user("cannot silence rank %d's stdout", t->dist.rank);
    printf("%s\n", gptrain_version());   // the first line of every run: what built the numbers below
    if (o->train_data[0] && o->data[0])
        die_user("--train-data: give either --data DIR or --train-data/--val-data globs");
    if (o->train_data[0] && !o->val_data[0] && o->eval_every != -1)
        die_user("--val-data: expected a glob of val shards with --train-data (or --eval-every -1: no validation)");
    if (!o->data[0] && !o->train_data[0])
        die_user("--data: expected the directory `gptrain prepare` wrote (or --train-data/--val-data globs)");
    check_options(o);
    int gpu_usable = 0;
#ifdef GPTRAIN_CUDA
    gpu_usable = strcmp(o->device, "cpu") && backend_cuda_device_count() > 0;
#endif
    if (!strcmp(t->dist.backend, "nccl") && !gpu_usable)
        die_user("WORLD_SIZE=%d without mpirun: a torchrun-style launch needs --device cuda (NCCL); use mpirun for "
                 "CPU ranks", t->dist.world);
    const int assumed = data_tokenizer_text(o, t->tok_text, sizeof t->tok_text, t->tok_path);
    Tokenizer tk;
    if (tokenizer_load_text(&tk, t->tok_text, t->tok_path, err, sizeof err)) die_user("%s", err);
    const int data_vocab = tk.vocab_size;
    tokenizer_free(&tk);
    if (o->train_data[0] && !o->vocab_size) o->vocab_size = data_vocab;   // (GPT-2's 50257 when assumed)
    if (o->init_from[0]) apply_init_from(o);
    resolve_model(o, &t->cfg, &t->T, 0);
    if (t->cfg.vocab_size < data_vocab && !assumed)
        die_user("the model's vocabulary %d is smaller than the data's %d", t->cfg.vocab_size, data_vocab);
    if (assumed && t->cfg.vocab_size != data_vocab)
        printf("data: no tokenizer.txt beside the shards: the model's vocabulary V=%d is used (every token is checked "
               "against it); GPT-2's tokenizer is kept for decoding only, and sampling prints token ids when it does "
               "not fit\n", t->cfg.vocab_size);
    resolve_backend(o, &t->be, t->dist.local_rank);
#ifdef GPTRAIN_CUDA
    // Before the loader's thread and OpenMP's workers exist, so they inherit the binding.
    if (t->be.kind == BACKEND_CUDA && !strcmp(o->cpu_affinity, "on")) {
        char bus[32], line[1024];
        backend_cuda_pci_bus_id(&t->be, bus, sizeof bus);
        const char *root = getenv("GPTRAIN_SYSFS");   // tests point it at a made-up tree
        dist_bind_near_gpu(root && root[0] ? root : "/sys", bus, line, sizeof line);
        printf("%s\n", line);
    }
#endif
    t->attn = resolve_attention(o, &t->be, &t->cfg);
#ifdef GPTRAIN_CUDA
    // Before anything is allocated or written: a GPU whose kernels disagree with the CPU reference never trains.
    if (t->be.kind == BACKEND_CUDA && !strcmp(o->self_check, "on")) {
        const SelfCheckSpec sc = {resolve_matmul_mode(o), t->attn, t->cfg.d_model / t->cfg.n_head, (float)o->dropout,
                                  (uint64_t)o->seed ^ (uint64_t)(backend_now_s() * 1e9) ^ (uint64_t)t->dist.rank << 48};
        char line[1024];
        if (selfcheck_run(&t->be, &sc, line, sizeof line)) die_user("%s", line);
        printf("%s\n", line);
    }
#endif
    gpt_recompute_parse(o->recompute, &t->rc);  // the CLI already checked the choice
    if (o->batch == CLI_AUTO) resolve_batch_auto(o, &t->be, &t->cfg, t->T, t->rc, t->attn, o->zero ? t->dist.world : 1);
    t->B = o->batch;
    t->accum = resolve_grad_accum(o, t->B, t->T, t->dist.world);
    o->grad_accum = t->accum;
    t->sched = (LRSchedule){LR_COSINE, o->lr, o->min_lr, o->warmup_steps, o->steps};
    lr_schedule_parse(o->lr_schedule, &t->sched.kind);
    if (!o->out[0]) o->out = "out";
    static char ckpt_dir_buf[4096];
    if (!o->checkpoint_dir[0]) {
        snprintf(ckpt_dir_buf, sizeof ckpt_dir_buf, "%s/checkpoints", o->out);
        o->checkpoint_dir = ckpt_dir_buf;
    }
    t->shuffle = !strcmp(o->shuffle, "on");

    // Everything that can fail on user input is checked before anything is written.
    open_data(o, &t->train_dl, &t->val_dl, t->B, t->T, t->dist.rank, t->dist.world, t->cfg.vocab_size, err, sizeof err);
    t->eval_batches = o->eval_steps;
    size_t max_val_batches = t->val_dl.ntok ? (t->val_dl.ntok - 1) / ((size_t)t->B * t->T * t->dist.world) : 0;
    if (!t->eval_batches || (size_t)t->eval_batches > max_val_batches) t->eval_batches = (int)max_val_batches;
    // GPU gradients between ranks: NCCL when built in (else staged through host memory for MPI); a torchrun-style
    // launch has no other collectives than NCCL's.
#ifdef GPTRAIN_NCCL
    // GPTRAIN_NCCL_WORLD1=1 runs a single rank through NCCL too (the device test: the same numbers as without).
    if (t->be.kind == BACKEND_CUDA && (t->dist.world > 1 || getenv("GPTRAIN_NCCL_WORLD1")) &&
        dist_nccl_init(&t->dist, backend_cuda_device_count(), err, sizeof err))
        die_user("%s", err);
#endif
    if (!strcmp(t->dist.backend, "nccl") && !t->dist.nccl)
        die_user("WORLD_SIZE=%d without mpirun: a torchrun-style launch needs --device cuda (NCCL); use mpirun for "
                 "CPU ranks", t->dist.world);
    if (o->zero && !t->be.host_visible && t->dist.world > 1 && !t->dist.nccl)
        die_user("--zero 1: %d GPU ranks shard the optimizer over NCCL, which this binary lacks (make finds NCCL "
                 "with CUDA); run without --zero", t->dist.world);
    if (t->be.grad_dtype != DTYPE_F32 && t->dist.world > 1 && !t->dist.nccl)
        die_user("--grad-dtype bf16: %d ranks average bf16 gradients through NCCL, which this binary lacks (the "
                 "staged MPI path is fp32); use --grad-dtype fp32", t->dist.world);
    t->cfg_text = resolved_text(o);
    lock_run_dirs(o, t->dist.rank);
    // --resume: find the checkpoint and check it against this run before any work.
    t->resume_path[0] = 0;
    memset(&t->rh, 0, sizeof t->rh);
    if (o->resume[0]) {
        if (!strcmp(o->resume, "auto")) {
            int found = ckpt_find_latest(o->checkpoint_dir, t->resume_path, sizeof t->resume_path, err, sizeof err);
            if (found < 0) die_user("--resume auto: %s", err);
            if (found > 0) {
                printf("resume: no checkpoint in %s; starting from step 0\n", o->checkpoint_dir);
                t->resume_path[0] = 0;
            }
        } else snprintf(t->resume_path, sizeof t->resume_path, "%s", o->resume);
    }
    if (t->resume_path[0]) {
        char *ck_cfg, *ck_tok;
        if (ckpt_read_meta(t->resume_path, &t->rh, &ck_cfg, &ck_tok, err, sizeof err)) die_user("--resume: %s", err);
        const CkptHeader *h = &t->rh;
        const GPTConfig *c = &t->cfg;
        if (h->n_layer != c->n_layer || h->n_head != c->n_head || h->d_model != c->d_model || h->d_ff != c->d_ff ||
            h->vocab_size != c->vocab_size || h->max_seq_len != c->max_seq_len)
            die_user("--resume %s: the checkpoint's model is L=%d NH=%d C=%d F=%d V=%d maxT=%d, this run's L=%d NH=%d "
                     "C=%d F=%d V=%d maxT=%d", t->resume_path, h->n_layer, h->n_head, h->d_model, h->d_ff,
                     h->vocab_size, h->max_seq_len, c->n_layer, c->n_head, c->d_model, c->d_ff, c->vocab_size, c->max_seq_len);
        if (strcmp(ck_tok, t->tok_text))
            die_user("--resume %s: the checkpoint was trained with another tokenizer", t->resume_path);
        check_resume_config(t->resume_path, &t->rh, ck_cfg, t->cfg_text, t->B, t->T, t->accum, t->dist.world,
                            t->shuffle, (uint64_t)o->seed);
        if (t->rh.step > o->steps)
            die_user("--resume %s: the checkpoint is at step %lld, past --steps %d: nothing to do", t->resume_path,
                     (long long)t->rh.step, o->steps);
        if (o->stop_at_step && t->rh.step >= o->stop_at_step && t->rh.step < o->steps)
            die_user("--stop-at-step %d: the checkpoint %s is already at step %lld", o->stop_at_step, t->resume_path,
                     (long long)t->rh.step);
        free(ck_cfg);
        free(ck_tok);
    }
    t->run_id = adopt_checkpoint_dir(o, t->resume_path, &t->rh, t->dist.rank);
    snprintf(t->model_path, sizeof t->model_path, "%s/model.bin", o->out);
    // ZeRO-1: this rank keeps its shard of the optimizer state (gpt_memory_shard); the collectives the model needs
    // to gather it go through the trainer's context, set before any weights arrive.
    t->zero = o->zero;
    if (gpt_create_sharded(&t->g, &t->cfg, &t->be, t->B, t->T, t->rc, t->attn, t->zero ? t->dist.rank : 0,
                           t->zero ? t->dist.world : 1, err, sizeof err))
        die_user("%s", err);
    if (o->bucket_mb <= 0) die_user("--bucket-mb %g: expected a positive size in MiB", o->bucket_mb);
    t->comm = (CommCtx){&t->dist, &t->g, 0, {0}, {0}, 0, 0, o->bucket_mb * 1048576.0};
    t->g.hook_ctx = &t->comm;
    t->g.allgather = zero_allgather;
    t->g.stochastic_rounding = !strcmp(o->stochastic_rounding, "on");   // before any weights arrive (the copy's seed)
    t->g.dropout = (float)o->dropout;
    t->g.dropout_seed = (uint64_t)o->seed;
    t->start_step = t->skipped = 0;
    t->last_val = NAN;
    t->ls = loss_scale_from(o);
    if (t->resume_path[0]) {
        if (ckpt_load(t->resume_path, &t->g, 1, err, sizeof err)) die_user("--resume: %s", err);
        t->start_step = (int)t->rh.step;
        t->skipped = (int)t->rh.skipped;
        if (t->ls.dynamic && t->rh.loss_scale > 0) {   // the dynamic scale where the checkpointed run left it
            t->ls.scale = t->rh.loss_scale;
            t->ls.good = t->rh.loss_scale_good;
        }
        t->ls.overflows = t->rh.overflow_skips;
        t->last_val = t->rh.last_val_loss;
        data_loader_seek(&t->train_dl, t->rh.train_batches);
        if (t->start_step == o->steps) {   // a run stopped after its last step (its model may be missing): finish it
            printf("resume: %s is at the last step (%d of %d): the run is complete; writing its model\n",
                   t->resume_path, t->start_step, o->steps);
            write_final_model(&t->g, o->out, t->tok_text, t->dist.rank);
            char vt[64];
            printf("done: 0 steps; %s; %d updates skipped; model -> %s\n", val_text(o, t->last_val, vt, sizeof vt),
                   t->skipped, t->model_path);
            return 1;
        }
    } else if (o->init_from[0]) {
        if (modelfile_load_weights(&t->g, o->init_from, err, sizeof err)) die_user("--init-from: %s", err);
    } else gpt_init_weights(&t->g, (uint64_t)o->seed);
    staging_backend = &t->be;   // the loader's slots in the backend's fastest host memory (pinned on a GPU)
    if (data_loader_start_prefetch(&t->train_dl, 3, staging_alloc, staging_free, err, sizeof err) ||
        (t->val_dl.nshards && data_loader_start_prefetch(&t->val_dl, 3, staging_alloc, staging_free, err, sizeof err)))
        die_user("%s", err);
    t->logf = t->dist.rank == 0 && o->log[0] ? open_log(o->log, t->start_step, &t->train_dl, &t->val_dl) : NULL;
    if (t->dist.rank == 0) {   // OUT/config.txt: the resolved configuration, reusable as --config
        char path[4200], tmp[4300];
        snprintf(path, sizeof path, "%s/config.txt", o->out);
        FILE *f = file_create_tmp(path, tmp, sizeof tmp, err, sizeof err);
        char head[600];   // a comment line (--config skips it): the build that resolved it
        snprintf(head, sizeof head, "# %s\n", gptrain_version());
        if (!f || file_commit_tmp(f, tmp, path,
                                  !file_write(f, head, strlen(head)) && !file_write(f, t->cfg_text, strlen(t->cfg_text)),
                                  err, sizeof err))
            die_user("--out: %s", err);
    }
    print_run_header(t);
    install_stop_handlers();
    t->overlap = t->dist.world > 1 && !t->zero && t->be.host_visible && !strcmp(o->comm_overlap, "on");
    // GPU ranks: the buckets on NCCL's communication stream (also one rank under GPTRAIN_NCCL_WORLD1, the device test)
    t->overlap_nccl = t->dist.nccl && !t->zero && !strcmp(o->comm_overlap, "on");
    t->grad_stage = t->dist.world > 1 && !t->be.host_visible && !t->dist.nccl
                            ? backend_staging_alloc(&t->be, t->g.mem.num_params * sizeof(float),
                                                    "gradient all-reduce staging")
                            : NULL;
    t->nan_skip = !strcmp(o->nan_policy, "skip");
    t->dscale = 1.0f / ((float)t->B * t->T * t->accum);
    t->end_step = o->stop_at_step ? o->stop_at_step : o->steps;
    t->ema_ms = t->tok_sum = t->time_sum = 0;
    t->timed_steps = t->steps_run = 0;
    t->t_start = backend_now_s();
    t->peak_mem = 0;
    t->bw_gbs = o->bandwidth_gbs;
    if (o->profile && t->bw_gbs <= 0) t->bw_gbs = backend_measure_bandwidth_gbs(&t->be);
    return 0;
}

// One optimizer step: per micro-step the batch, forward and backward (timed by marks in the backend's queue), then
// the gradients averaged over ranks, the update (or its skip), and the metrics and their row. Returns 0, or
// EXIT_DIVERGED (after logging the step) when the run must stop.
int trainer_step(Trainer *t, int step, RunMetrics *out) {
    Options *o = t->o;
    char err[1024];
    RunMetrics m = {0};
    m.step = step + 1;
    if (o->profile == step + 1) {
        memset(&t->prof, 0, sizeof t->prof);
        t->be.profile = &t->prof;
    }
    double t0 = backend_now_s(), data_s = 0, fwd_s = 0, bwd_s = 0;
    gpt_zero_grad(&t->g);
    gpt_loss_reset(&t->g);
    // The loss gradient times the loss scale S (a power of two: exact); the update divides it out.
    const double S = t->ls.on ? t->ls.scale : 1.0;
    const float step_dscale = t->dscale * (float)S;
    m.loss_scale = t->ls.on ? S : 0;
    t->comm.launch_s = 0;
    // Nothing in the step waits for the backend until the optimizer is queued: phases are timed by marks in its
    // queue (CUDA events), each micro-step's read once two more are queued.
    for (int micro = 0; micro < t->accum; micro++) {
        // Gradients are final only in the last micro-step's backward: its buckets go out as they complete.
        t->g.on_grads_ready = micro < t->accum - 1 ? NULL
                              : t->overlap        ? launch_bucket
                              : t->overlap_nccl   ? launch_bucket_nccl
                                                  : NULL;
        const int32_t *in, *tg;
        double wait;
        if (data_loader_next_batch(&t->train_dl, &in, &tg, &wait, err, sizeof err)) die_user("%s", err);
        data_s += wait;
        t->g.dropout_step = step;   // the masks' key: (seed, step, micro-step, layer, site)
        t->g.dropout_micro = micro;
        backend_mark(&t->be, MARK_MICRO(micro, 0));
        gpt_forward_train(&t->g, in, tg, t->B, t->T, step_dscale);
        backend_mark(&t->be, MARK_MICRO(micro, 1));
        gpt_backward(&t->g);
        backend_mark(&t->be, MARK_MICRO(micro, 2));
        if (micro >= 2) micro_phase_times(&t->be, micro - 2, &fwd_s, &bwd_s);
    }
    for (int micro = t->accum >= 2 ? t->accum - 2 : 0; micro < t->accum; micro++)
        micro_phase_times(&t->be, micro, &fwd_s, &bwd_s);
    // Gradient averaging over ranks (the backend's memory staged through the host when it is not host memory).
    const double t_comm = backend_now_s();
    double exposed_s = 0;
    double gpu_comm_s = -1;
    if (t->overlap) {
        dist_wait_mean(&t->dist);   // what the backward did not hide
        exposed_s = backend_now_s() - t_comm;
    } else if (t->overlap_nccl) {
        dist_nccl_wait_buckets(&t->dist, &gpu_comm_s, &exposed_s);   // device time, from the streams' events
    } else if (t->zero) {
        // ZeRO-1: reduce-scatter in place, so this rank holds the averaged gradients of its shard only.
#ifdef GPTRAIN_NCCL
        if (t->dist.nccl)
            dist_nccl_reduce_scatter_mean(&t->dist, t->g.grads_mem, t->g.mem.shard, t->g.grad_dtype == DTYPE_BF16);
        else
#endif
            dist_reduce_scatter_mean(&t->dist, t->g.grads_mem, t->g.mem.shard);
    } else if (t->dist.world > 1 || t->dist.nccl) {
        if (t->dist.nccl)
            dist_nccl_allreduce_mean(&t->dist, t->g.grads_mem, t->g.mem.num_params, t->g.grad_dtype == DTYPE_BF16);
        else if (t->be.host_visible) dist_allreduce_mean(&t->dist, t->g.grads_mem, t->g.mem.num_params);
        else {
            backend_to_host(&t->be, t->grad_stage, t->g.grads_mem, t->g.mem.num_params * sizeof(float));
            dist_allreduce_mean(&t->dist, t->grad_stage, t->g.mem.num_params);
            backend_to_device(&t->be, t->g.grads_mem, t->grad_stage, t->g.mem.num_params * sizeof(float));
        }
    }
    if (!t->overlap && !t->overlap_nccl) exposed_s = backend_now_s() - t_comm;
    m.comm_ms = (gpu_comm_s >= 0 ? gpu_comm_s : exposed_s + t->comm.launch_s) * 1e3;
    m.exposed_comm_ms = exposed_s * 1e3;
    m.lr = lr_schedule_at(&t->sched, step);
    // One process: the loss and the norm stay where they are computed, and the update is skipped there when
    // either is not finite; the host reads both once the update is queued. Several ranks agree on the loss
    // first (an all-reduce on the host), so that they all skip or all update.
    const int alone = t->dist.world == 1 && !t->zero;
    if (!alone) m.loss = dist_allreduce_sum(&t->dist, gpt_loss_sum(&t->g) / t->accum) / t->dist.world;
    int updated = 0;
    if (t->zero) {   // the global norm from each rank's shard
        m.grad_norm = (float)sqrt(dist_allreduce_sum(&t->dist, gpt_shard_sum_squares(&t->g))) / S;
    } else if (alone || isfinite(m.loss)) {
        double loss_sum;
        m.grad_norm = gpt_adamw_step_clipped(&t->g, (float)m.lr, (float)o->beta1, (float)o->beta2, (float)o->eps,
                                             (float)o->weight_decay, o->grad_clip, (float)S, alone, &loss_sum);
        if (alone) m.loss = loss_sum / t->accum;   // read back with the norm, once the update was queued
        updated = 1;
    } else m.grad_norm = gpt_grad_norm(&t->g) / S;
    if (t->ls.on && isfinite(m.loss) && !isfinite(m.grad_norm)) {
        // An overflow of the scaled gradients, not a diverging run: the update was skipped (or, ZeRO-1, is not
        // made); a dynamic scale halves.
        m.overflow = 1;
        t->ls.overflows++;
        t->ls.good = 0;
        if (t->ls.dynamic) t->ls.scale = fmax(t->ls.scale / 2, LOSS_SCALE_MIN);
    } else if (!isfinite(m.loss) || !isfinite(m.grad_norm)) {
        if (!t->nan_skip) {
            fprintf(stderr,
                    "gptrain: error: step %d: loss %s, gradient norm %s: not finite (--nan-policy stop); "
                    "stopping without writing %s\n",
                    m.step, isfinite(m.loss) ? "finite" : isnan(m.loss) ? "NaN" : "Inf",
                    isfinite(m.grad_norm) ? "finite" : isnan(m.grad_norm) ? "NaN" : "Inf", t->model_path);
            write_json(&t->logf, &m, NAN);
            log_close(&t->logf, o->log);
            *out = m;
            return EXIT_DIVERGED;
        }
        m.skipped = 1;
        t->skipped++;
        if (o->max_skipped && t->skipped > o->max_skipped) {
            fprintf(stderr,
                    "gptrain: error: step %d: %d updates skipped for a non-finite loss or gradient, more than "
                    "--max-skipped %d: the run diverged; stopping without writing %s\n",
                    m.step, t->skipped, o->max_skipped, t->model_path);
            write_json(&t->logf, &m, NAN);
            log_close(&t->logf, o->log);
            *out = m;
            return EXIT_DIVERGED;
        }
    } else {
        if (!updated) {   // ZeRO-1: this rank's shard of the weights and moments, then all-gather the weights
            float clip =
                (o->grad_clip > 0 && m.grad_norm > o->grad_clip) ? (float)(o->grad_clip / m.grad_norm) : 1.0f;
            gpt_adamw_step_range(&t->g, t->g.grads_mem, t->g.shard_lo, t->g.shard_hi, (float)m.lr, (float)o->beta1,
                                 (float)o->beta2, (float)o->eps, (float)o->weight_decay, clip / (float)S);
        }
        if (t->ls.dynamic && ++t->ls.good >= t->ls.window) {   // a window without an overflow: try twice the scale
            t->ls.scale = fmin(t->ls.scale * 2, LOSS_SCALE_MAX);
            t->ls.good = 0;
        }
    }
    // The step ends when its queued work (the optimizer) has run: waiting for the last mark is the step's only
    // wait for the backend besides the loss and norm read back above.
    backend_mark(&t->be, MARK_DONE);
    const double opt_s = backend_mark_seconds(&t->be, MARK_MICRO(t->accum - 1, 2), MARK_DONE);
    const double t_end = backend_now_s(), dt = t_end - t0;
    m.step_ms = dt * 1e3;
    m.fwd_ms = fwd_s * 1e3;
    m.bwd_ms = bwd_s * 1e3;
    m.opt_ms = opt_s * 1e3;
    m.data_ms = data_s * 1e3;
    m.tokens_per_s = (double)t->B * t->T * t->accum * t->dist.world / dt;
    m.model_tflops = t->fl.model * t->accum / dt / 1e12;
    m.hw_tflops = t->fl.hardware[t->rc] * t->accum / dt / 1e12;
    m.mfu = t->peak > 0 ? m.model_tflops / t->peak : NAN;   // unknown peak: n/a, never a made-up number
    m.hfu = t->peak > 0 ? m.hw_tflops / t->peak : NAN;
    t->peak_mem = fmax(t->peak_mem, rss_mib());
    m.mem_mib = t->peak_mem;
#ifdef GPTRAIN_CUDA
    if (t->be.kind == BACKEND_CUDA) m.mem_mib = backend_cuda_used_bytes(&t->be, NULL) / 1048576.0;
#endif
    if (t->be.profile) {
        t->be.profile = NULL;
        print_profile(&t->prof, m.step, dt, t->peak, t->bw_gbs);
    }
    t->ema_ms = t->steps_run == 0 ? m.step_ms : 0.9 * t->ema_ms + 0.1 * m.step_ms;
    if (t->steps_run >= 10 || t->end_step - t->start_step <= 10) {
        t->tok_sum += (double)t->B * t->T * t->accum * t->dist.world;
        t->time_sum += dt;
        t->timed_steps++;
    }
    t->steps_run++;
    // --print-every 0: every step of a short run; else about every 1% of the run, and at least every 10 s.
    const int every = o->print_every > 0 ? o->print_every : o->steps <= 100 ? 1 : (o->steps + 99) / 100;
    if (step % every == 0 || step + 1 == t->end_step || (o->print_every == 0 && t_end - t->last_row_s >= 10.0)) {
        print_row(&m, o->steps, t->ema_ms * (t->end_step - step - 1) / 1e3);
        t->last_row_s = t_end;
    }
    *out = m;
    return 0;
}

// The validation loss when due (every --eval-every steps and after the last), and the step's log line.
void trainer_evaluate(Trainer *t, int step, const RunMetrics *mp) {
    Options *o = t->o;
    const RunMetrics m = *mp;
    double val = NAN;
    int last = step + 1 == o->steps;
    if (o->eval_every != -1 && ((o->eval_every > 0 && (step + 1) % o->eval_every == 0) || last)) {
        double te = backend_now_s();
        val = t->last_val = eval_loss(&t->g, &t->val_dl, t->eval_batches, &t->dist);
        if (isfinite(val) && (!t->best_step || val < t->best_val)) {
            t->best_val = val;
            t->best_step = m.step;
        }
        printf("eval  step %d/%d: val_loss %.4f (%d batches, %.1f s)\n", m.step, o->steps, val, t->eval_batches,
               backend_now_s() - te);
    }
    write_json(&t->logf, &m, val);
}

// A checkpoint after step (ZeRO-1: the shards gathered from every rank). 0, or EXIT_USER when it cannot be written.
int trainer_checkpoint(Trainer *t, int step) {
    Options *o = t->o;
    if (write_checkpoint(o->checkpoint_dir, t->dist.rank, &t->g, step + 1, t->B, t->T, t->accum, t->dist.world,
                         t->shuffle, (uint64_t)o->seed, t->train_dl.batches, t->skipped, &t->ls, t->last_val,
                         t->cfg_text, t->tok_text, o->keep_last, t->run_id, t->ckpt_path, sizeof t->ckpt_path))
        return EXIT_USER;
    return 0;
}

// The end of the run: the final model and the summary line.
void trainer_finish(Trainer *t) {
    Options *o = t->o;
    double total_s = backend_now_s() - t->t_start;
    log_close(&t->logf, o->log);
    write_final_model(&t->g, o->out, t->tok_text, t->dist.rank);
    char scaling[96] = "";
    if (t->ls.on)
        snprintf(scaling, sizeof scaling, "; %lld overflow skips (loss scale now %g)", t->ls.overflows, t->ls.scale);
    char vt[64];
    printf("done: %d steps in %.1f s; %.0f tokens/s (mean after warm-up); %s; %d updates skipped%s; model -> %s\n",
           t->steps_run, total_s, t->time_sum > 0 ? t->tok_sum / t->time_sum : 0.0,
           val_text(o, t->last_val, vt, sizeof vt), t->skipped, scaling, t->model_path);
    // The summary block: speed and utilisation over the timed steps, the validation losses, where everything went.
    char mfu[96] = "MFU n/a, HFU n/a (no peak: --peak-tflops)";
    if (t->peak > 0 && t->time_sum > 0) {
        const double per_s = t->timed_steps / t->time_sum / 1e12 / t->peak * 100;
        snprintf(mfu, sizeof mfu, "MFU %.1f%%, HFU %.1f%% of %.4g TFLOPS", t->fl.model * t->accum * per_s,
                 t->fl.hardware[t->rc] * t->accum * per_s, t->peak);
    }
    printf("summary: %.1f ms per step, %.0f tokens/s, %s (means after warm-up, %d steps timed)\n",
           t->timed_steps ? t->time_sum / t->timed_steps * 1e3 : 0.0, t->time_sum > 0 ? t->tok_sum / t->time_sum : 0.0,
           mfu, t->timed_steps);
    if (t->best_step)
        printf("  val_loss: final %.4f, best %.4f at step %d\n", t->last_val, t->best_val, t->best_step);
    printf("  model %s; configuration %s/config.txt%s%s; checkpoints %s\n", t->model_path, o->out,
           o->log[0] ? "; log " : "", o->log, o->checkpoint_dir);
}

int cmd_train(Options *o) {
    static Trainer trainer;   // one run per process; static, so an early exit leaves nothing unreachable
    Trainer *t = &trainer;
    if (trainer_setup(t, o)) {   // resumed at its last step: the model is written, nothing to run
        trainer_free(t);
        dist_finalize(&t->dist);
        return 0;
    }
    for (int step = t->start_step; step < t->end_step; step++) {
        RunMetrics m;
        const int rc = trainer_step(t, step, &m);
        if (rc) {
            trainer_free(t);
            return rc;
        }
        trainer_evaluate(t, step, &m);
        const int last = step + 1 == o->steps;
        // Every rank stops after the same step: the signal may reach the ranks at different moments.
        const int sig = dist_allreduce_max_int(&t->dist, stop_signal), stopping = step + 1 == o->stop_at_step;
        if ((sig || stopping || (o->checkpoint_every && ((step + 1) % o->checkpoint_every == 0 || last))) &&
            trainer_checkpoint(t, step)) {
            trainer_free(t);
            return EXIT_USER;
        }
        fflush(stdout);
        if ((sig || stopping) && last) {   // the run is complete: it ends as one, with its model
            if (sig) printf("%s during the last step: the run is complete; writing its model\n", signal_name(sig));
            break;
        }
        if (sig || stopping) {
            log_close(&t->logf, o->log);
            printf("stopped after step %d/%d (%s): continue with --resume auto (or --resume %s)\n", step + 1,
                   o->steps, sig ? signal_name(sig) : "--stop-at-step", t->ckpt_path);
            fflush(stdout);
            trainer_free(t);
            dist_finalize(&t->dist);
            return sig ? 128 + sig : 0;
        }
    }
    trainer_finish(t);
    trainer_free(t);
    dist_finalize(&t->dist);
    return 0;
}
