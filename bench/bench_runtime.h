/*
 * bench_runtime.h - process-runtime benchmarks, side by side with BEAM.
 */
#ifndef KEEL_BENCH_RUNTIME_H
#define KEEL_BENCH_RUNTIME_H

/* Runs runtime workloads on Keel and the same workloads on BEAM
 * (bench/erl/bench_rt.erl, compiled with erlc into a temporary directory
 * and run with `erl +S 2:2`), interleaved, and prints for each figure
 *   keel <metric> <value> <unit>
 *   beam <metric> <value> <unit>
 *   ratio <metric> <value>        (> 1 means Keel is better)
 * Arguments (argv[0] is the suite name "runtime" or a workload name, as
 * dispatched):
 *   workload names: spawn, spawn_fiber, ring, pingpong, cast, fanout, fanin,
 *   timers, switch, idle, or all (the default);
 *   --quick       tiny sizes (a smoke test);
 *   --runs N      runs per side (median reported; default 3, quick 1);
 *   --no-beam     Keel only.
 * The Erlang source is found through $KEEL_SOURCE_DIR/bench/erl, else next
 * to this file's source. Returns 0 on success, 2 on a usage error, 1 when
 * a workload fails. */
int keel_bench_runtime(int argc, char **argv);

#endif /* KEEL_BENCH_RUNTIME_H */
