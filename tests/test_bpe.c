/*
 * test_bpe.c: the GPT-2 byte-level BPE tokenizer (data/gpt2_bpe.c) and SHA-256 (data/sha256.c).
 *
 * Expected ids come from an independent implementation, tests/ref/bpe_ref.py: OpenAI's encoder.py algorithm
 * (bytes_to_unicode, get_pairs, lowest-rank-pair BPE, the pre-tokenizer regex run by the Python `regex` module,
 * version 2026.5.9 when generated) over the same vendored data/gpt2/encoder.json and vocab.bpe. It wrote
 * tests/ref/bpe_cases.txt: per case its bytes in hex and its ids (unicode in many scripts, emoji with ZWJ and flags,
 * numbers of every kind, whitespace runs, contractions, invalid UTF-8 with the surrogateescape convention documented
 * in the script, seeded random strings), and the token count and ids' sha256 of the whole Tiny Shakespeare.
 * Regenerate: /root/.pyenv/versions/3.11.7/bin/python3 tests/ref/bpe_ref.py   (any python3 with `regex`)
 *
 * Also: the FIPS 180-4 sha256 test vectors; every case decoding back to its bytes; Tiny Shakespeare's round trip and
 * encode time (< 1 s, cold cache, measured); 1 MB of random bytes (one huge "other" pre-token) round-tripping in
 * bounded time; decode of the ids at and past the ends; refusals (changed byte, missing file, empty directory) naming
 * the path; malformed files given to the parser (gpt2_bpe_parse, the fuzz entry point) refused without a crash.
 * Runs from the repository root.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "data.h"
#include "harness.h"


static char ROOT[256];

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    return b;
}

static void write_file(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(d, 1, n, f);
    fclose(f);
}

static void hex_of(const uint8_t d[32], char hex[65]) {
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static void test_sha256(void) {
    static const struct { const char *name, *msg, *want; } V[] = {
        {"sha256 \"\"", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"sha256 abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"sha256 448-bit", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    uint8_t d[32];
    char hex[65];
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        sha256_bytes(V[i].msg, strlen(V[i].msg), d);
        hex_of(d, hex);
        harness_case(!strcmp(hex, V[i].want), V[i].name, "%s", hex);
    }
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    sha256_bytes(a, n, d);
    free(a);
    hex_of(d, hex);
    harness_case(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
                 "sha256 million a", "%s", hex);
    char err[512] = "", path[512];
    snprintf(path, sizeof path, "%s/encoder.json", gpt2_default_dir());
    int rc = sha256_file_hex(path, hex, err, sizeof err);
    harness_case(rc == 0 && !strcmp(hex, GPT2_ENCODER_SHA256), "sha256_file_hex encoder.json", "%s", rc ? err : hex);
    rc = sha256_file_hex("/nonexistent/x", hex, err, sizeof err);
    harness_case(rc == -1 && strstr(err, "/nonexistent/x"), "sha256_file_hex missing file", "%s", err);
}

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

// Every line of tests/ref/bpe_cases.txt: the ids match, and decoding them gives the bytes back.
static void test_cases(Gpt2Bpe *bpe, char *ts_ntok, char *ts_sha) {
    FILE *f = fopen("tests/ref/bpe_cases.txt", "r");
    harness_case(f != NULL, "cases file", "tests/ref/bpe_cases.txt (run from the repository root)");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int ncases = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = 0;
        char *name = line, *hex = strchr(line, '\t'), *ids = hex ? strchr(hex + 1, '\t') : NULL;
        if (!hex || !ids) { harness_case(0, "cases file", "malformed line: %s", line); continue; }
        *hex++ = 0;
        *ids++ = 0;
        if (!strcmp(name, "tinyshakespeare")) {
            snprintf(ts_ntok, 32, "%s", hex);
            snprintf(ts_sha, 65, "%s", ids);
            continue;
        }
        size_t n = strcmp(hex, "-") ? strlen(hex) / 2 : 0;
        uint8_t *text = malloc(n + 1);
        for (size_t i = 0; i < n; i++) text[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
        uint16_t want[4096];
        size_t nw = 0;
        for (char *p = ids; *p && nw < 4096;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            want[nw++] = (uint16_t)v;
            p = e;
        }
        uint16_t *got = malloc((n + 1) * sizeof *got);
        size_t ng = 0;
        char err[256] = "";
        int rc = gpt2_bpe_encode(bpe, text, n, got, &ng, err, sizeof err);
        size_t diff = 0;
        while (diff < ng && diff < nw && got[diff] == want[diff]) diff++;
        int ids_ok = rc == 0 && ng == nw && diff == nw;
        // decode back
        uint8_t *back = malloc(n + 1);
        size_t nb = 0;
        int dec_ok = 1;
        for (size_t i = 0; i < ng && dec_ok; i++) {
            const uint8_t *b;
            int l = gpt2_bpe_decode(bpe, got[i], &b);
            if (l < 0 || nb + (size_t)l > n) { dec_ok = 0; break; }
            memcpy(back + nb, b, (size_t)l);
            nb += (size_t)l;
        }
        dec_ok = dec_ok && nb == n && !memcmp(back, text, n);
        char name_buf[96];
        snprintf(name_buf, sizeof name_buf, "case %s", name);
        if (ids_ok && dec_ok)
            harness_case(1, name_buf, "%zu bytes -> %zu ids, decodes back", n, ng);
        else if (!ids_ok)
            harness_case(0, name_buf, "rc %d %s; %zu ids, expected %zu; first difference at id %zu: got %d, expected %d",
                         rc, err, ng, nw, diff, diff < ng ? got[diff] : -1, diff < nw ? want[diff] : -1);
        else
            harness_case(0, name_buf, "ids match but decoding gives %zu bytes, not the %zu encoded", nb, n);
        ncases++;
        free(text);
        free(got);
        free(back);
    }
    free(line);
    fclose(f);
    harness_case(ncases >= 40, "cases count", "%d cases from tests/ref/bpe_cases.txt", ncases);
}

// Encode text with a fresh tokenizer (cold cache), check the round trip; returns the encode seconds, -1 on failure.
static double encode_roundtrip(const uint8_t *text, size_t n, uint16_t **ids, size_t *nids, int *roundtrip) {
    Gpt2Bpe *bpe;
    char err[512];
    if (gpt2_bpe_load(&bpe, gpt2_default_dir(), err, sizeof err)) return -1;
    *ids = malloc((n + 1) * sizeof **ids);
    double t0 = now_s();
    int rc = gpt2_bpe_encode(bpe, text, n, *ids, nids, err, sizeof err);
    double dt = now_s() - t0;
    size_t at = 0;
    *roundtrip = rc == 0;
    for (size_t i = 0; i < *nids && *roundtrip; i++) {
        const uint8_t *b;
        int l = gpt2_bpe_decode(bpe, (*ids)[i], &b);
        if (l < 0 || at + (size_t)l > n || memcmp(text + at, b, (size_t)l)) *roundtrip = 0;
        else at += (size_t)l;
    }
    *roundtrip = *roundtrip && at == n;
    gpt2_bpe_free(bpe);
    return rc ? -1 : dt;
}

static void test_tinyshakespeare(const char *want_ntok, const char *want_sha) {
    size_t n = 0;
    uint8_t *text = read_file("data/tinyshakespeare/input.txt", &n);
    harness_case(text && n > 0, "tinyshakespeare read", "%zu bytes", n);
    if (!text) return;
    uint16_t *ids = NULL;
    size_t nids = 0;
    int rt = 0;
    double dt = encode_roundtrip(text, n, &ids, &nids, &rt);
    harness_case(rt, "tinyshakespeare round trip", "%zu bytes -> %zu tokens -> identical bytes", n, nids);
    // the ids as little-endian uint16, hashed, against the oracle's whole-file result
    uint8_t *le = malloc(2 * nids + 1), d[32];
    for (size_t i = 0; i < nids; i++) { le[2 * i] = (uint8_t)ids[i]; le[2 * i + 1] = (uint8_t)(ids[i] >> 8); }
    sha256_bytes(le, 2 * nids, d);
    char hex[65], ntok[32];
    hex_of(d, hex);
    snprintf(ntok, sizeof ntok, "%zu", nids);
    harness_case(!strcmp(ntok, want_ntok) && !strcmp(hex, want_sha), "tinyshakespeare ids = bpe_ref.py",
                 "%s tokens, ids sha256 %s (expected %s, %s)", ntok, hex, want_ntok, want_sha);
    // 1 s on the CI's slow cores; this machine is far under it (the margin is the point)
    harness_case(dt >= 0 && dt < 1.0, "tinyshakespeare encode time", "%.4f s, %.1f MB/s (cold cache, limit 1 s)", dt,
                 n / dt / 1e6);
    free(le);
    free(ids);
    free(text);

    // One pre-token of 1 MB (random bytes >= 0x80: invalid UTF-8 and stray non-letters form one "other" run): the
    // heap BPE keeps this O(n log n); encoder.py's pairwise loop would take hours.
    n = 1 << 20;
    text = malloc(n);
    uint64_t s = 42;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        text[i] = (uint8_t)(0x80 | (s >> 57));
    }
    dt = encode_roundtrip(text, n, &ids, &nids, &rt);
    harness_case(rt && dt >= 0 && dt < 5.0, "1 MB random high bytes", "%zu tokens, %.3f s, round trip %s", nids, dt,
                 rt ? "identical" : "DIFFERS");
    free(ids);
    free(text);
}

static void test_decode_ends(Gpt2Bpe *bpe) {
    const uint8_t *b = NULL;
    int l = gpt2_bpe_decode(bpe, GPT2_EOT, &b);
    harness_case(l == 13 && !memcmp(b, "<|endoftext|>", 13), "decode 50256", "%d bytes: %.*s", l, l > 0 ? l : 0, b);
    harness_case(gpt2_bpe_decode(bpe, -1, &b) == -1, "decode -1 rejected", "-1");
    harness_case(gpt2_bpe_decode(bpe, GPT2_VOCAB_SIZE, &b) == -1, "decode 50257 rejected", "-1");
    l = gpt2_bpe_decode(bpe, 0, &b);
    harness_case(l == 1 && b[0] == '!', "decode 0", "\"!\"");
}

static void expect_refusal(int rc, Gpt2Bpe *bpe, const char *err, const char *want1, const char *want2,
                           const char *name) {
    int ok = rc == -1 && bpe == NULL && strstr(err, want1) && (!want2 || strstr(err, want2)) && !strchr(err, '\n');
    harness_case(ok, name, "rc %d: %s", rc, err);
}

static void test_refusals(void) {
    size_t en = 0, vn = 0;
    char path[700], dir[600], err[1024];
    snprintf(path, sizeof path, "%s/encoder.json", gpt2_default_dir());
    uint8_t *enc = read_file(path, &en);
    snprintf(path, sizeof path, "%s/vocab.bpe", gpt2_default_dir());
    uint8_t *voc = read_file(path, &vn);
    if (!enc || !voc) { harness_case(0, "refusals", "cannot read the vendored files"); return; }
    Gpt2Bpe *bpe = (Gpt2Bpe *)1;

    // one byte changed: an id digit, so the file stays valid JSON and only the sha256 can tell
    snprintf(dir, 300, "%s/changed", ROOT);
    mkdir(dir, 0755);
    uint8_t *bad = malloc(en);
    memcpy(bad, enc, en);
    char *digit = strstr((char *)bad, "\"!\": 0");
    if (digit) digit[5] = '1';
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    write_file(path, bad, en);
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    write_file(path, voc, vn);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    int rc = gpt2_bpe_load(&bpe, dir, err, sizeof err);
    expect_refusal(rc, bpe, err, path, "expected " GPT2_ENCODER_SHA256 " (the vendored", "refuse changed encoder.json");

    snprintf(dir, 300, "%s/novocab", ROOT);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    write_file(path, enc, en);
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    bpe = (Gpt2Bpe *)1;
    rc = gpt2_bpe_load(&bpe, dir, err, sizeof err);
    expect_refusal(rc, bpe, err, path, "No such file", "refuse missing vocab.bpe");

    snprintf(dir, 300, "%s/empty", ROOT);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    bpe = (Gpt2Bpe *)1;
    rc = gpt2_bpe_load(&bpe, dir, err, sizeof err);
    expect_refusal(rc, bpe, err, path, "cannot open", "refuse empty directory");

    snprintf(dir, 300, "%s/isdir", ROOT);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    mkdir(path, 0755);
    bpe = (Gpt2Bpe *)1;
    rc = gpt2_bpe_load(&bpe, dir, err, sizeof err);
    expect_refusal(rc, bpe, err, path, "not a regular file", "refuse encoder.json that is a directory");

    // the parser itself on malformed text (the sha256 check would stop these first in gpt2_bpe_load)
    rc = gpt2_bpe_parse(&bpe, "E", enc, en, "V", voc, vn, err, sizeof err);
    harness_case(rc == 0 && bpe, "parse vendored files", "rc %d %s", rc, rc ? err : "");
    gpt2_bpe_free(bpe);
    static const struct { const char *name, *json, *want; } J[] = {
        {"json empty", "", "expected '{'"},
        {"json unterminated", "{\"a\": 1", "expected ',' or '}'"},
        {"json bad escape", "{\"\\q\": 1}", "expected one of the escapes"},
        {"json lone high surrogate", "{\"\\ud83d\": 1}", "low surrogate"},
        {"json lone low surrogate", "{\"\\udc00\": 1}", "lone low surrogate"},
        {"json non-byte-level char", "{\"\\u0041\\n\": 1}", "bytes_to_unicode"},
        {"json id too large", "{\"a\": 50257}", "below 50257"},
        {"json negative id", "{\"a\": -1}", "token id"},
        {"json repeated id", "{\"a\": 1, \"b\": 1}", "this id repeats"},
        {"json repeated token", "{\"a\": 1, \"a\": 2}", "this token repeats"},
        {"json trailing bytes", "{\"a\": 1} x", "end of the file"},
        {"json surrogate pair decoded", "{\"\\ud83d\\ude00\": 1}", "byte 14: expected only bytes_to_unicode"},
        {"json too few tokens", "{\"a\": 1, \"\\u00e9\": 2, \"\\u0120t\": 3}", "3 tokens, expected 50257"},
    };
    for (size_t i = 0; i < sizeof J / sizeof J[0]; i++) {
        bpe = (Gpt2Bpe *)1;
        rc = gpt2_bpe_parse(&bpe, "E.json", (const uint8_t *)J[i].json, strlen(J[i].json), "V", voc, vn, err, sizeof err);
        expect_refusal(rc, bpe, err, "E.json", J[i].want, J[i].name);
    }
    static const struct { const char *name, *bpe, *want; } B[] = {
        {"vocab no header", "a b\n", "line 1"},
        {"vocab unknown part", "#version: 0.2\nq \xc4\xa0zzzzzzzzqq\n", "line 2: expected parts"},
        {"vocab no newline at end", "#version: 0.2\n\xc4\xa0 t", "ending in a newline"},
        {"vocab three parts", "#version: 0.2\n\xc4\xa0 t h\n", "line 2"},
        {"vocab out of order", "#version: 0.2\n\xc4\xa0t h\n", "earlier merges"},
        {"vocab repeated merge", "#version: 0.2\n\xc4\xa0 t\n\xc4\xa0 t\n", "line 3: expected each merge once"},
    };
    for (size_t i = 0; i < sizeof B / sizeof B[0]; i++) {
        bpe = (Gpt2Bpe *)1;
        rc = gpt2_bpe_parse(&bpe, "E", enc, en, "V.bpe", (const uint8_t *)B[i].bpe, strlen(B[i].bpe), err, sizeof err);
        expect_refusal(rc, bpe, err, "V.bpe", B[i].want, B[i].name);
    }

    // Truncations and single-byte mutations of both files: each is parsed or refused in one line, never crashes.
    int refused = 0, parsed = 0, bad_msg = 0;
    uint64_t s = 7;
    uint8_t *mut = malloc(en > vn ? en : vn);
    for (int k = 0; k < 200; k++) {
        int which = k & 1;
        const uint8_t *src = which ? voc : enc;
        size_t n = which ? vn : en;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (size_t)(s >> 11) % n;
        memcpy(mut, src, n);
        if (k < 100) n = at;                                         // truncated
        else mut[at] = (uint8_t)(s >> 3);                            // one byte replaced
        bpe = NULL;
        err[0] = 0;
        rc = which ? gpt2_bpe_parse(&bpe, "E", enc, en, "V", mut, n, err, sizeof err)
                   : gpt2_bpe_parse(&bpe, "E", mut, n, "V", voc, vn, err, sizeof err);
        if (rc == 0) { parsed++; gpt2_bpe_free(bpe); }
        else { refused++; if (!err[0] || strchr(err, '\n') || bpe) bad_msg++; }
    }
    harness_case(bad_msg == 0 && refused > 0, "200 truncated or mutated files", "%d refused in one line, %d still "
                 "parse (a mutation that keeps the files valid), %d bad messages", refused, parsed, bad_msg);
    free(mut);
    free(bad);
    free(enc);
    free(voc);
}

int main(void) {
    snprintf(ROOT, sizeof ROOT, "/tmp/gptrain-test-bpe-XXXXXX");
    if (!mkdtemp(ROOT)) { perror("mkdtemp"); return 1; }
    test_sha256();
    Gpt2Bpe *bpe = NULL;
    char err[1024] = "";
    int rc = gpt2_bpe_load(&bpe, gpt2_default_dir(), err, sizeof err);
    harness_case(rc == 0, "load vendored", "%s", rc ? err : gpt2_default_dir());
    char ts_ntok[32] = "?", ts_sha[65] = "?";
    if (bpe) {
        test_cases(bpe, ts_ntok, ts_sha);
        test_decode_ends(bpe);
        gpt2_bpe_free(bpe);
    }
    test_tinyshakespeare(ts_ntok, ts_sha);
    test_refusals();
    char cmd[320];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ROOT);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", ROOT);
    return harness_finish();
}
