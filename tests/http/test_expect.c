/*
 * test_expect.c - Expect: 100-continue in the HTTP/1.1 server (RFC 9110
 * 10.1.1): the 100 before the body of an ordinary route, on a streaming
 * route only at the handler's first read, none when the handler answers
 * first (the connection then closes), 417 for other expectations, 413 and
 * 404 without a 100, HTTP/1.0 expectations ignored; a raw socket client
 * on 1, 2 and 8 schedulers, and curl waiting for the 100.
 */
#include "http/http_test.h"

#include <stdatomic.h>
#include <stdint.h>

#include "keel/http.h"
#include "keel/runtime.h"

static keel_http_router *router;
static keel_http_server *srv;
static uint16_t port;
static _Atomic int sum_calls; /* calls of the streaming handler */

enum { MAX_BODY = 64 * 1024 };

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

static int echo(const keel_http_request *req, keel_http_response *resp,
                void *arg) {
  (void)arg;
  return keel_http_respond(resp, 200, "application/octet-stream", req->body,
                           req->body_len);
}

/* Streams the body and answers with its length and byte sum. */
static int sum_body(const keel_http_request *req, keel_http_response *resp,
                    void *arg) {
  (void)arg;
  atomic_fetch_add(&sum_calls, 1);
  uint64_t *st = *req->state;
  if (st == NULL) {
    st = calloc(2, sizeof *st);
    if (st == NULL)
      return KEEL_ENOMEM;
    *req->state = st;
  }
  for (;;) {
    const uint8_t *d;
    size_t n;
    int rc = keel_http_read_body(req, NULL, &d, &n);
    if (rc < 0) {
      free(st);
      *req->state = NULL;
      return rc == KEEL_ECLOSED ? KEEL_OK : rc;
    }
    st[0] += n;
    for (size_t i = 0; i < n; i++)
      st[1] += d[i];
    if (rc == KEEL_HTTP_BODY_WAIT)
      return KEEL_HTTP_SUSPEND;
    if (rc == KEEL_HTTP_BODY_DONE) {
      char out[64];
      int len = snprintf(out, sizeof out, "%llu %llu",
                         (unsigned long long)st[0], (unsigned long long)st[1]);
      free(st);
      *req->state = NULL;
      return keel_http_respond(resp, 200, "text/plain", out, (size_t)len);
    }
  }
}

static int early(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)req;
  (void)arg;
  return keel_http_respond(resp, 201, "text/plain", "early", 5);
}

static int hello(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)req;
  (void)arg;
  return keel_http_respond(resp, 200, "text/plain", "hello", 5);
}

static void start(unsigned nsched) {
  keel_node_opts no = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  router = keel_http_router_new();
  cr_assert_eq(keel_http_route(router, "POST", "/echo", echo, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route(router, "GET", "/", hello, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route_stream(router, "POST", "/sum", sum_body, NULL),
               KEEL_OK);
  cr_assert_eq(keel_http_route_stream(router, "POST", "/early", early, NULL),
               KEEL_OK);
  keel_http_server_opts opts = {.max_body_bytes = MAX_BODY,
                                .head_timeout_ms = 20000};
  cr_assert_eq(keel_http_server_start(&opts, router, &srv), KEEL_OK);
  port = keel_http_server_port(srv);
  atomic_store(&sum_calls, 0);
}

static void stop(void) {
  keel_http_server_stop(srv);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(router);
}

/* Reads exactly the 100 Continue interim response. */
static void expect_continue(int fd) {
  char buf[sizeof CONTINUE];
  cr_assert_eq(cli_read(fd, buf, sizeof CONTINUE - 1), sizeof CONTINUE - 1);
  cr_assert(memcmp(buf, CONTINUE, sizeof CONTINUE - 1) == 0, "%.*s",
            (int)sizeof CONTINUE - 1, buf);
}

static const unsigned scheds[] = {1, 2, 8};

/* ---- ordinary routes ----------------------------------------------------- */

static void ordinary(unsigned nsched) {
  start(nsched);
  cli_resp r;
  int fd = cli_connect(port);
  /* Content-Length: the 100 first, then the answer to the body sent. */
  cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Content-Length: 5\r\n\r\n");
  expect_continue(fd);
  cli_sends(fd, "abcde");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200, "%s", r.head);
  cr_assert_eq(r.body_len, 5);
  cr_assert(memcmp(r.body, "abcde", 5) == 0);
  cr_assert_null(strcasestr(r.head, "Connection: close"));
  /* Chunked, the token in another case and with blanks: the same. */
  cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nexpect:  100-Continue \r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
  expect_continue(fd);
  cli_sends(fd, "3\r\nxyz\r\n0\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, 3);
  cr_assert(memcmp(r.body, "xyz", 3) == 0);
  /* No body: nothing to ask for, no 100. */
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  /* HTTP/1.0: the expectation is ignored (no 100, no 417). */
  cli_sends(fd, "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\n"
                "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200, "%s", r.head);
  cr_assert_eq(r.body_len, 2);
  cli_sends(fd, "POST /echo HTTP/1.0\r\nExpect: fancy\r\n"
                "Content-Length: 2\r\n\r\nok");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200, "%s", r.head);
  cr_assert(cli_closed(fd)); /* HTTP/1.0 without keep-alive */
  close(fd);
  /* The body sent at once, without waiting: answered (a 100 is optional
   * then, and only when the body came in a later read). */
  fd = cli_connect(port);
  cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Content-Length: 4\r\n\r\nwxyz");
  cr_assert(cli_response(fd, &r));
  if (r.status == 100)
    cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, 4);
  cr_assert(memcmp(r.body, "wxyz", 4) == 0);
  close(fd);
  stop();
}

Test(http_expect, ordinary_route_gets_100_before_body) {
  for (size_t i = 0; i < 3; i++)
    ordinary(scheds[i]);
}

/* ---- refusals: 417, 413, 404 without a 100 --------------------------------
 */

static void refused(unsigned nsched) {
  start(nsched);
  cli_resp r;
  int fd = cli_connect(port);
  cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n"
                "Content-Length: 5\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 417, "%s", r.head);
  cr_assert_not_null(strcasestr(r.head, "Connection: close"));
  cr_assert(cli_closed(fd));
  close(fd);
  /* Unknown even without a body, and next to a 100-continue. */
  fd = cli_connect(port);
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Expect: x\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 417, "%s", r.head);
  cr_assert(cli_closed(fd));
  close(fd);
  /* Over the body limit: 413 at once, no 100. */
  fd = cli_connect(port);
  char head[160];
  snprintf(head, sizeof head,
           "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
           "Content-Length: %d\r\n\r\n",
           MAX_BODY + 1);
  cli_sends(fd, head);
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 413, "%s", r.head);
  cr_assert(cli_closed(fd));
  close(fd);
  /* No such route: 404 at once, no 100, and the connection closes. */
  fd = cli_connect(port);
  cli_sends(fd, "POST /nowhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Content-Length: 5\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 404, "%s", r.head);
  cr_assert(cli_closed(fd));
  close(fd);
  stop();
}

Test(http_expect, refusals_come_without_100) {
  for (size_t i = 0; i < 3; i++)
    refused(scheds[i]);
}

/* ---- streaming routes ------------------------------------------------------
 */

static void streaming(unsigned nsched) {
  start(nsched);
  cli_resp r;
  int fd = cli_connect(port);
  cli_sends(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Content-Length: 3000\r\n\r\n");
  expect_continue(fd);
  /* The 100 was asked for by the handler's first read. */
  cr_assert_geq(atomic_load(&sum_calls), 1);
  static uint8_t body[3000];
  uint64_t sum = 0;
  for (size_t i = 0; i < sizeof body; i++)
    sum += body[i] = (uint8_t)(i * 7 + 1);
  cli_send(fd, body, sizeof body);
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200, "%s", r.head);
  char want[64];
  snprintf(want, sizeof want, "3000 %llu", (unsigned long long)sum);
  cr_assert_eq(r.body_len, strlen(want));
  cr_assert(memcmp(r.body, want, r.body_len) == 0);
  /* Keep-alive after it. */
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  /* A handler that answers without reading: no 100, and the connection
   * closes (the client need not send the body). */
  cli_sends(fd, "POST /early HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Content-Length: 100\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 201, "%s", r.head);
  cr_assert_not_null(strcasestr(r.head, "Connection: close"));
  cr_assert(cli_closed(fd));
  close(fd);
  /* Chunked on a streaming route. */
  fd = cli_connect(port);
  cli_sends(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
  expect_continue(fd);
  cli_sends(fd, "2\r\n\x01\x02\r\n0\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, 3);
  cr_assert(memcmp(r.body, "2 3", 3) == 0);
  close(fd);
  stop();
}

Test(http_expect, streaming_route_gets_100_at_first_read) {
  for (size_t i = 0; i < 3; i++)
    streaming(scheds[i]);
}

/* ---- curl ------------------------------------------------------------------
 */

/* Runs curl with an explicit Expect and a wait for the 100 longer than
 * curl's own deadline: it only succeeds when the server sent the 100. */
static void curl_post(const char *path, const char *file, bool chunked,
                      char *out, size_t cap) {
  char cmd[640];
  snprintf(cmd, sizeof cmd,
           "curl -s -m 20 --expect100-timeout 60 -H 'Expect: 100-continue' "
           "%s --data-binary @%s -w ' %%{http_code}' http://127.0.0.1:%u%s",
           chunked ? "-H 'Transfer-Encoding: chunked'" : "", file, port, path);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  cr_assert_eq(pclose(p), 0, "curl failed: %s", out);
}

Test(http_expect, curl_waits_for_100) {
  start(2);
  char path[] = "/tmp/keel_expect_XXXXXX";
  int tf = mkstemp(path);
  cr_assert_geq(tf, 0);
  static uint8_t body[40000];
  uint64_t sum = 0;
  for (size_t i = 0; i < sizeof body; i++)
    sum += body[i] = (uint8_t)('a' + i % 26);
  cr_assert_eq(write(tf, body, sizeof body), (ssize_t)sizeof body);
  close(tf);
  static char out[sizeof body + 64];
  char want[64];
  for (int chunked = 0; chunked < 2; chunked++) {
    curl_post("/sum", path, chunked, out, sizeof out);
    snprintf(want, sizeof want, "%zu %llu 200", sizeof body,
             (unsigned long long)sum);
    cr_assert_str_eq(out, want);
    curl_post("/echo", path, chunked, out, sizeof out);
    cr_assert_eq(strlen(out), sizeof body + 4);
    cr_assert(memcmp(out, body, sizeof body) == 0);
    cr_assert_str_eq(out + sizeof body, " 200");
  }
  /* The streaming handler that answers first: curl gets it, no body sent. */
  curl_post("/early", path, false, out, sizeof out);
  cr_assert_str_eq(out, "early 201");
  unlink(path);
  stop();
}

/* curl asks for 100 Continue by itself for bodies over 1 MiB: its -v log
 * must show the Expect it sent and the 100 it got; an ordinary route over
 * the body limit answers 413 at once, without a 100. */
Test(http_expect, curl_expects_by_itself) {
  start(2);
  char path[] = "/tmp/keel_expect_big_XXXXXX";
  int tf = mkstemp(path);
  cr_assert_geq(tf, 0);
  enum { BIG = 2 * 1024 * 1024 };
  uint8_t *body = malloc(BIG);
  cr_assert_not_null(body);
  uint64_t sum = 0;
  for (size_t i = 0; i < BIG; i++)
    sum += body[i] = (uint8_t)(i * 13 + 5);
  cr_assert_eq(write(tf, body, BIG), BIG);
  close(tf);
  for (int route = 0; route < 2; route++) {
    char cmd[640];
    snprintf(cmd, sizeof cmd,
             "curl -sv -m 20 --expect100-timeout 60 --data-binary @%s "
             "-w ' %%{http_code}' http://127.0.0.1:%u%s 2>&1",
             path, port, route == 0 ? "/sum" : "/echo");
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char out[65536];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    cr_assert_eq(pclose(p), 0, "curl failed: %s", out);
    cr_assert_not_null(strstr(out, "> Expect: 100-continue"), "%s", out);
    if (route == 0) {
      cr_assert_not_null(strstr(out, "< HTTP/1.1 100 Continue"), "%s", out);
      char want[64];
      snprintf(want, sizeof want, "%d %llu 200", BIG, (unsigned long long)sum);
      cr_assert_not_null(strstr(out, want), "%s", out);
    } else {
      cr_assert_null(strstr(out, "100 Continue"), "%s", out);
      cr_assert_not_null(strstr(out, "< HTTP/1.1 413 "), "%s", out);
      cr_assert_not_null(strstr(out, " 413"), "%s", out);
    }
  }
  unlink(path);
  free(body);
  stop();
}
