/*
 * test_tcp_packet.c - gen_tcp's {packet, 1|2|4|line} framing (passive and
 * active once/N, both directions, frames split and coalesced by the
 * stream), hostile frames (an oversized length header, a truncated frame,
 * an endless line), and send_timeout with and without
 * send_timeout_close against a peer that stops reading. 1, 2 and 8
 * schedulers.
 */
#include <stdint.h>
#include <stdlib.h>

#include "net/net_test.h"

static keel_socket listen_s;
static uint16_t port;

static void listen_any(void) {
  keel_net_listen_opts lo = {.port = 0};
  cr_assert_eq(keel_net_listen(&lo, &listen_s), KEEL_OK);
  port = port_of(listen_s);
}

static keel_socket connect_here(void) {
  keel_socket c = KEEL_SOCKET_NONE;
  int rc = keel_net_connect("127.0.0.1", port, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  return c;
}

static keel_socket accept_here(void) {
  keel_socket c = KEEL_SOCKET_NONE;
  int rc = keel_net_accept(listen_s, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  return c;
}

/* Frame sizes per header width. */
static size_t sizes_for(int width, size_t *out) {
  size_t n = 0;
  out[n++] = 0;
  out[n++] = 1;
  out[n++] = 200;
  out[n++] = 255;
  if (width >= 2) {
    out[n++] = 5000;
    out[n++] = 65535;
  }
  if (width == 4)
    out[n++] = 300000;
  return n;
}

static void fill(uint8_t *p, size_t len, size_t seed) {
  for (size_t i = 0; i < len; i++)
    p[i] = (uint8_t)(i * 7 + seed);
}

static bool same(const uint8_t *p, size_t len, size_t seed) {
  for (size_t i = 0; i < len; i++)
    if (p[i] != (uint8_t)(i * 7 + seed))
      return false;
  return true;
}

/* ---- passive, both directions -------------------------------------------- */

static _Atomic int cur_width;

static void framed_server(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  int w = atomic_load(&cur_width);
  keel_socket c = accept_here();
  CHECK(keel_net_set_packet(c, (keel_net_packet)w, 0) == KEEL_OK);
  size_t sz[8];
  size_t n = sizes_for(w, sz);
  uint8_t *buf = malloc(300000);
  for (size_t i = 0; i < n; i++) {
    if (sz[i] > 1) { /* too small a buffer: the frame stays */
      int64_t r = keel_net_recv(c, buf, sz[i] - 1, LONG_MS);
      CHECKV(r == KEEL_ENOSPC, r);
    }
    int64_t r = keel_net_recv(c, buf, 300000, LONG_MS);
    CHECKV(r == (int64_t)sz[i], r);
    CHECKV(same(buf, sz[i], i), i);
    /* Echo it back, framed. */
    CHECK(keel_net_send(c, buf, sz[i]) == KEEL_OK);
  }
  free(buf);
  keel_net_close(c);
  mark_done();
}

static void framed_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  int w = atomic_load(&cur_width);
  keel_socket c = connect_here();
  CHECK(keel_net_set_packet(c, (keel_net_packet)w, 0) == KEEL_OK);
  size_t sz[8];
  size_t n = sizes_for(w, sz);
  uint8_t *buf = malloc(300000);
  for (size_t i = 0; i < n; i++) {
    fill(buf, sz[i], i);
    CHECK(keel_net_send(c, buf, sz[i]) == KEEL_OK);
  }
  /* Longer than the header can tell. */
  size_t over = w == 1 ? 256 : w == 2 ? 65536 : 0;
  if (over != 0)
    CHECK(keel_net_send(c, buf, over) == KEEL_ELIMIT);
  for (size_t i = 0; i < n; i++) {
    int64_t r = keel_net_recv(c, buf, 300000, LONG_MS);
    CHECKV(r == (int64_t)sz[i], r);
    CHECKV(same(buf, sz[i], i), i);
  }
  /* The server closed: no partial frame, just the end. */
  CHECK(keel_net_recv(c, buf, 16, LONG_MS) == KEEL_ECLOSED);
  free(buf);
  keel_net_close(c);
  mark_done();
}

Test(tcp_packet, passive_1_2_4_both_ways) {
  static const int widths[] = {1, 2, 4};
  for (size_t k = 0; k < NCONF; k++) {
    for (size_t w = 0; w < 3; w++) {
      start_node(sched_counts[k]);
      atomic_store(&cur_width, widths[w]);
      listen_any();
      spawn_f(framed_server, NULL);
      spawn_f(framed_client, NULL);
      stop_node(sched_counts[k], 2);
    }
  }
}

/* ---- active, frames coalesced and split by the stream ----------------------
 */

static int64_t recv_frame_msg(keel_proc *self, keel_socket s, void *buf,
                              size_t cap, int64_t ms) {
  keel_term m;
  int rc = recv_tag(self, "tcp", ms, &m);
  if (rc != KEEL_OK)
    return rc;
  keel_socket from;
  if (!msg_is(m, "tcp", &from) || from != s || keel_tuple_arity(m) != 3)
    return KEEL_EBADARG;
  size_t len = 0;
  const uint8_t *d = keel_binary_data(keel_tuple_get(m, 2), &len);
  if (len > cap)
    return KEEL_ENOSPC;
  if (len > 0)
    memcpy(buf, d, len);
  return (int64_t)len;
}

static void active_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c = accept_here();
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_2, 0) == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
  char buf[64];
  int64_t n = recv_frame_msg(self, c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 3 && memcmp(buf, "one", 3) == 0, n);
  /* Once: the next frames (already here, in the same segment) wait. */
  n = recv_frame_msg(self, c, buf, sizeof buf, 200);
  CHECKV(n == KEEL_ETIMEDOUT, n);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, 3) == KEEL_OK);
  n = recv_frame_msg(self, c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 0, n); /* the empty frame */
  n = recv_frame_msg(self, c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 5 && memcmp(buf, "three", 5) == 0, n);
  /* The fourth frame came byte by byte. */
  n = recv_frame_msg(self, c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 4 && memcmp(buf, "four", 4) == 0, n);
  keel_term m;
  CHECK(recv_tag(self, "tcp_passive", LONG_MS, &m) == KEEL_OK);
  /* Line mode, passive: lines split across and within segments. */
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_LINE, 0) == KEEL_OK);
  CHECK(keel_net_send(c, "go", 2) == KEEL_OK);
  n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 3 && memcmp(buf, "ab\n", 3) == 0, n);
  n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 3 && memcmp(buf, "cd\n", 3) == 0, n);
  n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 4 && memcmp(buf, "efg\n", 4) == 0, n);
  /* Raw again: the rest of the stream as bytes. */
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_RAW, 0) == KEEL_OK);
  n = keel_net_recv(c, buf, 3, LONG_MS);
  CHECKV(n == 3 && memcmp(buf, "raw", 3) == 0, n);
  keel_net_close(c);
  mark_done();
}

static void active_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c = connect_here();
  /* Raw sender: four frames, the first three in one write. */
  static const uint8_t three[] = {0, 3, 'o', 'n', 'e', 0,   0,
                                  0, 5, 't', 'h', 'r', 'e', 'e'};
  CHECK(keel_net_send(c, three, sizeof three) == KEEL_OK);
  static const uint8_t four[] = {0, 4, 'f', 'o', 'u', 'r'};
  for (size_t i = 0; i < sizeof four; i++)
    CHECK(keel_net_send(c, &four[i], 1) == KEEL_OK);
  char buf[4];
  int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == 2, n);
  CHECK(keel_net_send(c, "ab\ncd", 5) == KEEL_OK);
  CHECK(keel_net_send(c, "\nef", 3) == KEEL_OK);
  CHECK(keel_net_send(c, "g\nraw", 5) == KEEL_OK);
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(c);
  mark_done();
}

Test(tcp_packet, active_once_n_line_raw) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(active_server, NULL);
    spawn_f(active_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- hostile frames ------------------------------------------------------ */

/* Which attack the raw client sends: 0 an oversized 4-byte header, 1 a
 * truncated frame then EOF, 2 a line longer than the limit. */
static _Atomic int attack;
static _Atomic bool attack_active;

static void hostile_server(keel_proc *self, void *arg) {
  (void)arg;
  int a = atomic_load(&attack);
  bool active = atomic_load(&attack_active);
  keel_socket c = accept_here();
  keel_net_packet type = a == 2 ? KEEL_NET_PACKET_LINE : KEEL_NET_PACKET_4;
  CHECK(keel_net_set_packet(c, type, a == 2 ? 8 : 1024 * 1024) == KEEL_OK);
  char buf[64];
  if (!active) {
    int64_t want = a == 1 ? KEEL_ECLOSED : KEEL_ELIMIT;
    int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
    CHECKV(n == want, n);
    n = keel_net_recv(c, buf, sizeof buf, LONG_MS); /* and stays so */
    CHECKV(n == want, n);
    keel_net_close(c);
    mark_done();
    return;
  }
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE, 0) == KEEL_OK);
  keel_term m;
  if (a != 1) {
    CHECK(recv_tag(self, "tcp_error", LONG_MS, &m) == KEEL_OK &&
          keel_tuple_arity(m) == 3 &&
          keel_tuple_get(m, 2) == keel_atom("emsgsize"));
  }
  CHECK(recv_tag(self, "tcp_closed", LONG_MS, &m) == KEEL_OK);
  CHECK(recv_tag(self, "tcp", 0, &m) == KEEL_ETIMEDOUT);
  CHECK(keel_net_send(c, "x", 1) == KEEL_ECLOSED); /* closed for us */
  mark_done();
}

static void hostile_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  int a = atomic_load(&attack);
  keel_socket c = connect_here();
  if (a == 0) {
    static const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 'x', 'y'};
    CHECK(keel_net_send(c, big, sizeof big) == KEEL_OK);
  } else if (a == 1) {
    static const uint8_t part[] = {0, 0, 0, 10, 'a', 'b', 'c', 'd', 'e'};
    CHECK(keel_net_send(c, part, sizeof part) == KEEL_OK);
    CHECK(keel_net_shutdown(c, KEEL_NET_SHUT_WRITE) == KEEL_OK);
  } else {
    CHECK(keel_net_send(c, "0123456789abcdef", 16) == KEEL_OK);
  }
  /* Wait for the server's close (reads see EOF or a reset). */
  char buf[8];
  int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == KEEL_ECLOSED, n);
  keel_net_close(c);
  mark_done();
}

Test(tcp_packet, hostile_frames) {
  for (size_t k = 0; k < NCONF; k++) {
    for (int a = 0; a < 3; a++) {
      for (int act = 0; act < 2; act++) {
        start_node(sched_counts[k]);
        atomic_store(&attack, a);
        atomic_store(&attack_active, act != 0);
        listen_any();
        spawn_f(hostile_server, NULL);
        spawn_f(hostile_client, NULL);
        stop_node(sched_counts[k], 2);
      }
    }
  }
}

/* ---- send_timeout against a peer that stops reading -----------------------
 */

static _Atomic bool close_on_tmo;
static keel_term reader_pid;

static void stuck_sender(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  bool close_it = atomic_load(&close_on_tmo);
  keel_socket c = accept_here();
  CHECK(keel_net_set_watermarks(c, 4096, 16384) == KEEL_OK);
  CHECK(keel_net_set_send_timeout(c, 300, close_it) == KEEL_OK);
  static uint8_t chunk[65536];
  int rc = KEEL_OK;
  long sent = 0;
  /* The peer reads nothing: kernel buffers fill, then the queue. */
  for (long i = 0; i < 100000 && rc == KEEL_OK; i++) {
    rc = keel_net_send(c, chunk, sizeof chunk);
    sent++;
  }
  CHECKV(rc == KEEL_ETIMEDOUT, rc);
  CHECKV(sent > 1, sent);
  if (close_it) {
    CHECK(keel_net_send(c, "x", 1) == KEEL_ECLOSED);
    CHECK(keel_net_close(c) == KEEL_ECLOSED);
  } else {
    /* Still open: the queue is there, sends still time out. */
    CHECK(keel_net_queued(c) > 0);
    CHECK(keel_net_send(c, chunk, sizeof chunk) == KEEL_ETIMEDOUT);
  }
  keel_send(reader_pid, keel_atom("go"));
  if (!close_it) {
    /* The reader drains: the queue empties, sends work again. */
    CHECK(keel_net_set_send_timeout(c, KEEL_INFINITY, false) == KEEL_OK);
    CHECK(keel_net_send(c, chunk, sizeof chunk) == KEEL_OK);
    CHECK(keel_net_close(c) == KEEL_OK);
  }
  mark_done();
}

static bool match_go(keel_term m, void *arg) {
  (void)arg;
  return m == keel_atom("go");
}

static void stuck_reader(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c = connect_here();
  keel_term m;
  CHECK(keel_receive(self, match_go, NULL, LONG_MS * 4, &m) == KEEL_OK);
  /* Now read everything: the stream ends (closed or flushed then closed). */
  static uint8_t buf[65536];
  int64_t n;
  long long total = 0;
  while ((n = keel_net_recv(c, buf, sizeof buf, LONG_MS)) > 0)
    total += n;
  CHECKV(n == KEEL_ECLOSED, n);
  CHECKV(total > 0, total);
  keel_net_close(c);
  mark_done();
}

Test(tcp_packet, send_timeout_stuck_peer) {
  for (size_t k = 0; k < NCONF; k++) {
    for (int cl = 0; cl < 2; cl++) {
      start_node(sched_counts[k]);
      atomic_store(&close_on_tmo, cl != 0);
      listen_any();
      reader_pid = spawn_f(stuck_reader, NULL);
      spawn_f(stuck_sender, NULL);
      stop_node(sched_counts[k], 2);
    }
  }
}

/* A thread waits on a send_timeout too (instead of KEEL_EBUSY). */
Test(tcp_packet, send_timeout_thread) {
  start_node(2);
  listen_any();
  keel_socket c, a;
  cr_assert_eq(keel_net_connect("127.0.0.1", port, LONG_MS, &c), KEEL_OK);
  cr_assert_eq(keel_net_accept(listen_s, LONG_MS, &a), KEEL_OK);
  cr_assert_eq(keel_net_set_watermarks(c, 4096, 16384), KEEL_OK);
  static uint8_t chunk[65536];
  int rc = KEEL_OK;
  for (int i = 0; i < 100000 && rc == KEEL_OK; i++)
    rc = keel_net_send(c, chunk, sizeof chunk);
  cr_assert_eq(rc, KEEL_EBUSY); /* no send_timeout: the thread is refused */
  cr_assert_eq(keel_net_set_send_timeout(c, 200, true), KEEL_OK);
  cr_assert_eq(keel_net_send(c, chunk, sizeof chunk), KEEL_ETIMEDOUT);
  cr_assert_eq(keel_net_send(c, chunk, 1), KEEL_ECLOSED);
  cr_assert_eq(keel_net_set_send_timeout(a, -2, false), KEEL_EINVAL);
  cr_assert_eq(keel_net_set_packet(listen_s, KEEL_NET_PACKET_1, 0),
               KEEL_EINVAL);
  cr_assert_eq(keel_net_set_packet(a, (keel_net_packet)3, 0), KEEL_EINVAL);
  keel_net_close(a);
  keel_net_close(listen_s);
  stop_node(2, 0);
}

/* ---- a python3 peer speaking {packet, 4} --------------------------------- */

/* Echoes three frames, each received as one active-once message. */
static void py_echo(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c = accept_here();
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_4, 0) == KEEL_OK);
  static char buf[100000];
  for (int i = 0; i < 3; i++) {
    CHECK(keel_net_set_active(c, KEEL_NET_ONCE, 0) == KEEL_OK);
    int64_t n = recv_frame_msg(self, c, buf, sizeof buf, LONG_MS);
    CHECKV(n >= 0, n);
    if (n < 0)
      break;
    CHECK(keel_net_send(c, buf, (size_t)n) == KEEL_OK);
  }
  keel_net_close(c);
  mark_done();
}

Test(tcp_packet, python_peer_packet_4) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(py_echo, NULL);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import socket,struct\n"
             "s=socket.create_connection(('127.0.0.1',%u),timeout=30)\n"
             "f=lambda b: struct.pack('>I',len(b))+b\n"
             "big=bytes(range(256))*300\n"
             "w=f(b'one')+f(b'')+f(big)\n"
             "s.sendall(w[:9]);s.sendall(w[9:])\n"
             "def rd(n):\n"
             "  d=b''\n"
             "  while len(d)<n:\n"
             "    x=s.recv(n-len(d))\n"
             "    assert x\n"
             "    d+=x\n"
             "  return d\n"
             "got=[rd(struct.unpack('>I',rd(4))[0]) for i in range(3)]\n"
             "print('ok' if got==[b'one',b'',big] else 'bad')\"",
             port);
    FILE *py = popen(cmd, "r");
    cr_assert_not_null(py);
    char line[16] = "";
    char *got = fgets(line, sizeof line, py);
    int st = pclose(py);
    stop_node(sched_counts[k], 1);
    cr_assert_not_null(got);
    cr_assert_eq(st, 0);
    cr_assert_str_eq(line, "ok\n");
  }
}
