/*
 * schedule.c: learning-rate warmup and decay (see schedule.h for the formula).
 */
#include "schedule.h"

#include <math.h>
#include <string.h>

double lr_schedule_at(const LRSchedule *s, int step) {
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == LR_CONSTANT) return s->lr;
    int span = s->total_steps - s->warmup_steps - 1;
    double p = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (p > 1.0) p = 1.0;
    if (s->kind == LR_LINEAR) return s->min_lr + (s->lr - s->min_lr) * (1.0 - p);
    return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * p));
}

int lr_schedule_parse(const char *name, LRKind *out) {
    if (!strcmp(name, "cosine")) *out = LR_COSINE;
    else if (!strcmp(name, "linear")) *out = LR_LINEAR;
    else if (!strcmp(name, "constant")) *out = LR_CONSTANT;
    else return -1;
    return 0;
}

const char *lr_schedule_name(LRKind k) {
    return k == LR_LINEAR ? "linear" : k == LR_CONSTANT ? "constant" : "cosine";
}
