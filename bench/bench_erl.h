/*
 * bench_erl.h - the BEAM side shared by the `keel bench` suites: compiling
 * a module of bench/erl/, running it, reading its figures; and the median
 * of repeated runs.
 */
#ifndef KEEL_BENCH_ERL_H
#define KEEL_BENCH_ERL_H

#include <stdbool.h>
#include <stddef.h>

/* Compiles bench/erl/<module>.erl (found through KEEL_SOURCE_DIR, else
 * next to this source file) into a fresh temporary directory, whose path
 * is stored in dir. Returns 0, or -1 with a message on stderr. */
int keel_bench_erl_prepare(const char *module, char *dir, size_t size);

/* Removes what keel_bench_erl_prepare made. */
void keel_bench_erl_cleanup(const char *module, const char *dir);

/* Runs `erl +S 2:2 <flags> -noshell -pa <dir> -run <module> main <args>`
 * and reads its "<name> <value>" lines: out[i] gets the value printed for
 * names[i]. Returns 0 when erl succeeded and printed all n names, else
 * -1. */
int keel_bench_erl_run(const char *dir, const char *module, const char *flags,
                       const char *args, const char *const *names, int n,
                       double *out);

/* Finds bench/erl/<module>.exs (as keel_bench_erl_prepare finds .erl
 * files) and stores its path in path. Returns 0, or -1 with a message. */
int keel_bench_exs_prepare(const char *module, char *path, size_t size);

/* Runs `elixir --erl "+S 2:2" <path> <args>` and reads its figures as
 * keel_bench_erl_run does. */
int keel_bench_exs_run(const char *path, const char *args,
                       const char *const *names, int n, double *out);

/* A suite with a fixed set of metrics measured together by one Keel run
 * and one BEAM run (`keel bench otp`, `keel bench tables`, `keel bench
 * pubsub`). */
#define KEEL_BENCH_SUITE_METRICS 8
#define KEEL_BENCH_SUITE_RUNS 15
typedef struct keel_bench_suite {
  const char *name;   /* the suite's name, as dispatched */
  const char *module; /* its module of bench/erl/ */
  const char *const *metrics;
  int nmetrics; /* at most KEEL_BENCH_SUITE_METRICS */
  const char *unit;
  /* Measures every metric on Keel into out; 0 or -1. */
  int (*run_keel)(bool quick, double *out);
  /* The BEAM side is an Elixir script, bench/erl/<module>.exs, run by
   * `elixir` (instead of an Erlang module compiled by erlc). */
  bool elixir;
  /* Optional: prints figures derived from the medians (e.g. a scaling
   * ratio), after the keel/beam/ratio lines; beam is NULL with --no-beam.
   * Both arrays hold nmetrics values in the order of metrics. */
  void (*derived)(const double *keel, const double *beam);
} keel_bench_suite;

/* The command of such a suite: parses [--quick] [--runs N] [--no-beam]
 * (argv[0] may be the suite's name), runs Keel and BEAM interleaved and
 * prints keel/beam/ratio lines of the medians. Returns 0, 1 (a run
 * failed) or 2 (usage). */
int keel_bench_suite_main(const keel_bench_suite *s, int argc, char **argv);

/* The median of v[0..n) (sorts v). */
double keel_bench_median(double *v, int n);

#endif /* KEEL_BENCH_ERL_H */
