/* libFuzzer target for the HTTP request reader and router.
 *
 * The first byte chooses how the rest is cut into reads (as a socket would
 * deliver it); every complete request is viewed, routed and answered.
 * Checks: the reader never consumes more than it is given, a request is
 * never both complete and in error, errors carry a 4xx/5xx status, a
 * request view's pointers stay inside the reader's buffers, and answers
 * are well-formed status lines.
 *
 * Bits 0x40 and 0x80 of the first byte choose the body mode of every
 * request, as the server sets it from its head callback: buffered whole,
 * streamed (the window is emptied after each read, as a handler reading
 * it all would), or streamed then dropped (as after an early answer).
 * A request expecting 100-continue asks for it only before its body, on
 * HTTP/1.1. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"
#include "http/http_parse.h"
#include "keel/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static int ok(const keel_http_request *req, keel_http_response *resp,
              void *arg) {
  (void)arg;
  return keel_http_respond(resp, 200, "text/plain", req->body, req->body_len);
}

static keel_http_router *router(void) {
  static keel_http_router *r;
  if (r == NULL) {
    r = keel_http_router_new();
    keel_http_route(r, "GET", "/", ok, NULL);
    keel_http_route(r, "*", "/api/:page/:id", ok, NULL);
    keel_http_route(r, "GET", "/static/*path", ok, NULL);
  }
  return r;
}

static bool inside(const void *p, size_t n, const keel_buf *b) {
  const uint8_t *q = p;
  return n == 0 || (q >= b->data && q + n <= b->data + b->len);
}

static void answer(keel__http_reader *rd, keel_buf *out) {
  keel_http_request req;
  int rc = keel__http_reader_request(rd, &req);
  check(rc == KEEL_OK || rc == KEEL_EDECODE);
  if (rc != KEEL_OK)
    return;
  check(inside(req.body, req.body_len, &rd->body));
  for (size_t i = 0; i < req.nheaders; i++) {
    check(inside(req.headers[i].name, req.headers[i].name_len, &rd->head));
    check(inside(req.headers[i].value, req.headers[i].value_len, &rd->head));
  }
  keel__http_match m;
  int st =
      keel__http_route_find(router(), req.method, req.path, req.path_len, &m);
  check(st == 200 || st == 404 || st == 405);
  keel_http_response resp;
  memset(&resp, 0, sizeof resp);
  if (st == 200) {
    req.params = m.params;
    req.nparams = m.nparams;
    check(m.fn(&req, &resp, NULL) == KEEL_OK);
    check(keel__http_response_write(&resp, out, req.keep_alive, false,
                                    "fuzz") == KEEL_OK);
  } else {
    check(keel__http_write_status(out, st, true, "fuzz") == KEEL_OK);
  }
  keel__http_response_reset(&resp, true);
  check(out->len > 12 && memcmp(out->data, "HTTP/1.1 ", 9) == 0);
}

/* The head callback: streams every body. */
static int stream_all(keel__http_reader *r, void *ctx) {
  (void)ctx;
  if (!r->parser.upgrade)
    r->stream = true;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  size_t step = (size_t)(data[0] & 0x3f) % 17 + 1;
  int mode = data[0] >> 6; /* 0 whole, 1 streamed, 2-3 streamed, dropped */
  data++;
  size--;
  keel__http_reader rd;
  keel__http_reader_init(&rd, 2048, 4096);
  if (mode != 0)
    rd.on_head = stream_all;
  keel_buf out;
  keel_buf_init(&out);
  size_t off = 0;
  while (off < size && rd.status == 0) {
    size_t end = off + step < size ? off + step : size;
    size_t n = keel__http_reader_feed(&rd, (const char *)data + off, end - off);
    check(n <= end - off);
    off += n;
    check(!(rd.complete && rd.status != 0));
    if (rd.status != 0) {
      /* -1: a dropped body over the limit */
      check((rd.status >= 400 && rd.status <= 599) ||
            (rd.status == -1 && rd.discard));
      check(rd.status != 413 || !rd.stream);
      break;
    }
    if (keel__http_reader_wants_continue(&rd)) { /* Expect: 100-continue */
      check(rd.expect_continue && !rd.body_seen && !rd.complete &&
            rd.parser.http_major == 1 && rd.parser.http_minor >= 1);
      rd.continue_sent = true; /* the connection writes the 100 */
    }
    if (rd.stream) {
      check(rd.body.len <= step); /* the window holds one read at most */
      check(!rd.discard || rd.body.len == 0);
      rd.body.len = 0; /* read by the handler */
      if (mode >= 2 && rd.started)
        rd.discard = true;
    }
    if (rd.complete) {
      out.len = 0;
      answer(&rd, &out);
      if (rd.upgrade)
        break;
      keel__http_reader_next(&rd, (off & 1) != 0);
    } else if (n < end - off) {
      break; /* stopped without completing: an error was recorded */
    }
  }
  keel_buf_free(&out);
  keel__http_reader_free(&rd);
  return 0;
}
