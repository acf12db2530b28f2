/*
 * plot.h: PNG charts for the performance lab and for training logs, drawn by gnuplot (pngcairo terminal, Debian's
 * gnuplot-nox) run as a child process. gptrain never needs gnuplot to train: only `gptrain plot` and the lab's --plot
 * flags do, and they say how to install it when it is missing. Every PNG is written to a temporary file next to the
 * target, checked (PNG signature), fsynced and renamed, so a failed plot never leaves a half-written image.
 */
#ifndef GPTRAIN_PLOT_H
#define GPTRAIN_PLOT_H

#include <stddef.h>

// Bar chart of n values with their labels; lo/hi (both NULL, or both n long) draw a min-max range on each bar.
// Returns 0, or -1 with a one-line reason in err.
int plot_bars(const char *png, const char *title, const char *ylabel, int n, const char *const *labels,
              const double *values, const double *lo, const double *hi, char *err, size_t errlen);

// A `gptrain train --log` JSONL file as a 2x2 panel (1200x1000): loss and val loss, tokens/s, MFU and HFU (%),
// memory (MiB), each against step. Returns 0, or -1 with a reason in err (a line that is not a step record is named
// by its line number).
int plot_log(const char *jsonl, const char *png, char *err, size_t errlen);
// The number after "key": in one line of a gptrain JSONL log (NaN when absent or null; the logs are flat objects of
// numbers). Shared by the plots and the lab's tables.
double jsonl_number(const char *line, const char *key);

// `gptrain plot LOG.jsonl [--out PNG]` (default: the log's name with .png); argv excludes the subcommand.
// Returns the exit status (0, or 2 for a user error after one line on stderr).
int plot_main(int argc, char **argv);

#endif
