/*
 * loader.c: (B, T+1)-token windows from a split's shards, mapped read-only (mmap: a 20 GB FineWeb split costs address
 * space, not memory; the page cache does the reading) and read as one stream.
 *   shuffle off: llm.c's DataLoader order: batch k of rank r covers [p, p + B·T + 1), p = (k·world + r)·B·T, back to
 *                r·B·T when the next batch would run past the end;
 *   shuffle on:  epochs: the shard order is permuted, then the epoch takes an offset in [0, T) and a Fisher-Yates
 *                permutation of the windows starting at offset + i·T of that stream, from xorshift64* seeded by
 *                splitmix64(seed) (the same on every rank); rank r takes windows r, r + world, ... of it. Every token
 *                is read once per epoch (sampling with replacement would read some windows three times and others
 *                never in 1.5 epochs). On a split shorter than (world + 1)·T the offset is drawn from a narrower
 *                range so each rank still has a window. With one shard the shard permutation draws nothing, so a
 *                single-shard run is the same as before shards were streamed.
 * Prefetch: one thread runs the reader ahead of the step into a ring of slots (pinned host memory when the caller
 * allocates it so), so the step only waits when the reader is slower than the step. The ring holds nslots batches:
 * the one the step is using and nslots - 1 being filled or waiting.
 * Resume: the batch sequence is a pure function of the configuration and the seed, so seeking to batch n replays the
 * reader's bookkeeping (no token is read) and the run continues bit for bit.
 * A shard truncated under the run (the mapping's pages past its new end raise SIGBUS) ends it with one line naming
 * the shard and exit 2 (the SIGBUS guard below), and mmap's ENOMEM is explained (vm.max_map_count or ulimit -v).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "data.h"

struct DataPrefetch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int nslots, running, stop;
    int32_t *in[DATA_MAX_SLOTS], *tg[DATA_MAX_SLOTS];
    int rc[DATA_MAX_SLOTS];
    char err[DATA_MAX_SLOTS][512];
    uint64_t filled;     // slots filled since start
    uint64_t taken;      // slots handed to the consumer since start
    DataFreeFn free_fn;
};

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t xorshift64s(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

// The names DIR/<split>_*.bin, sorted bytewise. readdir rather than glob(3): a directory whose name holds '*', '?'
// or '[' is still just a directory, and a missing one is reported as missing rather than as "no shards".
static int list_shards(const char *dir, const char *split, char ***names_out, size_t *n_out, char *err, size_t errlen) {
    *names_out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open (%s), expected the directory `gptrain prepare` wrote", dir,
                 strerror(errno));
        return -1;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s_", split);
    const size_t plen = strlen(prefix);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len < plen + 4 || strncmp(e->d_name, prefix, plen) || strcmp(e->d_name + len - 4, ".bin")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                free_names(names, n);
                closedir(d);
                snprintf(err, errlen, "%s: out of memory", dir);
                return -1;
            }
            names = grown;
        }
        const size_t size = strlen(dir) + 1 + len + 1;
        if (!(names[n] = malloc(size))) {
            free_names(names, n);
            closedir(d);
            snprintf(err, errlen, "%s: out of memory", dir);
            return -1;
        }
        snprintf(names[n++], size, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (!n) {
        snprintf(err, errlen, "%s: no %s shards (expected %s_000000.bin from `gptrain prepare`)", dir, split, split);
        free(names);
        return -1;
    }
    qsort(names, n, sizeof *names, cmp_names);
    *names_out = names;
    *n_out = n;
    return 0;
}

// The shards' order for this epoch -> the stream start of each.
static void set_starts(DataLoader *dl) {
    size_t p = 0;
    for (size_t i = 0; i < dl->nshards; i++) {
        dl->starts[i] = p;
        p += dl->shards[dl->order[i]].ntok;
    }
    dl->starts[dl->nshards] = p;
}

// Copy stream tokens [pos, pos + n] (n + 1 tokens) as inputs (the first n) and targets (the last n), checking each
// against the vocabulary. A window may straddle shards: walk the segments.
static int read_window(DataLoader *dl, size_t pos, size_t n, int32_t *in, int32_t *tg, char *err, size_t errlen) {
    size_t lo = 0, hi = dl->nshards - 1;   // the shard holding pos: last k with starts[k] <= pos
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (dl->starts[mid] <= pos) lo = mid; else hi = mid - 1;
    }
    size_t k = lo, j = 0;
    while (j <= n) {
        const ShardMap *s = &dl->shards[dl->order[k]];
        const size_t local = pos + j - dl->starts[k];
        size_t len = s->ntok - local;
        if (len > n + 1 - j) len = n + 1 - j;
        const uint16_t *t = s->tokens + local;
        if (shard_check_tokens(dl->paths[dl->order[k]], t, len, local, dl->vocab_size, err, errlen)) return -1;
        for (size_t i = 0; i < len; i++, j++) {
            if (j < n) in[j] = t[i];
            if (j > 0) tg[j - 1] = t[i];
        }
        k++;
    }
    return 0;
}

// A new epoch's order: the shards permuted, an offset in [0, T), then the windows offset + i*T that have T+1 tokens,
// permuted. On a split too short for every offset (ntok < (world+1)*T) the offset is drawn from
// [0, ntok - world*T) instead, so the epoch still holds at least world windows and every rank gets one.
static void new_epoch(DataLoader *dl) {
    for (size_t i = dl->nshards - 1; i > 0; i--) {
        size_t j = xorshift64s(&dl->rng) % (i + 1);
        uint32_t t = dl->order[i];
        dl->order[i] = dl->order[j];
        dl->order[j] = t;
    }
    set_starts(dl);
    const size_t T = dl->T, min_span = (size_t)dl->world * T;
    const size_t offsets = dl->ntok - min_span < T ? dl->ntok - min_span : T;   // >= 1: open checked ntok > world*T
    dl->offset = xorshift64s(&dl->rng) % offsets;
    dl->nwin = (dl->ntok - 1 - dl->offset) / T;
    assert(dl->nwin >= (size_t)dl->world);
    for (size_t i = 0; i < dl->nwin; i++) dl->perm[i] = (uint32_t)i;
    for (size_t i = dl->nwin - 1; i > 0; i--) {
        size_t j = xorshift64s(&dl->rng) % (i + 1);
        uint32_t t = dl->perm[i];
        dl->perm[i] = dl->perm[j];
        dl->perm[j] = t;
    }
    dl->pos = dl->rank;
    dl->epoch++;
}

static void reader_reset(DataLoader *dl) {
    dl->rng = splitmix64(dl->seed);
    if (!dl->rng) dl->rng = 1;
    dl->epoch = 0;
    dl->produced = 0;
    for (size_t i = 0; i < dl->nshards; i++) dl->order[i] = (uint32_t)i;
    set_starts(dl);
    if (dl->shuffle) new_epoch(dl);
    else dl->pos = (size_t)dl->rank * dl->B * dl->T;
}

// The reader's next batch into in/tg, or (in == NULL) only its bookkeeping, for seeking.
static int reader_next(DataLoader *dl, int32_t *in, int32_t *tg, char *err, size_t errlen) {
    const size_t B = dl->B, T = dl->T;
    if (dl->shuffle) {
        for (size_t b = 0; b < B; b++) {
            if (dl->pos >= dl->nwin) new_epoch(dl);
            const size_t start = dl->offset + (size_t)dl->perm[dl->pos] * T;
            dl->pos += dl->world;
            if (in && read_window(dl, start, T, in + b * T, tg + b * T, err, errlen)) return -1;
        }
    } else {
        if (in && read_window(dl, dl->pos, B * T, in, tg, err, errlen)) return -1;
        dl->pos += B * T * dl->world;
        if (dl->pos + B * T + 1 > dl->ntok) dl->pos = (size_t)dl->rank * B * T;
    }
    dl->produced++;
    return 0;
}

// A count read from a /proc file (its first number), or -1.
static long long read_proc_number(const char *path) {
    FILE *f = fopen(path, "r");   // a /proc file: never a FIFO
    long long v = -1;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1) v = -1;
        fclose(f);
    }
    return v;
}

// The mappings the process holds now (lines of /proc/self/maps), or -1.
static long long count_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    long long n = 0;
    for (int c; (c = getc(f)) != EOF;) n += c == '\n';
    fclose(f);
    return n;
}

// mmap's ENOMEM for shard i says only "Cannot allocate memory"; the shards use no memory, so the limit is one of the
// two on mappings: the kernel's vm.max_map_count (65530 by default: every shard is one mapping, so ~65k shards in
// one process cannot all be mapped) or the address-space limit (ulimit -v). Say which, and what to do.
static void explain_map_enomem(const DataLoader *dl, const char *path, size_t i, size_t nfiles, char *err,
                               size_t errlen) {
    double mapped_mib = 0;
    for (size_t k = 0; k < i; k++) mapped_mib += dl->shards[k].map_bytes / 1048576.0;
    const long long max_maps = read_proc_number("/proc/sys/vm/max_map_count"), maps = count_mappings();
    struct rlimit as;
    const int as_limited = !getrlimit(RLIMIT_AS, &as) && as.rlim_cur != RLIM_INFINITY;
    // Within a few of the limit: the mapping count is what ran out (the failed mmap would have been one more).
    if (max_maps > 0 && maps >= 0 && maps + 16 >= max_maps)
        snprintf(err, errlen, "%s: cannot map it (Cannot allocate memory): %zu of %zu shards mapped so far, and the "
                 "process holds %lld mappings; the kernel's vm.max_map_count (%lld, see /proc/sys/vm/max_map_count) "
                 "limits how many files one process can map: use fewer, larger shards (prepare --shard-tokens), or "
                 "raise vm.max_map_count", path, i, nfiles, maps, max_maps);
    else if (as_limited)
        snprintf(err, errlen, "%s: cannot map it (Cannot allocate memory): %zu of %zu shards (%.1f MiB) mapped so far; "
                 "the address-space limit (ulimit -v: %.0f MiB) is too small to map the split: raise it (ulimit -v "
                 "unlimited)", path, i, nfiles, mapped_mib, (double)as.rlim_cur / 1048576.0);
    else {
        char limit[32] = "";
        if (max_maps > 0) snprintf(limit, sizeof limit, "%lld, ", max_maps);
        snprintf(err, errlen, "%s: cannot map it (Cannot allocate memory): %zu of %zu shards mapped so far; the "
                 "kernel's vm.max_map_count (%ssee /proc/sys/vm/max_map_count) limits how many files one process can "
                 "map: use fewer, larger shards (prepare --shard-tokens)", path, i, nfiles, limit);
    }
}

// ---- the SIGBUS guard ----
// A mapped shard that is truncated or rewritten in place while the run reads it (`cp other.bin train_000000.bin`
// truncates first) makes the next read of a page past its new end raise SIGBUS, which would kill the run with no
// word (exit 135). Each open loader's shards are listed in a fixed table the handler can read without allocating or
// locking; a SIGBUS whose address lies in a listed shard prints one line naming it (write(2) only: async-signal-safe)
// and exits 2. Any other SIGBUS goes to the handler that was there before, or to the default action. A slot is
// published by storing its count last (release) and withdrawn by clearing the count first, so the handler never reads
// a half-filled slot; loaders beyond GUARD_SLOTS open at once are read unguarded.
#define GUARD_SLOTS 64
typedef struct GuardSlot {
    atomic_int claimed;
    const ShardMap *shards;
    char *const *paths;
    atomic_size_t n;
} GuardSlot;
static GuardSlot guard_slots[GUARD_SLOTS];
static struct sigaction guard_prev;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void guard_say(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        const ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void guard_sigbus(int sig, siginfo_t *si, void *uc) {
    // Only a fault the kernel raised (si_code > 0: BUS_ADRERR and kin) has an address; a kill -BUS has none.
    const uintptr_t a = si && si->si_code > 0 ? (uintptr_t)si->si_addr : 0;
    for (int s = 0; a && s < GUARD_SLOTS; s++) {
        const size_t n = atomic_load_explicit(&guard_slots[s].n, memory_order_acquire);
        const ShardMap *sh = guard_slots[s].shards;
        for (size_t k = 0; k < n; k++) {
            const uintptr_t b = (uintptr_t)sh[k].map;
            if (b && a >= b && a - b < sh[k].map_bytes) {
                guard_say("gptrain: error: ");
                guard_say(guard_slots[s].paths[k]);
                guard_say(" changed on disk while training read it (truncated or rewritten in place): training cannot "
                          "continue; the last checkpoint is intact: restore the data and resume (--resume auto)\n");
                _exit(2);
            }
        }
    }
    // Not a shard's page: whoever handled SIGBUS before us, else the default action (re-raised: the signal is blocked
    // in its handler, so it lands when this returns, and a fault would recur anyway).
    if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction) {
        guard_prev.sa_sigaction(sig, si, uc);
        return;
    }
    if (!(guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
        guard_prev.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    raise(SIGBUS);
}

static void guard_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = guard_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &guard_prev);
}

// List dl's mapped shards for the handler (once they are all mapped, before the first token is read).
static void guard_add(DataLoader *dl) {
    pthread_once(&guard_once, guard_install);
    for (int s = 0; s < GUARD_SLOTS; s++) {
        int free_slot = 0;
        if (!atomic_compare_exchange_strong(&guard_slots[s].claimed, &free_slot, 1)) continue;
        guard_slots[s].shards = dl->shards;
        guard_slots[s].paths = dl->paths;
        atomic_store_explicit(&guard_slots[s].n, dl->nshards, memory_order_release);
        return;
    }
}

static void guard_remove(const DataLoader *dl) {
    if (!dl->shards) return;
    for (int s = 0; s < GUARD_SLOTS; s++) {
        GuardSlot *g = &guard_slots[s];
        if (!atomic_load(&g->claimed) || g->shards != dl->shards) continue;
        atomic_store_explicit(&g->n, 0, memory_order_release);
        g->shards = NULL;
        g->paths = NULL;
        atomic_store(&g->claimed, 0);
        return;
    }
}

static int open_files(DataLoader *dl, char **names, size_t nfiles, const char *what, int B, int T, int rank,
                      int world, int shuffle, uint64_t seed, int vocab_size, char *err, size_t errlen) {
    assert(world >= 1 && rank >= 0 && rank < world);   // the rank and world come from dist/, not from the user
    dl->paths = names;
    dl->nshards = nfiles;
    dl->vocab_size = vocab_size;
    dl->shards = calloc(nfiles, sizeof *dl->shards);
    dl->order = malloc(nfiles * sizeof *dl->order);
    dl->starts = malloc((nfiles + 1) * sizeof *dl->starts);
    if (!dl->shards || !dl->order || !dl->starts) { snprintf(err, errlen, "%s: out of memory", what); return -1; }
    for (size_t i = 0; i < nfiles; i++) {
        if (shard_map(names[i], &dl->shards[i], err, errlen)) {
            if (errno == ENOMEM) explain_map_enomem(dl, names[i], i, nfiles, err, errlen);
            return -1;
        }
        dl->ntok += dl->shards[i].ntok;
    }
    guard_add(dl);
    if (dl->ntok <= DATA_CHECK_AT_OPEN)
        for (size_t i = 0; i < nfiles; i++)
            if (shard_check_tokens(names[i], dl->shards[i].tokens, dl->shards[i].ntok, 0, vocab_size, err, errlen))
                return -1;
    // Every rank's first batch must fit: rank world-1 starts at (world-1)*B*T. This also leaves every shuffled epoch
    // at least world windows (see new_epoch).
    size_t need = (size_t)B * T * world + 1;
    if (dl->ntok < need) {
        snprintf(err, errlen, "%s: the split has %zu tokens; --batch %d --seq-len %d%s needs at least %zu", what,
                 dl->ntok, B, T, world > 1 ? " over all ranks" : "", need);
        return -1;
    }
    if (dl->ntok / T > UINT32_MAX) {
        snprintf(err, errlen, "%s: the split's %zu tokens make more than 2^32 windows of --seq-len %d", what, dl->ntok,
                 T);
        return -1;
    }
    dl->perm = malloc(sizeof(uint32_t) * (shuffle ? dl->ntok / T + 1 : 1));
    dl->in = malloc((size_t)B * T * sizeof(int32_t));
    dl->tg = malloc((size_t)B * T * sizeof(int32_t));
    if (!dl->perm || !dl->in || !dl->tg) { snprintf(err, errlen, "%s: out of memory", what); return -1; }
    dl->B = B;
    dl->T = T;
    dl->rank = rank;
    dl->world = world;
    dl->shuffle = shuffle;
    dl->seed = seed;
    reader_reset(dl);
    dl->batches = 0;
    return 0;
}

int data_loader_open(DataLoader *dl, const char *dir, const char *split, int B, int T, int rank, int world,
                     int shuffle, uint64_t seed, int vocab_size, char *err, size_t errlen) {
    memset(dl, 0, sizeof(*dl));
    if (B < 1 || T < 1) {
        snprintf(err, errlen, "data_loader: --batch %d --seq-len %d: expected positive sizes", B, T);
        return -1;
    }
    char why[4400];
    if (data_check_complete(dir, why, sizeof why)) {
        snprintf(err, errlen, "--data %s: %s", dir, why);
        return -1;
    }
    char **names;
    size_t n;
    if (list_shards(dir, split, &names, &n, err, errlen)) return -1;
    char what[4200];
    snprintf(what, sizeof what, "%s (%s)", dir, split);
    if (open_files(dl, names, n, what, B, T, rank, world, shuffle, seed, vocab_size, err, errlen)) {
        data_loader_close(dl);
        return -1;
    }
    return 0;
}

int data_loader_open_glob(DataLoader *dl, const char *pattern, const char *flag, int B, int T, int rank, int world,
                          int shuffle, uint64_t seed, int vocab_size, char *err, size_t errlen) {
    memset(dl, 0, sizeof(*dl));
    if (B < 1 || T < 1) {
        snprintf(err, errlen, "data_loader: --batch %d --seq-len %d: expected positive sizes", B, T);
        return -1;
    }
    glob_t g;
    int rc = glob(pattern, GLOB_ERR, NULL, &g);
    if (rc || g.gl_pathc == 0) {
        snprintf(err, errlen, "%s %s: %s, expected a glob matching llm.c token shards", flag, pattern,
                 rc == GLOB_NOMATCH || (!rc && !g.gl_pathc) ? "matches no file" : "cannot be read");
        if (!rc || rc == GLOB_NOMATCH) globfree(&g);
        return -1;
    }
    // glob(3) sorts the names (LC_COLLATE; gptrain never calls setlocale, so bytewise, as list_shards).
    char **names = calloc(g.gl_pathc, sizeof *names);
    size_t n = 0;
    for (; names && n < g.gl_pathc; n++)
        if (!(names[n] = strdup(g.gl_pathv[n]))) break;
    globfree(&g);
    if (!names || n < g.gl_pathc) {
        if (names) free_names(names, n);
        snprintf(err, errlen, "%s: out of memory", flag);
        return -1;
    }
    // The directories the matches lie in, each checked once for an interrupted prepare's marker (glob sorts the
    // names, so one directory's shards are consecutive).
    char prev[4096] = "", why[4400];
    for (size_t i = 0; i < n; i++) {
        char d[4096];
        snprintf(d, sizeof d, "%s", names[i]);
        char *slash = strrchr(d, '/');
        if (slash) *slash = 0; else snprintf(d, sizeof d, ".");
        if (!strcmp(d, prev)) continue;
        snprintf(prev, sizeof prev, "%s", d);
        if (data_check_complete(d, why, sizeof why)) {
            snprintf(err, errlen, "%s %s: %s", flag, pattern, why);
            free_names(names, n);
            return -1;
        }
    }
    char what[4200];
    snprintf(what, sizeof what, "%s %s", flag, pattern);
    if (open_files(dl, names, n, what, B, T, rank, world, shuffle, seed, vocab_size, err, errlen)) {
        data_loader_close(dl);
        return -1;
    }
    return 0;
}

// ---- prefetch ----

static void *prefetch_main(void *arg) {
    DataLoader *dl = arg;
    DataPrefetch *pf = dl->pf;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        // Busy slots: the filled ones not yet taken, plus the one the consumer is using (taken - 1, once it took
        // one). Slot filled % nslots is free when fewer than nslots are busy.
        while (!pf->stop && (pf->filled - pf->taken) + (pf->taken > 0) >= (uint64_t)pf->nslots)
            pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->stop) break;
        const int s = (int)(pf->filled % (uint64_t)pf->nslots);
        pthread_mutex_unlock(&pf->mu);
        int rc = reader_next(dl, pf->in[s], pf->tg[s], pf->err[s], sizeof pf->err[s]);
        pthread_mutex_lock(&pf->mu);
        pf->rc[s] = rc;
        pf->filled++;
        pthread_cond_broadcast(&pf->cv);
        if (rc) break;   // the consumer reports it when it reaches this slot
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

static void prefetch_stop(DataLoader *dl) {
    DataPrefetch *pf = dl->pf;
    if (!pf || !pf->running) return;
    pthread_mutex_lock(&pf->mu);
    pf->stop = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->thread, NULL);
    pf->running = 0;
}

static int prefetch_run(DataLoader *dl) {
    DataPrefetch *pf = dl->pf;
    pf->stop = 0;
    pf->filled = pf->taken = 0;
    if (pthread_create(&pf->thread, NULL, prefetch_main, dl)) return -1;
    pf->running = 1;
    return 0;
}

static void *aligned_alloc_default(size_t bytes, const char *what) {
    (void)what;
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

int data_loader_start_prefetch(DataLoader *dl, int nslots, DataAllocFn alloc, DataFreeFn free_fn, char *err,
                               size_t errlen) {
    assert(!dl->pf && nslots >= 2 && nslots <= DATA_MAX_SLOTS);
    DataPrefetch *pf = calloc(1, sizeof *pf);
    if (!pf) { snprintf(err, errlen, "data loader: out of memory"); return -1; }
    pf->nslots = nslots;
    pf->free_fn = free_fn ? free_fn : free;
    if (!alloc) alloc = aligned_alloc_default;
    const size_t bytes = (size_t)dl->B * dl->T * sizeof(int32_t);
    for (int s = 0; s < nslots; s++) {
        pf->in[s] = alloc(bytes, "data loader batch slot");
        pf->tg[s] = alloc(bytes, "data loader batch slot");
        if (!pf->in[s] || !pf->tg[s]) { snprintf(err, errlen, "data loader: out of memory for batch slots"); return -1; }
    }
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    dl->pf = pf;
    if (prefetch_run(dl)) { snprintf(err, errlen, "data loader: cannot start the prefetch thread"); return -1; }
    return 0;
}

int data_loader_next_batch(DataLoader *dl, const int32_t **inputs, const int32_t **targets, double *wait_s,
                           char *err, size_t errlen) {
    DataPrefetch *pf = dl->pf;
    int rc = 0;
    double t0 = now_s();
    if (pf && pf->running) {
        pthread_mutex_lock(&pf->mu);
        while (pf->filled <= pf->taken) pthread_cond_wait(&pf->cv, &pf->mu);
        const int s = (int)(pf->taken % (uint64_t)pf->nslots);
        pf->taken++;
        pthread_cond_broadcast(&pf->cv);   // the previous slot is free now
        pthread_mutex_unlock(&pf->mu);
        if ((rc = pf->rc[s])) snprintf(err, errlen, "%s", pf->err[s]);
        *inputs = pf->in[s];
        *targets = pf->tg[s];
    } else {
        rc = reader_next(dl, dl->in, dl->tg, err, errlen);
        *inputs = dl->in;
        *targets = dl->tg;
    }
    if (wait_s) *wait_s = now_s() - t0;
    if (!rc) dl->batches++;
    return rc;
}

void data_loader_next(DataLoader *dl, int32_t *inputs, int32_t *targets) {
    const int32_t *in, *tg;
    char err[512];
    if (data_loader_next_batch(dl, &in, &tg, NULL, err, sizeof err)) {
        fprintf(stderr, "gptrain: error: %s\n", err);
        exit(2);
    }
    memcpy(inputs, in, (size_t)dl->B * dl->T * sizeof(int32_t));
    memcpy(targets, tg, (size_t)dl->B * dl->T * sizeof(int32_t));
}

void data_loader_seek(DataLoader *dl, uint64_t batches) {
    const int was_running = dl->pf && dl->pf->running;
    prefetch_stop(dl);
    reader_reset(dl);
    for (uint64_t i = 0; i < batches; i++) reader_next(dl, NULL, NULL, NULL, 0);
    dl->batches = batches;
    if (was_running && prefetch_run(dl)) {
        fprintf(stderr, "gptrain: error: data loader: cannot restart the prefetch thread\n");
        exit(2);
    }
}

void data_loader_reset(DataLoader *dl) { data_loader_seek(dl, 0); }

uint16_t data_loader_token(const DataLoader *dl, size_t i) {
    for (size_t k = 0; k < dl->nshards; k++) {
        if (i < dl->shards[k].ntok) return dl->shards[k].tokens[i];
        i -= dl->shards[k].ntok;
    }
    abort();
}

void data_loader_close(DataLoader *dl) {
    prefetch_stop(dl);
    guard_remove(dl);   // before the shards are unmapped
    if (dl->pf) {
        for (int s = 0; s < dl->pf->nslots; s++) {
            if (dl->pf->in[s]) dl->pf->free_fn(dl->pf->in[s]);
            if (dl->pf->tg[s]) dl->pf->free_fn(dl->pf->tg[s]);
        }
        pthread_mutex_destroy(&dl->pf->mu);
        pthread_cond_destroy(&dl->pf->cv);
        free(dl->pf);
    }
    if (dl->shards)
        for (size_t i = 0; i < dl->nshards; i++) shard_unmap(&dl->shards[i]);
    if (dl->paths) free_names(dl->paths, dl->nshards);
    free(dl->shards);
    free(dl->order);
    free(dl->starts);
    free(dl->perm);
    free(dl->in);
    free(dl->tg);
    memset(dl, 0, sizeof *dl);
}
