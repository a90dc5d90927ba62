/*
 * bench_tls.c - TLS handshakes, round trips and throughput on Keel's
 * sockets, beside the same over plain TCP (see bench_tls.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/net/tls_test.h" /* the throwaway PKI of the tests */
#include "bench_erl.h"
#include "bench_tls.h"
#include "keel/clock.h"
#include "keel/tls.h"

#define REQ 64
#define BULK ((size_t)64 << 20)
#define CHUNK ((size_t)64 << 10)
#define HS_CLIENTS 8
#define STACK (256u * 1024u)

typedef struct bench_ctx {
  keel_tls_ctx *srv, *cli; /* NULL: plain TCP */
  uint16_t port;
  int mode; /* 0 handshakes, 1 round trips, 2 bulk */
  long n;   /* per client */
  atomic_int left, errors;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} bench_ctx;

/* ---- server: handler processes in active once mode -----------------------
 */

typedef struct conn {
  bench_ctx *b;
  size_t got;
} conn;

static keel_handler_status conn_fn(keel_proc *self, keel_term msg, void *st) {
  (void)self;
  conn *c = st;
  keel_socket s;
  if (!keel_is_tuple(msg) ||
      keel_net_socket_of(keel_tuple_get(msg, 1), &s) != KEEL_OK) {
    free(c);
    return KEEL_EXIT;
  }
  keel_term tag = keel_tuple_get(msg, 0);
  if (tag == keel_atom("tcp") || tag == keel_atom("ssl")) {
    size_t len;
    const uint8_t *d = keel_binary_data(keel_tuple_get(msg, 2), &len);
    if (c->b->mode == 1) {
      keel_net_send(s, d, len);
    } else {
      c->got += len;
      if (c->got == BULK)
        keel_net_send(s, "k", 1);
    }
  } else if (tag == keel_atom("tcp_handoff")) {
    keel_net_set_nodelay(s, true);
  } else {
    free(c); /* closed */
    return KEEL_EXIT;
  }
  keel_net_set_active(s, KEEL_NET_ONCE, 0);
  return KEEL_CONTINUE;
}

static int start_conn(keel_socket s, void *arg, keel_term *pid) {
  bench_ctx *b = arg;
  if (b->srv != NULL) {
    int rc = keel_tls_upgrade(s, b->srv, NULL);
    if (rc != KEEL_OK)
      return rc;
  }
  conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return KEEL_ENOMEM;
  c->b = b;
  int rc = keel_spawn(conn_fn, c, NULL, pid);
  if (rc != KEEL_OK)
    free(c);
  return rc;
}

/* ---- clients ---------------------------------------------------------------
 */

static int open_conn(bench_ctx *b, keel_socket *s) {
  int rc = b->cli != NULL
               ? keel_tls_connect("127.0.0.1", b->port, b->cli, NULL, 10000, s)
               : keel_net_connect("127.0.0.1", b->port, 10000, s);
  if (rc == KEEL_OK)
    keel_net_set_nodelay(*s, true);
  return rc;
}

static bool read_n(keel_socket s, uint8_t *buf, size_t n) {
  for (size_t have = 0; have < n;) {
    int64_t k = keel_net_recv(s, buf + have, n - have, 10000);
    if (k <= 0)
      return false;
    have += (size_t)k;
  }
  return true;
}

static bool client_run(bench_ctx *b) {
  keel_socket s;
  if (b->mode == 0) {
    for (long i = 0; i < b->n; i++) {
      if (open_conn(b, &s) != KEEL_OK)
        return false;
      keel_net_close(s);
    }
    return true;
  }
  if (open_conn(b, &s) != KEEL_OK)
    return false;
  bool ok = true;
  if (b->mode == 1) {
    uint8_t buf[REQ];
    memset(buf, 'x', sizeof buf);
    for (long i = 0; i < b->n && ok; i++)
      ok = keel_net_send(s, buf, REQ) == KEEL_OK && read_n(s, buf, REQ);
  } else {
    uint8_t *buf = calloc(1, CHUNK);
    for (size_t off = 0; off < BULK && ok && buf != NULL; off += CHUNK)
      ok = keel_net_send(s, buf, CHUNK) == KEEL_OK;
    ok = ok && buf != NULL && read_n(s, buf, 1);
    free(buf);
  }
  keel_net_close(s);
  return ok;
}

static void client(keel_proc *self, void *arg) {
  (void)self;
  bench_ctx *b = arg;
  if (!client_run(b))
    atomic_fetch_add(&b->errors, 1);
  pthread_mutex_lock(&b->mu);
  if (atomic_fetch_sub(&b->left, 1) == 1)
    pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

/* Operations per second (handshakes, round trips, MB); < 0 on failure. */
static double measure(bench_ctx *b, int clients) {
  atomic_store(&b->left, clients);
  atomic_store(&b->errors, 0);
  uint64_t t0 = keel_monotonic_ns();
  keel_spawn_opts so = {.stack_size = STACK};
  int spawned = 0;
  for (int i = 0; i < clients; i++)
    spawned += keel_spawn_fiber(client, b, &so, NULL) == KEEL_OK;
  atomic_fetch_sub(&b->left, clients - spawned);
  pthread_mutex_lock(&b->mu);
  while (atomic_load(&b->left) > 0)
    pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
  double secs = (double)(keel_monotonic_ns() - t0) / 1e9;
  if (spawned != clients || atomic_load(&b->errors) != 0)
    return -1;
  if (b->mode == 2)
    return (double)BULK / (1024.0 * 1024.0) / secs;
  return (double)(b->n * clients) / secs;
}

#define NMET 5
static const char *const names[NMET] = {"tls_handshakes_per_s", "tls_rr_per_s",
                                        "tcp_rr_per_s", "tls_mb_per_s",
                                        "tcp_mb_per_s"};
static const char *const units[NMET] = {"hs/s", "req/s", "req/s", "MB/s",
                                        "MB/s"};

static int run(bool quick, test_pki *pki, double *out) {
  keel_node_opts no = {.schedulers = 2};
  if (keel_node_start(&no) != KEEL_OK)
    return -1;
  bench_ctx b = {0};
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.cv, NULL);
  keel_tls_ctx *srv = NULL, *cli = NULL;
  keel_tls_ctx_opts so = {
      .server = true, .cert_pem = pki->cert_pem, .key_pem = pki->key_pem};
  keel_tls_ctx_opts co = {.ca_pem = pki->ca_pem};
  keel_net_pool_opts po = {.acceptors = 4, .start = start_conn, .arg = &b};
  keel_net_pool *pool = NULL;
  keel_net_addr a;
  int rc = -1;
  if (keel_tls_ctx_create(&so, &srv) == KEEL_OK &&
      keel_tls_ctx_create(&co, &cli) == KEEL_OK &&
      keel_net_pool_start(&po, &pool) == KEEL_OK &&
      keel_net_sockname(keel_net_pool_socket(pool), &a) == KEEL_OK) {
    b.port = a.port;
    rc = 0;
    for (int m = 0; m < NMET && rc == 0; m++) {
      bool tls = strncmp(names[m], "tls", 3) == 0;
      b.srv = tls ? srv : NULL;
      b.cli = tls ? cli : NULL;
      b.mode = m == 0 ? 0 : m <= 2 ? 1 : 2;
      b.n = b.mode == 0   ? (quick ? 50 : 500)
            : b.mode == 1 ? (quick ? 2000 : 50000)
                          : 1;
      out[m] = measure(&b, b.mode == 0 ? HS_CLIENTS : 1);
      if (out[m] < 0)
        rc = -1;
    }
  }
  keel_net_pool_stop(pool);
  (void)keel_node_stop();
  keel_tls_ctx_destroy(srv);
  keel_tls_ctx_destroy(cli);
  pthread_cond_destroy(&b.cv);
  pthread_mutex_destroy(&b.mu);
  return rc;
}

int keel_bench_tls(int argc, char **argv) {
  bool quick = false;
  int runs = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (strcmp(argv[i], "--no-beam") == 0) {
      continue; /* Keel only anyway */
    } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: keel bench tls [--quick] [--runs N]\n");
      return 2;
    }
  }
  if (runs < 1 || runs > 50)
    runs = 3;
  test_pki pki;
  if (!pki_make(&pki)) {
    fprintf(stderr, "keel bench: tls: cannot make certificates\n");
    return 1;
  }
  double v[NMET][50];
  int status = 0;
  for (int r = 0; r < runs && status == 0; r++) {
    double out[NMET];
    if (run(quick, &pki, out) != 0) {
      fprintf(stderr, "keel bench: tls failed\n");
      status = 1;
    }
    for (int m = 0; m < NMET; m++)
      v[m][r] = out[m];
  }
  pki_remove(&pki);
  if (status != 0)
    return status;
  double med[NMET];
  for (int m = 0; m < NMET; m++) {
    med[m] = keel_bench_median(v[m], runs);
    printf("keel %s %.0f %s\n", names[m], med[m], units[m]);
  }
  printf("ratio tls_vs_tcp_rr %.2f\n", med[2] > 0 ? med[1] / med[2] : 0.0);
  printf("ratio tls_vs_tcp_mb %.2f\n", med[4] > 0 ? med[3] / med[4] : 0.0);
  return 0;
}
