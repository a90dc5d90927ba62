/*
 * test_server.c - the HTTP/1.1 and WebSocket server end to end on
 * loopback, with a plain-socket client, on 1, 2 and 8 schedulers.
 */
#include "http_test.h" /* first: it defines _GNU_SOURCE */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include "http_test.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/runtime.h"
#include "keel/signals.h"

static keel_http_router *router;
static keel_http_server *srv;
static uint16_t port;

/* ---- routes
 * ------------------------------------------------------------------ */

static int hello(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)req;
  (void)arg;
  keel_http_set_header(resp, "X-Test", "1");
  return keel_http_respond(resp, 200, "text/plain", "hello", 5);
}

static int echo(const keel_http_request *req, keel_http_response *resp,
                void *arg) {
  (void)arg;
  return keel_http_respond(resp, 200, "application/octet-stream", req->body,
                           req->body_len);
}

static int item(const keel_http_request *req, keel_http_response *resp,
                void *arg) {
  (void)arg;
  size_t n;
  const char *id = keel_http_param_get(req, "id", &n);
  keel_heap h;
  keel_heap_init(&h);
  keel_term body = keel_map_from(&h, 1, (keel_term[]){keel_atom("id")},
                                 (keel_term[]){keel_binary(&h, id, n)});
  int rc = keel_http_respond_json(resp, 200, body);
  keel_heap_destroy(&h);
  return rc;
}

static int fails(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)req;
  (void)resp;
  (void)arg;
  return KEEL_EINVAL;
}

/* WebSocket route: echoes messages; an Erlang message {push, Bin} is sent
 * as text; terminate records the close code. */
static _Atomic int ws_inits, ws_terms, ws_last_code;
static _Atomic uint64_t ws_pid_bits;

static int ws_init(keel_ws *ws, const keel_http_request *req, void **state) {
  (void)req;
  *state = (void *)0x1;
  atomic_store(&ws_pid_bits, (uint64_t)keel_ws_pid(ws));
  atomic_fetch_add(&ws_inits, 1);
  return 0;
}

static int ws_msg(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                  size_t len, void *state) {
  cr_assert_eq(state, (void *)0x1);
  if (len == 5 && memcmp(data, "close", 5) == 0)
    return keel_ws_close(ws, 4000, "asked");
  return keel_ws_send(ws, kind, data, len);
}

static int ws_info(keel_ws *ws, keel_term msg, void *state) {
  (void)state;
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 2) {
    size_t n;
    const uint8_t *d = keel_binary_data(keel_tuple_get(msg, 1), &n);
    return keel_ws_send(ws, KEEL_WS_TEXT, d, n);
  }
  return 0;
}

static void ws_term(keel_ws *ws, uint16_t code, void *state) {
  (void)ws;
  cr_assert_eq(state, (void *)0x1);
  atomic_store(&ws_last_code, code);
  atomic_fetch_add(&ws_terms, 1);
}

static const keel_ws_handler ws_h = {ws_init, ws_msg, ws_info, ws_term};

static void start(unsigned nsched, const keel_http_server_opts *o) {
  keel_node_opts no = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  router = keel_http_router_new();
  cr_assert_eq(keel_http_route(router, "GET", "/", hello, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route(router, "POST", "/echo", echo, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route(router, "GET", "/items/:id", item, NULL),
               KEEL_OK);
  cr_assert_eq(keel_http_route(router, "GET", "/fail", fails, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route_ws(router, "/ws", &ws_h, NULL), KEEL_OK);
  keel_http_server_opts opts = {0};
  if (o != NULL)
    opts = *o;
  cr_assert_eq(keel_http_server_start(&opts, router, &srv), KEEL_OK);
  port = keel_http_server_port(srv);
  cr_assert_gt(port, 0);
  atomic_store(&ws_inits, 0);
  atomic_store(&ws_terms, 0);
  atomic_store(&ws_last_code, 0);
}

static void stop(void) {
  keel_http_server_stop(srv);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(router);
}

static const unsigned scheds[] = {1, 2, 8};

/* ---- HTTP
 * -------------------------------------------------------------------- */

static void keep_alive_and_pipelining(unsigned nsched) {
  start(nsched, NULL);
  int fd = cli_connect(port);
  cli_resp r;
  for (int i = 0; i < 3; i++) {
    cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(cli_response(fd, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 5);
    cr_assert_arr_eq(r.body, "hello", 5);
    cr_assert_not_null(strstr(r.head, "\r\nX-Test: 1\r\n"));
  }
  /* Three requests in one write: three answers, in order. */
  cli_sends(fd, "GET /items/1 HTTP/1.1\r\n\r\nGET /items/22 HTTP/1.1\r\n\r\n"
                "GET /items/333 HTTP/1.1\r\n\r\n");
  const char *want[] = {"{\"id\":\"1\"}", "{\"id\":\"22\"}",
                        "{\"id\":\"333\"}"};
  for (int i = 0; i < 3; i++) {
    cr_assert(cli_response(fd, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.head, "application/json"));
    cr_assert_eq(r.body_len, strlen(want[i]));
    cr_assert_arr_eq(r.body, want[i], r.body_len);
  }
  /* HTTP/1.0 closes after the answer. */
  cli_sends(fd, "GET / HTTP/1.0\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_not_null(strstr(r.head, "Connection: close"));
  cr_assert(cli_closed(fd));
  close(fd);
  stop();
}

Test(http_server, keep_alive_and_pipelining) {
  for (size_t i = 0; i < 3; i++)
    keep_alive_and_pipelining(scheds[i]);
}

Test(http_server, statuses_bodies_and_head) {
  start(2, NULL);
  int fd = cli_connect(port);
  cli_resp r;
  cli_sends(fd, "GET /nope HTTP/1.1\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 404);
  cli_sends(fd, "DELETE / HTTP/1.1\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 405);
  cli_sends(fd, "GET /fail HTTP/1.1\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 500);
  cli_sends(fd, "GET /ws HTTP/1.1\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 426, "a WebSocket route without the upgrade");
  close(fd);

  fd = cli_connect(port);
  cli_sends(fd, "HEAD / HTTP/1.1\r\n\r\n");
  char head[1024];
  size_t n = 0;
  while (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0)
    cr_assert_eq(cli_read(fd, head + n++, 1), 1);
  head[n] = '\0';
  cr_assert_not_null(strstr(head, "Content-Length: 5\r\n"));
  /* No body follows a HEAD answer: the next bytes are the next answer. */
  cli_sends(fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, 5);
  cr_assert_arr_eq(r.body, "abcde", 5);
  close(fd);
  stop();
}

/* Sends `req`, expects `status` with Connection: close, then EOF. */
static void refused_with(const char *req, int status) {
  int fd = cli_connect(port);
  cli_sends(fd, req);
  cli_resp r;
  cr_assert(cli_response(fd, &r), "no answer to %.40s", req);
  cr_assert_eq(r.status, status, "%.40s: %d", req, r.status);
  cr_assert_not_null(strstr(r.head, "Connection: close"));
  cr_assert(cli_closed(fd));
  close(fd);
}

Test(http_server, hostile_requests) {
  keel_http_server_opts o = {.max_head_bytes = 1024, .max_body_bytes = 100};
  start(2, &o);
  char big[4096];
  snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-Big: %02000d\r\n\r\n", 0);
  refused_with(big, 431);
  snprintf(big, sizeof big, "GET /%02000d HTTP/1.1\r\n\r\n", 0);
  refused_with(big, 414);
  refused_with("POST /echo HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413);
  refused_with("GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400);
  refused_with("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400);
  /* The server is unharmed. */
  int fd = cli_connect(port);
  cli_sends(fd, "GET / HTTP/1.1\r\n\r\n");
  cli_resp r;
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  close(fd);
  stop();
}

Test(http_server, slow_heads_and_idle_connections_time_out) {
  keel_http_server_opts o = {.head_timeout_ms = 200, .idle_timeout_ms = 300};
  start(2, &o);
  /* Slowloris: a head that never ends gets 408, however it trickles. */
  int fd = cli_connect(port);
  cli_sends(fd, "GET / HTTP/1.1\r\nX-A: 1\r\n");
  cli_resp r;
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 408);
  cr_assert(cli_closed(fd));
  close(fd);
  /* An idle keep-alive connection is closed without an answer. */
  fd = cli_connect(port);
  cli_sends(fd, "GET / HTTP/1.1\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert(cli_closed(fd));
  close(fd);
  stop();
}

/* Many clients at once, each with several requests on its connection. */
typedef struct client_arg {
  int nreq;
  int ok;
} client_arg;

static void *client_thread(void *p) {
  client_arg *a = p;
  int fd = cli_connect(port);
  cli_resp *r = malloc(sizeof *r);
  for (int i = 0; i < a->nreq; i++) {
    cli_sends(fd, "GET / HTTP/1.1\r\n\r\n");
    if (cli_response(fd, r) && r->status == 200 && r->body_len == 5)
      a->ok++;
  }
  free(r);
  close(fd);
  return NULL;
}

Test(http_server, concurrent_clients) {
  for (size_t k = 0; k < 3; k++) {
    start(scheds[k], NULL);
    enum { NCLI = 32, NREQ = 50 };
    pthread_t t[NCLI];
    client_arg a[NCLI];
    for (int i = 0; i < NCLI; i++) {
      a[i] = (client_arg){NREQ, 0};
      cr_assert_eq(pthread_create(&t[i], NULL, client_thread, &a[i]), 0);
    }
    for (int i = 0; i < NCLI; i++) {
      pthread_join(t[i], NULL);
      cr_assert_eq(a[i].ok, NREQ, "client %d: %d of %d", i, a[i].ok, NREQ);
    }
    stop();
  }
}

Test(http_server, curl_is_served) {
  start(2, NULL);
  char cmd[256];
  snprintf(cmd, sizeof cmd,
           "curl -s -m 20 -w ' %%{http_code}' http://127.0.0.1:%u/items/42",
           port);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  char out[256] = {0};
  size_t n = fread(out, 1, sizeof out - 1, p);
  int st = pclose(p);
  cr_assert_eq(st, 0, "curl failed");
  cr_assert_gt(n, 0);
  cr_assert_str_eq(out, "{\"id\":\"42\"} 200");
  stop();
}

/* ---- WebSocket
 * ---------------------------------------------------------------- */

/* Waits (bounded, yielding) until n terminate callbacks ran. */
static bool terms_reached(int n) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&ws_terms) < n) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > CLIENT_TIMEOUT_S)
      return false;
  }
  return true;
}

static void ws_echo_and_close(unsigned nsched) {
  start(nsched, NULL);
  int fd = ws_connect(port, "/ws");
  ws_frame_in *f = malloc(sizeof *f);
  ws_send(fd, KEEL__WS_TEXT, true, "hi", 2);
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_TEXT);
  cr_assert_eq(f->len, 2);
  cr_assert_arr_eq(f->data, "hi", 2);
  /* Fragmented binary with a ping in the middle: pong first, then the
   * reassembled message. */
  char big[70000 - 100];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (char)(i * 7);
  ws_send(fd, KEEL__WS_BINARY, false, big, 1000);
  ws_send(fd, KEEL__WS_PING, true, "png", 3);
  ws_send(fd, KEEL__WS_CONT, true, big + 1000, sizeof big - 1000);
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_PONG);
  cr_assert_arr_eq(f->data, "png", 3);
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_BINARY);
  cr_assert_eq(f->len, sizeof big);
  cr_assert_arr_eq(f->data, big, sizeof big);
  /* An Erlang message to the connection process is pushed out. */
  keel_heap h;
  keel_heap_init(&h);
  keel_term pid = (keel_term)atomic_load(&ws_pid_bits);
  keel_term msg =
      keel_tuple(&h, 2, keel_atom("push"), keel_binary(&h, "tick", 4));
  cr_assert_eq(keel_send(pid, msg), KEEL_OK);
  keel_heap_destroy(&h);
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_TEXT);
  cr_assert_arr_eq(f->data, "tick", 4);
  /* Client-initiated close: echoed, terminate sees the code. */
  uint8_t cl[2] = {0x03, 0xe8};
  ws_send(fd, KEEL__WS_CLOSE, true, cl, 2);
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_CLOSE);
  cr_assert_eq(f->code, 1000);
  cr_assert(cli_closed(fd));
  close(fd);
  cr_assert(terms_reached(1));
  cr_assert_eq(atomic_load(&ws_last_code), 1000);
  free(f);
  stop();
}

Test(http_server, websocket_echo_push_and_close) {
  for (size_t i = 0; i < 3; i++)
    ws_echo_and_close(scheds[i]);
}

/* Expects the server to close with `code` after `bytes`. */
static void ws_violation(const void *bytes, size_t n, uint16_t code) {
  int fd = ws_connect(port, "/ws");
  cli_send(fd, bytes, n);
  ws_frame_in *f = malloc(sizeof *f);
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_CLOSE);
  cr_assert_eq(f->code, code, "code %u, want %u", f->code, code);
  cr_assert(cli_closed(fd));
  free(f);
  close(fd);
}

Test(http_server, websocket_violations_and_server_close) {
  keel_http_server_opts o = {.max_ws_message = 1000};
  start(2, &o);
  uint8_t unmasked[] = {0x81, 0x02, 'h', 'i'};
  ws_violation(unmasked, sizeof unmasked, 1002);
  keel_buf b;
  keel_buf_init(&b);
  keel__ws_encode(&b, KEEL__WS_TEXT, true, "\xc0\xaf", 2, CLI_MASK);
  ws_violation(b.data, b.len, 1007);
  b.len = 0;
  char big[1001] = {0};
  keel__ws_encode(&b, KEEL__WS_BINARY, true, big, sizeof big, CLI_MASK);
  ws_violation(b.data, b.len, 1009);
  keel_buf_free(&b);
  cr_assert(terms_reached(3));
  /* The handler closes: the client answers, terminate sees the code. */
  int fd = ws_connect(port, "/ws");
  ws_send(fd, KEEL__WS_TEXT, true, "close", 5);
  ws_frame_in *f = malloc(sizeof *f);
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_CLOSE);
  cr_assert_eq(f->code, 4000);
  cr_assert_eq(f->len, 2 + 5);
  uint8_t cl[2] = {0x0f, 0xa0};
  ws_send(fd, KEEL__WS_CLOSE, true, cl, 2);
  cr_assert(cli_closed(fd));
  close(fd);
  cr_assert(terms_reached(4));
  cr_assert_eq(atomic_load(&ws_last_code), 4000);
  /* Server stop: open WebSockets get 1001 going away. */
  fd = ws_connect(port, "/ws");
  ws_send(fd, KEEL__WS_TEXT, true, "x", 1);
  cr_assert(ws_recv(fd, f)); /* the connection is up */
  keel_http_server_stop(srv);
  srv = NULL;
  cr_assert(ws_recv(fd, f));
  cr_assert_eq(f->op, KEEL__WS_CLOSE);
  cr_assert_eq(f->code, 1001);
  cr_assert(cli_closed(fd));
  close(fd);
  cr_assert_eq(atomic_load(&ws_terms), 5);
  free(f);
  stop();
}

/* ---- static files
 * -------------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

static int get_status(const char *path, cli_resp *r) {
  int fd = cli_connect(port);
  char req[512];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\n\r\n", path);
  cli_sends(fd, req);
  cr_assert(cli_response(fd, r), "no answer for %s", path);
  close(fd);
  return r->status;
}

Test(http_server, static_files_stay_inside_their_directory) {
  char root[] = "/tmp/keel-static-XXXXXX";
  cr_assert_not_null(mkdtemp(root));
  char path[512], www[128];
  snprintf(www, sizeof www, "%s/www", root);
  cr_assert_eq(mkdir(www, 0755), 0);
  snprintf(path, sizeof path, "%s/sub", www);
  cr_assert_eq(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/index.html", www);
  write_file(path, "<h1>hi</h1>");
  snprintf(path, sizeof path, "%s/sub/a b.css", www);
  write_file(path, "p{}");
  snprintf(path, sizeof path, "%s/secret", root);
  write_file(path, "do not serve");

  keel_node_opts no = {.schedulers = 2};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  router = keel_http_router_new();
  cr_assert_eq(keel_http_route_static(router, "/static/", www), KEEL_OK);
  cr_assert_eq(keel_http_route_static(router, "nope", www), KEEL_EINVAL);
  cr_assert_eq(keel_http_server_start(NULL, router, &srv), KEEL_OK);
  port = keel_http_server_port(srv);
  cli_resp *r = malloc(sizeof *r);
  cr_assert_eq(get_status("/static/index.html", r), 200);
  cr_assert_not_null(strstr(r->head, "text/html"));
  cr_assert_eq(r->body_len, 11);
  cr_assert_arr_eq(r->body, "<h1>hi</h1>", 11);
  cr_assert_eq(get_status("/static/sub/a%20b.css", r), 200);
  cr_assert_not_null(strstr(r->head, "text/css"));
  cr_assert_eq(get_status("/static/../secret", r), 400);
  cr_assert_eq(get_status("/static/%2e%2e/secret", r), 400);
  cr_assert_eq(get_status("/static/sub/%2E%2E/%2E%2E/secret", r), 400);
  cr_assert_eq(get_status("/static/a%00b", r), 400);
  cr_assert_eq(get_status("/static/a%zz", r), 400);
  cr_assert_eq(get_status("/static/missing.html", r), 404);
  cr_assert_eq(get_status("/static/sub", r), 404);
  cr_assert_eq(get_status("/static/", r), 404);
  free(r);
  stop();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  cr_assert_eq(system(cmd), 0);
}
