/*
 * cmd_bench.c - `keel bench <suite> [opts]`: dispatches to the benchmark
 * suites of bench/. A new suite is one more row in the table below; the
 * suite receives the arguments from its own name on (argv[0] = suite).
 *
 * Each suite's header is included only when present, so the tool builds
 * while suites are added one at a time.
 */
#include "cli.h"

#if __has_include("bench.h")
#include "bench.h"
#define KEEL_HAVE_BENCH_TERMS 1
#endif
#if __has_include("bench_runtime.h")
#include "bench_runtime.h"
#define KEEL_HAVE_BENCH_RUNTIME 1
#endif

static const keel_cli_cmd bench_suites[] = {
#ifdef KEEL_HAVE_BENCH_TERMS
    {"terms", keel_bench_terms,
     "term construction, copy, compare, ETF and JSON throughput"},
#endif
#ifdef KEEL_HAVE_BENCH_RUNTIME
    {"runtime", keel_bench_runtime,
     "spawn, ring, ping-pong and cast, side by side with BEAM"},
#endif
    {NULL, NULL, NULL}};

int keel_cmd_bench(int argc, char **argv) {
  return keel_cli_dispatch(bench_suites, "keel bench", argc - 1, argv + 1);
}
