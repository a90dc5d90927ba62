/*
 * bench_otp.h - OTP behaviour benchmarks, side by side with BEAM.
 */
#ifndef KEEL_BENCH_OTP_H
#define KEEL_BENCH_OTP_H

/* `keel bench otp`: gen_server calls (1 and 8 clients -> 1 server; 1 -> 1
 * with per-call p50/p99; 100 -> 1 and 100 -> 100), one_for_one supervisor
 * restarts (rate and latency), idle hibernated gen_servers (bytes each),
 * and the Registry (unique register and lookup, dispatch to duplicates),
 * each workload on a fresh node of 2 schedulers; BEAM: gen_server and
 * supervisor on `erl +S 2:2` (bench/erl/bench_otp.erl) and Elixir's
 * Registry on `elixir --erl "+S 2:2"` (bench/erl/bench_otp_registry.exs),
 * with the same sizes. Prints, per metric, the medians
 *   keel <metric> <value> <unit>
 *   beam <metric> <value> <unit>
 *   ratio <metric> <value>   (> 1 means Keel is better: faster, or
 *                             smaller for latencies and bytes)
 * Arguments (argv[0] = "otp"): --quick (the CI smoke sizes), --runs N
 * (median; default 3, quick 1), --no-beam, --size NAME=N (one size:
 * calls, calls8, restarts, idle, regs, per_proc, regs1, dups, rounds).
 * Returns 0, 2 on a usage error, 1 on a failure. */
int keel_bench_otp(int argc, char **argv);

#endif /* KEEL_BENCH_OTP_H */
