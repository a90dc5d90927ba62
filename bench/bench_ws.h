/*
 * bench_ws.h - WebSocket users receiving periodic updates (see
 * bench_ws.c).
 */
#ifndef KEEL_BENCH_WS_H
#define KEEL_BENCH_WS_H

/* `keel bench ws [--quick] [--users N] [--no-fastlane] [--writers N]`: N
 * WebSocket clients (default 20,000, quick 2,000) in child processes each
 * receive an update every 500 ms, through the WebSocket fastlane with N
 * lane writers (default 1) or, with --no-fastlane, through each
 * connection's process; prints ws_users, ws_push_p99_ms and
 * ws_mem_per_conn. Returns 0, 1 on a failure, 2 on a usage error. */
int keel_bench_ws(int argc, char **argv);

#endif /* KEEL_BENCH_WS_H */
