/*
 * web.c - the dashboard's HTTP routes and WebSocket page processes (see
 * keel/dashboard_web.h).
 *
 * Each open page is the connection process of its WebSocket: it owns one
 * dashboard session, answers the client's frames with the session's
 * replies and, every refresh interval, asks the session for a diff of its
 * page (nothing is sent when nothing changed). The refresh is a timer the
 * process re-arms on each tick, so an idle page costs one pending timer.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keel/dashboard_web.h"
#include "keel/error.h"
#include "keel/runtime.h"

static _Atomic size_t sessions;

typedef struct page_proc {
  keel_dashboard_session *s;
  keel_timer_ref tick;
  keel_buf out;
} page_proc;

static keel_term tick_atom(void) {
  static keel_term a;
  if (a == 0)
    a = keel_atom("dashboard_tick");
  return a;
}

static int asset(const keel_http_request *req, keel_http_response *resp,
                 void *arg) {
  (void)arg;
  char path[128];
  if (req->path_len >= sizeof path)
    return keel_http_respond(resp, 404, "text/plain", "not found", 9);
  memcpy(path, req->path, req->path_len);
  path[req->path_len] = '\0';
  const uint8_t *data;
  size_t len;
  const char *type;
  if (keel_dashboard_asset(path, &data, &len, &type) != KEEL_OK)
    return keel_http_respond(resp, 404, "text/plain", "not found", 9);
  (void)keel_http_set_header(resp, "Cache-Control", "no-cache");
  return keel_http_respond(resp, 200, type, data, len);
}

static int api(const keel_http_request *req, keel_http_response *resp,
               void *arg) {
  keel_dashboard *d = arg;
  size_t n;
  const char *p = keel_http_param_get(req, "page", &n);
  char page[32], query[512];
  if (p == NULL || n >= sizeof page ||
      (req->query != NULL && req->query_len >= sizeof query))
    return keel_http_respond(resp, 400, "text/plain", "bad request", 11);
  memcpy(page, p, n);
  page[n] = '\0';
  if (req->query != NULL) {
    memcpy(query, req->query, req->query_len);
    query[req->query_len] = '\0';
  }
  keel_buf out;
  keel_buf_init(&out);
  int rc = keel_dashboard_api(d, page, req->query != NULL ? query : NULL, &out);
  int status = rc == KEEL_OK        ? 200
               : rc == KEEL_ENOENT  ? 404
               : rc == KEEL_ENOPROC ? 404
               : rc == KEEL_EBADARG ? 400
               : rc == KEEL_EINVAL  ? 400
                                    : 500;
  if (rc == KEEL_OK)
    rc = keel_http_respond(resp, 200, "application/json", out.data, out.len);
  else
    rc = keel_http_respond(resp, status, "text/plain", keel_strerror(rc),
                           strlen(keel_strerror(rc)));
  keel_buf_free(&out);
  return rc;
}

static int metrics(const keel_http_request *req, keel_http_response *resp,
                   void *arg) {
  (void)req;
  keel_buf out;
  keel_buf_init(&out);
  int rc = arg != NULL ? keel_metrics_prometheus(arg, &out) : KEEL_OK;
  if (rc == KEEL_OK)
    rc = keel_http_respond(resp, 200, "text/plain; version=0.0.4", out.data,
                           out.len);
  keel_buf_free(&out);
  return rc;
}

/* ---- the page processes ----------------------------------------------------
 */

static int flush(keel_ws *ws, page_proc *pp) {
  int rc = KEEL_OK;
  if (pp->out.len > 0)
    rc = keel_ws_send(ws, KEEL_WS_TEXT, pp->out.data, pp->out.len);
  pp->out.len = 0;
  return rc == KEEL_EBUSY ? KEEL_OK : rc; /* a slow reader skips a frame */
}

static int arm(keel_ws *ws, page_proc *pp) {
  return keel_send_after(keel_ws_pid(ws), tick_atom(),
                         KEEL_DASHBOARD_INTERVAL_MS, &pp->tick);
}

static int ws_init(keel_ws *ws, const keel_http_request *req, void **state) {
  (void)req;
  keel_dashboard *d = *state;
  page_proc *pp = calloc(1, sizeof *pp);
  if (pp == NULL)
    return KEEL_ENOMEM;
  keel_buf_init(&pp->out);
  int rc = keel_dashboard_session_create(d, &pp->s);
  if (rc == KEEL_OK)
    rc = arm(ws, pp);
  if (rc != KEEL_OK) {
    keel_dashboard_session_destroy(pp->s);
    free(pp);
    return rc;
  }
  atomic_fetch_add(&sessions, 1);
  *state = pp;
  return KEEL_OK;
}

static int ws_message(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                      size_t len, void *state) {
  page_proc *pp = state;
  if (kind != KEEL_WS_TEXT)
    return KEEL_OK; /* the protocol is text frames only */
  int rc =
      keel_dashboard_session_input(pp->s, (const char *)data, len, &pp->out);
  return rc == KEEL_OK ? flush(ws, pp) : rc;
}

static int ws_info(keel_ws *ws, keel_term msg, void *state) {
  page_proc *pp = state;
  if (msg != tick_atom())
    return KEEL_OK;
  int rc = keel_dashboard_session_tick(pp->s, &pp->out);
  if (rc == KEEL_OK)
    rc = flush(ws, pp);
  if (rc == KEEL_OK)
    rc = arm(ws, pp);
  if (pp->out.cap > 64 * 1024)
    keel_buf_free(&pp->out); /* idle pages hold no big buffer */
  return rc;
}

static void ws_end(keel_ws *ws, uint16_t code, void *state) {
  (void)ws;
  (void)code;
  page_proc *pp = state;
  if (pp == NULL)
    return;
  (void)keel_cancel_timer(pp->tick);
  keel_dashboard_session_destroy(pp->s);
  keel_buf_free(&pp->out);
  free(pp);
  atomic_fetch_sub(&sessions, 1);
}

static const keel_ws_handler page_handler = {ws_init, ws_message, ws_info,
                                             ws_end};

int keel_dashboard_mount(keel_http_router *r, keel_dashboard *d,
                         keel_metrics *m) {
  if (r == NULL || d == NULL)
    return KEEL_EINVAL;
  int rc = keel_http_route(r, "GET", "/metrics", metrics, m);
  if (rc == KEEL_OK)
    rc = keel_http_route(r, "GET", "/api/:page", api, d);
  if (rc == KEEL_OK)
    rc = keel_http_route_ws(r, "/live", &page_handler, d);
  if (rc == KEEL_OK)
    rc = keel_http_route(r, "GET", "/", asset, NULL);
  if (rc == KEEL_OK)
    rc = keel_http_route(r, "GET", "/:file", asset, NULL);
  return rc;
}

size_t keel_dashboard_web_sessions(void) {
  return atomic_load(&sessions);
}
