/*
 * schedule.h: the learning-rate schedule. Linear warmup from lr/warmup to lr over the first warmup steps, then a
 * decay to min_lr at the last step: cosine (default), linear, or constant (stays at lr).
 *   step i (0-based optimizer step), W warmup, S total steps:
 *     i < W:  lr * (i + 1) / W
 *     else:   p = (i - W) / max(1, S - W - 1)  in [0, 1]
 *             cosine:   min + 0.5 (lr - min)(1 + cos(pi p))
 *             linear:   min + (lr - min)(1 - p)
 *             constant: lr
 */
#ifndef GPTRAIN_SCHEDULE_H
#define GPTRAIN_SCHEDULE_H

typedef enum { LR_COSINE = 0, LR_LINEAR = 1, LR_CONSTANT = 2 } LRKind;

typedef struct LRSchedule {
    LRKind kind;
    double lr, min_lr;
    int warmup_steps, total_steps;
} LRSchedule;

double lr_schedule_at(const LRSchedule *s, int step);
int lr_schedule_parse(const char *name, LRKind *out);   // "cosine" | "linear" | "constant"; 0 ok, -1 unknown
const char *lr_schedule_name(LRKind k);

#endif
