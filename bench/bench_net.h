/*
 * bench_net.h - TCP benchmarks, side by side with BEAM.
 */
#ifndef KEEL_BENCH_NET_H
#define KEEL_BENCH_NET_H

/* Request/response round trips per second over loopback TCP: 64-byte
 * requests echoed by connection processes of an acceptor pool (handler
 * processes in active once mode), with 1 and 50 client fibers each on its
 * own connection doing passive send/recv, on a node of 2 schedulers; the
 * same with gen_tcp on `erl +S 2:2` (bench/erl/bench_net.erl). Prints
 *   keel <metric> <value> req/s
 *   beam <metric> <value> req/s
 *   ratio <metric> <value>        (> 1 means Keel is faster)
 * Arguments (argv[0] = "net"): --quick, --runs N, --no-beam. Returns 0,
 * 2 on a usage error, 1 on a failure. */
int keel_bench_net(int argc, char **argv);

#endif /* KEEL_BENCH_NET_H */
