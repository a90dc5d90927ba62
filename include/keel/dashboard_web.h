/*
 * keel/dashboard_web.h - serving a keel_dashboard over Keel's HTTP server.
 *
 * A keel_dashboard_web adds the dashboard's routes to a router:
 *   GET /            the single-page UI (index.html) and its assets
 *   GET /<asset>     app.js, app.css, chart.js, diff.js
 *   GET /api/<page>  the page's snapshot as JSON (query: the page params)
 *   GET /metrics     the Prometheus text of the metrics registry
 *   GET /live        the WebSocket of one open page
 * Each open page is its WebSocket's connection process and a page
 * process running one dashboard session, which answers the client's
 * frames. Pages that every viewer sees alike (home, processes without a
 * selection, supervision, tables, metrics, presence; per page params) are
 * rendered once per tick by one renderer process per page, running only
 * while some socket watches it: it keeps the last rendering and
 * broadcasts the diff as one WebSocket frame, written to every watching
 * socket through the WebSocket fastlane; a socket joining gets the full
 * snapshot of the current version first, then the diffs after it. Pages
 * of private state (a process's detail) are rendered by their own page
 * process on every tick. Ticks come through PubSub: renderers and private
 * pages subscribe to the topic "keel:dashboard", and
 * keel_dashboard_web_tick (called every KEEL_DASHBOARD_INTERVAL_MS by a
 * ticker such as a keel_poller) broadcasts one message to all of them.
 * Open pages are tracked in a Presence list (topic "keel:dashboard:users")
 * which the presence page shows: one entry per open page with the page it
 * shows, when it joined and the browser's user agent.
 */
#ifndef KEEL_DASHBOARD_WEB_H
#define KEEL_DASHBOARD_WEB_H

#include <stddef.h>

#include "keel/dashboard.h"
#include "keel/http.h"
#include "keel/metrics.h"
#include "keel/pubsub.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_dashboard_web_opts {
  keel_dashboard *dashboard; /* required; borrowed */
  keel_metrics *metrics;     /* may be NULL: /metrics is empty; borrowed */
  keel_pubsub pubsub;        /* required: carries the ticks, the shared pages'
                                frames and presence diffs */
  /* Render every page in its own session process on every tick, as
   * before shared renderers (to compare their cost; false: share). */
  bool per_session;
} keel_dashboard_web_opts;

typedef struct keel_dashboard_web keel_dashboard_web;

/* Creates the web side (and its Presence instance on opts->pubsub).
 * KEEL_OK with *out set; KEEL_EINVAL (no dashboard), presence's errors,
 * KEEL_ENOMEM. Free with keel_dashboard_web_destroy after every server
 * using its routes has stopped. */
int keel_dashboard_web_create(const keel_dashboard_web_opts *opts,
                              keel_dashboard_web **out);

/* Adds the routes above to r (before any catch-all route of your own).
 * KEEL_OK or KEEL_ENOMEM. Not thread-safe: build the router first. */
int keel_dashboard_web_mount(keel_dashboard_web *w, keel_http_router *r);

/* One refresh: publishes the presence list to the dashboard and
 * broadcasts a tick to every renderer and every page on a private page.
 * Returns the number of ticks sent (renderers and private pages), or a
 * negative error. Thread-safe; any thread or process. */
long keel_dashboard_web_tick(keel_dashboard_web *w);

/* Pages open now. Thread-safe. */
size_t keel_dashboard_web_sessions(const keel_dashboard_web *w);

/* Shared-page renderers running now (one per shared page and params
 * that some open page watches). Thread-safe. */
size_t keel_dashboard_web_renderers(const keel_dashboard_web *w);

/* Stops the renderers (waiting, at most 5 s, until they have ended: call
 * it from a thread that is not a process) and the presence instance, and
 * frees w. NULL is a no-op. */
void keel_dashboard_web_destroy(keel_dashboard_web *w);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_DASHBOARD_WEB_H */
