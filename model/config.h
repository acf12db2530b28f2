/*
 * config.h: a GPT-2 model's shape (GPTConfig), its named presets and their checks, and the two run choices the plan
 * depends on: the recompute mode and the attention kind. model/config.c implements it.
 */
#ifndef GPTRAIN_CONFIG_H
#define GPTRAIN_CONFIG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPT_VOCAB_PAD 128  // Vp = round_up(V, 128): matmul-friendly rows for the LM head

typedef struct GPTConfig {
    int n_layer;      // L
    int n_head;       // NH
    int d_model;      // C
    int d_ff;         // F (0 means 4*C until gpt_config_finalize)
    int vocab_size;   // V (real tokens)
    int padded_vocab; // Vp (set by gpt_config_finalize)
    int max_seq_len;  // rows of the position embedding
} GPTConfig;

// Named presets: gpt2-124m gpt2-350m gpt2-774m gpt2-1.5b small medium large xl 2.7b tiny tiny-shakespeare ...
// Fills the shape fields; vocab_size is set to GPT-2's 50257 for the GPT-2 and benchmark presets and left 0 for the
// tiny ones (the dataset's tokenizer decides). Returns 0, or -1 for an unknown name.
int gpt_config_preset(GPTConfig *cfg, const char *name);
// Comma-separated list of preset names, for --help and error messages.
const char *gpt_config_preset_names(void);
// Check the configuration (positive sizes under caps that keep every derived size in range, C % NH == 0, at most
// 1e12 parameters), fill d_ff and padded_vocab. On a user error returns -1 with one line in err naming the flag and
// what was expected.
int gpt_config_finalize(GPTConfig *cfg, char *err, size_t errlen);

typedef enum { RECOMPUTE_NONE = 0, RECOMPUTE_SELECTIVE = 1, RECOMPUTE_FULL = 2 } RecomputeMode;
// Attention: naive keeps the (B,NH,T,T) probabilities per layer; flash keeps only each row's logsumexp (B,NH,T) and
// recomputes the probabilities in the backward (ops.h op_flash_attention_*).
typedef enum { ATTN_NAIVE = 0, ATTN_FLASH = 1 } AttentionKind;
const char *gpt_attention_name(AttentionKind a);
const char *gpt_recompute_name(RecomputeMode m);
int gpt_recompute_parse(const char *s, RecomputeMode *out);  // 0 ok, -1 unknown

#ifdef __cplusplus
}
#endif

#endif
