/*
 * checkpoint.h: gptrain's training checkpoint, everything a run needs to continue bit for bit.
 *
 * File (little-endian): a 224-byte CkptHeader, then the payload:
 *   config text (the resolved flags, `key = value` lines, config_bytes), tokenizer.txt's text (tokenizer_bytes),
 *   weights (fp32, num_params, GPT_PARAMS order: the fp32 master copy), AdamW m, AdamW v (fp32, num_params each).
 * The header carries the model shape, the run shape that fixes the data order (B, T, grad_accum, world, shuffle,
 * seed), the step, AdamW's step count, the loader position (batches consumed by this rank), and two 64-bit hashes:
 * one over the payload, one over the header itself. The learning rate is a function of the step and the flags, and
 * the data order a function of the loader position, so no other state exists.
 * Written to a temporary file of its own (PATH.tmp.<pid>.<n>), fsynced, renamed over PATH and the directory fsynced:
 * a crash leaves the previous checkpoint. A checkpoint directory holds one trajectory: every checkpoint carries its
 * run's id (checkpoints of gptrain before run ids have 0 there), --resume auto and --keep-last consider only the
 * trajectory that wrote last, and --resume auto falls back past a corrupt newest checkpoint with a warning.
 */
#ifndef GPTRAIN_CHECKPOINT_H
#define GPTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gpt.h"

#define CKPT_MAGIC "GPTRCKPT"
#define CKPT_VERSION 1

typedef struct CkptHeader {
    char magic[8];
    uint32_t version, header_bytes;
    int32_t n_layer, n_head, d_model, d_ff, vocab_size, padded_vocab, max_seq_len;
    int32_t batch, seq_len, grad_accum, world, shuffle;
    uint64_t seed;
    int64_t step;            // optimizer steps completed
    int64_t adam_t;          // AdamW's bias-correction step count
    uint64_t train_batches;  // micro-batches this rank's train loader has handed out
    int64_t skipped;         // updates skipped (--nan-policy skip)
    double last_val_loss;    // NaN when no evaluation ran yet
    uint64_t num_params;
    uint64_t config_bytes, tokenizer_bytes;
    uint64_t payload_bytes, payload_hash;
    uint64_t run_id;         // the trajectory: drawn at random by a fresh run, kept by the runs that resume it
    int64_t saved_ns;        // wall-clock time of the save (ns since 1970): which trajectory wrote last
    double loss_scale;       // --loss-scale: the scale the next step uses (0: no loss scaling, or an older file)
    int64_t loss_scale_good; // updates since the scale last changed (dynamic scaling)
    int64_t overflow_skips;  // updates skipped for an overflow of the scaled gradients
    uint64_t reserved[3];
    uint64_t header_hash;    // hash of every byte before this field
} CkptHeader;
_Static_assert(sizeof(CkptHeader) == 224, "CkptHeader must have no padding");

// 64-bit hash of a byte stream (four independent multiply-rotate lanes over 8-byte words, then an avalanche), fed
// in pieces of any size; fast enough (~10 GB/s) that hashing a checkpoint costs less than writing it.
typedef struct Hash64 {
    uint64_t lane[4];
    uint8_t buf[32];
    size_t nbuf;
    uint64_t total;
} Hash64;
void hash64_init(Hash64 *h);
void hash64_update(Hash64 *h, const void *data, size_t n);
uint64_t hash64_final(const Hash64 *h);

// Shared by checkpoint.c and checkpoint_state.c: the header's own hash; open PATH and check its header (the FILE
// is left after the header); read n bytes of text (malloc'd, NUL-terminated), feeding them to s when not NULL.
uint64_t ckpt_header_hash(const CkptHeader *h);
FILE *ckpt_open_checked(const char *path, CkptHeader *h, char *err, size_t errlen);
char *ckpt_read_text(FILE *f, uint64_t n, Hash64 *s);

// Save g's weights and AdamW moments with the header fields the caller filled (run shape and progress; the model
// shape, sizes and hashes are filled here). config_text and tokenizer_text are NUL-terminated.
int ckpt_save(const char *path, const GPT *g, CkptHeader *h, const char *config_text, const char *tokenizer_text,
              char *err, size_t errlen);
// Check a header read from a file of file_size bytes: magic, version, header hash, sizes that add up to the file.
int ckpt_check_header(const char *path, const CkptHeader *h, long long file_size, char *err, size_t errlen);
// Read and check the header and the two texts (malloc'd, NUL-terminated; caller frees). The payload hash is not
// checked here (ckpt_load does it).
int ckpt_read_meta(const char *path, CkptHeader *h, char **config_text, char **tokenizer_text, char *err,
                   size_t errlen);
// Load the weights (and, when with_optimizer, AdamW's m and v) into g, whose shape must match the header; verifies
// the payload hash over the whole file before returning 0.
int ckpt_load(const char *path, GPT *g, int with_optimizer, char *err, size_t errlen);
// Read the whole payload and check its hash (what ckpt_load checks, without a model): 0, or -1 with err.
int ckpt_verify(const char *path, char *err, size_t errlen);
// What --resume auto continues: of DIR's checkpoints, the trajectory that saved last (the newest saved_ns among the
// headers that check), and in it the highest step whose whole file checks. Each newer file passed over (corrupt,
// truncated) is named in a warning on stdout. 0 and its path, 1 when DIR holds none that checks, -1 with err when
// DIR cannot be read.
int ckpt_find_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen);
// DIR/ckpt_%08d.bin for a step.
void ckpt_path_for_step(const char *dir, long step, char *path, size_t pathlen);
// How many DIR/ckpt_<step>.bin there are; *newest gets the path of the highest step (may be NULL).
int ckpt_count(const char *dir, char *newest, size_t n);
// Before a run that continues trajectory run_id from step: -1 with err when DIR holds a checkpoint of another
// trajectory (whose files this run's would mix with). Checkpoints past step that are not this run's future (those
// of the run it branches off from, and corrupt ones) are moved into DIR/abandoned_after_<step>_<time>/, named in
// moved (empty when none), so that DIR keeps one trajectory and this run overwrites nothing.
int ckpt_adopt_dir(const char *dir, uint64_t run_id, long step, char *moved, size_t movedlen, char *err,
                   size_t errlen);
// Delete all but the newest `keep` checkpoints of trajectory run_id in DIR (keep <= 0: keep all); checkpoints of
// other trajectories and unreadable files are left alone.
void ckpt_prune(const char *dir, int keep, uint64_t run_id);
// A fresh trajectory id (random, never 0).
uint64_t ckpt_new_run_id(void);

#endif
