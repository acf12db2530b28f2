/*
 * tokenizer.c: the character-level tokenizer: one token per distinct byte of the corpus, ids in increasing byte
 * order (Tiny Shakespeare: 65 tokens, '\n' first), saved next to the shards as tokenizer.txt so sampling decodes.
 * tokenizer.txt is read as one regular file of at most TOKENIZER_FILE_MAX bytes (a FIFO or device is refused at
 * once instead of blocking).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"

void char_tokenizer_build(CharTokenizer *tok, const uint8_t *text, size_t n) {
    int seen[256] = {0};
    for (size_t i = 0; i < n; i++) seen[text[i]] = 1;
    tok->vocab_size = 0;
    for (int b = 0; b < 256; b++) {
        tok->id_of[b] = -1;
        if (seen[b]) {
            tok->id_of[b] = (int16_t)tok->vocab_size;
            tok->bytes[tok->vocab_size++] = (uint8_t)b;
        }
    }
}

int char_tokenizer_save(const CharTokenizer *tok, const char *path, char *err, size_t errlen) {
    char tmp[4096];
    FILE *f = file_create_tmp(path, tmp, sizeof tmp, err, errlen);
    if (!f) return -1;
    fprintf(f, "gptrain-tokenizer 1\ntype char\nvocab_size %d\nbytes", tok->vocab_size);
    for (int i = 0; i < tok->vocab_size; i++) fprintf(f, " %d", tok->bytes[i]);
    fprintf(f, "\n");
    return file_commit_tmp(f, tmp, path, 1, err, errlen);
}

// Parse the "key value" lines; type and vocab_size are required, bytes only for type char.
static int read_tokenizer_stream(FILE *f, const char *path, char *type, size_t typelen, int *vocab,
                                 CharTokenizer *tok, char *err, size_t errlen) {
    char line[8192];
    int have_magic = 0, nbytes = -1;
    type[0] = 0;
    *vocab = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "gptrain-tokenizer 1", 19)) have_magic = 1;
        else if (!strncmp(line, "type ", 5)) {
            snprintf(type, typelen, "%.63s", line + 5);
            type[strcspn(type, "\r\n")] = 0;
        } else if (!strncmp(line, "vocab_size ", 11)) *vocab = atoi(line + 11);
        else if (!strncmp(line, "bytes", 5) && tok) {
            nbytes = 0;
            char *p = line + 5, *end;
            for (;;) {
                long b = strtol(p, &end, 10);
                if (end == p) break;
                if (b < 0 || b > 255 || nbytes >= 256) { nbytes = -2; break; }
                tok->bytes[nbytes++] = (uint8_t)b;
                p = end;
            }
        }
    }
    if (!have_magic || !type[0] || *vocab < 1) {
        snprintf(err, errlen, "%s: not a gptrain tokenizer file (expected 'gptrain-tokenizer 1', 'type', 'vocab_size')",
                 path);
        return -1;
    }
    if (*vocab > 65536) {
        snprintf(err, errlen, "%s: vocab_size %d, expected at most 65536 (shards store uint16 tokens)", path, *vocab);
        return -1;
    }
    if (strcmp(type, "char") && strcmp(type, "gpt2")) {
        snprintf(err, errlen, "%s: tokenizer type '%s', expected char or gpt2", path, type);
        return -1;
    }
    if (!strcmp(type, "gpt2") && *vocab != GPT2_VOCAB_SIZE) {
        snprintf(err, errlen, "%s: type gpt2 with vocab_size %d, expected %d", path, *vocab, GPT2_VOCAB_SIZE);
        return -1;
    }
    if (tok) {
        if (strcmp(type, "char")) {
            snprintf(err, errlen, "%s: tokenizer type '%s', expected char", path, type);
            return -1;
        }
        if (nbytes != *vocab) {
            snprintf(err, errlen, "%s: 'bytes' lists %d bytes, expected vocab_size %d distinct bytes", path,
                     nbytes < 0 ? 0 : nbytes, *vocab);
            return -1;
        }
        tok->vocab_size = *vocab;
        for (int b = 0; b < 256; b++) tok->id_of[b] = -1;
        for (int i = 0; i < nbytes; i++) {
            if (tok->id_of[tok->bytes[i]] >= 0) {
                snprintf(err, errlen, "%s: byte %d listed twice", path, tok->bytes[i]);
                return -1;
            }
            tok->id_of[tok->bytes[i]] = (int16_t)i;
        }
    }
    return 0;
}

// Read the whole file first: file_read_text opens it non-blocking and refuses anything but a regular file (a FIFO
// in its place would otherwise wait forever for a writer) and anything larger than TOKENIZER_FILE_MAX.
static int read_tokenizer_file(const char *path, char *type, size_t typelen, int *vocab, CharTokenizer *tok,
                               char *err, size_t errlen) {
    char *text = file_read_text(path, TOKENIZER_FILE_MAX, err, errlen);
    if (!text) return -1;
    FILE *f = fmemopen(text, strlen(text), "r");
    if (!f) { snprintf(err, errlen, "%s: out of memory", path); free(text); return -1; }
    int rc = read_tokenizer_stream(f, path, type, typelen, vocab, tok, err, errlen);
    fclose(f);
    free(text);
    return rc;
}

int char_tokenizer_load(CharTokenizer *tok, const char *path, char *err, size_t errlen) {
    char type[64];
    int vocab;
    return read_tokenizer_file(path, type, sizeof type, &vocab, tok, err, errlen);
}

// ---- either tokenizer, by tokenizer.txt's type ----

int tokenizer_load_text(Tokenizer *t, const char *text, const char *what, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    if (!f) { snprintf(err, errlen, "%s: out of memory", what); return -1; }
    char type[64];
    int rc = read_tokenizer_stream(f, what, type, sizeof type, &t->vocab_size, NULL, err, errlen);
    fclose(f);
    if (rc) return -1;
    if (!strcmp(type, "gpt2")) {
        t->is_gpt2 = 1;
        return gpt2_bpe_load(&t->bpe, gpt2_default_dir(), err, errlen);
    }
    f = fmemopen((void *)text, strlen(text), "r");
    if (!f) { snprintf(err, errlen, "%s: out of memory", what); return -1; }
    rc = read_tokenizer_stream(f, what, type, sizeof type, &t->vocab_size, &t->ch, err, errlen);
    fclose(f);
    return rc;
}

int tokenizer_load(Tokenizer *t, const char *path, char *text_out, size_t text_cap, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    char *text = file_read_text(path, TOKENIZER_FILE_MAX, err, errlen);
    if (!text) return -1;
    int rc = -1;
    if (text_out && (size_t)snprintf(text_out, text_cap, "%s", text) >= text_cap)
        snprintf(err, errlen, "%s: too large", path);
    else rc = tokenizer_load_text(t, text, path, err, errlen);
    free(text);
    return rc;
}

int tokenizer_encode(Tokenizer *t, const uint8_t *text, size_t n, uint16_t *out, size_t *nout, char *err,
                     size_t errlen) {
    if (t->is_gpt2) return gpt2_bpe_encode(t->bpe, text, n, out, nout, err, errlen);
    *nout = n;
    return char_tokenizer_encode(&t->ch, text, n, out, err, errlen);
}

int tokenizer_decode(const Tokenizer *t, int id, const uint8_t **bytes) {
    if (t->is_gpt2) return gpt2_bpe_decode(t->bpe, id, bytes);
    if (id < 0 || id >= t->ch.vocab_size) return -1;
    *bytes = &t->ch.bytes[id];
    return 1;
}

void tokenizer_free(Tokenizer *t) {
    if (t->bpe) gpt2_bpe_free(t->bpe);
    memset(t, 0, sizeof *t);
}

int char_tokenizer_encode(const CharTokenizer *tok, const uint8_t *text, size_t n, uint16_t *out, char *err,
                          size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        int id = tok->id_of[text[i]];
        if (id < 0) {
            if (text[i] >= 32 && text[i] < 127)
                snprintf(err, errlen, "character '%c' (byte %d) at offset %zu is not in the vocabulary", text[i],
                         text[i], i);
            else snprintf(err, errlen, "byte %d at offset %zu is not in the vocabulary", text[i], i);
            return -1;
        }
        out[i] = (uint16_t)id;
    }
    return 0;
}

int char_tokenizer_decode(const CharTokenizer *tok, int id) {
    return id >= 0 && id < tok->vocab_size ? tok->bytes[id] : -1;
}

int data_vocab_size(const char *dir, int *vocab_size, char *err, size_t errlen) {
    char path[4096], type[64];
    snprintf(path, sizeof path, "%s/tokenizer.txt", dir);
    return read_tokenizer_file(path, type, sizeof type, vocab_size, NULL, err, errlen);
}
