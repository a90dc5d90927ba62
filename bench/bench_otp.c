/*
 * bench_otp.c - gen_server call round trips on Keel and on BEAM.
 *
 * Keel side: a node of 2 schedulers, one handler-process server whose
 * handle_call answers 'get' with a counter it increments, and 1 or 8
 * client fibers making n calls in all (keel_gen_server_call: monitor with
 * alias, receive mark, selective receive of the reply). BEAM side: the
 * same with gen_server:call (bench/erl/bench_otp.erl) on `erl +S 2:2`.
 * Runs alternate Keel and BEAM; medians are printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_erl.h"
#include "bench_otp.h"
#include "keel/clock.h"
#include "keel/gen_server.h"

#define NMETRICS 2

static const char *const metric_names[NMETRICS] = {"gen_server_call_per_s_1",
                                                   "gen_server_call_per_s_8"};
static const int clients_of[NMETRICS] = {1, 8};

static keel_gs_ret b_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  *s = arg;
  return keel_gs_ok(gs);
}

static keel_gs_ret b_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  (void)req;
  (void)from;
  keel_term r = *s;
  *s = keel_small(keel_small_value(*s) + 1);
  return keel_gs_reply(gs, r);
}

static const keel_gen_server_module bench_mod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "bench_server",
    .init = b_init,
    .handle_call = b_call,
};

typedef struct run_state {
  keel_term server;
  long per_client;
  atomic_int left, errors;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} run_state;

static void client(keel_proc *self, void *arg) {
  (void)self;
  run_state *rs = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (long i = 0; i < rs->per_client; i++) {
    keel_term r;
    if (keel_gen_server_call(rs->server, KEEL_ATOM(OK), KEEL_INFINITY, &h,
                             &r) != KEEL_OK) {
      atomic_fetch_add(&rs->errors, 1);
      break;
    }
  }
  keel_heap_destroy(&h);
  pthread_mutex_lock(&rs->mu);
  if (atomic_fetch_sub(&rs->left, 1) == 1)
    pthread_cond_broadcast(&rs->cv);
  pthread_mutex_unlock(&rs->mu);
}

/* Calls per second with c clients and n calls in all; < 0 on failure. */
static double run_one(int c, long n) {
  keel_node_opts o = {.schedulers = 2};
  if (keel_node_start(&o) != KEEL_OK)
    return -1;
  run_state rs = {.per_client = n / c};
  atomic_init(&rs.left, c);
  atomic_init(&rs.errors, 0);
  pthread_mutex_init(&rs.mu, NULL);
  pthread_cond_init(&rs.cv, NULL);
  double v = -1;
  if (keel_gen_server_start(&bench_mod, keel_small(0), NULL, &rs.server) ==
      KEEL_OK) {
    uint64_t t0 = keel_monotonic_ns();
    int spawned = 0;
    for (int i = 0; i < c; i++)
      spawned += keel_spawn_fiber(client, &rs, NULL, NULL) == KEEL_OK;
    atomic_fetch_sub(&rs.left, c - spawned);
    pthread_mutex_lock(&rs.mu);
    while (atomic_load(&rs.left) > 0)
      pthread_cond_wait(&rs.cv, &rs.mu);
    pthread_mutex_unlock(&rs.mu);
    uint64_t t1 = keel_monotonic_ns();
    if (spawned == c && atomic_load(&rs.errors) == 0)
      v = (double)(rs.per_client * c) / ((double)(t1 - t0) / 1e9);
  }
  (void)keel_node_stop();
  pthread_cond_destroy(&rs.cv);
  pthread_mutex_destroy(&rs.mu);
  return v;
}

static int run_keel(bool quick, double *out) {
  long n = quick ? 20000 : 400000;
  for (int m = 0; m < NMETRICS; m++) {
    out[m] = run_one(clients_of[m], n);
    if (out[m] < 0)
      return -1;
  }
  return 0;
}

/* ---- BEAM ---- */

/* ---- driver ---- */

int keel_bench_otp(int argc, char **argv) {
  static const keel_bench_suite suite = {"otp",    "bench_otp", metric_names,
                                         NMETRICS, "calls/s",   run_keel,
                                         false,    NULL};
  return keel_bench_suite_main(&suite, argc, argv);
}
