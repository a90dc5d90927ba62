/*
 * web.c - the web side of `keel run` (see web.h).
 */
#include "web.h"

#include <stdlib.h>

#include "keel/dashboard.h"
#include "keel/dashboard_web.h"
#include "keel/error.h"
#include "keel/http.h"
#include "keel/metrics.h"
#include "keel/pubsub.h"

struct keel_web {
  keel_metrics *metrics;
  keel_dashboard *dash;
  keel_pubsub pubsub;
  keel_dashboard_web *web;
  keel_poller *poller;
  keel_http_router *router;
  keel_http_server *server;
};

/* The metrics the node exports and charts. */
static const keel_metric_spec specs[] = {
    {.type = KEEL_METRIC_LAST_VALUE,
     .name = "keel.vm.system_counts.process_count",
     .description = "Processes alive"},
    {.type = KEEL_METRIC_LAST_VALUE,
     .name = "keel.vm.system_counts.messages_sent",
     .description = "Messages sent since the node started"},
    {.type = KEEL_METRIC_LAST_VALUE,
     .name = "keel.vm.system_counts.timer_count",
     .description = "Timers pending"},
    {.type = KEEL_METRIC_COUNTER,
     .name = "keel.supervisor.child_restart.count",
     .description = "Children restarted by their supervisor"},
};

/* Every refresh interval: a sample of the node, then a tick to every open
 * page. */
static void refresh(void *arg) {
  keel_web *w = arg;
  (void)keel_dashboard_sample(w->dash);
  (void)keel_dashboard_web_tick(w->web);
}

void keel_web_stop(keel_web *w) {
  if (w == NULL)
    return;
  keel_http_server_stop(w->server);
  keel_poller_stop(w->poller);
  keel_http_router_free(w->router);
  keel_dashboard_web_destroy(w->web);
  if (w->pubsub.id != 0)
    (void)keel_pubsub_stop(w->pubsub);
  keel_dashboard_destroy(w->dash);
  keel_metrics_destroy(w->metrics);
  free(w);
}

static int add_metrics(keel_web *w) {
  int rc = keel_metrics_create(&w->metrics);
  for (size_t i = 0; rc == KEEL_OK && i < sizeof specs / sizeof specs[0]; i++)
    rc = keel_metrics_add(w->metrics, &specs[i]);
  return rc;
}

int keel_web_start(const keel_web_opts *opts, keel_web **out) {
  keel_web *w = calloc(1, sizeof *w);
  if (w == NULL)
    return KEEL_ENOMEM;
  int rc = add_metrics(w);
  keel_dashboard_opts dopts = {.metrics = w->metrics,
                               .sup_roots = &opts->root_sup,
                               .nsup_roots = 1,
                               .node_name = "keel demo"};
  if (rc == KEEL_OK)
    rc = keel_dashboard_create(&dopts, &w->dash);
  if (rc == KEEL_OK)
    rc = keel_pubsub_start(NULL, &w->pubsub);
  keel_dashboard_web_opts wo = {
      .dashboard = w->dash, .metrics = w->metrics, .pubsub = w->pubsub};
  if (rc == KEEL_OK)
    rc = keel_dashboard_web_create(&wo, &w->web);
  keel_poller_fn fns[] = {refresh};
  void *args[] = {w};
  keel_poller_opts po = {.period_ms = KEEL_DASHBOARD_INTERVAL_MS,
                         .node_stats = true,
                         .fns = fns,
                         .args = args,
                         .nfns = 1};
  if (rc == KEEL_OK)
    rc = keel_poller_start(&po, &w->poller);
  w->router = rc == KEEL_OK ? keel_http_router_new() : NULL;
  if (rc == KEEL_OK && w->router == NULL)
    rc = KEEL_ENOMEM;
  if (rc == KEEL_OK)
    rc = keel_dashboard_web_mount(w->web, w->router);
  keel_http_server_opts so = {.bind = opts->bind, .port = opts->port};
  if (rc == KEEL_OK)
    rc = keel_http_server_start(&so, w->router, &w->server);
  if (rc != KEEL_OK) {
    keel_web_stop(w);
    return rc;
  }
  *out = w;
  return KEEL_OK;
}

uint16_t keel_web_port(const keel_web *w) {
  return w != NULL ? keel_http_server_port(w->server) : 0;
}
