/*
 * test_tcp_active.c - active modes (once, N with tcp_passive, true with
 * tcp_closed), asynchronous accept in a handler process, and the busy
 * refusal of handler sends with its tcp_writable notice. 1, 2 and 8
 * schedulers.
 */
#include "net/net_test.h"

static keel_socket listen_s;
static uint16_t port;

static void listen_any(void) {
  keel_net_listen_opts lo = {.port = 0};
  cr_assert_eq(keel_net_listen(&lo, &listen_s), KEEL_OK);
  port = port_of(listen_s);
}

/* Receives {tcp, S, Data} and copies Data into buf; returns its length or
 * a negative code. */
static int64_t recv_data(keel_proc *self, keel_socket s, void *buf, size_t cap,
                         int64_t ms) {
  keel_term m;
  int rc = recv_tag(self, "tcp", ms, &m);
  if (rc != KEEL_OK)
    return rc;
  keel_socket from;
  if (!msg_is(m, "tcp", &from) || from != s || keel_tuple_arity(m) != 3 ||
      !keel_is_binary(keel_tuple_get(m, 2)))
    return KEEL_EBADARG;
  size_t len;
  const uint8_t *d = keel_binary_data(keel_tuple_get(m, 2), &len);
  if (len > cap)
    return KEEL_ENOSPC;
  memcpy(buf, d, len);
  return (int64_t)len;
}

/* Reads exactly n bytes from a passive socket. */
static bool read_n(keel_socket s, char *buf, size_t n) {
  size_t have = 0;
  while (have < n) {
    int64_t k = keel_net_recv(s, buf + have, n - have, LONG_MS);
    if (k <= 0)
      return false;
    have += (size_t)k;
  }
  return true;
}

/* ---- active once --------------------------------------------------------- */

static void once_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c;
  CHECK(keel_net_accept(listen_s, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
  char buf[64];
  int64_t n = recv_data(self, c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 1 && buf[0] == 'A', n);
  /* Passive again: the client's next bytes are not delivered. */
  CHECK(keel_net_send(c, "1", 1) == KEEL_OK);
  keel_term m;
  /* The client answers "B" to "1": within 200 ms it is (most likely)
   * here, and must not be delivered. */
  n = recv_data(self, c, buf, sizeof buf, 200);
  CHECKV(n == KEEL_ETIMEDOUT, n);
  /* Re-armed: exactly the pending bytes arrive, once. */
  CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
  n = recv_data(self, c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 1 && buf[0] == 'B', n);
  CHECK(keel_net_send(c, "2", 1) == KEEL_OK);
  n = recv_data(self, c, buf, sizeof buf, 200);
  CHECKV(n == KEEL_ETIMEDOUT, n);
  /* Passive reads see what the once mode left. */
  CHECK(read_n(c, buf, 1) && buf[0] == 'C');
  CHECK(recv_tag(self, "tcp_closed", 0, &m) == KEEL_ETIMEDOUT);
  keel_net_close(c);
  mark_done();
}

static void once_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
  char buf[4];
  CHECK(keel_net_send(s, "A", 1) == KEEL_OK);
  CHECK(read_n(s, buf, 1) && buf[0] == '1');
  CHECK(keel_net_send(s, "B", 1) == KEEL_OK);
  CHECK(read_n(s, buf, 1) && buf[0] == '2');
  CHECK(keel_net_send(s, "C", 1) == KEEL_OK);
  CHECK(keel_net_recv(s, buf, 1, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(s);
  mark_done();
}

Test(tcp_active, once_flow_control) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(once_server, NULL);
    spawn_f(once_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- active N ------------------------------------------------------------ */

#define N_MSGS 3

static void n_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c;
  CHECK(keel_net_accept(listen_s, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, 2) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, 1) == KEEL_OK); /* 3 */
  char buf[64];
  for (int i = 0; i < N_MSGS; i++) {
    int64_t n = recv_data(self, c, buf, sizeof buf, LONG_MS);
    CHECKV(n == 1 && buf[0] == 'a' + i, n);
    CHECK(keel_net_send(c, "k", 1) == KEEL_OK);
  }
  keel_term m;
  keel_socket from = 0;
  CHECK(recv_tag(self, "tcp_passive", LONG_MS, &m) == KEEL_OK &&
        msg_is(m, "tcp_passive", &from) && from == c);
  /* The fourth chunk waits for a passive read. */
  CHECK(read_n(c, buf, 1) && buf[0] == 'z');
  CHECK(recv_data(self, c, buf, sizeof buf, 0) == KEEL_ETIMEDOUT);
  /* A sum <= 0 turns passive at once, with tcp_passive. */
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, -5) == KEEL_OK);
  CHECK(recv_tag(self, "tcp_passive", LONG_MS, &m) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, 40000) == KEEL_EINVAL);
  keel_net_close(c);
  mark_done();
}

static void n_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
  char buf[4];
  for (int i = 0; i < N_MSGS; i++) {
    char c = (char)('a' + i);
    CHECK(keel_net_send(s, &c, 1) == KEEL_OK);
    CHECK(read_n(s, buf, 1) && buf[0] == 'k');
  }
  CHECK(keel_net_send(s, "z", 1) == KEEL_OK);
  CHECK(keel_net_recv(s, buf, 1, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(s);
  mark_done();
}

Test(tcp_active, active_n_passive) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(n_server, NULL);
    spawn_f(n_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- active true, peer close ------------------------------------------- */

#define STREAM_BYTES (1 << 20)

static void true_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c;
  CHECK(keel_net_accept(listen_s, LONG_MS, &c) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE, 0) == KEEL_OK);
  /* Every byte arrives in order, then tcp_closed. */
  size_t total = 0;
  bool ok = true;
  for (;;) {
    keel_term m;
    if (keel_receive(self, NULL, NULL, LONG_MS, &m) != KEEL_OK) {
      ok = false;
      break;
    }
    keel_socket from = 0;
    if (msg_is(m, "tcp_closed", &from)) {
      CHECK(from == c);
      break;
    }
    CHECK(msg_is(m, "tcp", &from) && from == c);
    size_t len;
    const uint8_t *d = keel_binary_data(keel_tuple_get(m, 2), &len);
    for (size_t i = 0; i < len; i++)
      ok &= d[i] == (uint8_t)((total + i) * 7);
    total += len;
  }
  CHECK(ok);
  CHECKV(total == STREAM_BYTES, total);
  /* After tcp_closed the socket is closed. */
  CHECK(keel_net_send(c, "x", 1) == KEEL_ECLOSED);
  mark_done();
}

static void true_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
  static uint8_t chunk[8192];
  for (size_t off = 0; off < STREAM_BYTES; off += sizeof chunk) {
    for (size_t i = 0; i < sizeof chunk; i++)
      chunk[i] = (uint8_t)((off + i) * 7);
    CHECK(keel_net_send(s, chunk, sizeof chunk) == KEEL_OK);
  }
  /* Close once every byte left the queue (close drops the queue). */
  CHECK(keel_net_shutdown(s, KEEL_NET_SHUT_WRITE) == KEEL_OK);
  char b;
  int64_t r = keel_net_recv(s, &b, 1, LONG_MS);
  CHECKV(r == KEEL_ECLOSED, r);
  keel_net_close(s);
  mark_done();
}

Test(tcp_active, active_true_and_closed) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(true_server, NULL);
    spawn_f(true_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- handler processes: async accept, busy sends ------------------------ */

typedef struct hstate {
  keel_socket conn;
  keel_term reader; /* the reading fiber, once it said so */
  int busy, writable;
  size_t sent;
} hstate;

#define H_TOTAL (16u << 20)

static void tell(keel_term to, const char *tag, keel_term pid) {
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_send(to, keel_tuple(&h, 2, keel_atom(tag), pid));
  keel_heap_destroy(&h);
}

/* Pushes data until refused, then waits for tcp_writable. The reader
 * starts reading only once the first refusal happened. */
static keel_handler_status pusher(keel_proc *self, keel_term msg, void *st) {
  hstate *h = st;
  keel_socket s;
  if (msg_is(msg, "reader", NULL)) {
    h->reader = keel_tuple_get(msg, 1);
    if (h->busy > 0)
      tell(h->reader, "go", keel_self(self));
    return KEEL_CONTINUE;
  }
  if (msg_is(msg, "tcp_accept", &s)) {
    CHECK(keel_net_socket_of(keel_tuple_get(msg, 2), &h->conn) == KEEL_OK);
    char b[4];
    CHECK(keel_net_recv(h->conn, b, sizeof b, 5) == KEEL_ESTATE);
    CHECK(keel_net_set_watermarks(h->conn, 16384, 65536) == KEEL_OK);
  } else if (msg_is(msg, "tcp_writable", &s)) {
    CHECK(s == h->conn);
    h->writable++;
  } else {
    CHECK(false);
  }
  static uint8_t chunk[16384];
  while (h->sent < H_TOTAL) {
    for (size_t i = 0; i < sizeof chunk; i++)
      chunk[i] = (uint8_t)((h->sent + i) % 251);
    int rc = keel_net_send(h->conn, chunk, sizeof chunk);
    if (rc == KEEL_EBUSY) {
      /* Only the first refusal sees a queue nobody reads yet: once the
       * reader runs, the poll thread may drain it at any moment. */
      bool first = h->busy++ == 0;
      if (first)
        CHECK(keel_net_queued(h->conn) > 65536);
      if (first && h->reader != 0)
        tell(h->reader, "go", keel_self(self));
      return KEEL_CONTINUE;
    }
    CHECKV(rc == KEEL_OK, rc);
    if (rc != KEEL_OK)
      return KEEL_EXIT;
    h->sent += sizeof chunk;
  }
  CHECK(keel_net_shutdown(h->conn, KEEL_NET_SHUT_WRITE) == KEEL_OK);
  CHECKV(h->busy > 0, h->busy);
  CHECKV(h->writable == h->busy, h->writable);
  mark_done();
  return KEEL_EXIT;
}

static void slow_reader(keel_proc *self, void *arg) {
  keel_term pusher_pid = *(keel_term *)arg;
  tell(pusher_pid, "reader", keel_self(self));
  keel_socket s;
  CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &s) == KEEL_OK);
  keel_term m;
  CHECK(recv_tag(self, "go", LONG_MS, &m) == KEEL_OK);
  size_t total = 0;
  bool ok = true;
  int64_t n;
  char *b = malloc(4096);
  while ((n = keel_net_recv(s, b, 4096, LONG_MS)) > 0) {
    for (int64_t i = 0; i < n; i++)
      ok &= (uint8_t)b[i] == (uint8_t)((total + (size_t)i) % 251);
    total += (size_t)n;
    keel_fiber_yield(self);
  }
  free(b);
  CHECKV(n == KEEL_ECLOSED, n);
  CHECK(ok);
  CHECKV(total == H_TOTAL, total);
  keel_net_close(s);
  mark_done();
}

Test(tcp_active, handler_async_accept_and_busy) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    static hstate st;
    memset(&st, 0, sizeof st);
    keel_term pid;
    cr_assert_eq(keel_spawn(pusher, &st, NULL, &pid), KEEL_OK);
    cr_assert_eq(keel_net_accept_async(listen_s, pid), KEEL_OK);
    static keel_term ppid;
    ppid = pid;
    spawn_f(slow_reader, &ppid);
    stop_node(sched_counts[k], 2);
  }
}
