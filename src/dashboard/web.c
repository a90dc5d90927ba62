/*
 * web.c - the dashboard's HTTP routes and WebSocket page processes (see
 * keel/dashboard_web.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard/dash_internal.h"
#include "dashboard/web_internal.h"
#include "keel/dashboard_web.h"
#include "keel/error.h"
#include "keel/presence.h"
#include "keel/runtime.h"

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

/* One open page is two processes:
 *  - its WebSocket's connection process (a handler, tiny) relays frames:
 *    text from the browser goes to the page process as {dash_in, Bin},
 *    {dash_out, Bin} from the page process goes to the browser;
 *  - the page process, a fiber, owns the dashboard session: it may wait
 *    (the supervision page calls supervisors, queue lengths are asked of
 *    the processes), it subscribes to the refresh topic and is tracked in
 *    the presence list, and it hibernates (drops its stack) between
 *    messages, so an idle page costs no stack.
 * The two are linked: either one crashing takes the other down. */
typedef struct page_proc {
  keel_dashboard_web *w;
  keel_dashboard_session *s;
  keel_term conn;  /* the connection process */
  keel_term key;   /* its presence key, in heap */
  char page[24];   /* the page its presence meta names */
  char agent[200]; /* the browser's User-Agent */
  bool started;    /* tracked in the presence list */
  bool ticking;    /* subscribed to the refresh ticks */
  uint64_t gen;    /* the session's shared-page generation last seen */
  keel_heap heap;
  keel_buf out;
} page_proc;

static keel_term a_in, a_out, a_stop, a_attach, a_detach;

static void atoms(void) {
  if (a_in == 0) {
    a_in = keel_atom("dash_in");
    a_out = keel_atom("dash_out");
    a_stop = keel_atom("dash_stop");
    a_attach = keel_atom("dash_attach");
    a_detach = keel_atom("dash_detach");
  }
}

/* The presence meta of a page: which page, which browser. */
static keel_term page_meta(page_proc *pp, keel_heap *h) {
  keel_term k[] = {keel_atom("page"), keel_atom("agent")};
  keel_term v[] = {keel_binary(h, pp->page, strlen(pp->page)),
                   keel_binary(h, pp->agent, strlen(pp->agent))};
  return keel_map_from(h, 2, k, v);
}

/* Sends what the session produced to the connection process. */
static void page_emit(page_proc *pp) {
  if (pp->out.len == 0)
    return;
  keel_heap h;
  keel_heap_init(&h);
  keel_term m =
      keel_tuple(&h, 2, a_out, keel_binary(&h, pp->out.data, pp->out.len));
  (void)keel_send(pp->conn, m);
  keel_heap_destroy(&h);
  pp->out.len = 0;
  if (pp->out.cap > 64 * 1024)
    keel_buf_free(&pp->out);
}

/* Keeps the presence meta's page in step with the session's. */
static void follow_page(keel_proc *self, page_proc *pp) {
  const char *page = keel_dashboard_session_page(pp->s);
  if (page == NULL || strcmp(page, pp->page) == 0)
    return;
  snprintf(pp->page, sizeof pp->page, "%s", page);
  keel_heap h;
  keel_heap_init(&h);
  (void)keel_presence_update(pp->w->presence, keel_self(self),
                             pp->w->users_topic, pp->key, page_meta(pp, &h),
                             NULL, NULL);
  keel_heap_destroy(&h);
}

/* Follows the session between shared pages (rendered by a renderer the
 * connection attaches to) and private ones (rendered here on every tick):
 * tells the connection, and takes the ticks only while they are needed.
 * Runs before the session's own output is sent, so a detach precedes the
 * private page's first frame. */
static void follow_share(page_proc *pp) {
  char key[96];
  uint64_t gen;
  bool shared = keel__dash_session_shared(pp->s, key, sizeof key, &gen);
  bool tick = pp->w->o.per_session ||
              (!shared && keel_dashboard_session_page(pp->s) != NULL);
  if (tick != pp->ticking &&
      (tick
           ? keel_pubsub_subscribe(pp->w->o.pubsub, pp->w->topic, KEEL_NIL)
           : keel_pubsub_unsubscribe(pp->w->o.pubsub, pp->w->topic)) == KEEL_OK)
    pp->ticking = tick;
  if (gen == pp->gen)
    return;
  pp->gen = gen;
  keel_heap h;
  keel_heap_init(&h);
  keel_term m = a_detach;
  if (shared) {
    const char *page = keel_dashboard_session_page(pp->s);
    keel_term params = keel__dash_session_params(pp->s);
    m = keel_tuple(&h, 4, a_attach, keel_binary(&h, key, strlen(key)),
                   keel_binary(&h, page, strlen(page)),
                   params == KEEL_NONE ? keel_atom("none") : params);
  }
  if (m != KEEL_NONE)
    (void)keel_send(pp->conn, m);
  keel_heap_destroy(&h);
}

static void page_end(keel_proc *self, page_proc *pp) {
  if (pp->started) {
    (void)keel_presence_untrack(pp->w->presence, keel_self(self),
                                pp->w->users_topic, pp->key);
    atomic_fetch_sub(&pp->w->sessions, 1);
  }
  if (pp->ticking)
    (void)keel_pubsub_unsubscribe(pp->w->o.pubsub, pp->w->topic);
  keel_dashboard_session_destroy(pp->s);
  keel_buf_free(&pp->out);
  keel_heap_destroy(&pp->heap);
  free(pp);
}

/* The page process's terminate: frees the page if the fiber did not. */
static void page_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)reason;
  if (state != NULL)
    page_end(self, state);
}

/* Handles one message, then hibernates until the next one. */
static void page_main(keel_proc *self, void *arg) {
  page_proc *pp = arg;
  if (!pp->started) {
    keel_heap h;
    keel_heap_init(&h);
    int rc = keel_presence_track(pp->w->presence, keel_self(self),
                                 pp->w->users_topic, pp->key, page_meta(pp, &h),
                                 NULL, NULL);
    keel_heap_destroy(&h);
    if (rc != KEEL_OK) {
      (void)keel_stop(self, keel_atom("dashboard_start_failed"));
      return;
    }
    pp->started = true;
    atomic_fetch_add(&pp->w->sessions, 1);
    keel__dash_session_share(pp->s, !pp->w->o.per_session);
    follow_share(pp);
  }
  keel_term msg;
  if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &msg) != KEEL_OK)
    return;
  int rc = KEEL_OK;
  if (msg == pp->w->tick) {
    rc = keel_dashboard_session_tick(pp->s, &pp->out);
  } else if (msg == a_stop) {
    keel_proc_set_state(self, NULL);
    page_end(self, pp);
    return;
  } else if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 2 &&
             keel_tuple_get(msg, 0) == a_in) {
    size_t n;
    const uint8_t *d = keel_binary_data(keel_tuple_get(msg, 1), &n);
    if (d != NULL)
      rc = keel_dashboard_session_input(pp->s, (const char *)d, n, &pp->out);
    follow_page(self, pp);
    follow_share(pp);
  }
  if (rc == KEEL_OK)
    page_emit(pp);
  (void)keel_fiber_hibernate(self, page_main, pp);
}

/* ---- the connection side ---------------------------------------------- */

typedef struct conn_side {
  keel_dashboard_web *w;
  keel_term page;      /* the page process */
  dash_render *render; /* the shared page it watches, or NULL */
} conn_side;

static int ws_init(keel_ws *ws, const keel_http_request *req, void **state) {
  keel_dashboard_web *w = *state;
  atoms();
  page_proc *pp = calloc(1, sizeof *pp);
  conn_side *cs = calloc(1, sizeof *cs);
  if (pp == NULL || cs == NULL) {
    free(pp);
    free(cs);
    return KEEL_ENOMEM;
  }
  pp->w = w;
  pp->conn = keel_ws_pid(ws);
  keel_buf_init(&pp->out);
  keel_heap_init(&pp->heap);
  snprintf(pp->page, sizeof pp->page, "none");
  size_t al = 0;
  const char *agent = keel_http_header_get(req, "User-Agent", &al);
  snprintf(pp->agent, sizeof pp->agent, "%.*s",
           (int)(al < sizeof pp->agent ? al : sizeof pp->agent - 1),
           agent != NULL ? agent : "");
  char id[32];
  snprintf(id, sizeof id, "page-%llu",
           (unsigned long long)atomic_fetch_add(&w->visitor, 1) + 1);
  pp->key = keel_binary(&pp->heap, id, strlen(id));
  int rc = keel_dashboard_session_create(w->o.dashboard, &pp->s);
  keel_spawn_opts so = {.terminate = page_terminate,
                        .link = true,
                        .stack_size = KEEL_FIBER_STACK_DEFAULT};
  if (rc == KEEL_OK)
    rc = keel_spawn_fiber(page_main, pp, &so, &cs->page);
  if (rc != KEEL_OK) {
    keel_dashboard_session_destroy(pp->s);
    keel_heap_destroy(&pp->heap);
    free(pp);
    free(cs);
    return rc;
  }
  cs->w = w;
  *state = cs;
  return KEEL_OK;
}

static int ws_message(keel_ws *ws, keel_ws_kind kind, const uint8_t *data,
                      size_t len, void *state) {
  (void)ws;
  conn_side *cs = state;
  if (kind != KEEL_WS_TEXT)
    return KEEL_OK; /* the protocol is text frames only */
  keel_heap h;
  keel_heap_init(&h);
  int rc =
      keel_send(cs->page, keel_tuple(&h, 2, a_in, keel_binary(&h, data, len)));
  keel_heap_destroy(&h);
  return rc;
}

/* {dash_attach, Key, Page, Params}: watch a shared page. */
static int conn_attach(keel_ws *ws, conn_side *cs, keel_term msg) {
  char key[96], page[16];
  if (!keel__dash_text(keel_tuple_get(msg, 1), key, sizeof key) ||
      !keel__dash_text(keel_tuple_get(msg, 2), page, sizeof page))
    return KEEL_OK;
  keel_term params = keel_tuple_get(msg, 3);
  int rc =
      keel__dash_attach(cs->w, ws, key, page,
                        keel_is_map(params) ? params : KEEL_NONE, &cs->render);
  if (rc == KEEL_OK || rc == KEEL_ESTATE)
    return KEEL_OK; /* ESTATE: the socket is closing */
  char text[256];
  int n = snprintf(text, sizeof text, "{\"page\":\"%s\",\"error\":\"%.160s\"}",
                   page, keel_strerror(rc));
  if (n <= 0 || (size_t)n >= sizeof text)
    return KEEL_OK;
  rc = keel_ws_send(ws, KEEL_WS_TEXT, text, (size_t)n);
  return rc == KEEL_EBUSY ? KEEL_OK : rc;
}

static int ws_info(keel_ws *ws, keel_term msg, void *state) {
  conn_side *cs = state;
  if (msg == a_detach) {
    keel__dash_detach(cs->w, &cs->render);
    return KEEL_OK;
  }
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 4 &&
      keel_tuple_get(msg, 0) == a_attach)
    return conn_attach(ws, cs, msg);
  if (!keel_is_tuple(msg) || keel_tuple_arity(msg) != 2 ||
      keel_tuple_get(msg, 0) != a_out)
    return KEEL_OK;
  size_t n;
  const uint8_t *d = keel_binary_data(keel_tuple_get(msg, 1), &n);
  int rc = d != NULL ? keel_ws_send(ws, KEEL_WS_TEXT, d, n) : KEEL_OK;
  return rc == KEEL_EBUSY ? KEEL_OK : rc; /* a slow reader skips a frame */
}

static void ws_end(keel_ws *ws, uint16_t code, void *state) {
  (void)ws;
  (void)code;
  conn_side *cs = state;
  if (cs == NULL)
    return;
  (void)keel_send(cs->page, a_stop); /* it cleans up and ends */
  keel__dash_detach(cs->w, &cs->render);
  free(cs);
}

static const keel_ws_handler page_handler = {ws_init, ws_message, ws_info,
                                             ws_end};

/* ---- the web object --------------------------------------------------- */

int keel_dashboard_web_create(const keel_dashboard_web_opts *opts,
                              keel_dashboard_web **out) {
  if (opts == NULL || opts->dashboard == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_dashboard_web *w = calloc(1, sizeof *w);
  if (w == NULL)
    return KEEL_ENOMEM;
  w->o = *opts;
  keel_heap_init(&w->heap);
  pthread_mutex_init(&w->reg_mu, NULL);
  w->tick = keel_atom("dashboard_tick");
  w->topic = keel_binary(&w->heap, "keel:dashboard", 14);
  w->users_topic = keel_binary(&w->heap, "keel:dashboard:users", 20);
  int rc = keel_presence_start(opts->pubsub, &w->presence);
  if (rc != KEEL_OK) {
    pthread_mutex_destroy(&w->reg_mu);
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

size_t keel_dashboard_web_renderers(const keel_dashboard_web *w) {
  return w != NULL ? atomic_load(&w->nrenderers) : 0;
}

void keel_dashboard_web_destroy(keel_dashboard_web *w) {
  if (w == NULL)
    return;
  keel__dash_renderers_stop(w);
  (void)keel_presence_stop(w->presence);
  pthread_mutex_destroy(&w->reg_mu);
  keel_heap_destroy(&w->heap);
  free(w);
}
