/*
 * test_stream_body.c - streaming request bodies (keel_http_route_stream,
 * keel_http_read_body): Content-Length and chunked bodies larger than
 * max_body_bytes read in parts, keep-alive and pipelining after them,
 * handlers that answer before the body ends (the rest dropped, or the
 * connection closed when it is too long), hostile chunk sizes, a handler
 * that does not keep up, and curl as a real client. 1, 2 and 8
 * schedulers.
 */
#include "http/http_test.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "keel/http.h"
#include "keel/runtime.h"

static keel_http_router *router;
static keel_http_server *srv;
static uint16_t port;
static _Atomic int alive;     /* handler states allocated, not freed */
static _Atomic int last_call; /* final calls with KEEL_ECLOSED */

enum { MAX_BODY = 64 * 1024 };

static uint8_t pat(size_t i) {
  return (uint8_t)(i * 31 + 7);
}

typedef struct sum_state {
  uint64_t bytes, sum;
  unsigned calls, parts;
} sum_state;

static void drop_state(const keel_http_request *req) {
  free(*req->state);
  *req->state = NULL;
  atomic_fetch_sub(&alive, 1);
}

/* Sums the body in parts of at most 1000 bytes. */
static int sum_body(const keel_http_request *req, keel_http_response *resp,
                    void *arg) {
  (void)arg;
  if (req->stream == NULL || req->state == NULL)
    return KEEL_EINVAL;
  sum_state *st = *req->state;
  if (st == NULL) {
    st = calloc(1, sizeof *st);
    *req->state = st;
    atomic_fetch_add(&alive, 1);
  }
  st->calls++;
  keel_http_read_opts o = {.length = 1000};
  for (;;) {
    const uint8_t *d;
    size_t n;
    int rc = keel_http_read_body(req, &o, &d, &n);
    if (rc == KEEL_ECLOSED) {
      atomic_fetch_add(&last_call, 1);
      drop_state(req);
      return KEEL_OK;
    }
    if (rc < 0 || n > 1000) {
      drop_state(req);
      return KEEL_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
      st->sum += d[i];
    st->bytes += n;
    st->parts += n > 0;
    if (rc == KEEL_HTTP_BODY_WAIT)
      return KEEL_HTTP_SUSPEND;
    if (rc == KEEL_HTTP_BODY_DONE) {
      char out[128];
      int len =
          snprintf(out, sizeof out, "bytes=%llu sum=%llu calls=%s",
                   (unsigned long long)st->bytes, (unsigned long long)st->sum,
                   st->calls > 1 ? "many" : "one");
      drop_state(req);
      return keel_http_respond(resp, 200, "text/plain", out, (size_t)len);
    }
  }
}

/* Answers at once, without reading the body. */
static int early(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)req;
  (void)arg;
  return keel_http_respond(resp, 201, "text/plain", "early", 5);
}

/* Never reads: the unread window grows past the limit. */
static int lazy(const keel_http_request *req, keel_http_response *resp,
                void *arg) {
  (void)req;
  (void)resp;
  (void)arg;
  return KEEL_HTTP_SUSPEND;
}

static int hello(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)arg;
  if (req->stream != NULL)
    return KEEL_EINVAL;
  return keel_http_respond(resp, 200, "text/plain", "hello", 5);
}

static int whole(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)arg;
  const uint8_t *d;
  size_t n;
  /* A whole-body route: read_body is refused, the body is there. */
  if (keel_http_read_body(req, NULL, &d, &n) != KEEL_EINVAL)
    return KEEL_EINVAL;
  return keel_http_respond(resp, 200, "application/octet-stream", req->body,
                           req->body_len);
}

static void start(unsigned nsched) {
  keel_node_opts no = {.schedulers = nsched};
  cr_assert_eq(keel_node_start(&no), KEEL_OK);
  router = keel_http_router_new();
  cr_assert_eq(keel_http_route_stream(router, "POST", "/sum", sum_body, NULL),
               KEEL_OK);
  cr_assert_eq(keel_http_route_stream(router, "POST", "/early", early, NULL),
               KEEL_OK);
  cr_assert_eq(keel_http_route_stream(router, "POST", "/lazy", lazy, NULL),
               KEEL_OK);
  cr_assert_eq(keel_http_route(router, "GET", "/", hello, NULL), KEEL_OK);
  cr_assert_eq(keel_http_route(router, "POST", "/whole", whole, NULL), KEEL_OK);
  keel_http_server_opts opts = {.max_body_bytes = MAX_BODY,
                                .head_timeout_ms = 20000};
  cr_assert_eq(keel_http_server_start(&opts, router, &srv), KEEL_OK);
  port = keel_http_server_port(srv);
  atomic_store(&alive, 0);
  atomic_store(&last_call, 0);
}

static void stop(void) {
  keel_http_server_stop(srv);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_http_router_free(router);
  /* Every state was freed (the handler's last calls included). */
  cr_assert_eq(atomic_load(&alive), 0);
}

static const unsigned scheds[] = {1, 2, 8};

static uint64_t pat_sum(size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += pat(i);
  return s;
}

static void expect_sum(const cli_resp *r, size_t n) {
  char want[128];
  snprintf(want, sizeof want, "bytes=%zu sum=%llu calls=many", n,
           (unsigned long long)pat_sum(n));
  cr_assert_eq(r->status, 200, "%s", r->head);
  cr_assert_eq(r->body_len, strlen(want));
  cr_assert(memcmp(r->body, want, r->body_len) == 0, "%.*s", (int)r->body_len,
            r->body);
}

/* ---- Content-Length and chunked bodies ----------------------------------- */

enum { BIG = 300000 };

static void content_length(unsigned nsched) {
  start(nsched);
  int fd = cli_connect(port);
  char head[128];
  snprintf(head, sizeof head,
           "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", BIG);
  cli_sends(fd, head);
  uint8_t *body = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    body[i] = pat(i);
  for (size_t off = 0; off < BIG; off += 7000) /* in uneven pieces */
    cli_send(fd, body + off, BIG - off < 7000 ? BIG - off : 7000);
  cli_resp r;
  cr_assert(cli_response(fd, &r));
  expect_sum(&r, BIG);
  /* Keep-alive: the next request on the same connection. */
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  /* The whole-body default keeps its limit. */
  snprintf(head, sizeof head,
           "POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
           MAX_BODY + 1);
  cli_sends(fd, head);
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 413);
  cr_assert(cli_closed(fd));
  close(fd);
  free(body);
  stop();
}

Test(http_stream, content_length_body_over_the_limit) {
  for (size_t i = 0; i < 3; i++)
    content_length(scheds[i]);
}

/* Writes body[0..n) as chunks of the given sizes (cycled). */
static void send_chunked(int fd, const uint8_t *body, size_t n) {
  static const size_t sizes[] = {1, 4096, 17, 70000, 300, 9999};
  size_t off = 0;
  for (size_t k = 0; off < n; k++) {
    size_t c = sizes[k % 6];
    if (c > n - off)
      c = n - off;
    char line[64];
    /* Chunk extensions are ignored. */
    snprintf(line, sizeof line, k % 2 ? "%zx\r\n" : "%zX;ext=1\r\n", c);
    cli_sends(fd, line);
    cli_send(fd, body + off, c);
    cli_sends(fd, "\r\n");
    off += c;
  }
}

static void chunked(unsigned nsched) {
  start(nsched);
  int fd = cli_connect(port);
  uint8_t *body = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    body[i] = pat(i);
  cli_sends(fd, "POST /sum HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
  send_chunked(fd, body, BIG);
  /* The last chunk, a trailer and a pipelined request in one write. */
  cli_sends(fd, "0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cli_resp r;
  cr_assert(cli_response(fd, &r));
  expect_sum(&r, BIG);
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  cr_assert(r.body_len == 5 && memcmp(r.body, "hello", 5) == 0);
  close(fd);
  free(body);
  stop();
}

Test(http_stream, chunked_body_and_pipelining) {
  for (size_t i = 0; i < 3; i++)
    chunked(scheds[i]);
}

/* ---- early answers: the rest dropped, or the connection closed ----------- */

static void early_answers(unsigned nsched) {
  start(nsched);
  static uint8_t junk[MAX_BODY * 2];
  memset(junk, 'j', sizeof junk);
  cli_resp r;
  /* Content-Length within the limit: dropped, connection kept. */
  int fd = cli_connect(port);
  cli_sends(fd, "POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n"
                "\r\n");
  cli_send(fd, junk, 100);
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 201);
  cr_assert_null(strcasestr(r.head, "Connection: close"));
  cli_send(fd, junk, 9900);
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  close(fd);
  /* Content-Length over the limit: answered with close. */
  fd = cli_connect(port);
  char head[128];
  snprintf(head, sizeof head,
           "POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
           MAX_BODY * 10);
  cli_sends(fd, head);
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 201);
  cr_assert_not_null(strcasestr(r.head, "Connection: close"));
  cr_assert(cli_closed(fd));
  close(fd);
  /* Chunked: dropped while short, then closed when too long. */
  fd = cli_connect(port);
  cli_sends(fd, "POST /early HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 201);
  cli_sends(fd, "10\r\n0123456789abcdef\r\n0\r\n\r\n");
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 200);
  cli_sends(fd, "POST /early HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 201);
  char line[32];
  snprintf(line, sizeof line, "%zx\r\n", sizeof junk);
  cli_sends(fd, line);
  send(fd, junk, sizeof junk, MSG_NOSIGNAL); /* may be cut by the close */
  cr_assert(cli_closed(fd));
  close(fd);
  stop();
}

Test(http_stream, early_answer_drops_or_closes) {
  for (size_t i = 0; i < 3; i++)
    early_answers(scheds[i]);
}

/* ---- hostile chunks, a handler that does not keep up, a vanishing peer --- */

static void hostile(unsigned nsched) {
  start(nsched);
  static const char *bad[] = {
      "zz\r\nhello\r\n0\r\n\r\n",                       /* not hex */
      "ffffffffffffffffffff\r\n",                       /* overflows */
      "5\r\nhelloXX\r\n0\r\n\r\n",                      /* no CRLF after data */
      "-5\r\nhello\r\n",                                /* negative */
      "5\r\nhello\r\n0\r\nTrailer: x\r\nbroken\r\n\r\n" /* bad trailer */
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    int before = atomic_load(&last_call);
    int fd = cli_connect(port);
    cli_sends(fd, "POST /sum HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n");
    cli_sends(fd, bad[k]);
    cli_resp r;
    cr_assert(cli_response(fd, &r), "case %zu", k);
    cr_assert_eq(r.status, 400, "case %zu: %s", k, r.head);
    cr_assert(cli_closed(fd));
    close(fd);
    /* The handler had its last call (its state is freed). */
    cr_assert_eq(atomic_load(&last_call), before + 1, "case %zu", k);
  }
  /* A handler that never reads: 413 once the unread bytes pass the
   * limit. */
  int fd = cli_connect(port);
  char head[128];
  snprintf(head, sizeof head,
           "POST /lazy HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
           MAX_BODY * 4);
  cli_sends(fd, head);
  static uint8_t junk[MAX_BODY * 4];
  size_t sent = 0;
  while (sent < sizeof junk) {
    ssize_t n = send(fd, junk + sent, sizeof junk - sent, MSG_NOSIGNAL);
    if (n <= 0)
      break; /* the server may close before taking it all */
    sent += (size_t)n;
  }
  cli_resp r;
  cr_assert(cli_response(fd, &r));
  cr_assert_eq(r.status, 413);
  cr_assert(cli_closed(fd));
  close(fd);
  /* A peer that goes away mid-body: the handler's last call too. */
  int before = atomic_load(&last_call);
  fd = cli_connect(port);
  cli_sends(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                "\r\nabc");
  close(fd); /* the handler waits for the rest: it gets its last call */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&last_call) == before) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    cr_assert_lt(t.tv_sec - t0.tv_sec, CLIENT_TIMEOUT_S);
  }
  stop();
}

Test(http_stream, hostile_chunks_lazy_handler_vanishing_peer) {
  for (size_t i = 0; i < 3; i++)
    hostile(scheds[i]);
}

/* ---- curl as the client -------------------------------------------------- */

Test(http_stream, curl_chunked_upload) {
  start(2);
  char path[] = "/tmp/keel_stream_XXXXXX";
  int tf = mkstemp(path);
  cr_assert_geq(tf, 0);
  uint8_t *body = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    body[i] = pat(i);
  cr_assert_eq(write(tf, body, BIG), BIG);
  close(tf);
  for (int chunk = 0; chunk < 2; chunk++) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "curl -s -m 20 %s --data-binary @%s http://127.0.0.1:%u/sum",
             chunk ? "-H 'Transfer-Encoding: chunked'" : "", path, port);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[256] = {0};
    size_t n = fread(out, 1, sizeof out - 1, p);
    int st = pclose(p);
    cr_assert_eq(st, 0, "curl failed");
    char want[128];
    snprintf(want, sizeof want, "bytes=%d sum=%llu calls=many", BIG,
             (unsigned long long)pat_sum(BIG));
    cr_assert_eq(n, strlen(want));
    cr_assert_str_eq(out, want);
  }
  unlink(path);
  free(body);
  stop();
}
