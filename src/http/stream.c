/*
 * stream.c - streaming request bodies (keel_http_route_stream and
 * keel_http_read_body, as Plug's read_body).
 *
 * The reader's head callback routes each head; a streaming route makes
 * the reader keep the body in its body buffer without the body limit: a
 * window the handler reads (body_off) and the connection empties after
 * each call. The handler runs after each socket read until it answers;
 * if it answers before the end of the body the reader drops the rest
 * (discard) and the connection stays alive, unless the rest is too long.
 *
 * Expect: 100-continue: a streaming handler's first keel_http_read_body
 * sends "100 Continue" (the connection flushes it when the handler
 * returns); a handler that answers without reading never asks for the
 * body, and its answer closes the connection. For the other routes the
 * head callback checks the route: one that will not be served is
 * answered at once (and the connection closes), else server.c sends the
 * 100 before reading the body.
 */
#include <string.h>

#include "http/conn.h"
#include "keel/error.h"

enum { READ_LENGTH_DEFAULT = 8000000 };

int keel__stream_on_head(keel__http_reader *r, void *ctx) {
  keel__http_conn *c = ctx;
  if (r->parser.upgrade || (!c->streams && !r->expect_continue))
    return 0;
  keel_http_request req;
  keel__http_match m;
  if (keel__http_reader_request(r, &req) != KEEL_OK)
    return r->expect_continue ? 400 : 0;
  int st = keel__http_route_find(c->srv->router, req.method, req.path,
                                 req.path_len, &m);
  if (st != 200 || !m.stream || m.fn == NULL) {
    /* Buffered whole, as usual (errors answered then); but a client that
     * waits for 100 Continue is told now that its body is not wanted
     * (and the connection closes: the body may follow or not). */
    return r->expect_continue && st != 200 ? st : 0;
  }
  r->stream = true;
  c->streaming = true;
  c->answered = false;
  c->aborted = false;
  c->close_after = false;
  c->sstate = NULL;
  c->body_off = 0;
  keel__http_response_reset(&c->resp, false);
  return 0;
}

/* Calls the streaming handler once with a fresh request view. */
static int call(keel__http_conn *c) {
  keel_http_request req;
  keel__http_match m;
  if (keel__http_reader_request(&c->rd, &req) != KEEL_OK)
    return KEEL_ENOMEM;
  if (keel__http_route_find(c->srv->router, req.method, req.path, req.path_len,
                            &m) != 200 ||
      !m.stream || m.fn == NULL)
    return KEEL_ESTATE; /* cannot happen: the router is read-only */
  req.params = m.params;
  req.nparams = m.nparams;
  req.peer = c->pid;
  req.body = NULL;
  req.body_len = 0;
  c->body.conn = c;
  req.stream = &c->body;
  req.state = &c->sstate;
  return m.fn(&req, &c->resp, m.arg);
}

/* Drops the bytes the handler has read from the window. */
static void compact(keel__http_conn *c) {
  keel_buf *b = &c->rd.body;
  if (c->body_off == 0)
    return;
  memmove(b->data, b->data + c->body_off, b->len - c->body_off);
  b->len -= c->body_off;
  c->body_off = 0;
}

/* The handler answered (rc its return): writes the response; the rest of
 * an unfinished body is to be dropped, or the connection closes. */
static void answer(keel__http_conn *c, int rc) {
  keel__http_reader *r = &c->rd;
  const char *srv = c->srv->server_name;
  c->streaming = false;
  bool ka = http_should_keep_alive(&r->parser) != 0;
  /* A client waiting for 100 Continue may never send the body it
   * announced: the connection cannot tell its next request from it. */
  if (keel__http_reader_wants_continue(r))
    ka = false;
  if (!r->complete) {
    /* Content-Length: the parser counts down what is left. */
    if (!(r->parser.flags & F_CHUNKED) &&
        r->parser.content_length > r->max_body)
      ka = false;
    c->answered = true;
    r->discard = true;
    r->discarded = 0;
  }
  r->body.len = 0;
  c->body_off = 0;
  bool head = r->parser.method == HTTP_HEAD;
  if (rc < 0 || c->resp.status == 0)
    (void)keel__http_write_status(&c->out, 500, ka, srv);
  else
    (void)keel__http_response_write(&c->resp, &c->out, ka, head, srv);
  c->close_after = !ka;
}

void keel__stream_step(keel__http_conn *c) {
  while (c->streaming) {
    size_t before = c->body_off;
    int rc = call(c);
    if (rc != KEEL_HTTP_SUSPEND) {
      answer(c, rc);
      return;
    }
    bool progressed = c->body_off > before;
    compact(c);
    bool left = c->rd.body.len > 0;
    if (left && progressed)
      continue; /* it read part of what is here: the rest now */
    if (c->rd.complete) {
      answer(c, KEEL_ESTATE); /* waits for a body that has ended: 500 */
      return;
    }
    if (c->rd.body.len > c->rd.max_body) { /* it does not keep up */
      keel__stream_abort(c);
      (void)keel__http_write_status(&c->out, 413, false, c->srv->server_name);
      c->close_after = true;
    }
    return;
  }
}

void keel__stream_abort(keel__http_conn *c) {
  if (!c->streaming)
    return;
  c->aborted = true;
  (void)call(c);
  c->aborted = false;
  c->streaming = false;
  c->rd.body.len = 0;
  c->body_off = 0;
}

int keel_http_read_body(const keel_http_request *req,
                        const keel_http_read_opts *opts, const uint8_t **data,
                        size_t *len) {
  if (req == NULL || data == NULL || len == NULL || req->stream == NULL)
    return KEEL_EINVAL;
  keel__http_conn *c = req->stream->conn;
  *data = (const uint8_t *)"";
  *len = 0;
  if (c->aborted)
    return KEEL_ECLOSED;
  if (keel__http_reader_wants_continue(&c->rd)) { /* the first read */
    if (keel_buf_append(&c->out, KEEL__HTTP_CONTINUE,
                        sizeof KEEL__HTTP_CONTINUE - 1) != KEEL_OK)
      return KEEL_ENOMEM;
    c->rd.continue_sent = true;
  }
  size_t avail = c->rd.body.len - c->body_off;
  size_t max =
      opts != NULL && opts->length != 0 ? opts->length : READ_LENGTH_DEFAULT;
  size_t n = avail < max ? avail : max;
  if (n > 0)
    *data = c->rd.body.data + c->body_off;
  *len = n;
  c->body_off += n;
  if (n == avail && c->rd.complete)
    return KEEL_HTTP_BODY_DONE;
  return n > 0 ? KEEL_HTTP_BODY_MORE : KEEL_HTTP_BODY_WAIT;
}
