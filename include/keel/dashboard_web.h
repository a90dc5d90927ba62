/*
 * keel/dashboard_web.h - serving a keel_dashboard over Keel's HTTP server.
 *
 * keel_dashboard_mount adds the dashboard's routes to a router:
 *   GET /            the single-page UI (index.html) and its assets
 *   GET /<asset>     app.js, app.css, chart.js, diff.js
 *   GET /api/<page>  the page's snapshot as JSON (query: the page params)
 *   GET /metrics     the Prometheus text of the metrics registry
 *   GET /live        the WebSocket of one open page: a connection process
 *                    per page runs a dashboard session, answers the
 *                    client's frames and pushes a diff every refresh
 *                    interval when the page changed
 * Mount it before any catch-all route of your own.
 */
#ifndef KEEL_DASHBOARD_WEB_H
#define KEEL_DASHBOARD_WEB_H

#include "keel/dashboard.h"
#include "keel/http.h"
#include "keel/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Adds the routes above to r. d (and metrics, which may be NULL: /metrics
 * then answers an empty exposition) are borrowed: they must outlive every
 * server using r. KEEL_OK, KEEL_EINVAL (r or d NULL), KEEL_ENOMEM.
 * Not thread-safe (build the router before starting the server). */
int keel_dashboard_mount(keel_http_router *r, keel_dashboard *d,
                         keel_metrics *metrics);

/* WebSocket page processes currently open on any mounted dashboard. */
size_t keel_dashboard_web_sessions(void);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_DASHBOARD_WEB_H */
