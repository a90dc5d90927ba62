/*
 * bench.h - term benchmarks, side by side with BEAM.
 */
#ifndef KEEL_BENCH_H
#define KEEL_BENCH_H

/* Measures ETF encode and decode throughput of representative terms (a
 * small map-heavy message, a list of 1000 integers, a tuple tree, a 64 KiB
 * binary, a mixed ~1 KB term) in Keel, then times term_to_binary/2 and
 * binary_to_term/1 on the same terms (passed as ETF files) in BEAM with the
 * same iteration counts, and prints for each figure
 *   keel etf_encode_<name> <value> MB/s
 *   beam etf_encode_<name> <value> MB/s   (or "unavailable" without erl)
 *   ratio etf_encode_<name> <value>       (> 1 means Keel is faster)
 * and the same for etf_decode_<name>. MB/s counts encoded bytes (10^6).
 * Arguments (argv[0] is the suite name, as dispatched):
 *   --quick     short runs (a smoke test);
 *   --no-beam   Keel only.
 * Returns 0 on success, 2 on a usage error, 1 when a step fails. */
int keel_bench_terms(int argc, char **argv);

#endif /* KEEL_BENCH_H */
