/*
 * web_internal.h - the web side's state shared by web.c (routes, page
 * processes) and render.c (one renderer per shared page).
 */
#ifndef KEEL_DASH_WEB_INTERNAL_H
#define KEEL_DASH_WEB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/dashboard_web.h"
#include "keel/presence.h"

typedef struct dash_render dash_render;

struct keel_dashboard_web {
  keel_dashboard_web_opts o;
  keel_presence presence;
  keel_term tick;               /* the atom dashboard_tick */
  keel_term topic, users_topic; /* binaries in heap */
  keel_heap heap;
  _Atomic size_t sessions;
  _Atomic uint64_t visitor; /* numbers the open pages */
  pthread_mutex_t reg_mu;   /* the renderers below */
  dash_render *renderers;   /* running, by key */
  _Atomic size_t nrenderers;
  uint64_t renderer_seq; /* numbers the renderers' topics; under reg_mu */
};

/* One shared page (a key of keel__dash_shared_key) is rendered once per
 * tick by one renderer process, which broadcasts each change as one JSON
 * text frame on the page's topic; the sockets watching it are fastlane
 * subscribers of that topic (keel_ws_fastlane_subscribe), so a frame is
 * encoded once and written to every socket by the renderer's thread.
 *
 * Joining without a gap or a duplicate: the renderer changes its version
 * and broadcasts the frame that leads to it under the page's mutex, and a
 * joining connection subscribes and sends the full snapshot of the
 * current version under the same mutex, from its own callback (so the
 * fastlane queues later frames behind that snapshot). A socket thus sees
 * the snapshot of version N, then the diffs to N+1, N+2, ... Frames carry
 * their version ("v"), which the browser checks.
 *
 * A renderer runs while someone watches: a joining connection counts as
 * pending (under reg_mu) until it has subscribed, and at each tick the
 * renderer stops (leaving the registry under reg_mu) when nothing is
 * pending and its topic has no subscriber. A renderer that ends otherwise
 * (killed) broadcasts {"page": P, "rejoin": true}: the browsers join
 * again, which starts a new renderer. */

/* Attaches the calling connection process (in a callback of ws) to the
 * renderer of key (started with page and params if none runs), after
 * detaching it from *cur: subscribes ws to the renderer's topic and sends
 * the current full snapshot. *cur receives the renderer (a reference the
 * connection holds until keel__dash_detach). Errors: KEEL_ENOMEM, spawn
 * and subscribe errors (then *cur is NULL). */
int keel__dash_attach(keel_dashboard_web *w, keel_ws *ws, const char *key,
                      const char *page, keel_term params, dash_render **cur);

/* Unsubscribes the calling connection process from *cur's topic and
 * drops its reference; *cur becomes NULL. NULL *cur is a no-op. */
void keel__dash_detach(keel_dashboard_web *w, dash_render **cur);

/* Stops every renderer and waits (bounded) until they have left. */
void keel__dash_renderers_stop(keel_dashboard_web *w);

/* For tests: a copy in h of the current rendering of key and its version.
 * KEEL_OK, KEEL_ENOENT (no renderer of key, or nothing rendered yet). */
int keel__dash_web_peek(keel_dashboard_web *w, const char *key, keel_heap *h,
                        keel_term *snap, uint64_t *ver);

/* For tests: the pid of the renderer of key, or KEEL_NONE. */
keel_term keel__dash_web_renderer(keel_dashboard_web *w, const char *key);

#endif /* KEEL_DASH_WEB_INTERNAL_H */
