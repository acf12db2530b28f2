/*
 * gptrain.h: what the subcommands of the gptrain program share: config resolution from the flags, the model file,
 * the peak-FLOPS measurement, and the user-error exit. train/ is the program; it owns no math.
 */
#ifndef GPTRAIN_PROGRAM_H
#define GPTRAIN_PROGRAM_H

#include <stdint.h>

#include "backend.h"
#include "cli.h"
#include "gpt.h"

// Exit statuses: 2 for a user error (bad flag, bad file), 3 for a run that diverged (NaN/Inf with --nan-policy stop).
#define EXIT_USER 2
#define EXIT_DIVERGED 3

// Print "gptrain: error: <message>" on one line to stderr and exit 2.
void die_user(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

// "gptrain VERSION (commit C): OpenBLAS yes, MPI ..., CUDA ..., NCCL ...; COMPILER": --version and the first line
// of every run (train/version.c).
const char *gptrain_version(void);

int cmd_prepare(Options *o);
int cmd_train(Options *o);
int cmd_sample(Options *o);
int cmd_info(Options *o);
int cmd_export(Options *o);
// The performance lab (lab.c): own flags plus train flags passed through; argv excludes the subcommand.
int cmd_ab(int argc, char **argv);
int cmd_bench(int argc, char **argv);

// Model shape from --preset and the shape flags; V from --vocab-size, else --data's tokenizer, else the preset,
// else `fallback_vocab` (0: error). *T gets --seq-len (or max_seq_len). Exits with a user error on a bad combination.
void resolve_model(Options *o, GPTConfig *cfg, int *T, int fallback_vocab);
// Backend for --device / --cpu-kernels / --threads / --precision (auto: bf16 tensor cores on a GPU, fp32 on the CPU;
// written back into o); exits with a user error when the device is not available.
// The backend --device, --precision and --cpu-kernels ask for; on a GPU, the device of index gpu (a rank's local rank:
// Dist.local_rank, the one source of it; 0 for a single process).
void resolve_backend(Options *o, Backend *be, int gpu);
// The compute dtype --precision (resolved by resolve_backend, or on paper for --device as `info` does: auto is bf16
// on --device cuda) stores activations and the weights' working copy in: bf16 for bf16, else fp32.
DType resolve_dtype(Options *o);
// The GPU matmuls' mode for the resolved --precision (backend_cuda_init's: 0 fp32, 1 TF32, 2 bf16, 3 fp16).
int resolve_matmul_mode(const Options *o);
// The parameter gradients' dtype, --grad-dtype: bf16 only over a bf16 compute dtype (a user error otherwise).
DType resolve_grad_dtype(Options *o);
// --attention for this model on this backend (be NULL: plan for --device, as `info` does): auto is flash on a GPU
// with bf16 matmuls and a head size the kernels take, else naive; flash on a GPU with another head size is a user
// error. Writes the choice back into o. Also applies --deterministic to be (when be is given).
AttentionKind resolve_attention(Options *o, Backend *be, const GPTConfig *cfg);
// Bytes of memory to plan for: --memory-gib when given, else the GPU's free memory (be a CUDA backend), else 90% of
// the host's MemAvailable. *what names the source for messages.
double memory_cap_bytes(const Options *o, Backend *be, const char **what);
// --batch auto: the planner's largest micro-batch for this model, T, recompute, attention and precision within
// memory_cap_bytes, written back into o->batch with a line saying why. A user error when not even B = 1 fits.
// shards > 1: one rank of a ZeRO-1 group of that many (its shards of the optimizer state leave room for more).
int resolve_batch_auto(Options *o, Backend *be, const GPTConfig *cfg, int T, RecomputeMode rc, AttentionKind attn,
                       int shards);

// llm.c model file (magic 20240326, version 3: fp32): int32 header[256] = {magic, 3, maxT, V, L, NH, C, Vp, F, TOK,
// 0...} then every parameter in GPT_PARAMS order. Our additions, which llm.c's readers ignore: F in header[8] (llm.c
// leaves it 0 and assumes 4*C) and in header[9] the id of the tokenizer the model was trained with
// (modelfile_tokenizer_id of its tokenizer.txt text; 0: unknown, as in llm.c's files), so that a model is never
// decoded with another run's tokenizer.txt. Written atomically (a temporary file, fsync, rename).
int modelfile_save(const GPT *g, const char *path, uint32_t tok_id, char *err, size_t errlen);
// The same as version 3 (fp32) or, with bf16, version 5 (bf16 weights, round to nearest even).
int modelfile_save_as(const GPT *g, const char *path, int bf16, uint32_t tok_id, char *err, size_t errlen);
// The same from np weights in host memory (modelfile_save_as gathers them first: a collective for a sharded model).
int modelfile_save_weights(const GPTConfig *c, const float *w, size_t np, const char *path, int bf16, uint32_t tok_id,
                           char *err, size_t errlen);
// The tokenizer id of a tokenizer.txt text (never 0).
uint32_t modelfile_tokenizer_id(const char *tokenizer_text);
// Read the header only (to size the model; *tok_id, when not NULL, gets header[9]), then the weights into a created
// model.
int modelfile_read_config(const char *path, GPTConfig *cfg, uint32_t *tok_id, char *err, size_t errlen);
int modelfile_load_weights(GPT *g, const char *path, char *err, size_t errlen);

// Peak matmul throughput of this machine in TFLOPS: the best of a few square GEMMs through the fastest CPU matmul
// built in (OpenBLAS when present, whatever --cpu-kernels says).
double measure_peak_tflops(Backend *be);

// Atomically copy a small file (tokenizer.txt next to the model).
int copy_file_atomic(const char *src, const char *dst, char *err, size_t errlen);
// mkdir -p; 0 or -1 with err naming the flag and path.
int make_dirs(const char *path, const char *flag, char *err, size_t errlen);

#endif
