/*
 * info.c: `gptrain info`, the model's size, FLOPs and memory anatomy from the planner, before anything runs.
 * These are the numbers the trainer allocates (gpt_create uses the same plan).
 */
#include <stdio.h>
#include <string.h>

#include "gptrain.h"

static void mib_line(const char *what, size_t bytes, size_t params) {
    printf("  %-34s %12.2f MiB  %6.2f bytes/param\n", what, bytes / 1048576.0, (double)bytes / (double)params);
}

int cmd_info(Options *o) {
    GPTConfig cfg;
    int T;
    resolve_model(o, &cfg, &T, 50257);
    if (o->batch < 1) die_user("--batch %d: expected at least 1", o->batch);
    const int B = o->batch;
    GPTMemory mem;
    gpt_memory_plan(&cfg, B, T, &mem);
    GPTFlops fl;
    gpt_flops(&cfg, B, T, &fl);
    const double L = cfg.n_layer, C = cfg.d_model, N = mem.num_params_real;
    const double wpe = (double)cfg.max_seq_len * cfg.d_model, tokens = (double)B * T;
    printf("model: L=%d NH=%d C=%d F=%d V=%d (Vp=%d) maxT=%d; B=%d T=%d\n", cfg.n_layer, cfg.n_head, cfg.d_model,
           cfg.d_ff, cfg.vocab_size, cfg.padded_vocab, cfg.max_seq_len, B, T);
    printf("parameters: %zu (%zu with the %d padded vocabulary rows); 12*L*C^2 = %.0f\n", mem.num_params_real,
           mem.num_params, cfg.padded_vocab - cfg.vocab_size, 12 * L * C * C);
    printf("flops per token: training %.4g (forward %.4g = inference), per step of B*T tokens: %.4g\n",
           fl.model / tokens, fl.forward / tokens, fl.model);
    printf("  rule of thumb 6*N' + 6*L*C*T = %.4g (N' = parameters without wpe; attention causal half)\n",
           6 * (N - wpe) + 6 * L * C * T);
    printf("  hardware flops per step: none %.4g, selective %.4g, full %.4g (HFU counts recomputed work)\n",
           fl.hardware[0], fl.hardware[1], fl.hardware[2]);
    printf("memory (fp32 weights, fp32 AdamW; per process):\n");
    mib_line("weights", mem.param_bytes, mem.num_params);
    mib_line("gradients", mem.grad_bytes, mem.num_params);
    mib_line("AdamW state (m, v)", mem.optim_bytes, mem.num_params);
    const char *names[3] = {"none", "selective", "full"};
    for (int m = 0; m < 3; m++) {
        char what[64];
        snprintf(what, sizeof what, "activations, --recompute %s", names[m]);
        mib_line(what, mem.act_bytes[m], mem.num_params);
    }
    mib_line("backward scratch (one layer)", mem.grad_act_bytes, mem.num_params);
    for (int m = 0; m < 3; m++) {
        size_t total = mem.param_bytes + mem.grad_bytes + mem.optim_bytes + mem.act_bytes[m] + mem.grad_act_bytes +
                       mem.io_bytes;
        char what[64];
        snprintf(what, sizeof what, "total, --recompute %s", names[m]);
        mib_line(what, total, mem.num_params);
    }
    return 0;
}
