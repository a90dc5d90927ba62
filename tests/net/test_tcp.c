/*
 * test_tcp.c - passive sockets: echo, recv timeouts, stale handles, owner
 * death, controlling_process, connect errors, the simulation refusal.
 * Every scenario runs on 1, 2 and 8 schedulers.
 */
#include "net/net_test.h"

#include <sched.h>

#include "keel/sim.h"

typedef struct scen {
  keel_socket listen;
  uint16_t port;
  _Atomic keel_term server; /* pid of the server fiber */
  _Atomic keel_socket conn; /* a socket handed between fibers */
} scen;

static scen sc;

static void listen_any(void) {
  keel_net_listen_opts lo = {.port = 0, .reuseaddr = true};
  cr_assert_eq(keel_net_listen(&lo, &sc.listen), KEEL_OK);
  sc.port = port_of(sc.listen);
  cr_assert_neq(sc.port, 0);
}

/* ---- echo ---------------------------------------------------------------- */

#define ECHO_ROUNDS 200

static void echo_server(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c;
  int rc = keel_net_accept(sc.listen, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  char buf[4096];
  int64_t n;
  while ((n = keel_net_recv(c, buf, sizeof buf, LONG_MS)) > 0)
    CHECK(keel_net_send(c, buf, (size_t)n) == KEEL_OK);
  CHECKV(n == KEEL_ECLOSED, n);
  CHECK(keel_net_close(c) == KEEL_OK);
  mark_done();
}

static void echo_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  int rc = keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s);
  CHECKV(rc == KEEL_OK, rc);
  keel_net_addr peer, me;
  CHECK(keel_net_peername(s, &peer) == KEEL_OK && peer.port == sc.port &&
        strcmp(peer.ip, "127.0.0.1") == 0);
  CHECK(keel_net_sockname(s, &me) == KEEL_OK && me.port != 0);
  for (int i = 0; i < ECHO_ROUNDS; i++) {
    char msg[64], got[64];
    int len = snprintf(msg, sizeof msg, "ping %d", i);
    CHECK(keel_net_send(s, msg, (size_t)len) == KEEL_OK);
    int have = 0;
    while (have < len) {
      int64_t n =
          keel_net_recv(s, got + have, sizeof got - (size_t)have, LONG_MS);
      CHECKV(n > 0, n);
      if (n <= 0)
        break;
      have += (int)n;
    }
    CHECKV(have == len && memcmp(got, msg, (size_t)len) == 0, i);
  }
  CHECK(keel_net_close(s) == KEEL_OK);
  mark_done();
}

Test(tcp, echo_fibers) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(echo_server, NULL);
    spawn_f(echo_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* The client side from a plain thread (blocking in poll). */
Test(tcp, echo_thread_client) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(echo_server, NULL);
    keel_socket s;
    cr_assert_eq(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s), KEEL_OK);
    char got[16];
    for (int i = 0; i < 20; i++) {
      cr_assert_eq(keel_net_send(s, "abc", 3), KEEL_OK);
      int have = 0;
      while (have < 3) {
        int64_t n = keel_net_recv(s, got + have, 3 - (size_t)have, LONG_MS);
        cr_assert_gt(n, 0);
        have += (int)n;
      }
      cr_assert_eq(memcmp(got, "abc", 3), 0);
    }
    cr_assert_eq(keel_net_shutdown(s, KEEL_NET_SHUT_WRITE), KEEL_OK);
    cr_assert_eq(keel_net_recv(s, got, sizeof got, LONG_MS), KEEL_ECLOSED,
                 "server closes after our EOF");
    cr_assert_eq(keel_net_close(s), KEEL_OK);
    stop_node(sched_counts[k], 1);
  }
}

/* ---- passive recv with a timeout -------------------------------------- */

static bool any_msg(keel_term m, void *a) {
  (void)m;
  (void)a;
  return true;
}

static void timeout_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c;
  CHECK(keel_net_accept(sc.listen, LONG_MS, &c) == KEEL_OK);
  char buf[16];
  int64_t n = keel_net_recv(c, buf, sizeof buf, 50);
  CHECKV(n == KEEL_ETIMEDOUT, n);
  n = keel_net_recv(c, buf, sizeof buf, 0);
  CHECKV(n == KEEL_ETIMEDOUT, n);
  /* Tell the client to send now. */
  CHECK(keel_net_send(c, "go", 2) == KEEL_OK);
  n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 4 && memcmp(buf, "data", 4) == 0, n);
  /* No wake-up of the timed-out waits is left in the mailbox. */
  keel_term m;
  CHECK(keel_receive(self, any_msg, NULL, 0, &m) == KEEL_ETIMEDOUT);
  keel_net_close(c);
  mark_done();
}

static void timeout_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s) == KEEL_OK);
  char buf[4];
  int64_t n = keel_net_recv(s, buf, 2, LONG_MS);
  CHECKV(n == 2, n);
  CHECK(keel_net_send(s, "data", 4) == KEEL_OK);
  n = keel_net_recv(s, buf, sizeof buf, LONG_MS);
  CHECKV(n == KEEL_ECLOSED, n);
  keel_net_close(s);
  mark_done();
}

Test(tcp, recv_timeout) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(timeout_server, NULL);
    spawn_f(timeout_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- accept timeout, stale handles ----------------------------------------
 */

static void stale_body(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c;
  int rc = keel_net_accept(sc.listen, 30, &c);
  CHECKV(rc == KEEL_ETIMEDOUT, rc);
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s) == KEEL_OK);
  CHECK(keel_net_accept(sc.listen, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_close(s) == KEEL_OK);
  char buf[8];
  CHECK(keel_net_close(s) == KEEL_ECLOSED);
  CHECK(keel_net_send(s, "x", 1) == KEEL_ECLOSED);
  CHECK(keel_net_recv(s, buf, sizeof buf, 0) == KEEL_ECLOSED);
  CHECK(keel_net_set_active(s, KEEL_NET_ONCE, 0) == KEEL_ECLOSED);
  CHECK(keel_net_queued(s) == KEEL_ECLOSED);
  keel_net_addr a;
  CHECK(keel_net_peername(s, &a) == KEEL_ECLOSED);
  /* A new socket may reuse the slot: the old handle still names nothing. */
  keel_socket s2;
  CHECK(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s2) == KEEL_OK);
  CHECK(s2 != s);
  CHECK(keel_net_send(s, "x", 1) == KEEL_ECLOSED);
  CHECK(keel_net_send(s2, "y", 1) == KEEL_OK);
  /* The peer of the closed socket sees EOF. */
  int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == KEEL_ECLOSED, n);
  keel_socket c2;
  CHECK(keel_net_accept(sc.listen, LONG_MS, &c2) == KEEL_OK);
  n = keel_net_recv(c2, buf, sizeof buf, LONG_MS);
  CHECKV(n == 1 && buf[0] == 'y', n);
  /* Port terms round-trip. */
  keel_heap h;
  keel_heap_init(&h);
  keel_socket back = 0;
  CHECK(keel_net_socket_of(keel_net_port(&h, s2), &back) == KEEL_OK &&
        back == s2);
  CHECK(keel_net_socket_of(keel_atom("x"), &back) == KEEL_EBADARG);
  keel_heap_destroy(&h);
  CHECK(keel_net_recv(sc.listen, buf, sizeof buf, 0) == KEEL_EINVAL);
  CHECK(keel_net_accept(s2, 0, &c) == KEEL_EINVAL);
  keel_net_close(c);
  keel_net_close(c2);
  keel_net_close(s2);
  CHECK(keel_net_close(sc.listen) == KEEL_OK);
  CHECK(keel_net_accept(sc.listen, 0, &c) == KEEL_ECLOSED);
  mark_done();
}

Test(tcp, stale_handles) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(stale_body, NULL);
    stop_node(sched_counts[k], 1);
  }
}

/* A fiber blocked in accept is woken by the close of the listener. */
static void blocked_acceptor(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c;
  int rc = keel_net_accept(sc.listen, KEEL_INFINITY, &c);
  CHECKV(rc == KEEL_ECLOSED, rc);
  mark_done();
}

static void closer(keel_proc *self, void *arg) {
  (void)arg;
  /* Most likely after the acceptors block (the outcome is the same if
   * not: accept on a closed socket is KEEL_ECLOSED too). */
  keel_term m;
  keel_receive(self, any_msg, NULL, 20, &m);
  CHECK(keel_net_close(sc.listen) == KEEL_OK);
  mark_done();
}

Test(tcp, close_wakes_acceptors) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    for (int i = 0; i < 3; i++)
      spawn_f(blocked_acceptor, NULL);
    spawn_f(closer, NULL);
    stop_node(sched_counts[k], 4);
  }
}

/* ---- owner death ------------------------------------------------------- */

static void dying_owner(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c;
  CHECK(keel_net_accept(sc.listen, LONG_MS, &c) == KEEL_OK);
  atomic_store(&sc.conn, c);
  mark_done();
  /* Returns without closing: the socket dies with its owner. */
}

static void eof_watcher(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s) == KEEL_OK);
  char buf[8];
  int64_t n = keel_net_recv(s, buf, sizeof buf, LONG_MS);
  CHECKV(n == KEEL_ECLOSED, n);
  /* The dead owner's socket is closed: its handle is stale. */
  CHECK(keel_net_send(atomic_load(&sc.conn), "x", 1) == KEEL_ECLOSED);
  keel_net_close(s);
  mark_done();
}

Test(tcp, owner_death_closes) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(dying_owner, NULL);
    spawn_f(eof_watcher, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- controlling_process ------------------------------------------------ */

static void new_owner(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  /* Wait to be told the socket is ours. */
  CHECK(recv_tag(self, "yours", LONG_MS, &m) == KEEL_OK);
  keel_socket c = atomic_load(&sc.conn);
  char buf[8];
  int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 5 && memcmp(buf, "hello", 5) == 0, n);
  CHECK(keel_net_send(c, "bye", 3) == KEEL_OK);
  keel_net_close(c);
  mark_done();
}

static void intruder(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m = KEEL_NONE;
  CHECK(recv_tag(self, "try", LONG_MS, &m) == KEEL_OK);
  keel_term from = keel_tuple_get(m, 1);
  keel_socket c = atomic_load(&sc.conn);
  CHECK(keel_net_controlling_process(c, keel_self(self)) == KEEL_ENOTOWNER);
  char buf[4];
  CHECK(keel_net_recv(c, buf, sizeof buf, 0) == KEEL_ENOTOWNER);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE, 0) == KEEL_ENOTOWNER);
  keel_send(from, keel_tuple(keel_proc_heap(self), 1, keel_atom("tried")));
  mark_done();
}

static void first_owner(keel_proc *self, void *arg) {
  keel_term next = ((keel_term *)arg)[0], bad = ((keel_term *)arg)[1];
  keel_socket c;
  CHECK(keel_net_accept(sc.listen, LONG_MS, &c) == KEEL_OK);
  atomic_store(&sc.conn, c);
  keel_heap *h = keel_proc_heap(self);
  keel_send(bad, keel_tuple(h, 2, keel_atom("try"), keel_self(self)));
  keel_term m;
  CHECK(recv_tag(self, "tried", LONG_MS, &m) == KEEL_OK);
  CHECK(keel_net_controlling_process(c, keel_atom("x")) == KEEL_EBADARG);
  CHECK(keel_net_controlling_process(c, next) == KEEL_OK);
  char buf[4];
  CHECK(keel_net_recv(c, buf, sizeof buf, 0) == KEEL_ENOTOWNER);
  CHECK(keel_net_controlling_process(c, keel_self(self)) == KEEL_ENOTOWNER);
  keel_send(next, keel_tuple(h, 1, keel_atom("yours")));
  mark_done();
  /* Ends now: the socket, no longer ours, stays open. */
}

static void handover_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s) == KEEL_OK);
  CHECK(keel_net_send(s, "hello", 5) == KEEL_OK);
  char buf[8];
  int64_t n = keel_net_recv(s, buf, sizeof buf, LONG_MS);
  CHECKV(n == 3 && memcmp(buf, "bye", 3) == 0, n);
  keel_net_close(s);
  mark_done();
}

static keel_term pids[2];

Test(tcp, controlling_process) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    pids[0] = spawn_f(new_owner, NULL);
    pids[1] = spawn_f(intruder, NULL);
    spawn_f(first_owner, pids);
    spawn_f(handover_client, NULL);
    stop_node(sched_counts[k], 4);
  }
}

/* ---- connect errors, the simulation ---------------------------------- */

Test(tcp, connect_refused_and_bad_args) {
  start_node(2);
  listen_any();
  uint16_t port = sc.port;
  cr_assert_eq(keel_net_close(sc.listen), KEEL_OK);
  keel_socket s;
  cr_assert_eq(keel_net_connect("127.0.0.1", port, LONG_MS, &s),
               KEEL_ECONNREFUSED);
  cr_assert_eq(keel_net_connect("not an ip", port, LONG_MS, &s), KEEL_EINVAL);
  keel_net_listen_opts lo = {.ip = "::1"};
  if (keel_net_listen(&lo, &s) == KEEL_OK) { /* IPv6 loopback, when there */
    keel_net_addr a;
    cr_assert_eq(keel_net_sockname(s, &a), KEEL_OK);
    cr_assert_str_eq(a.ip, "::1");
    keel_net_close(s);
  }
  keel_net_listen_opts l1 = {.port = 0};
  keel_socket a1, a2;
  cr_assert_eq(keel_net_listen(&l1, &a1), KEEL_OK);
  keel_net_listen_opts l2 = {.port = port_of(a1)};
  cr_assert_eq(keel_net_listen(&l2, &a2), KEEL_EADDRINUSE);
  keel_net_close(a1);
  stop_node(2, 0);
  cr_assert_eq(keel_net_listen(&l1, &a1), KEEL_ESTATE, "no node");
}

Test(tcp, simulation_unsupported) {
  keel_node_opts o = {.schedulers = 1};
  cr_assert_eq(keel_sim_start(&o, 1), KEEL_OK);
  keel_net_listen_opts lo = {0};
  keel_socket s;
  cr_assert_eq(keel_net_listen(&lo, &s), KEEL_EUNSUPPORTED);
  cr_assert_eq(keel_net_connect("127.0.0.1", 1, 0, &s), KEEL_EUNSUPPORTED);
  cr_assert_eq(keel_net_send(1, "x", 1), KEEL_EUNSUPPORTED);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- options, async accept errors ------------------------------------ */

static keel_handler_status accept_err_handler(keel_proc *self, keel_term msg,
                                              void *st) {
  (void)self;
  (void)st;
  keel_socket l = 0;
  CHECK(msg_is(msg, "tcp_accept_error", &l) && l == sc.listen &&
        keel_tuple_arity(msg) == 3 &&
        keel_tuple_get(msg, 2) == keel_atom("closed"));
  mark_done();
  return KEEL_EXIT;
}

static void options_body(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s, c;
  CHECK(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s) == KEEL_OK);
  CHECK(keel_net_accept(sc.listen, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_set_nodelay(s, true) == KEEL_OK);
  CHECK(keel_net_set_nodelay(sc.listen, true) == KEEL_EINVAL);
  CHECK(keel_net_set_watermarks(s, 10, 5) == KEEL_EINVAL);
  CHECK(keel_net_set_watermarks(s, 0, 0) == KEEL_EINVAL);
  CHECK(keel_net_set_watermarks(s, 1, 2) == KEEL_OK);
  CHECK(keel_net_set_active(s, (keel_net_active)9, 0) == KEEL_EINVAL);
  CHECK(keel_net_set_active(sc.listen, KEEL_NET_ONCE, 0) == KEEL_EINVAL);
  CHECK(keel_net_shutdown(s, (keel_net_how)7) == KEEL_EINVAL);
  CHECK(keel_net_shutdown(sc.listen, KEEL_NET_SHUT_WRITE) == KEEL_EINVAL);
  CHECK(keel_net_send(sc.listen, "x", 1) == KEEL_EINVAL);
  CHECK(keel_net_send(s, NULL, 1) == KEEL_EINVAL);
  CHECK(keel_net_send(s, NULL, 0) == KEEL_OK);
  char buf[8];
  CHECK(keel_net_recv(s, NULL, 8, 0) == KEEL_EINVAL);
  CHECK(keel_net_recv(s, buf, 8, -2) == KEEL_EINVAL);
  keel_net_addr a;
  CHECK(keel_net_peername(sc.listen, &a) == KEEL_EINVAL);
  CHECK(keel_net_peername(s, NULL) == KEEL_EINVAL);
  /* Active sockets refuse passive reads. */
  CHECK(keel_net_set_active(s, KEEL_NET_ACTIVE, 0) == KEEL_OK);
  CHECK(keel_net_recv(s, buf, sizeof buf, 0) == KEEL_EINVAL);
  CHECK(keel_net_set_active(s, KEEL_NET_PASSIVE, 0) == KEEL_OK);
  /* Read shutdown: the reads end, the writes go on. */
  CHECK(keel_net_shutdown(c, KEEL_NET_SHUT_READ) == KEEL_OK);
  int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == KEEL_ECLOSED, n);
  CHECK(keel_net_send(c, "ok", 2) == KEEL_OK);
  n = keel_net_recv(s, buf, sizeof buf, LONG_MS);
  CHECKV(n == 2 && memcmp(buf, "ok", 2) == 0, n);
  keel_net_close(s);
  keel_net_close(c);
  mark_done();
}

Test(tcp, options_and_async_accept_error) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(options_body, NULL);
    cr_assert(wait_done(1));
    keel_term pid;
    cr_assert_eq(keel_spawn(accept_err_handler, NULL, NULL, &pid), KEEL_OK);
    cr_assert_eq(keel_net_accept_async(sc.listen, keel_atom("x")),
                 KEEL_EBADARG);
    cr_assert_eq(keel_net_accept_async(sc.listen, pid), KEEL_OK);
    cr_assert_eq(keel_net_close(sc.listen), KEEL_OK);
    cr_assert_eq(keel_net_accept_async(sc.listen, pid), KEEL_ECLOSED);
    stop_node(sched_counts[k], 2);
  }
}

/* keel_net_try_send from a fiber: over the high watermark it returns
 * KEEL_EBUSY instead of blocking, and registers nobody for
 * {tcp_writable, S}. */
static void try_send_body(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket s, c;
  CHECK(keel_net_connect("127.0.0.1", sc.port, LONG_MS, &s) == KEEL_OK);
  CHECK(keel_net_accept(sc.listen, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_set_watermarks(s, 1, 2) == KEEL_OK);
  static char chunk[64 * 1024];
  memset(chunk, 'z', sizeof chunk);
  size_t sent = 0;
  int rc = KEEL_OK;
  for (int i = 0; i < 100000 && rc == KEEL_OK; i++)
    if ((rc = keel_net_try_send(s, chunk, sizeof chunk)) == KEEL_OK)
      sent += sizeof chunk;
  CHECKV(rc == KEEL_EBUSY, rc);
  CHECK(keel_net_try_send(s, NULL, 1) == KEEL_EINVAL);
  CHECK(keel_net_try_send(sc.listen, "x", 1) == KEEL_EINVAL);
  /* Drain everything; the queue empties and no tcp_writable comes. */
  char *buf = malloc(sizeof chunk);
  for (size_t got = 0; got < sent;) {
    int64_t n = keel_net_recv(c, buf, sizeof chunk, LONG_MS);
    CHECKV(n > 0, n);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  free(buf);
  CHECK(keel_net_queued(s) == 0);
  keel_term m;
  CHECK(keel_receive(self, NULL, NULL, 0, &m) == KEEL_ETIMEDOUT);
  CHECK(keel_net_try_send(s, "ok", 2) == KEEL_OK);
  keel_net_close(s);
  CHECK(keel_net_try_send(s, "x", 1) == KEEL_ECLOSED);
  keel_net_close(c);
  mark_done();
}

Test(tcp, try_send_never_blocks) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(try_send_body, NULL);
    cr_assert(wait_done(1));
    cr_assert_eq(keel_net_close(sc.listen), KEEL_OK);
    stop_node(sched_counts[k], 1);
  }
}

/* The pool's acceptors end with its stop; its memory goes with the last. */
static int never_start(keel_socket s, void *arg, keel_term *pid) {
  (void)s;
  (void)arg;
  (void)pid;
  return KEEL_EINVAL; /* the connection is closed */
}

Test(tcp, pool_stop_and_refused_start) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    keel_net_pool_opts po = {.acceptors = 3, .start = never_start};
    keel_net_pool *pool;
    cr_assert_eq(keel_net_pool_start(&po, &pool), KEEL_OK);
    keel_net_addr a;
    cr_assert_eq(keel_net_sockname(keel_net_pool_socket(pool), &a), KEEL_OK);
    keel_socket s;
    cr_assert_eq(keel_net_connect("127.0.0.1", a.port, LONG_MS, &s), KEEL_OK);
    char b;
    cr_assert_eq(keel_net_recv(s, &b, 1, LONG_MS), KEEL_ECLOSED,
                 "a refused start closes the connection");
    keel_net_close(s);
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    size_t before = st.processes;
    keel_net_pool_stop(pool);
    /* The 3 acceptors end (bounded poll of a condition). */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
      sched_yield();
      cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
      clock_gettime(CLOCK_MONOTONIC, &t);
    } while (st.processes + 3 > before && t.tv_sec - t0.tv_sec < TIMEOUT_S);
    cr_assert_eq(st.processes + 3, before);
    keel_net_pool_stop(NULL);
    stop_node(sched_counts[k], 0);
  }
}
