/*
 * cli.h: gptrain's flags, written once. GPTRAIN_FLAGS is the single table (long flag, type, default, the
 * subcommands that accept it, its help section, the subcommands that require it, help); the Options struct, the parser, the config-file reader, `--help` and the
 * "resolved configuration" printout are all generated from it, so they cannot disagree.
 */
#ifndef GPTRAIN_CLI_H
#define GPTRAIN_CLI_H

#include <stddef.h>
#include <stdio.h>

// Subcommands, as a bit mask for "which commands take this flag".
enum { CMD_PREPARE = 1, CMD_TRAIN = 2, CMD_SAMPLE = 4, CMD_INFO = 8, CMD_EXPORT = 16 };
#define CMD_MODEL (CMD_TRAIN | CMD_INFO)
#define CMD_ALL (CMD_PREPARE | CMD_TRAIN | CMD_SAMPLE | CMD_INFO | CMD_EXPORT)

// Types: F_INT (int), F_AUTO (int, or the word auto, stored as CLI_AUTO), F_NUM (double), F_STR (string), F_CHOICE
// (string from the '|'-separated list in `choices`).
// Help sections, in the order --help prints them (each command shows the ones it has flags in).
typedef enum {
    SEC_GENERAL, SEC_DATA, SEC_MODEL, SEC_BATCH, SEC_OPTIMIZER, SEC_SPEED, SEC_CHECKPOINTS, SEC_LOGGING, SEC_DIST,
    SEC_SAMPLING, NUM_SECTIONS
} FlagSection;

// X(field, "flag", type, "default", commands, "choices" (F_CHOICE; for F_STR the value's name in --help) or NULL,
//   section, commands that require it, "help")
#define GPTRAIN_FLAGS(X)                                                                                           \
    X(config, "config", F_STR, "", CMD_ALL, "FILE", SEC_GENERAL, 0, "file of key=value lines (flag names without --), applied first") \
    /* prepare */                                                                                                  \
    X(input, "input", F_STR, "", CMD_PREPARE, "FILE|DIR", SEC_DATA, CMD_PREPARE, "text file, or a directory whose *.txt files are the documents") \
    X(tokenizer, "tokenizer", F_CHOICE, "char", CMD_PREPARE, "char|gpt2", SEC_DATA, 0, "char: one token per byte value seen; gpt2: OpenAI's GPT-2 BPE (vendored in data/gpt2)") \
    X(val_fraction, "val-fraction", F_NUM, "0.1", CMD_PREPARE, NULL, SEC_DATA, 0, "fraction of tokens, taken from the end, for validation (0: no val split)") \
    X(shard_tokens, "shard-tokens", F_INT, "100000000", CMD_PREPARE, NULL, SEC_DATA, 0, "tokens per shard file (llm.c uses 1e8)") \
    /* model */                                                                                                    \
    X(preset, "preset", F_STR, "tiny", CMD_MODEL, "NAME", SEC_MODEL, 0, "model preset; the shape flags below override it") \
    X(n_layer, "n-layer", F_INT, "0", CMD_MODEL, NULL, SEC_MODEL, 0, "layers L (0: from the preset)") \
    X(n_head, "n-head", F_INT, "0", CMD_MODEL, NULL, SEC_MODEL, 0, "attention heads NH (0: from the preset)") \
    X(d_model, "d-model", F_INT, "0", CMD_MODEL, NULL, SEC_MODEL, 0, "model width C (0: from the preset)") \
    X(d_ff, "d-ff", F_INT, "0", CMD_MODEL, NULL, SEC_MODEL, 0, "MLP width F (0: the preset's, else 4*C)") \
    X(max_seq_len, "max-seq-len", F_INT, "0", CMD_MODEL, NULL, SEC_MODEL, 0, "position-embedding rows (0: from the preset)") \
    X(vocab_size, "vocab-size", F_INT, "0", CMD_MODEL, NULL, SEC_MODEL, 0, "vocabulary V (0: from --data's tokenizer, else the preset's, else 50257)") \
    X(seq_len, "seq-len", F_INT, "0", CMD_MODEL, NULL, SEC_MODEL, 0, "training sequence length T (0: --max-seq-len)") \
    /* run shape */                                                                                                \
    X(data, "data", F_STR, "", CMD_MODEL, "DIR", SEC_DATA, CMD_TRAIN, "directory written by `gptrain prepare` (train_*.bin, val_*.bin, tokenizer.txt)") \
    X(train_data, "train-data", F_STR, "", CMD_TRAIN, "GLOB", SEC_DATA, CMD_TRAIN, "glob of train shards (instead of --data), e.g. 'fineweb_train_*.bin'") \
    X(val_data, "val-data", F_STR, "", CMD_TRAIN, "GLOB", SEC_DATA, 0, "glob of val shards (with --train-data, or for --data DIR)") \
    X(batch, "batch", F_AUTO, "12", CMD_MODEL, NULL, SEC_BATCH, 0, "micro-batch B (sequences per forward/backward); auto: the largest that fits --memory-gib (or the device) per the planner") \
    X(memory_gib, "memory-gib", F_NUM, "0", CMD_MODEL, NULL, SEC_BATCH, 0, "memory to plan for: --batch auto and info's largest batch (0: the GPU's free memory, or 90% of the host's available memory on the CPU)") \
    X(grad_accum, "grad-accum", F_INT, "1", CMD_TRAIN, NULL, SEC_BATCH, 0, "micro-steps per optimizer step") \
    X(total_batch_tokens, "total-batch-tokens", F_INT, "0", CMD_TRAIN, NULL, SEC_BATCH, 0, "tokens per optimizer step; sets --grad-accum (0: off)") \
    X(steps, "steps", F_INT, "2000", CMD_TRAIN, NULL, SEC_BATCH, 0, "optimizer steps") \
    X(recompute, "recompute", F_CHOICE, "none", CMD_MODEL, "none|selective|full", SEC_SPEED, 0, "activation checkpointing") \
    X(attention, "attention", F_CHOICE, "auto", CMD_MODEL, "auto|flash|naive", SEC_SPEED, 0, "flash: no (B,NH,T,T) buffer, probabilities recomputed in the backward; naive: kept per layer (auto: flash on a GPU with bf16 and a supported head size, naive on the CPU)") \
    X(deterministic, "deterministic", F_CHOICE, "off", CMD_TRAIN, "on|off", SEC_SPEED, 0, "GPU: a fixed summation order where the fast kernels use atomics (flash attention's dQ), so runs repeat bit for bit") \
    X(stochastic_rounding, "stochastic-rounding", F_CHOICE, "on", CMD_TRAIN, "on|off", SEC_SPEED, 0, "--precision bf16: round the bf16 copy of the weights stochastically after each update (unbiased: updates below half a bf16 step still count on average); off: to nearest") \
    /* optimizer and schedule */                                                                                   \
    X(lr, "lr", F_NUM, "1e-3", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "peak learning rate") \
    X(min_lr, "min-lr", F_NUM, "1e-4", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "learning rate at the last step (cosine, linear)") \
    X(warmup_steps, "warmup-steps", F_INT, "100", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "linear warmup steps") \
    X(lr_schedule, "lr-schedule", F_CHOICE, "cosine", CMD_TRAIN, "cosine|linear|constant", SEC_OPTIMIZER, 0, "decay after warmup") \
    X(weight_decay, "weight-decay", F_NUM, "0.1", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "AdamW decoupled weight decay (matrices and embeddings only)") \
    X(beta1, "beta1", F_NUM, "0.9", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "AdamW beta1") \
    X(beta2, "beta2", F_NUM, "0.99", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "AdamW beta2") \
    X(eps, "eps", F_NUM, "1e-8", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "AdamW epsilon") \
    X(grad_clip, "grad-clip", F_NUM, "1.0", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "clip the global gradient norm to this (0: off)") \
    X(dropout, "dropout", F_NUM, "0", CMD_TRAIN, NULL, SEC_MODEL, 0, "dropout probability in training, at nanoGPT's sites: after the embeddings, on the attention probabilities (naive attention), after the attention projection and after the MLP; 0: off") \
    X(comm_overlap, "comm-overlap", F_CHOICE, "on", CMD_TRAIN, "on|off", SEC_DIST, 0, "all-reduce each layer's gradients as soon as its backward is done (on), or all at once after it") \
    X(bucket_mb, "bucket-mb", F_NUM, "25", CMD_TRAIN | CMD_INFO, NULL, SEC_DIST, 0, "GPU ranks (NCCL) with --comm-overlap on: gradients go out in buckets of at least this many MiB as the backward finishes them (a layer per bucket when a layer is larger)") \
    X(zero, "zero", F_INT, "0", CMD_TRAIN | CMD_INFO, NULL, SEC_DIST, 0, "ZeRO stage: 0 (all-reduce), 1 (reduce-scatter gradients, shard AdamW, all-gather weights)") \
    X(nan_policy, "nan-policy", F_CHOICE, "stop", CMD_TRAIN, "stop|skip", SEC_OPTIMIZER, 0, "on a NaN/Inf loss or gradient: stop the run, or skip the update") \
    X(max_skipped, "max-skipped", F_INT, "10", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "with --nan-policy skip: stop as diverged (exit 3) once more than this many updates were skipped (0: no limit)") \
    X(loss_scale, "loss-scale", F_STR, "auto", CMD_TRAIN, "auto|off|dynamic|S", SEC_OPTIMIZER, 0, "multiply the loss gradient by a power of two S and divide the update by it: auto (dynamic with --precision fp16, else off), off, dynamic, or a fixed power of two") \
    X(loss_scale_init, "loss-scale-init", F_NUM, "65536", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "dynamic loss scaling: the first S (a power of two); halved on every overflow (the update skipped)") \
    X(loss_scale_window, "loss-scale-window", F_INT, "2000", CMD_TRAIN, NULL, SEC_OPTIMIZER, 0, "dynamic loss scaling: S doubles after this many updates without an overflow") \
    /* data order, evaluation, output */                                                                           \
    X(seed, "seed", F_INT, "1337", CMD_TRAIN | CMD_SAMPLE, NULL, SEC_GENERAL, 0, "random seed (weights, data order, sampling)") \
    X(shuffle, "shuffle", F_CHOICE, "on", CMD_TRAIN, "on|off", SEC_DATA, 0, "random windows, or llm.c's sequential order") \
    X(eval_every, "eval-every", F_INT, "250", CMD_TRAIN, NULL, SEC_LOGGING, 0, "validation loss every N steps and at the end (0: only at the end, -1: never)") \
    X(eval_steps, "eval-steps", F_INT, "0", CMD_TRAIN, NULL, SEC_LOGGING, 0, "validation batches per evaluation (0: the whole split)") \
    X(log, "log", F_STR, "", CMD_TRAIN, "FILE", SEC_LOGGING, 0, "JSONL metrics file, one object per step") \
    X(print_every, "print-every", F_INT, "0", CMD_TRAIN, NULL, SEC_LOGGING, 0, "print a metrics row every N steps (0: every step up to 100 steps, else every 1% of the run and at least every 10 s; the log has every step)") \
    X(verbose, "verbose", F_CHOICE, "off", CMD_TRAIN, "on|off", SEC_LOGGING, 0, "on: print the whole resolved configuration before the run (always written to OUT/config.txt)") \
    X(out, "out", F_STR, "", CMD_PREPARE | CMD_TRAIN | CMD_EXPORT, "PATH", SEC_LOGGING, CMD_PREPARE | CMD_EXPORT, "prepare: the shards' directory; train: model.bin's directory (default 'out'); export: the file") \
    /* checkpoints */                                                                                              \
    X(checkpoint_dir, "checkpoint-dir", F_STR, "", CMD_TRAIN, "DIR", SEC_CHECKPOINTS, 0, "checkpoint directory (default OUT/checkpoints)") \
    X(checkpoint_every, "checkpoint-every", F_INT, "0", CMD_TRAIN, NULL, SEC_CHECKPOINTS, 0, "write a checkpoint every N steps and at the end (0: only on SIGINT/SIGTERM and --stop-at-step)") \
    X(keep_last, "keep-last", F_INT, "3", CMD_TRAIN, NULL, SEC_CHECKPOINTS, 0, "keep the newest K checkpoints (0: all)") \
    X(resume, "resume", F_STR, "", CMD_TRAIN, "auto|PATH", SEC_CHECKPOINTS, 0, "auto (newest in --checkpoint-dir, or start fresh) or a checkpoint PATH") \
    X(stop_at_step, "stop-at-step", F_INT, "0", CMD_TRAIN, NULL, SEC_CHECKPOINTS, 0, "stop after this step with a checkpoint, as a time-limited job (0: run --steps)") \
    X(init_from, "init-from", F_STR, "", CMD_TRAIN, "FILE", SEC_MODEL, 0, "initial weights from an llm.c model file (v3 fp32 or v5 bf16); sets the model shape") \
    /* machine */                                                                                                  \
    X(device, "device", F_CHOICE, "auto", CMD_TRAIN | CMD_SAMPLE | CMD_INFO | CMD_EXPORT, "auto|cpu|cuda", SEC_SPEED, 0, "where to run") \
    X(precision, "precision", F_CHOICE, "auto", CMD_TRAIN | CMD_SAMPLE | CMD_INFO | CMD_EXPORT, "auto|fp32|tf32|bf16|fp16", SEC_SPEED, 0, "auto: bf16 on a GPU, fp32 on the CPU. CUDA: bf16 = mixed precision (bf16 weights copy, activations and activation gradients, bf16 tensor cores; fp32 master weights, gradients, AdamW, statistics and losses); fp32, tf32, fp16: fp32 storage with exact, TF32 or fp16 tensor-core matmuls (fp32 accumulation)") \
    X(grad_dtype, "grad-dtype", F_CHOICE, "fp32", CMD_TRAIN | CMD_INFO, "fp32|bf16", SEC_SPEED, 0, "the parameter gradients' storage: fp32, or bf16 with --precision bf16 (16 instead of 18 bytes per parameter, half the all-reduce bytes; every accumulation rounds to bf16: an A/B option)") \
    X(self_check, "self-check", F_CHOICE, "on", CMD_TRAIN, "on|off", SEC_SPEED, 0, "on a GPU: before the first step, every op the run uses against the CPU reference on small random inputs (refuses to train on a disagreement, naming the op); off: skip it") \
    X(cpu_affinity, "cpu-affinity", F_CHOICE, "on", CMD_TRAIN, "on|off", SEC_SPEED, 0, "on a GPU: bind this rank's threads to the CPU cores nearest its GPU (sysfs), within what the launcher allowed, and print the choice; off: leave them to the launcher") \
    X(threads, "threads", F_INT, "0", CMD_TRAIN | CMD_SAMPLE | CMD_INFO | CMD_EXPORT, NULL, SEC_SPEED, 0, "CPU threads (0: all cores)") \
    X(cpu_kernels, "cpu-kernels", F_CHOICE, "blas", CMD_TRAIN | CMD_SAMPLE, "blas|reference", SEC_SPEED, 0, "CPU matmuls on OpenBLAS, or the plain OpenMP reference loops") \
    X(profile, "profile", F_INT, "0", CMD_TRAIN, NULL, SEC_SPEED, 0, "after this step, print its per-op table: time, FLOPs, bytes, TFLOPS, GB/s, percent of the roofline bound (0: off)") \
    X(bandwidth_gbs, "bandwidth-gbs", F_NUM, "0", CMD_TRAIN | CMD_INFO, NULL, SEC_SPEED, 0, "memory bandwidth for the roofline (0: train measures it when --profile is on; info assumes an H100 SXM's 3350)") \
    X(peak_tflops, "peak-tflops", F_NUM, "0", CMD_TRAIN | CMD_INFO, NULL, SEC_SPEED, 0, "peak FLOPS for MFU/HFU (0: train measures a GEMM at start-up or reads the GPU's datasheet; info assumes an H100 SXM's bf16 989)") \
    /* scaling on paper (info) */                                                                                 \
    X(gpus, "gpus", F_INT, "1", CMD_INFO, NULL, SEC_DIST, 0, "data-parallel ranks to plan for: memory per rank and all-reduce cost") \
    X(link, "link", F_CHOICE, "nvlink", CMD_INFO, "nvlink|ib|pcie|eth", SEC_DIST, 0, "interconnect for the all-reduce estimate (bandwidths in README)") \
    X(backward_ms, "backward-ms", F_NUM, "0", CMD_INFO, NULL, SEC_DIST, 0, "measured backward time per step (a run's bwd_ms); 0: estimate from FLOPs at 40% of --peak-tflops") \
    /* sample */                                                                                                   \
    X(from, "from", F_STR, "out", CMD_SAMPLE | CMD_EXPORT, "DIR", SEC_SAMPLING, 0, "directory of a finished run (model.bin, tokenizer.txt)") \
    X(checkpoint, "checkpoint", F_STR, "", CMD_SAMPLE | CMD_EXPORT, "FILE", SEC_SAMPLING, 0, "a gptrain checkpoint or an llm.c model file (instead of --from)") \
    X(dtype, "dtype", F_CHOICE, "fp32", CMD_EXPORT, "fp32|bf16", SEC_SAMPLING, 0, "llm.c model file version: fp32 (3) or bf16 (5)") \
    X(prompt, "prompt", F_STR, "\n", CMD_SAMPLE, "TEXT", SEC_SAMPLING, 0, "text to continue") \
    X(tokens, "tokens", F_INT, "200", CMD_SAMPLE, NULL, SEC_SAMPLING, 0, "tokens to generate") \
    X(temperature, "temperature", F_NUM, "1.0", CMD_SAMPLE, NULL, SEC_SAMPLING, 0, "softmax temperature (> 0)") \
    X(top_k, "top-k", F_INT, "0", CMD_SAMPLE, NULL, SEC_SAMPLING, 0, "sample among the k most likely tokens (0: all)")

typedef enum { F_INT, F_AUTO, F_NUM, F_STR, F_CHOICE } FlagType;
#define CLI_AUTO (-1)

#define CLI_CTYPE_F_INT int
#define CLI_CTYPE_F_AUTO int
#define CLI_CTYPE_F_NUM double
#define CLI_CTYPE_F_STR const char *
#define CLI_CTYPE_F_CHOICE const char *

typedef struct Options {
#define CLI_FIELD(field, flag, type, def, cmds, choices, section, required, help) CLI_CTYPE_##type field;
    GPTRAIN_FLAGS(CLI_FIELD)
#undef CLI_FIELD
    unsigned char given[128]; // given[i]: flag i was set by the user (file or command line)
} Options;

// Parse argv (after the subcommand) for command `cmd`: defaults, then --config FILE, then the command line.
// Returns 0, 1 when --help was printed, or -1 with one line in err naming the flag or file.
int cli_parse(Options *o, int cmd, int argc, char **argv, char *err, size_t errlen);
// Was this flag set by the user? (by field name, e.g. cli_given(o, "grad_accum"))
int cli_given(const Options *o, const char *field);
// Print text wrapped to lines of at most CLI_HELP_WIDTH columns, each after `indent` spaces (the first after the
// `first` columns already written on it), and a newline: the help of every subcommand.
#define CLI_HELP_WIDTH 99
void cli_print_wrapped(FILE *f, const char *text, int indent, int first);
// Print `--help` for a command: its synopsis, an example, and its flags under their sections.
void cli_print_help(FILE *f, int cmd, const char *cmd_name);
// Print the resolved options of a command as config-file lines ("key = value"), reusable with --config.
void cli_print_resolved(FILE *f, const Options *o, int cmd);
const char *cli_cmd_name(int cmd);

#endif
