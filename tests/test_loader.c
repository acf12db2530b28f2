/*
 * test_loader.c: the data room. Shard format round trip and every refusal (missing, truncated, wrong magic, wrong
 * version, token outside the vocabulary, too few tokens); the loader's llm.c order (shuffle off) against the formula
 * [k·B·T, k·B·T + B·T + 1) with its reset, per-rank striding, shuffled windows that are real contiguous windows and
 * repeat for a seed; the character tokenizer round trip over the vendored Tiny Shakespeare; and prepare's refusals,
 * which leave existing shards untouched.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "harness.h"

static char DIR_[256];

static void path_of(char *out, size_t n, const char *sub, const char *name) {
    snprintf(out, n, "%s/%s", DIR_, sub);
    mkdir(out, 0755);
    snprintf(out, n, "%s/%s/%s", DIR_, sub, name);
}

static int expect_fail(int rc, const char *err, const char *want1, const char *want2, const char *name) {
    int ok = rc == -1 && strstr(err, want1) && (!want2 || strstr(err, want2));
    harness_case(ok, name, "rc %d: %s", rc, err);
    return ok;
}

static void write_raw(const char *path, const int32_t *hdr, const uint16_t *tok, size_t ntok) {
    FILE *f = fopen(path, "wb");
    fwrite(hdr, sizeof(int32_t), 256, f);
    fwrite(tok, sizeof(uint16_t), ntok, f);
    fclose(f);
}

int main(void) {
    char err[1024], p[512], dir[512];
    snprintf(DIR_, sizeof DIR_, "/tmp/gptrain-test-loader-XXXXXX");
    if (!mkdtemp(DIR_)) { perror("mkdtemp"); return 1; }

    // ---- a split of 1000 tokens, tok[i] = i % 61 ----
    enum { NT = 1000 };
    uint16_t tok[NT];
    for (int i = 0; i < NT; i++) tok[i] = (uint16_t)(i % 61);
    path_of(p, sizeof p, "ok", "train_000000.bin");
    harness_case(!shard_write(p, tok, NT, err, sizeof err), "shard_write", "%s", p);
    uint16_t *back;
    size_t nback;
    int rc = shard_read(p, &back, &nback, 61, err, sizeof err);
    harness_case(!rc && nback == NT && !memcmp(back, tok, sizeof tok), "shard round trip", "%zu tokens", nback);
    if (!rc) free(back);
    FILE *f = fopen(p, "rb");
    int32_t hdr[256];
    fread(hdr, 4, 256, f);
    fclose(f);
    harness_case(hdr[0] == 20240520 && hdr[1] == 1 && hdr[2] == NT, "shard header is llm.c's", "%d %d %d", hdr[0],
                 hdr[1], hdr[2]);

    snprintf(dir, sizeof dir, "%s/ok", DIR_);
    const int B = 3, T = 16;
    DataLoader dl;
    int32_t in[48], tg[48];
    rc = data_loader_open(&dl, dir, "train", B, T, 0, 1, 0, 1, 61, err, sizeof err);
    harness_case(!rc, "loader open", "%s", rc ? err : dir);
    int order_ok = 1, k_bad = -1;
    // 1000 tokens hold floor(999 / 48) = 20 batches; batch 20 restarts at 0.
    for (int k = 0; k < 25 && !rc; k++) {
        data_loader_next(&dl, in, tg);
        size_t start = (size_t)(k % 20) * B * T;
        for (int i = 0; i < B * T; i++)
            if (in[i] != tok[start + i] || tg[i] != tok[start + i + 1]) { order_ok = 0; k_bad = k; }
    }
    harness_case(order_ok, "shuffle off: batch k covers [k·B·T, k·B·T + B·T + 1), reset after the last full batch",
                 "first bad batch %d", k_bad);
    data_loader_close(&dl);

    // Two ranks interleave exactly what one rank reads.
    DataLoader r0, r1;
    data_loader_open(&r0, dir, "train", B, T, 0, 2, 0, 1, 61, err, sizeof err);
    data_loader_open(&r1, dir, "train", B, T, 1, 2, 0, 1, 61, err, sizeof err);
    int ranks_ok = 1;
    for (int k = 0; k < 4; k++) {
        data_loader_next(&r0, in, tg);
        for (int i = 0; i < B * T; i++) if (in[i] != tok[(size_t)(2 * k) * B * T + i]) ranks_ok = 0;
        data_loader_next(&r1, in, tg);
        for (int i = 0; i < B * T; i++) if (in[i] != tok[(size_t)(2 * k + 1) * B * T + i]) ranks_ok = 0;
    }
    harness_case(ranks_ok, "per-rank striding: rank r of 2 reads batches 2k + r", "4 batches each");
    data_loader_close(&r0);
    data_loader_close(&r1);

    // Shuffled windows: contiguous, deterministic for a seed, different across seeds, reset repeats.
    DataLoader a, b2, c;
    data_loader_open(&a, dir, "train", B, T, 0, 1, 1, 7, 61, err, sizeof err);
    data_loader_open(&b2, dir, "train", B, T, 0, 1, 1, 7, 61, err, sizeof err);
    data_loader_open(&c, dir, "train", B, T, 0, 1, 1, 8, 61, err, sizeof err);
    int32_t in2[48], tg2[48], first[48];
    int same = 1, differ = 0, contiguous = 1;
    for (int k = 0; k < 5; k++) {
        data_loader_next(&a, in, tg);
        if (k == 0) memcpy(first, in, sizeof first);
        data_loader_next(&b2, in2, tg2);
        if (memcmp(in, in2, sizeof in) || memcmp(tg, tg2, sizeof tg)) same = 0;
        data_loader_next(&c, in2, tg2);
        if (memcmp(in, in2, sizeof in)) differ = 1;
        for (int r = 0; r < B; r++)
            for (int t = 0; t < T; t++) {
                int x = in[r * T + t], y = tg[r * T + t];
                if (y != (x + 1) % 61 || (t > 0 && x != (in[r * T + t - 1] + 1) % 61)) contiguous = 0;
            }
    }
    harness_case(same, "shuffle on: same seed, same batches", "5 batches");
    harness_case(differ, "shuffle on: another seed, other batches", "seed 7 vs 8");
    harness_case(contiguous, "shuffle on: rows are contiguous windows with targets shifted by one", "5 batches");
    data_loader_reset(&a);
    data_loader_next(&a, in, tg);
    harness_case(!memcmp(in, first, sizeof in), "reset reproduces the first batch", "shuffle on");
    data_loader_close(&a);
    data_loader_close(&b2);
    data_loader_close(&c);

    // Shuffle on reads epochs: within one epoch every window offset + i*T appears exactly once (tok[i] = i here, so a
    // row's first input is its start); rank r of 2 takes every second window of the same permutation.
    {
        uint16_t seq[NT];
        for (int i = 0; i < NT; i++) seq[i] = (uint16_t)i;
        path_of(p, sizeof p, "seq", "train_000000.bin");
        shard_write(p, seq, NT, err, sizeof err);
        snprintf(dir, sizeof dir, "%s/seq", DIR_);
        DataLoader e, q0, q1;
        data_loader_open(&e, dir, "train", 1, T, 0, 1, 1, 3, 0, err, sizeof err);
        const size_t off = e.offset, nwin = e.nwin;
        int seen[NT] = {0}, epoch_ok = nwin == (NT - 1 - off) / T;
        for (size_t w = 0; w < nwin; w++) {
            data_loader_next(&e, in, tg);
            size_t st = (size_t)in[0];
            if (st < off || (st - off) % T || seen[st]++) epoch_ok = 0;
        }
        harness_case(epoch_ok && e.epoch == 1, "shuffle on: one epoch reads every window once", "offset %zu, %zu windows",
                     off, nwin);
        data_loader_next(&e, in, tg);
        harness_case(e.epoch == 2, "shuffle on: the next batch starts a new epoch", "epoch %llu",
                     (unsigned long long)e.epoch);
        data_loader_reset(&e);
        data_loader_open(&q0, dir, "train", 1, T, 0, 2, 1, 3, 0, err, sizeof err);
        data_loader_open(&q1, dir, "train", 1, T, 1, 2, 1, 3, 0, err, sizeof err);
        int split_ok = 1;
        for (int k = 0; k < 10; k++) {
            int32_t a0[16], a1[16], t0[16];
            data_loader_next(&e, in, tg);
            data_loader_next(&q0, a0, t0);
            if (in[0] != a0[0]) split_ok = 0;
            data_loader_next(&e, in, tg);
            data_loader_next(&q1, a1, t0);
            if (in[0] != a1[0]) split_ok = 0;
        }
        harness_case(split_ok, "shuffle on: ranks 0 and 1 of 2 interleave one rank's windows", "10 windows each");
        data_loader_close(&e);
        data_loader_close(&q0);
        data_loader_close(&q1);
    }

    // ---- refusals ----
    snprintf(dir, sizeof dir, "%s/none", DIR_);
    mkdir(dir, 0755);
    expect_fail(data_loader_open(&dl, dir, "train", B, T, 0, 1, 0, 1, 61, err, sizeof err), err, "no train shards",
                "none", "missing shards");
    expect_fail(data_loader_open(&dl, DIR_, "train", 30, 64, 0, 1, 0, 1, 61, err, sizeof err), err, "no train shards",
                NULL, "no shards in a directory without them");
    snprintf(dir, sizeof dir, "%s/ok", DIR_);
    expect_fail(data_loader_open(&dl, dir, "train", 30, 64, 0, 1, 0, 1, 61, err, sizeof err), err, "needs at least 1921",
                "--batch 30 --seq-len 64", "too few tokens for B*T+1");
    int32_t h[256] = {20240520, 1, NT};
    path_of(p, sizeof p, "trunc", "train_000000.bin");
    write_raw(p, h, tok, NT - 10);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "truncated", "trunc/train_000000.bin",
                "truncated shard");
    h[0] = 12345;
    path_of(p, sizeof p, "magic", "train_000000.bin");
    write_raw(p, h, tok, NT);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "bad magic 12345", "expected 20240520",
                "wrong magic");
    h[0] = 20240520;
    h[1] = 7;
    path_of(p, sizeof p, "version", "train_000000.bin");
    write_raw(p, h, tok, NT);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "version 7", "version/train_000000.bin",
                "wrong version");
    snprintf(p, sizeof p, "%s/ok/train_000000.bin", DIR_);
    expect_fail(shard_read(p, &back, &nback, 50, err, sizeof err), err, "token 50 at position 50",
                "outside the vocabulary (size 50)", "token outside the vocabulary");
    snprintf(p, sizeof p, "%s/nope.bin", DIR_);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "nope.bin", "cannot open", "missing shard file");

    // ---- tokenizer over the vendored corpus ----
    FILE *cf = fopen("data/tinyshakespeare/input.txt", "rb");
    harness_case(cf != NULL, "vendored corpus present", "data/tinyshakespeare/input.txt");
    if (cf) {
        fseek(cf, 0, SEEK_END);
        long n = ftell(cf);
        fseek(cf, 0, SEEK_SET);
        uint8_t *text = malloc(n), *dec = malloc(n);
        uint16_t *ids = malloc(sizeof(uint16_t) * n);
        fread(text, 1, n, cf);
        fclose(cf);
        CharTokenizer ct, ct2;
        char_tokenizer_build(&ct, text, n);
        snprintf(p, sizeof p, "%s/tokenizer.txt", DIR_);
        char_tokenizer_save(&ct, p, err, sizeof err);
        rc = char_tokenizer_load(&ct2, p, err, sizeof err);
        int enc = !rc && !char_tokenizer_encode(&ct2, text, n, ids, err, sizeof err);
        for (long i = 0; enc && i < n; i++) dec[i] = (uint8_t)char_tokenizer_decode(&ct2, ids[i]);
        harness_case(ct.vocab_size == 65 && char_tokenizer_decode(&ct2, 0) == '\n' && enc && !memcmp(dec, text, n),
                     "char tokenizer: 65 tokens, '\\n' first, save/load, encode/decode round trip of the corpus",
                     "vocab %d, %ld bytes", ct.vocab_size, n);
        expect_fail(char_tokenizer_encode(&ct2, (const uint8_t *)"hi~", 3, ids, err, sizeof err), err, "'~'",
                    "offset 2", "encode: a character outside the vocabulary");
        free(text); free(dec); free(ids);
    }

    // ---- prepare ----
    snprintf(p, sizeof p, "%s/small.txt", DIR_);
    f = fopen(p, "w");
    fputs("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n", f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/prep", DIR_);
    rc = data_prepare(p, dir, "char", 0.25, err, sizeof err);
    DataLoader pt, pv;
    int ok = !rc && !data_loader_open(&pt, dir, "train", 1, 8, 0, 1, 0, 1, 0, err, sizeof err) &&
             !data_loader_open(&pv, dir, "val", 1, 8, 0, 1, 0, 1, 0, err, sizeof err);
    if (ok) {
        CharTokenizer ct;
        char tk[600];
        snprintf(tk, sizeof tk, "%s/tokenizer.txt", dir);
        ok = !char_tokenizer_load(&ct, tk, err, sizeof err);
        char text[256];
        size_t m = 0;
        for (size_t i = 0; ok && i < pt.ntok; i++) text[m++] = (char)char_tokenizer_decode(&ct, pt.tokens[i]);
        for (size_t i = 0; ok && i < pv.ntok; i++) text[m++] = (char)char_tokenizer_decode(&ct, pv.tokens[i]);
        text[m] = 0;
        ok = ok && !strcmp(text, "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n") &&
             pv.ntok == 21;
        data_loader_close(&pt);
        data_loader_close(&pv);
    }
    harness_case(ok, "prepare: train + val shards decode back to the text; val is the last 25%", "%s", rc ? err : dir);
    snprintf(p, sizeof p, "%s/prep/train_000000.bin", DIR_);
    struct stat before, after;
    stat(p, &before);
    snprintf(p, sizeof p, "%s/missing.txt", DIR_);
    expect_fail(data_prepare(p, dir, "char", 0.1, err, sizeof err), err, "--input", "missing.txt", "prepare: missing input");
    snprintf(p, sizeof p, "%s/empty.txt", DIR_);
    fclose(fopen(p, "w"));
    expect_fail(data_prepare(p, dir, "char", 0.1, err, sizeof err), err, "--input", "empty", "prepare: empty input");
    snprintf(p, sizeof p, "%s/small.txt", DIR_);
    expect_fail(data_prepare(p, dir, "char", 0.0, err, sizeof err), err, "--val-fraction 0", NULL, "prepare: val fraction 0");
    expect_fail(data_prepare(p, dir, "char", 1.0, err, sizeof err), err, "--val-fraction 1", NULL, "prepare: val fraction 1");
    expect_fail(data_prepare(p, dir, "bpe", 0.1, err, sizeof err), err, "--tokenizer bpe", NULL, "prepare: unknown tokenizer");
    char under[600];
    snprintf(under, sizeof under, "%s/small.txt/sub", DIR_);
    expect_fail(data_prepare(p, under, "char", 0.1, err, sizeof err), err, "--out", "not a directory",
                "prepare: --out under a regular file");
    snprintf(p, sizeof p, "%s/prep/train_000000.bin", DIR_);
    stat(p, &after);
    harness_case(before.st_mtim.tv_sec == after.st_mtim.tv_sec && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec &&
                     before.st_size == after.st_size,
                 "failed prepares left the existing shard untouched", "%s", p);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", DIR_);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", DIR_);
    return harness_finish();
}
