/*
 * keel/dashboard.h - the live dashboard of a node (layer 7, dashboard):
 * page snapshots as terms, a LiveView-style diff between two snapshots,
 * the JSON protocol of one WebSocket per page (docs/dashboard.md) and the
 * browser UI's files, embedded in the library.
 *
 * Nothing here touches the network: the HTTP routes and the per-page
 * WebSocket process call these functions and move bytes.
 *
 * Objects:
 *   keel_dashboard          the sampler of one node: the previous samples
 *                           (scheduler times, reductions per process) that
 *                           rates are computed from, a ring of recent
 *                           samples per metric, the presence list and the
 *                           supervision roots. One per node; created and
 *                           destroyed by the node's owner.
 *   keel_dashboard_session  one connected page: its page name, params and
 *                           last snapshot. Owned by the page's process.
 *
 * Snapshots are maps with atom keys (JSON-encodable with keel/json.h);
 * tables of rows are lists of maps each with an `id` key, so the diff can
 * key them. The page names are home, processes, process, supervision,
 * tables, metrics and presence.
 */
#ifndef KEEL_DASHBOARD_H
#define KEEL_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/error.h"
#include "keel/metrics.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default refresh period of a page and of the sampler, in ms. */
#define KEEL_DASHBOARD_INTERVAL_MS 500u
/* Default samples kept per metric series (one minute at 500 ms). */
#define KEEL_DASHBOARD_HISTORY 120u
/* Default and largest number of rows of the processes page. */
#define KEEL_DASHBOARD_ROWS 50u
#define KEEL_DASHBOARD_MAX_ROWS 1000u
/* Most pids listed per relation kind in a process's detail. */
#define KEEL_DASHBOARD_RELATIONS 32u
/* Most supervision roots, and deepest supervision tree walked. */
#define KEEL_DASHBOARD_MAX_ROOTS 16u
#define KEEL_DASHBOARD_MAX_DEPTH 16u

/* Options of keel_dashboard_create. Zero-initialise, then set what you
 * need. */
typedef struct keel_dashboard_opts {
  /* The node's metrics registry (may be NULL: the metrics page is empty).
   * Borrowed: it must outlive the dashboard. */
  keel_metrics *metrics;
  /* Samples kept per metric series; 0 = KEEL_DASHBOARD_HISTORY. */
  unsigned history;
  /* A snapshot older than this triggers a new sample (see
   * keel_dashboard_sample); 0 = KEEL_DASHBOARD_INTERVAL_MS. */
  unsigned interval_ms;
  /* The supervisors the supervision page shows (local pids or registered
   * names); copied. At most KEEL_DASHBOARD_MAX_ROOTS. */
  const keel_term *sup_roots;
  size_t nsup_roots;
  /* The node's name shown in the header (may be NULL: "keel"). Copied. */
  const char *node_name;
} keel_dashboard_opts;

typedef struct keel_dashboard keel_dashboard;

/* Creates a dashboard, takes its first sample when a node runs, and
 * attaches a telemetry handler counting supervisor restarts.
 * Errors: KEEL_EINVAL (out NULL, too many roots, a root neither a local pid
 * nor an atom), KEEL_ENOMEM, keel_tel_attach's errors. */
int keel_dashboard_create(const keel_dashboard_opts *opts,
                          keel_dashboard **out);

/* Detaches the telemetry handler and frees the dashboard. NULL is ignored.
 * No other call on d may run at the same time. */
void keel_dashboard_destroy(keel_dashboard *d);

/* Takes a sample now: scheduler times, each process's reductions and the
 * current value of every metric series (appended to its ring). Rates on
 * the pages are computed between the last two samples. Call it every
 * interval from one ticker (a timer process or a keel_poller) so the
 * metric history fills while nobody watches; snapshots also take one when
 * the last is older than opts.interval_ms. Errors: KEEL_ESTATE (no node),
 * KEEL_ENOMEM. Thread-safe (serialised inside). */
int keel_dashboard_sample(keel_dashboard *d);

/* Replaces the presence list shown on the presence page: a proper list of
 * JSON-encodable maps, each with an `id` key (copied). The lead's presence
 * tracker feeds it. Errors: KEEL_EINVAL (not a list). Thread-safe. */
int keel_dashboard_set_presence(keel_dashboard *d, keel_term list);

/* Builds in h the snapshot of `page` (a NUL-terminated page name) with
 * params (a map with atom or binary keys, or KEEL_NONE for defaults):
 *   home         -
 *   processes    sort (reductions|memory|message_queue_len|name|pid),
 *                dir (asc|desc), limit (1..KEEL_DASHBOARD_MAX_ROWS)
 *   process      pid (a printed pid such as "<0.12.0>")
 *   supervision  -  (walks which_children from every root: call only from
 *                a fiber process or a thread that runs no process)
 *   tables, metrics, presence  -
 * Errors: KEEL_ENOENT (unknown page), KEEL_EBADARG (bad params),
 * KEEL_ENOPROC (process page: no such process), KEEL_ESTATE (no node),
 * KEEL_ENOMEM. Thread-safe; h belongs to the caller's thread. */
int keel_dashboard_page_snapshot(keel_dashboard *d, const char *page,
                                 keel_term params, keel_heap *h,
                                 keel_term *out);

/* The diff from snapshot old to snapshot new, built in h (docs/dashboard.md
 * has its grammar): the empty map #{} when they are exactly equal; else a
 * node that keel_dashboard_diff_apply (and the browser's applyDiff) turns
 * old into new. Maps diff key by key; lists of maps with unique `id` keys
 * diff row by row; other lists that only lost a head and gained a tail
 * (time series) send the shift and the new tail; everything else is sent
 * whole. JSON-encodable when old and new are. Errors: KEEL_EINVAL,
 * KEEL_ENOMEM. Reentrant. */
int keel_dashboard_diff(keel_term old, keel_term new_, keel_heap *h,
                        keel_term *out);

/* Whether a diff is the empty one (nothing changed). */
bool keel_dashboard_diff_empty(keel_term diff);

/* Applies a diff of keel_dashboard_diff to old, building the result in h.
 * Errors: KEEL_EBADARG (a malformed diff, or one that does not fit old),
 * KEEL_EINVAL, KEEL_ENOMEM. Reentrant. */
int keel_dashboard_diff_apply(keel_term old, keel_term diff, keel_heap *h,
                              keel_term *out);

/* Handles a client event (a decoded JSON object, keys binaries or atoms):
 *   {"event":"kill","pid":"<0.12.0>"}     exit(Pid, kill)
 *   {"event":"sort","by":"memory","dir":"desc"}  new params
 *   {"event":"limit","limit":100}          new params
 *   {"event":"select","pid":"<0.12.0>"}   new params (process detail)
 * params is the page's current params map (KEEL_NONE: none); *params_out
 * receives the new params (built in h; the same term when unchanged) and
 * *reply a map for the client, {"ok":true} or {"error":"..."}. Errors:
 * KEEL_EBADARG (not an event), KEEL_EINVAL, KEEL_ENOMEM; a kill of a dead
 * or malformed pid is an error reply, not an error code. Thread-safe. */
int keel_dashboard_handle_event(keel_dashboard *d, keel_term event,
                                keel_term params, keel_heap *h,
                                keel_term *params_out, keel_term *reply);

/* ---- A page session: the protocol in bytes ------------------------------ */

typedef struct keel_dashboard_session keel_dashboard_session;

/* Creates a session of d for one WebSocket. Errors: KEEL_EINVAL,
 * KEEL_ENOMEM. The session belongs to one process (not thread-safe). */
int keel_dashboard_session_create(keel_dashboard *d,
                                  keel_dashboard_session **out);

/* Frees a session. NULL is ignored. */
void keel_dashboard_session_destroy(keel_dashboard_session *s);

/* Handles one text frame from the client (JSON: {"join":...}, {"event":
 * ...}, {"ping":...}) and appends the JSON text frame to send back, if
 * any, to out (nothing appended: send nothing). A malformed frame gets an
 * {"error":...} reply, never a crash. Errors: KEEL_EINVAL, KEEL_ENOMEM. */
int keel_dashboard_session_input(keel_dashboard_session *s, const char *text,
                                 size_t len, keel_buf *out);

/* The periodic refresh (every KEEL_DASHBOARD_INTERVAL_MS): appends
 * {"diff":...} to out when the joined page changed since the last frame,
 * nothing when it did not or no page is joined. Errors: KEEL_EINVAL,
 * KEEL_ENOMEM. */
int keel_dashboard_session_tick(keel_dashboard_session *s, keel_buf *out);

/* The page the session has joined, or NULL. */
const char *keel_dashboard_session_page(const keel_dashboard_session *s);

/* The JSON HTTP API: appends to out the JSON snapshot of /api/<page>,
 * query being the URL's query string without '?' (may be NULL; k=v pairs
 * as the page's params, percent-decoded). Errors: as
 * keel_dashboard_page_snapshot, KEEL_EINVAL. */
int keel_dashboard_api(keel_dashboard *d, const char *page, const char *query,
                       keel_buf *out);

/* ---- Browser assets ------------------------------------------------------ */

/* The embedded file served at `path` ("/" is "/index.html"; a query string
 * is ignored): *data, *len and *content_type (a MIME type with charset)
 * point to static storage. KEEL_OK or KEEL_ENOENT. Thread-safe. */
int keel_dashboard_asset(const char *path, const uint8_t **data, size_t *len,
                         const char **content_type);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_DASHBOARD_H */
