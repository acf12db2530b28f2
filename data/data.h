/*
 * data.h: text to token shards and back. The character-level tokenizer, llm.c's shard format, `gptrain prepare`, and
 * the batch loader the trainer reads from. Knows nothing of the model.
 *
 * Files `prepare` writes into its --out DIR:
 *   train_000000.bin, val_000000.bin   llm.c shards: int32 header[256] = {20240520 (magic), 1 (version), ntok, 0...},
 *                                      then ntok uint16 tokens, little-endian
 *   tokenizer.txt                      "gptrain-tokenizer 1" / "type char" / "vocab_size V" / "bytes b0 b1 ..." lines;
 *                                      token i decodes to byte b_i
 * Error convention: functions that can fail on user input return -1 and write one line into err naming the file
 * and what was expected (the caller prints it and exits 2); internal bugs abort.
 */
#ifndef GPTRAIN_DATA_H
#define GPTRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256

// ---- character tokenizer: one token per distinct byte of the corpus, ids in increasing byte order ----
typedef struct CharTokenizer {
    int vocab_size;
    uint8_t bytes[256];     // token id -> byte
    int16_t id_of[256];     // byte -> token id, -1 when the byte is not in the vocabulary
} CharTokenizer;

void char_tokenizer_build(CharTokenizer *tok, const uint8_t *text, size_t n);
int char_tokenizer_save(const CharTokenizer *tok, const char *path, char *err, size_t errlen);   // atomic write
int char_tokenizer_load(CharTokenizer *tok, const char *path, char *err, size_t errlen);
// Encode n bytes; returns 0, or -1 with err naming the first byte not in the vocabulary (and its offset).
int char_tokenizer_encode(const CharTokenizer *tok, const uint8_t *text, size_t n, uint16_t *out,
                          char *err, size_t errlen);
// Decode one token to its byte; -1 for an id outside the vocabulary.
int char_tokenizer_decode(const CharTokenizer *tok, int id);

// ---- files (fileio.c) ----
// Atomic replacement of PATH: open PATH.tmp (tmp receives its name), write, then file_commit_tmp(ok = every write
// succeeded) fsyncs, closes and renames it over PATH, or removes it and reports. -1 with err on failure.
FILE *file_create_tmp(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen);
int file_commit_tmp(FILE *f, const char *tmp, const char *path, int ok, char *err, size_t errlen);
// mkdir -p PATH; errors name the flag that gave the path ("--out").
int file_mkdirs(const char *path, const char *flag, char *err, size_t errlen);

// ---- shards ----
// Write atomically: PATH.tmp, fsync, rename over PATH. Never leaves a partial PATH.
int shard_write(const char *path, const uint16_t *tokens, size_t ntok, char *err, size_t errlen);
// Read a whole shard (malloc'd *tokens, caller frees). Checks: file exists and is readable, header magic and
// version, file size == 1024 + 2*ntok (truncated or trailing bytes refused), every token < vocab_size
// (vocab_size <= 0 skips that check).
int shard_read(const char *path, uint16_t **tokens, size_t *ntok, int vocab_size, char *err, size_t errlen);

// ---- prepare: text file -> DIR/{train_000000.bin, val_000000.bin, tokenizer.txt} ----
// tokenizer: "char" (the only one in this issue; anything else is an error naming --tokenizer).
// The first (1 - val_fraction) of the tokens is train, the rest val (both must be non-empty). Creates DIR.
// Prints one summary line to stdout (tokens per split, vocab size).
int data_prepare(const char *input_path, const char *out_dir, const char *tokenizer, double val_fraction,
                 char *err, size_t errlen);

// Read DIR/tokenizer.txt's vocab_size (any tokenizer type). Returns 0 or -1 with err.
int data_vocab_size(const char *dir, int *vocab_size, char *err, size_t errlen);

// ---- loader ----
// Reads (B, T+1) windows: inputs[b][t] = tok[s_b + t], targets[b][t] = tok[s_b + t + 1].
//   shuffle off (llm.c order): one contiguous stretch per batch; batch k of rank r covers tokens
//     [p, p + B*T + 1) with p = (k*world + r)*B*T, and when the next batch would run past the end the position
//     returns to r*B*T (llm.c's DataLoader reset);
//   shuffle on: epochs of non-overlapping windows: each epoch draws an offset in [0, T) (narrower on a split shorter
//     than (world+1)*T, so every rank still gets a window) and a permutation of the
//     windows [offset + i*T, offset + (i+1)*T + 1), from a generator seeded by seed, so every token is read once per
//     epoch and runs are deterministic for a seed; rank r of world takes every world-th window of the permutation.
typedef struct DataLoader {
    uint16_t *tokens;   // the split, all shards concatenated in file-name order
    size_t ntok;
    int B, T, rank, world, shuffle;
    uint64_t seed;
    uint64_t rng;       // generator state (shuffle on)
    size_t pos;         // next start (shuffle off); next index into perm (shuffle on)
    size_t batches;     // batches served since open/reset
    uint32_t *perm;     // shuffle on: this epoch's order of the windows (allocated at open)
    size_t nwin;        // windows in perm
    size_t offset;      // this epoch's start offset in [0, T)
    uint64_t epoch;
} DataLoader;

// split: "train" or "val"; reads every DIR/<split>_*.bin in name order. Errors: no shard found, a bad shard (see
// shard_read), fewer than B*T+1 tokens (names --batch/--seq-len and the count).
int data_loader_open(DataLoader *dl, const char *dir, const char *split, int B, int T, int rank, int world,
                     int shuffle, uint64_t seed, int vocab_size, char *err, size_t errlen);
// Fill inputs and targets (each B*T int32).
void data_loader_next(DataLoader *dl, int32_t *inputs, int32_t *targets);
// Back to the state right after open (same seed, same first batch).
void data_loader_reset(DataLoader *dl);
void data_loader_close(DataLoader *dl);

#ifdef __cplusplus
}
#endif

#endif
