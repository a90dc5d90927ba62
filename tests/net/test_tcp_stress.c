/*
 * test_tcp_stress.c - a 64 MiB transfer through a slow reader (the output
 * queue and its watermarks, data checked byte for byte), 1,000+
 * concurrent connections through an acceptor pool. 1, 2 and 8
 * schedulers.
 */
#include "net/net_test.h"

static keel_socket listen_s;
static uint16_t port;

static inline uint8_t pattern(size_t i) {
  return (uint8_t)((i * 131u) ^ (i >> 13));
}

/* ---- 64 MiB through the output queue --------------------------------- */

#define BIG (64u << 20)
#define BIG_CHUNK (256u * 1024u)
#define BIG_HIGH (128u * 1024u)
#define BIG_LOW (32u * 1024u)

static void big_sender(keel_proc *self, void *arg) {
  keel_term reader = *(keel_term *)arg;
  keel_socket c;
  CHECK(keel_net_accept(listen_s, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_set_watermarks(c, BIG_LOW, BIG_HIGH) == KEEL_OK);
  uint8_t *chunk = malloc(BIG_CHUNK);
  int64_t most = 0;
  for (size_t off = 0; off < BIG; off += BIG_CHUNK) {
    for (size_t i = 0; i < BIG_CHUNK; i++)
      chunk[i] = pattern(off + i);
    int rc = keel_net_send(c, chunk, BIG_CHUNK);
    CHECKV(rc == KEEL_OK, rc);
    if (rc != KEEL_OK)
      break;
    int64_t q = keel_net_queued(c);
    if (q > 0 && most == 0) { /* the kernel buffers are full: read now */
      keel_term go = keel_tuple(keel_proc_heap(self), 1, keel_atom("go"));
      keel_send(reader, go);
    }
    most = q > most ? q : most;
  }
  free(chunk);
  /* A send starts only at or below the high watermark, so the queue never
   * holds more than high + one chunk. */
  CHECKV(most <= (int64_t)(BIG_HIGH + BIG_CHUNK), most);
  CHECKV(most > 0, most); /* the queue was used */
  CHECK(keel_net_shutdown(c, KEEL_NET_SHUT_WRITE) == KEEL_OK);
  char b;
  CHECK(keel_net_recv(c, &b, 1, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(c);
  mark_done();
}

static void big_reader(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
  keel_term m;
  CHECK(recv_tag(self, "go", LONG_MS, &m) == KEEL_OK);
  uint8_t *buf = malloc(8192);
  size_t total = 0;
  size_t bad = SIZE_MAX;
  int64_t n;
  while ((n = keel_net_recv(s, buf, 8192, LONG_MS)) > 0) {
    for (int64_t i = 0; i < n && bad == SIZE_MAX; i++)
      if (buf[i] != pattern(total + (size_t)i))
        bad = total + (size_t)i;
    total += (size_t)n;
    keel_fiber_yield(self); /* slow: let everyone else run */
  }
  free(buf);
  CHECKV(n == KEEL_ECLOSED, n);
  CHECKV(bad == SIZE_MAX, bad);
  CHECKV(total == BIG, total);
  keel_net_close(s);
  mark_done();
}

Test(tcp_stress, large_transfer_watermarks, .timeout = 600) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    keel_net_listen_opts lo = {0};
    cr_assert_eq(keel_net_listen(&lo, &listen_s), KEEL_OK);
    port = port_of(listen_s);
    static keel_term reader;
    reader = spawn_f(big_reader, NULL);
    spawn_f(big_sender, &reader);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- many connections through an acceptor pool ------------------------ */

#define CONNS 1000
#define CONN_BYTES 100

/* Connection process: a handler in active once mode that echoes. */
static keel_handler_status echo_conn(keel_proc *self, keel_term msg, void *st) {
  (void)self;
  (void)st;
  keel_socket s;
  if (msg_is(msg, "tcp_handoff", &s)) {
    CHECK(keel_net_set_active(s, KEEL_NET_ONCE, 0) == KEEL_OK);
    return KEEL_CONTINUE;
  }
  if (msg_is(msg, "tcp", &s)) {
    size_t len;
    const uint8_t *d = keel_binary_data(keel_tuple_get(msg, 2), &len);
    CHECK(keel_net_send(s, d, len) == KEEL_OK);
    CHECK(keel_net_set_active(s, KEEL_NET_ONCE, 0) == KEEL_OK);
    return KEEL_CONTINUE;
  }
  CHECK(msg_is(msg, "tcp_closed", NULL));
  return KEEL_EXIT;
}

static _Atomic long started;

static int start_conn(keel_socket sock, void *arg, keel_term *pid) {
  (void)sock;
  (void)arg;
  atomic_fetch_add(&started, 1);
  return keel_spawn(echo_conn, NULL, NULL, pid);
}

static void client(keel_proc *self, void *arg) {
  (void)self;
  size_t id = (size_t)(uintptr_t)arg;
  keel_socket s;
  int rc = keel_net_connect("127.0.0.1", port, LONG_MS, &s);
  CHECKV(rc == KEEL_OK, rc);
  uint8_t msg[CONN_BYTES], got[CONN_BYTES];
  for (size_t i = 0; i < CONN_BYTES; i++)
    msg[i] = (uint8_t)(id + i);
  CHECK(keel_net_send(s, msg, sizeof msg) == KEEL_OK);
  size_t have = 0;
  while (have < sizeof got) {
    int64_t n = keel_net_recv(s, got + have, sizeof got - have, LONG_MS);
    CHECKV(n > 0, n);
    if (n <= 0)
      break;
    have += (size_t)n;
  }
  CHECKV(memcmp(got, msg, sizeof msg) == 0, id);
  /* Hold the connection until every client is connected. */
  mark_done();
  keel_term m;
  CHECK(recv_tag(self, "close", TIMEOUT_S * 1000, &m) == KEEL_OK);
  keel_net_close(s);
  mark_done();
}

Test(tcp_stress, thousand_connections_pool, .timeout = 600) {
  rlim_t lim = raise_nofile();
  cr_assert_geq(lim, 2 * CONNS + 64, "RLIMIT_NOFILE %lu too low",
                (unsigned long)lim);
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    atomic_store(&started, 0);
    keel_net_pool_opts po = {.acceptors = 4, .start = start_conn};
    keel_net_pool *pool;
    cr_assert_eq(keel_net_pool_start(&po, &pool), KEEL_OK);
    port = port_of(keel_net_pool_socket(pool));
    cr_assert_neq(port, 0);
    static keel_term pids[CONNS];
    for (size_t i = 0; i < CONNS; i++)
      pids[i] = spawn_f(client, (void *)(uintptr_t)i);
    /* Every connection is served and open at once here. */
    cr_assert(wait_done(CONNS), "%u schedulers: %ld of %d clients served",
              sched_counts[k], done, CONNS);
    cr_assert_eq(atomic_load(&started), CONNS);
    keel_heap h;
    keel_heap_init(&h);
    keel_term close_msg = keel_tuple(&h, 1, keel_atom("close"));
    for (size_t i = 0; i < CONNS; i++)
      keel_send(pids[i], close_msg);
    keel_heap_destroy(&h);
    keel_net_pool_stop(pool);
    stop_node(sched_counts[k], 2 * CONNS);
  }
}

/* ---- close with a full queue: the queue is still delivered -------------- */

#define LINGER_BYTES (8u << 20)

static void linger_sender(keel_proc *self, void *arg) {
  keel_term reader = *(keel_term *)arg;
  keel_socket c;
  CHECK(keel_net_accept(listen_s, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_set_watermarks(c, 1u << 20, 32u << 20) == KEEL_OK);
  uint8_t *data = malloc(LINGER_BYTES);
  for (size_t i = 0; i < LINGER_BYTES; i++)
    data[i] = pattern(i);
  CHECK(keel_net_send(c, data, LINGER_BYTES) == KEEL_OK);
  free(data);
  int64_t q = keel_net_queued(c);
  CHECKV(q > 0, q); /* the reader reads nothing yet: bytes are queued */
  CHECK(keel_net_close(c) == KEEL_OK);
  CHECK(keel_net_send(c, "x", 1) == KEEL_ECLOSED);
  CHECK(keel_net_close(c) == KEEL_ECLOSED);
  keel_send(reader, keel_tuple(keel_proc_heap(self), 1, keel_atom("go")));
  mark_done();
}

static void linger_reader(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
  keel_term m;
  CHECK(recv_tag(self, "go", LONG_MS, &m) == KEEL_OK);
  uint8_t *buf = malloc(65536);
  size_t total = 0, bad = SIZE_MAX;
  int64_t n;
  while ((n = keel_net_recv(s, buf, 65536, LONG_MS)) > 0) {
    for (int64_t i = 0; i < n && bad == SIZE_MAX; i++)
      if (buf[i] != pattern(total + (size_t)i))
        bad = total + (size_t)i;
    total += (size_t)n;
  }
  free(buf);
  CHECKV(n == KEEL_ECLOSED, n);
  CHECKV(bad == SIZE_MAX, bad);
  CHECKV(total == LINGER_BYTES, total);
  keel_net_close(s);
  mark_done();
}

Test(tcp_stress, close_flushes_queue, .timeout = 600) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    keel_net_listen_opts lo = {0};
    cr_assert_eq(keel_net_listen(&lo, &listen_s), KEEL_OK);
    port = port_of(listen_s);
    static keel_term reader;
    reader = spawn_f(linger_reader, NULL);
    spawn_f(linger_sender, &reader);
    stop_node(sched_counts[k], 2);
  }
}
