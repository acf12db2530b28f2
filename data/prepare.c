/*
 * prepare.c: `gptrain prepare`: a text file -> DIR/train_000000.bin, DIR/val_000000.bin (llm.c shards) and
 * DIR/tokenizer.txt. The first floor((1 - val_fraction) * n) tokens are the train split, the rest validation, as
 * nanoGPT splits Tiny Shakespeare. Every check on the flags and the input runs before the first file is written, and
 * the three outputs replace a previous set together: each is first written whole (atomically) as PATH.new, and only
 * when all three are on disk are they renamed into place, so a failure part way (a full disk) never pairs new shards
 * with an old tokenizer.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

enum { OUT_TRAIN, OUT_VAL, OUT_TOKENIZER, OUT_COUNT };
static const char *const OUT_NAMES[OUT_COUNT] = {"train_000000.bin", "val_000000.bin", "tokenizer.txt"};

// Read the whole input. -1 with err naming --input when it is missing, not a regular file, unreadable or empty.
static int read_input(const char *path, uint8_t **text, size_t *n, char *err, size_t errlen) {
    *text = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "--input %s: cannot open (%s)", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "--input %s: not a regular file, expected a text file", path);
        fclose(f);
        return -1;
    }
    if (st.st_size == 0) {
        snprintf(err, errlen, "--input %s: the file is empty, expected text to tokenize", path);
        fclose(f);
        return -1;
    }
    const size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size);
    if (!buf) { snprintf(err, errlen, "--input %s: out of memory for %zu bytes", path, size); fclose(f); return -1; }
    if (fread(buf, 1, size, f) != size) {
        snprintf(err, errlen, "--input %s: read failed (%s)", path, ferror(f) ? strerror(errno) : "file shrank");
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *text = buf;
    *n = size;
    return 0;
}

// A final path holding a directory (or anything but a regular file) would only fail at the rename, after another
// output had already been replaced; refuse it before writing anything.
static int check_out_paths(const char *out_dir, char paths[OUT_COUNT][4096], char *err, size_t errlen) {
    for (int i = 0; i < OUT_COUNT; i++) {
        if ((size_t)snprintf(paths[i], 4096, "%s/%s", out_dir, OUT_NAMES[i]) >= 4096 - 8) {
            snprintf(err, errlen, "--out %s: path too long", out_dir);
            return -1;
        }
        struct stat st;
        if (!lstat(paths[i], &st) && !S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "--out %s: %s exists and is not a regular file, expected a file prepare may replace",
                     out_dir, paths[i]);
            return -1;
        }
    }
    if (access(out_dir, W_OK | X_OK)) {
        snprintf(err, errlen, "--out %s: cannot write into it (%s), expected a writable directory", out_dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static void remove_staged(char staged[OUT_COUNT][4096], int from) {
    for (int i = from; i < OUT_COUNT; i++) unlink(staged[i]);
}

// Write the three outputs as PATH.new, then rename them over PATH.
static int write_outputs(char paths[OUT_COUNT][4096], const uint16_t *tokens, size_t ntrain, size_t nval,
                         const CharTokenizer *tok, char *err, size_t errlen) {
    char staged[OUT_COUNT][4096];
    for (int i = 0; i < OUT_COUNT; i++) {
        const int len = snprintf(staged[i], sizeof staged[i], "%s.new", paths[i]);
        assert(len > 0 && (size_t)len < sizeof staged[i]);   // check_out_paths left room for ".new.tmp"
    }
    if (shard_write(staged[OUT_TRAIN], tokens, ntrain, err, errlen) ||
        shard_write(staged[OUT_VAL], tokens + ntrain, nval, err, errlen) ||
        char_tokenizer_save(tok, staged[OUT_TOKENIZER], err, errlen)) {
        remove_staged(staged, 0);
        return -1;
    }
    for (int i = 0; i < OUT_COUNT; i++) {
        if (rename(staged[i], paths[i])) {
            snprintf(err, errlen, "%s: cannot move %s into place (%s)", paths[i], staged[i], strerror(errno));
            remove_staged(staged, i);
            return -1;
        }
    }
    return 0;
}

int data_prepare(const char *input_path, const char *out_dir, const char *tokenizer, double val_fraction, char *err,
                 size_t errlen) {
    if (strcmp(tokenizer, "char") != 0) {
        snprintf(err, errlen, "--tokenizer %s: expected char (GPT-2 BPE arrives with the data issue)", tokenizer);
        return -1;
    }
    if (!(val_fraction > 0 && val_fraction < 1)) {
        snprintf(err, errlen, "--val-fraction %g: expected a fraction strictly between 0 and 1", val_fraction);
        return -1;
    }
    uint8_t *text;
    size_t n;
    if (read_input(input_path, &text, &n, err, errlen)) return -1;
    // The character tokenizer makes one token per byte, so token counts are byte counts. Train is nanoGPT's
    // data[:int(n * 0.9)] for --val-fraction 0.1 (Tiny Shakespeare: 1003854 train, 111540 val).
    const size_t ntrain = (size_t)((double)n * (1.0 - val_fraction)), nval = n - ntrain;
    if (nval == 0 || ntrain == 0) {
        snprintf(err, errlen, "--val-fraction %g: leaves an empty split of the %zu tokens of %s (train %zu, val %zu), "
                 "expected both non-empty", val_fraction, n, input_path, ntrain, nval);
        free(text);
        return -1;
    }
    CharTokenizer tok;
    char_tokenizer_build(&tok, text, n);
    uint16_t *tokens = malloc(n * sizeof(uint16_t));
    char paths[OUT_COUNT][4096];
    int rc = -1;
    if (!tokens) snprintf(err, errlen, "--input %s: out of memory for %zu tokens", input_path, n);
    // Encoding cannot fail over the text the vocabulary was built from; the check stays for the invariant.
    else if (!char_tokenizer_encode(&tok, text, n, tokens, err, errlen) &&
             !file_mkdirs(out_dir, "--out", err, errlen) && !check_out_paths(out_dir, paths, err, errlen) &&
             !write_outputs(paths, tokens, ntrain, nval, &tok, err, errlen)) {
        printf("prepare: %s: %zu bytes, vocab %d (char); train %zu tokens -> %s, val %zu tokens -> %s\n", input_path, n,
               tok.vocab_size, ntrain, paths[OUT_TRAIN], nval, paths[OUT_VAL]);
        rc = 0;
    }
    free(text);
    free(tokens);
    return rc;
}
