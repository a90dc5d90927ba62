/*
 * bench_dash.h - the live dashboard's server cost per update with many
 * open pages (see bench_dash.c).
 */
#ifndef KEEL_BENCH_DASH_H
#define KEEL_BENCH_DASH_H

/* `keel bench dashboard [--users N] [--ticks T] [--page P]`: N WebSocket
 * pages (default 1,000) showing page P (home, or processes: the top 50 by
 * memory) in a child process, T refresh ticks (default 10, one per
 * 500 ms); the server's CPU per tick with shared renderers and with
 * per-session rendering (keel_dashboard_web_opts.per_session), in the same
 * run. Returns 0, 1 on a failure, 2 on a usage error. */
int keel_bench_dashboard(int argc, char **argv);

#endif /* KEEL_BENCH_DASH_H */
