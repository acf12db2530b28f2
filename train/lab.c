/*
 * lab.c: the performance lab: `gptrain ab` (two configurations, interleaved trials, a ratio with its spread) and
 * `gptrain bench` (a grid of configurations, or the course table of forward/backward times per preset).
 *
 * Each measured run is a child `gptrain train` process (this very binary, /proc/self/exe) on the base flags plus the
 * run's own, for warm-up + measured steps, logging JSONL into a temporary directory; the table is computed from the
 * steps after the warm-up. A separate process per run means every run starts from the same state (fresh allocator,
 * fresh caches, its own device context) and a run that fails or runs out of memory is reported, not fatal.
 * `ab` interleaves A B A B ... so slow drifts of the machine (clocks, other load) hit both arms alike; the B/A ratio is
 * computed per trial pair and reported as median (min-max) over pairs.
 * `bench` asks the planner first: a configuration whose planned memory exceeds the memory to plan for (--memory-gib,
 * else 90% of the host's available memory on the CPU) is reported as "OOM (needs X GiB, has Y)" without launching.
 *
 * The lab's own flags are in LAB_FLAGS below; every other flag passes through to `gptrain train` unchanged.
 */
#define _XOPEN_SOURCE 700   // nftw and its FTW_DEPTH / FTW_PHYS flags, for the shell-free removal of the temp dir
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data.h"
#include "gptrain.h"
#include "plot.h"

#define LAB_MAX_ARGS 256
#define LAB_MAX_SWEEP 8
#define LAB_MAX_VALUES 16
#define LAB_MAX_RUNS 256

// Per-run statistics over the measured (post-warm-up) steps.
typedef struct LabStats {
    int ok, steps;
    double step_med, step_min, step_max, tok_s, model_tflops, hw_tflops, mfu, hfu, mem_mib;
    double plan_mib;   // what the planner said the run allocates (its "memory plan" line), beside mem_mib measured
    double fwd_mean, fwd_std, bwd_mean, bwd_std;            // measured steps
    double fwd_mean0, fwd_std0, bwd_mean0, bwd_std0;        // every step, warm-up included (the course table's "0")
    char error[256];
} LabStats;

typedef struct Lab {
    const char *base[LAB_MAX_ARGS];
    int nbase;
    int steps, warmup, trials;
    const char *a, *b, *csv, *jsonl, *plot;
    const char *sweep[LAB_MAX_SWEEP];
    int nsweep, course;
    double memory_gib;
    char tmp[256];
    // On the CPU each run would measure its own peak at start-up (a GEMM timed on a shared machine: it varies by a
    // few percent), so MFU and HFU of two arms would not be against the same peak. The first run's measured peak is
    // passed as --peak-tflops to every later run (unless the flags give one).
    char peak[32];
} Lab;

// ---- the lab's flags: one table, parsed and printed in --help from it ----
typedef enum { LF_INT, LF_NUM, LF_STR, LF_LIST, LF_BOOL } LabFlagType;
typedef struct LabFlag {
    const char *name;
    LabFlagType type;
    int cmds;   // 1: ab, 2: bench
    const char *def, *help;
} LabFlag;
static const LabFlag LAB_FLAGS[] = {
    {"a", LF_STR, 1, "", "flags of configuration A, e.g. \"--recompute none --batch 8\""},
    {"b", LF_STR, 1, "", "flags of configuration B"},
    {"trials", LF_INT, 1, "3", "A/B pairs, run interleaved A B A B ..."},
    {"sweep", LF_LIST, 2, "", "key=v1,v2,... (a train flag without --); repeat for a grid"},
    {"course", LF_BOOL, 2, "", "the course table: forward/backward ms (mean, std) with 0 and with --warmup warm-up steps "
                               "for presets small, medium, large, xl, 2.7b"},
    {"steps", LF_INT, 3, "10", "measured steps per run"},
    {"warmup", LF_INT, 3, "3", "steps run before measuring"},
    {"memory-gib", LF_NUM, 2, "0", "memory to plan for (0: 90% of the host's available memory on the CPU; on a GPU the "
                                   "run itself reports an out-of-memory)"},
    {"csv", LF_STR, 3, "", "also write the table as CSV"},
    {"jsonl", LF_STR, 3, "", "also write one JSON object per run"},
    {"plot", LF_STR, 3, "", "bar chart of tokens/s as PNG (needs gnuplot)"},
};
#define NUM_LAB_FLAGS (int)(sizeof LAB_FLAGS / sizeof LAB_FLAGS[0])

static void lab_help(int cmd) {
    printf("usage: gptrain %s %s [lab flags] [train flags ...]\nexample:\n  %s\n\nlab flags (default in brackets):\n",
           cmd == 1 ? "ab" : "bench", cmd == 1 ? "--a \"FLAGS\" --b \"FLAGS\"" : "--sweep KEY=V1,V2 | --course",
           cmd == 1 ? "gptrain ab --data data/shakespeare_char --a \"--recompute none\" --b \"--recompute full\" --trials 3"
                    : "gptrain bench --data data/shakespeare_char --sweep batch=4,8,16 --plot out/batch.png");
    for (int i = 0; i < NUM_LAB_FLAGS; i++) {
        const LabFlag *f = &LAB_FLAGS[i];
        if (!(f->cmds & cmd)) continue;
        const char *meta = f->type == LF_INT ? "N" : f->type == LF_NUM ? "X" : f->type == LF_LIST ? "KEY=V1,V2"
                         : f->type == LF_BOOL ? "" : strlen(f->name) == 1 ? "\"FLAGS\"" : "FILE";
        char left[64], text[512];
        const int n = snprintf(left, sizeof left, "  --%s %s", f->name, meta);
        if (f->def[0]) snprintf(text, sizeof text, "%s [%s]", f->help, f->def);
        else snprintf(text, sizeof text, "%s", f->help);
        fputs(left, stdout);
        cli_print_wrapped(stdout, text, 24, n);
    }
    printf("\n");
    cli_print_wrapped(stdout, "every other flag goes to each `gptrain train` run (see gptrain train --help); each run "
                              "adds --steps, --log, --out and --eval-every 0 --eval-steps 1 of its own", 0, 0);
}

static int parse_int_flag(const char *flag, const char *v, int min) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < min || x > 1000000) die_user("--%s '%s': expected an integer >= %d", flag, v, min);
    return (int)x;
}

static void lab_cleanup(Lab *L);
static Lab *lab_at_exit;
static void lab_exit_cleanup(void) {
    if (lab_at_exit) lab_cleanup(lab_at_exit);
}

static void lab_parse(Lab *L, int cmd, int argc, char **argv) {
    memset(L, 0, sizeof *L);
    L->steps = 10;
    L->warmup = 3;
    L->trials = 3;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { lab_help(cmd); exit(0); }
        int k = -1;
        if (!strncmp(arg, "--", 2))
            for (int j = 0; j < NUM_LAB_FLAGS; j++)
                if ((LAB_FLAGS[j].cmds & cmd) && !strcmp(arg + 2, LAB_FLAGS[j].name)) k = j;
        if (k < 0) {   // a train flag (and its value): pass through
            if (L->nbase >= LAB_MAX_ARGS - 32) die_user("%s: too many flags", arg);
            L->base[L->nbase++] = arg;
            continue;
        }
        const LabFlag *f = &LAB_FLAGS[k];
        if (f->type == LF_BOOL) { L->course = 1; continue; }
        if (i + 1 >= argc) die_user("--%s: expected a value", f->name);
        const char *v = argv[++i];
        if (!strcmp(f->name, "a")) L->a = v;
        else if (!strcmp(f->name, "b")) L->b = v;
        else if (!strcmp(f->name, "trials")) L->trials = parse_int_flag("trials", v, 1);
        else if (!strcmp(f->name, "steps")) L->steps = parse_int_flag("steps", v, 1);
        else if (!strcmp(f->name, "warmup")) L->warmup = parse_int_flag("warmup", v, 0);
        else if (!strcmp(f->name, "csv")) L->csv = v;
        else if (!strcmp(f->name, "jsonl")) L->jsonl = v;
        else if (!strcmp(f->name, "plot")) L->plot = v;
        else if (!strcmp(f->name, "memory-gib")) {
            char *end;
            L->memory_gib = strtod(v, &end);
            if (*end || !(L->memory_gib >= 0)) die_user("--memory-gib '%s': expected a number >= 0", v);
        } else if (!strcmp(f->name, "sweep")) {
            if (L->nsweep == LAB_MAX_SWEEP) die_user("--sweep: at most %d keys", LAB_MAX_SWEEP);
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1]) die_user("--sweep '%s': expected key=v1,v2,... (e.g. recompute=none,full)", v);
            L->sweep[L->nsweep++] = v;
        }
    }
    if (cmd == 1 && (!L->a || !L->b)) die_user("--a and --b: expected the flags of both configurations");
    if (cmd == 2 && !L->nsweep && !L->course) die_user("--sweep: expected at least one key=v1,v2 (or --course)");
    // The output files are checked now, not after the trials: a FIFO or a directory there is refused at once.
    const char *outs[3][2] = {{L->csv, "csv"}, {L->jsonl, "jsonl"}, {L->plot, "plot"}};
    for (int i = 0; i < 3; i++) {
        char target[4200], err[4400];
        int exists;
        mode_t mode;
        if (outs[i][0] && file_write_target(outs[i][0], target, sizeof target, &exists, &mode, err, sizeof err))
            die_user("--%s %s", outs[i][1], err);
    }
    snprintf(L->tmp, sizeof L->tmp, "%s/gptrain-lab-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(L->tmp)) die_user("TMPDIR %s: cannot create a temporary directory (%s)", L->tmp, strerror(errno));
    lab_at_exit = L;   // a user error from here on (die_user exits) still removes the directory
    atexit(lab_exit_cleanup);
}

// Split a flag string on whitespace into argv entries (the strings live in `store`).
static int split_flags(const char *s, char *store, size_t cap, const char **out, int max) {
    snprintf(store, cap, "%s", s ? s : "");
    int n = 0;
    for (char *tok = strtok(store, " \t\n"); tok && n < max; tok = strtok(NULL, " \t\n")) out[n++] = tok;
    return n;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : NAN;
}
static void mean_std(const double *v, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

// Run `gptrain train BASE EXTRA --steps W+S --log ...` and summarise the steps after W.
static LabStats lab_run(Lab *L, const char *const *extra, int nextra, int id) {
    LabStats st;
    memset(&st, 0, sizeof st);
    char log[512], out[512], console[512], steps[32];
    snprintf(log, sizeof log, "%s/run%d.jsonl", L->tmp, id);
    snprintf(out, sizeof out, "%s/run%d", L->tmp, id);
    snprintf(console, sizeof console, "%s/run%d.out", L->tmp, id);
    snprintf(steps, sizeof steps, "%d", L->warmup + L->steps);
    const char *argv[LAB_MAX_ARGS * 2];
    int n = 0;
    argv[n++] = "gptrain";
    argv[n++] = "train";
    for (int i = 0; i < L->nbase; i++) argv[n++] = L->base[i];
    for (int i = 0; i < nextra; i++) argv[n++] = extra[i];
    const char *own[] = {"--steps", steps, "--log", log, "--out", out, "--eval-every", "0", "--eval-steps", "1",
                         "--print-every", "1000000"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) argv[n++] = own[i];
    if (L->peak[0]) {
        argv[n++] = "--peak-tflops";
        argv[n++] = L->peak;
    }
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die_user("ab/bench: cannot start a run (fork: %s)", strerror(errno));
    if (pid == 0) {
        FILE *f = freopen(console, "w", stdout);
        if (f && dup2(fileno(stdout), 2) >= 0) execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        // The run's last line says why (a user error, an out-of-memory message).
        FILE *f = fopen(console, "r");
        char line[512] = "", last[512] = "(no output)";
        while (f && fgets(line, sizeof line, f))
            if (line[0] != '\n') snprintf(last, sizeof last, "%s", line);
        if (f) fclose(f);
        last[strcspn(last, "\n")] = 0;
        snprintf(st.error, sizeof st.error, "failed (exit %d): %.200s", WIFEXITED(status) ? WEXITSTATUS(status) : -1, last);
        return st;
    }
    // The run's header: the planner's total ("memory plan: X MiB in all") and, on the first run, a measured peak.
    int peak_given = 0;
    for (int i = 0; i < L->nbase; i++) peak_given |= !strcmp(L->base[i], "--peak-tflops");
    FILE *c = fopen(console, "r");
    char cline[1024];
    st.plan_mib = NAN;
    while (c && fgets(cline, sizeof cline, c)) {
        double v;
        if (sscanf(cline, "memory plan: %lf MiB in all", &v) == 1) st.plan_mib = v;
        const char *p = strstr(cline, "; peak ");
        if (!L->peak[0] && !peak_given && p && strstr(p, "(measured") && sscanf(p, "; peak %lf TFLOPS", &v) == 1 &&
            v > 0) {
            snprintf(L->peak, sizeof L->peak, "%.4g", v);
            printf("  peak %s TFLOPS measured by this first run: MFU/HFU of every later run use it too\n", L->peak);
        }
    }
    if (c) fclose(c);
    FILE *f = fopen(log, "r");
    if (!f) { snprintf(st.error, sizeof st.error, "no log written"); return st; }
    double stepv[4096], tok[4096], mt[4096], ht[4096], mfu[4096], hfu[4096], fw[4096], bw[4096], fw0[4096], bw0[4096];
    int m = 0, all = 0;
    char line[4096];
    st.mem_mib = 0;
    while (fgets(line, sizeof line, f) && all < 4096) {
        const double step = jsonl_number(line, "step");
        fw0[all] = jsonl_number(line, "fwd_ms");
        bw0[all++] = jsonl_number(line, "bwd_ms");
        const double mem = jsonl_number(line, "mem_mib");
        if (isfinite(mem) && mem > st.mem_mib) st.mem_mib = mem;
        if (!(step > L->warmup)) continue;
        stepv[m] = jsonl_number(line, "step_ms");
        tok[m] = jsonl_number(line, "tokens_per_s");
        mt[m] = jsonl_number(line, "model_tflops");
        ht[m] = jsonl_number(line, "hw_tflops");
        mfu[m] = jsonl_number(line, "mfu");
        hfu[m] = jsonl_number(line, "hfu");
        fw[m] = fw0[all - 1];
        bw[m] = bw0[all - 1];
        m++;
    }
    fclose(f);
    if (!m) { snprintf(st.error, sizeof st.error, "no measured steps in the log"); return st; }
    st.ok = 1;
    st.steps = m;
    mean_std(fw, m, &st.fwd_mean, &st.fwd_std);
    mean_std(bw, m, &st.bwd_mean, &st.bwd_std);
    mean_std(fw0, all, &st.fwd_mean0, &st.fwd_std0);
    mean_std(bw0, all, &st.bwd_mean0, &st.bwd_std0);
    st.step_min = st.step_max = stepv[0];
    for (int i = 0; i < m; i++) { st.step_min = fmin(st.step_min, stepv[i]); st.step_max = fmax(st.step_max, stepv[i]); }
    st.step_med = median(stepv, m);
    st.tok_s = median(tok, m);
    st.model_tflops = median(mt, m);
    st.hw_tflops = median(ht, m);
    st.mfu = median(mfu, m);
    st.hfu = median(hfu, m);
    return st;
}

static void pct(char *buf, size_t n, double x) {
    if (isfinite(x)) snprintf(buf, n, "%.1f%%", 100 * x);
    else snprintf(buf, n, "n/a");
}

static void print_stats_header(void) {
    printf("%-40s %10s %25s %9s %9s %7s %7s %9s %9s\n", "config", "tokens/s", "step ms med (min-max)", "TFLOPS",
           "hwTFLOPS", "MFU", "HFU", "plan MiB", "mem MiB");
}
static void print_stats_row(const char *name, const LabStats *s) {
    if (!s->ok) { printf("%-40s %s\n", name, s->error); return; }
    char mfu[16], hfu[16], range[64];
    pct(mfu, sizeof mfu, s->mfu);
    pct(hfu, sizeof hfu, s->hfu);
    snprintf(range, sizeof range, "%.2f (%.2f-%.2f)", s->step_med, s->step_min, s->step_max);
    printf("%-40s %10.0f %25s %9.4f %9.4f %7s %7s %9.1f %9.1f\n", name, s->tok_s, range, s->model_tflops,
           s->hw_tflops, mfu, hfu, s->plan_mib, s->mem_mib);
}

static void write_row_files(FILE *csv, FILE *jl, const char *name, const LabStats *s) {
    if (csv) {
        if (s->ok)
            fprintf(csv, "\"%s\",ok,%.1f,%.3f,%.3f,%.3f,%.6g,%.6g,%.6g,%.6g,%.1f,%.1f,%.3f,%.3f,%.3f,%.3f\n", name,
                    s->tok_s, s->step_med, s->step_min, s->step_max, s->model_tflops, s->hw_tflops, s->mfu, s->hfu,
                    s->plan_mib, s->mem_mib,
                    s->fwd_mean, s->fwd_std, s->bwd_mean, s->bwd_std);
        else fprintf(csv, "\"%s\",\"%s\",,,,,,,,,,,,,,\n", name, s->error);
    }
    if (jl) {
        if (s->ok)
            fprintf(jl, "{\"config\": \"%s\", \"ok\": true, \"tokens_per_s\": %.1f, \"step_ms_median\": %.3f, "
                        "\"step_ms_min\": %.3f, \"step_ms_max\": %.3f, \"model_tflops\": %.6g, \"hw_tflops\": %.6g, "
                        "\"mfu\": %.6g, \"hfu\": %.6g, \"plan_mib\": %.1f, \"mem_mib\": %.1f, \"fwd_ms\": %.3f, \"fwd_ms_std\": %.3f, "
                        "\"bwd_ms\": %.3f, \"bwd_ms_std\": %.3f}\n",
                    name, s->tok_s, s->step_med, s->step_min, s->step_max, s->model_tflops, s->hw_tflops,
                    isfinite(s->mfu) ? s->mfu : -1, isfinite(s->hfu) ? s->hfu : -1, s->plan_mib, s->mem_mib, s->fwd_mean,
                    s->fwd_std, s->bwd_mean, s->bwd_std);
        else fprintf(jl, "{\"config\": \"%s\", \"ok\": false, \"error\": \"%s\"}\n", name, s->error);
    }
}

#define LAB_CSV_HEADER                                                                                                \
    "config,status,tokens_per_s,step_ms_median,step_ms_min,step_ms_max,model_tflops,hw_tflops,mfu,hfu,plan_mib,"      \
    "mem_mib,fwd_ms,fwd_ms_std,bwd_ms,bwd_ms_std"

// --csv and --jsonl: written like every file gptrain writes (a temporary file beside the target, renamed over it
// when the lab is done; a FIFO, device or directory is refused), so an interrupted lab leaves the previous table.
typedef struct LabOut {
    FILE *f;
    char tmp[4200];
    const char *path, *flag;
} LabOut;

static FILE *open_out(LabOut *o, const char *path, const char *flag) {
    memset(o, 0, sizeof *o);
    if (!path) return NULL;
    char err[4400];
    o->path = path;
    o->flag = flag;
    if (!(o->f = file_create_tmp(path, o->tmp, sizeof o->tmp, err, sizeof err))) die_user("--%s %s", flag, err);
    return o->f;
}

static void close_out(LabOut *o) {
    if (!o->f) return;
    char err[4400];
    if (file_commit_tmp(o->f, o->tmp, o->path, !ferror(o->f), err, sizeof err)) die_user("--%s %s", o->flag, err);
    o->f = NULL;
}

// One entry of the temporary directory, children first (FTW_DEPTH). FTW_PHYS reports a symbolic link as itself, so
// it is unlinked and never followed; no shell sees the path (TMPDIR may hold quotes or spaces).
static int lab_remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if ((type == FTW_DP || type == FTW_DNR ? rmdir(path) : unlink(path)) != 0)
        fprintf(stderr, "warning: could not remove %s (%s)\n", path, strerror(errno));
    return 0;   // go on: remove whatever else can be removed
}

static void lab_cleanup(Lab *L) {
    if (!L->tmp[0]) return;
    // FTW_MOUNT: never descend into another file system mounted below the directory.
    if (nftw(L->tmp, lab_remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
        fprintf(stderr, "warning: could not remove %s (%s)\n", L->tmp, strerror(errno));
    L->tmp[0] = 0;   // removed once, by the command or at exit
    if (lab_at_exit == L) lab_at_exit = NULL;   // L lives in the command's frame, gone by the time exit runs
}

// ---- ab ----

// An arm's step time, TFLOPS, MFU and HFU: the median over its trials of each trial's median.
static void pool_medians(LabStats *arm, const LabStats *runs, int n) {
    double v[5][1024];
    int k = 0;
    for (int t = 0; t < n && k < 1024; t++) {
        if (!runs[t].ok) continue;
        v[0][k] = runs[t].step_med;
        v[1][k] = runs[t].model_tflops;
        v[2][k] = runs[t].hw_tflops;
        v[3][k] = runs[t].mfu;
        v[4][k++] = runs[t].hfu;
    }
    if (!k) return;
    arm->step_med = median(v[0], k);
    arm->model_tflops = median(v[1], k);
    arm->hw_tflops = median(v[2], k);
    arm->mfu = median(v[3], k);
    arm->hfu = median(v[4], k);
}

int cmd_ab(int argc, char **argv) {
    Lab L;
    lab_parse(&L, 1, argc, argv);
    char sa[4096], sb[4096];
    const char *fa[64], *fb[64];
    const int na = split_flags(L.a, sa, sizeof sa, fa, 64), nb = split_flags(L.b, sb, sizeof sb, fb, 64);
    printf("gptrain ab: A = %s | B = %s | %d trials x (%d warm-up + %d measured steps), interleaved A B A B\n", L.a,
           L.b, L.trials, L.warmup, L.steps);
    LabStats *sa_runs = calloc(L.trials, sizeof *sa_runs), *sb_runs = calloc(L.trials, sizeof *sb_runs);
    for (int t = 0; t < L.trials; t++) {
        sa_runs[t] = lab_run(&L, fa, na, 2 * t);
        sb_runs[t] = lab_run(&L, fb, nb, 2 * t + 1);
        printf("  trial %d: A %s, B %s\n", t + 1, sa_runs[t].ok ? "ok" : sa_runs[t].error,
               sb_runs[t].ok ? "ok" : sb_runs[t].error);
    }
    // Pool each arm's measured steps by taking medians of the per-trial medians; ratios per trial pair.
    // Each arm's table row starts from its first completed trial (its error when none completed).
    LabStats A = sa_runs[0], B = sb_runs[0];
    for (int t = L.trials - 1; t >= 0; t--) {
        if (sa_runs[t].ok) A = sa_runs[t];
        if (sb_runs[t].ok) B = sb_runs[t];
    }
    double ratios[1024], ta[1024], tb[1024];
    int nr = 0, na_ok = 0, nb_ok = 0;
    for (int t = 0; t < L.trials; t++) {
        if (sa_runs[t].ok) ta[na_ok++] = sa_runs[t].tok_s;
        if (sb_runs[t].ok) tb[nb_ok++] = sb_runs[t].tok_s;
        if (sa_runs[t].ok && sb_runs[t].ok) ratios[nr++] = sb_runs[t].tok_s / sa_runs[t].tok_s;
    }
    for (int t = 0; t < L.trials; t++) {
        if (sa_runs[t].ok) { A.step_min = fmin(A.step_min, sa_runs[t].step_min); A.step_max = fmax(A.step_max, sa_runs[t].step_max); A.mem_mib = fmax(A.mem_mib, sa_runs[t].mem_mib); }
        if (sb_runs[t].ok) { B.step_min = fmin(B.step_min, sb_runs[t].step_min); B.step_max = fmax(B.step_max, sb_runs[t].step_max); B.mem_mib = fmax(B.mem_mib, sb_runs[t].mem_mib); }
    }
    if (na_ok) A.tok_s = median(ta, na_ok);
    if (nb_ok) B.tok_s = median(tb, nb_ok);
    pool_medians(&A, sa_runs, L.trials);
    pool_medians(&B, sb_runs, L.trials);
    printf("\n");
    print_stats_header();
    char name[64];
    snprintf(name, sizeof name, "A: %.35s", L.a);
    print_stats_row(name, &A);
    snprintf(name, sizeof name, "B: %.35s", L.b);
    print_stats_row(name, &B);
    LabOut csv_out, jl_out;
    FILE *csv = open_out(&csv_out, L.csv, "csv"), *jl = open_out(&jl_out, L.jsonl, "jsonl");
    if (csv) fprintf(csv, "%s\n", LAB_CSV_HEADER);
    write_row_files(csv, jl, "A", &A);
    write_row_files(csv, jl, "B", &B);
    int rc = 0;
    if (nr) {
        double lo = ratios[0], hi = ratios[0];
        for (int i = 0; i < nr; i++) { lo = fmin(lo, ratios[i]); hi = fmax(hi, ratios[i]); }
        const double med = median(ratios, nr);
        printf("\nB/A tokens/s: %.3f (min %.3f, max %.3f over %d trial pairs); %s\n", med, lo, hi, nr,
               lo > 1 ? "B faster in every pair" : hi < 1 ? "A faster in every pair" : "the pairs disagree: within noise");
        if (jl) fprintf(jl, "{\"ratio_b_over_a\": %.4f, \"ratio_min\": %.4f, \"ratio_max\": %.4f, \"pairs\": %d}\n", med, lo, hi, nr);
        if (L.plot) {
            const char *labels[2] = {"A", "B"};
            double v[2] = {A.tok_s, B.tok_s}, vlo[2], vhi[2];
            vlo[0] = vhi[0] = A.tok_s;
            vlo[1] = vhi[1] = B.tok_s;
            for (int t = 0; t < L.trials; t++) {
                if (sa_runs[t].ok) { vlo[0] = fmin(vlo[0], sa_runs[t].tok_s); vhi[0] = fmax(vhi[0], sa_runs[t].tok_s); }
                if (sb_runs[t].ok) { vlo[1] = fmin(vlo[1], sb_runs[t].tok_s); vhi[1] = fmax(vhi[1], sb_runs[t].tok_s); }
            }
            char err[512], title[512];
            snprintf(title, sizeof title, "A: %s   B: %s", L.a, L.b);
            if (plot_bars(L.plot, title, "tokens/s (median; min-max over trials)", 2, labels, v, vlo, vhi, err, sizeof err))
                die_user("--plot: %s", err);
            printf("plot: %s\n", L.plot);
        }
    } else {
        printf("\nno trial pair completed: no ratio\n");
        rc = 1;
    }
    close_out(&csv_out);
    close_out(&jl_out);
    free(sa_runs);
    free(sb_runs);
    lab_cleanup(&L);
    return rc;
}

// ---- bench ----

typedef struct Grid {
    const char *key[LAB_MAX_SWEEP];
    const char *val[LAB_MAX_SWEEP][LAB_MAX_VALUES];
    int nval[LAB_MAX_SWEEP], nkeys;
    char store[LAB_MAX_SWEEP][1024];
} Grid;

static void grid_parse(const Lab *L, Grid *g) {
    memset(g, 0, sizeof *g);
    for (int k = 0; k < L->nsweep; k++) {
        snprintf(g->store[k], sizeof g->store[k], "%s", L->sweep[k]);
        char *eq = strchr(g->store[k], '=');
        *eq = 0;
        g->key[k] = g->store[k];
        for (char *v = strtok(eq + 1, ","); v; v = strtok(NULL, ",")) {
            if (g->nval[k] == LAB_MAX_VALUES) die_user("--sweep %s: at most %d values", g->key[k], LAB_MAX_VALUES);
            g->val[k][g->nval[k]++] = v;
        }
        if (!g->nval[k]) die_user("--sweep %s: expected values after '='", L->sweep[k]);
    }
    g->nkeys = L->nsweep;
}

// Planned memory of one configuration (base flags + extra) for the pre-check, or 0 when it cannot be planned here
// (a GPU run without --memory-gib: the run itself reports its out-of-memory).
static double planned_bytes(const Lab *L, const char *const *extra, int nextra, double *cap, const char **what) {
    const char *argv[LAB_MAX_ARGS * 2];
    int n = 0;
    for (int i = 0; i < L->nbase; i++) argv[n++] = L->base[i];
    for (int i = 0; i < nextra; i++) argv[n++] = extra[i];
    Options o;
    char err[1024];
    if (cli_parse(&o, CMD_TRAIN, n, (char **)argv, err, sizeof err)) die_user("%s", err);
    if (L->memory_gib > 0) o.memory_gib = L->memory_gib;
    int gpu = strcmp(o.device, "cpu") != 0;
#ifndef GPTRAIN_CUDA
    gpu = 0;
#endif
    if (gpu && o.memory_gib <= 0) return 0;
    *cap = memory_cap_bytes(&o, NULL, what);
    GPTConfig cfg;
    int T;
    resolve_model(&o, &cfg, &T, 50257);
    if (o.batch == CLI_AUTO) return 0;   // the run picks the largest batch that fits
    RecomputeMode rc;
    gpt_recompute_parse(o.recompute, &rc);
    const AttentionKind attn = resolve_attention(&o, NULL, &cfg);
    return gpt_memory_total_estimate(&cfg, o.batch, T, rc, attn, resolve_dtype(&o), resolve_grad_dtype(&o));
}

int cmd_bench(int argc, char **argv) {
    Lab L;
    lab_parse(&L, 2, argc, argv);
    Grid g;
    if (L.course) {   // the course table: a sweep over the presets
        static char course[128] = "preset=small,medium,large,xl,2.7b";
        if (L.nsweep == LAB_MAX_SWEEP) die_user("--course: too many --sweep keys");
        L.sweep[L.nsweep++] = course;
    }
    grid_parse(&L, &g);
    int total = 1;
    for (int k = 0; k < g.nkeys; k++) total *= g.nval[k];
    if (total > LAB_MAX_RUNS) die_user("--sweep: %d configurations; at most %d", total, LAB_MAX_RUNS);
    printf("gptrain bench: %d configuration%s x (%d warm-up + %d measured steps)\n", total, total == 1 ? "" : "s",
           L.warmup, L.steps);
    LabOut csv_out, jl_out;
    FILE *csv = open_out(&csv_out, L.csv, "csv"), *jl = open_out(&jl_out, L.jsonl, "jsonl");
    if (csv) fprintf(csv, "%s\n", LAB_CSV_HEADER);
    LabStats *res = calloc(total, sizeof *res);
    char (*names)[160] = calloc(total, sizeof *names);
    for (int r = 0; r < total; r++) {
        const char *extra[2 * LAB_MAX_SWEEP];
        char flags[LAB_MAX_SWEEP][128];
        int ne = 0, idx = r;
        names[r][0] = 0;
        int vis[LAB_MAX_SWEEP];   // the value index per key; the last key varies fastest
        for (int k = g.nkeys - 1; k >= 0; k--) { vis[k] = idx % g.nval[k]; idx /= g.nval[k]; }
        for (int k = 0; k < g.nkeys; k++) {
            snprintf(flags[k], sizeof flags[k], "--%s", g.key[k]);
            extra[ne++] = flags[k];
            extra[ne++] = g.val[k][vis[k]];
            size_t len = strlen(names[r]);
            snprintf(names[r] + len, sizeof names[r] - len, "%s%s=%s", k ? " " : "", g.key[k], g.val[k][vis[k]]);
        }
        double cap = 0;
        const char *what = "";
        const double need = planned_bytes(&L, extra, ne, &cap, &what);
        if (need > 0 && need > cap) {
            res[r].ok = 0;
            snprintf(res[r].error, sizeof res[r].error, "OOM (needs %.2f GiB, has %.2f GiB: %s); not launched",
                     need / 1073741824.0, cap / 1073741824.0, what);
        } else res[r] = lab_run(&L, extra, ne, r);
        write_row_files(csv, jl, names[r], &res[r]);
        printf("  %s: %s\n", names[r], res[r].ok ? "ok" : res[r].error);
    }
    printf("\n");
    if (L.course) {
        printf("%-40s %25s %25s %25s %25s\n", "config", "fwd ms (0 warm-up)", "bwd ms (0 warm-up)", "fwd ms (warm)",
               "bwd ms (warm)");
        for (int r = 0; r < total; r++) {
            if (!res[r].ok) { printf("%-40s %s\n", names[r], res[r].error); continue; }
            char c[4][64];
            snprintf(c[0], 64, "%.2f +- %.2f", res[r].fwd_mean0, res[r].fwd_std0);
            snprintf(c[1], 64, "%.2f +- %.2f", res[r].bwd_mean0, res[r].bwd_std0);
            snprintf(c[2], 64, "%.2f +- %.2f", res[r].fwd_mean, res[r].fwd_std);
            snprintf(c[3], 64, "%.2f +- %.2f", res[r].bwd_mean, res[r].bwd_std);
            printf("%-40s %25s %25s %25s %25s\n", names[r], c[0], c[1], c[2], c[3]);
        }
        printf("(mean +- std over all %d steps, then over the %d after --warmup %d)\n", L.warmup + L.steps, L.steps,
               L.warmup);
    } else {
        print_stats_header();
        for (int r = 0; r < total; r++) print_stats_row(names[r], &res[r]);
    }
    if (L.plot) {
        const char *labels[LAB_MAX_RUNS];
        double v[LAB_MAX_RUNS];
        for (int r = 0; r < total; r++) { labels[r] = names[r]; v[r] = res[r].ok ? res[r].tok_s : NAN; }  // drawn as "failed"
        char err[512];
        if (plot_bars(L.plot, "gptrain bench", "tokens/s (median)", total, labels, v, NULL, NULL, err, sizeof err))
            die_user("--plot: %s", err);
        printf("plot: %s\n", L.plot);
    }
    close_out(&csv_out);
    close_out(&jl_out);
    free(res);
    free(names);
    lab_cleanup(&L);
    return 0;
}
