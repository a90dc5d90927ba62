/*
 * bench_net.c - TCP request/response round trips on Keel and on BEAM.
 *
 * Keel side: a node of 2 schedulers, an acceptor pool (4 acceptors) whose
 * connection processes are handler processes in active once mode echoing
 * each {tcp, S, Data}; c client fibers, each connected once, send 64 bytes
 * and read the 64 echoed, n round trips in all. TCP_NODELAY on both
 * sides. BEAM side: the same with gen_tcp (bench/erl/bench_net.erl).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "bench_erl.h"
#include "bench_net.h"
#include "keel/clock.h"
#include "keel/net.h"

#define NMETRICS 2
#define REQ 64

static const char *const metric_names[NMETRICS] = {"tcp_rr_per_s_1",
                                                   "tcp_rr_per_s_50"};
static const int clients_of[NMETRICS] = {1, 50};

static keel_handler_status echo_conn(keel_proc *self, keel_term msg, void *st) {
  (void)self;
  (void)st;
  keel_socket s;
  if (!keel_is_tuple(msg) ||
      keel_net_socket_of(keel_tuple_get(msg, 1), &s) != KEEL_OK)
    return KEEL_EXIT;
  keel_term tag = keel_tuple_get(msg, 0);
  if (tag == keel_atom("tcp")) {
    size_t len;
    const uint8_t *d = keel_binary_data(keel_tuple_get(msg, 2), &len);
    keel_net_send(s, d, len);
  } else if (tag == keel_atom("tcp_handoff")) {
    keel_net_set_nodelay(s, true);
  } else {
    return KEEL_EXIT; /* tcp_closed */
  }
  keel_net_set_active(s, KEEL_NET_ONCE, 0);
  return KEEL_CONTINUE;
}

static int start_conn(keel_socket s, void *arg, keel_term *pid) {
  (void)s;
  (void)arg;
  return keel_spawn(echo_conn, NULL, NULL, pid);
}

typedef struct run_state {
  uint16_t port;
  long per_client;
  atomic_int left, errors;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} run_state;

static bool round_trip(keel_socket s, uint8_t *buf) {
  if (keel_net_send(s, buf, REQ) != KEEL_OK)
    return false;
  size_t have = 0;
  while (have < REQ) {
    int64_t n = keel_net_recv(s, buf + have, REQ - have, 10000);
    if (n <= 0)
      return false;
    have += (size_t)n;
  }
  return true;
}

static void client(keel_proc *self, void *arg) {
  (void)self;
  run_state *rs = arg;
  keel_socket s;
  uint8_t buf[REQ];
  memset(buf, 'x', sizeof buf);
  if (keel_net_connect("127.0.0.1", rs->port, 10000, &s) != KEEL_OK) {
    atomic_fetch_add(&rs->errors, 1);
  } else {
    keel_net_set_nodelay(s, true);
    for (long i = 0; i < rs->per_client; i++)
      if (!round_trip(s, buf)) {
        atomic_fetch_add(&rs->errors, 1);
        break;
      }
    keel_net_close(s);
  }
  pthread_mutex_lock(&rs->mu);
  if (atomic_fetch_sub(&rs->left, 1) == 1)
    pthread_cond_broadcast(&rs->cv);
  pthread_mutex_unlock(&rs->mu);
}

/* Round trips per second with c clients and n in all; < 0 on failure. */
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
  keel_net_pool_opts po = {.acceptors = 4, .start = start_conn};
  keel_net_pool *pool = NULL;
  keel_net_addr a;
  if (keel_net_pool_start(&po, &pool) == KEEL_OK &&
      keel_net_sockname(keel_net_pool_socket(pool), &a) == KEEL_OK) {
    rs.port = a.port;
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
  keel_net_pool_stop(pool);
  (void)keel_node_stop();
  pthread_cond_destroy(&rs.cv);
  pthread_mutex_destroy(&rs.mu);
  return v;
}

static int run_keel(bool quick, double *out) {
  long n = quick ? 5000 : 100000;
  for (int m = 0; m < NMETRICS; m++) {
    out[m] = run_one(clients_of[m], n);
    if (out[m] < 0)
      return -1;
  }
  return 0;
}

int keel_bench_net(int argc, char **argv) {
  static const keel_bench_suite suite = {"net",    "bench_net", metric_names,
                                         NMETRICS, "req/s",     run_keel,
                                         false,    NULL};
  return keel_bench_suite_main(&suite, argc, argv);
}
