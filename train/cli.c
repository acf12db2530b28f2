/*
 * cli.c: the flag parser, config-file reader and help printer generated from GPTRAIN_FLAGS (cli.h).
 * GNU long flags: `--name value` or `--name=value`. Precedence: table defaults < --config file < command line.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

typedef struct FlagDef {
    const char *field, *name;
    FlagType type;
    const char *def;
    int cmds;
    const char *choices;
    FlagSection section;
    int required;   // the commands that need it (the help marks it)
    const char *help;
    size_t offset;
} FlagDef;

static const FlagDef FLAGS[] = {
#define CLI_DEF(field, flag, type, def, cmds, choices, section, required, help) \
    {#field, flag, type, def, cmds, choices, section, required, help, offsetof(Options, field)},
    GPTRAIN_FLAGS(CLI_DEF)
#undef CLI_DEF
};
enum { NUM_FLAGS = sizeof(FLAGS) / sizeof(FLAGS[0]) };
_Static_assert(NUM_FLAGS <= 128, "Options.given holds 128 flags");

const char *cli_cmd_name(int cmd) {
    switch (cmd) {
    case CMD_PREPARE: return "prepare";
    case CMD_TRAIN: return "train";
    case CMD_SAMPLE: return "sample";
    case CMD_EXPORT: return "export";
    default: return "info";
    }
}

// Is `value` one of the '|'-separated choices?
static int choice_ok(const char *choices, const char *value) {
    size_t n = strlen(value);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && !strncmp(c, value, n)) return 1;
        if (!bar) break;
        c = bar + 1;
    }
    return 0;
}

// Store `value` into the option; `where` names the source for messages ("--batch" or "run.cfg:3: batch").
static int set_value(Options *o, int i, const char *value, const char *where, char *err, size_t errlen) {
    const FlagDef *f = &FLAGS[i];
    char *p = (char *)o + f->offset;
    char *end = NULL;
    switch (f->type) {
    case F_AUTO:
        if (!strcmp(value, "auto")) {
            *(int *)p = CLI_AUTO;
            break;
        }
        /* fall through */
    case F_INT: {
        errno = 0;
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno || v < -2147483647L || v > 2147483647L) {
            snprintf(err, errlen, "%s: '%s' is not an integer%s", where, value, f->type == F_AUTO ? " or auto" : "");
            return -1;
        }
        *(int *)p = (int)v;
        break;
    }
    case F_NUM: {
        errno = 0;
        double v = strtod(value, &end);
        if (!*value || *end || errno || !isfinite(v)) {
            snprintf(err, errlen, "%s: '%s' is not a finite number", where, value);
            return -1;
        }
        *(double *)p = v;
        break;
    }
    case F_CHOICE:
        if (!choice_ok(f->choices, value)) {
            snprintf(err, errlen, "%s: '%s' is not one of %s", where, value, f->choices);
            return -1;
        }
        /* fall through */
    case F_STR: {
        char *copy = strdup(value);
        if (!copy) { snprintf(err, errlen, "%s: out of memory", where); return -1; }
        free(*(char **)p);   // the default's (or the config file's) copy: every string here is one of ours
        *(const char **)p = copy;
        break;
    }
    }
    return 0;
}

static int find_flag(const char *name, size_t len) {
    for (int i = 0; i < NUM_FLAGS; i++)
        if (strlen(FLAGS[i].name) == len && !strncmp(FLAGS[i].name, name, len)) return i;
    return -1;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

// A config file is a few hundred bytes of `key = value` lines: 1 MiB is far more than any, and a cap keeps
// `--config /dev/zero`-like inputs from running forever (devices, FIFOs and directories are refused outright).
#define CONFIG_MAX_BYTES (1 << 20)

static int read_config(Options *o, int cmd, const char *path, char *err, size_t errlen) {
    char why[4400];
    char *text = file_read_text(path, CONFIG_MAX_BYTES, why, sizeof why);
    if (!text) { snprintf(err, errlen, "--config %s", why); return -1; }
    int lineno = 0, rc = 0;
    for (char *next = text, *line; (line = next) && *line && !rc;) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = 0;
        char *key = trim(s), *value = trim(eq + 1);
        for (char *c = key; *c; c++) if (*c == '_') *c = '-';
        int i = find_flag(key, strlen(key));
        char where[512];
        snprintf(where, sizeof where, "%s:%d: %s", path, lineno, key);
        if (i < 0 || !strcmp(key, "config")) {
            snprintf(err, errlen, "%s:%d: unknown key '%s'", path, lineno, key);
            rc = -1;
            break;
        }
        if (!(FLAGS[i].cmds & cmd)) continue;  // one file may configure several commands
        if (set_value(o, i, value, where, err, errlen)) { rc = -1; break; }
        o->given[i] = 1;
    }
    free(text);
    return rc;
}

int cli_parse(Options *o, int cmd, int argc, char **argv, char *err, size_t errlen) {
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < NUM_FLAGS; i++)
        if (set_value(o, i, FLAGS[i].def, FLAGS[i].name, err, errlen)) return -1;  // table defaults always parse
    // Two passes: --config first, so the command line overrides the file wherever it appears.
    for (int pass = 0; pass < 2; pass++) {
        for (int a = 0; a < argc; a++) {
            const char *arg = argv[a];
            if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
                if (pass == 0) continue;
                cli_print_help(stdout, cmd, cli_cmd_name(cmd));
                return 1;
            }
            if (strncmp(arg, "--", 2) != 0) {
                snprintf(err, errlen, "'%s': expected a --flag (see gptrain %s --help)", arg, cli_cmd_name(cmd));
                return -1;
            }
            const char *name = arg + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            int i = find_flag(name, len);
            if (i < 0 || !(FLAGS[i].cmds & cmd)) {
                snprintf(err, errlen, "unknown flag '--%.*s' for gptrain %s (see gptrain %s --help)", (int)len, name,
                         cli_cmd_name(cmd), cli_cmd_name(cmd));
                return -1;
            }
            const char *value;
            if (eq) value = eq + 1;
            else if (a + 1 < argc) value = argv[++a];
            else { snprintf(err, errlen, "--%s: expected a value", FLAGS[i].name); return -1; }
            int is_config = !strcmp(FLAGS[i].field, "config");
            if (pass == 0 && is_config) {
                if (read_config(o, cmd, value, err, errlen)) return -1;
            } else if (pass == 1 && !is_config) {
                char where[128];
                snprintf(where, sizeof where, "--%s", FLAGS[i].name);
                if (set_value(o, i, value, where, err, errlen)) return -1;
                o->given[i] = 1;
            }
        }
    }
    return 0;
}

int cli_given(const Options *o, const char *field) {
    for (int i = 0; i < NUM_FLAGS; i++)
        if (!strcmp(FLAGS[i].field, field)) return o->given[i];
    return 0;
}

// Escape newlines and backslashes so a string default prints on one line.
static void print_str(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\n') fputs("\\n", f);
        else if (*s == '\\') fputs("\\\\", f);
        else fputc(*s, f);
    }
}

static const char *const SECTION_NAMES[NUM_SECTIONS] = {
    "general", "data", "model", "batch", "optimizer and schedule", "precision and speed", "checkpoints",
    "evaluation and logging", "distributed", "sampling and export"};

// Per command: its synopsis (the required flags first), one example, and what its required marks mean.
static const struct {
    int cmd;
    const char *synopsis, *example, *required_note;
} COMMAND_HELP[] = {
    {CMD_PREPARE, "--input FILE|DIR --out DIR [flags]",
     "gptrain prepare --input data/tinyshakespeare/input.txt --out data/shakespeare_char", "* required"},
    {CMD_TRAIN, "--data DIR | --train-data GLOB --val-data GLOB [flags]",
     "gptrain train --data data/shakespeare_char --preset tiny --steps 2000 --log out/log.jsonl",
     "* required: one of --data DIR and --train-data GLOB (with --val-data GLOB, or --eval-every -1)"},
    {CMD_SAMPLE, "[--from DIR | --checkpoint FILE] [flags]",
     "gptrain sample --from out --prompt \"ROMEO:\" --tokens 200 --temperature 0.8", NULL},
    {CMD_EXPORT, "[--from DIR | --checkpoint FILE] --out FILE [flags]",
     "gptrain export --from out --out out/model_llmc.bin --dtype bf16", "* required"},
    {CMD_INFO, "[flags] (model and batch as for train; no data needed)",
     "gptrain info --preset gpt2-124m --batch 8 --seq-len 1024 --precision bf16 --gpus 8", NULL},
};

void cli_print_wrapped(FILE *f, const char *text, int indent, int first) {
    int col = first;
    const char *s = text;
    while (*s) {
        while (*s == ' ') s++;
        const char *e = s;
        while (*e && *e != ' ') e++;
        const int w = (int)(e - s);
        if (!w) break;
        if (col > indent && col + 1 + w > CLI_HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        } else if (col < indent) {
            fprintf(f, "%*s", indent - col, "");
            col = indent;
        }
        fprintf(f, "%.*s", w, s);
        col += w;
        s = e;
    }
    fputc('\n', f);
}

void cli_print_help(FILE *f, int cmd, const char *cmd_name) {
    const char *synopsis = "[flags]", *example = NULL, *note = NULL;
    for (size_t c = 0; c < sizeof COMMAND_HELP / sizeof COMMAND_HELP[0]; c++)
        if (COMMAND_HELP[c].cmd == cmd) {
            synopsis = COMMAND_HELP[c].synopsis;
            example = COMMAND_HELP[c].example;
            note = COMMAND_HELP[c].required_note;
        }
    fprintf(f, "usage: gptrain %s %s\n", cmd_name, synopsis);
    if (example) fprintf(f, "example:\n  %s\n", example);
    fprintf(f, "flags (--flag value or --flag=value; the default in brackets%s):\n", note ? "; * required" : "");
    // (every flag of the command once, under its section, in the table's order)
    const int indent = 32;
    for (int s = 0; s < NUM_SECTIONS; s++) {
        int shown = 0;
        for (int i = 0; i < NUM_FLAGS; i++) {
            const FlagDef *d = &FLAGS[i];
            if (!(d->cmds & cmd) || d->section != (FlagSection)s) continue;
            if (!shown++) fprintf(f, "\n%s:\n", SECTION_NAMES[s]);
            const char *meta = d->type == F_INT    ? "N"
                             : d->type == F_AUTO   ? "N|auto"
                             : d->type == F_NUM    ? "X"
                             : d->choices          ? d->choices
                                                   : "S";
            char left[128], text[1024], def[160];
            const int n = snprintf(left, sizeof left, "%s--%s %s", d->required & cmd ? "* " : "  ", d->name, meta);
            int j = 0;   // the default, escaped to one line
            for (const char *p = d->def; *p && j < (int)sizeof def - 3; p++) {
                if (*p == '\n' || *p == '\\') def[j++] = '\\';
                def[j++] = *p == '\n' ? 'n' : *p;
            }
            def[j] = 0;
            if (def[0]) snprintf(text, sizeof text, "%s [%s]", d->help, def);
            else snprintf(text, sizeof text, "%s", d->help);
            fprintf(f, "  %s", left);
            if (2 + n + 1 > indent) {   // a long flag: its help on the next line
                fputc('\n', f);
                cli_print_wrapped(f, text, indent, 0);
            } else cli_print_wrapped(f, text, indent, 2 + n);
        }
    }
    if (note && cmd != CMD_PREPARE && cmd != CMD_EXPORT) fprintf(f, "\n%s\n", note);
}

void cli_print_resolved(FILE *f, const Options *o, int cmd) {
    for (int i = 0; i < NUM_FLAGS; i++) {
        const FlagDef *d = &FLAGS[i];
        if (!(d->cmds & cmd) || !strcmp(d->field, "config")) continue;
        const char *p = (const char *)o + d->offset;
        fprintf(f, "  %s = ", d->name);
        if (d->type == F_AUTO && *(const int *)p == CLI_AUTO) fprintf(f, "auto");
        else if (d->type == F_INT || d->type == F_AUTO) fprintf(f, "%d", *(const int *)p);
        else if (d->type == F_NUM) fprintf(f, "%.9g", *(const double *)p);
        else print_str(f, *(const char *const *)p);
        fprintf(f, "\n");
    }
}
