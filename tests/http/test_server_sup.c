/*
 * test_server_sup.c - the HTTP server as a supervisor's child: it serves
 * while its owner lives, stops with it, and comes back on restarts.
 */
#include "http_test.h" /* first: it defines _GNU_SOURCE */

#include <sched.h>
#include <time.h>

#include "keel/http.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "keel/supervisor.h"

static int hello(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)req;
  (void)arg;
  return keel_http_respond(resp, 200, "text/plain", "hello", 5);
}

static uint16_t free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* True if a GET / on port is answered 200 (false if refused). */
static bool serves(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {CLIENT_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* No asserting helpers: a stopping server may accept and then reset. */
  bool ok = false;
  static const char req[] = "GET / HTTP/1.1\r\n\r\n";
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)sizeof req - 1) {
    char buf[256];
    size_t got = 0;
    ssize_t n;
    while (got < 12 && (n = recv(fd, buf + got, sizeof buf - got, 0)) > 0)
      got += (size_t)n;
    ok = got >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0;
  }
  close(fd);
  return ok;
}

/* Waits (bounded, yielding) until serves(port) == want. */
static bool until_serving(uint16_t port, bool want) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (serves(port) != want) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > CLIENT_TIMEOUT_S)
      return false;
  }
  return true;
}

static keel_term child_pid(keel_term sup) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term kids, pid = KEEL_NONE;
  cr_assert_eq(keel_sup_which_children(sup, &h, &kids), KEEL_OK);
  cr_assert(keel_is_cons(kids));
  pid = keel_tuple_get(keel_hd(kids), 1);
  keel_heap_destroy(&h);
  return pid; /* a pid is an immediate: it outlives the heap */
}

static void supervised(unsigned nsched) {
  keel_node_opts no = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  keel_http_router *r = keel_http_router_new();
  cr_assert_eq(keel_http_route(r, "GET", "/", hello, NULL), KEEL_OK);
  keel_http_child_spec hs = {.opts = {.port = free_port()}, .router = r};
  keel_sup_child_spec ch = {.id = keel_atom("web"),
                            .start = keel_http_server_child_start,
                            .arg = &hs};
  keel_sup_spec spec = KEEL_SUP_SPEC_INIT;
  spec.children = &ch;
  spec.nchildren = 1;
  keel_term sup;
  cr_assert_eq(keel_sup_start_link(&spec, &sup), KEEL_OK);
  uint16_t port = hs.opts.port;
  cr_assert(serves(port));
  /* terminate_child stops the server: the port refuses at once. */
  cr_assert_eq(keel_sup_terminate_child(sup, keel_atom("web")), KEEL_OK);
  cr_assert(until_serving(port, false));
  cr_assert_eq(keel_sup_restart_child(sup, keel_atom("web"), NULL), KEEL_OK);
  cr_assert(serves(port), "restarted on the same port");
  /* Killing the owner: the supervisor restarts it, the server is back. */
  keel_term owner = child_pid(sup);
  cr_assert_eq(keel_exit(owner, keel_atom("kill")), KEEL_OK);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (child_pid(sup) == owner) { /* the supervisor restarts it */
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    cr_assert_leq(t.tv_sec - t0.tv_sec, CLIENT_TIMEOUT_S, "not restarted");
  }
  cr_assert(until_serving(port, true));
  cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
  cr_assert(until_serving(port, false));
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(r);
}

Test(http_server_sup, serves_stops_and_restarts_with_its_owner) {
  static const unsigned scheds[] = {1, 2, 8};
  for (size_t i = 0; i < 3; i++)
    supervised(scheds[i]);
}
