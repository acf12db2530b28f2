/*
 * prepare.c: `gptrain prepare`: a text file -> DIR/train_000000.bin, DIR/val_000000.bin (llm.c shards) and
 * DIR/tokenizer.txt. The first (1 - val_fraction) of the tokens is the train split, the rest validation, as nanoGPT
 * splits Tiny Shakespeare. Every check runs before the first file is written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"

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
    FILE *f = fopen(input_path, "rb");
    if (!f) { snprintf(err, errlen, "--input %s: cannot open (%s)", input_path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "--input %s: expected a regular text file", input_path);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *text = malloc(n + 1);
    uint16_t *tokens = malloc((n + 1) * sizeof(uint16_t));
    if (!text || !tokens || fread(text, 1, n, f) != n) {
        snprintf(err, errlen, "--input %s: read failed", input_path);
        fclose(f);
        free(text);
        free(tokens);
        return -1;
    }
    fclose(f);
    int rc = -1;
    size_t nval = (size_t)((double)n * val_fraction + 0.5), ntrain = n - nval;
    if (n == 0) snprintf(err, errlen, "--input %s: the file is empty", input_path);
    else if (nval == 0 || ntrain == 0)
        snprintf(err, errlen, "--val-fraction %g: leaves an empty split of %zu tokens (train %zu, val %zu)",
                 val_fraction, n, ntrain, nval);
    else {
        CharTokenizer tok;
        char_tokenizer_build(&tok, text, n);
        char path[4096];
        if (!char_tokenizer_encode(&tok, text, n, tokens, err, errlen) && !file_mkdirs(out_dir, "--out", err, errlen)) {
            snprintf(path, sizeof path, "%s/train_000000.bin", out_dir);
            if (!shard_write(path, tokens, ntrain, err, errlen)) {
                snprintf(path, sizeof path, "%s/val_000000.bin", out_dir);
                if (!shard_write(path, tokens + ntrain, nval, err, errlen)) {
                    snprintf(path, sizeof path, "%s/tokenizer.txt", out_dir);
                    if (!char_tokenizer_save(&tok, path, err, errlen)) {
                        printf("prepare: %s: %zu bytes, vocabulary %d (char); train %zu tokens -> "
                               "%s/train_000000.bin, val %zu tokens -> %s/val_000000.bin\n",
                               input_path, n, tok.vocab_size, ntrain, out_dir, nval, out_dir);
                        rc = 0;
                    }
                }
            }
        }
    }
    free(text);
    free(tokens);
    return rc;
}
