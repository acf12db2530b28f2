/*
 * test_trainer.c: the training run's stages (train/trainer.h), each on its own, on the CPU with the micro model:
 *   trainer_setup       the resolved run: batch, steps, the loaders, the model's first step;
 *   trainer_step        one step's metrics: step number, a loss near ln(V) for the fresh initialisation, a positive
 *                       finite gradient norm, the learning rate the schedule gives, times that add up;
 *   trainer_evaluate    a validation loss only when due (not before the last step; at the last one, finite);
 *   trainer_checkpoint  a file at the step's path whose header names the step;
 *   trainer_finish      model.bin of the model's size;
 * and the stages run by hand, step by step, leave a model.bin byte-identical to cmd_train's (the loop is what
 * cmd_train runs).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "trainer.h"

static char dir[256];

static int parse(Options *o, const char *out, int steps_n) {
    static char data[512], outp[512], steps[16];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(outp, sizeof outp, "%s/%s", dir, out);
    snprintf(steps, sizeof steps, "%d", steps_n);
    char *argv[] = {"--data", data, "--preset", "micro", "--batch", "2", "--seq-len", "32", "--steps", steps,
                    "--eval-every", "0", "--eval-steps", "2", "--threads", "1", "--out", outp, "--lr", "1e-3",
                    "--warmup-steps", "2"};
    char err[512];
    if (cli_parse(o, CMD_TRAIN, (int)(sizeof argv / sizeof argv[0]), argv, err, sizeof err)) {
        harness_case(0, "cli_parse", "%s", err);
        return -1;
    }
    return 0;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) ? -1 : (long)st.st_size;
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        if (x != y) same = 0;
        if (x == EOF || y == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/gptrain-trainer-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        harness_case(0, "mkdtemp", "%s", dir);
        return harness_finish();
    }
    // 100 kB of Tiny Shakespeare, prepared as `gptrain prepare` does.
    char text[512], data[512], err[1024];
    snprintf(text, sizeof text, "%s/small.txt", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    FILE *in = fopen("data/tinyshakespeare/input.txt", "rb"), *out = fopen(text, "wb");
    if (!in || !out) {
        harness_case(0, "the vendored Tiny Shakespeare", "data/tinyshakespeare/input.txt or %s cannot be opened", text);
        return harness_finish();
    }
    static char buf[100000];
    const size_t got = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, got, out);
    fclose(in);
    fclose(out);
    if (data_prepare(text, data, "char", 0.1, 100000000, err, sizeof err)) {
        harness_case(0, "data_prepare", "%s", err);
        return harness_finish();
    }

    const int steps = 4;
    static Options o;
    static Trainer t;   // (as cmd_train's: large)
    if (parse(&o, "stages", steps)) return harness_finish();
    const int done = trainer_setup(&t, &o);
    harness_case(done == 0 && t.start_step == 0 && t.end_step == steps && t.B == 2 && t.T == 32 && t.accum == 1 &&
                     t.dist.world == 1 && t.g.mem.shards == 1 && t.train_dl.ntok > 0 && t.val_dl.ntok > 0,
                 "trainer_setup: the resolved run (B=2 T=32, 4 steps from step 0, one rank, the loaders open)",
                 "returned %d; steps %d..%d, B=%d T=%d accum %d, world %d", done, t.start_step, t.end_step, t.B, t.T,
                 t.accum, t.dist.world);
    const double lnV = log((double)t.cfg.vocab_size);
    double val_before_last = 0;
    for (int step = 0; step < steps; step++) {
        RunMetrics m;
        memset(&m, 0xff, sizeof m);   // poisoned: every field the checks read must be written
        const int rc = trainer_step(&t, step, &m);
        if (step == 0) {
            const double want_lr = 1e-3 * 1 / 2;   // linear warm-up over 2 steps: step 1 of 2
            harness_case(rc == 0 && m.step == 1 && isfinite(m.loss) && fabs(m.loss - lnV) < 0.5 &&
                             isfinite(m.grad_norm) && m.grad_norm > 0 && fabs(m.lr - want_lr) < 1e-12 &&
                             m.skipped == 0 && m.step_ms > 0 && m.tokens_per_s > 0 &&
                             m.fwd_ms >= 0 && m.bwd_ms >= 0 && m.fwd_ms + m.bwd_ms <= m.step_ms * 1.01 + 0.01,
                         "trainer_step: step 1's metrics (loss near ln V for the fresh weights, norm, warm-up lr, "
                         "phase times within the step's)",
                         "rc %d, step %d, loss %.4f (ln V %.4f), norm %.4g, lr %.3g, step %.3f ms (fwd %.3f, bwd %.3f)",
                         rc, m.step, m.loss, lnV, m.grad_norm, m.lr, m.step_ms, m.fwd_ms, m.bwd_ms);
            trainer_evaluate(&t, step, &m);
            val_before_last = t.last_val;
            char path[600];
            snprintf(path, sizeof path, "%s/stages/checkpoints", dir);
            const int crc = trainer_checkpoint(&t, step);
            CkptHeader h;
            char *ct = NULL, *tt = NULL;
            const int mrc = crc ? -1 : ckpt_read_meta(t.ckpt_path, &h, &ct, &tt, err, sizeof err);
            harness_case(crc == 0 && mrc == 0 && h.step == 1 && !strncmp(t.ckpt_path, path, strlen(path)),
                         "trainer_checkpoint after step 1: a checkpoint in the run's directory naming step 1",
                         "rc %d, %s: %s", crc, t.ckpt_path, mrc ? err : "read");
            free(ct);
            free(tt);
        } else if (rc)
            harness_case(0, "trainer_step", "step %d returned %d", step + 1, rc);
        if (step == steps - 1) {
            trainer_evaluate(&t, step, &m);
            harness_case(isnan(val_before_last) && isfinite(t.last_val) && fabs(t.last_val - lnV) < 1.0,
                         "trainer_evaluate: no validation loss before it is due, a finite one after the last step",
                         "after step 1: %g; after step %d: %g", val_before_last, steps, t.last_val);
        }
    }
    trainer_finish(&t);
    char model[600], model2[600];
    snprintf(model, sizeof model, "%s/stages/model.bin", dir);
    const long want = 1024 + (long)t.g.mem.num_params * 4;
    harness_case(file_size(model) == want, "trainer_finish: model.bin, a header and every parameter in fp32",
                 "%s: %ld bytes, expected %ld", model, file_size(model), want);
    trainer_free(&t);
    dist_finalize(&t.dist);

    // cmd_train runs the same stages: the same model, byte for byte.
    static Options o2;
    if (parse(&o2, "cmd", steps)) return harness_finish();
    const int crc = cmd_train(&o2);
    snprintf(model2, sizeof model2, "%s/cmd/model.bin", dir);
    harness_case(crc == 0 && same_file(model, model2),
                 "the stages run one by one = cmd_train: model.bin byte for byte", "cmd_train returned %d; %s vs %s",
                 crc, model, model2);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return harness_finish();
}
