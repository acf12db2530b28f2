/*
 * fuzz_parsers.c: libFuzzer targets for the parsers that read files a user hands to gptrain: the token shard
 * (shard_read: header, size, tokens), the checkpoint (ckpt_read_meta: header checks, hashes, the config and tokenizer
 * texts), tokenizer.txt (tokenizer_load_text) and GPT-2's encoder.json + vocab.bpe (gpt2_bpe_parse, past the sha256
 * gate: the input is split at its first 0xFF byte into the two files, and what parses encodes a sentence). Built
 * four times by `make fuzz`, with FUZZ_SHARD, FUZZ_CKPT, FUZZ_TOKENIZER or FUZZ_GPT2 defined, under AddressSanitizer
 * and UBSan; a crash, a leak or undefined behaviour is a finding.
 * The file-based parsers get the input through a file in /dev/shm (they take paths, as gptrain does).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"

static const char *scratch_path(void) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/dev/shm/gptrain-fuzz-%d.bin", (int)getpid());
    return path;
}

static int write_scratch(const uint8_t *data, size_t n) {
    FILE *f = fopen(scratch_path(), "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, n, f) == n;
    fclose(f);
    return ok ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char err[1024];
#if defined(FUZZ_SHARD)
    if (write_scratch(data, n)) return 0;
    uint16_t *tokens;
    size_t ntok;
    if (!shard_read(scratch_path(), &tokens, &ntok, 50257, err, sizeof err)) free(tokens);
#elif defined(FUZZ_CKPT)
    // Half the inputs (odd last byte) get a correct header hash, so the fuzzer gets past that gate to the size checks
    // and the texts.
    if (n >= sizeof(CkptHeader) && (data[n - 1] & 1)) {
        uint8_t *copy = malloc(n);
        if (!copy) return 0;
        memcpy(copy, data, n);
        Hash64 hs;
        hash64_init(&hs);
        hash64_update(&hs, copy, offsetof(CkptHeader, header_hash));
        uint64_t hh = hash64_final(&hs);
        memcpy(copy + offsetof(CkptHeader, header_hash), &hh, sizeof hh);
        int rc = write_scratch(copy, n);
        free(copy);
        if (rc) return 0;
    } else if (write_scratch(data, n)) return 0;
    CkptHeader h;
    char *cfg, *tok;
    if (!ckpt_read_meta(scratch_path(), &h, &cfg, &tok, err, sizeof err)) {
        Tokenizer t;
        if (!tokenizer_load_text(&t, tok, "fuzz", err, sizeof err)) tokenizer_free(&t);
        free(cfg);
        free(tok);
    }
#elif defined(FUZZ_TOKENIZER)
    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, data, n);
    text[n] = 0;
    Tokenizer t;
    if (!tokenizer_load_text(&t, text, "fuzz", err, sizeof err)) {
        // Encode and decode a little text with whatever was accepted.
        uint16_t out[64];
        size_t m;
        const uint8_t sample[] = "hello, world";
        if (!t.is_gpt2 && !tokenizer_encode(&t, sample, sizeof sample - 1, out, &m, err, sizeof err))
            for (size_t i = 0; i < m; i++) {
                const uint8_t *b;
                tokenizer_decode(&t, out[i], &b);
            }
        tokenizer_free(&t);
    }
    free(text);
#elif defined(FUZZ_GPT2)
    const uint8_t *cut = memchr(data, 0xFF, n);
    const size_t en = cut ? (size_t)(cut - data) : n;
    Gpt2Bpe *bpe;
    if (!gpt2_bpe_parse(&bpe, "encoder.json", data, en, "vocab.bpe", cut ? cut + 1 : data + n, cut ? n - en - 1 : 0,
                        err, sizeof err)) {
        const uint8_t sample[] = "Hello, world! It's 2026.";
        uint16_t out[sizeof sample];
        size_t m;
        if (!gpt2_bpe_encode(bpe, sample, sizeof sample - 1, out, &m, err, sizeof err))
            for (size_t i = 0; i < m; i++) {
                const uint8_t *b;
                gpt2_bpe_decode(bpe, out[i], &b);
            }
        gpt2_bpe_free(bpe);
    }
#else
#error "define FUZZ_SHARD, FUZZ_CKPT, FUZZ_TOKENIZER or FUZZ_GPT2"
#endif
    return 0;
}
