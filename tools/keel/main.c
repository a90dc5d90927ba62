/*
 * main.c - entry point of the keel command-line tool: top-level dispatch
 * and small helpers shared by the commands.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keel/version.h"

void keel_cli_error(const char *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "keel: %s: ", ctx);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

bool keel_cli_parse_long(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
    return false;
  *out = v;
  return true;
}

bool keel_cli_parse_seconds(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || v < 0)
    return false;
  *out = v;
  return true;
}

static const keel_cli_cmd *usage_cmds;

static void usage(const keel_cli_cmd *cmds, const char *what) {
  fprintf(stderr, "usage: %s <command> [args]\ncommands:\n", what);
  for (const keel_cli_cmd *c = cmds; c->name; c++)
    fprintf(stderr, "  %-10s %s\n", c->name, c->help);
}

int keel_cli_dispatch(const keel_cli_cmd *cmds, const char *what, int argc,
                      char **argv) {
  if (argc < 1) {
    usage(cmds, what);
    return 2;
  }
  for (const keel_cli_cmd *c = cmds; c->name; c++)
    if (strcmp(c->name, argv[0]) == 0)
      return c->run(argc, argv);
  fprintf(stderr, "keel: unknown command '%s %s'\n", what, argv[0]);
  usage(cmds, what);
  return 2;
}

static int cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("keel %s\n", keel_version());
  return 0;
}

static int cmd_help(int argc, char **argv) {
  (void)argc;
  (void)argv;
  usage(usage_cmds, "keel");
  return 0;
}

static const keel_cli_cmd commands[] = {
    {"version", cmd_version, "print the version"},
    {"term", keel_cmd_term, "convert terms: decode, encode, print"},
    {"bench", keel_cmd_bench, "run a benchmark suite"},
    {"run", keel_cmd_run, "run the demo node"},
    {"help", cmd_help, "show this help"},
    {NULL, NULL, NULL}};

/* Conventional spellings accepted in place of a command name. */
static const char *command_alias(const char *arg) {
  if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
    return "version";
  if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
    return "help";
  return arg;
}

int main(int argc, char **argv) {
  usage_cmds = commands;
  if (argc > 1)
    argv[1] = (char *)command_alias(argv[1]);
  int rc = keel_cli_dispatch(commands, "keel", argc - 1, argv + 1);
  if (fflush(stdout) != 0 && rc == 0) {
    keel_cli_error("stdout", "%s", strerror(errno));
    rc = 1;
  }
  return rc;
}
