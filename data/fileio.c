/*
 * fileio.c: the two file habits every writer in gptrain shares. Atomic replacement: write PATH.tmp, fflush, fsync,
 * fclose (all checked), rename over PATH, so a crash or a full disk never leaves a partial PATH; and mkdir -p with a
 * message naming the flag that gave the path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

FILE *file_create_tmp(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen) {
    if ((size_t)snprintf(tmp, tmplen, "%s.tmp", path) >= tmplen) {
        snprintf(err, errlen, "%s: path too long", path);
        return NULL;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) snprintf(err, errlen, "%s: cannot write (%s)", tmp, strerror(errno));
    return f;
}

// Fault injection for the full-disk tests: GPTRAIN_TEST_FAIL_WRITE_AFTER=N makes every write past the first N bytes
// of the process fail with ENOSPC, as a full disk would.
static long long fault_budget = -2;   // -2: not read yet; -1: no fault

int file_write(FILE *f, const void *data, size_t n) {
    if (fault_budget == -2) {
        const char *e = getenv("GPTRAIN_TEST_FAIL_WRITE_AFTER");
        fault_budget = e && *e ? atoll(e) : -1;
    }
    if (fault_budget >= 0) {
        if ((long long)n > fault_budget) {
            fwrite(data, 1, (size_t)fault_budget, f);
            fault_budget = 0;
            errno = ENOSPC;
            return -1;
        }
        fault_budget -= (long long)n;
    }
    if (fwrite(data, 1, n, f) != n) return -1;
    return 0;
}

int file_commit_tmp(FILE *f, const char *tmp, const char *path, int ok, char *err, size_t errlen) {
    if (ferror(f)) ok = 0;
    if (fflush(f) || fsync(fileno(f))) ok = 0;
    if (fclose(f)) ok = 0;
    const int saved = errno;
    if (!ok || rename(tmp, path)) {
        snprintf(err, errlen, "%s: write failed (%s); the previous %s, if any, is untouched", path,
                 saved ? strerror(saved) : "short write", path);
        unlink(tmp);
        return -1;
    }
    // The rename is durable only once the directory entry is: fsync the directory too (best effort).
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    int dfd = open(slash && dir[0] == 0 ? "/" : dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    return 0;
}

int file_mkdirs(const char *path, const char *flag, char *err, size_t errlen) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) { snprintf(err, errlen, "%s %s: path too long", flag, path); return -1; }
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (mkdir(buf, 0755) && errno != EEXIST) {
            snprintf(err, errlen, "%s %s: cannot create directory %s (%s)", flag, path, buf, strerror(errno));
            return -1;
        }
        if (stat(buf, &st) || !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s %s: %s exists and is not a directory", flag, path, buf);
            return -1;
        }
        *p = c;
        if (!c) return 0;
    }
}
