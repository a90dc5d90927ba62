/*
 * test_tcp_hostname.c - connecting to a host name ("localhost", resolved
 * off the schedulers) from fibers and from a thread, the refusal on every
 * address of a name, and a handler process's KEEL_ESTATE. 1, 2 and 8
 * schedulers.
 */
#include "net/net_test.h"

static keel_socket listen_s;
static uint16_t port;

enum { CLIENTS = 4 };

static void name_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket c = KEEL_SOCKET_NONE;
  int rc = keel_net_connect("localhost", port, LONG_MS, &c);
  CHECKV(rc == KEEL_OK, rc);
  if (rc == KEEL_OK) {
    keel_net_addr a;
    CHECK(keel_net_peername(c, &a) == KEEL_OK && a.port == port &&
          strcmp(a.ip, "127.0.0.1") == 0);
    CHECK(keel_net_send(c, "hi", 2) == KEEL_OK);
    char buf[4];
    int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
    CHECKV(n == 2 && memcmp(buf, "ok", 2) == 0, n);
    keel_net_close(c);
  }
  mark_done();
}

static void name_server(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  for (int i = 0; i < CLIENTS; i++) {
    keel_socket c;
    int rc = keel_net_accept(listen_s, LONG_MS, &c);
    CHECKV(rc == KEEL_OK, rc);
    if (rc != KEEL_OK)
      break;
    char buf[4];
    int64_t n = keel_net_recv(c, buf, sizeof buf, LONG_MS);
    CHECKV(n == 2, n);
    CHECK(keel_net_send(c, "ok", 2) == KEEL_OK);
    keel_net_close(c);
  }
  mark_done();
}

/* A port nobody listens on: refused on every address of the name. */
static void refused_client(keel_proc *self, void *arg) {
  (void)self;
  uint16_t closed_port = *(uint16_t *)arg;
  keel_socket c;
  int rc = keel_net_connect("localhost", closed_port, LONG_MS, &c);
  CHECKV(rc == KEEL_ECONNREFUSED, rc);
  CHECK(keel_net_connect("", port, LONG_MS, &c) == KEEL_EINVAL);
  mark_done();
}

static keel_handler_status handler_try(keel_proc *self, keel_term msg,
                                       void *state) {
  (void)self;
  (void)msg;
  (void)state;
  keel_socket c;
  CHECK(keel_net_connect("localhost", port, 0, &c) == KEEL_ESTATE);
  mark_done();
  return KEEL_EXIT;
}

Test(tcp_hostname, localhost_fibers_thread_refused_handler) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k]);
    keel_net_listen_opts lo = {.port = 0};
    cr_assert_eq(keel_net_listen(&lo, &listen_s), KEEL_OK);
    port = port_of(listen_s);
    /* A port freed at once: nothing listens there afterwards. */
    keel_socket tmp;
    cr_assert_eq(keel_net_listen(&lo, &tmp), KEEL_OK);
    static uint16_t closed_port;
    closed_port = port_of(tmp);
    keel_net_close(tmp);
    spawn_f(name_server, NULL);
    for (int i = 0; i < CLIENTS - 1; i++)
      spawn_f(name_client, NULL);
    spawn_f(refused_client, &closed_port);
    keel_term h;
    cr_assert_eq(keel_spawn(handler_try, NULL, NULL, &h), KEEL_OK);
    keel_send(h, keel_atom("go"));
    /* The thread resolves by itself. */
    keel_socket c;
    cr_assert_eq(keel_net_connect("localhost", port, LONG_MS, &c), KEEL_OK);
    cr_assert_eq(keel_net_send(c, "hi", 2), KEEL_OK);
    char buf[4];
    /* A thread made it: no owner, the thread may recv. */
    cr_assert_eq(keel_net_recv(c, buf, sizeof buf, LONG_MS), 2);
    keel_net_close(c);
    cr_assert(wait_done(CLIENTS + 2));
    keel_net_close(listen_s);
    stop_node(sched_counts[k], CLIENTS + 2);
  }
}
