/*
 * test_https.c - the HTTP server over TLS (keel_http_server_opts.tls):
 * curl with --cacert, Keel's own TLS client for HTTPS and a WSS echo (1, 2
 * and 8 schedulers), WSS fastlane broadcasts, plain bytes and silent
 * clients on the HTTPS port.
 * The PKI is made at test time.
 */
#include "http_test.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "http/ws_frame.h"
#include "keel/http.h"
#include "keel/pubsub.h"
#include "keel/runtime.h"
#include "keel/tls.h"
#include "net/tls_test.h"

static test_pki pki;
static keel_tls_ctx *srv_ctx, *cli_ctx;
static keel_http_router *router;
static keel_http_server *srv;
static uint16_t port;

static int hello(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)req;
  (void)arg;
  return keel_http_respond(resp, 200, "text/plain", "hello", 5);
}

static int ws_msg(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                  size_t len, void *state) {
  (void)state;
  return keel_ws_send(ws, kind, data, len);
}

static const keel_ws_handler ws_h = {NULL, ws_msg, NULL, NULL};

/* /fl: subscribes through the fastlane to "live" of ps. */
static keel_pubsub ps;
static int fl_init(keel_ws *ws, const keel_http_request *req, void **state) {
  (void)req;
  (void)state;
  return keel_ws_fastlane_subscribe(ws, ps, keel_atom("live"), KEEL_WS_TEXT);
}
static const keel_ws_handler fl_h = {fl_init, NULL, NULL, NULL};

static void start(unsigned nsched, uint32_t head_timeout_ms) {
  cr_assert(pki_make(&pki), "test PKI");
  keel_node_opts no = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  static const char *const alpn[] = {"http/1.1"};
  keel_tls_ctx_opts so = {.server = true,
                          .cert_pem = pki.cert_pem,
                          .key_pem = pki.key_pem,
                          .alpn = alpn,
                          .alpn_count = 1};
  cr_assert_eq(keel_tls_ctx_create(&so, &srv_ctx), KEEL_OK);
  keel_tls_ctx_opts co = {.ca_file = pki.ca_file};
  cr_assert_eq(keel_tls_ctx_create(&co, &cli_ctx), KEEL_OK);
  router = keel_http_router_new();
  cr_assert_eq(keel_http_route(router, "GET", "/", hello, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route_ws(router, "/ws", &ws_h, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route_ws(router, "/fl", &fl_h, NULL), KEEL_OK);
  cr_assert_eq(keel_pubsub_start(NULL, &ps), KEEL_OK);
  keel_http_server_opts o = {.tls = srv_ctx,
                             .head_timeout_ms = head_timeout_ms};
  cr_assert_eq(keel_http_server_start(&o, router, &srv), KEEL_OK);
  port = keel_http_server_port(srv);
  cr_assert_gt(port, 0);
}

static void stop(void) {
  keel_http_server_stop(srv);
  cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(router);
  keel_tls_ctx_destroy(srv_ctx);
  keel_tls_ctx_destroy(cli_ctx);
  pki_remove(&pki);
}

static int run(const char *cmd, char *out, size_t cap) {
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  return pclose(p);
}

Test(https, curl_is_served) {
  start(2, 0);
  char cmd[1024], out[256];
  snprintf(cmd, sizeof cmd,
           "curl -s -m 20 --cacert %s -w ' %%{http_code} %%{http_version}' "
           "https://127.0.0.1:%u/",
           pki.ca_file, port);
  cr_assert_eq(run(cmd, out, sizeof out), 0, "curl failed: %s", out);
  cr_assert_str_eq(out, "hello 200 1.1");
  /* Without the CA, curl refuses the server (exit 60: peer certificate
   * cannot be authenticated). */
  snprintf(cmd, sizeof cmd, "curl -s -m 20 -o /dev/null https://127.0.0.1:%u/",
           port);
  int st = run(cmd, out, sizeof out);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 60, "curl status %d", st);
  stop();
}

/* ---- Keel's client: HTTPS and WSS ------------------------------------------
 */

static _Atomic int fails;
static int finished; /* under mu */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static char fail_msg[256];

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c) && atomic_fetch_add(&fails, 1) == 0)                              \
      snprintf(fail_msg, sizeof fail_msg, "line %d: %s", __LINE__, #c);        \
  } while (0)

/* Reads until buf holds `until` (a text) or n bytes; returns the length. */
static size_t read_until(keel_socket s, char *buf, size_t cap,
                         const char *until, size_t n) {
  size_t have = 0;
  buf[0] = '\0';
  while (have < cap - 1 && (until == NULL || strstr(buf, until) == NULL) &&
         (until != NULL || have < n)) {
    int64_t k = keel_net_recv(s, buf + have, cap - 1 - have, 20000);
    if (k <= 0)
      break;
    have += (size_t)k;
    buf[have] = '\0';
  }
  return have;
}

static void client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  char buf[2048];
  CHECK(keel_tls_connect("127.0.0.1", port, cli_ctx, NULL, 20000, &s) ==
        KEEL_OK);
  for (int i = 0; i < 3; i++) { /* keep-alive */
    const char *req = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    CHECK(keel_net_send(s, req, strlen(req)) == KEEL_OK);
    read_until(s, buf, sizeof buf, "\r\n\r\nhello", 0);
    CHECK(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 &&
          strstr(buf, "\r\n\r\nhello") != NULL);
  }
  keel_net_close(s);

  CHECK(keel_tls_connect("127.0.0.1", port, cli_ctx, NULL, 20000, &s) ==
        KEEL_OK);
  const char *up = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n";
  CHECK(keel_net_send(s, up, strlen(up)) == KEEL_OK);
  size_t n = read_until(s, buf, sizeof buf, "\r\n\r\n", 0);
  CHECK(strncmp(buf, "HTTP/1.1 101 ", 13) == 0 &&
        strstr(buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL);
  size_t head = (size_t)(strstr(buf, "\r\n\r\n") + 4 - buf);
  CHECK(n == head); /* nothing before our frame */
  keel_buf b;
  keel_buf_init(&b);
  CHECK(keel__ws_encode(&b, KEEL__WS_TEXT, true, "hi tls", 6, CLI_MASK) ==
        KEEL_OK);
  CHECK(keel_net_send(s, b.data, b.len) == KEEL_OK);
  keel_buf_free(&b);
  n = read_until(s, buf, sizeof buf, NULL, 8);
  CHECK(n == 8 && (uint8_t)buf[0] == 0x81 && buf[1] == 6 &&
        memcmp(buf + 2, "hi tls", 6) == 0);
  keel_net_close(s);
  pthread_mutex_lock(&mu);
  finished++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* Waits (bounded) until n clients finished; returns how many did. */
static int wait_clients(int n) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 60;
  pthread_mutex_lock(&mu);
  while (finished < n && pthread_cond_timedwait(&cv, &mu, &dl) == 0)
    ;
  int got = finished;
  pthread_mutex_unlock(&mu);
  return got;
}

Test(https, keel_client_https_and_wss, .timeout = 120) {
  static const unsigned scheds[] = {1, 2, 8};
  for (unsigned i = 0; i < 3; i++) {
    start(scheds[i], 0);
    atomic_store(&fails, 0);
    pthread_mutex_lock(&mu);
    finished = 0;
    pthread_mutex_unlock(&mu);
    keel_spawn_opts so = {.stack_size = 256 * 1024};
    for (int k = 0; k < 4; k++)
      cr_assert_eq(keel_spawn_fiber(client, NULL, &so, NULL), KEEL_OK);
    cr_assert_eq(wait_clients(4), 4, "%u schedulers", scheds[i]);
    cr_assert_eq(atomic_load(&fails), 0, "%u schedulers: %s", scheds[i],
                 fail_msg);
    stop();
  }
}

/* A WSS client that broadcasts to its own connection's topic through
 * the fastlane: the frames come encrypted, whole and in order. */
static void fl_client(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
  keel_socket s;
  char buf[2048];
  CHECK(keel_tls_connect("127.0.0.1", port, cli_ctx, NULL, 20000, &s) ==
        KEEL_OK);
  const char *up = "GET /fl HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n";
  CHECK(keel_net_send(s, up, strlen(up)) == KEEL_OK);
  size_t n = read_until(s, buf, sizeof buf, "\r\n\r\n", 0);
  CHECK(strncmp(buf, "HTTP/1.1 101 ", 13) == 0);
  CHECK(n == (size_t)(strstr(buf, "\r\n\r\n") + 4 - buf));
  keel_heap h;
  keel_heap_init(&h);
  for (int k = 0; k < 5; k++) {
    char t[8];
    snprintf(t, sizeof t, "wss-%d", k);
    CHECK(keel_pubsub_local_broadcast(ps, keel_atom("live"),
                                      keel_binary(&h, t, 5), NULL) == 1);
  }
  keel_heap_destroy(&h);
  n = read_until(s, buf, sizeof buf, NULL, 5 * 7);
  CHECK(n == 5 * 7);
  for (int k = 0; k < 5 && n == 5 * 7; k++) {
    char t[8];
    snprintf(t, sizeof t, "wss-%d", k);
    CHECK((uint8_t)buf[7 * k] == 0x81 && buf[7 * k + 1] == 5 &&
          memcmp(buf + 7 * k + 2, t, 5) == 0);
  }
  keel_net_close(s);
  pthread_mutex_lock(&mu);
  finished++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

Test(https, wss_fastlane_broadcasts, .timeout = 120) {
  static const unsigned scheds[] = {1, 2, 8};
  for (unsigned i = 0; i < 3; i++) {
    start(scheds[i], 0);
    atomic_store(&fails, 0);
    pthread_mutex_lock(&mu);
    finished = 0;
    pthread_mutex_unlock(&mu);
    keel_spawn_opts so = {.stack_size = 256 * 1024};
    cr_assert_eq(keel_spawn_fiber(fl_client, NULL, &so, NULL), KEEL_OK);
    cr_assert_eq(wait_clients(1), 1, "%u schedulers", scheds[i]);
    cr_assert_eq(atomic_load(&fails), 0, "%u schedulers: %s", scheds[i],
                 fail_msg);
    stop();
  }
}

/* ---- hostile clients
 * ---------------------------------------------------------
 */

Test(https, plain_and_silent_clients_are_closed) {
  start(2, 300);
  /* Plain HTTP on the HTTPS port: an alert at most, then the close. */
  int fd = cli_connect(port);
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  char buf[512];
  while (cli_read(fd, buf, sizeof buf) == sizeof buf)
    ;
  cr_assert(cli_closed(fd));
  close(fd);
  /* A client that never sends its ClientHello: closed at the head
   * timeout. */
  fd = cli_connect(port);
  cr_assert(cli_closed(fd));
  close(fd);
  /* The server still serves. */
  char cmd[1024], out[64];
  snprintf(cmd, sizeof cmd,
           "curl -s -m 20 --cacert %s -w ' %%{http_code}' "
           "https://localhost:%u/",
           pki.ca_file, port);
  cr_assert_eq(run(cmd, out, sizeof out), 0);
  cr_assert_str_eq(out, "hello 200");
  stop();
}
