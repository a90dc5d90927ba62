/*
 * bench_tables.h - ETS-like table benchmarks, side by side with BEAM.
 */
#ifndef KEEL_BENCH_TABLES_H
#define KEEL_BENCH_TABLES_H

/* Measures on a public set of 100,000 keys: lookups from 1 thread
 * (ets_lookups_per_s) and from 2 at once (ets_mt_lookups_per_s), inserts
 * overwriting (ets_inserts_per_s), 1M inserts of new keys into an empty
 * set (ets_inserts_new_per_s) and update_counter, and the same on BEAM's
 * ETS (bench/erl/bench_ets.erl on `erl +S 2:2`), interleaved, and prints
 * for each figure
 *   keel <metric> <value> ops/s
 *   beam <metric> <value> ops/s
 *   ratio <metric> <value>        (> 1 means Keel is faster)
 * then `keel ets_mt_scaling <x> x` (and beam's): the 2-thread lookup rate
 * over the 1-thread rate. Arguments (argv[0] is the suite name, as
 * dispatched):
 *   --quick     short runs (a smoke test);
 *   --runs N    runs per side (median; default 3, quick 1);
 *   --no-beam   Keel only.
 * Returns 0 on success, 2 on a usage error, 1 when a step fails. */
int keel_bench_tables(int argc, char **argv);

#endif /* KEEL_BENCH_TABLES_H */
