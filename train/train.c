/*
 * train.c: `gptrain train`, the training loop. Per optimizer step: grad-accum micro-steps of (load batch, forward,
 * backward), gradient averaging over ranks (dist/), global-norm clipping folded into AdamW, the learning-rate
 * schedule, and a metrics row (stdout table and JSONL) with loss, lr, grad norm, step time, tokens/s, model and
 * hardware TFLOPS, MFU and HFU. FLOPs come from the model's own op walk (gpt_flops), not from 6N.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "dist.h"
#include "gptrain.h"
#include "ops.h"
#include "schedule.h"

typedef struct RunMetrics {
    int step;
    double loss, lr, grad_norm, step_ms, data_ms, tokens_per_s, model_tflops, hw_tflops, mfu, hfu;
    int skipped;
} RunMetrics;

static void check_options(const Options *o) {
    if (o->batch < 1) die_user("--batch %d: expected at least 1", o->batch);
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
    if (o->eval_every < 0) die_user("--eval-every %d: expected 0 (only at the end) or more", o->eval_every);
    if (o->eval_steps < 0) die_user("--eval-steps %d: expected 0 (whole split) or more", o->eval_steps);
    if (o->print_every < 1) die_user("--print-every %d: expected at least 1", o->print_every);
    if (o->peak_tflops < 0) die_user("--peak-tflops %g: expected 0 (measure) or a positive peak", o->peak_tflops);
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

static double eval_loss(GPT *g, DataLoader *val, int batches, int32_t *in, int32_t *tg) {
    data_loader_reset(val);
    double sum = 0;
    for (int i = 0; i < batches; i++) {
        data_loader_next(val, in, tg);
        sum += gpt_forward(g, in, tg, val->B, val->T, 0.0f);
    }
    return sum / batches;
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
    char stepbuf[32], eta[32];
    snprintf(stepbuf, sizeof stepbuf, "%d/%d", m->step, steps);
    format_eta(eta, sizeof eta, eta_s);
    printf("%11s %8.4f %9.3e %8.4f %9.2f %9.0f %8.4f %8.4f %5.1f%% %5.1f%% %8s%s\n", stepbuf, m->loss, m->lr,
           m->grad_norm, m->step_ms, m->tokens_per_s, m->model_tflops, m->hw_tflops, 100 * m->mfu, 100 * m->hfu, eta,
           m->skipped ? "  (update skipped: non-finite)" : "");
}

static void write_json(FILE *f, const RunMetrics *m, double val_loss) {
    if (!f) return;
    // JSON has no NaN; a non-finite loss is written as null so the file stays parseable.
    char loss[32], gn[32];
    if (isfinite(m->loss)) snprintf(loss, sizeof loss, "%.6f", m->loss); else strcpy(loss, "null");
    if (isfinite(m->grad_norm)) snprintf(gn, sizeof gn, "%.6f", m->grad_norm); else strcpy(gn, "null");
    fprintf(f,
            "{\"step\": %d, \"loss\": %s, \"lr\": %.6e, \"grad_norm\": %s, \"step_ms\": %.3f, \"data_wait_ms\": %.3f, "
            "\"tokens_per_s\": %.1f, \"model_tflops\": %.6f, \"hw_tflops\": %.6f, \"mfu\": %.6f, \"hfu\": %.6f",
            m->step, loss, m->lr, gn, m->step_ms, m->data_ms, m->tokens_per_s, m->model_tflops, m->hw_tflops, m->mfu,
            m->hfu);
    if (m->skipped) fprintf(f, ", \"skipped\": true");
    if (!isnan(val_loss)) fprintf(f, ", \"val_loss\": %.6f", val_loss);
    fprintf(f, "}\n");
    fflush(f);
}

int cmd_train(Options *o) {
    char err[1024];
    Dist dist;
    if (dist_init(&dist, err, sizeof err)) die_user("%s", err);
    if (!o->data[0]) die_user("--data: expected the directory `gptrain prepare` wrote");
    check_options(o);
    GPTConfig cfg;
    int T;
    resolve_model(o, &cfg, &T, 0);
    const int B = o->batch;
    const int accum = resolve_grad_accum(o, B, T, dist.world);
    o->grad_accum = accum;
    RecomputeMode rc;
    gpt_recompute_parse(o->recompute, &rc);  // the CLI already checked the choice
    LRSchedule sched = {LR_COSINE, o->lr, o->min_lr, o->warmup_steps, o->steps};
    lr_schedule_parse(o->lr_schedule, &sched.kind);
    if (!o->out[0]) o->out = "out";

    // Everything that can fail on user input is checked before anything is written.
    DataLoader train_dl, val_dl;
    if (data_loader_open(&train_dl, o->data, "train", B, T, dist.rank, dist.world, !strcmp(o->shuffle, "on"),
                         (uint64_t)o->seed, cfg.vocab_size, err, sizeof err))
        die_user("%s", err);
    if (data_loader_open(&val_dl, o->data, "val", B, T, dist.rank, dist.world, 0, (uint64_t)o->seed, cfg.vocab_size,
                         err, sizeof err))
        die_user("%s", err);
    int eval_batches = o->eval_steps;
    size_t max_val_batches = (val_dl.ntok - 1) / ((size_t)B * T * dist.world);
    if (!eval_batches || (size_t)eval_batches > max_val_batches) eval_batches = (int)max_val_batches;
    char tok_src[4096], tok_dst[4096], model_path[4096];
    snprintf(tok_src, sizeof tok_src, "%s/tokenizer.txt", o->data);
    snprintf(tok_dst, sizeof tok_dst, "%s/tokenizer.txt", o->out);
    snprintf(model_path, sizeof model_path, "%s/model.bin", o->out);
    if (make_dirs(o->out, "--out", err, sizeof err)) die_user("%s", err);
    Backend be;
    resolve_backend(o, &be);
    GPT g;
    if (gpt_create(&g, &cfg, &be, B, T, rc, err, sizeof err)) die_user("%s", err);
    gpt_init_weights(&g, (uint64_t)o->seed);
    FILE *logf = NULL;
    if (o->log[0] && !(logf = fopen(o->log, "w")))
        die_user("--log %s: cannot open for writing (%s)", o->log, strerror(errno));

    // Header: the resolved configuration (reusable as --config), the machine, the model's size, FLOPs and memory.
    printf("gptrain train: resolved configuration\n");
    cli_print_resolved(stdout, o, CMD_TRAIN);
    GPTFlops fl;
    gpt_flops(&cfg, B, T, &fl);
    double peak = o->peak_tflops;
    const char *peak_src = "--peak-tflops";
    if (peak <= 0) { peak = measure_peak_tflops(&be); peak_src = "measured: best fp32 GEMM 768^3 at start-up"; }
    const GPTMemory *mem = &g.mem;
    printf("device: %s, %d threads, matmuls: %s; ranks: %d (%s)\n", be.name, be.threads,
           be.kind == BACKEND_CPU ? backend_cpu_blas_name() : "reference loops", dist.world, dist.backend);
    printf("model: L=%d NH=%d C=%d F=%d V=%d (Vp=%d) maxT=%d; %zu parameters (%zu with vocabulary padding)\n",
           cfg.n_layer, cfg.n_head, cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.padded_vocab, cfg.max_seq_len,
           mem->num_params_real, mem->num_params);
    printf("batch: B=%d T=%d grad_accum=%d -> %ld tokens per step; recompute %s\n", B, T, accum,
           (long)B * T * accum * dist.world, gpt_recompute_name(rc));
    printf("memory: weights %.2f MiB, grads %.2f MiB, AdamW %.2f MiB, activations %.2f MiB, scratch %.2f MiB\n",
           mem->param_bytes / 1048576.0, mem->grad_bytes / 1048576.0, mem->optim_bytes / 1048576.0,
           mem->act_bytes[rc] / 1048576.0, mem->grad_act_bytes / 1048576.0);
    printf("flops per step: model %.4g, hardware %.4g (%.4g per token); peak %.4g TFLOPS (%s)\n", fl.model * accum,
           fl.hardware[rc] * accum, fl.model / ((double)B * T), peak, peak_src);
    printf("data: train %zu tokens, val %zu tokens (%d eval batches)\n", train_dl.ntok, val_dl.ntok, eval_batches);
    print_row_header();
    fflush(stdout);

    const int nan_skip = !strcmp(o->nan_policy, "skip");
    const float dscale = 1.0f / ((float)B * T * accum);
    int32_t *in = backend_host_alloc((size_t)B * T * sizeof(int32_t), "batch inputs");
    int32_t *tg = backend_host_alloc((size_t)B * T * sizeof(int32_t), "batch targets");
    double ema_ms = 0, tok_sum = 0, time_sum = 0, last_val = NAN;
    int skipped = 0, timed_steps = 0;
    double t_start = backend_now_s();
    for (int step = 0; step < o->steps; step++) {
        RunMetrics m = {0};
        m.step = step + 1;
        double t0 = backend_now_s(), data_s = 0, loss_sum = 0;
        gpt_zero_grad(&g);
        for (int micro = 0; micro < accum; micro++) {
            double td = backend_now_s();
            data_loader_next(&train_dl, in, tg);
            data_s += backend_now_s() - td;
            loss_sum += gpt_forward(&g, in, tg, B, T, dscale);
            gpt_backward(&g);
        }
        dist_allreduce_mean(&dist, g.grads_mem, g.mem.num_params);
        m.loss = loss_sum / accum;
        m.grad_norm = gpt_grad_norm(&g);
        m.lr = lr_schedule_at(&sched, step);
        if (!isfinite(m.loss) || !isfinite(m.grad_norm)) {
            if (!nan_skip) {
                fprintf(stderr,
                        "gptrain: error: step %d: loss %s, gradient norm %s: not finite (--nan-policy stop); "
                        "stopping without writing %s\n",
                        m.step, isfinite(m.loss) ? "finite" : isnan(m.loss) ? "NaN" : "Inf",
                        isfinite(m.grad_norm) ? "finite" : isnan(m.grad_norm) ? "NaN" : "Inf", model_path);
                write_json(logf, &m, NAN);
                if (logf) fclose(logf);
                return EXIT_DIVERGED;
            }
            m.skipped = 1;
            skipped++;
        } else {
            float clip = (o->grad_clip > 0 && m.grad_norm > o->grad_clip) ? (float)(o->grad_clip / m.grad_norm) : 1.0f;
            gpt_adamw_step(&g, (float)m.lr, (float)o->beta1, (float)o->beta2, (float)o->eps, (float)o->weight_decay,
                           clip);
        }
        double dt = backend_now_s() - t0;
        m.step_ms = dt * 1e3;
        m.data_ms = data_s * 1e3;
        m.tokens_per_s = (double)B * T * accum * dist.world / dt;
        m.model_tflops = fl.model * accum / dt / 1e12;
        m.hw_tflops = fl.hardware[rc] * accum / dt / 1e12;
        m.mfu = m.model_tflops / peak;
        m.hfu = m.hw_tflops / peak;
        ema_ms = step == 0 ? m.step_ms : 0.9 * ema_ms + 0.1 * m.step_ms;
        if (step >= 10 || o->steps <= 10) { tok_sum += (double)B * T * accum * dist.world; time_sum += dt; timed_steps++; }
        if (step % o->print_every == 0 || step + 1 == o->steps) print_row(&m, o->steps, ema_ms * (o->steps - step - 1) / 1e3);
        double val = NAN;
        int last = step + 1 == o->steps;
        if ((o->eval_every > 0 && (step + 1) % o->eval_every == 0) || last) {
            double te = backend_now_s();
            val = last_val = eval_loss(&g, &val_dl, eval_batches, in, tg);
            printf("eval  step %d/%d: val_loss %.4f (%d batches, %.1f s)\n", m.step, o->steps, val, eval_batches,
                   backend_now_s() - te);
        }
        write_json(logf, &m, val);
        fflush(stdout);
    }
    double total_s = backend_now_s() - t_start;
    if (logf && fclose(logf)) die_user("--log %s: write failed (%s)", o->log, strerror(errno));
    if (modelfile_save(&g, model_path, err, sizeof err)) die_user("--out: %s", err);
    if (copy_file_atomic(tok_src, tok_dst, err, sizeof err)) die_user("--out: %s", err);
    printf("done: %d steps in %.1f s; %.0f tokens/s (mean after warm-up); final val_loss %.4f; %d updates skipped; "
           "model -> %s\n",
           o->steps, total_s, tok_sum / time_sum, last_val, skipped, model_path);
    backend_host_free(in);
    backend_host_free(tg);
    gpt_destroy(&g);
    data_loader_close(&train_dl);
    data_loader_close(&val_dl);
    dist_finalize(&dist);
    return 0;
}
