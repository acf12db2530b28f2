/*
 * test_loader.c: the data room. Shard format round trip and every refusal (missing, not a file, truncated, trailing
 * bytes, wrong magic, wrong version, token outside the vocabulary, too few tokens); shards concatenated in file-name
 * order; the loader's llm.c order (shuffle off) against the formula [k·B·T, k·B·T + B·T + 1) with its reset, per-rank
 * striding; shuffled windows that are real contiguous windows, repeat for a seed, cover every window once per epoch
 * and survive splits barely longer than one batch; the character tokenizer round trip over the vendored Tiny
 * Shakespeare; prepare's output decoding back to its text, and its refusals, which leave an existing set of shards
 * untouched. Runs from the repository root (it reads data/tinyshakespeare/input.txt).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "harness.h"

static char ROOT[256];   // the mkdtemp directory every file of this test lives under

// ROOT/sub/name, creating ROOT/sub.
static void path_of(char *out, size_t n, const char *sub, const char *name) {
    snprintf(out, n, "%s/%s", ROOT, sub);
    mkdir(out, 0755);
    snprintf(out, n, "%s/%s/%s", ROOT, sub, name);
}

// A refusal passes when the call returned -1 and its one-line message holds both expected pieces.
static void expect_fail(int rc, const char *err, const char *want1, const char *want2, const char *name) {
    int ok = rc == -1 && strstr(err, want1) && (!want2 || strstr(err, want2)) && !strchr(err, '\n');
    harness_case(ok, name, "rc %d: %s", rc, err);
}

static void write_raw(const char *path, const int32_t *hdr, const uint16_t *tok, size_t ntok, size_t extra) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(hdr, sizeof(int32_t), 256, f);
    fwrite(tok, sizeof(uint16_t), ntok, f);
    for (size_t i = 0; i < extra; i++) fputc(0, f);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

// Over a source with tok[i] = i, every row of a batch must be the window [s, s + T] for some s with s + T < n.
static int rows_are_windows(const int32_t *in, const int32_t *tg, int B, int T, size_t n) {
    for (int r = 0; r < B; r++) {
        const int32_t s = in[r * T];
        if (s < 0 || (size_t)s + T >= n) return 0;
        for (int t = 0; t < T; t++)
            if (in[r * T + t] != s + t || tg[r * T + t] != s + t + 1) return 0;
    }
    return 1;
}

// Identity of a file's contents: a rename over it changes the inode, a rewrite in place the mtime.
static int same_file(const struct stat *a, const char *path) {
    struct stat b;
    return !stat(path, &b) && a->st_ino == b.st_ino && a->st_size == b.st_size &&
           a->st_mtim.tv_sec == b.st_mtim.tv_sec && a->st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

// The split's stream in name order equals seq[0..n).
static int tokens_equal(const DataLoader *dl, const uint16_t *seq, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (data_loader_token(dl, i) != seq[i]) return 0;
    return 1;
}

// Two loaders serve the same next k batches (copying form).
static int same_batches(DataLoader *a, DataLoader *b, int k, size_t bt) {
    int32_t *i1 = malloc(bt * 4), *t1 = malloc(bt * 4), *i2 = malloc(bt * 4), *t2 = malloc(bt * 4);
    int same = 1;
    for (int j = 0; j < k; j++) {
        data_loader_next(a, i1, t1);
        data_loader_next(b, i2, t2);
        if (memcmp(i1, i2, bt * 4) || memcmp(t1, t2, bt * 4)) same = 0;
    }
    free(i1), free(t1), free(i2), free(t2);
    return same;
}

// In a child process (its limits and mappings die with it): make the mapping limit bite, then open ROOT/many's 20
// shards, and return the loader's message through a pipe. how 'm': take every mapping vm.max_map_count allows but
// 6 (one-page anonymous mappings with alternating protections, so the kernel cannot merge them), as ~65k shards do;
// how 'a': an address-space limit (RLIMIT_AS) 4 MiB above what the process uses. rc is the open's result in the
// child, or -2 when the limit could not be set up.
static int open_under_limit(const char *dir, char how, char *msg, size_t n) {
    int fds[2];
    msg[0] = 0;
    if (pipe(fds)) return -2;
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0) return -2;
    if (pid == 0) {
        close(fds[0]);
        alarm(30);
        char err[1024] = "";
        int rc = -2;
        if (how == 'm') {
            FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
            long max = 0;
            if (f) { if (fscanf(f, "%ld", &max) != 1) max = 0; fclose(f); }
            void **maps = max > 0 && max <= 1000000 ? malloc((size_t)max * sizeof *maps) : NULL;
            long got = 0;
            for (; maps && got < max; got++) {
                maps[got] = mmap(NULL, 4096, got % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (maps[got] == MAP_FAILED) break;
            }
            if (maps && got > 6 && got < max) {
                for (long k = got - 6; k < got; k++) munmap(maps[k], 4096);
                rc = 0;
            }
        } else {
            FILE *f = fopen("/proc/self/status", "r");
            char line[256];
            long long kib = 0;
            while (f && fgets(line, sizeof line, f))
                if (sscanf(line, "VmSize: %lld kB", &kib) == 1) break;
            if (f) fclose(f);
            struct rlimit lim = {(rlim_t)(kib + 4096) * 1024, (rlim_t)(kib + 4096) * 1024};
            if (kib > 0 && !setrlimit(RLIMIT_AS, &lim)) rc = 0;
        }
        if (!rc) {
            DataLoader dl;
            rc = data_loader_open(&dl, dir, "train", 1, 8, 0, 1, 0, 1, 0, err, sizeof err);
            if (!rc) data_loader_close(&dl);
        }
        const size_t len = strlen(err);
        if (write(fds[1], err, len) != (ssize_t)len) rc = -3;
        _exit(rc == 0 ? 0 : rc == -1 ? 1 : 3);
    }
    close(fds[1]);
    size_t got = 0;
    for (ssize_t r; got + 1 < n && (r = read(fds[0], msg + got, n - 1 - got)) > 0;) got += (size_t)r;
    msg[got] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status)) { snprintf(msg, n, "child killed by signal %d", WTERMSIG(status)); return -2; }
    return WEXITSTATUS(status) == 0 ? 0 : WEXITSTATUS(status) == 1 ? -1 : -2;
}

int main(void) {
    char err[1024], p[1024], dir[512];
    snprintf(ROOT, sizeof ROOT, "/tmp/gptrain-test-loader-XXXXXX");
    if (!mkdtemp(ROOT)) { perror("mkdtemp"); return 1; }

    // ---- shards: a split of 1000 tokens, tok[i] = i % 61 ----
    enum { NT = 1000 };
    uint16_t tok[NT];
    for (int i = 0; i < NT; i++) tok[i] = (uint16_t)(i % 61);
    path_of(p, sizeof p, "ok", "train_000000.bin");
    int rc = shard_write(p, tok, NT, err, sizeof err);
    harness_case(!rc, "shard_write", "%s", rc ? err : p);
    uint16_t *back = NULL;
    size_t nback = 0;
    rc = shard_read(p, &back, &nback, 61, err, sizeof err);
    harness_case(!rc && nback == NT && !memcmp(back, tok, sizeof tok), "shard round trip", "%zu tokens", nback);
    free(back);
    int32_t hdr[256] = {0};
    struct stat st;
    FILE *f = fopen(p, "rb");
    size_t got = f ? fread(hdr, 4, 256, f) : 0;
    if (f) fclose(f);
    harness_case(got == 256 && hdr[0] == 20240520 && hdr[1] == 1 && hdr[2] == NT && !stat(p, &st) &&
                     st.st_size == 1024 + 2 * NT,
                 "shard header and size are llm.c's", "%d %d %d, %lld bytes", hdr[0], hdr[1], hdr[2],
                 (long long)st.st_size);
    {
        // Temp files are TARGET.tmp.<pid>.<n>: scan the directory for any name holding ".tmp".
        snprintf(dir, sizeof dir, "%s/ok", ROOT);
        DIR *d = opendir(dir);
        int ntmp = d ? 0 : -1;
        char left[256] = "";
        for (struct dirent *e; d && (e = readdir(d));)
            if (strstr(e->d_name, ".tmp")) {
                ntmp++;
                snprintf(left, sizeof left, "%s", e->d_name);
            }
        if (d) closedir(d);
        harness_case(ntmp == 0, "shard_write leaves no temp file behind", "%d left (%s)", ntmp, left);
    }

    // ---- shuffle off: llm.c order ----
    snprintf(dir, sizeof dir, "%s/ok", ROOT);
    enum { B = 3, T = 16, BT = B * T };
    DataLoader dl;
    int32_t in[BT], tg[BT], in2[BT], tg2[BT], first_in[BT], first_tg[BT];
    rc = data_loader_open(&dl, dir, "train", B, T, 0, 1, 0, 1, 61, err, sizeof err);
    harness_case(!rc && dl.ntok == NT, "loader open", "%s", rc ? err : dir);
    if (!rc) {
        // 1000 tokens hold floor(999 / 48) = 20 batches; batch 20 is batch 0 again.
        int k_bad = -1;
        for (int k = 0; k < 25; k++) {
            data_loader_next(&dl, in, tg);
            const size_t s = (size_t)(k % 20) * BT;
            for (int i = 0; i < BT; i++)
                if (in[i] != tok[s + i] || tg[i] != tok[s + i + 1]) k_bad = k;
        }
        harness_case(k_bad < 0, "shuffle off: batch k covers [k·B·T, k·B·T + B·T + 1), back to 0 after the last",
                     "first bad batch %d of 25", k_bad);
        data_loader_reset(&dl);
        data_loader_next(&dl, in, tg);
        int reset_ok = dl.batches == 1;
        for (int i = 0; i < BT; i++)
            if (in[i] != tok[i] || tg[i] != tok[i + 1]) reset_ok = 0;
        harness_case(reset_ok, "shuffle off: reset returns to batch 0", "after 25 batches");
        data_loader_close(&dl);
    }

    // Per-rank striding: batch k of rank r of 2 is one rank's batch 2k + r; each rank wraps after its 10th batch
    // (rank 0's next start 960 + 49 > 1000, rank 1's 1008), so 10 batches of each cover one rank's first 20.
    {
        DataLoader r[2];
        int opened = !data_loader_open(&r[0], dir, "train", B, T, 0, 2, 0, 1, 61, err, sizeof err) &&
                     !data_loader_open(&r[1], dir, "train", B, T, 1, 2, 0, 1, 61, err, sizeof err);
        int bad_k = -1;
        for (int k = 0; opened && k < 15; k++)
            for (int rank = 0; rank < 2; rank++) {
                data_loader_next(&r[rank], in, tg);
                const size_t s = (size_t)(2 * (k % 10) + rank) * BT;
                for (int i = 0; i < BT; i++)
                    if (in[i] != tok[s + i] || tg[i] != tok[s + i + 1]) bad_k = k;
            }
        harness_case(opened && bad_k < 0, "per-rank striding: rank r of 2 reads batch 2k + r, wrapping per rank",
                     "15 batches each, first bad %d%s%s", bad_k, opened ? "" : ": ", opened ? "" : err);
        if (opened) { data_loader_close(&r[0]); data_loader_close(&r[1]); }
    }

    // ---- shuffle on: contiguous, deterministic for a seed, different across seeds, reset repeats ----
    {
        DataLoader a, b, c;
        int opened = !data_loader_open(&a, dir, "train", B, T, 0, 1, 1, 7, 61, err, sizeof err) &&
                     !data_loader_open(&b, dir, "train", B, T, 0, 1, 1, 7, 61, err, sizeof err) &&
                     !data_loader_open(&c, dir, "train", B, T, 0, 1, 1, 8, 61, err, sizeof err);
        harness_case(opened, "shuffle on: open", "%s", opened ? dir : err);
        if (opened) {
            int same = 1, differ = 0, contiguous = 1;
            for (int k = 0; k < 5; k++) {
                data_loader_next(&a, in, tg);
                if (k == 0) { memcpy(first_in, in, sizeof in); memcpy(first_tg, tg, sizeof tg); }
                data_loader_next(&b, in2, tg2);
                if (memcmp(in, in2, sizeof in) || memcmp(tg, tg2, sizeof tg)) same = 0;
                data_loader_next(&c, in2, tg2);
                if (memcmp(in, in2, sizeof in)) differ = 1;
                // Source tok[i] = i % 61: a row is a window of it iff each token is the previous one plus 1 mod 61.
                for (int i = 0; i < BT; i++)
                    if (tg[i] != (in[i] + 1) % 61 || (i % T && in[i] != (in[i - 1] + 1) % 61)) contiguous = 0;
            }
            harness_case(same, "shuffle on: same seed, same batches", "5 batches, inputs and targets");
            harness_case(differ, "shuffle on: another seed, other batches", "seed 7 vs 8");
            harness_case(contiguous, "shuffle on: rows are contiguous windows, targets shifted by one", "5 batches");
            data_loader_reset(&a);
            data_loader_next(&a, in, tg);
            harness_case(!memcmp(in, first_in, sizeof in) && !memcmp(tg, first_tg, sizeof tg) && a.batches == 1,
                         "shuffle on: reset reproduces the first batch", "seed 7");
            data_loader_close(&a);
            data_loader_close(&b);
            data_loader_close(&c);
        }
    }

    // Epochs over tok[i] = i (a row's first input is its start): within one epoch every window offset + i*T appears
    // exactly once; ranks 0 and 1 of 2 take alternate windows of the same permutation.
    uint16_t seq[NT];
    for (int i = 0; i < NT; i++) seq[i] = (uint16_t)i;
    path_of(p, sizeof p, "seq", "train_000000.bin");
    shard_write(p, seq, NT, err, sizeof err);
    snprintf(dir, sizeof dir, "%s/seq", ROOT);
    {
        DataLoader e, q0, q1;
        int opened = !data_loader_open(&e, dir, "train", 1, T, 0, 1, 1, 3, 0, err, sizeof err) &&
                     !data_loader_open(&q0, dir, "train", 1, T, 0, 2, 1, 3, 0, err, sizeof err) &&
                     !data_loader_open(&q1, dir, "train", 1, T, 1, 2, 1, 3, 0, err, sizeof err);
        harness_case(opened, "shuffle on: open over tok[i] = i", "%s", opened ? dir : err);
        if (opened) {
            const size_t off = e.offset, nwin = e.nwin;
            int seen[NT] = {0}, epoch_ok = off < T && nwin == (NT - 1 - off) / T;
            for (size_t w = 0; w < nwin; w++) {
                data_loader_next(&e, in, tg);
                const size_t s = (size_t)in[0];
                if (!rows_are_windows(in, tg, 1, T, NT) || s < off || (s - off) % T || seen[s]++) epoch_ok = 0;
            }
            harness_case(epoch_ok && e.epoch == 1, "shuffle on: one epoch reads every window once",
                         "offset %zu, %zu windows", off, nwin);
            data_loader_next(&e, in, tg);
            harness_case(e.epoch == 2, "shuffle on: the next batch starts a new epoch", "epoch %llu",
                         (unsigned long long)e.epoch);
            data_loader_reset(&e);
            int split_ok = 1;
            for (int k = 0; k < 10; k++) {
                data_loader_next(&e, in, tg);
                data_loader_next(&q0, in2, tg2);
                if (in[0] != in2[0] || tg[T - 1] != tg2[T - 1]) split_ok = 0;
                data_loader_next(&e, in, tg);
                data_loader_next(&q1, in2, tg2);
                if (in[0] != in2[0] || tg[T - 1] != tg2[T - 1]) split_ok = 0;
            }
            harness_case(split_ok, "shuffle on: ranks 0 and 1 of 2 interleave one rank's windows", "10 windows each");
            data_loader_close(&e);
            data_loader_close(&q0);
            data_loader_close(&q1);
        }
    }

    // Splits barely longer than one batch for every rank: an epoch's offset must still leave each rank a window
    // (B = 1 over T + 1 tokens has one window at offset 0 only; world 2 over 2T + 1 has two).
    {
        const struct { int n, world; } cases[2] = {{T + 1, 1}, {2 * T + 1, 2}};
        int all_ok = 1;
        for (int ci = 0; ci < 2; ci++) {
            char name[32];
            snprintf(name, sizeof name, "tiny%d", ci);
            path_of(p, sizeof p, name, "train_000000.bin");
            shard_write(p, seq, (size_t)cases[ci].n, err, sizeof err);
            snprintf(dir, sizeof dir, "%s/%s", ROOT, name);
            for (int rank = 0; rank < cases[ci].world; rank++)
                for (uint64_t seed = 0; seed < 20; seed++) {
                    DataLoader t;
                    if (data_loader_open(&t, dir, "train", 1, T, rank, cases[ci].world, 1, seed, 0, err, sizeof err)) {
                        all_ok = 0;
                        continue;
                    }
                    for (int k = 0; k < 30; k++) {
                        data_loader_next(&t, in, tg);
                        if (!rows_are_windows(in, tg, 1, T, (size_t)cases[ci].n)) all_ok = 0;
                    }
                    data_loader_close(&t);
                }
        }
        harness_case(all_ok, "shuffle on: splits of T+1 (world 1) and 2T+1 (world 2) tokens serve real windows",
                     "20 seeds x 30 batches per rank");
    }

    // Shards concatenate in file-name order, whatever order they were written in.
    path_of(p, sizeof p, "multi", "train_000001.bin");
    shard_write(p, seq + 500, NT - 500, err, sizeof err);
    path_of(p, sizeof p, "multi", "train_000000.bin");
    shard_write(p, seq, 500, err, sizeof err);
    path_of(p, sizeof p, "multi", "val_000000.bin");   // another split's shard is not read
    shard_write(p, seq, 100, err, sizeof err);
    snprintf(dir, sizeof dir, "%s/multi", ROOT);
    rc = data_loader_open(&dl, dir, "train", B, T, 0, 1, 0, 1, 0, err, sizeof err);
    harness_case(!rc && dl.ntok == NT && tokens_equal(&dl, seq, NT), "two shards concatenate in name order",
                 "%s", rc ? err : dir);
    if (!rc) data_loader_close(&dl);

    // The wrap boundary: a batch needs B·T + 1 tokens, so 961 tokens hold 20 batches of 48 and 960 only 19.
    {
        const int sizes[2] = {20 * BT + 1, 20 * BT}, batches[2] = {20, 19};
        int bad = -1;
        for (int ci = 0; ci < 2; ci++) {
            char name[32];
            snprintf(name, sizeof name, "edge%d", ci);
            path_of(p, sizeof p, name, "train_000000.bin");
            shard_write(p, seq, (size_t)sizes[ci], err, sizeof err);
            snprintf(dir, sizeof dir, "%s/%s", ROOT, name);
            if (data_loader_open(&dl, dir, "train", B, T, 0, 1, 0, 1, 0, err, sizeof err)) { bad = ci; continue; }
            for (int k = 0; k < 2 * batches[ci] + 1; k++) {
                data_loader_next(&dl, in, tg);
                if (!rows_are_windows(in, tg, B, T, (size_t)sizes[ci]) || in[0] != (k % batches[ci]) * BT) bad = ci;
            }
            data_loader_close(&dl);
        }
        harness_case(bad < 0, "shuffle off: 961 tokens serve 20 batches of B·T = 48, 960 tokens 19, then wrap",
                     "first bad size %d", bad < 0 ? 0 : sizes[bad]);
    }

    // ---- streamed shards: straddling windows, globs, prefetch, seek ----
    {
        // seq[i] = i % 1000 split unevenly over four shards (300, 7, 450, 243 tokens): windows straddle the joins,
        // one shard is shorter than a window.
        static uint16_t big[1000];
        for (int i = 0; i < 1000; i++) big[i] = (uint16_t)i;
        const size_t cut[5] = {0, 300, 307, 757, 1000};
        for (int k = 0; k < 4; k++) {
            char name[32];
            snprintf(name, sizeof name, "train_%06d.bin", k);
            path_of(p, sizeof p, "four", name);
            shard_write(p, big + cut[k], cut[k + 1] - cut[k], err, sizeof err);
        }
        snprintf(dir, sizeof dir, "%s/four", ROOT);
        DataLoader a, b;
        int32_t wi[BT], wt[BT];
        int ok = !data_loader_open(&a, dir, "train", B, T, 0, 1, 0, 1, 1000, err, sizeof err);
        int straddle_ok = ok && a.nshards == 4 && a.ntok == 1000 && tokens_equal(&a, big, 1000);
        for (int k = 0; ok && k < 20; k++) {
            data_loader_next(&a, wi, wt);
            for (int i = 0; i < BT; i++)
                if (wi[i] != k * BT + i || wt[i] != k * BT + i + 1) straddle_ok = 0;
        }
        harness_case(straddle_ok, "four shards read as one stream, windows straddling the joins", "%s",
                     ok ? "20 batches of 48" : err);
        if (ok) data_loader_close(&a);

        // Shuffle on over four shards: real windows of the stream in the epoch's shard order, each window once.
        ok = !data_loader_open(&a, dir, "train", 1, T, 0, 1, 1, 5, 1000, err, sizeof err);
        int cover_ok = ok, orders_differ = 0;
        uint32_t first_order[4] = {0};
        for (int e = 0; ok && e < 6; e++) {
            static int seen[1000];
            memset(seen, 0, sizeof seen);
            // An epoch's order is drawn when its first window is read: read it, then look at the order.
            data_loader_next(&a, wi, wt);
            const size_t nwin = a.nwin;
            uint32_t ord[4];
            memcpy(ord, a.order, sizeof ord);
            if (e == 0) memcpy(first_order, ord, sizeof ord);
            else if (memcmp(first_order, ord, sizeof ord)) orders_differ = 1;
            for (size_t w = 0; w < nwin; w++) {
                if (w) data_loader_next(&a, wi, wt);
                // Within a shard consecutive tokens are consecutive ids; across a join the ids jump from the end of
                // shard ord[k] to the start of shard ord[k+1].
                for (int t = 1; t < T; t++) {
                    if (wi[t] != wi[t - 1] + 1) {
                        int joined = 0;
                        for (int k = 0; k < 3; k++)
                            if ((size_t)wi[t - 1] + 1 == cut[ord[k] + 1] && (size_t)wi[t] == cut[ord[k + 1]]) joined = 1;
                        if (!joined) cover_ok = 0;
                    }
                }
                if (seen[wi[0]]++) cover_ok = 0;
            }
            if (a.epoch != (uint64_t)e + 1) cover_ok = 0;
        }
        harness_case(cover_ok && orders_differ, "shuffle on: shard order permuted per epoch, windows real and once each",
                     "%s", ok ? "6 epochs, seed 5" : err);
        if (ok) data_loader_close(&a);

        // A glob gives the same loader as the directory; a glob that matches nothing names the flag.
        char pat[600];
        snprintf(pat, sizeof pat, "%s/four/train_*.bin", ROOT);
        ok = !data_loader_open_glob(&a, pat, "--train-data", B, T, 0, 1, 1, 9, 1000, err, sizeof err) &&
             !data_loader_open(&b, dir, "train", B, T, 0, 1, 1, 9, 1000, err, sizeof err);
        harness_case(ok && same_batches(&a, &b, 40, BT), "--train-data GLOB serves what --data DIR does", "%s",
                     ok ? pat : err);
        if (ok) { data_loader_close(&a); data_loader_close(&b); }
        snprintf(pat, sizeof pat, "%s/four/nothing_*.bin", ROOT);
        expect_fail(data_loader_open_glob(&a, pat, "--train-data", B, T, 0, 1, 1, 9, 1000, err, sizeof err), err,
                    "--train-data", "matches no file", "loader: a glob that matches nothing");

        // The prefetch thread serves exactly the synchronous sequence, for both orders and two ranks.
        int pf_ok = 1;
        for (int shuffle = 0; shuffle < 2; shuffle++)
            for (int rank = 0; rank < 2; rank++) {
                if (data_loader_open(&a, dir, "train", 2, T, rank, 2, shuffle, 3, 1000, err, sizeof err) ||
                    data_loader_open(&b, dir, "train", 2, T, rank, 2, shuffle, 3, 1000, err, sizeof err) ||
                    data_loader_start_prefetch(&b, 3, NULL, NULL, err, sizeof err)) { pf_ok = 0; continue; }
                if (!same_batches(&a, &b, 200, 2 * T)) pf_ok = 0;
                data_loader_reset(&a);
                data_loader_reset(&b);
                if (!same_batches(&a, &b, 50, 2 * T)) pf_ok = 0;
                data_loader_close(&a);
                data_loader_close(&b);
            }
        harness_case(pf_ok, "prefetch thread serves the synchronous sequence (shuffle off/on, 2 ranks, reset)",
                     "200 + 50 batches each");

        // Seek(n) continues exactly where n batches left off, with and without the thread, across epochs.
        int seek_ok = 1;
        for (int shuffle = 0; shuffle < 2; shuffle++) {
            const int n = 37;   // several epochs of 1000 / 16 windows at B = 3
            if (data_loader_open(&a, dir, "train", B, T, 0, 1, shuffle, 11, 1000, err, sizeof err) ||
                data_loader_open(&b, dir, "train", B, T, 0, 1, shuffle, 11, 1000, err, sizeof err) ||
                data_loader_start_prefetch(&b, 2, NULL, NULL, err, sizeof err)) { seek_ok = 0; continue; }
            for (int k = 0; k < n; k++) data_loader_next(&a, wi, wt);
            data_loader_next(&b, wi, wt);   // the thread is running ahead when the seek comes
            data_loader_seek(&b, n);
            if (b.batches != (uint64_t)n || !same_batches(&a, &b, 60, BT)) seek_ok = 0;
            data_loader_close(&a);
            data_loader_close(&b);
        }
        harness_case(seek_ok, "seek(37) continues as the uninterrupted loader (shuffle off/on, prefetching)",
                     "60 batches after the seek");

        // A token outside the vocabulary in a split read lazily is reported when its batch is read, naming the shard.
        const int32_t *pi, *pt;
        ok = !data_loader_open(&a, dir, "train", B, T, 0, 1, 0, 1, 0, err, sizeof err);   // no check at open
        if (ok) {
            a.vocab_size = 310;   // shard 2 starts at id 307: id 310 is its position 3, read by batch 6
            int rcb = 0;
            for (int k = 0; k < 8 && !rcb; k++) rcb = data_loader_next_batch(&a, &pi, &pt, NULL, err, sizeof err);
            harness_case(rcb && strstr(err, "train_000002.bin: token 310 at position 3 is outside the vocabulary (size 310)"),
                         "a bad token in a lazily checked split fails its batch, naming the shard", "%s", err);
            data_loader_close(&a);
        }
    }

    // ---- refusals ----
    snprintf(dir, sizeof dir, "%s/absent", ROOT);
    expect_fail(data_loader_open(&dl, dir, "train", B, T, 0, 1, 0, 1, 61, err, sizeof err), err, "absent",
                "cannot open", "loader: missing directory");
    snprintf(dir, sizeof dir, "%s/none", ROOT);
    mkdir(dir, 0755);
    expect_fail(data_loader_open(&dl, dir, "train", B, T, 0, 1, 0, 1, 61, err, sizeof err), err, "no train shards",
                "none", "loader: a directory without shards");
    snprintf(dir, sizeof dir, "%s/ok", ROOT);
    expect_fail(data_loader_open(&dl, dir, "val", B, T, 0, 1, 0, 1, 61, err, sizeof err), err, "no val shards",
                "/ok", "loader: the other split missing");
    expect_fail(data_loader_open(&dl, dir, "train", 30, 64, 0, 1, 0, 1, 61, err, sizeof err), err,
                "has 1000 tokens; --batch 30 --seq-len 64 needs at least 1921", "/ok",
                "loader: too few tokens for B*T+1");
    expect_fail(data_loader_open(&dl, dir, "train", 11, 64, 0, 2, 0, 1, 61, err, sizeof err), err,
                "needs at least 1409", NULL, "loader: too few tokens for world*B*T+1");
    expect_fail(data_loader_open(&dl, dir, "train", 0, 64, 0, 1, 0, 1, 61, err, sizeof err), err, "--batch 0",
                "positive", "loader: batch 0");

    int32_t h[256] = {20240520, 1, NT};
    path_of(p, sizeof p, "trunc", "train_000000.bin");
    write_raw(p, h, tok, NT - 10, 0);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err,
                "truncated: header says 1000 tokens (2000 bytes) but the file has 1980 bytes", "trunc/train_000000.bin",
                "shard: truncated");
    path_of(p, sizeof p, "long", "train_000000.bin");
    write_raw(p, h, tok, NT, 3);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "wrong size", "long/train_000000.bin",
                "shard: trailing bytes");
    path_of(p, sizeof p, "short", "train_000000.bin");
    write_raw(p, h, tok, 0, 0);
    rc = truncate(p, 100);
    expect_fail(rc ? 0 : shard_read(p, &back, &nback, 61, err, sizeof err), err, "1024-byte header",
                "short/train_000000.bin", "shard: shorter than its header");
    h[0] = 12345;
    path_of(p, sizeof p, "magic", "train_000000.bin");
    write_raw(p, h, tok, NT, 0);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "bad magic 12345, expected 20240520",
                "magic/train_000000.bin", "shard: wrong magic");
    snprintf(dir, sizeof dir, "%s/magic", ROOT);
    expect_fail(data_loader_open(&dl, dir, "train", 1, 8, 0, 1, 0, 1, 61, err, sizeof err), err, "bad magic 12345",
                "magic/train_000000.bin", "loader: a bad shard is named");
    h[0] = 20240520;
    h[1] = 7;
    path_of(p, sizeof p, "version", "train_000000.bin");
    write_raw(p, h, tok, NT, 0);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "version 7, expected 1",
                "version/train_000000.bin", "shard: wrong version");
    snprintf(p, sizeof p, "%s/ok/train_000000.bin", ROOT);
    expect_fail(shard_read(p, &back, &nback, 50, err, sizeof err), err,
                "token 50 at position 50 is outside the vocabulary (size 50)", "ok/train_000000.bin",
                "shard: token outside the vocabulary");
    snprintf(p, sizeof p, "%s/nope.bin", ROOT);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "nope.bin: cannot open",
                "No such file", "shard: missing file");
    path_of(p, sizeof p, "isdir", "train_000000.bin");
    mkdir(p, 0755);
    expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "is a directory, expected a regular file",
                "isdir/train_000000.bin", "shard: a directory in its place");
    // A FIFO in a shard's, a tokenizer's or a hashed file's place is refused at once: opening one for reading
    // blocks until a writer comes, so the alarm turns a regression into a killed test rather than a hung one.
    {
        alarm(20);
        path_of(p, sizeof p, "fifo", "train_000000.bin");
        int made = !mkfifo(p, 0644);
        expect_fail(shard_read(p, &back, &nback, 61, err, sizeof err), err, "is a FIFO, expected a regular file",
                    "fifo/train_000000.bin", "shard: a FIFO in its place (shard_read)");
        snprintf(dir, sizeof dir, "%s/fifo", ROOT);
        expect_fail(data_loader_open(&dl, dir, "train", 1, 8, 0, 1, 0, 1, 61, err, sizeof err), err,
                    "is a FIFO, expected a regular file", "fifo/train_000000.bin", "loader: a FIFO as a shard");
        char hex[65];
        expect_fail(sha256_file_hex(p, hex, err, sizeof err), err, "is a FIFO, expected a regular file",
                    "fifo/train_000000.bin", "sha256_file_hex: a FIFO");
        path_of(p, sizeof p, "fifo", "tokenizer.txt");
        made = made && !mkfifo(p, 0644);
        CharTokenizer ctf;
        int vocab = 0;
        expect_fail(char_tokenizer_load(&ctf, p, err, sizeof err), err, "is a FIFO, expected a regular file",
                    "fifo/tokenizer.txt", "tokenizer: a FIFO as tokenizer.txt (char_tokenizer_load)");
        expect_fail(data_vocab_size(dir, &vocab, err, sizeof err), err, "is a FIFO, expected a regular file",
                    "fifo/tokenizer.txt", "tokenizer: a FIFO as tokenizer.txt (data_vocab_size)");
        Tokenizer tkf;
        expect_fail(tokenizer_load(&tkf, p, NULL, 0, err, sizeof err), err, "is a FIFO, expected a regular file",
                    "fifo/tokenizer.txt", "tokenizer: a FIFO as tokenizer.txt (tokenizer_load)");
        alarm(0);
        harness_case(made, "mkfifo for the FIFO cases", "%s", dir);
    }

    // mmap's bare "Cannot allocate memory" when the shards exceed a limit on mappings is explained: which limit, and
    // what to do. Both limits are made real in a child process: the mapping count (vm.max_map_count, what ~65k shards
    // reach) and the address space (ulimit -v).
    {
        static uint16_t many[262144];   // 20 shards of 512 KiB
        int made = 1;
        for (int k = 0; k < 20; k++) {
            char name[32];
            snprintf(name, sizeof name, "train_%06d.bin", k);
            path_of(p, sizeof p, "many", name);
            made = made && !shard_write(p, many, sizeof many / sizeof many[0], err, sizeof err);
        }
        snprintf(dir, sizeof dir, "%s/many", ROOT);
        char msg[1024];
#ifdef __SANITIZE_ADDRESS__
        // ASan's own allocator needs fresh mappings: with the process's mappings used up it aborts itself first.
        printf("skipped: loader: out of mappings (vm.max_map_count) under AddressSanitizer\n");
#else
        rc = made ? open_under_limit(dir, 'm', msg, sizeof msg) : -2;
        harness_case(rc == -1 && strstr(msg, "cannot map it (Cannot allocate memory)") &&
                         strstr(msg, "shards mapped so far") && strstr(msg, "vm.max_map_count (") &&
                         strstr(msg, "use fewer, larger shards (prepare --shard-tokens)") && !strchr(msg, '\n'),
                     "loader: out of mappings (vm.max_map_count) is named, with the remedy", "rc %d: %s", rc, msg);
#endif
        rc = made ? open_under_limit(dir, 'a', msg, sizeof msg) : -2;
        harness_case(rc == -1 && strstr(msg, "cannot map it (Cannot allocate memory)") &&
                         strstr(msg, "shards (") && strstr(msg, "the address-space limit (ulimit -v: ") &&
                         !strchr(msg, '\n'),
                     "loader: out of address space (ulimit -v) is named, with the remedy", "rc %d: %s", rc, msg);
    }

    // ---- the character tokenizer over the vendored corpus ----
    f = fopen("data/tinyshakespeare/input.txt", "rb");
    harness_case(f != NULL, "vendored corpus present", "data/tinyshakespeare/input.txt (run from the repo root)");
    if (f) {
        fseek(f, 0, SEEK_END);
        const long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *text = malloc(n), *dec = malloc(n);
        uint16_t *ids = malloc(sizeof(uint16_t) * n);
        const int read_ok = fread(text, 1, n, f) == (size_t)n;
        fclose(f);
        CharTokenizer ct, ct2;
        char_tokenizer_build(&ct, text, n);
        snprintf(p, sizeof p, "%s/tokenizer.txt", ROOT);
        rc = char_tokenizer_save(&ct, p, err, sizeof err) || char_tokenizer_load(&ct2, p, err, sizeof err);
        int enc = read_ok && !rc && !char_tokenizer_encode(&ct2, text, n, ids, err, sizeof err);
        for (long i = 0; enc && i < n; i++) dec[i] = (uint8_t)char_tokenizer_decode(&ct2, ids[i]);
        harness_case(n == 1115394 && ct.vocab_size == 65 && ct2.vocab_size == 65 &&
                         char_tokenizer_decode(&ct2, 0) == '\n' && char_tokenizer_decode(&ct2, 65) == -1 && enc &&
                         !memcmp(dec, text, n),
                     "char tokenizer: 65 tokens, '\\n' first, save/load, encode/decode round trip of the corpus",
                     "vocab %d, %ld bytes%s%s", ct.vocab_size, n, rc ? ": " : "", rc ? err : "");
        int vocab = 0;
        rc = data_vocab_size(ROOT, &vocab, err, sizeof err);
        harness_case(!rc && vocab == 65, "data_vocab_size reads tokenizer.txt", "%d", vocab);
        expect_fail(char_tokenizer_encode(&ct2, (const uint8_t *)"hi~", 3, ids, err, sizeof err), err, "'~'",
                    "offset 2", "tokenizer: encode a character outside the vocabulary");
        free(text);
        free(dec);
        free(ids);
    }
    // prepare over the corpus: nanoGPT's split, in well under a second.
    {
        snprintf(dir, sizeof dir, "%s/shakespeare", ROOT);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = data_prepare("data/tinyshakespeare/input.txt", dir, "char", 0.1, 100000000, err, sizeof err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        DataLoader pt, pv;
        size_t ntrain = 0, nval = 0;
        int first = -1, opened = !rc && !data_loader_open(&pt, dir, "train", 1, 64, 0, 1, 0, 1, 65, err, sizeof err);
        if (opened) {
            ntrain = pt.ntok;
            first = data_loader_token(&pt, 0);
            data_loader_close(&pt);
            opened = !data_loader_open(&pv, dir, "val", 1, 64, 0, 1, 0, 1, 65, err, sizeof err);
            if (opened) { nval = pv.ntok; data_loader_close(&pv); }
        }
        // Token 18 is 'F', of "First Citizen:".
        harness_case(opened && ntrain == 1003854 && nval == 111540 && first == 18 && secs < 1.0,
                     "prepare: Tiny Shakespeare splits 1003854 train / 111540 val tokens in under a second",
                     "train %zu, val %zu, first token %d, %.3f s%s%s", ntrain, nval, first, secs, opened ? "" : ": ",
                     opened ? "" : err);
    }
    snprintf(p, sizeof p, "%s/bad_tokenizer.txt", ROOT);
    write_text(p, "hello\n");
    CharTokenizer ctb;
    expect_fail(char_tokenizer_load(&ctb, p, err, sizeof err), err, "bad_tokenizer.txt", "not a gptrain tokenizer",
                "tokenizer: a file of another kind");
    snprintf(p, sizeof p, "%s/short_tokenizer.txt", ROOT);
    write_text(p, "gptrain-tokenizer 1\ntype char\nvocab_size 3\nbytes 10 32\n");
    expect_fail(char_tokenizer_load(&ctb, p, err, sizeof err), err, "short_tokenizer.txt", "lists 2 bytes",
                "tokenizer: fewer bytes than vocab_size");
    // Strict parsing: every value is exactly what the format says, or the file is refused naming the line (atoi
    // took "65abc" for 65).
    {
        static const struct { const char *text, *want, *name; } bad[] = {
            {"gptrain-tokenizer 1\ntype char\nvocab_size 3abc\nbytes 10 32 97\n", "t: line 3: vocab_size '3abc', expected a decimal integer",
             "vocab_size 3abc"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size -3\nbytes 10 32 97\n", "line 3: vocab_size '-3'", "vocab_size -3"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size 0\nbytes\n", "line 3: vocab_size '0'", "vocab_size 0"},
            {"gptrain-tokenizer 1\ntype gpt2\nvocab_size 4294967297\n", "line 3: vocab_size '4294967297'",
             "vocab_size past int"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size 65537\nbytes 1\n", "from 1 to 65536", "vocab_size 65537"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size\nbytes 1\n", "line 3: vocab_size ''", "vocab_size without a value"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size 3\nvocab_size 3\nbytes 10 32 97\n", "line 4: a second 'vocab_size'",
             "vocab_size twice"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size 3\nbytes 10 32x 97\n", "line 4: bytes entry 2 '32x'", "bytes 32x"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size 3\nbytes 10 32 256\n", "line 4: bytes entry 3 '256'", "bytes 256"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size 3\nbytes 10  32 97\n", "line 4: bytes entry 2 ''", "bytes double space"},
            {"gptrain-tokenizer 1\ntype char\nvocab_size 3\nbytes 10 32 97\nvocab 4\n", "line 5: 'vocab 4', expected a 'type'",
             "an unknown line"},
            {"gptrain-tokenizer 12\ntype char\nvocab_size 1\nbytes 10\n", "expected 'gptrain-tokenizer 1' on line 1",
             "another format version"},
            {"gptrain-tokenizer 1\ntype char gpt2\nvocab_size 1\nbytes 10\n", "line 2: 'type char gpt2'", "type with two words"},
            {"gptrain-tokenizer 1\ntype gpt2\nvocab_size 50257\nbytes 10\n", "type gpt2 with a 'bytes' line", "gpt2 with bytes"},
            {"gptrain-tokenizer 1\ntype char\nbytes 10\n", "no 'vocab_size' line", "no vocab_size"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            Tokenizer tk;
            char name[96];
            snprintf(name, sizeof name, "tokenizer strict: %s", bad[i].name);
            expect_fail(tokenizer_load_text(&tk, bad[i].text, "t", err, sizeof err), err, bad[i].want, NULL, name);
        }
        Tokenizer tk;
        const uint8_t *dec = NULL;
        rc = tokenizer_load_text(&tk, "gptrain-tokenizer 1\r\ntype char\r\n\r\nvocab_size 2\r\nbytes 10 97\r\n", "t", err,
                                 sizeof err);
        harness_case(!rc && tk.vocab_size == 2 && tokenizer_decode(&tk, 1, &dec) == 1 && *dec == 'a',
                     "tokenizer strict: CRLF line ends and a blank line still parse", "%s", rc ? err : "vocab 2");
        if (!rc) tokenizer_free(&tk);
    }

    // ---- prepare ----
    const char *small = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n";
    char small_path[512];
    snprintf(small_path, sizeof small_path, "%s/small.txt", ROOT);
    write_text(small_path, small);
    snprintf(dir, sizeof dir, "%s/prep/nested", ROOT);
    rc = data_prepare(small_path, dir, "char", 0.25, 100000000, err, sizeof err);
    {
        DataLoader pt, pv;
        CharTokenizer ct;
        char tk[600];
        snprintf(tk, sizeof tk, "%s/tokenizer.txt", dir);
        int vocab = 0;
        int ok = !rc && !data_vocab_size(dir, &vocab, err, sizeof err) && vocab == 23 &&
                 !char_tokenizer_load(&ct, tk, err, sizeof err);
        if (ok && !data_loader_open(&pt, dir, "train", 1, 8, 0, 1, 0, 1, vocab, err, sizeof err)) {
            if (!data_loader_open(&pv, dir, "val", 1, 8, 0, 1, 0, 1, vocab, err, sizeof err)) {
                char text[256];
                size_t m = 0;
                for (size_t i = 0; i < pt.ntok && m < 255; i++)
                    text[m++] = (char)char_tokenizer_decode(&ct, data_loader_token(&pt, i));
                for (size_t i = 0; i < pv.ntok && m < 255; i++)
                    text[m++] = (char)char_tokenizer_decode(&ct, data_loader_token(&pv, i));
                text[m] = 0;
                // 85 bytes at 0.25: train int(85 * 0.75) = 63 tokens, val the last 22.
                ok = !strcmp(text, small) && pt.ntok == 63 && pv.ntok == 22;
                data_loader_close(&pv);
            } else ok = 0;
            data_loader_close(&pt);
        } else ok = 0;
        harness_case(ok, "prepare: creates DIR; train + val decode back to the text; val is the last quarter", "%s",
                     rc ? err : dir);
        snprintf(p, sizeof p, "%s/train_000000.bin.new", dir);
        harness_case(access(p, F_OK) != 0, "prepare: no staging file left", "%s", p);
    }

    // Every refusal below must leave this set of outputs as it was.
    char train_path[600], val_path[600];
    snprintf(train_path, sizeof train_path, "%s/train_000000.bin", dir);
    snprintf(val_path, sizeof val_path, "%s/val_000000.bin", dir);
    struct stat train_before, val_before;
    int have_before = !stat(train_path, &train_before) && !stat(val_path, &val_before);
    snprintf(p, sizeof p, "%s/missing.txt", ROOT);
    expect_fail(data_prepare(p, dir, "char", 0.1, 100000000, err, sizeof err), err, "--input", "missing.txt",
                "prepare: missing input");
    snprintf(p, sizeof p, "%s/empty.txt", ROOT);
    write_text(p, "");
    expect_fail(data_prepare(p, dir, "char", 0.1, 100000000, err, sizeof err), err, "--input", "empty.txt: the file is empty",
                "prepare: empty input");
    // A directory of documents, sharded: *.txt in name order, other files ignored; a later preparation with fewer
    // shards removes the earlier set's extra shard.
    {
        char docs[600], out[600], q[700];
        snprintf(docs, sizeof docs, "%s/docs", ROOT);
        mkdir(docs, 0755);
        snprintf(q, sizeof q, "%s/b.txt", docs); write_text(q, "de");
        snprintf(q, sizeof q, "%s/a.txt", docs); write_text(q, "abc");
        snprintf(q, sizeof q, "%s/c.txt", docs); write_text(q, "fgh");
        snprintf(q, sizeof q, "%s/notes.md", docs); write_text(q, "XYZ");
        snprintf(out, sizeof out, "%s/docs-out", ROOT);
        int ok = !data_prepare(docs, out, "char", 0.25, 4, err, sizeof err);
        struct stat s1;
        snprintf(q, sizeof q, "%s/train_000001.bin", out);
        DataLoader d1;
        int shards_ok = ok && !stat(q, &s1) && s1.st_size == 1024 + 2 * 2;
        if (ok && !data_loader_open(&d1, out, "train", 1, 2, 0, 1, 0, 1, 8, err, sizeof err)) {
            // vocabulary a..h -> ids 0..7 in byte order: the stream is 0 1 2 3 | 4 5
            shards_ok = shards_ok && d1.nshards == 2 && d1.ntok == 6;
            for (size_t i = 0; i < 6; i++) shards_ok = shards_ok && data_loader_token(&d1, i) == i;
            data_loader_close(&d1);
        } else shards_ok = 0;
        harness_case(shards_ok, "prepare: a directory of *.txt documents in name order, cut into --shard-tokens 4",
                     "%s", ok ? "train 4 + 2 tokens, val 2" : err);
        ok = !data_prepare(docs, out, "char", 0.25, 100, err, sizeof err);
        harness_case(ok && stat(q, &s1) != 0, "prepare: a re-preparation with fewer shards removes the stale one",
                     "%s", q);
    }
    // --tokenizer gpt2 over the same documents: <|endoftext|> before each, then its BPE ids; tokenizer.txt says gpt2.
    {
        char docs[600], out[600];
        snprintf(docs, sizeof docs, "%s/docs", ROOT);
        snprintf(out, sizeof out, "%s/docs-gpt2", ROOT);
        Gpt2Bpe *bpe = NULL;
        int ok = !gpt2_bpe_load(&bpe, gpt2_default_dir(), err, sizeof err) &&
                 !data_prepare(docs, out, "gpt2", 0.5, 1000, err, sizeof err);
        uint16_t want[64];
        size_t nw = 0;
        const char *texts[3] = {"abc", "de", "fgh"};
        for (int i = 0; ok && i < 3; i++) {
            size_t m;
            want[nw++] = GPT2_EOT;
            gpt2_bpe_encode(bpe, (const uint8_t *)texts[i], strlen(texts[i]), want + nw, &m, err, sizeof err);
            nw += m;
        }
        DataLoader dt, dv;
        int match = 0, vocab = 0;
        if (ok && !data_loader_open(&dt, out, "train", 1, 1, 0, 1, 0, 1, GPT2_VOCAB_SIZE, err, sizeof err)) {
            if (!data_loader_open(&dv, out, "val", 1, 1, 0, 1, 0, 1, GPT2_VOCAB_SIZE, err, sizeof err)) {
                match = dt.ntok + dv.ntok == nw && dt.ntok == nw / 2;
                for (size_t i = 0; match && i < nw; i++)
                    match = (i < dt.ntok ? data_loader_token(&dt, i) : data_loader_token(&dv, i - dt.ntok)) == want[i];
                data_loader_close(&dv);
            }
            data_loader_close(&dt);
            match = match && !data_vocab_size(out, &vocab, err, sizeof err) && vocab == GPT2_VOCAB_SIZE;
        }
        harness_case(ok && match, "prepare --tokenizer gpt2: <|endoftext|> then the BPE ids of each document, in order",
                     "%zu tokens, vocab %d%s%s", nw, vocab, ok ? "" : ": ", ok ? "" : err);
        if (bpe) gpt2_bpe_free(bpe);
    }
    snprintf(p, sizeof p, "%s/nodocs", ROOT);
    mkdir(p, 0755);
    expect_fail(data_prepare(p, dir, "char", 0.1, 100000000, err, sizeof err), err, "--input", "holds no *.txt files",
                "prepare: a directory without documents");
    expect_fail(data_prepare(small_path, dir, "char", 0.1, 0, err, sizeof err), err, "--shard-tokens 0", "expected 1",
                "prepare: --shard-tokens 0");
    expect_fail(data_prepare(small_path, dir, "char", 1.0, 100000000, err, sizeof err), err, "--val-fraction 1",
                "not including, 1", "prepare: val fraction 1");
    expect_fail(data_prepare(small_path, dir, "char", -0.1, 100000000, err, sizeof err), err, "--val-fraction -0.1",
                "from 0", "prepare: a negative val fraction");
    // --val-fraction 0: every token in train, no val shard (an earlier set's is removed), the tokenizer beside it.
    {
        char nv[640];
        snprintf(nv, sizeof nv, "%s/prep/noval", ROOT);
        int ok = !data_prepare(small_path, nv, "char", 0.5, 100000000, err, sizeof err) &&
                 !data_prepare(small_path, nv, "char", 0.0, 100000000, err, sizeof err);
        DataLoader dt, dv;
        size_t ntok = 0;
        if (ok && !data_loader_open(&dt, nv, "train", 1, 1, 0, 1, 0, 1, 256, err, sizeof err)) {
            ntok = dt.ntok;
            data_loader_close(&dt);
        }
        char vp[700], tp[700];
        snprintf(vp, sizeof vp, "%s/val_000000.bin", nv);
        snprintf(tp, sizeof tp, "%s/tokenizer.txt", nv);
        const int noval = data_loader_open(&dv, nv, "val", 1, 1, 0, 1, 0, 1, 256, err, sizeof err) != 0;
        harness_case(ok && ntok == 85 && noval && access(vp, F_OK) && !access(tp, F_OK),
                     "prepare --val-fraction 0: all 85 tokens in train, no val shard left, the tokenizer written",
                     "ok %d, train %zu tokens, val refused %d", ok, ntok, noval);
    }
    expect_fail(data_prepare(small_path, dir, "char", 0.999, 100000000, err, sizeof err), err, "--val-fraction 0.999",
                "train 0, val 85", "prepare: a val fraction that leaves no train token");
    expect_fail(data_prepare(small_path, dir, "bpe", 0.1, 100000000, err, sizeof err), err, "--tokenizer bpe", "expected char",
                "prepare: unknown tokenizer");
    char under[600];
    snprintf(under, sizeof under, "%s/sub", small_path);
    expect_fail(data_prepare(small_path, under, "char", 0.1, 100000000, err, sizeof err), err, "--out", "not a directory",
                "prepare: --out under a regular file");
    // A directory where val_000000.bin belongs: writing train first and failing on val would leave a mixed set.
    char blocker[640];
    snprintf(blocker, sizeof blocker, "%s/prep/blocked", ROOT);
    rc = data_prepare(small_path, blocker, "char", 0.25, 100000000, err, sizeof err);
    struct stat blocked_train;
    snprintf(p, sizeof p, "%s/train_000000.bin", blocker);
    int blocked_ok = !rc && !stat(p, &blocked_train);
    snprintf(p, sizeof p, "%s/val_000000.bin", blocker);
    blocked_ok = blocked_ok && !unlink(p) && !mkdir(p, 0755);
    expect_fail(data_prepare(small_path, blocker, "char", 0.5, 100000000, err, sizeof err), err, "val_000000.bin",
                "not a regular file", "prepare: a directory in val_000000.bin's place");
    snprintf(p, sizeof p, "%s/train_000000.bin", blocker);
    harness_case(blocked_ok && same_file(&blocked_train, p), "prepare: that refusal left train_000000.bin as it was",
                 "%s", p);
    // A write that fails after both shards are staged (the tokenizer's staged name is taken by a directory):
    // neither shard may have replaced the old one.
    snprintf(p, sizeof p, "%s/tokenizer.txt.new", dir);
    mkdir(p, 0755);
    expect_fail(data_prepare(small_path, dir, "char", 0.5, 100000000, err, sizeof err), err, "tokenizer.txt.new", NULL,
                "prepare: a write failing after the shards were staged");
    rmdir(p);
    snprintf(p, sizeof p, "%s/val_000000.bin.new", dir);
    harness_case(access(p, F_OK) != 0, "prepare: a failed write removes its staged shards", "%s", p);
    harness_case(have_before && same_file(&train_before, train_path) && same_file(&val_before, val_path),
                 "prepare: failed prepares left the existing train and val shards untouched", "%s", train_path);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ROOT);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", ROOT);
    return harness_finish();
}
