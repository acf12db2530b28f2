/*
 * plot.c: the lab's bar charts and `gptrain plot` (a training log against step), drawn by gnuplot run as a child
 * process on a script and data files we write to temporary files. Labels and titles are user text (flags, paths):
 * they go into gnuplot strings with quotes and backslashes replaced, and enhanced-text markup is off, so no label
 * can break the script. The PNG appears atomically: gnuplot draws into "<png>.tmp.<pid>", which is checked, fsynced
 * and renamed.
 */
#define _GNU_SOURCE
#include "plot.h"
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PLOT_WIDTH 1200
#define PLOT_HEIGHT 1000
#define PLOT_GNUPLOT_HINT "gnuplot not found on PATH: install it with apt-get install gnuplot-nox"

static int plot_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int plot_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// Whether an executable named `name` is on PATH.
static int plot_have_program(const char *name) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char dir[4096];
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < sizeof dir - strlen(name) - 2) {
            memcpy(dir, path, n);
            snprintf(dir + n, sizeof dir - n, "/%s", name);
            if (access(dir, X_OK) == 0) return 1;
        }
        path += n;
        if (*path == ':') path++;
    }
    return 0;
}

// Copy s into a gnuplot double-quoted string body: quotes become ', backslashes /, control characters spaces.
static void plot_quote(char *dst, size_t cap, const char *s) {
    size_t j = 0;
    for (; s && *s && j + 1 < cap; s++) {
        char c = *s;
        if (c == '"') c = '\'';
        else if (c == '\\') c = '/';
        else if ((unsigned char)c < 32) c = ' ';
        dst[j++] = c;
    }
    dst[j] = 0;
}

// A temporary file from a mkstemp template; returns the FILE (opened for writing) or NULL with err set.
static FILE *plot_temp(char *tmpl, char *err, size_t errlen) {
    int fd = mkstemp(tmpl);
    if (fd < 0) { plot_fail(err, errlen, "cannot create a temporary file %s: %s", tmpl, strerror(errno)); return NULL; }
    FILE *f = fdopen(fd, "w");
    if (!f) { close(fd); unlink(tmpl); plot_fail(err, errlen, "cannot open %s: %s", tmpl, strerror(errno)); }
    return f;
}

// Close a temporary file we wrote, reporting a write error (a full disk) as a failure.
static int plot_close(FILE *f, const char *path, char *err, size_t errlen) {
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad) return plot_fail(err, errlen, "cannot write %s: %s", path, strerror(errno ? errno : EIO));
    return 0;
}

// Where the PNG goes (the file png names, through a symbolic link: a regular file or none; a directory, device, FIFO
// or socket is refused) and gnuplot's temporary file beside it.
static int plot_paths(const char *png, char *target, char *tmp_png, size_t n, char *err, size_t errlen) {
    int exists;
    mode_t mode;
    if (file_write_target(png, target, n, &exists, &mode, err, errlen)) return -1;
    if ((size_t)snprintf(tmp_png, n, "%s.tmp.%d", target, (int)getpid()) >= n)
        return plot_fail(err, errlen, "%s: path too long", png);
    return 0;
}

// Run `gnuplot script`, which draws into tmp_png; then check the PNG, fsync it and rename it to target (png's file).
static int plot_run(const char *script, const char *tmp_png, const char *target, const char *png, char *err,
                    size_t errlen) {
    if (!plot_have_program("gnuplot")) return plot_fail(err, errlen, PLOT_GNUPLOT_HINT);
    char log[] = "/tmp/gptrain-plot-log-XXXXXX";
    int logfd = mkstemp(log);
    if (logfd < 0) return plot_fail(err, errlen, "cannot create a temporary file: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, logfd, 1);
    posix_spawn_file_actions_adddup2(&fa, logfd, 2);
    posix_spawn_file_actions_addclose(&fa, logfd);
    char *argv[] = {"gnuplot", (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    if (rc == 0) while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    // gnuplot's first message line says what went wrong.
    char first[512] = "";
    FILE *lf = fdopen(logfd, "r");
    if (lf) {
        rewind(lf);
        char line[512];
        while (fgets(line, sizeof line, lf))
            if (strspn(line, " \t\r\n^") < strlen(line)) { snprintf(first, sizeof first, "%s", line); break; }
        fclose(lf);
    } else close(logfd);
    unlink(log);
    first[strcspn(first, "\r\n")] = 0;
    if (rc != 0) return plot_fail(err, errlen, "cannot run gnuplot: %s", strerror(rc));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        unlink(tmp_png);
        return plot_fail(err, errlen, "gnuplot failed%s%s", first[0] ? ": " : "", first);
    }
    int fd = open(tmp_png, O_RDWR);
    unsigned char sig[8] = {0};
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (fd < 0 || read(fd, sig, 8) != 8 || memcmp(sig, png_sig, 8) != 0) {
        if (fd >= 0) close(fd);
        unlink(tmp_png);
        return plot_fail(err, errlen, "gnuplot did not write a PNG%s%s (is its pngcairo terminal there? gnuplot-nox has it)",
                         first[0] ? ": " : "", first);
    }
    if (fsync(fd) != 0) {
        close(fd);
        unlink(tmp_png);
        return plot_fail(err, errlen, "cannot write %s: %s", png, strerror(errno));
    }
    close(fd);
    if (rename(tmp_png, target) != 0) {
        const int e = errno;
        unlink(tmp_png);
        return plot_fail(err, errlen, "cannot write %s: %s", png, strerror(e));
    }
    return 0;
}

// The terminal lines every chart starts with; the output is the temporary PNG.
static void plot_terminal(FILE *s, const char *tmp_png) {
    char q[4096];
    plot_quote(q, sizeof q, tmp_png);
    fprintf(s, "set terminal pngcairo size %d,%d noenhanced font 'sans,11'\n", PLOT_WIDTH, PLOT_HEIGHT);
    fprintf(s, "set output \"%s\"\n", q);
    fprintf(s, "set datafile missing '?'\nset grid ytics\nset border 3\nset tics nomirror\n");
}

int plot_bars(const char *png, const char *title, const char *ylabel, int n, const char *const *labels,
              const double *values, const double *lo, const double *hi, char *err, size_t errlen) {
    int finite = 0;
    for (int i = 0; i < n; i++) finite += isfinite(values[i]) != 0;
    if (finite == 0) return plot_fail(err, errlen, "nothing to plot: no configuration has a value");
    char tmp_png[4096], target[4096];
    if (plot_paths(png, target, tmp_png, sizeof tmp_png, err, errlen)) return -1;
    char data[] = "/tmp/gptrain-plot-data-XXXXXX", script[] = "/tmp/gptrain-plot-gp-XXXXXX";
    FILE *d = plot_temp(data, err, errlen);
    if (!d) return -1;
    for (int i = 0; i < n; i++) {
        char q[512];
        plot_quote(q, sizeof q, labels[i]);
        const double v = values[i];
        // Columns: index, label, value, range low, range high, where the value's text goes, the text.
        const int ranged = lo && hi && isfinite(lo[i]) && isfinite(hi[i]);
        fprintf(d, "%d \"%s\" ", i, q);
        if (isfinite(v)) fprintf(d, "%.9g", v); else fprintf(d, "?");
        if (ranged) fprintf(d, " %.9g %.9g", lo[i], hi[i]); else fprintf(d, " ? ?");
        const double top = ranged ? fmax(hi[i], v) : v;
        if (!isfinite(v)) fprintf(d, " 0 \"no result\"\n");
        else fprintf(d, fabs(v) >= 100 ? " %.9g \"%.0f\"\n" : " %.9g \"%.3g\"\n", top, v);
    }
    if (plot_close(d, data, err, errlen)) { unlink(data); return -1; }
    FILE *s = plot_temp(script, err, errlen);
    if (!s) { unlink(data); return -1; }
    char qt[1024], qy[512];
    plot_quote(qt, sizeof qt, title);
    plot_quote(qy, sizeof qy, ylabel);
    plot_terminal(s, tmp_png);
    fprintf(s, "set title \"%s\"\nset ylabel \"%s\"\n", qt, qy);
    fprintf(s, "set style fill solid 0.6 border -1\nset boxwidth 0.6\nset yrange [0:*]\nset xrange [-0.6:%g]\n",
            n - 0.4);
    fprintf(s, "set bmargin %d\n", n > 4 ? 12 : 4);
    if (n > 4) fprintf(s, "set xtics rotate by -35\n");
    fprintf(s, "set xtics scale 0\nunset key\n");
    fprintf(s, "plot \"%s\" using 1:3:xtic(2) with boxes lc rgb '#4C72B0'", data);
    if (lo && hi) fprintf(s, ", \"\" using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 lw 1.5");
    fprintf(s, ", \"\" using 1:6:7 with labels offset 0,0.8\n");
    int rc = plot_close(s, script, err, errlen);
    if (!rc) rc = plot_run(script, tmp_png, target, png, err, errlen);
    unlink(data);
    unlink(script);
    return rc;
}

double jsonl_number(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NAN;
    p += strlen(pat);
    while (*p == ' ') p++;
    char *end;
    const double v = strtod(p, &end);
    return end == p ? NAN : v;
}

static void plot_put(FILE *d, double v) {
    if (isfinite(v)) fprintf(d, " %.9g", v); else fprintf(d, " ?");
}

int plot_log(const char *jsonl, const char *png, char *err, size_t errlen) {
    FILE *f = file_open_input(jsonl, err, errlen);
    if (!f) return -1;
    char data[] = "/tmp/gptrain-plot-data-XXXXXX", script[] = "/tmp/gptrain-plot-gp-XXXXXX";
    FILE *d = plot_temp(data, err, errlen);
    if (!d) { fclose(f); return -1; }
    // Columns: step loss val_loss tokens_per_s mfu% hfu% mem_mib; count what each has so empty panels say so.
    int rows = 0, have_val = 0, have_mfu = 0, have_mem = 0, lineno = 0;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        lineno++;
        const char *p = line + strspn(line, " \t\r\n");
        if (!*p) continue;
        const double step = jsonl_number(p, "step");
        if (*p != '{' || !isfinite(step)) {
            fclose(f);
            fclose(d);
            unlink(data);
            return plot_fail(err, errlen, "%s:%d: expected a JSON step record of `gptrain train --log` "
                             "({\"step\": N, \"loss\": ...})", jsonl, lineno);
        }
        const double val = jsonl_number(p, "val_loss"), mfu = jsonl_number(p, "mfu"),
                     hfu = jsonl_number(p, "hfu"), mem = jsonl_number(p, "mem_mib");
        fprintf(d, "%.0f", step);
        plot_put(d, jsonl_number(p, "loss"));
        plot_put(d, val);
        plot_put(d, jsonl_number(p, "tokens_per_s"));
        plot_put(d, 100 * mfu);
        plot_put(d, 100 * hfu);
        plot_put(d, mem);
        fprintf(d, "\n");
        rows++;
        have_val |= isfinite(val);
        have_mfu |= isfinite(mfu) || isfinite(hfu);
        have_mem |= isfinite(mem) && mem > 0;
    }
    const int read_error = ferror(f);
    fclose(f);
    if (plot_close(d, data, err, errlen)) { unlink(data); return -1; }
    if (read_error || rows == 0) {
        unlink(data);
        return plot_fail(err, errlen, "%s: %s", jsonl, read_error ? "read error" : "no step records (an empty log?)");
    }
    char tmp_png[4096], target[4096];
    if (plot_paths(png, target, tmp_png, sizeof tmp_png, err, errlen)) {
        unlink(data);
        return -1;
    }
    FILE *s = plot_temp(script, err, errlen);
    if (!s) { unlink(data); return -1; }
    char qlog[1024];
    plot_quote(qlog, sizeof qlog, jsonl);
    plot_terminal(s, tmp_png);
    fprintf(s, "set multiplot layout 2,2 title \"%s (%d steps)\"\nset xlabel 'step'\nset key top right\n", qlog, rows);
    // An empty panel is drawn as a note rather than left to gnuplot, which fails on a column with no points.
    const char *empty = "set label 1 \"%s\" at graph 0.5, graph 0.5 center\nset yrange [0:1]\n"
                        "plot 1/0 notitle\nunset label 1\nset yrange [*:*]\n";
    fprintf(s, "set title 'loss'\nset ylabel 'loss'\n");
    fprintf(s, "plot \"%s\" using 1:2 with lines lw 1.5 title 'train'", data);
    if (have_val) fprintf(s, ", \"\" using 1:3 with linespoints pt 7 ps 0.8 lw 1.5 title 'val'");
    fprintf(s, "\nset title 'throughput'\nset ylabel 'tokens/s'\n");
    fprintf(s, "plot \"%s\" using 1:4 with lines lw 1.5 title 'tokens/s'\n", data);
    fprintf(s, "set title 'utilization'\nset ylabel '%%'\n");
    if (have_mfu)
        fprintf(s, "plot \"%s\" using 1:5 with lines lw 1.5 title 'MFU', \"\" using 1:6 with lines lw 1.5 title 'HFU'\n",
                data);
    else
        fprintf(s, empty, "MFU/HFU unknown: no peak FLOPS for this device");
    fprintf(s, "set title 'memory'\nset ylabel 'MiB'\n");
    if (have_mem) fprintf(s, "set yrange [0:*]\nplot \"%s\" using 1:7 with lines lw 1.5 title 'mem_mib'\n", data);
    else fprintf(s, empty, "no memory figures in this log");
    fprintf(s, "unset multiplot\n");
    int rc = plot_close(s, script, err, errlen);
    if (!rc) rc = plot_run(script, tmp_png, target, png, err, errlen);
    unlink(data);
    unlink(script);
    return rc;
}

int plot_main(int argc, char **argv) {
    const char *log = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: gptrain plot LOG.jsonl [--out PNG]\n"
                   "example:\n  gptrain plot out/log.jsonl --out out/run.png\n"
                   "  draws loss (and val loss), tokens/s, MFU/HFU and memory against step from a `train --log` file\n"
                   "  --out PNG   where to write the chart (default: the log's name with .png); needs gnuplot\n");
            return 0;
        }
        if (!strcmp(argv[i], "--out")) {
            if (i + 1 >= argc) { fprintf(stderr, "gptrain: error: --out: expected a PNG path\n"); return 2; }
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "gptrain: error: unknown flag %s for plot: expected LOG.jsonl [--out PNG]\n", argv[i]);
            return 2;
        } else if (log) {
            fprintf(stderr, "gptrain: error: plot: expected one log file, got %s and %s\n", log, argv[i]);
            return 2;
        } else log = argv[i];
    }
    if (!log) { fprintf(stderr, "gptrain: error: plot: expected a log file: gptrain plot LOG.jsonl [--out PNG]\n"); return 2; }
    char def[4096];
    if (!out) {
        const size_t n = strlen(log);
        const size_t stem = n > 6 && !strcmp(log + n - 6, ".jsonl") ? n - 6 : n;
        snprintf(def, sizeof def, "%.*s.png", (int)stem, log);
        out = def;
    }
    char err[4096];
    if (plot_log(log, out, err, sizeof err)) { fprintf(stderr, "gptrain: error: %s\n", err); return 2; }
    printf("plot: %s\n", out);
    return 0;
}
