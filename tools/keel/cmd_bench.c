/*
 * cmd_bench.c - `keel bench <suite> [opts]`: dispatches to the benchmark
 * suites of bench/. A new suite is one more row in the table below; the
 * suite receives the arguments from its own name on (argv[0] = suite).
 */
#include "cli.h"

#if __has_include("bench.h")
#include "bench.h"
#define KEEL_HAVE_BENCH_TERMS 1
#endif

static const keel_cli_cmd bench_suites[] = {
#ifdef KEEL_HAVE_BENCH_TERMS
    {"terms", keel_bench_terms,
     "term construction, copy, compare, ETF and JSON throughput"},
#endif
    {NULL, NULL, NULL}};

int keel_cmd_bench(int argc, char **argv) {
  return keel_cli_dispatch(bench_suites, "keel bench", argc - 1, argv + 1);
}
