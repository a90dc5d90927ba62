/*
 * http_internal.h - responses and routing shared by the server's parts.
 */
#ifndef KEEL_HTTP_INTERNAL_H
#define KEEL_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/buf.h"
#include "keel/http.h"

struct keel_http_response {
  int status;       /* 0 until the handler responds */
  keel_buf headers; /* "Name: value\r\n" lines the handler added */
  keel_buf body;
  char ctype[96]; /* content type, "" for none */
};

/* Empties a response for reuse (buffers kept unless `trim`). */
void keel__http_response_reset(keel_http_response *resp, bool trim);

/* Appends the response's bytes: status line, the handler's headers, then
 * Server, Date, Content-Type, Content-Length and Connection, then the body
 * unless `head_only` (a HEAD request; Content-Length still tells the
 * GET's length). KEEL_OK or KEEL_ENOMEM. */
int keel__http_response_write(const keel_http_response *resp, keel_buf *out,
                              bool keep_alive, bool head_only,
                              const char *server);

/* Appends a complete plain-text response with the status's reason phrase
 * as body, closing the connection unless keep_alive. */
int keel__http_write_status(keel_buf *out, int status, bool keep_alive,
                            const char *server);

/* The reason phrase of a status ("Unknown" for unlisted ones). */
const char *keel__http_reason(int status);

/* What routing found for a request. */
typedef struct keel__http_match {
  keel_http_handler_fn fn;   /* NULL for a WebSocket route */
  const keel_ws_handler *ws; /* NULL for a plain route */
  void *arg;
  bool stream; /* a route of keel_http_route_stream */
  keel_http_param params[KEEL_HTTP_MAX_PARAMS];
  size_t nparams;
} keel__http_match;

/* Routes method + path: 200 with *m filled, 404 (no pattern matched) or
 * 405 (a pattern matched, no route of that method). HEAD uses GET. */
int keel__http_route_find(const keel_http_router *r, const char *method,
                          const char *path, size_t path_len,
                          keel__http_match *m);

/* Whether some route of r streams its request bodies. */
bool keel__http_router_streams(const keel_http_router *r);

/* Makes the router free p (with free()) when it is freed: memory a route's
 * arg needs. KEEL_OK or KEEL_ENOMEM (p is not kept then). */
int keel__http_router_keep(keel_http_router *r, void *p);

#endif /* KEEL_HTTP_INTERNAL_H */
