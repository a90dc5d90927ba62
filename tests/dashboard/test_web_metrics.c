/* GET /metrics of the dashboard's web layer (PROM2's HTTP endpoint): the
 * registry's Prometheus text, as keel_metrics_prometheus renders it (its
 * format is checked by a real parser in tests/metrics/test_prometheus.c),
 * with the exposition's content type; without a registry, an empty body.
 * Runs with 1, 2 and 8 schedulers. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <string.h>

#include "http/http_test.h"
#include "keel/dashboard_web.h"
#include "keel/metrics.h"
#include "keel/telemetry.h"
#include "runtime/rt_test.h"

static void hit(int n) {
  keel_tel_event *e;
  cr_assert_eq(keel_tel_event_parse("webtest.hit", &e), KEEL_OK);
  keel_tel_measure m[1] = {{keel_atom("count"), 1}};
  for (int i = 0; i < n; i++)
    keel_tel_execute(e, m, 1, NULL, 0);
}

/* Serves the dashboard with registry reg (may be NULL) and GETs /metrics. */
static void get_metrics(keel_metrics *reg, cli_resp *r) {
  keel_pubsub ps;
  keel_dashboard *d;
  keel_dashboard_web *w;
  keel_http_server *srv;
  cr_assert_eq(keel_pubsub_start(NULL, &ps), KEEL_OK);
  cr_assert_eq(keel_dashboard_create(NULL, &d), KEEL_OK);
  keel_dashboard_web_opts o = {.dashboard = d, .pubsub = ps, .metrics = reg};
  cr_assert_eq(keel_dashboard_web_create(&o, &w), KEEL_OK);
  keel_http_router *rt = keel_http_router_new();
  cr_assert_eq(keel_dashboard_web_mount(w, rt), KEEL_OK);
  keel_http_server_opts so = {0};
  cr_assert_eq(keel_http_server_start(&so, rt, &srv), KEEL_OK);
  int fd = cli_connect(keel_http_server_port(srv));
  cli_sends(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  cr_assert(cli_response(fd, r));
  close(fd);
  keel_http_server_stop(srv);
  keel_dashboard_web_destroy(w);
  keel_dashboard_destroy(d);
  cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
  keel_http_router_free(rt);
}

Test(dashboard_web, metrics_serves_the_prometheus_text) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_metrics *reg;
    cr_assert_eq(keel_metrics_create(&reg), KEEL_OK);
    keel_metric_spec spec = {.type = KEEL_METRIC_COUNTER,
                             .name = "webtest.hit.count",
                             .event_name = "webtest.hit"};
    cr_assert_eq(keel_metrics_add(reg, &spec), KEEL_OK);
    hit(3);
    static cli_resp r;
    get_metrics(reg, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strcasestr(r.head, "\r\nContent-Type: text/plain; "
                                          "version=0.0.4"),
                       "%s", r.head);
    keel_buf want;
    keel_buf_init(&want);
    cr_assert_eq(keel_metrics_prometheus(reg, &want), KEEL_OK);
    cr_assert_eq(r.body_len, want.len, "%.*s", (int)r.body_len, r.body);
    cr_assert_eq(memcmp(r.body, want.data, want.len), 0);
    cr_assert_not_null(strstr(r.body, "\nwebtest_hit_count 3"), "%.*s",
                       (int)r.body_len, r.body);
    keel_buf_free(&want);
    keel_metrics_destroy(reg);
    get_metrics(NULL, &r); /* no registry: an empty exposition */
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
