/*
 * config.c: GPT configurations: the named presets and the checks that turn user-given sizes into a valid config
 * (d_ff defaulting to 4*d_model, the vocabulary padded to a multiple of GPT_VOCAB_PAD rows). The sizes come from flags
 * and from file headers alike, so each is capped before any arithmetic on it, and the parameter count is capped.
 */
#include <stdio.h>
#include <string.h>

#include "gpt.h"

typedef struct Preset {
    const char *name;
    int n_layer, n_head, d_model, d_ff, vocab_size, max_seq_len;
} Preset;

// GPT-2 sizes (Radford et al. 2019), the benchmarking sizes of the course table, and CPU-sized models whose
// vocabulary comes from the dataset (vocab_size 0).
static const Preset PRESETS[] = {
    {"gpt2-124m", 12, 12, 768, 0, 50257, 1024},
    {"gpt2-350m", 24, 16, 1024, 0, 50257, 1024},
    {"gpt2-774m", 36, 20, 1280, 0, 50257, 1024},
    {"gpt2-1.5b", 48, 25, 1600, 0, 50257, 1024},
    {"small", 12, 12, 768, 3072, 50257, 1024},
    {"medium", 24, 16, 1024, 4096, 50257, 1024},
    {"large", 36, 20, 1280, 5120, 50257, 1024},
    {"xl", 48, 25, 1600, 6400, 50257, 1024},
    {"2.7b", 32, 32, 2560, 10240, 50257, 1024},
    {"shakespeare-char", 6, 6, 384, 0, 0, 256},   // nanoGPT's "baby GPT" (train_shakespeare_char.py); the trainer
                                                  // takes its batch 64, 5000 steps and dropout 0.2 too
    {"tiny", 4, 4, 128, 0, 0, 64},   // nanoGPT's CPU Shakespeare model: 4 layers, 4 heads, 128 wide, context 64
    {"micro", 2, 2, 64, 0, 0, 32},   // seconds-scale runs for tests
};

int gpt_config_preset(GPTConfig *cfg, const char *name) {
    for (size_t i = 0; i < sizeof(PRESETS) / sizeof(PRESETS[0]); i++) {
        const Preset *p = &PRESETS[i];
        if (strcmp(p->name, name) != 0) continue;
        cfg->n_layer = p->n_layer;
        cfg->n_head = p->n_head;
        cfg->d_model = p->d_model;
        cfg->d_ff = p->d_ff;
        cfg->vocab_size = p->vocab_size;
        cfg->max_seq_len = p->max_seq_len;
        cfg->padded_vocab = 0;
        return 0;
    }
    return -1;
}

const char *gpt_config_preset_names(void) {
    return "gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1.5b, small, medium, large, xl, 2.7b, shakespeare-char, tiny, micro";
}

// Caps on each size, checked before any arithmetic on them. Generous for real models (GPT-3 175B: L=96, C=12288,
// F=49152, maxT=2048) yet small enough that every derived size fits its type: 4*C fits an int, and the largest
// parameter tensors, 3*C*C*L and F*C*L, stay below 2^59 (2^20 * 2^22 * 2^16 = 2^58), so the size_t parameter count
// cannot wrap and the 1e12 cap on it is a comparison of exact numbers.
#define GPT_MAX_LAYERS (1 << 16)
#define GPT_MAX_D_MODEL (1 << 20)
#define GPT_MAX_D_FF (4 << 20)   // the default F (4*C) of the widest allowed model
#define GPT_MAX_SEQ_LEN (1 << 24)
#define GPT_MAX_PARAMS 1000000000000.0   // 1e12 parameters: 16 TB of fp32 weights, gradients and AdamW moments

int gpt_config_finalize(GPTConfig *cfg, char *err, size_t errlen) {
    if (cfg->n_layer < 1 || cfg->n_layer > GPT_MAX_LAYERS) {
        snprintf(err, errlen, "--n-layer %d: expected 1..%d", cfg->n_layer, GPT_MAX_LAYERS);
        return -1;
    }
    if (cfg->d_model < 1 || cfg->d_model > GPT_MAX_D_MODEL) {
        snprintf(err, errlen, "--d-model %d: expected 1..%d", cfg->d_model, GPT_MAX_D_MODEL);
        return -1;
    }
    if (cfg->n_head < 1) { snprintf(err, errlen, "--n-head %d: expected at least 1", cfg->n_head); return -1; }
    if (cfg->d_model % cfg->n_head != 0) {
        snprintf(err, errlen, "--d-model %d is not divisible by --n-head %d: expected d_model = n_head * head size",
                 cfg->d_model, cfg->n_head);
        return -1;
    }
    if (cfg->d_ff == 0) cfg->d_ff = 4 * cfg->d_model;
    if (cfg->d_ff < 1 || cfg->d_ff > GPT_MAX_D_FF) {
        snprintf(err, errlen, "--d-ff %d: expected 1..%d (0 means 4*d_model)", cfg->d_ff, GPT_MAX_D_FF);
        return -1;
    }
    if (cfg->max_seq_len < 1 || cfg->max_seq_len > GPT_MAX_SEQ_LEN) {
        snprintf(err, errlen, "--max-seq-len %d: expected 1..%d", cfg->max_seq_len, GPT_MAX_SEQ_LEN);
        return -1;
    }
    if (cfg->vocab_size < 1 || cfg->vocab_size > 65536) {
        snprintf(err, errlen, "vocabulary size %d: expected 1..65536 (tokens are stored as uint16)", cfg->vocab_size);
        return -1;
    }
    cfg->padded_vocab = (cfg->vocab_size + GPT_VOCAB_PAD - 1) / GPT_VOCAB_PAD * GPT_VOCAB_PAD;
    const size_t np = gpt_param_count(cfg);
    if ((double)np > GPT_MAX_PARAMS) {
        snprintf(err, errlen, "a model of %.4g parameters (L=%d C=%d F=%d maxT=%d): expected at most %.0e (check "
                 "--n-layer, --d-model, --d-ff and --max-seq-len)", (double)np, cfg->n_layer, cfg->d_model,
                 cfg->d_ff, cfg->max_seq_len, GPT_MAX_PARAMS);
        return -1;
    }
    return 0;
}

const char *gpt_recompute_name(RecomputeMode m) {
    return m == RECOMPUTE_FULL ? "full" : m == RECOMPUTE_SELECTIVE ? "selective" : "none";
}

int gpt_recompute_parse(const char *s, RecomputeMode *out) {
    if (!strcmp(s, "none")) *out = RECOMPUTE_NONE;
    else if (!strcmp(s, "selective")) *out = RECOMPUTE_SELECTIVE;
    else if (!strcmp(s, "full")) *out = RECOMPUTE_FULL;
    else return -1;
    return 0;
}

const char *gpt_attention_name(AttentionKind a) { return a == ATTN_FLASH ? "flash" : "naive"; }
