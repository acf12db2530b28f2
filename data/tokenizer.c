/*
 * tokenizer.c: the character-level tokenizer: one token per distinct byte of the corpus, ids in increasing byte
 * order (Tiny Shakespeare: 65 tokens, '\n' first), saved next to the shards as tokenizer.txt so sampling decodes.
 * tokenizer.txt is read as one regular file of at most TOKENIZER_FILE_MAX bytes (a FIFO or device is refused at
 * once instead of blocking) and parsed strictly, line by line: a value that is not exactly what the format says is
 * refused naming the file and the line, never taken for its leading digits.
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

// The "key value" lines of a tokenizer file, parsed strictly: the first line is exactly "gptrain-tokenizer 1", then
// one each of "type NAME", "vocab_size V" (a decimal integer, 1 to 65536), and for type char "bytes b0 b1 ..."
// (decimals 0 to 255); blank lines are skipped, a trailing '\r' is dropped, and anything else is refused naming its
// line, so a damaged file ("vocab_size 65abc") is never half read.
typedef struct TokFields {
    char type[64];
    int vocab;
    int nbytes;             // -1: no bytes line
    uint8_t bytes[256];
} TokFields;

// The decimal integer [s, e) in [lo, hi], or -1 when it is anything else (empty, a sign, another character, too big).
static long parse_decimal(const char *s, const char *e, long lo, long hi) {
    if (s == e || e - s > 9) return -1;
    long v = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

static int parse_tokenizer_text(const char *text, const char *path, TokFields *tf, char *err, size_t errlen) {
    memset(tf, 0, sizeof *tf);
    tf->nbytes = -1;
    int have_magic = 0;
    const char *line = text;
    for (int lineno = 1; *line; lineno++) {
        const char *end = strchr(line, '\n');
        const char *next = end ? end + 1 : line + strlen(line);
        if (!end) end = next;
        if (end > line && end[-1] == '\r') end--;
        const size_t len = (size_t)(end - line);
        if (!have_magic) {
            if (len != 19 || strncmp(line, "gptrain-tokenizer 1", 19)) {
                snprintf(err, errlen, "%s: not a gptrain tokenizer file (expected 'gptrain-tokenizer 1' on line 1, "
                         "then 'type', 'vocab_size')", path);
                return -1;
            }
            have_magic = 1;
            line = next;
            continue;
        }
        if (len == 0) { line = next; continue; }
        const char *sp = memchr(line, ' ', len);
        const char *vs = sp ? sp + 1 : end;
        const size_t klen = (size_t)((sp ? sp : end) - line);
        if (klen == 4 && !strncmp(line, "type", 4)) {
            if (tf->type[0]) { snprintf(err, errlen, "%s: line %d: a second 'type' line", path, lineno); return -1; }
            if (vs == end || end - vs >= (long)sizeof tf->type || memchr(vs, ' ', (size_t)(end - vs))) {
                snprintf(err, errlen, "%s: line %d: 'type %.*s', expected type char or type gpt2", path, lineno,
                         (int)(end - vs > 40 ? 40 : end - vs), vs);
                return -1;
            }
            memcpy(tf->type, vs, (size_t)(end - vs));
            tf->type[end - vs] = 0;
        } else if (klen == 10 && !strncmp(line, "vocab_size", 10)) {
            if (tf->vocab) {
                snprintf(err, errlen, "%s: line %d: a second 'vocab_size' line", path, lineno);
                return -1;
            }
            const long v = parse_decimal(vs, end, 1, 65536);
            if (v < 0) {
                snprintf(err, errlen, "%s: line %d: vocab_size '%.*s', expected a decimal integer from 1 to 65536 "
                         "(shards store uint16 tokens)", path, lineno, (int)(end - vs > 40 ? 40 : end - vs), vs);
                return -1;
            }
            tf->vocab = (int)v;
        } else if (klen == 5 && !strncmp(line, "bytes", 5)) {
            if (tf->nbytes >= 0) { snprintf(err, errlen, "%s: line %d: a second 'bytes' line", path, lineno); return -1; }
            tf->nbytes = 0;
            for (const char *p = vs; p < end;) {
                const char *q = memchr(p, ' ', (size_t)(end - p));
                if (!q) q = end;
                const long b = parse_decimal(p, q, 0, 255);
                if (b < 0 || tf->nbytes == 256) {
                    snprintf(err, errlen, "%s: line %d: bytes entry %d '%.*s', expected at most 256 decimal bytes "
                             "0 to 255 separated by single spaces", path, lineno, tf->nbytes + 1,
                             (int)(q - p > 20 ? 20 : q - p), p);
                    return -1;
                }
                tf->bytes[tf->nbytes++] = (uint8_t)b;
                p = q < end ? q + 1 : q;
            }
        } else {
            snprintf(err, errlen, "%s: line %d: '%.*s', expected a 'type', 'vocab_size' or 'bytes' line", path, lineno,
                     (int)(len > 40 ? 40 : len), line);
            return -1;
        }
        line = next;
    }
    if (!tf->type[0] || !tf->vocab) {
        snprintf(err, errlen, "%s: not a gptrain tokenizer file (no '%s' line; expected 'gptrain-tokenizer 1', "
                 "'type', 'vocab_size')", path, !have_magic ? "gptrain-tokenizer 1" : !tf->type[0] ? "type" : "vocab_size");
        return -1;
    }
    if (strcmp(tf->type, "char") && strcmp(tf->type, "gpt2")) {
        snprintf(err, errlen, "%s: tokenizer type '%s', expected char or gpt2", path, tf->type);
        return -1;
    }
    if (!strcmp(tf->type, "gpt2") && tf->vocab != GPT2_VOCAB_SIZE) {
        snprintf(err, errlen, "%s: type gpt2 with vocab_size %d, expected %d", path, tf->vocab, GPT2_VOCAB_SIZE);
        return -1;
    }
    if (!strcmp(tf->type, "gpt2") && tf->nbytes >= 0) {
        snprintf(err, errlen, "%s: type gpt2 with a 'bytes' line, expected bytes only for type char", path);
        return -1;
    }
    if (!strcmp(tf->type, "char") && tf->nbytes != tf->vocab) {
        snprintf(err, errlen, "%s: 'bytes' lists %d bytes, expected vocab_size %d distinct bytes", path,
                 tf->nbytes < 0 ? 0 : tf->nbytes, tf->vocab);
        return -1;
    }
    return 0;
}

// Fill tok from parsed fields of type char (every byte listed once).
static int char_tokenizer_from(CharTokenizer *tok, const TokFields *tf, const char *path, char *err, size_t errlen) {
    if (strcmp(tf->type, "char")) {
        snprintf(err, errlen, "%s: tokenizer type '%s', expected char", path, tf->type);
        return -1;
    }
    tok->vocab_size = tf->vocab;
    for (int b = 0; b < 256; b++) tok->id_of[b] = -1;
    for (int i = 0; i < tf->nbytes; i++) {
        if (tok->id_of[tf->bytes[i]] >= 0) {
            snprintf(err, errlen, "%s: byte %d listed twice", path, tf->bytes[i]);
            return -1;
        }
        tok->bytes[i] = tf->bytes[i];
        tok->id_of[tf->bytes[i]] = (int16_t)i;
    }
    return 0;
}

// Read and parse a tokenizer file. file_read_text opens it non-blocking and refuses anything but a regular file (a
// FIFO in its place would otherwise wait forever for a writer) and anything larger than TOKENIZER_FILE_MAX.
static int read_tokenizer_file(const char *path, TokFields *tf, char *err, size_t errlen) {
    char *text = file_read_text(path, TOKENIZER_FILE_MAX, err, errlen);
    if (!text) return -1;
    const int rc = parse_tokenizer_text(text, path, tf, err, errlen);
    free(text);
    return rc;
}

int char_tokenizer_load(CharTokenizer *tok, const char *path, char *err, size_t errlen) {
    TokFields tf;
    if (read_tokenizer_file(path, &tf, err, errlen)) return -1;
    return char_tokenizer_from(tok, &tf, path, err, errlen);
}

// ---- either tokenizer, by tokenizer.txt's type ----

int tokenizer_load_text(Tokenizer *t, const char *text, const char *what, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    TokFields tf;
    if (parse_tokenizer_text(text, what, &tf, err, errlen)) return -1;
    t->vocab_size = tf.vocab;
    if (!strcmp(tf.type, "gpt2")) {
        t->is_gpt2 = 1;
        return gpt2_bpe_load(&t->bpe, gpt2_default_dir(), err, errlen);
    }
    return char_tokenizer_from(&t->ch, &tf, what, err, errlen);
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
    // The tokenizer.txt of a directory an interrupted prepare left may belong to either set: refused, as its shards.
    if (data_check_complete(dir, err, errlen)) return -1;
    char path[4096];
    TokFields tf;
    snprintf(path, sizeof path, "%s/tokenizer.txt", dir);
    if (read_tokenizer_file(path, &tf, err, errlen)) return -1;
    *vocab_size = tf.vocab;
    return 0;
}
