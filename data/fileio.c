/*
 * fileio.c: the file habits every writer in gptrain shares, so that no output path clobbers what it should not.
 * Atomic replacement of PATH: a temporary file beside it with a name no other process uses (PATH.tmp.<pid>.<n>,
 * created with O_EXCL, so two writers never share one), written, fflushed, fsynced and closed (all checked), then
 * renamed over PATH and the directory fsynced, so a crash or a full disk never leaves a partial PATH and two writers
 * of one path each leave a whole file (the last rename wins). Only regular files are replaced: a directory, device,
 * FIFO or socket at PATH is refused naming it, and a symbolic link is written through (its target is replaced, keeping
 * the link). And mkdir -p with a message naming the flag that gave the path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

int file_write_target(const char *path, char *target, size_t n, int *exists, mode_t *mode, char *err,
                      size_t errlen) {
    struct stat st;
    *exists = 0;
    *mode = 0644;
    if (lstat(path, &st)) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "%s: cannot check it (%s)", path, strerror(errno));
            return -1;
        }
        if ((size_t)snprintf(target, n, "%s", path) >= n) {
            snprintf(err, errlen, "%s: path too long", path);
            return -1;
        }
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {   // write through the link: replace what it points at
        char real[PATH_MAX];
        if (!realpath(path, real)) {
            snprintf(err, errlen, "%s: a symbolic link to a missing or unreachable file (%s)", path, strerror(errno));
            return -1;
        }
        if (stat(real, &st)) {
            snprintf(err, errlen, "%s: cannot check %s (%s)", path, real, strerror(errno));
            return -1;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "%s: a symbolic link to %s, which is %s: gptrain replaces only regular files", path,
                     real, file_kind(st.st_mode));
            return -1;
        }
        if ((size_t)snprintf(target, n, "%s", real) >= n) {
            snprintf(err, errlen, "%s: path too long", real);
            return -1;
        }
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: is %s, not a regular file: gptrain replaces only regular files (give a file path)",
                 path, file_kind(st.st_mode));
        return -1;
    } else if ((size_t)snprintf(target, n, "%s", path) >= n) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    *exists = 1;
    *mode = st.st_mode & 07777;
    return 0;
}

FILE *file_create_tmp(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen) {
    static unsigned counter;
    char target[PATH_MAX];
    int exists;
    mode_t mode;
    if (file_write_target(path, target, sizeof target, &exists, &mode, err, errlen)) return NULL;
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        if ((size_t)snprintf(tmp, tmplen, "%s.tmp.%d.%u", target, (int)getpid(), counter++) >= tmplen) {
            snprintf(err, errlen, "%s: path too long", path);
            return NULL;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot write (%s)", tmp, strerror(errno));
        return NULL;
    }
    if (exists) (void)fchmod(fd, mode);   // the replacement keeps the file's permissions
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot write (%s)", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
    } else file_watch(f, path);
    return f;
}

// Fault injection for the full-disk tests: GPTRAIN_TEST_FAIL_WRITE_AFTER=N makes every write past the first N bytes
// of the process fail with ENOSPC, as a full disk would; with GPTRAIN_TEST_FAIL_PATH=S, only writes into files whose
// path contains S count and fail (the final model, say, while the checkpoints before it succeed).
static long long fault_budget = -2;   // -2: not read yet; -1: no fault
static FILE *fault_files[8];          // with GPTRAIN_TEST_FAIL_PATH: the open files it names

static void file_unwatch(FILE *f);

void file_watch(FILE *f, const char *path) {
    file_unwatch(f);   // a FILE of a closed file may come back for another one
    const char *only = getenv("GPTRAIN_TEST_FAIL_PATH");
    if (!only || !*only || !strstr(path, only)) return;
    for (int i = 0; i < 8; i++)
        if (!fault_files[i]) { fault_files[i] = f; return; }
}

static void file_unwatch(FILE *f) {
    for (int i = 0; i < 8; i++)
        if (fault_files[i] == f) fault_files[i] = NULL;
}

int file_write(FILE *f, const void *data, size_t n) {
    if (fault_budget == -2) {
        const char *e = getenv("GPTRAIN_TEST_FAIL_WRITE_AFTER");
        fault_budget = e && *e ? atoll(e) : -1;
    }
    int watched = 1;
    const char *only = getenv("GPTRAIN_TEST_FAIL_PATH");
    if (only && *only) {
        watched = 0;
        for (int i = 0; i < 8; i++) watched |= fault_files[i] == f;
    }
    if (fault_budget >= 0 && watched) {
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
    file_unwatch(f);
    if (ferror(f)) ok = 0;
    if (fflush(f) || fsync(fileno(f))) ok = 0;
    if (fclose(f)) ok = 0;
    const int saved = errno;
    // For the two-writers test: GPTRAIN_TEST_PAUSE_BEFORE_RENAME=S holds a whole temporary file S seconds before its
    // rename, so that a second writer of the same path runs meanwhile.
    const char *pause = getenv("GPTRAIN_TEST_PAUSE_BEFORE_RENAME");
    if (pause && *pause) sleep((unsigned)atoi(pause));
    // The temporary file lies beside the file it replaces: its name less the ".tmp.<pid>.<n>" suffix.
    char target[PATH_MAX];
    snprintf(target, sizeof target, "%s", tmp);
    char *suffix = strstr(target, ".tmp.");
    for (char *s = suffix; s; s = strstr(s + 1, ".tmp.")) suffix = s;
    if (suffix) *suffix = 0;
    if (!ok || rename(tmp, target)) {
        snprintf(err, errlen, "%s: write failed (%s); the previous %s, if any, is untouched", path,
                 saved ? strerror(saved) : "short write", path);
        unlink(tmp);
        return -1;
    }
    // The rename is durable only once the directory entry is: fsync the directory too (best effort).
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", target);
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

int file_lock_dir(const char *dir, const char *flag, char *err, size_t errlen) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/.gptrain.lock", dir) >= sizeof path) {
        snprintf(err, errlen, "%s %s: path too long", flag, dir);
        return -1;
    }
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: cannot create its lock file %s (%s)", flag, dir, path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        const int e = errno;
        char who[64] = "";
        const ssize_t n = pread(fd, who, sizeof who - 1, 0);
        who[n > 0 ? n : 0] = 0;
        who[strcspn(who, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "%s %s: in use by another gptrain (%s); two runs in one directory would mix their "
                     "files: wait for it to end or give another %s", flag, dir, who[0] ? who : "pid unknown", flag);
        else
            snprintf(err, errlen, "%s %s: cannot lock %s (%s)", flag, dir, path, strerror(e));
        return -1;
    }
    char me[64];
    const int len = snprintf(me, sizeof me, "pid %d\n", (int)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, me, (size_t)len, 0) != len) {
        // The lock holds regardless; only the note of who holds it is missing.
    }
    return fd;   // held until the process exits (flock is released with the last descriptor, even on kill -9)
}

FILE *file_open_input(const char *path, char *err, size_t errlen) {
    // Non-blocking, so that opening a FIFO returns at once instead of waiting for a writer; then checked.
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        snprintf(err, errlen, "%s: cannot check it (%s)", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: is %s, expected a regular file", path, file_kind(st.st_mode));
        close(fd);
        return NULL;
    }
    const int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        close(fd);
    }
    return f;
}

char *file_read_text(const char *path, size_t cap, char *err, size_t errlen) {
    FILE *f = file_open_input(path, err, errlen);
    if (!f) return NULL;
    char *buf = malloc(cap + 2);
    if (!buf) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    const size_t n = fread(buf, 1, cap + 1, f);
    const int bad = ferror(f);
    fclose(f);
    if (bad || n > cap) {
        free(buf);
        if (bad) snprintf(err, errlen, "%s: read failed", path);
        else snprintf(err, errlen, "%s: larger than the %zu bytes expected of it", path, cap);
        return NULL;
    }
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        free(buf);
        snprintf(err, errlen, "%s: holds a NUL byte: not a text file", path);
        return NULL;
    }
    return buf;
}

int file_remove_temps(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    const size_t plen = strlen(prefix);
    for (struct dirent *e; (e = readdir(d));) {
        // PREFIX....tmp (the old single name) or PREFIX....tmp.<pid>.<n> (file_create_tmp's).
        const char *name = e->d_name, *t = strstr(name, ".tmp");
        if (strncmp(name, prefix, plen) || !t) continue;
        for (const char *u = t; (u = strstr(u + 1, ".tmp"));) t = u;
        const char *rest = t + 4;
        int ours = !*rest;
        if (*rest == '.') {
            const char *q = rest + 1;
            while (*q >= '0' && *q <= '9') q++;
            if (q > rest + 1 && *q == '.') {
                const char *r = q + 1;
                while (*r >= '0' && *r <= '9') r++;
                ours = r > q + 1 && !*r;
            }
            if (!ours) {   // plot's PNG temp: PREFIX.tmp.<pid>
                const char *r = rest + 1;
                while (*r >= '0' && *r <= '9') r++;
                ours = r > rest + 1 && !*r;
            }
        }
        char p[4096];
        struct stat st;
        if (!ours || (size_t)snprintf(p, sizeof p, "%s/%s", dir, name) >= sizeof p || lstat(p, &st) ||
            !S_ISREG(st.st_mode))
            continue;
        removed += !unlink(p);
    }
    closedir(d);
    return removed;
}
