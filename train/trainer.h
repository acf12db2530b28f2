/*
 * trainer.h: `gptrain train` as stages (train.c), which cmd_train runs in order and a test can run one at a time:
 *   trainer_setup       flags, data, backend, model (from a checkpoint, llm.c weights or the seed), the run's header;
 *   trainer_step        one optimizer step: micro-steps of forward and backward, the gradients averaged over ranks,
 *                       the update (or its skip), the metrics and their row;
 *   trainer_evaluate    the validation loss when due, and the step's log line;
 *   trainer_checkpoint  a checkpoint after a step;
 *   trainer_finish      the final model and the summary line;
 *   trainer_free        what the run holds (every way out).
 */
#ifndef GPTRAIN_TRAINER_H
#define GPTRAIN_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "checkpoint.h"
#include "data.h"
#include "dist.h"
#include "gptrain.h"
#include "schedule.h"

// One step's row of metrics (stdout table and JSONL log).
typedef struct RunMetrics {
    int step;
    double loss, lr, grad_norm, step_ms, data_ms, tokens_per_s, model_tflops, hw_tflops, mfu, hfu;
    double fwd_ms, bwd_ms, opt_ms;   // phases: forward + loss, backward, all-reduce + norm + AdamW
    double comm_ms, exposed_comm_ms; // the gradient all-reduce: launches + wait, and the part the backward did not hide
    double mem_mib;                  // peak memory: the process's peak RSS on the CPU, device memory in use on a GPU
    int skipped;
    double loss_scale;               // the step's loss scale (0: no loss scaling)
    int overflow;                    // the update was skipped: the scaled gradients overflowed
} RunMetrics;

/*
 * Loss scaling (--loss-scale; Micikevicius et al. 2018, "Mixed Precision Training"): the loss gradient is multiplied by
 * a power of two S before the backward, so that gradients too small for fp16 stay representable, and the update
 * divides S out again (the norm and the clip threshold in scaled units, the gradient scale 1/S in AdamW). S being a
 * power of two, every product is exact: in fp32 a scaled run is bitwise the unscaled one, which tests check. An
 * overflow (a finite loss with a non-finite scaled gradient norm) skips the update where it runs and, dynamic,
 * halves S; --loss-scale-window good updates in a row double it. Overflow skips are counted apart from the
 * --nan-policy skips of a diverging run.
 */
typedef struct LossScale {
    int on, dynamic, window;
    double scale;            // S
    long long good;          // updates since S last changed
    long long overflows;
} LossScale;
#define LOSS_SCALE_MIN 0x1p-24
#define LOSS_SCALE_MAX 0x1p64

// The gradient averaging's context (GPT.hook_ctx): the bucketed all-reduce, which gpt_backward calls when a layer's
// gradients are final (each of that layer's tensor slices goes out while the backward of the layers below runs), and
// ZeRO-1's all-gather (GPT.allgather).
typedef struct CommCtx {
    Dist *dist;
    GPT *g;
    double launch_s;
    // GPU ranks (NCCL): the open bucket's gradient slices, sent once they reach bucket_bytes (or the backward ends).
    void *bufs[4 * NUM_PARAM_TENSORS];
    size_t ns[4 * NUM_PARAM_TENSORS];
    int nbufs;
    double open_bytes, bucket_bytes;
} CommCtx;

// A training run, stage by stage: what the stages below share. cmd_train runs them in order: set up (flags, data,
// backend, model, resume, the run's header), then per step one step (forward and backward per micro-step, the
// gradient all-reduce, the update, the metrics row), an evaluation when due, a checkpoint when due, and at the end
// the final model and the summary.
typedef struct Trainer {
    Options *o;
    Dist dist;
    Backend be;
    GPTConfig cfg;
    GPT g;
    AttentionKind attn;
    RecomputeMode rc;
    int B, T, accum, shuffle, eval_batches;
    LRSchedule sched;
    DataLoader train_dl, val_dl;
    char *cfg_text;
    char tok_text[8192], tok_path[4096], resume_path[4096], model_path[4096], ckpt_path[4096];
    CkptHeader rh;            // the checkpoint resumed from (zero when none)
    uint64_t run_id;
    LossScale ls;
    int start_step, end_step, skipped, steps_run, timed_steps;
    double last_val, ema_ms, tok_sum, time_sum, t_start, peak_mem, bw_gbs, peak;
    double last_row_s, best_val;   // when the last metrics row was printed; the best validation loss, at best_step
    int best_step;
    const char *peak_src;
    GPTFlops fl;
    FILE *logf;
    OpProfile prof;
    // Gradient averaging over ranks: the per-layer overlap (CPU ranks over MPI, GPU ranks in NCCL buckets), ZeRO-1
    // (the model sharded over the ranks: GPT.shard_lo, shard_hi), the host staging of GPU gradients for MPI.
    int zero, overlap, overlap_nccl, nan_skip;
    float *grad_stage;
    CommCtx comm;
    float dscale;
} Trainer;

// Set up (every user error is found here, before anything is written). Returns 1 when a resumed run was already at
// its last step (its model is written: nothing to run), else 0.
int trainer_setup(Trainer *t, Options *o);
// Optimizer step `step` (0-based): 0, or EXIT_DIVERGED (after logging the step) when the run must stop.
int trainer_step(Trainer *t, int step, RunMetrics *out);
void trainer_evaluate(Trainer *t, int step, const RunMetrics *m);
// A checkpoint after step `step` (ZeRO-1: the shards gathered from every rank). 0, or EXIT_USER.
int trainer_checkpoint(Trainer *t, int step);
void trainer_finish(Trainer *t);
void trainer_free(Trainer *t);

#endif
