/*
 * fileio.c: the two file habits every writer in gptrain shares. Atomic replacement: write PATH.tmp, fflush, fsync,
 * fclose (all checked), rename over PATH, so a crash or a full disk never leaves a partial PATH; and mkdir -p with a
 * message naming the flag that gave the path.
 */
#include <errno.h>
#include <stdio.h>
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

int file_commit_tmp(FILE *f, const char *tmp, const char *path, int ok, char *err, size_t errlen) {
    if (ferror(f)) ok = 0;
    if (fflush(f) || fsync(fileno(f))) ok = 0;
    if (fclose(f)) ok = 0;
    if (!ok || rename(tmp, path)) {
        snprintf(err, errlen, "%s: write failed (%s)", path, errno ? strerror(errno) : "short write");
        unlink(tmp);
        return -1;
    }
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
