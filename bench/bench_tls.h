/*
 * bench_tls.h - TLS on Keel's sockets beside plain TCP on the same node
 * (no BEAM side: the comparison is the cost of TLS itself).
 */
#ifndef KEEL_BENCH_TLS_H
#define KEEL_BENCH_TLS_H

/* On a node of 2 schedulers, over loopback, with a server of an acceptor
 * pool whose connection processes are handler processes in active once
 * mode (as the HTTP server's), and client fibers:
 *   tls_handshakes_per_s   8 clients each connecting, completing a TLS 1.3
 *                          handshake (ECDSA P-256, verified) and closing
 *   tls_rr_per_s / tcp_rr_per_s   64-byte round trips, 1 connection
 *   tls_mb_per_s / tcp_mb_per_s   64 MiB one way, 1 connection
 * Prints `keel <metric> <value> <unit>` (medians of --runs N, default 3)
 * and `ratio tls_vs_tcp_rr <x>`, `ratio tls_vs_tcp_mb <x>`. Arguments
 * (argv[0] = "tls"): --quick, --runs N, --no-beam (accepted, no BEAM
 * side anyway). Returns 0, 2 on a usage error, 1
 * on a failure. */
int keel_bench_tls(int argc, char **argv);

#endif /* KEEL_BENCH_TLS_H */
