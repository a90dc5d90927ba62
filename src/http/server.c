/*
 * server.c - the HTTP server: the acceptor pool, the connection process
 * and the HTTP/1.1 request loop (WebSocket mode lives in ws_conn.c).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/conn.h"
#include "keel/clock.h"
#include "keel/error.h"
#include "keel/signals.h"

enum { LINGER_MS = 5000 };

/* ---- server lifetime ----------------------------------------------------- */

static void server_unref(struct keel_http_server *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1)
    return;
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cond);
  free(s);
}

static void conn_free(keel__http_conn *c) {
  keel__http_reader_free(&c->rd);
  keel__http_response_reset(&c->resp, true);
  keel_buf_free(&c->out);
  keel_buf_free(&c->in);
  keel__ws_decoder_free(&c->wsd);
  free(c);
}

static void conn_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)reason;
  keel__http_conn *c = state;
  struct keel_http_server *s = c->srv;
  c->self = self;
  keel__ws_lane_close(c); /* no broadcast frame after this */
  if (c->mode == CONN_WS && c->sock != KEEL_SOCKET_NONE && !c->close_sent) {
    c->out.len = 0; /* best effort: tell the peer why, if it fits */
    if (keel__ws_encode_close(&c->out, KEEL__WS_CLOSE_GOING_AWAY, NULL, NULL) ==
        KEEL_OK)
      (void)keel_net_send(c->sock, c->out.data, c->out.len);
  }
  if (c->mode == CONN_WS)
    keel__ws_end(c, KEEL__WS_CLOSE_GOING_AWAY);
  keel__ws_lane_free(c);
  if (c->mode != CONN_WS)
    keel__stream_abort(c); /* a streaming handler frees its state */
  if (c->sock != KEEL_SOCKET_NONE)
    (void)keel_net_close(c->sock);
  pthread_mutex_lock(&s->lock);
  conn_link *l = &c->link;
  if (l->linked) {
    if (l->prev != NULL)
      l->prev->next = l->next;
    else
      s->conns = l->next;
    if (l->next != NULL)
      l->next->prev = l->prev;
    l->linked = false;
  }
  atomic_fetch_sub(&s->nconns, 1);
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
  conn_free(c);
  server_unref(s);
}

/* ---- output ----------------------------------------------------------- */

int keel__conn_flush(keel__http_conn *c) {
  if (c->out.len == 0 || c->busy)
    return KEEL_OK;
  int rc = keel_net_send(c->sock, c->out.data, c->out.len);
  if (rc == KEEL_EBUSY) {
    c->busy = true; /* {tcp_writable, S} will come */
    return KEEL_OK;
  }
  if (c->out.cap > 64 * 1024)
    keel_buf_free(&c->out); /* do not keep a big buffer around */
  c->out.len = 0;
  c->lane_out = 0;
  return rc;
}

void keel__conn_set_deadline(keel__http_conn *c, uint32_t ms) {
  c->deadline = ms != 0 ? keel_monotonic_ns() + (uint64_t)ms * 1000000u : 0;
}

/* Arms the process timeout for the pending deadline. */
static void arm_timeout(keel__http_conn *c) {
  if (c->deadline == 0)
    return; /* the last message handled cancelled any pending timeout */
  uint64_t now = keel_monotonic_ns();
  int64_t left =
      c->deadline > now ? (int64_t)((c->deadline - now + 999999) / 1000000) : 0;
  (void)keel_proc_set_timeout(c->self, left);
}

/* CLOSING: shuts the write side down once c->out went to the socket (a
 * shutdown while the socket is busy would refuse the bytes still in
 * c->out, a WebSocket close frame among them). */
static void closing_shutdown(keel__http_conn *c) {
  if (c->mode != CONN_CLOSING || c->busy || c->shut_wr)
    return;
  c->shut_wr = true;
  (void)keel_net_shutdown(c->sock, KEEL_NET_SHUT_WRITE);
}

void keel__conn_close_after_flush(keel__http_conn *c) {
  if (c->mode == CONN_CLOSING)
    return;
  c->mode = CONN_CLOSING;
  (void)keel__conn_flush(c);
  closing_shutdown(c);
  keel__conn_set_deadline(c, LINGER_MS);
}

/* ---- HTTP ------------------------------------------------------------- */

static bool header_has_token(const keel_http_request *req, const char *name,
                             const char *token) {
  size_t len;
  const char *v = keel_http_header_get(req, name, &len);
  size_t tl = strlen(token);
  for (size_t i = 0; v != NULL && i + tl <= len; i++)
    if (strncasecmp(v + i, token, tl) == 0 &&
        (i == 0 || v[i - 1] == ' ' || v[i - 1] == ',') &&
        (i + tl == len || v[i + tl] == ' ' || v[i + tl] == ','))
      return true;
  return false;
}

/* Answers an upgrade request on a WebSocket route. */
static int serve_upgrade(keel__http_conn *c, keel_http_request *req,
                         const keel__http_match *m) {
  size_t kl = 0, vl = 0;
  const char *key = keel_http_header_get(req, "Sec-WebSocket-Key", &kl);
  const char *ver = keel_http_header_get(req, "Sec-WebSocket-Version", &vl);
  char accept[29];
  if (!header_has_token(req, "Upgrade", "websocket") ||
      !header_has_token(req, "Connection", "upgrade") || key == NULL ||
      keel__ws_accept_key(key, kl, accept) != KEEL_OK)
    return 400;
  if (ver == NULL || vl != 2 || memcmp(ver, "13", 2) != 0)
    return 426; /* with Sec-WebSocket-Version: 13 (below) */
  c->wsh = m->ws;
  c->ws.conn = c;
  c->ws_state = m->arg;
  if (c->wsh->init != NULL && c->wsh->init(&c->ws, req, &c->ws_state) < 0) {
    c->wsh = NULL;
    return 403;
  }
  int rc = keel_buf_printf(&c->out,
                           "HTTP/1.1 101 Switching Protocols\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\n\r\n",
                           accept);
  return rc == KEEL_OK ? 101 : 500;
}

/* Writes the answer to one plain request. */
static int serve_plain(keel__http_conn *c, keel_http_request *req,
                       const keel__http_match *m) {
  keel__http_response_reset(&c->resp, false);
  int rc = m->fn(req, &c->resp, m->arg);
  if (rc < 0 || c->resp.status == 0)
    return keel__http_write_status(&c->out, 500, req->keep_alive,
                                   c->srv->server_name);
  bool head = strcmp(req->method, "HEAD") == 0;
  return keel__http_response_write(&c->resp, &c->out, req->keep_alive, head,
                                   c->srv->server_name);
}

/* Handles the complete request in the reader. Returns the status when the
 * connection must change mode: 101 (upgraded) or a status >= 400 written
 * with Connection: close; 0 to go on. */
static int serve_request(keel__http_conn *c) {
  keel_http_request req;
  keel__http_match m;
  const char *srvname = c->srv->server_name;
  if (keel__http_reader_request(&c->rd, &req) != KEEL_OK) {
    (void)keel__http_write_status(&c->out, 400, false, srvname);
    return 400;
  }
  req.peer = c->pid;
  int st = keel__http_route_find(c->srv->router, req.method, req.path,
                                 req.path_len, &m);
  if (st == 200) {
    req.params = m.params;
    req.nparams = m.nparams;
  }
  if (st == 200 && m.ws != NULL) {
    st = c->rd.upgrade ? serve_upgrade(c, &req, &m) : 426;
    if (st == 101)
      return 101;
    if (st == 426)
      (void)keel_buf_printf(&c->out, "HTTP/1.1 426 Upgrade Required\r\n"
                                     "Sec-WebSocket-Version: 13\r\n"
                                     "Content-Length: 0\r\n"
                                     "Connection: close\r\n\r\n");
    else
      (void)keel__http_write_status(&c->out, st, false, srvname);
    return st;
  }
  if (st != 200) {
    (void)keel__http_write_status(&c->out, st, req.keep_alive, srvname);
    return req.keep_alive ? 0 : st;
  }
  if (serve_plain(c, &req, &m) != KEEL_OK)
    return 500;
  return req.keep_alive ? 0 : 200;
}

/* After a feed during a request of a streaming route: runs its handler.
 * Returns 1 when the connection closes, 0 to read more bytes, 2 when the
 * request is done and the next may follow. */
static int http_stream(keel__http_conn *c) {
  if (c->streaming)
    keel__stream_step(c);
  if (c->close_after) {
    keel__conn_close_after_flush(c);
    return 1;
  }
  if (c->streaming || !c->rd.complete)
    return 0; /* more body to read, or to drop */
  keel__http_reader_next(&c->rd, false);
  c->answered = false;
  return 2;
}

/* A reader error: answered with its status unless the request was
 * answered already (or -1: close without a word). */
static void http_failed(keel__http_conn *c) {
  keel__stream_abort(c);
  if (!c->answered && c->rd.status > 0)
    (void)keel__http_write_status(&c->out, c->rd.status, false,
                                  c->srv->server_name);
  keel__conn_close_after_flush(c);
}

/* A request head asking for 100 Continue (RFC 9110 10.1.1) on a route
 * that will be served (the head callback answered the others): the body
 * is wanted now. */
static void ask_for_body(keel__http_conn *c) {
  if (!keel__http_reader_wants_continue(&c->rd))
    return;
  if (keel_buf_append(&c->out, KEEL__HTTP_CONTINUE,
                      sizeof KEEL__HTTP_CONTINUE - 1) == KEEL_OK)
    c->rd.continue_sent = true;
}

/* HTTP mode: feeds bytes to the reader and answers each request. */
static void http_on_data(keel__http_conn *c, const uint8_t *data, size_t len) {
  size_t off = 0;
  while (c->mode == CONN_HTTP) {
    off += keel__http_reader_feed(&c->rd, (const char *)data + off, len - off);
    if (c->rd.status != 0) {
      http_failed(c);
      return;
    }
    if (c->rd.stream) {
      int st = http_stream(c);
      if (st == 1)
        return;
      if (st == 0 || off == len)
        break;
      continue;
    }
    if (!c->rd.complete) {
      ask_for_body(c);
      break;
    }
    int st = serve_request(c);
    keel__http_reader_next(&c->rd, false);
    if (st == 101) {
      keel__http_reader_free(&c->rd);
      keel__http_response_reset(&c->resp, true);
      if (keel__ws_start(c, data + off, len - off) != KEEL_OK)
        keel__conn_close_after_flush(c);
      return;
    }
    if (st != 0)
      keel__conn_close_after_flush(c);
    if (off == len)
      break;
  }
  if (c->mode == CONN_HTTP) {
    bool mid = c->rd.started;
    keel__conn_set_deadline(c, mid ? c->srv->o.head_timeout_ms
                                   : c->srv->o.idle_timeout_ms);
    if (!mid)
      keel__http_reader_next(&c->rd, true); /* idle: hold no buffers */
  }
}

/* ---- the connection process ------------------------------------------- */

static bool is_tagged(keel_term msg, keel_term tag, size_t arity) {
  return keel_is_tuple(msg) && keel_tuple_arity(msg) == arity &&
         keel_tuple_get(msg, 0) == tag;
}

static void on_timeout(keel__http_conn *c) {
  if (c->mode == CONN_HTTP && c->rd.started) {
    keel__stream_abort(c);
    if (!c->answered)
      (void)keel__http_write_status(&c->out, 408, false, c->srv->server_name);
    keel__conn_close_after_flush(c);
    return;
  }
  if (c->mode == CONN_HTTP) {
    keel__conn_close_after_flush(c); /* keep-alive idle */
    return;
  }
  if (c->mode == CONN_WS) { /* our close got no answer */
    keel__ws_end(c, c->close_sent ? c->close_code : KEEL__WS_CLOSE_GOING_AWAY);
    c->mode = CONN_CLOSING;
  }
  (void)keel_net_close(c->sock); /* linger is over */
  c->sock = KEEL_SOCKET_NONE;
}

/* One {tcp, S, Data}: false when the process should end. */
static bool on_tcp(keel__http_conn *c, keel_term data) {
  size_t len = 0;
  const uint8_t *p = keel_binary_data(data, &len);
  if (p == NULL)
    return true;
  if (c->mode == CONN_HTTP)
    http_on_data(c, p, len);
  else if (c->mode == CONN_WS)
    return keel__ws_on_data(c, p, len);
  return true; /* CLOSING: drained and ignored */
}

static bool handle(keel__http_conn *c, keel_term msg) {
  struct keel_http_server *s = c->srv;
  if (is_tagged(msg, s->tcp, 3) || is_tagged(msg, s->ssl, 3)) {
    c->armed = false; /* active once delivered: the socket is passive */
    return on_tcp(c, keel_tuple_get(msg, 2));
  }
  if (is_tagged(msg, s->tcp_closed, 2) || is_tagged(msg, s->ssl_closed, 2)) {
    if (c->mode == CONN_WS)
      keel__ws_end(c, c->close_received ? c->close_code : 1006);
    return false;
  }
  if (is_tagged(msg, s->tcp_error, 3) || is_tagged(msg, s->ssl_error, 3))
    return true; /* {tcp_closed, S} follows */
  if (is_tagged(msg, s->tcp_writable, 2)) {
    c->busy = false;
    bool ok = keel__conn_flush(c) == KEEL_OK;
    closing_shutdown(c);
    return ok || c->mode == CONN_CLOSING;
  }
  if (is_tagged(msg, s->tcp_handoff, 2)) {
    (void)keel_net_set_nodelay(c->sock, true);
    /* On HTTPS the handshake comes first: bounded as a head is. */
    keel__conn_set_deadline(c, s->o.tls != NULL ? s->o.head_timeout_ms
                                                : s->o.idle_timeout_ms);
    return true;
  }
  if (c->mode == CONN_WS)
    return keel__ws_on_info(c, msg);
  return true;
}

static keel_handler_status conn_handler(keel_proc *self, keel_term msg,
                                        void *state) {
  keel__http_conn *c = state;
  c->self = self;
  bool go_on = true;
  keel__ws_lane_hold(c);
  if (keel_proc_timed_out(self))
    on_timeout(c);
  else
    go_on = handle(c, msg);
  if (!go_on || c->sock == KEEL_SOCKET_NONE)
    return KEEL_EXIT;
  if (keel__conn_flush(c) != KEEL_OK && c->mode != CONN_CLOSING)
    return KEEL_EXIT; /* the peer is gone */
  if (keel__ws_lane_release(c) != KEEL_OK && c->mode != CONN_CLOSING)
    return KEEL_EXIT;
  if (!c->busy && !c->armed) {
    if (keel_net_set_active(c->sock, KEEL_NET_ONCE, 0) != KEEL_OK)
      return KEEL_EXIT;
    c->armed = true;
  }
  arm_timeout(c);
  return KEEL_CONTINUE;
}

/* The pool's start function: runs in an acceptor. */
static int conn_start(keel_socket sock, void *arg, keel_term *pid) {
  struct keel_http_server *s = arg;
  uint32_t max = s->o.max_connections;
  if (max != 0 && atomic_load(&s->nconns) >= max)
    return KEEL_ESYSLIMIT;
  if (s->o.tls != NULL) { /* HTTPS: the handshake starts with the reads */
    int rc = keel_tls_upgrade(sock, s->o.tls, NULL);
    if (rc != KEEL_OK)
      return rc;
  }
  keel__http_conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return KEEL_ENOMEM;
  c->srv = s;
  c->sock = sock;
  c->mode = CONN_HTTP;
  keel__http_reader_init(&c->rd, s->o.max_head_bytes, s->o.max_body_bytes);
  c->streams = keel__http_router_streams(s->router);
  c->rd.on_head = keel__stream_on_head;
  c->rd.head_ctx = c;
  keel_buf_init(&c->out);
  keel_buf_init(&c->in);
  keel_spawn_opts so = {.terminate = conn_terminate};
  atomic_fetch_add(&s->refs, 1);
  atomic_fetch_add(&s->nconns, 1);
  pthread_mutex_lock(&s->lock);
  int rc =
      s->stopping ? KEEL_ESTATE : keel_spawn(conn_handler, c, &so, &c->pid);
  if (rc == KEEL_OK) {
    c->link.pid = c->pid;
    c->link.next = s->conns;
    if (s->conns != NULL)
      s->conns->prev = &c->link;
    s->conns = &c->link;
    c->link.linked = true;
  }
  pthread_mutex_unlock(&s->lock);
  if (rc != KEEL_OK) {
    atomic_fetch_sub(&s->nconns, 1);
    atomic_fetch_sub(&s->refs, 1);
    conn_free(c);
    return rc;
  }
  *pid = c->pid;
  return KEEL_OK;
}

/* ---- public API --------------------------------------------------------- */

static void defaults(keel_http_server_opts *o) {
  if (o->acceptors == 0)
    o->acceptors = 4;
  if (o->max_head_bytes == 0)
    o->max_head_bytes = 16 * 1024;
  if (o->max_body_bytes == 0)
    o->max_body_bytes = 1024 * 1024;
  if (o->head_timeout_ms == 0)
    o->head_timeout_ms = 10000;
  if (o->idle_timeout_ms == 0)
    o->idle_timeout_ms = 60000;
  if (o->max_ws_message == 0)
    o->max_ws_message = 1024 * 1024;
  if (o->ws_lane_max_bytes == 0)
    o->ws_lane_max_bytes = 256 * 1024;
}

int keel_http_server_start(const keel_http_server_opts *opts,
                           keel_http_router *router, keel_http_server **out) {
  if (router == NULL || out == NULL)
    return KEEL_EINVAL;
  struct keel_http_server *s = calloc(1, sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  if (opts != NULL)
    s->o = *opts;
  defaults(&s->o);
  snprintf(s->server_name, sizeof s->server_name, "%s",
           s->o.server_header != NULL ? s->o.server_header : "keel");
  s->router = router;
  s->tcp = keel_atom("tcp");
  s->tcp_closed = keel_atom("tcp_closed");
  s->tcp_error = keel_atom("tcp_error");
  s->tcp_handoff = keel_atom("tcp_handoff");
  s->tcp_writable = keel_atom("tcp_writable");
  s->ssl = keel_atom("ssl");
  s->ssl_closed = keel_atom("ssl_closed");
  s->ssl_error = keel_atom("ssl_error");
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->cond, NULL);
  keel_net_pool_opts po = {
      .acceptors = s->o.acceptors, .start = conn_start, .arg = s};
  po.listen.ip = s->o.bind;
  po.listen.port = s->o.port;
  po.listen.reuseaddr = true;
  int rc = keel_net_pool_start(&po, &s->pool);
  if (rc != KEEL_OK) {
    server_unref(s);
    return rc;
  }
  *out = s;
  return KEEL_OK;
}

uint16_t keel_http_server_port(const keel_http_server *srv) {
  keel_net_addr a;
  if (srv == NULL ||
      keel_net_sockname(keel_net_pool_socket(srv->pool), &a) != KEEL_OK)
    return 0;
  return a.port;
}

size_t keel_http_server_connections(const keel_http_server *srv) {
  return srv != NULL ? atomic_load(&srv->nconns) : 0;
}

void keel_http_server_stop(keel_http_server *srv) {
  if (srv == NULL)
    return;
  struct keel_http_server *s = srv;
  keel_net_pool_stop(s->pool);
  pthread_mutex_lock(&s->lock);
  s->stopping = true;
  for (conn_link *l = s->conns; l != NULL; l = l->next)
    (void)keel_exit(l->pid, keel_atom("shutdown"));
  /* Connections end on the schedulers; wait for them unless called from
   * a process, whose scheduler they may need. */
  while (keel_current() == NULL && atomic_load(&s->nconns) > 0)
    pthread_cond_wait(&s->cond, &s->lock);
  pthread_mutex_unlock(&s->lock);
  server_unref(s);
}

/* ---- request accessors ------------------------------------------------ */

const char *keel_http_header_get(const keel_http_request *req, const char *name,
                                 size_t *len) {
  size_t nl = strlen(name);
  for (size_t i = 0; req != NULL && i < req->nheaders; i++) {
    const keel_http_header *h = &req->headers[i];
    if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0) {
      if (len != NULL)
        *len = h->value_len;
      return h->value;
    }
  }
  return NULL;
}

const char *keel_http_param_get(const keel_http_request *req, const char *name,
                                size_t *len) {
  for (size_t i = 0; req != NULL && i < req->nparams; i++)
    if (strcmp(req->params[i].name, name) == 0) {
      if (len != NULL)
        *len = req->params[i].value_len;
      return req->params[i].value;
    }
  return NULL;
}

const char *keel_http_query_get(const keel_http_request *req, const char *name,
                                size_t *len) {
  if (req == NULL || req->query == NULL)
    return NULL;
  size_t nl = strlen(name);
  const char *q = req->query, *end = q + req->query_len;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *stop = amp != NULL ? amp : end;
    const char *eq = memchr(q, '=', (size_t)(stop - q));
    const char *kend = eq != NULL ? eq : stop;
    if ((size_t)(kend - q) == nl && memcmp(q, name, nl) == 0) {
      const char *v = eq != NULL ? eq + 1 : stop;
      if (len != NULL)
        *len = (size_t)(stop - v);
      return v;
    }
    q = stop + 1;
  }
  return NULL;
}

/* ---- as a supervisor's child ------------------------------------------ */

static keel_handler_status owner_handle(keel_proc *self, keel_term msg,
                                        void *state) {
  (void)self;
  (void)msg;
  (void)state;
  return KEEL_CONTINUE; /* it only holds the server */
}

static void owner_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  keel_http_server_stop(state);
}

int keel_http_server_child_start(keel_proc *sup, void *arg, keel_term extra,
                                 keel_term *pid) {
  (void)sup;
  (void)extra;
  const keel_http_child_spec *spec = arg;
  if (spec == NULL)
    return KEEL_EINVAL;
  keel_http_server *srv = NULL;
  int rc = keel_http_server_start(&spec->opts, spec->router, &srv);
  if (rc != KEEL_OK)
    return rc;
  keel_spawn_opts so = {.terminate = owner_terminate, .link = true};
  rc = keel_spawn(owner_handle, srv, &so, pid);
  if (rc != KEEL_OK)
    keel_http_server_stop(srv);
  return rc;
}
