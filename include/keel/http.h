/*
 * keel/http.h - an HTTP/1.1 and WebSocket server made of Keel processes.
 *
 * A server is an acceptor pool on a listening socket; every accepted
 * connection is served by its own handler process (the connection
 * process), which parses requests with nodejs' http-parser, routes them
 * through a keel_http_router and writes the responses, in order, on a
 * keep-alive connection (pipelined requests included). A route may upgrade
 * the connection to a WebSocket; the connection process then runs the
 * route's keel_ws_handler callbacks and receives Erlang messages too, so a
 * WebSocket is a process that can subscribe to PubSub, be monitored or be
 * killed.
 *
 * Limits and timeouts close hostile connections with the right answer:
 * 431 for oversized request heads, 413 for oversized bodies, 414 for long
 * URLs, 417 for an expectation other than 100-continue (a request with
 * Expect: 100-continue gets "100 Continue" when its body is wanted: see
 * keel_http_route_stream and docs/http.md), 400 for malformed requests,
 * 408 when a request head does not
 * arrive in time (slowloris), WebSocket close codes 1002/1007/1009 for bad
 * frames, bad UTF-8 and oversized messages.
 *
 * Thread-safety: a router is built by one thread before the server starts
 * and is read-only afterwards (shared by every connection). Request and
 * response objects belong to the connection process for the duration of
 * one handler call. Server start/stop may be called from any thread.
 */
#ifndef KEEL_HTTP_H
#define KEEL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/pubsub.h"
#include "keel/runtime.h"
#include "keel/term.h"
#include "keel/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- requests ------------------------------------------------------------ */

typedef struct keel_http_header {
  const char *name; /* as received; compare case-insensitively */
  size_t name_len;
  const char *value;
  size_t value_len;
} keel_http_header;

/* A path parameter bound by a route pattern such as /api/:page. */
typedef struct keel_http_param {
  const char *name; /* NUL-terminated, from the pattern */
  const char *value;
  size_t value_len;
} keel_http_param;

enum { KEEL_HTTP_MAX_PARAMS = 8 };

/* One request. Every pointer is valid only during the handler call. */
typedef struct keel_http_request {
  const char *method; /* "GET", "POST", ... NUL-terminated */
  const char *path;   /* the path, not decoded, without the query */
  size_t path_len;
  const char *query; /* after '?', not decoded; NULL when none */
  size_t query_len;
  const keel_http_header *headers;
  size_t nheaders;
  const uint8_t *body; /* the whole body, de-chunked */
  size_t body_len;
  unsigned short version_major, version_minor;
  bool keep_alive; /* the connection stays open after the response */
  const keel_http_param *params;
  size_t nparams;
  keel_term peer; /* the connection process's pid */
  /* Streaming routes (keel_http_route_stream) only, else NULL: */
  struct keel_http_body *stream; /* for keel_http_read_body */
  void **state; /* a slot kept across the calls of one request (NULL at
                   the first); the handler frees what it holds */
} keel_http_request;

/* The value of the first header named `name` (case-insensitive), with its
 * length in *len; NULL when absent. */
const char *keel_http_header_get(const keel_http_request *req, const char *name,
                                 size_t *len);

/* The value of path parameter `name`, with its length; NULL if unbound. */
const char *keel_http_param_get(const keel_http_request *req, const char *name,
                                size_t *len);

/* The value of query parameter `name` (not decoded; "" for a bare key),
 * with its length; NULL when absent. */
const char *keel_http_query_get(const keel_http_request *req, const char *name,
                                size_t *len);

/* ---- responses ----------------------------------------------------------- */

/* A response under construction; owned by the connection. */
typedef struct keel_http_response keel_http_response;

/* Adds a header (name and value are copied). Content-Length, Date,
 * Connection and Server are written by the server. KEEL_OK, KEEL_EINVAL
 * (a CR or LF in either, which would split the response), KEEL_ENOMEM. */
int keel_http_set_header(keel_http_response *resp, const char *name,
                         const char *value);

/* Sets the status and the body (copied) with its content type (NULL:
 * none). Calling it again replaces the body. KEEL_OK, KEEL_EINVAL (status
 * outside 100..599), KEEL_ENOMEM. */
int keel_http_respond(keel_http_response *resp, int status,
                      const char *content_type, const void *body, size_t len);

/* keel_http_respond with a JSON body encoded from `json` (keel/json.h's
 * mapping) and content type application/json. KEEL_OK, KEEL_EBADARG when
 * the term has no JSON form, KEEL_ENOMEM. */
int keel_http_respond_json(keel_http_response *resp, int status,
                           keel_term json);

/* Serves a request: fill in resp and return KEEL_OK. A negative return (or
 * a response never filled in) answers 500. Runs in the connection process
 * (keel_current() is it), so it may send messages, but it must not block
 * for long: it holds up every pipelined request behind it. */
typedef int (*keel_http_handler_fn)(const keel_http_request *req,
                                    keel_http_response *resp, void *arg);

/* ---- streaming request bodies (as Plug's read_body) ---------------------- */

/* A handler of a streaming route returns this to say "not answered yet:
 * call me again when more of the body has arrived". */
#define KEEL_HTTP_SUSPEND 1

/* Results of keel_http_read_body. */
typedef enum keel_http_body_status {
  KEEL_HTTP_BODY_DONE = 0, /* {ok, Data}: Data is the rest of the body */
  KEEL_HTTP_BODY_MORE = 1, /* {more, Data}: Data (non-empty), more follows */
  KEEL_HTTP_BODY_WAIT = 2  /* nothing buffered now: return
                              KEEL_HTTP_SUSPEND and read again when called
                              again */
} keel_http_body_status;

typedef struct keel_http_read_opts {
  size_t length; /* most bytes returned by one call; 0: 8,000,000 */
} keel_http_read_opts;

/* Reads the next part of the request body in a handler of a streaming
 * route (Plug's read_body/2): stores a pointer to up to opts->length
 * de-chunked bytes in *data (valid until the handler returns) and their
 * count in *len, and returns KEEL_HTTP_BODY_DONE (the body ends with
 * them; later calls return DONE with 0 bytes), KEEL_HTTP_BODY_MORE (more
 * follows) or KEEL_HTTP_BODY_WAIT (no byte buffered now). It never
 * blocks: the connection process reads the socket between the handler's
 * calls, one read (at most 64 KiB) at a time, and calls the handler again
 * after each. opts may be NULL. Unlike Plug there is no read_length and no
 * read_timeout: the head timeout of the server bounds the time between
 * two reads. Connection process only, during the handler call. Errors:
 * KEEL_EINVAL (req, data or len NULL, or not a streaming request),
 * KEEL_ECLOSED (the connection is ending: this is the handler's last
 * call, to free its state; its answer is ignored). */
int keel_http_read_body(const keel_http_request *req,
                        const keel_http_read_opts *opts, const uint8_t **data,
                        size_t *len);

/* ---- WebSocket ----------------------------------------------------------- */

/* A WebSocket connection, valid during its callbacks. */
typedef struct keel_ws keel_ws;

typedef enum keel_ws_kind { KEEL_WS_TEXT = 1, KEEL_WS_BINARY = 2 } keel_ws_kind;

/* The callbacks of a WebSocket route. Each runs in the connection process.
 * A negative return from init refuses the upgrade (403); from the others
 * closes the connection with 1011 (internal error). */
typedef struct keel_ws_handler {
  /* After the handshake was accepted and before the 101 response is
   * sent. *state starts as the route's arg (keel_http_route_ws); set it
   * to whatever the other callbacks need. The request is valid only
   * during this call. */
  int (*init)(keel_ws *ws, const keel_http_request *req, void **state);
  /* A complete message (fragments reassembled; text is valid UTF-8). */
  int (*on_message)(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                    size_t len, void *state);
  /* An Erlang message sent to the connection process (NULL: dropped). */
  int (*on_info)(keel_ws *ws, keel_term msg, void *state);
  /* The connection ended: `code` is the close code (1000 normal, 1001
   * going away, 1006 abnormal: the peer vanished). Free state here. */
  void (*terminate)(keel_ws *ws, uint16_t code, void *state);
} keel_ws_handler;

/* Queues one message to the peer. KEEL_OK, KEEL_ESTATE after a close was
 * sent, KEEL_EINVAL for text that is not UTF-8, KEEL_ENOMEM. Connection
 * process only. */
int keel_ws_send(keel_ws *ws, keel_ws_kind kind, const void *data, size_t len);

/* Starts the closing handshake with `code` and a reason (may be NULL);
 * terminate runs when it completes. KEEL_OK or KEEL_ESTATE if already
 * closing. Connection process only. */
int keel_ws_close(keel_ws *ws, uint16_t code, const char *reason);

/* The connection process's pid (to subscribe it to topics, say). */
keel_term keel_ws_pid(const keel_ws *ws);

/* The connection process itself, for keel_proc_heap and friends. */
keel_proc *keel_ws_proc(keel_ws *ws);

/* ---- WebSocket fastlane ----------------------------------------------------
 */

/* Subscribes the connection to topic of ps (keel/pubsub.h) through its
 * fastlane, as Phoenix channels' fastlane: a broadcast to topic whose
 * message is a binary is encoded once per broadcast into one complete
 * frame of `kind` (text must be valid UTF-8), shared by every fastlane
 * subscriber, and written to each connection's socket by the
 * broadcasting thread, without waking or scheduling the connection
 * process. Other messages (not a binary, text that is not UTF-8) reach
 * the process as with keel_pubsub_subscribe (on_info).
 *
 * Order: broadcast frames and the connection's own output (keel_ws_send,
 * pongs, the close frame) reach the peer in the order they were sent:
 * while the process is in a callback, or its output waits for the socket,
 * frames queue in the connection and follow what it sent before them.
 * After the connection sent its close frame no broadcast frame is sent.
 *
 * Slow consumers: a broadcast frame the socket cannot take (its output
 * queue above the high watermark) is queued; when the broadcast frames
 * a connection holds that its socket has not taken yet (the connection's
 * own output not counted) would exceed the server's ws_lane_max_bytes, the
 * connection is closed with code 1008 (policy violation) and the frames queued
 * for it are dropped; the broadcast counts it as not sent. A slow connection
 * never blocks the broadcaster or the other subscribers.
 *
 * The subscription belongs to the connection process: remove it with
 * keel_pubsub_unsubscribe(ps, topic) from a callback; it goes when the
 * connection ends. Frames the lane still holds from earlier
 * subscriptions go to the connection's output when it subscribes, so
 * what the callback sends after subscribing (a snapshot, say) follows
 * them. Call from a callback of ws (init included) in the
 * connection process. KEEL_OK; KEEL_EINVAL (ws NULL, bad kind, topic
 * KEEL_NONE); KEEL_ESTATE (not in ws's callback, or closing); the errors
 * of keel_pubsub_subscribe; KEEL_ENOMEM. */
int keel_ws_fastlane_subscribe(keel_ws *ws, keel_pubsub ps, keel_term topic,
                               keel_ws_kind kind);

/* ---- routing ------------------------------------------------------------- */

typedef struct keel_http_router keel_http_router;

/* A new empty router; NULL on out-of-memory. Destroy with
 * keel_http_router_free once no server uses it. */
keel_http_router *keel_http_router_new(void);
void keel_http_router_free(keel_http_router *r);

/* Adds a route. method: "GET", ... or "*" for any; pattern: a path whose
 * segments are literals, ":name" (binds one segment) or a final "*name"
 * (binds the rest). Routes are tried in the order added; a path that
 * matches some route but not its method answers 405. HEAD requests use
 * GET routes and get no body. KEEL_OK, KEEL_EINVAL (pattern not starting
 * with '/', more than KEEL_HTTP_MAX_PARAMS parameters), KEEL_ENOMEM. */
int keel_http_route(keel_http_router *r, const char *method,
                    const char *pattern, keel_http_handler_fn fn, void *arg);

/* Adds a route whose request bodies are streamed (Plug's read_body):
 * fn is called as soon as the request head has arrived, with req->body
 * NULL, and reads the body with keel_http_read_body. It answers as any
 * handler (fill resp, return KEEL_OK; negative: 500) or returns
 * KEEL_HTTP_SUSPEND to be called again (with a fresh req; *req->state
 * kept) once more body bytes have arrived; it may answer before reading
 * the whole body. Limits: the body has no total limit, but the bytes
 * not yet read by the handler may not exceed max_body_bytes (413 and the
 * connection closes). When the handler answers before the end of the
 * body, the server drops the rest as it comes and keeps the connection
 * alive, unless the rest is known (Content-Length) or turns out (chunked)
 * to be over max_body_bytes: then the answer says Connection: close and
 * the connection closes. A malformed body (a bad chunk size, ...) ends
 * the request with 400 and closes, the handler first being called one
 * last time (keel_http_read_body returns KEEL_ECLOSED), as when the peer
 * goes away or the head timeout passes. A handler that returns
 * KEEL_HTTP_SUSPEND after the whole body was read gets 500. A request with
 * Expect: 100-continue gets "100 Continue" at the handler's first
 * keel_http_read_body (never if it answers without reading: the answer
 * then closes the connection). Errors: those of keel_http_route. */
int keel_http_route_stream(keel_http_router *r, const char *method,
                           const char *pattern, keel_http_handler_fn fn,
                           void *arg);

/* Adds a GET route serving the files under directory `dir` (copied) at
 * `prefix` (e.g. "/static": /static/css/a.css is dir/css/a.css). Paths
 * are percent-decoded; a path with a ".." segment, a NUL or a backslash
 * answers 400 and never leaves dir; a directory or a missing file 404.
 * The content type comes from the extension (html, css, js, json, svg,
 * png, jpg, gif, ico, txt, wasm; else application/octet-stream). Files
 * are read whole per request, up to 16 MiB (larger: 413).
 * KEEL_OK, KEEL_EINVAL (prefix not starting with '/', dir NULL),
 * KEEL_ENOMEM. */
int keel_http_route_static(keel_http_router *r, const char *prefix,
                           const char *dir);

/* Adds a GET route that upgrades to a WebSocket (RFC 6455 handshake;
 * other requests to it answer 426). `h` must outlive the router. */
int keel_http_route_ws(keel_http_router *r, const char *pattern,
                       const keel_ws_handler *h, void *arg);

/* ---- server -------------------------------------------------------------- */

typedef struct keel_http_server_opts {
  const char *bind;         /* NULL: "127.0.0.1" */
  uint16_t port;            /* 0: an ephemeral port (see _port) */
  unsigned acceptors;       /* 0: 4 */
  size_t max_head_bytes;    /* request line + headers; 0: 16 KiB */
  size_t max_body_bytes;    /* 0: 1 MiB */
  uint32_t head_timeout_ms; /* first byte to end of head; 0: 10 s */
  uint32_t idle_timeout_ms; /* keep-alive idle; 0: 60 s */
  size_t max_ws_message;    /* 0: 1 MiB */
  /* Fastlane bound (keel_ws_fastlane_subscribe): the bytes of broadcast
   * frames one connection may hold unsent beyond its socket's output
   * queue; 0: 256 KiB. */
  size_t ws_lane_max_bytes;
  uint32_t max_connections;  /* 0: no limit */
  const char *server_header; /* NULL: "keel" */
  /* HTTPS and WSS: a server context of keel/tls.h (borrowed: it must
   * outlive the server). Every connection is then TLS; its handshake
   * runs in the connection process (or the poll thread) as the bytes
   * come, and must end, with the first request head, within
   * head_timeout_ms. NULL: plain HTTP. */
  keel_tls_ctx *tls;
} keel_http_server_opts;

typedef struct keel_http_server keel_http_server;

/* Starts a server on the running node with `router` (borrowed: it must
 * outlive the server). KEEL_OK with *out set; KEEL_ESTATE (no node),
 * KEEL_EIO (bind/listen failed: port in use, bad address), KEEL_ENOMEM. */
int keel_http_server_start(const keel_http_server_opts *opts,
                           keel_http_router *router, keel_http_server **out);

/* The port the server listens on (the ephemeral one when opts.port was 0). */
uint16_t keel_http_server_port(const keel_http_server *srv);

/* Connections open now. */
size_t keel_http_server_connections(const keel_http_server *srv);

/* Stops accepting, closes every connection (WebSockets get 1001) and frees
 * the server. Call before keel_node_stop. NULL is a no-op. */
void keel_http_server_stop(keel_http_server *srv);

/* A server as a supervisor's child. */
typedef struct keel_http_child_spec {
  keel_http_server_opts opts;
  keel_http_router *router;
} keel_http_child_spec;

/* A supervisor child's start function (keel_sup_start_fn of
 * keel/supervisor.h): arg is a const keel_http_child_spec * that must
 * outlive the child, as must its router. Starts the server and spawns its
 * owner, a process linked to the supervisor (the child's pid); the server
 * stops when the owner exits, whether the supervisor shuts it down, it is
 * killed or the supervisor dies, and a restart starts a new server (on the
 * same port: the listening socket is closed at once). Connections open at
 * that moment are told to stop and end on their own. Returns
 * keel_http_server_start's and keel_spawn's errors. */
int keel_http_server_child_start(keel_proc *sup, void *arg, keel_term extra,
                                 keel_term *pid);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_HTTP_H */
