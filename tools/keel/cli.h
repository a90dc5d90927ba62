/*
 * cli.h - shared declarations of the keel command-line tool.
 *
 * Each command is a function taking the arguments that follow its name
 * (argv[0] is the command name itself, as for main) and returning the
 * process exit status.
 */
#ifndef KEEL_CLI_H
#define KEEL_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* One entry of a dispatch table: a (sub)command name, its handler and a
 * one-line description for the usage text. */
typedef struct keel_cli_cmd {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} keel_cli_cmd;

/* Finds argv[0] in the NULL-name-terminated table cmds and runs it with
 * (argc, argv). Prints the table as usage to stderr (prefixed by `what`,
 * e.g. "keel term") and returns 2 when argv[0] is missing or unknown. */
int keel_cli_dispatch(const keel_cli_cmd *cmds, const char *what, int argc,
                      char **argv);

/* Prints "keel: <ctx>: <message>" to stderr, printf-style. */
void keel_cli_error(const char *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a decimal integer in [min, max] from s (the whole string).
 * Returns true on success. */
bool keel_cli_parse_long(const char *s, long min, long max, long *out);

/* Parses a non-negative finite decimal number of seconds from s (the whole
 * string). Returns true on success. */
bool keel_cli_parse_seconds(const char *s, double *out);

/* `keel term ...`: ETF and text conversions. */
int keel_cmd_term(int argc, char **argv);

/* `keel bench <suite> ...`: benchmark suites. */
int keel_cmd_bench(int argc, char **argv);

/* `keel run ...`: the demo node. */
int keel_cmd_run(int argc, char **argv);

#endif /* KEEL_CLI_H */
