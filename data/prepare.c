/*
 * prepare.c: `gptrain prepare`: text -> llm.c token shards and tokenizer.txt in --out DIR.
 * Input: one text file, or a directory whose *.txt files (in name order) are the documents.
 * Tokenizers: char (one token per distinct byte of the whole input, documents concatenated as they are) or gpt2
 * (OpenAI's BPE; every document is preceded by <|endoftext|> = 50256, as llm.c's own prepare scripts do, so the
 * model sees document boundaries).
 * Split: the first floor((1 - val_fraction) * n) tokens are train, the rest val (nanoGPT's data[:int(n*0.9)] for
 * Tiny Shakespeare: 1003854 train, 111540 val with char). Each split is cut into shards of at most --shard-tokens
 * (train_000000.bin, train_000001.bin, ...; llm.c's scripts use 1e8).
 * Every check on the flags and the input runs before the first file is written, and the outputs replace a previous
 * set together: each is first written whole (atomically) as PATH.new, and only when all are on disk are they renamed
 * into place; then shards of an earlier, longer set that the new set does not overwrite are removed. The renames are
 * several steps, so they are bracketed by a marker, DIR/.prepare-incomplete, written (atomically, fsynced) before the
 * first and removed after the last and the removals: a prepare killed in between leaves the marker, and the loader
 * and data_vocab_size refuse the directory (naming the marker) until a prepare runs to the end, so no reader ever
 * mixes two preparations. A prepare locks DIR (DIR/.gptrain.lock) and first removes what a killed one left (its
 * staged *.new files and their temporary files); no other file of DIR is touched. Inputs are opened non-blocking and
 * must be regular files (a FIFO is refused at once).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data.h"

typedef struct Doc {
    char *path;
    uint8_t *text;
    size_t n;
} Doc;

// Read one whole file. -1 with err naming --input when it is missing, not a regular file or unreadable. Opened by
// file_open_input (non-blocking, regular files only), so a FIFO given as --input, or named *.txt in an --input
// directory, is refused at once instead of waiting for a writer.
static int read_file(const char *path, uint8_t **text, size_t *n, char *err, size_t errlen) {
    *text = NULL;
    *n = 0;
    char why[4400];
    FILE *f = file_open_input(path, why, sizeof why);
    if (!f) { snprintf(err, errlen, "--input %s", why); return -1; }
    struct stat st;
    if (fstat(fileno(f), &st)) {
        snprintf(err, errlen, "--input %s: cannot check it (%s)", path, strerror(errno));
        fclose(f);
        return -1;
    }
    const size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size + 1);
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

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_docs(Doc *docs, size_t n) {
    for (size_t i = 0; i < n; i++) { free(docs[i].path); free(docs[i].text); }
    free(docs);
}

// The documents of --input: the file itself, or the directory's *.txt files in name order. Empty input refused.
static int read_docs(const char *input, Doc **docs_out, size_t *ndocs, size_t *total, char *err, size_t errlen) {
    *docs_out = NULL;
    *ndocs = *total = 0;
    struct stat st;
    if (stat(input, &st)) { snprintf(err, errlen, "--input %s: cannot open (%s)", input, strerror(errno)); return -1; }
    char **names = NULL;
    size_t n = 0;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(input);
        if (!d) { snprintf(err, errlen, "--input %s: cannot open (%s)", input, strerror(errno)); return -1; }
        size_t cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (len < 5 || e->d_name[0] == '.' || strcmp(e->d_name + len - 4, ".txt")) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                char **g = realloc(names, cap * sizeof *names);
                if (!g) break;
                names = g;
            }
            size_t sz = strlen(input) + len + 2;
            if (!(names[n] = malloc(sz))) break;
            snprintf(names[n++], sz, "%s/%s", input, e->d_name);
        }
        closedir(d);
        if (!n) {
            snprintf(err, errlen, "--input %s: the directory holds no *.txt files, expected text documents", input);
            free(names);
            return -1;
        }
        qsort(names, n, sizeof *names, cmp_str);
    } else {
        names = malloc(sizeof *names);
        if (!names || !(names[0] = strdup(input))) { free(names); snprintf(err, errlen, "out of memory"); return -1; }
        n = 1;
    }
    Doc *docs = calloc(n, sizeof *docs);
    if (!docs) { snprintf(err, errlen, "out of memory"); return -1; }
    for (size_t i = 0; i < n; i++) {
        docs[i].path = names[i];
        if (read_file(names[i], &docs[i].text, &docs[i].n, err, errlen)) {
            for (size_t j = i + 1; j < n; j++) free(names[j]);
            free(names);
            free_docs(docs, i + 1);
            return -1;
        }
        *total += docs[i].n;
    }
    free(names);
    if (*total == 0) {
        snprintf(err, errlen, "--input %s: %s empty, expected text to tokenize", input,
                 n == 1 ? "the file is" : "every document is");
        free_docs(docs, n);
        return -1;
    }
    *docs_out = docs;
    *ndocs = n;
    return 0;
}

// ---- the output set: shards of both splits and tokenizer.txt ----

typedef struct OutFile {
    char path[4096], staged[4200];
    const uint16_t *tokens;   // NULL: the tokenizer file
    size_t ntok;
} OutFile;

// Does DIR/name look like a shard of a split (train_NNNNNN.bin / val_NNNNNN.bin)?
static int is_shard_name(const char *name) {
    size_t len = strlen(name);
    return len > 4 && !strcmp(name + len - 4, ".bin") && (!strncmp(name, "train_", 6) || !strncmp(name, "val_", 4));
}

// "<digits>.<digits>": the tail file_create_tmp gives its temporary names (PATH.tmp.<pid>.<n>).
static int is_tmp_tail(const char *s) {
    int digits = 0, dots = 0;
    for (; *s; s++) {
        if (*s == '.' && digits && !dots) { dots = 1; digits = 0; }
        else if (*s >= '0' && *s <= '9') digits++;
        else return 0;
    }
    return dots && digits;
}

// Is name a leftover of an earlier prepare killed while staging: a staged output X.new, its temporary file
// X.new.tmp.<pid>.<n> (X a shard or tokenizer.txt), or the marker's temporary file? Nothing else is touched, so the
// other files of the directory (the input text beside the shards, say) stay.
static int is_stale_staging(const char *name) {
    const char *t = strstr(name, ".tmp.");
    const size_t stem = t ? (size_t)(t - name) : strlen(name);
    char base[256];
    if ((t && !is_tmp_tail(t + 5)) || stem >= sizeof base) return 0;
    memcpy(base, name, stem);
    base[stem] = 0;
    if (t && !strcmp(base, DATA_PREPARE_MARKER)) return 1;
    if (stem < 5 || strcmp(base + stem - 4, ".new")) return 0;
    base[stem - 4] = 0;
    return is_shard_name(base) || !strcmp(base, "tokenizer.txt");
}

// Make the renames and removals so far durable before the marker that covers them goes (best effort, as in
// fileio.c: a directory that cannot be opened is written all the same).
static void fsync_dir(const char *dir) {
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { fsync(fd); close(fd); }
}

// Fault injection for the interrupted-prepare tests: GPTRAIN_TEST_DIE_AFTER_RENAMES=N exits (status 9, as a kill
// would leave things) after the N-th rename of the new set into place.
static void maybe_die_after_renames(int done) {
    const char *e = getenv("GPTRAIN_TEST_DIE_AFTER_RENAMES");
    if (e && *e && atoi(e) == done) _exit(9);
}

int data_check_complete(const char *dir, char *err, size_t errlen) {
    char marker[4200];
    struct stat st;
    snprintf(marker, sizeof marker, "%s/%s", dir, DATA_PREPARE_MARKER);
    if (lstat(marker, &st)) return 0;   // absent (or DIR unreadable: the caller's own open reports that)
    snprintf(err, errlen, "an interrupted prepare left a mix of two datasets here (%s): run gptrain prepare again",
             marker);
    return -1;
}

// The set goes into place in four steps, so that no reader ever takes a mix of two sets for one:
//   1. every output is written whole, atomically, as PATH.new (a failure here leaves the old set as it was);
//   2. the marker DIR/.prepare-incomplete is written atomically, listing the renames and removals to come;
//   3. each PATH.new is renamed over PATH, then the old set's shards this one does not replace are removed, and the
//      directory is fsynced;
//   4. the marker is removed (and the directory fsynced).
// A kill or crash during step 3 leaves the marker, and every reader of the directory (data_loader_open,
// data_vocab_size) refuses it until a prepare runs to the end; such a prepare first removes the staged files a
// killed one left. Renames of several files cannot be one atomic step in POSIX without moving the whole directory,
// which would take every other file in it along; the marker makes the set's state visible instead.
static int write_outputs(const char *out_dir, OutFile *outs, int nout, const char *tok_text, char *err,
                         size_t errlen) {
    for (int i = 0; i < nout; i++) {
        struct stat st;
        if (!lstat(outs[i].path, &st) && !S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "--out %s: %s exists and is not a regular file, expected a file prepare may replace",
                     out_dir, outs[i].path);
            return -1;
        }
        snprintf(outs[i].staged, sizeof outs[i].staged, "%s.new", outs[i].path);
    }
    if (access(out_dir, W_OK | X_OK)) {
        snprintf(err, errlen, "--out %s: cannot write into it (%s), expected a writable directory", out_dir,
                 strerror(errno));
        return -1;
    }
    // The leftovers of a prepare killed before it finished (the directory is locked: none is a live one's), and the
    // shards of an earlier set that this one will not replace.
    char **stale = NULL;
    size_t nstale = 0, cap = 0;
    DIR *d = opendir(out_dir);
    if (!d) {
        snprintf(err, errlen, "--out %s: cannot list it (%s)", out_dir, strerror(errno));
        return -1;
    }
    for (struct dirent *e; (e = readdir(d));) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", out_dir, e->d_name);
        if (is_stale_staging(e->d_name)) { unlink(p); continue; }
        if (!is_shard_name(e->d_name)) continue;
        int ours = 0;
        for (int j = 0; j < nout && !ours; j++) ours = !strcmp(p, outs[j].path);
        if (ours) continue;
        if (nstale == cap) {
            cap = cap ? 2 * cap : 16;
            char **g = realloc(stale, cap * sizeof *stale);
            if (!g) break;
            stale = g;
        }
        if (!(stale[nstale] = strdup(p))) break;
        nstale++;
    }
    closedir(d);
    int rc = -1, i = 0;
    for (; i < nout; i++) {
        int wrc;
        if (outs[i].tokens) wrc = shard_write(outs[i].staged, outs[i].tokens, outs[i].ntok, err, errlen);
        else {
            char tmp[4300];
            FILE *f = file_create_tmp(outs[i].staged, tmp, sizeof tmp, err, errlen);
            errno = 0;
            wrc = !f ? -1 : file_commit_tmp(f, tmp, outs[i].staged, !file_write(f, tok_text, strlen(tok_text)), err,
                                            errlen);
        }
        if (wrc) break;
    }
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/%s", out_dir, DATA_PREPARE_MARKER);
    if (i == nout) {
        char tmp[4300];
        FILE *f = file_create_tmp(marker, tmp, sizeof tmp, err, errlen);
        if (f) {
            errno = 0;
            static const char head[] = "gptrain prepare: while this file exists, this directory may hold a mix of "
                                       "two prepared datasets (a prepare was stopped while moving its files into "
                                       "place): run gptrain prepare again. The moves:\n";
            char line[8500];
            int ok = !file_write(f, head, strlen(head));
            for (int j = 0; ok && j < nout; j++) {
                snprintf(line, sizeof line, "rename %s %s\n", outs[j].staged, outs[j].path);
                ok = !file_write(f, line, strlen(line));
            }
            for (size_t j = 0; ok && j < nstale; j++) {
                snprintf(line, sizeof line, "remove %s\n", stale[j]);
                ok = !file_write(f, line, strlen(line));
            }
            if (!file_commit_tmp(f, tmp, marker, ok, err, errlen)) rc = 0;
        }
    }
    if (rc) {   // nothing moved yet: the previous set stands
        for (int j = 0; j < i && j < nout; j++) unlink(outs[j].staged);
        goto done;
    }
    rc = -1;
    for (i = 0; i < nout; i++) {
        if (rename(outs[i].staged, outs[i].path)) {
            snprintf(err, errlen, "%s: cannot move %s into place (%s); %s now mixes two datasets, as %s says: run "
                     "gptrain prepare again", outs[i].path, outs[i].staged, strerror(errno), out_dir, marker);
            for (int j = i; j < nout; j++) unlink(outs[j].staged);
            goto done;
        }
        maybe_die_after_renames(i + 1);
    }
    for (size_t j = 0; j < nstale; j++) unlink(stale[j]);
    fsync_dir(out_dir);
    if (unlink(marker)) {
        snprintf(err, errlen, "%s: cannot remove it (%s); the new set is complete: remove the file", marker,
                 strerror(errno));
        goto done;
    }
    fsync_dir(out_dir);
    rc = 0;
done:
    for (size_t j = 0; j < nstale; j++) free(stale[j]);
    free(stale);
    return rc;
}

int data_prepare(const char *input_path, const char *out_dir, const char *tokenizer, double val_fraction,
                 long shard_tokens, char *err, size_t errlen) {
    const int gpt2 = !strcmp(tokenizer, "gpt2");
    if (!gpt2 && strcmp(tokenizer, "char")) {
        snprintf(err, errlen, "--tokenizer %s: expected char or gpt2", tokenizer);
        return -1;
    }
    if (!(val_fraction >= 0 && val_fraction < 1)) {
        snprintf(err, errlen, "--val-fraction %g: expected a fraction from 0 (no val split) up to, not including, 1",
                 val_fraction);
        return -1;
    }
    if (shard_tokens < 1 || shard_tokens > 0x7fffffffL) {
        snprintf(err, errlen, "--shard-tokens %ld: expected 1 to 2^31 - 1 tokens per shard", shard_tokens);
        return -1;
    }
    Doc *docs;
    size_t ndocs, total;
    if (read_docs(input_path, &docs, &ndocs, &total, err, errlen)) return -1;
    // Both tokenizers make at most one token per byte, plus one <|endoftext|> per document.
    uint16_t *tokens = malloc((total + ndocs) * sizeof(uint16_t));
    Gpt2Bpe *bpe = NULL;
    CharTokenizer ct;
    char tok_text[8192];
    size_t n = 0;
    int rc = -1;
    double t0 = 0, t1 = 0;
    OutFile *outs = NULL;
    int lock_fd = -1;
    if (!tokens) { snprintf(err, errlen, "--input %s: out of memory for %zu tokens", input_path, total); goto done; }
    struct timespec ts;
    if (gpt2) {
        if (gpt2_bpe_load(&bpe, gpt2_default_dir(), err, errlen)) goto done;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t0 = ts.tv_sec + 1e-9 * ts.tv_nsec;
        for (size_t i = 0; i < ndocs; i++) {
            size_t m;
            tokens[n++] = GPT2_EOT;
            if (gpt2_bpe_encode(bpe, docs[i].text, docs[i].n, tokens + n, &m, err, errlen)) goto done;
            n += m;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t1 = ts.tv_sec + 1e-9 * ts.tv_nsec;
        snprintf(tok_text, sizeof tok_text, "%s", GPT2_TOKENIZER_TEXT);
    } else {
        // The vocabulary is every byte value of the input, so encoding cannot fail; the check stays for the invariant.
        int seen[256] = {0};
        uint8_t present[256];
        int np = 0;
        for (size_t i = 0; i < ndocs; i++)
            for (size_t j = 0; j < docs[i].n; j++) seen[docs[i].text[j]] = 1;
        for (int b = 0; b < 256; b++) if (seen[b]) present[np++] = (uint8_t)b;
        char_tokenizer_build(&ct, present, (size_t)np);
        for (size_t i = 0; i < ndocs; i++) {
            if (char_tokenizer_encode(&ct, docs[i].text, docs[i].n, tokens + n, err, errlen)) goto done;
            n += docs[i].n;
        }
        int len = snprintf(tok_text, sizeof tok_text, "gptrain-tokenizer 1\ntype char\nvocab_size %d\nbytes",
                           ct.vocab_size);
        for (int i = 0; i < ct.vocab_size; i++) len += snprintf(tok_text + len, sizeof tok_text - len, " %d", ct.bytes[i]);
        snprintf(tok_text + len, sizeof tok_text - len, "\n");
    }
    const size_t ntrain = (size_t)((double)n * (1.0 - val_fraction)), nval = n - ntrain;
    if ((nval == 0 && val_fraction > 0) || ntrain == 0) {
        snprintf(err, errlen, "--val-fraction %g: leaves an empty split of the %zu tokens of %s (train %zu, val %zu), "
                 "expected both non-empty", val_fraction, n, input_path, ntrain, nval);
        goto done;
    }
    const size_t st = (size_t)shard_tokens;
    const size_t ntr_sh = (ntrain + st - 1) / st, nva_sh = (nval + st - 1) / st;
    if (ntr_sh > 999999 || nva_sh > 999999) {
        snprintf(err, errlen, "--shard-tokens %ld: makes more than 999999 shards of %zu tokens", shard_tokens, n);
        goto done;
    }
    const int nout = (int)(ntr_sh + nva_sh) + 1;
    outs = calloc((size_t)nout, sizeof *outs);
    if (!outs) { snprintf(err, errlen, "out of memory"); goto done; }
    int k = 0;
    for (int split = 0; split < 2; split++) {
        const size_t base = split ? ntrain : 0, cnt = split ? nval : ntrain, nsh = split ? nva_sh : ntr_sh;
        for (size_t s = 0; s < nsh; s++, k++) {
            snprintf(outs[k].path, sizeof outs[k].path, "%s/%s_%06zu.bin", out_dir, split ? "val" : "train", s);
            outs[k].tokens = tokens + base + s * st;
            outs[k].ntok = cnt - s * st < st ? cnt - s * st : st;
        }
    }
    snprintf(outs[k].path, sizeof outs[k].path, "%s/tokenizer.txt", out_dir);
    if (strlen(out_dir) > 3900) { snprintf(err, errlen, "--out %s: path too long", out_dir); goto done; }
    if (file_mkdirs(out_dir, "--out", err, errlen)) goto done;
    // One prepare at a time per directory: two would interleave their renames (a mix of two sets), and each would
    // take the other's staged files for a killed prepare's leftovers.
    if ((lock_fd = file_lock_dir(out_dir, "--out", err, errlen)) < 0) goto done;
    if (write_outputs(out_dir, outs, nout, tok_text, err, errlen)) goto done;
    printf("prepare: %s: %zu document%s, %zu bytes -> %zu tokens, vocab %d (%s)", input_path, ndocs,
           ndocs == 1 ? "" : "s", total, n, gpt2 ? GPT2_VOCAB_SIZE : ct.vocab_size, tokenizer);
    if (gpt2) printf(", encoded in %.3f s (%.1f MB/s)", t1 - t0, total / 1e6 / (t1 - t0 > 0 ? t1 - t0 : 1e-9));
    printf("; train %zu tokens in %zu shard%s, ", ntrain, ntr_sh, ntr_sh == 1 ? "" : "s");
    if (nval) printf("val %zu tokens in %zu shard%s -> %s\n", nval, nva_sh, nva_sh == 1 ? "" : "s", out_dir);
    else printf("no val split (--val-fraction 0: train with --val-data GLOB or --eval-every -1) -> %s\n", out_dir);
    rc = 0;
done:
    if (lock_fd >= 0) close(lock_fd);   // the lock is released with its descriptor
    free(outs);
    if (bpe) gpt2_bpe_free(bpe);
    free(tokens);
    free_docs(docs, ndocs);
    return rc;
}
