/*
 * main.c: the gptrain program's entry point: picks the subcommand and hands it the parsed flags.
 */
#include <stdio.h>
#include <string.h>

#include "data.h"
#include "gptrain.h"
#include "plot.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gptrain COMMAND [--flag value ...]\n"
            "commands:\n"
            "  prepare   text file -> train/val token shards (llm.c format) and tokenizer\n"
            "  train     train a GPT on prepared shards, with per-step TFLOPS/MFU/HFU\n"
            "  sample    generate text from a run (--from DIR), a checkpoint or an llm.c model file (--checkpoint)\n"
            "  export    write a run's or a checkpoint's weights as an llm.c model file (fp32 or bf16)\n"
            "  info      parameters, FLOPs per token, memory per recompute mode, largest batch, roofline (also: plan)\n"
            "  ab        A/B test two configurations: interleaved trials, tokens/s, MFU/HFU, memory, B/A ratio\n"
            "  bench     sweep a grid of configurations (--sweep key=v1,v2), or the course table (--course)\n"
            "  plot      a run's JSONL log as a PNG: loss, tokens/s, MFU/HFU, memory against step\n"
            "gptrain help COMMAND (or gptrain COMMAND --help) lists a command's flags, with an example;\n"
            "gptrain --version names the build.\n");
}

int cmd_prepare(Options *o) {
    char err[1024];
    if (!o->input[0]) die_user("--input: expected a text file to tokenize");
    if (!o->out[0]) die_user("--out: expected a directory for the shards");
    if (data_prepare(o->input, o->out, o->tokenizer, o->val_fraction, o->shard_tokens, err, sizeof err)) die_user("%s", err);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return EXIT_USER; }
    const char *name = argv[1];
    if (!strcmp(name, "help") && argc == 3) {   // gptrain help CMD = gptrain CMD --help
        static char help_flag[] = "--help";
        char *again[3] = {argv[0], argv[2], help_flag};
        return main(3, again);
    }
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) { usage(stdout); return 0; }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("%s\n", gptrain_version());
        return 0;
    }
    if (!strcmp(name, "ab")) return cmd_ab(argc - 2, argv + 2);
    if (!strcmp(name, "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(name, "plot")) return plot_main(argc - 2, argv + 2);
    int cmd = !strcmp(name, "prepare") ? CMD_PREPARE
            : !strcmp(name, "train")   ? CMD_TRAIN
            : !strcmp(name, "sample")  ? CMD_SAMPLE
            : !strcmp(name, "info")    ? CMD_INFO
            : !strcmp(name, "plan")    ? CMD_INFO
            : !strcmp(name, "export")  ? CMD_EXPORT
                                       : 0;
    if (!cmd) die_user("unknown command '%s': expected prepare, train, sample, export, info, plan, ab, bench or plot", name);
    Options o;
    char err[1024];
    int rc = cli_parse(&o, cmd, argc - 2, argv + 2, err, sizeof err);
    if (rc < 0) die_user("%s", err);
    if (rc > 0) return 0;
    switch (cmd) {
    case CMD_PREPARE: return cmd_prepare(&o);
    case CMD_TRAIN: return cmd_train(&o);
    case CMD_SAMPLE: return cmd_sample(&o);
    case CMD_EXPORT: return cmd_export(&o);
    default: return cmd_info(&o);
    }
}
