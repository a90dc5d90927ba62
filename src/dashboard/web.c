/*
 * web.c - the dashboard's HTTP routes and WebSocket page processes (see
 * keel/dashboard_web.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/dashboard_web.h"
#include "keel/error.h"
#include "keel/presence.h"
#include "keel/runtime.h"

struct keel_dashboard_web {
  keel_dashboard_web_opts o;
  keel_presence presence;
  keel_term tick;               /* the atom dashboard_tick */
  keel_term topic, users_topic; /* binaries in heap */
  keel_heap heap;
  _Atomic size_t sessions;
  _Atomic uint64_t visitor; /* numbers the open pages */
};

/* One open page: its connection process's state. */
typedef struct page_proc {
  keel_dashboard_web *w;
  keel_dashboard_session *s;
  keel_term key; /* its presence key, in heap */
  char page[24]; /* the page its presence meta names */
  keel_heap heap;
  keel_buf out;
} page_proc;

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
  if (pp->out.cap > 64 * 1024)
    keel_buf_free(&pp->out);              /* idle pages hold no big buffer */
  return rc == KEEL_EBUSY ? KEEL_OK : rc; /* a slow reader skips a frame */
}

/* The presence meta of a page: which page, since when, which browser. */
static keel_term page_meta(page_proc *pp, keel_heap *h, const char *agent,
                           size_t agent_len) {
  keel_term k[] = {keel_atom("page"), keel_atom("agent")};
  keel_term v[] = {keel_binary(h, pp->page, strlen(pp->page)),
                   keel_binary(h, agent, agent_len)};
  return keel_map_from(h, 2, k, v);
}

static int ws_init(keel_ws *ws, const keel_http_request *req, void **state) {
  keel_dashboard_web *w = *state;
  page_proc *pp = calloc(1, sizeof *pp);
  if (pp == NULL)
    return KEEL_ENOMEM;
  pp->w = w;
  keel_buf_init(&pp->out);
  keel_heap_init(&pp->heap);
  snprintf(pp->page, sizeof pp->page, "none");
  char id[32];
  snprintf(id, sizeof id, "page-%llu",
           (unsigned long long)atomic_fetch_add(&w->visitor, 1) + 1);
  pp->key = keel_binary(&pp->heap, id, strlen(id));
  size_t al = 0;
  const char *agent = keel_http_header_get(req, "User-Agent", &al);
  keel_heap h;
  keel_heap_init(&h);
  int rc = keel_dashboard_session_create(w->o.dashboard, &pp->s);
  if (rc == KEEL_OK)
    rc = keel_pubsub_subscribe(w->o.pubsub, w->topic, KEEL_NIL);
  if (rc == KEEL_OK)
    rc = keel_presence_track(
        w->presence, keel_ws_pid(ws), w->users_topic, pp->key,
        page_meta(pp, &h, agent != NULL ? agent : "", al < 200 ? al : 200),
        NULL, NULL);
  keel_heap_destroy(&h);
  if (rc != KEEL_OK) {
    keel_dashboard_session_destroy(pp->s);
    keel_heap_destroy(&pp->heap);
    free(pp);
    return rc;
  }
  atomic_fetch_add(&w->sessions, 1);
  *state = pp;
  return KEEL_OK;
}

/* Keeps the presence meta's page in step with the session's. */
static void follow_page(keel_ws *ws, page_proc *pp) {
  const char *page = keel_dashboard_session_page(pp->s);
  if (page == NULL || strcmp(page, pp->page) == 0)
    return;
  snprintf(pp->page, sizeof pp->page, "%s", page);
  keel_heap h;
  keel_heap_init(&h);
  keel_term old = KEEL_NONE, agent = KEEL_NONE;
  if (keel_presence_get_by_key(pp->w->presence, pp->w->users_topic, pp->key, &h,
                               &old) == KEEL_OK &&
      keel_is_cons(old))
    (void)keel_map_get(keel_hd(old), keel_atom("agent"), &agent);
  size_t al = 0;
  const uint8_t *a = agent != KEEL_NONE ? keel_binary_data(agent, &al) : NULL;
  (void)keel_presence_update(
      pp->w->presence, keel_ws_pid(ws), pp->w->users_topic, pp->key,
      page_meta(pp, &h, a != NULL ? (const char *)a : "", al), NULL, NULL);
  keel_heap_destroy(&h);
}

static int ws_message(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                      size_t len, void *state) {
  page_proc *pp = state;
  if (kind != KEEL_WS_TEXT)
    return KEEL_OK; /* the protocol is text frames only */
  int rc =
      keel_dashboard_session_input(pp->s, (const char *)data, len, &pp->out);
  follow_page(ws, pp);
  return rc == KEEL_OK ? flush(ws, pp) : rc;
}

static int ws_info(keel_ws *ws, keel_term msg, void *state) {
  page_proc *pp = state;
  if (msg != pp->w->tick)
    return KEEL_OK;
  int rc = keel_dashboard_session_tick(pp->s, &pp->out);
  return rc == KEEL_OK ? flush(ws, pp) : rc;
}

static void ws_end(keel_ws *ws, uint16_t code, void *state) {
  (void)code;
  page_proc *pp = state;
  if (pp == NULL)
    return;
  (void)keel_presence_untrack(pp->w->presence, keel_ws_pid(ws),
                              pp->w->users_topic, pp->key);
  (void)keel_pubsub_unsubscribe(pp->w->o.pubsub, pp->w->topic);
  keel_dashboard_session_destroy(pp->s);
  keel_buf_free(&pp->out);
  keel_heap_destroy(&pp->heap);
  atomic_fetch_sub(&pp->w->sessions, 1);
  free(pp);
}

static const keel_ws_handler page_handler = {ws_init, ws_message, ws_info,
                                             ws_end};

/* ---- the web object ---------------------------------------------------------
 */

int keel_dashboard_web_create(const keel_dashboard_web_opts *opts,
                              keel_dashboard_web **out) {
  if (opts == NULL || opts->dashboard == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_dashboard_web *w = calloc(1, sizeof *w);
  if (w == NULL)
    return KEEL_ENOMEM;
  w->o = *opts;
  keel_heap_init(&w->heap);
  w->tick = keel_atom("dashboard_tick");
  w->topic = keel_binary(&w->heap, "keel:dashboard", 14);
  w->users_topic = keel_binary(&w->heap, "keel:dashboard:users", 20);
  int rc = keel_presence_start(opts->pubsub, &w->presence);
  if (rc != KEEL_OK) {
    keel_heap_destroy(&w->heap);
    free(w);
    return rc;
  }
  *out = w;
  return KEEL_OK;
}

int keel_dashboard_web_mount(keel_dashboard_web *w, keel_http_router *r) {
  if (w == NULL || r == NULL)
    return KEEL_EINVAL;
  int rc = keel_http_route(r, "GET", "/metrics", metrics, w->o.metrics);
  if (rc == KEEL_OK)
    rc = keel_http_route(r, "GET", "/api/:page", api, w->o.dashboard);
  if (rc == KEEL_OK)
    rc = keel_http_route_ws(r, "/live", &page_handler, w);
  if (rc == KEEL_OK)
    rc = keel_http_route(r, "GET", "/", asset, NULL);
  if (rc == KEEL_OK)
    rc = keel_http_route(r, "GET", "/:file", asset, NULL);
  return rc;
}

/* Presence map Key => [Meta] to the dashboard's list of users. */
static keel_term users_of(keel_heap *h, keel_term map) {
  size_t n = keel_map_size(map), k = 0;
  keel_term *users = calloc(n + 1, sizeof *users);
  if (users == NULL)
    return KEEL_NIL;
  for (size_t i = 0; i < n; i++) {
    keel_term key, metas;
    keel_map_at(map, i, &key, &metas);
    if (keel_is_cons(metas))
      users[k++] = keel_map_put(h, keel_hd(metas), keel_atom("id"), key);
  }
  keel_term l = keel_list_from(h, k, users);
  free(users);
  return l;
}

long keel_dashboard_web_tick(keel_dashboard_web *w) {
  if (w == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term map;
  if (keel_presence_list(w->presence, w->users_topic, &h, &map) == KEEL_OK)
    (void)keel_dashboard_set_presence(w->o.dashboard, users_of(&h, map));
  keel_heap_destroy(&h);
  return (long)keel_pubsub_local_broadcast(w->o.pubsub, w->topic, w->tick,
                                           NULL);
}

size_t keel_dashboard_web_sessions(const keel_dashboard_web *w) {
  return w != NULL ? atomic_load(&w->sessions) : 0;
}

void keel_dashboard_web_destroy(keel_dashboard_web *w) {
  if (w == NULL)
    return;
  (void)keel_presence_stop(w->presence);
  keel_heap_destroy(&w->heap);
  free(w);
}
