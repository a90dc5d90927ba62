/*
 * test_udp.c - UDP sockets (gen_udp): passive send/recv between two Keel
 * sockets on 127.0.0.1 with datagram boundaries, empty datagrams and
 * truncation; active once and active N with {udp, S, Ip, Port, Data} and
 * udp_passive; close at the owner's death and stale handles; misuse
 * errors; a python3 peer. 1, 2 and 8 schedulers.
 */
#include <stdint.h>
#include <stdlib.h>

#include "net/net_test.h"

/* Opens a UDP socket on an ephemeral port of 127.0.0.1. */
static keel_socket open_any(uint16_t *port) {
  keel_net_udp_opts o = {.port = 0};
  keel_socket s = KEEL_SOCKET_NONE;
  int rc = keel_net_udp_open(&o, &s);
  CHECKV(rc == KEEL_OK, rc);
  if (port != NULL)
    *port = rc == KEEL_OK ? port_of(s) : 0;
  return s;
}

/* ---- passive ------------------------------------------------------------- */

typedef struct peer_arg {
  uint16_t port; /* the other side's port */
} peer_arg;

static void passive_client(keel_proc *self, void *arg) {
  (void)self;
  uint16_t sport = ((peer_arg *)arg)->port;
  free(arg);
  uint16_t me;
  keel_socket s = open_any(&me);
  CHECK(keel_net_udp_send(s, "127.0.0.1", sport, "one", 3) == KEEL_OK);
  CHECK(keel_net_udp_send(s, "127.0.0.1", sport, "", 0) == KEEL_OK);
  CHECK(keel_net_udp_send(s, "127.0.0.1", sport, "three!", 6) == KEEL_OK);
  char big[100];
  memset(big, 'x', sizeof big);
  CHECK(keel_net_udp_send(s, "127.0.0.1", sport, big, sizeof big) == KEEL_OK);
  char buf[64];
  keel_net_addr from;
  int64_t n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, &from);
  CHECKV(n == 4 && memcmp(buf, "done", 4) == 0, n);
  CHECKV(from.port == sport, from.port);
  keel_net_close(s);
  mark_done();
}

static void passive_server(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  uint16_t port;
  keel_socket s = open_any(&port);
  peer_arg *pa = malloc(sizeof *pa);
  pa->port = port;
  keel_term cpid;
  CHECK(keel_spawn_fiber(passive_client, pa, NULL, &cpid) == KEEL_OK);
  char buf[64];
  keel_net_addr from, first;
  /* Datagrams keep their boundaries; an empty one is a datagram. */
  int64_t n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, &first);
  CHECKV(n == 3 && memcmp(buf, "one", 3) == 0, n);
  CHECK(strcmp(first.ip, "127.0.0.1") == 0);
  n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, &from);
  CHECKV(n == 0, n);
  n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, NULL);
  CHECKV(n == 6 && memcmp(buf, "three!", 6) == 0, n);
  /* Longer than the buffer: truncated, the rest dropped. */
  n = keel_net_udp_recv(s, buf, 10, LONG_MS, &from);
  CHECKV(n == 10 && buf[0] == 'x', n);
  CHECKV(from.port == first.port, from.port);
  n = keel_net_udp_recv(s, buf, sizeof buf, 0, NULL);
  CHECKV(n == KEEL_ETIMEDOUT, n);
  CHECK(keel_net_udp_send(s, first.ip, first.port, "done", 4) == KEEL_OK);
  keel_net_close(s);
  mark_done();
}

Test(udp, passive_boundaries_empty_truncation) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    spawn_f(passive_server, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- active -------------------------------------------------------------- */

/* Receives {udp, S, Ip, Port, Data}: checks S and Ip, copies Data. */
static int64_t recv_udp(keel_proc *self, keel_socket s, uint16_t *pport,
                        char *buf, size_t cap, int64_t ms) {
  keel_term m;
  int rc = recv_tag(self, "udp", ms, &m);
  if (rc != KEEL_OK)
    return rc;
  keel_socket from;
  if (!msg_is(m, "udp", &from) || from != s || keel_tuple_arity(m) != 5)
    return KEEL_EBADARG;
  keel_term ip = keel_tuple_get(m, 2);
  if (!keel_is_tuple(ip) || keel_tuple_arity(ip) != 4 ||
      keel_tuple_get(ip, 0) != keel_small(127) ||
      keel_tuple_get(ip, 3) != keel_small(1))
    return KEEL_EBADARG;
  *pport = (uint16_t)keel_small_value(keel_tuple_get(m, 3));
  size_t len;
  const uint8_t *d = keel_binary_data(keel_tuple_get(m, 4), &len);
  if (d == NULL && len != 0)
    return KEEL_EBADARG;
  if (len > cap)
    return KEEL_ENOSPC;
  if (len > 0)
    memcpy(buf, d, len);
  return (int64_t)len;
}

static void active_client(keel_proc *self, void *arg) {
  (void)self;
  uint16_t sport = ((peer_arg *)arg)->port;
  free(arg);
  keel_socket s = open_any(NULL);
  for (int i = 0; i < 6; i++) {
    char c = (char)('a' + i);
    CHECK(keel_net_udp_send(s, "127.0.0.1", sport, &c, 1) == KEEL_OK);
  }
  char buf[8];
  int64_t n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, NULL);
  CHECKV(n == 2 && memcmp(buf, "ok", 2) == 0, n);
  keel_net_close(s);
  mark_done();
}

static void active_server(keel_proc *self, void *arg) {
  (void)arg;
  uint16_t port, cport = 0;
  keel_socket s = open_any(&port);
  CHECK(keel_net_set_active(s, KEEL_NET_ONCE, 0) == KEEL_OK);
  peer_arg *pa = malloc(sizeof *pa);
  pa->port = port;
  CHECK(keel_spawn_fiber(active_client, pa, NULL, NULL) == KEEL_OK);
  char buf[8];
  int64_t n = recv_udp(self, s, &cport, buf, sizeof buf, LONG_MS);
  CHECKV(n == 1 && buf[0] == 'a', n);
  /* Passive again: 'b' waits in the kernel, read passively. */
  n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, NULL);
  CHECKV(n == 1 && buf[0] == 'b', n);
  keel_term m;
  CHECK(recv_tag(self, "udp", 0, &m) == KEEL_ETIMEDOUT);
  /* Active N=3: c, d, e then udp_passive; f read passively. */
  CHECK(keel_net_set_active(s, KEEL_NET_ACTIVE_N, 3) == KEEL_OK);
  for (int i = 0; i < 3; i++) {
    uint16_t p2;
    n = recv_udp(self, s, &p2, buf, sizeof buf, LONG_MS);
    CHECKV(n == 1 && buf[0] == 'c' + i, n);
    CHECKV(p2 == cport, p2);
  }
  keel_socket ps;
  CHECK(recv_tag(self, "udp_passive", LONG_MS, &m) == KEEL_OK &&
        msg_is(m, "udp_passive", &ps) && ps == s);
  /* A passive recv on an active socket is refused. */
  n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, NULL);
  CHECKV(n == 1 && buf[0] == 'f', n);
  CHECK(keel_net_set_active(s, KEEL_NET_ACTIVE, 0) == KEEL_OK);
  CHECK(keel_net_udp_recv(s, buf, sizeof buf, 0, NULL) == KEEL_EINVAL);
  CHECK(keel_net_udp_send(s, "127.0.0.1", cport, "ok", 2) == KEEL_OK);
  keel_net_close(s);
  mark_done();
}

Test(udp, active_once_and_n) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    spawn_f(active_server, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- owner death, stale handles, misuse ---------------------------------- */

static _Atomic keel_socket dying_sock;

static void short_owner(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  atomic_store(&dying_sock, open_any(NULL));
  mark_done(); /* and exits: its socket closes */
}

Test(udp, closed_at_owner_death_and_stale) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    atomic_store(&dying_sock, KEEL_SOCKET_NONE);
    spawn_f(short_owner, NULL);
    cr_assert(wait_done(1));
    keel_socket s = atomic_load(&dying_sock);
    cr_assert_neq(s, KEEL_SOCKET_NONE);
    /* Bounded poll: the exit hook closes it once the fiber is gone. */
    int rc = KEEL_OK;
    for (int i = 0; i < 3000 && rc != KEEL_ECLOSED; i++) {
      keel_net_addr a;
      rc = keel_net_sockname(s, &a);
      if (rc != KEEL_ECLOSED) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
    }
    cr_assert_eq(rc, KEEL_ECLOSED);
    cr_assert_eq(keel_net_udp_send(s, "127.0.0.1", 9, "x", 1), KEEL_ECLOSED);
    /* A new socket never answers to the old handle. */
    keel_net_udp_opts o = {.port = 0};
    keel_socket s2;
    cr_assert_eq(keel_net_udp_open(&o, &s2), KEEL_OK);
    cr_assert_neq(s2, s);
    cr_assert_eq(keel_net_close(s), KEEL_ECLOSED);
    cr_assert_eq(keel_net_close(s2), KEEL_OK);
    stop_node(sched_counts[k], 1);
  }
}

static void misuse(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  uint16_t port;
  keel_socket u = open_any(&port);
  char buf[4];
  CHECK(keel_net_send(u, "x", 1) == KEEL_EINVAL);
  CHECK(keel_net_recv(u, buf, sizeof buf, 0) == KEEL_EINVAL);
  CHECK(keel_net_shutdown(u, KEEL_NET_SHUT_WRITE) == KEEL_EINVAL);
  CHECK(keel_net_udp_send(u, "not an ip", 9, "x", 1) == KEEL_EINVAL);
  CHECK(keel_net_udp_send(u, "::1", 9, "x", 1) == KEEL_EINVAL); /* family */
  CHECK(keel_net_udp_send(u, NULL, 9, "x", 1) == KEEL_ESTATE);  /* no peer */
  CHECK(keel_net_udp_send(u, "127.0.0.1", 9, NULL, 1) == KEEL_EINVAL);
  /* The same port twice without reuseaddr. */
  keel_net_udp_opts o = {.port = port};
  keel_socket u2;
  CHECK(keel_net_udp_open(&o, &u2) == KEEL_EADDRINUSE);
  /* A TCP socket is no UDP socket. */
  keel_net_listen_opts lo = {.port = 0};
  keel_socket l;
  CHECK(keel_net_listen(&lo, &l) == KEEL_OK);
  CHECK(keel_net_udp_send(l, "127.0.0.1", 9, "x", 1) == KEEL_EINVAL);
  CHECK(keel_net_udp_recv(l, buf, sizeof buf, 0, NULL) == KEEL_EINVAL);
  keel_net_close(l);
  keel_net_close(u);
  mark_done();
}

/* Recv by another process than the owner. */
static keel_socket foreign;

static void not_owner(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  char buf[4];
  CHECK(keel_net_udp_recv(foreign, buf, sizeof buf, 0, NULL) == KEEL_ENOTOWNER);
  /* Anyone may send. */
  CHECK(keel_net_udp_send(foreign, "127.0.0.1", port_of(foreign), "x", 1) ==
        KEEL_OK);
  mark_done();
}

Test(udp, misuse_errors) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    keel_net_udp_opts o = {.port = 0};
    cr_assert_eq(keel_net_udp_open(&o, &foreign), KEEL_OK);
    spawn_f(misuse, NULL);
    spawn_f(not_owner, NULL);
    cr_assert(wait_done(2));
    /* The thread owns it (no owner): its recv sees the datagram. */
    char buf[4];
    cr_assert_eq(keel_net_udp_recv(foreign, buf, sizeof buf, LONG_MS, NULL), 1);
    keel_net_close(foreign);
    stop_node(sched_counts[k], 2);
  }
}

/* ---- a python3 peer ------------------------------------------------------ */

static _Atomic uint16_t echo_port;

/* Echoes one datagram received in active-once mode, 'h' turned to 'j'. */
static void echo_server(keel_proc *self, void *arg) {
  (void)arg;
  uint16_t port;
  keel_socket s = open_any(&port);
  CHECK(keel_net_set_active(s, KEEL_NET_ONCE, 0) == KEEL_OK);
  atomic_store(&echo_port, port);
  mark_done();
  keel_term m;
  int rc = recv_tag(self, "udp", LONG_MS, &m);
  CHECKV(rc == KEEL_OK && keel_tuple_arity(m) == 5, rc);
  if (rc == KEEL_OK) {
    size_t len = 0;
    const uint8_t *d = keel_binary_data(keel_tuple_get(m, 4), &len);
    CHECKV(len == 5 && memcmp(d, "hello", 5) == 0, len);
    int64_t pport = keel_small_value(keel_tuple_get(m, 3));
    CHECK(keel_net_udp_send(s, "127.0.0.1", (uint16_t)pport, "jello", 5) ==
          KEEL_OK);
  }
  keel_net_close(s);
  mark_done();
}

Test(udp, python_peer_echo) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    atomic_store(&echo_port, 0);
    spawn_f(echo_server, NULL);
    cr_assert(wait_done(1));
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import socket;"
             "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
             "u.settimeout(30);u.sendto(b'hello',('127.0.0.1',%u));"
             "d,a=u.recvfrom(100);print(d.decode())\"",
             (unsigned)atomic_load(&echo_port));
    FILE *py = popen(cmd, "r");
    cr_assert_not_null(py);
    char line[64] = "";
    char *got = fgets(line, sizeof line, py);
    int st = pclose(py);
    stop_node(sched_counts[k], 2);
    cr_assert_not_null(got);
    cr_assert_eq(st, 0);
    cr_assert_str_eq(line, "jello\n");
  }
}
