/*
 * test_udp_connect.c - connected UDP sockets (sends without an address go
 * to the peer, datagrams from anyone else are dropped, an ICMP port
 * unreachable comes back as KEEL_ECONNREFUSED), host names in sends and
 * connect, and IPv4 multicast on the loopback interface (join, receive,
 * drop, rejoin; ttl, loop, if and broadcast read back; misuse). 1, 2 and
 * 8 schedulers.
 */
#include <stdint.h>
#include <stdlib.h>

#include "net/net_test.h"

static keel_socket open_at(const char *ip, uint16_t port, bool reuse,
                           uint16_t *bound) {
  keel_net_udp_opts o = {.ip = ip, .port = port, .reuseaddr = reuse};
  keel_socket s = KEEL_SOCKET_NONE;
  int rc = keel_net_udp_open(&o, &s);
  CHECKV(rc == KEEL_OK, rc);
  if (bound != NULL)
    *bound = rc == KEEL_OK ? port_of(s) : 0;
  return s;
}

/* Receives one datagram and compares it with want (and its sender's
 * port with from_port unless 0). */
static bool got(keel_socket s, const char *want, uint16_t from_port) {
  char buf[64];
  keel_net_addr from;
  int64_t n = keel_net_udp_recv(s, buf, sizeof buf, LONG_MS, &from);
  return n == (int64_t)strlen(want) && memcmp(buf, want, (size_t)n) == 0 &&
         (from_port == 0 || from.port == from_port) &&
         strcmp(from.ip, "127.0.0.1") == 0;
}

/* ---- connected sockets and host names -------------------------------------
 */

static void connected(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  uint16_t pa, pb, pc;
  keel_socket a = open_at(NULL, 0, false, &pa);
  keel_socket b = open_at(NULL, 0, false, &pb);
  keel_socket c = open_at(NULL, 0, false, &pc);
  /* Not connected yet: no peer to send to. */
  CHECK(keel_net_udp_send(a, NULL, 0, "x", 1) == KEEL_ESTATE);
  /* A host name, resolved on the dirty pool. */
  CHECK(keel_net_udp_connect(a, "localhost", pb) == KEEL_OK);
  keel_net_addr peer;
  CHECK(keel_net_peername(a, &peer) == KEEL_OK);
  CHECK(peer.port == pb && strcmp(peer.ip, "127.0.0.1") == 0);
  CHECK(keel_net_udp_send(a, NULL, 0, "to b", 4) == KEEL_OK);
  CHECK(got(b, "to b", pa));
  CHECK(keel_net_udp_send(b, "localhost", pa, "from b", 6) == KEEL_OK);
  CHECK(got(a, "from b", pb));
  /* Another sender is dropped by the kernel: the datagram of b sent
   * after it is the first a receives. */
  CHECK(keel_net_udp_send(c, "127.0.0.1", pa, "stray", 5) == KEEL_OK);
  CHECK(keel_net_udp_send(b, "127.0.0.1", pa, "marker", 6) == KEEL_OK);
  CHECK(got(a, "marker", pb));
  char buf[16];
  CHECK(keel_net_udp_recv(a, buf, sizeof buf, 0, NULL) == KEEL_ETIMEDOUT);
  /* Connect again: now c is the peer. */
  CHECK(keel_net_udp_connect(a, "127.0.0.1", pc) == KEEL_OK);
  CHECK(keel_net_udp_send(a, NULL, 0, "to c", 4) == KEEL_OK);
  CHECK(got(c, "to c", pa));
  /* A peer that goes away: its port unreachable comes back. */
  keel_net_close(c);
  int rc = KEEL_OK;
  for (int i = 0; i < 100000 && rc == KEEL_OK; i++)
    rc = keel_net_udp_send(a, NULL, 0, "gone?", 5);
  CHECKV(rc == KEEL_ECONNREFUSED, rc);
  /* Host names that do not resolve or cannot be names. */
  CHECK(keel_net_udp_send(b, "no-such-host.invalid", pa, "x", 1) ==
        KEEL_ENOENT);
  CHECK(keel_net_udp_send(b, "bad name!", pa, "x", 1) == KEEL_EINVAL);
  CHECK(keel_net_udp_connect(b, NULL, pa) == KEEL_EINVAL);
  CHECK(keel_net_udp_connect(b, "::1", pa) == KEEL_EINVAL);
  keel_net_close(a);
  CHECK(keel_net_udp_connect(a, "127.0.0.1", pb) == KEEL_ECLOSED);
  keel_net_close(b);
  mark_done();
}

/* Only the owner connects; a TCP socket is refused. */
typedef struct owner_arg {
  keel_socket u;
  keel_term owner;
} owner_arg;

static void not_owner(keel_proc *self, void *arg) {
  (void)self;
  owner_arg *a = arg;
  int rc = keel_net_udp_connect(a->u, "127.0.0.1", 9);
  CHECKV(rc == KEEL_ENOTOWNER, rc);
  CHECK(keel_send(a->owner, keel_atom("checked")) == KEEL_OK);
  mark_done();
}

static bool is_checked(keel_term m, void *arg) {
  (void)arg;
  return m == keel_atom("checked");
}

static void owner_of(keel_proc *self, void *arg) {
  (void)arg;
  owner_arg a = {open_at(NULL, 0, false, NULL), keel_self(self)};
  keel_term pid;
  CHECK(keel_spawn_fiber(not_owner, &a, NULL, &pid) == KEEL_OK);
  keel_net_listen_opts lo = {.port = 0};
  keel_socket l;
  CHECK(keel_net_listen(&lo, &l) == KEEL_OK);
  CHECK(keel_net_udp_connect(l, "127.0.0.1", 9) == KEEL_EINVAL);
  CHECK(keel_net_udp_membership(l, true, "239.255.0.1", NULL) == KEEL_EINVAL);
  keel_net_close(l);
  /* u (owned by this fiber) stays open until not_owner has checked. */
  keel_term m;
  CHECK(keel_receive(self, is_checked, NULL, LONG_MS, &m) == KEEL_OK);
  keel_net_close(a.u);
  mark_done();
}

Test(udp_connect, connected_and_host_names) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    spawn_f(connected, NULL);
    stop_node(sched_counts[k], 1);
    start_node(sched_counts[k]);
    spawn_f(owner_of, NULL);
    stop_node(sched_counts[k], 2);
  }
}

/* A handler process cannot wait for a name. */
static keel_handler_status handler(keel_proc *self, keel_term msg,
                                   void *state) {
  (void)self;
  (void)msg;
  keel_socket u = *(keel_socket *)state;
  CHECK(keel_net_udp_send(u, "localhost", 9, "x", 1) == KEEL_ESTATE);
  CHECK(keel_net_udp_send(u, "127.0.0.1", 9, "x", 1) == KEEL_OK);
  mark_done();
  return KEEL_EXIT;
}

Test(udp_connect, handler_and_host_name) {
  start_node(2);
  static keel_socket u;
  u = open_at(NULL, 0, false, NULL);
  keel_term pid;
  cr_assert_eq(keel_spawn(handler, &u, NULL, &pid), KEEL_OK);
  cr_assert_eq(keel_send(pid, keel_atom("go")), KEEL_OK);
  bool ok = wait_done(1);
  keel_net_close(u);
  cr_assert(ok);
  stop_node(2, 1);
}

/* ---- multicast on the loopback interface -----------------------------------
 */

#define GROUP "239.255.77.77"

static void multicast(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  uint16_t gport, sport;
  /* The receiver is bound to the group address: it gets the group's
   * datagrams to its port, and the test listens on no other interface. */
  keel_socket r = open_at(GROUP, 0, false, &gport);
  keel_socket s = open_at(NULL, 0, false, &sport);
  int rc = keel_net_udp_membership(r, true, GROUP, "127.0.0.1");
  CHECKV(rc == KEEL_OK, rc); /* loopback multicast must work here */
  CHECK(keel_net_udp_membership(r, true, GROUP, "127.0.0.1") ==
        KEEL_EADDRINUSE);
  CHECK(keel_net_udp_set_multicast_if(s, "127.0.0.1") == KEEL_OK);
  CHECK(keel_net_udp_set_multicast_ttl(s, 3) == KEEL_OK);
  CHECK(keel_net_udp_set_multicast_loop(s, false) == KEEL_OK);
  CHECK(keel_net_udp_set_broadcast(s, true) == KEEL_OK);
  keel_net_opts o;
  CHECK(keel_net_getopts(s, &o) == KEEL_OK);
  CHECK(o.multicast_ttl == 3 && !o.multicast_loop && o.broadcast);
  CHECK(keel_net_udp_set_multicast_loop(s, true) == KEEL_OK);
  CHECK(keel_net_udp_set_broadcast(s, false) == KEEL_OK);
  CHECK(keel_net_getopts(s, &o) == KEEL_OK);
  CHECK(o.multicast_ttl == 3 && o.multicast_loop && !o.broadcast);
  CHECK(keel_net_udp_send(s, GROUP, gport, "mc1", 3) == KEEL_OK);
  CHECK(got(r, "mc1", sport));
  /* Dropped: nothing for the group reaches r; once joined again the
   * next datagram is the first it gets. */
  CHECK(keel_net_udp_membership(r, false, GROUP, "127.0.0.1") == KEEL_OK);
  CHECK(keel_net_udp_send(s, GROUP, gport, "mc2", 3) == KEEL_OK);
  CHECK(keel_net_udp_membership(r, true, GROUP, "127.0.0.1") == KEEL_OK);
  CHECK(keel_net_udp_send(s, GROUP, gport, "mc3", 3) == KEEL_OK);
  CHECK(got(r, "mc3", sport));
  char buf[8];
  CHECK(keel_net_udp_recv(r, buf, sizeof buf, 0, NULL) == KEEL_ETIMEDOUT);
  /* Misuse. */
  CHECK(keel_net_udp_membership(r, false, "239.255.77.78", "127.0.0.1") ==
        KEEL_ENOENT);
  CHECK(keel_net_udp_membership(r, true, "127.0.0.1", NULL) == KEEL_EINVAL);
  CHECK(keel_net_udp_membership(r, true, NULL, NULL) == KEEL_EINVAL);
  CHECK(keel_net_udp_membership(r, true, GROUP, "no address") == KEEL_EINVAL);
  CHECK(keel_net_udp_membership(r, true, "239.255.77.79", "192.0.2.77") ==
        KEEL_ENOENT);
  CHECK(keel_net_udp_set_multicast_ttl(s, 256) == KEEL_EINVAL);
  CHECK(keel_net_udp_set_multicast_ttl(s, -1) == KEEL_EINVAL);
  CHECK(keel_net_udp_set_multicast_if(s, "::1") == KEEL_EINVAL);
  keel_net_close(r);
  keel_net_close(s);
  CHECK(keel_net_udp_set_multicast_loop(s, true) == KEEL_ECLOSED);
  mark_done();
}

Test(udp_connect, multicast_on_loopback) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    spawn_f(multicast, NULL);
    stop_node(sched_counts[k], 1);
  }
}
