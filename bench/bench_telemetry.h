/*
 * bench_telemetry.h - telemetry, metrics and fuse hot paths.
 */
#ifndef KEEL_BENCH_TELEMETRY_H
#define KEEL_BENCH_TELEMETRY_H

/* Times, on one thread in its CPU time, keel_tel_execute with 0 handlers,
 * 1 no-op handler (telemetry_emit_ns; also on 2 threads at once: CPU ns
 * per op of each thread) and 1 counter metric, a span (start + stop, no
 * handler), a distribution metric, and keel_fuse_ask (fuse_ask_ns) and
 * keel_fuse_ask_h (fuse_ask_h_ns) on an ok fuse, and prints
 *   keel <metric> <value> ns/op
 * for each, plus `target <metric> <= <ns> ns/op met|missed` after the
 * figures with a target. No BEAM counterpart: Debian's Erlang does not
 * ship the telemetry application. Arguments (argv[0] is the suite name):
 *   --quick   short runs (a smoke test);
 *   --runs N  runs (median reported; default 5, quick 1);
 *   --no-beam accepted and ignored (other suites take it).
 * Returns 0 on success, 2 on a usage error, 1 when a step fails. */
int keel_bench_telemetry(int argc, char **argv);

#endif /* KEEL_BENCH_TELEMETRY_H */
