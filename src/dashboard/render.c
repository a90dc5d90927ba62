/*
 * render.c - one renderer process per shared dashboard page: it renders
 * the page once per tick, keeps the last rendering, and broadcasts the
 * diff as one WebSocket frame to every socket watching the page (through
 * the fastlane). See web_internal.h for the join protocol.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard/dash_internal.h"
#include "dashboard/web_internal.h"
#include "keel/clock.h"
#include "keel/json.h"
#include "keel/runtime.h"

struct dash_render {
  dash_render *next; /* in w->renderers, under reg_mu */
  _Atomic uint32_t refs;
  keel_dashboard_web *w;
  char key[96];
  char page[16];
  keel_heap pheap;         /* params and topic */
  keel_term params, topic; /* topic: "keel:dashboard:r:<key>" */
  keel_term pid;           /* the renderer process */
  unsigned pending;        /* joins not yet subscribed; under reg_mu */
  bool linked;             /* in the registry; under reg_mu */
  bool started;            /* renderer only: subscribed to the ticks */
  pthread_mutex_t mu;      /* the rendering below */
  uint64_t ver;            /* 0: nothing rendered yet */
  int err;                 /* the last render's error, 0 when fine */
  keel_heap sheap;         /* snap */
  keel_term snap;          /* the last rendering */
  keel_buf full;           /* the full frame of version full_ver */
  uint64_t full_ver;
};

static keel_term a_render, a_stop;

static void render_atoms(void) {
  if (a_render == 0) {
    a_render = keel_atom("dash_render");
    a_stop = keel_atom("dash_render_stop");
  }
}

/* Drops k references to e; the last frees it. */
static void render_drop(dash_render *e, uint32_t k) {
  if (atomic_fetch_sub(&e->refs, k) != k)
    return;
  keel_heap_destroy(&e->pheap);
  keel_heap_destroy(&e->sheap);
  keel_buf_free(&e->full);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

static void render_unref(dash_render *e) {
  render_drop(e, 1);
}

/* Takes e out of the registry (under reg_mu); drops the registry's
 * reference when it was there. */
static bool unlink_locked(dash_render *e) {
  keel_dashboard_web *w = e->w;
  if (!e->linked)
    return false;
  for (dash_render **p = &w->renderers; *p != NULL; p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      break;
    }
  e->linked = false;
  atomic_fetch_sub(&w->nrenderers, 1);
  return true;
}

static void render_unlink(dash_render *e) {
  pthread_mutex_lock(&e->w->reg_mu);
  bool was = unlink_locked(e);
  pthread_mutex_unlock(&e->w->reg_mu);
  if (was)
    render_unref(e);
}

/* {"page": P, kind: T, "v": ver} as JSON into out. */
static int encode_frame(const dash_render *e, const char *kind, keel_term t,
                        uint64_t ver, keel_buf *out) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term k[] = {keel_atom("page"), keel_atom(kind), keel_atom("v")};
  keel_term v[] = {keel_atom(e->page), t, keel_uint(&h, ver)};
  keel_term m = keel_map_from(&h, 3, k, v);
  int rc = m == KEEL_NONE ? KEEL_ENOMEM : keel_json_encode(out, m, NULL);
  keel_heap_destroy(&h);
  return rc;
}

static int encode_error(const dash_render *e, int err, keel_buf *out) {
  keel_heap h;
  keel_heap_init(&h);
  const char *s = keel_strerror(err);
  keel_term k[] = {keel_atom("page"), keel_atom("error")};
  keel_term v[] = {keel_atom(e->page), keel_binary(&h, s, strlen(s))};
  keel_term m = keel_map_from(&h, 2, k, v);
  int rc = m == KEEL_NONE ? KEEL_ENOMEM : keel_json_encode(out, m, NULL);
  keel_heap_destroy(&h);
  return rc;
}

/* Broadcasts a JSON frame to the page's sockets (call under e->mu). */
static void broadcast_locked(dash_render *e, const keel_buf *b) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term bin = keel_binary(&h, b->data, b->len);
  if (bin != KEEL_NONE)
    (void)keel_pubsub_local_broadcast(e->w->o.pubsub, e->topic, bin, NULL);
  keel_heap_destroy(&h);
}

/* An error of the page: broadcast once, again only when it changes. */
static void render_failed(dash_render *e, int err) {
  if (err == e->err)
    return;
  keel_buf b;
  keel_buf_init(&b);
  bool ok = encode_error(e, err, &b) == KEEL_OK;
  pthread_mutex_lock(&e->mu);
  e->err = err;
  if (ok)
    broadcast_locked(e, &b);
  pthread_mutex_unlock(&e->mu);
  keel_buf_free(&b);
}

/* One rendering: the diff from the last one goes out when the page
 * changed; the first rendering (and the first after an error) goes out
 * whole. */
static void render_tick(dash_render *e) {
  keel_heap nh, dh;
  keel_heap_init(&nh);
  keel_heap_init(&dh);
  keel_term snap, diff = KEEL_NONE;
  int rc = keel_dashboard_page_snapshot(e->w->o.dashboard, e->page, e->params,
                                        &nh, &snap);
  if (rc != KEEL_OK) {
    keel_heap_destroy(&nh);
    render_failed(e, rc);
    return;
  }
  bool whole = e->ver == 0 || e->err != 0;
  if (!whole && keel_dashboard_diff(e->snap, snap, &dh, &diff) != KEEL_OK)
    whole = true;
  if (!whole && keel_dashboard_diff_empty(diff)) {
    keel_heap_destroy(&nh);
    keel_heap_destroy(&dh);
    return;
  }
  keel_buf b;
  keel_buf_init(&b);
  if (encode_frame(e, whole ? "full" : "diff", whole ? snap : diff, e->ver + 1,
                   &b) != KEEL_OK) {
    keel_heap_destroy(&nh);
    keel_heap_destroy(&dh);
    keel_buf_free(&b);
    return; /* out of memory: the next tick diffs from the old one */
  }
  keel_heap old = e->sheap;
  pthread_mutex_lock(&e->mu);
  e->sheap = nh;
  e->snap = snap;
  e->ver++;
  e->err = 0;
  if (whole) { /* it is also the full frame joiners send */
    keel_buf t = e->full;
    e->full = b;
    b = t;
    e->full_ver = e->ver;
    broadcast_locked(e, &e->full);
  } else {
    broadcast_locked(e, &b);
  }
  pthread_mutex_unlock(&e->mu);
  keel_heap_destroy(&old);
  keel_heap_destroy(&dh);
  keel_buf_free(&b);
}

/* Whether nobody watches: then e leaves the registry (a join finds it no
 * more) and the renderer stops. */
static bool render_idle(dash_render *e) {
  keel_dashboard_web *w = e->w;
  pthread_mutex_lock(&w->reg_mu);
  /* pending first: a join counted there has subscribed once it is not. */
  bool idle = e->pending == 0 &&
              keel_pubsub_count(w->o.pubsub, e->topic) == 0 && e->linked;
  if (idle)
    unlink_locked(e);
  pthread_mutex_unlock(&w->reg_mu);
  if (idle)
    render_unref(e); /* the registry's reference */
  return idle;
}

static keel_handler_status render_main(keel_proc *self, keel_term msg,
                                       void *st) {
  dash_render *e = st;
  keel_dashboard_web *w = e->w;
  if (msg == a_stop) {
    render_unlink(e);
    return keel_stop(self, keel_atom("normal"));
  }
  if (!e->started) {
    e->started = true;
    if (keel_pubsub_subscribe(w->o.pubsub, w->topic, KEEL_NIL) != KEEL_OK) {
      render_unlink(e);
      return keel_stop(self, keel_atom("dashboard_render_failed"));
    }
  }
  if (msg == a_render || msg == w->tick)
    render_tick(e);
  if (msg == w->tick && render_idle(e))
    return keel_stop(self, keel_atom("normal"));
  return KEEL_CONTINUE;
}

/* The renderer's end, however it came: out of the registry, and its
 * reference dropped (connections may still hold theirs). A renderer that
 * did not stop on its own (killed from the processes page, say) tells the
 * sockets still watching to join again: their join starts a new one. */
static void render_terminate(keel_proc *self, keel_term reason, void *st) {
  (void)self;
  dash_render *e = st;
  (void)keel_pubsub_unsubscribe(e->w->o.pubsub, e->w->topic);
  pthread_mutex_lock(&e->w->reg_mu);
  bool was = unlink_locked(e);
  pthread_mutex_unlock(&e->w->reg_mu);
  if (reason != keel_atom("normal")) {
    char text[64];
    int n = snprintf(text, sizeof text, "{\"page\":\"%s\",\"rejoin\":true}",
                     e->page);
    keel_buf b = {.data = (uint8_t *)text, .len = (size_t)n};
    pthread_mutex_lock(&e->mu);
    broadcast_locked(e, &b);
    pthread_mutex_unlock(&e->mu);
  }
  render_drop(e, was ? 2 : 1); /* the registry's, and the renderer's */
}

/* A new renderer of key, started and in the registry (under reg_mu). */
static int render_start_locked(keel_dashboard_web *w, const char *key,
                               const char *page, keel_term params,
                               dash_render **out) {
  dash_render *e = calloc(1, sizeof *e);
  if (e == NULL)
    return KEEL_ENOMEM;
  e->w = w;
  snprintf(e->key, sizeof e->key, "%s", key);
  snprintf(e->page, sizeof e->page, "%s", page);
  keel_heap_init(&e->pheap);
  keel_heap_init(&e->sheap);
  keel_buf_init(&e->full);
  pthread_mutex_init(&e->mu, NULL);
  /* Numbered: a renderer replacing a killed one has its own topic, which
   * the sockets still subscribed to the old one do not hear. */
  char topic[160]; /* a key is shorter than 96 bytes */
  int tn = snprintf(topic, sizeof topic, "keel:dashboard:r:%s:%llu", e->key,
                    (unsigned long long)++w->renderer_seq);
  e->topic = keel_binary(&e->pheap, topic, (size_t)tn);
  e->params =
      params == KEEL_NONE ? KEEL_NONE : keel_term_copy(&e->pheap, params);
  e->snap = KEEL_NONE;
  atomic_init(&e->refs, 2); /* the registry's and the renderer's */
  int rc =
      e->topic == KEEL_NONE || (params != KEEL_NONE && e->params == KEEL_NONE)
          ? KEEL_ENOMEM
          : KEEL_OK;
  keel_spawn_opts so = {.terminate = render_terminate};
  if (rc == KEEL_OK)
    rc = keel_spawn(render_main, e, &so, &e->pid);
  if (rc != KEEL_OK) {
    atomic_store(&e->refs, 1);
    render_unref(e);
    return rc;
  }
  e->linked = true;
  e->next = w->renderers;
  w->renderers = e;
  atomic_fetch_add(&w->nrenderers, 1);
  (void)keel_send(e->pid, a_render); /* the first rendering, at once */
  *out = e;
  return KEEL_OK;
}

/* Sends the current full snapshot (or the page's error) to ws (under
 * e->mu). Nothing before the first rendering: that one is broadcast
 * whole. */
static int send_full_locked(dash_render *e, keel_ws *ws) {
  if (e->err != 0) {
    keel_buf b;
    keel_buf_init(&b);
    int rc = encode_error(e, e->err, &b);
    if (rc == KEEL_OK)
      rc = keel_ws_send(ws, KEEL_WS_TEXT, b.data, b.len);
    keel_buf_free(&b);
    return rc;
  }
  if (e->ver == 0)
    return KEEL_OK;
  if (e->full_ver != e->ver) {
    e->full.len = 0;
    int rc = encode_frame(e, "full", e->snap, e->ver, &e->full);
    if (rc != KEEL_OK)
      return rc;
    e->full_ver = e->ver;
  }
  return keel_ws_send(ws, KEEL_WS_TEXT, e->full.data, e->full.len);
}

int keel__dash_attach(keel_dashboard_web *w, keel_ws *ws, const char *key,
                      const char *page, keel_term params, dash_render **cur) {
  render_atoms();
  keel__dash_detach(w, cur);
  pthread_mutex_lock(&w->reg_mu);
  dash_render *e = w->renderers;
  while (e != NULL && strcmp(e->key, key) != 0)
    e = e->next;
  int rc = e != NULL ? KEEL_OK : render_start_locked(w, key, page, params, &e);
  if (rc == KEEL_OK) {
    e->pending++;
    atomic_fetch_add(&e->refs, 1); /* the connection's */
  }
  pthread_mutex_unlock(&w->reg_mu);
  if (rc != KEEL_OK)
    return rc;
  pthread_mutex_lock(&e->mu);
  rc = keel_ws_fastlane_subscribe(ws, w->o.pubsub, e->topic, KEEL_WS_TEXT);
  if (rc == KEEL_OK)
    rc = send_full_locked(e, ws);
  pthread_mutex_unlock(&e->mu);
  pthread_mutex_lock(&w->reg_mu);
  e->pending--;
  pthread_mutex_unlock(&w->reg_mu);
  if (rc != KEEL_OK) {
    (void)keel_pubsub_unsubscribe(w->o.pubsub, e->topic);
    render_unref(e);
    return rc;
  }
  *cur = e;
  return KEEL_OK;
}

void keel__dash_detach(keel_dashboard_web *w, dash_render **cur) {
  dash_render *e = *cur;
  if (e == NULL)
    return;
  /* Under e->mu no broadcast of e is under way: none follows. */
  pthread_mutex_lock(&e->mu);
  (void)keel_pubsub_unsubscribe(w->o.pubsub, e->topic);
  pthread_mutex_unlock(&e->mu);
  render_unref(e);
  *cur = NULL;
}

void keel__dash_renderers_stop(keel_dashboard_web *w) {
  render_atoms();
  pthread_mutex_lock(&w->reg_mu);
  for (dash_render *e = w->renderers; e != NULL; e = e->next)
    (void)keel_send(e->pid, a_stop);
  pthread_mutex_unlock(&w->reg_mu);
  uint64_t limit = keel_monotonic_ns() + UINT64_C(5000000000);
  while (atomic_load(&w->nrenderers) > 0 && keel_monotonic_ns() < limit)
    sched_yield();
}

keel_term keel__dash_web_renderer(keel_dashboard_web *w, const char *key) {
  pthread_mutex_lock(&w->reg_mu);
  dash_render *e = w->renderers;
  while (e != NULL && strcmp(e->key, key) != 0)
    e = e->next;
  keel_term pid = e != NULL ? e->pid : KEEL_NONE;
  pthread_mutex_unlock(&w->reg_mu);
  return pid;
}

int keel__dash_web_peek(keel_dashboard_web *w, const char *key, keel_heap *h,
                        keel_term *snap, uint64_t *ver) {
  pthread_mutex_lock(&w->reg_mu);
  dash_render *e = w->renderers;
  while (e != NULL && strcmp(e->key, key) != 0)
    e = e->next;
  int rc = KEEL_ENOENT;
  if (e != NULL) {
    pthread_mutex_lock(&e->mu);
    if (e->ver > 0 && e->snap != KEEL_NONE) {
      *snap = keel_term_copy(h, e->snap);
      *ver = e->ver;
      rc = *snap == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
    }
    pthread_mutex_unlock(&e->mu);
  }
  pthread_mutex_unlock(&w->reg_mu);
  return rc;
}
