/*
 * cmd_bench.c - `keel bench <suite> [opts]`: dispatches to the benchmark
 * suites of bench/. A new suite is one more row in the table below; the
 * suite receives the arguments from its own name on (argv[0] = suite).
 */
#include "bench.h"
#include "bench_dash.h"
#include "bench_http.h"
#include "bench_net.h"
#include "bench_otp.h"
#include "bench_pubsub.h"
#include "bench_runtime.h"
#include "bench_tables.h"
#include "bench_telemetry.h"
#include "bench_tls.h"
#include "bench_ws.h"
#include "cli.h"

static const keel_cli_cmd bench_suites[] = {
    {"terms", keel_bench_terms,
     "ETF encode and decode throughput, side by side with BEAM"},
    {"runtime", keel_bench_runtime,
     "spawn, ring, pingpong, cast, fanout, fanin, timers, switch, idle; with "
     "BEAM"},
    {"telemetry", keel_bench_telemetry,
     "telemetry execute and span, metrics recording, fuse ask (ns/op)"},
    {"tables", keel_bench_tables,
     "ETS-like lookup, insert, update_counter with 1 and 2 threads; with BEAM"},
    {"otp", keel_bench_otp,
     "gen_server call round trips (1, 8 clients); with BEAM"},
    {"http", keel_bench_http,
     "HTTP keep-alive req/s and p99 under wrk; beside nginx"},
    {"dashboard", keel_bench_dashboard,
     "dashboard server CPU per update with N open pages: shared renderers "
     "vs per-session rendering"},
    {"ws", keel_bench_ws,
     "WebSocket users with a 500 ms update: count, push p99, memory each"},
    {"pubsub", keel_bench_pubsub,
     "PubSub broadcast to 10k subscribers; with Elixir's Registry.dispatch"},
    {"net", keel_bench_net,
     "TCP request/response round trips (1, 50 connections); with BEAM"},
    {"tls", keel_bench_tls,
     "TLS handshakes/s, round trips and MB/s beside plain TCP (Keel only)"},
    {NULL, NULL, NULL}};

int keel_cmd_bench(int argc, char **argv) {
  return keel_cli_dispatch(bench_suites, "keel bench", argc - 1, argv + 1);
}
