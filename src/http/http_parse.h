/*
 * http_parse.h - one connection's request reader (internal).
 *
 * Wraps nodejs' http-parser: bytes go in as they arrive, and the reader
 * stops after each complete request so the connection can answer it before
 * reading the next (pipelining keeps its order for free). Everything a
 * request refers to (URL, header names and values, the de-chunked body) is
 * copied into two buffers that are reused from one request to the next and
 * released when the connection is idle or upgraded.
 *
 * Streaming: with an on_head callback, the connection decides at each
 * head whether the body is buffered whole (with its limit) or streamed
 * (kept in `body` as a window the handler reads and the connection
 * empties), and may later drop the rest of a body (discard).
 *
 * Expectations: a request head with `Expect: 100-continue` (HTTP/1.1, with
 * a body) sets expect_continue, and the connection sends "100 Continue"
 * when it wants the body; any other expectation is answered 417 (the
 * status below), an HTTP/1.0 request's expectation is ignored.
 *
 * Errors carry the HTTP status to answer before closing: 400 (malformed),
 * 413 (body over the limit, checked from Content-Length before reading it),
 * 414 (URL over the head limit), 417 (an expectation other than
 * 100-continue), 431 (head over the limit), 501 (a
 * Transfer-Encoding other than chunked).
 */
#ifndef KEEL_HTTP_PARSE_H
#define KEEL_HTTP_PARSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/http.h"

typedef struct keel__http_hdr {
  uint32_t name_off, name_len, value_off, value_len;
} keel__http_hdr;

typedef struct keel__http_reader keel__http_reader;

/* Called when a request head is complete, before its body: returns 0 to
 * go on, or the HTTP status to answer before closing. It may set
 * r->stream to have the body kept in r->body without the body limit (the
 * caller bounds it). */
typedef int (*keel__http_head_fn)(keel__http_reader *r, void *ctx);

struct keel__http_reader {
  http_parser parser;
  size_t max_head, max_body;
  keel_buf head;          /* URL bytes, then each header's name and value */
  keel_buf body;          /* the body, de-chunked */
  keel__http_hdr *hdrs;   /* offsets into head */
  keel_http_header *view; /* the request's header array, built on demand */
  uint32_t nhdrs, cap;
  uint32_t url_len;           /* the URL is head[0..url_len) */
  bool in_value;              /* the last header callback was a value */
  bool started;               /* a request has begun (its first byte arrived) */
  bool complete;              /* a whole request is ready */
  bool upgrade;               /* ... and it asks for a protocol upgrade */
  int status;                 /* an error's HTTP status, 0 when none; -1: close
                                 without an answer (a discarded body over the
                                 limit) */
  keel__http_head_fn on_head; /* NULL: none */
  void *head_ctx;
  bool stream;        /* this request's body is streamed (see on_head) */
  bool discard;       /* this request's body is dropped as it comes */
  uint64_t discarded; /* bytes dropped so far */
  /* Expect: 100-continue (RFC 9110 10.1.1) on an HTTP/1.1 request with a
   * body: the client may wait for "100 Continue" before sending it. */
  bool expect_continue;
  bool continue_sent; /* the 100 was written (or is not needed any more) */
  bool body_seen;     /* a byte of this request's body has arrived */
};

/* The interim response that asks an expecting client for the body. */
#define KEEL__HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* Whether the body of the current request is still to be asked for: the
 * client expects 100-continue, no 100 went out and no body byte came. */
bool keel__http_reader_wants_continue(const keel__http_reader *r);

/* Prepares a reader with limits on the head and the body (bytes). */
void keel__http_reader_init(keel__http_reader *r, size_t max_head,
                            size_t max_body);

/* Releases every buffer; the reader may be re-initialised. */
void keel__http_reader_free(keel__http_reader *r);

/* Reads from data[0..len) until a request is complete, an error occurs or
 * the bytes run out; returns the bytes consumed. Check r->complete and
 * r->status afterwards. After an upgrade request the bytes that follow
 * belong to the new protocol and are not consumed. */
size_t keel__http_reader_feed(keel__http_reader *r, const char *data,
                              size_t len);

/* Fills *req with a view of the complete request (valid until the next
 * feed or reset). KEEL_OK, KEEL_EDECODE (a URL http-parser cannot split:
 * answer 400), KEEL_ENOMEM. */
int keel__http_reader_request(keel__http_reader *r, keel_http_request *req);

/* Readies the reader for the next request on the connection. `trim`
 * releases the buffers (an idle connection holds none). */
void keel__http_reader_next(keel__http_reader *r, bool trim);

#endif /* KEEL_HTTP_PARSE_H */
