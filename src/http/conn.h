/*
 * conn.h - a connection process of the HTTP server (internal).
 *
 * One handler process per accepted socket, in one of three modes:
 *   HTTP     requests are read, routed and answered in order;
 *   WS       the connection was upgraded; frames in, messages out;
 *   CLOSING  the last bytes are on their way: the write side is shut down
 *            once they are flushed, and the process ends when the peer
 *            closes or a linger timeout passes.
 * The socket runs in active-once mode: a new {tcp, S, Data} is asked for
 * only after the previous one was handled and the output flushed, so a
 * slow reader holds back its own requests and nobody else's.
 */
#ifndef KEEL_HTTP_CONN_H
#define KEEL_HTTP_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "http/http_internal.h"
#include "http/http_parse.h"
#include "http/ws_frame.h"
#include "keel/http.h"
#include "keel/net.h"

typedef enum conn_mode { CONN_HTTP, CONN_WS, CONN_CLOSING } conn_mode;

typedef struct keel__http_conn keel__http_conn;
typedef struct keel__ws_lane keel__ws_lane; /* ws_lane.c */

/* An entry of the server's list of open connections (for stop). */
typedef struct conn_link {
  struct conn_link *next, *prev;
  keel_term pid;
  bool linked;
} conn_link;

struct keel_ws {
  keel__http_conn *conn;
};

/* What keel_http_request.stream points to. */
struct keel_http_body {
  keel__http_conn *conn;
};

struct keel__http_conn {
  struct keel_http_server *srv;
  keel_proc *self; /* during a handler call */
  keel_term pid;
  keel_socket sock;
  conn_mode mode;
  bool busy;         /* output waits for {tcp_writable, S} */
  bool armed;        /* active once is set and no {tcp, S, _} came since */
  bool shut_wr;      /* CLOSING: the write side was shut down */
  uint64_t deadline; /* monotonic ns of the pending timeout, 0: none */
  keel_buf out;      /* bytes the socket has not taken yet */
  size_t lane_out;   /* bytes of fastlane frames among them */
  /* HTTP */
  keel__http_reader rd;
  keel_http_response resp;
  /* A request of a streaming route (stream.c) */
  bool streaming;   /* its handler has not answered yet */
  bool answered;    /* it answered before the end of the body (dropped) */
  bool aborted;     /* the handler's last call: read_body says closed */
  bool close_after; /* the answer closes the connection */
  bool streams;     /* the router has streaming routes */
  void *sstate;     /* *req->state */
  size_t body_off;  /* bytes of rd.body the handler has read */
  struct keel_http_body body;
  /* WebSocket */
  keel_buf in; /* received bytes not yet decoded */
  keel__ws_decoder wsd;
  struct keel_ws ws;
  const keel_ws_handler *wsh;
  void *ws_state;
  bool close_sent, close_received;
  uint16_t close_code; /* for terminate */
  keel__ws_lane *lane; /* the fastlane, once subscribed through it */
  conn_link link;      /* the server's list entry */
};

/* The server, as its connections see it. */
struct keel_http_server {
  keel_net_pool *pool;
  keel_http_router *router;
  keel_http_server_opts o;
  char server_name[64];
  keel_term tcp, tcp_closed, tcp_error, tcp_handoff, tcp_writable;
  keel_term ssl, ssl_closed, ssl_error; /* the same on HTTPS */
  _Atomic size_t nconns;
  _Atomic int refs; /* the owner's, plus one per connection */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct conn_link *conns; /* open connections, for stop */
  bool stopping;
};

/* Shared helpers of server.c and ws_conn.c. */
int keel__conn_flush(keel__http_conn *c);
void keel__conn_close_after_flush(keel__http_conn *c);
void keel__conn_set_deadline(keel__http_conn *c, uint32_t ms);

/* stream.c: the reader's head callback (routes the head of a request
 * with Expect: 100-continue, or of any request when the router streams:
 * a streaming route starts streaming; a client expecting 100 on a route
 * that answers 404/405 gets that answer before its body). */
int keel__stream_on_head(keel__http_reader *r, void *ctx);

/* stream.c: body bytes arrived or the body ended: runs the handler of
 * the streaming request; once it answers, writes the response. */
void keel__stream_step(keel__http_conn *c);

/* stream.c: the connection ends during a streaming request: the handler
 * is called one last time (read_body: KEEL_ECLOSED), its answer dropped. */
void keel__stream_abort(keel__http_conn *c);

/* Switches an upgraded connection to WebSocket mode: `rest` holds the
 * bytes that followed the request head. KEEL_OK or an error (the
 * connection is then closed). */
int keel__ws_start(keel__http_conn *c, const uint8_t *rest, size_t len);

/* WebSocket mode: bytes arrived. false when the process should end. */
bool keel__ws_on_data(keel__http_conn *c, const uint8_t *data, size_t len);

/* WebSocket mode: any other message. false when the process should end. */
bool keel__ws_on_info(keel__http_conn *c, keel_term msg);

/* WebSocket mode: the connection is gone; runs terminate once. */
void keel__ws_end(keel__http_conn *c, uint16_t code);

/* WebSocket mode: sends a close frame with code, runs terminate and
 * closes once the output is flushed. */
void keel__ws_fail(keel__http_conn *c, uint16_t code);

/* The fastlane (ws_lane.c), all no-ops without one. hold: at the start
 * of every handler call, makes broadcasts queue in the lane and moves
 * what it queued to c->out. release: at the end, after c->out was
 * flushed, flushes what the lane queued meanwhile and frees the lane
 * (unless the socket is busy); an error means the peer is gone. close:
 * no frame is accepted any more (our close frame was sent, or the
 * connection ends). free: close and drop the connection's reference. */
void keel__ws_lane_hold(keel__http_conn *c);
int keel__ws_lane_release(keel__http_conn *c);
void keel__ws_lane_close(keel__http_conn *c);
void keel__ws_lane_free(keel__http_conn *c);
/* A lane's own message to the connection process: handles it and
 * returns true, or returns false (not a lane message). */
bool keel__ws_lane_msg(keel__http_conn *c, keel_term msg);

#endif /* KEEL_HTTP_CONN_H */
