/*
 * classifier.c: the fused classifier: per row, softmax over the real vocabulary V of the Vp logits, cross-entropy
 * against the target, and (training) dlogits = scale · (p − onehot) written over the logits in place, 0 in the padded
 * columns. The probabilities are never stored: the second pass recomputes exp(l − max). Sums in double, so the loss
 * keeps fp32 accuracy for a 50k vocabulary.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu.h"

void cpu_classifier_forward_backward(Backend *be, float *losses, void *logits_, const int32_t *targets, int N, int V,
                                     int Vp, float dlogits_scale) {
    float *logits = logits_;
#pragma omp parallel for schedule(static) if ((size_t)N * V > CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        float *l = logits + (size_t)n * Vp;
        const int t = targets[n];
        if (t < 0 || t >= V) {
            fprintf(stderr, "gptrain: internal error at %s:%d: target %d outside [0, %d)\n", __FILE__, __LINE__, t, V);
            abort();
        }
        float maxv = -INFINITY;
        for (int v = 0; v < V; v++) if (l[v] > maxv) maxv = l[v];
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)(l[v] - maxv));
        const double logsum = log(sum);
        losses[n] = (float)(logsum - (double)(l[t] - maxv));
        if (dlogits_scale != 0.0f) {
            for (int v = 0; v < V; v++) {
                const double p = exp((double)(l[v] - maxv) - logsum);
                l[v] = (float)(dlogits_scale * (p - (v == t ? 1.0 : 0.0)));
            }
            for (int v = V; v < Vp; v++) l[v] = 0.0f;
        }
    }
}

// *acc += the mean of losses (n), summed in double in index order.
void cpu_loss_accumulate(Backend *be, double *acc, const float *losses, size_t n) {
    (void)be;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += losses[i];
    *acc += (float)(sum / n);
}
