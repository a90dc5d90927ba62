/*
 * bench_tables.h - ETS-like table benchmarks, side by side with BEAM.
 */
#ifndef KEEL_BENCH_TABLES_H
#define KEEL_BENCH_TABLES_H

/* Measures lookup, insert and update_counter throughput on a public set
 * (100,000 keys) with 1 and 2 threads, and the same on BEAM's ETS with 1
 * and 2 processes (bench/erl/bench_ets.erl on `erl +S 2:2`), interleaved,
 * and prints for each figure
 *   keel <metric> <value> ops/s
 *   beam <metric> <value> ops/s
 *   ratio <metric> <value>        (> 1 means Keel is faster)
 * Arguments (argv[0] is the suite name, as dispatched):
 *   --quick     short runs (a smoke test);
 *   --runs N    runs per side (median; default 3, quick 1);
 *   --no-beam   Keel only.
 * Returns 0 on success, 2 on a usage error, 1 when a step fails. */
int keel_bench_tables(int argc, char **argv);

#endif /* KEEL_BENCH_TABLES_H */
