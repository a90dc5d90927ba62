/*
 * test_tcp_opts.c - the line mode's line_length (a longer line in
 * pieces) and line_delimiter, passive and active; the kernel options
 * recbuf, sndbuf and linger read back with keel_net_getopts, an abortive
 * close ({linger, {true, 0}}: the peer sees a reset) against an ordinary
 * and a {true, Secs} close (the peer sees the data and a FIN); getopts of
 * the Keel-side options; keel_net_setopts setting several at once (and
 * stopping at the first error). 1, 2 and 8 schedulers.
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

/* Receives the next passive frame and compares it with want. */
static bool recv_is(keel_socket c, const char *want) {
  char buf[64];
  int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  return n == (int64_t)strlen(want) && memcmp(buf, want, (size_t)n) == 0;
}

/* Receives the next {tcp, S, Data} and compares Data with want. */
static bool msg_data_is(keel_proc *self, const char *want) {
  keel_term m;
  if (recv_tag(self, "tcp", LONG_MS, &m) != KEEL_OK || keel_tuple_arity(m) != 3)
    return false;
  size_t len = 0;
  const uint8_t *d = keel_binary_data(keel_tuple_get(m, 2), &len);
  return len == strlen(want) && (len == 0 || memcmp(d, want, len) == 0);
}

/* ---- line_length and line_delimiter ---------------------------------------
 */

static void line_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c = accept_here();
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_LINE, 0) == KEEL_OK);
  CHECK(keel_net_set_line(c, 4, '\n') == KEEL_OK);
  keel_net_opts o;
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECK(o.packet == KEEL_NET_PACKET_LINE && o.line_length == 4 &&
        o.line_delimiter == '\n' &&
        o.packet_size == KEEL_NET_PACKET_MAX_DEFAULT);
  CHECK(keel_net_send(c, "1", 1) == KEEL_OK); /* the client may go on */
  /* "abcdefghij\nxy\n0123" came in one piece or several. */
  CHECK(recv_is(c, "abcd"));
  CHECK(recv_is(c, "efgh"));
  CHECK(recv_is(c, "ij\n"));
  CHECK(recv_is(c, "xy\n"));
  CHECK(recv_is(c, "0123")); /* a full piece without its delimiter yet */
  CHECK(recv_is(c, "\n"));
  /* Active N: the same pieces as messages; another delimiter. */
  CHECK(keel_net_set_line(c, 3, ';') == KEEL_OK);
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE_N, 4) == KEEL_OK);
  CHECK(keel_net_send(c, "2", 1) == KEEL_OK);
  CHECK(msg_data_is(self, "a;"));
  CHECK(msg_data_is(self, "bcd"));
  CHECK(msg_data_is(self, "e;"));
  CHECK(msg_data_is(self, ";"));
  keel_term m;
  CHECK(recv_tag(self, "tcp_passive", LONG_MS, &m) == KEEL_OK);
  /* No line_length: the whole line, up to the packet size. */
  CHECK(keel_net_set_line(c, 0, '\n') == KEEL_OK);
  CHECK(keel_net_send(c, "3", 1) == KEEL_OK);
  CHECK(recv_is(c, "a long line with no cut\n"));
  keel_net_close(c);
  CHECK(keel_net_getopts(c, &o) == KEEL_ECLOSED);
  CHECK(keel_net_set_line(c, 1, '\n') == KEEL_ECLOSED);
  mark_done();
}

static void line_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c = connect_here();
  char buf[8];
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == 1);
  CHECK(keel_net_send(c, "abcdefghi", 9) == KEEL_OK);
  CHECK(keel_net_send(c, "j\nxy\n0123", 9) == KEEL_OK);
  CHECK(keel_net_send(c, "\n", 1) == KEEL_OK);
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == 1);
  CHECK(keel_net_send(c, "a;bcde;;", 8) == KEEL_OK);
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == 1);
  CHECK(keel_net_send(c, "a long line ", 12) == KEEL_OK);
  CHECK(keel_net_send(c, "with no cut\n", 12) == KEEL_OK);
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(c);
  mark_done();
}

/* A line_length at or over the packet size does not cut: the line over
 * the packet size still fails. */
static void line_limit_server(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c = accept_here();
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_LINE, 8) == KEEL_OK);
  CHECK(keel_net_set_line(c, 8, '\n') == KEEL_OK);
  char buf[64];
  int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
  CHECKV(n == KEEL_ELIMIT, n);
  keel_net_close(c);
  mark_done();
}

static void line_limit_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c = connect_here();
  CHECK(keel_net_send(c, "0123456789abcdef", 16) == KEEL_OK);
  char buf[8];
  CHECK(keel_net_recv(c, buf, sizeof buf, LONG_MS) == KEEL_ECLOSED);
  keel_net_close(c);
  mark_done();
}

Test(tcp_opts, line_length_pieces_and_delimiter) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(line_server, NULL);
    spawn_f(line_client, NULL);
    stop_node(sched_counts[k], 2);
    start_node(sched_counts[k]);
    listen_any();
    spawn_f(line_limit_server, NULL);
    spawn_f(line_limit_client, NULL);
    stop_node(sched_counts[k], 2);
  }
}

Test(tcp_opts, option_misuse) {
  start_node(1);
  listen_any();
  CHECK(keel_net_set_line(listen_s, 4, '\n') == KEEL_EINVAL);
  CHECK(keel_net_set_line(listen_s, (size_t)UINT32_MAX + 1, '\n') ==
        KEEL_EINVAL);
  CHECK(keel_net_set_linger(listen_s, true, -1) == KEEL_EINVAL);
  CHECK(keel_net_set_linger(listen_s, true, 65536) == KEEL_EINVAL);
  CHECK(keel_net_set_buffers(listen_s, (size_t)INT32_MAX, 0) == KEEL_EINVAL);
  CHECK(keel_net_getopts(listen_s, NULL) == KEEL_EINVAL);
  keel_net_udp_opts uo = {.port = 0};
  keel_socket u;
  cr_assert_eq(keel_net_udp_open(&uo, &u), KEEL_OK);
  CHECK(keel_net_set_linger(u, true, 1) == KEEL_EINVAL);
  CHECK(keel_net_set_line(u, 4, '\n') == KEEL_EINVAL);
  keel_net_close(u);
  keel_net_close(listen_s);
  CHECK(keel_net_set_buffers(listen_s, 4096, 0) == KEEL_ECLOSED);
  CHECK(keel_net_set_linger(listen_s, false, 0) == KEEL_ECLOSED);
  stop_node(1, 0);
}

/* ---- recbuf, sndbuf, linger ------------------------------------------------
 */

/* Sets the buffers and checks what the kernel keeps (Linux: twice the
 * value asked for, when under the sysctl caps). */
static void check_buffers(keel_socket c) {
  static const size_t sizes[] = {16384, 65536};
  keel_net_opts o;
  for (size_t i = 0; i < 2; i++) {
    CHECK(keel_net_set_buffers(c, sizes[i], sizes[i] / 2) == KEEL_OK);
    CHECK(keel_net_getopts(c, &o) == KEEL_OK);
    CHECKV(o.recbuf == 2 * sizes[i], o.recbuf);
    CHECKV(o.sndbuf == sizes[i], o.sndbuf);
  }
  /* 0 leaves a size as it is. */
  CHECK(keel_net_set_buffers(c, 0, 8192) == KEEL_OK);
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECKV(o.recbuf == 2 * sizes[1], o.recbuf);
  CHECKV(o.sndbuf == 16384, o.sndbuf);
}

static _Atomic int close_kind; /* 0 plain, 1 linger {true, 0}, 2 {true, 5} */

static void opts_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_socket c = accept_here();
  CHECK(keel_net_set_active(c, KEEL_NET_ACTIVE, 0) == KEEL_OK);
  keel_term m;
  CHECK(msg_data_is(self, "bye"));
  /* An abortive close is a reset: {tcp_error, S, econnreset} first. */
  if (atomic_load(&close_kind) == 1) {
    CHECK(recv_tag(self, "tcp_error", LONG_MS, &m) == KEEL_OK &&
          keel_tuple_arity(m) == 3 &&
          keel_tuple_get(m, 2) == keel_atom("econnreset"));
  }
  CHECK(recv_tag(self, "tcp_closed", LONG_MS, &m) == KEEL_OK);
  CHECK(recv_tag(self, "tcp_error", 0, &m) == KEEL_ETIMEDOUT);
  mark_done();
}

static void opts_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  int kind = atomic_load(&close_kind);
  keel_socket c = connect_here();
  check_buffers(c);
  keel_net_opts o;
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECK(!o.linger_on && o.linger_secs == 0);
  CHECK(keel_net_set_nodelay(c, true) == KEEL_OK);
  CHECK(keel_net_set_watermarks(c, 1000, 2000) == KEEL_OK);
  CHECK(keel_net_set_send_timeout(c, 1234, true) == KEEL_OK);
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECK(o.nodelay && o.low_watermark == 1000 && o.high_watermark == 2000 &&
        o.send_timeout == 1234 && o.send_timeout_close &&
        o.active == KEEL_NET_PASSIVE && o.packet == KEEL_NET_PACKET_RAW);
  CHECK(keel_net_set_linger(c, true, 7) == KEEL_OK);
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECK(o.linger_on && o.linger_secs == 7);
  /* The same through setopts, several at once; getopts reads them. */
  keel_net_opts so = {.linger_on = true,
                      .linger_secs = 9,
                      .recbuf = 20000,
                      .packet = KEEL_NET_PACKET_LINE,
                      .line_length = 5,
                      .line_delimiter = ';',
                      .low_watermark = 10,
                      .high_watermark = 20};
  CHECK(keel_net_setopts(c, &so,
                         KEEL_NET_OPT_LINGER | KEEL_NET_OPT_BUFFERS |
                             KEEL_NET_OPT_PACKET | KEEL_NET_OPT_LINE |
                             KEEL_NET_OPT_WATERMARKS) == KEEL_OK);
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECK(o.linger_on && o.linger_secs == 9 && o.recbuf == 40000 &&
        o.packet == KEEL_NET_PACKET_LINE && o.line_length == 5 &&
        o.line_delimiter == ';' && o.low_watermark == 10 &&
        o.high_watermark == 20 && o.nodelay); /* nodelay not in `which` */
  /* Not atomic: the linger before the bad watermarks is set, the send
   * timeout after them is not. */
  so.linger_secs = 3;
  so.low_watermark = 30; /* above high */
  so.send_timeout = 55;
  CHECK(keel_net_setopts(c, &so,
                         KEEL_NET_OPT_LINGER | KEEL_NET_OPT_WATERMARKS |
                             KEEL_NET_OPT_SEND_TIMEOUT) == KEEL_EINVAL);
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECK(o.linger_secs == 3 && o.low_watermark == 10 && o.send_timeout == 1234);
  CHECK(keel_net_setopts(c, &so, 1u << 20) == KEEL_EINVAL);
  CHECK(keel_net_setopts(c, NULL, KEEL_NET_OPT_LINGER) == KEEL_EINVAL);
  CHECK(keel_net_set_packet(c, KEEL_NET_PACKET_RAW, 0) == KEEL_OK);
  CHECK(keel_net_set_watermarks(c, 1000, 2000) == KEEL_OK);
  CHECK(keel_net_set_linger(c, false, 0) == KEEL_OK);
  CHECK(keel_net_getopts(c, &o) == KEEL_OK);
  CHECK(!o.linger_on);
  if (kind != 0)
    CHECK(keel_net_set_linger(c, true, kind == 1 ? 0 : 5) == KEEL_OK);
  CHECK(keel_net_send(c, "bye", 3) == KEEL_OK);
  if (kind == 1) { /* the bytes must reach the peer before the reset */
    int64_t left = 1;
    for (int i = 0; i < 100000 && left > 0; i++)
      left = keel_net_queued(c);
    CHECKV(left == 0, left);
  }
  CHECK(keel_net_close(c) == KEEL_OK);
  mark_done();
}

Test(tcp_opts, buffers_linger_getopts) {
  for (size_t k = 0; k < NCONF; k++) {
    for (int kind = 0; kind < 3; kind++) {
      start_node(sched_counts[k]);
      atomic_store(&close_kind, kind);
      listen_any();
      spawn_f(opts_server, NULL);
      spawn_f(opts_client, NULL);
      stop_node(sched_counts[k], 2);
    }
  }
}

/* The buffers of a UDP socket; a listening socket's are inherited. */
Test(tcp_opts, udp_and_listen_buffers) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    keel_net_udp_opts uo = {.port = 0};
    keel_socket u;
    cr_assert_eq(keel_net_udp_open(&uo, &u), KEEL_OK);
    check_buffers(u);
    keel_net_opts so = {.broadcast = true, .multicast_ttl = 4};
    CHECK(keel_net_setopts(u, &so,
                           KEEL_NET_OPT_BROADCAST | KEEL_NET_OPT_MULTICAST_TTL |
                               KEEL_NET_OPT_MULTICAST_LOOP) == KEEL_OK);
    keel_net_opts uopts;
    CHECK(keel_net_getopts(u, &uopts) == KEEL_OK);
    CHECK(uopts.broadcast && uopts.multicast_ttl == 4 && !uopts.multicast_loop);
    keel_net_close(u);
    listen_any();
    CHECK(keel_net_set_buffers(listen_s, 32768, 0) == KEEL_OK);
    keel_socket c = KEEL_SOCKET_NONE, a = KEEL_SOCKET_NONE;
    CHECK(keel_net_connect("127.0.0.1", port, LONG_MS, &c) == KEEL_OK);
    CHECK(keel_net_accept(listen_s, LONG_MS, &a) == KEEL_OK);
    keel_net_opts o;
    CHECK(keel_net_getopts(a, &o) == KEEL_OK);
    CHECKV(o.recbuf == 65536, o.recbuf);
    keel_net_close(a);
    keel_net_close(c);
    keel_net_close(listen_s);
    stop_node(sched_counts[k], 0);
  }
}
