/* Prometheus exposition (PROM1) read back by a real parser: python3's
 * prometheus_client (Debian: python3-prometheus-client). The expected
 * families and samples below are worked out by hand from the events the
 * test emits. Skipped, with a message, when no python3 has the module. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/metrics.h"

static const char *python(void) {
  static const char *const candidates[] = {"python3", "/usr/bin/python3"};
  for (size_t i = 0; i < 2; i++) {
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "%s -c 'import prometheus_client' >/dev/null 2>&1", candidates[i]);
    if (system(cmd) == 0)
      return candidates[i];
  }
  return NULL;
}

typedef struct expected {
  const char *name, *labels;
  double value;
  int seen;
  double rel; /* relative tolerance (quantiles: the sketch's 1/32) */
} expected;

static expected want[] = {
    {"app_http_requests_total", "method=\"get\",path=\"/a\\\"b\\\\c\\nd\"", 2,
     0, 0},
    {"app_http_requests_total", "method=\"post\",path=\"/x\"", 1, 0, 0},
    {"app_http_bytes_total", "method=\"get\"", 150, 0, 0},
    {"app_http_bytes_total", "method=\"post\"", 7, 0, 0},
    {"app_pool_size", "", 17, 0, 0},
    /* Exact nearest-rank quantiles of {0.004, 0.2} and {3}. */
    {"app_http_latency", "method=\"get\",quantile=\"0.5\"", 0.004, 0, 1.0 / 32},
    {"app_http_latency", "method=\"get\",quantile=\"0.9\"", 0.2, 0, 1.0 / 32},
    {"app_http_latency", "method=\"get\",quantile=\"0.99\"", 0.2, 0, 1.0 / 32},
    {"app_http_latency", "method=\"post\",quantile=\"0.5\"", 3, 0, 1.0 / 32},
    {"app_http_latency", "method=\"post\",quantile=\"0.9\"", 3, 0, 1.0 / 32},
    {"app_http_latency", "method=\"post\",quantile=\"0.99\"", 3, 0, 1.0 / 32},
    {"app_http_latency_sum", "method=\"get\"", 0.204, 0, 0},
    {"app_http_latency_count", "method=\"get\"", 2, 0, 0},
    {"app_http_latency_sum", "method=\"post\"", 3, 0, 0},
    {"app_http_latency_count", "method=\"post\"", 1, 0, 0},
    {"app_http_duration_bucket", "le=\"0.005\",method=\"get\"", 1, 0, 0},
    {"app_http_duration_bucket", "le=\"0.1\",method=\"get\"", 1, 0, 0},
    {"app_http_duration_bucket", "le=\"2.5\",method=\"get\"", 2, 0, 0},
    {"app_http_duration_bucket", "le=\"+Inf\",method=\"get\"", 2, 0, 0},
    {"app_http_duration_sum", "method=\"get\"", 0.204, 0, 0},
    {"app_http_duration_count", "method=\"get\"", 2, 0, 0},
    {"app_http_duration_bucket", "le=\"0.005\",method=\"post\"", 0, 0, 0},
    {"app_http_duration_bucket", "le=\"0.1\",method=\"post\"", 0, 0, 0},
    {"app_http_duration_bucket", "le=\"2.5\",method=\"post\"", 0, 0, 0},
    {"app_http_duration_bucket", "le=\"+Inf\",method=\"post\"", 1, 0, 0},
    {"app_http_duration_sum", "method=\"post\"", 3, 0, 0},
    {"app_http_duration_count", "method=\"post\"", 1, 0, 0},
};
#define NWANT (sizeof want / sizeof want[0])

static const char *const families[][2] = {{"app_http_requests", "counter"},
                                          {"app_http_bytes", "counter"},
                                          {"app_pool_size", "gauge"},
                                          {"app_http_latency", "summary"},
                                          {"app_http_duration", "histogram"}};

static void define(keel_metrics *reg) {
  static const char *const mp[] = {"method", "path"};
  static const double bounds[] = {0.005, 0.1, 2.5};
  keel_metric_spec specs[] = {
      {.type = KEEL_METRIC_COUNTER,
       .name = "app.http.requests",
       .event_name = "app.http",
       .tags = mp,
       .ntags = 2,
       .description = "Requests \\ served\nper path"},
      {.type = KEEL_METRIC_SUM,
       .name = "app.http.bytes",
       .tags = mp,
       .ntags = 1},
      {.type = KEEL_METRIC_LAST_VALUE, .name = "app.pool.size"},
      {.type = KEEL_METRIC_SUMMARY,
       .name = "app.http.latency",
       .tags = mp,
       .ntags = 1},
      {.type = KEEL_METRIC_DISTRIBUTION,
       .name = "app.http.duration",
       .measurement = "latency",
       .tags = mp,
       .ntags = 1,
       .buckets = bounds,
       .nbuckets = 3},
  };
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    cr_assert_eq(keel_metrics_add(reg, &specs[i]), KEEL_OK, "spec %zu", i);
}

static void request(keel_heap *h, const char *method, const char *path,
                    double latency, double bytes) {
  keel_tel_event *e;
  cr_assert_eq(keel_tel_event_parse("app.http", &e), KEEL_OK);
  keel_tel_measure m[2] = {{keel_atom("latency"), latency},
                           {keel_atom("bytes"), bytes}};
  keel_tel_meta md[2] = {
      {keel_atom("method"), keel_atom(method)},
      {keel_atom("path"), keel_binary(h, path, strlen(path))}};
  keel_tel_execute(e, m, 2, md, 2);
}

static void pool(double size) {
  keel_tel_event *e;
  cr_assert_eq(keel_tel_event_parse("app.pool", &e), KEEL_OK);
  keel_tel_measure m[1] = {{keel_atom("size"), size}};
  keel_tel_execute(e, m, 1, NULL, 0);
}

/* Runs the parser on text; returns its output (malloc'd). */
static char *parse_with_python(const char *py, const keel_buf *text) {
  char in[] = "/tmp/keel_prom_XXXXXX";
  int fd = mkstemp(in);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, text->data, text->len), (ssize_t)text->len);
  close(fd);
  const char *src = getenv("KEEL_SOURCE_DIR");
  cr_assert_not_null(src, "KEEL_SOURCE_DIR not set");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s '%s/tests/metrics/prom_parse.py' < '%s'", py,
           src, in);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  keel_buf out;
  keel_buf_init(&out);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
    keel_buf_append(&out, chunk, n);
  int status = pclose(p);
  unlink(in);
  cr_assert_eq(status, 0, "the parser rejected:\n%.*s", (int)text->len,
               (const char *)text->data);
  keel_buf_putc(&out, 0);
  return (char *)keel_buf_take(&out, NULL);
}

static void check_sample(char *line) {
  char *name = strtok(line, "\t");
  char *labels = strtok(NULL, "\t");
  char *value = strtok(NULL, "\t");
  if (value == NULL) { /* no labels: strtok merged the empty field */
    value = labels;
    labels = "";
  }
  cr_assert_not_null(value);
  for (size_t i = 0; i < NWANT; i++) {
    if (strcmp(want[i].name, name) == 0 &&
        strcmp(want[i].labels, labels) == 0) {
      double tol = want[i].rel > 0 ? want[i].rel * want[i].value : 1e-9;
      cr_assert_float_eq(strtod(value, NULL), want[i].value, tol, "%s{%s}",
                         name, labels);
      want[i].seen++;
      return;
    }
  }
  cr_assert_fail("unexpected sample %s{%s} %s", name, labels, value);
}

Test(prometheus, exposition_parses_and_matches) {
  const char *py = python();
  if (py == NULL)
    cr_skip_test("no python3 with prometheus_client (Debian package "
                 "python3-prometheus-client, scripts/deps.sh test)");
  keel_metrics *reg;
  cr_assert_eq(keel_metrics_create(&reg), KEEL_OK);
  define(reg);
  keel_heap h;
  keel_heap_init(&h);
  request(&h, "get", "/a\"b\\c\nd", 0.004, 100);
  request(&h, "get", "/a\"b\\c\nd", 0.2, 50);
  request(&h, "post", "/x", 3.0, 7);
  pool(12);
  pool(17);
  keel_buf text;
  keel_buf_init(&text);
  cr_assert_eq(keel_metrics_prometheus(reg, &text), KEEL_OK);
  char *out = parse_with_python(py, &text);
  size_t nfam = 0;
  for (char *save = NULL, *line = strtok_r(out, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == 'S') {
      check_sample(line + 2);
      continue;
    }
    cr_assert_eq(line[0], 'F', "%s", line);
    char *name = strtok(line + 2, "\t"), *type = strtok(NULL, "\t");
    char *help = strtok(NULL, "\t");
    cr_assert_lt(nfam, 5);
    cr_assert_str_eq(name, families[nfam][0]);
    cr_assert_str_eq(type, families[nfam][1]);
    if (nfam == 0)
      cr_assert_str_eq(help, "\"Requests \\\\ served\\nper path\"");
    nfam++;
  }
  cr_assert_eq(nfam, 5);
  for (size_t i = 0; i < NWANT; i++)
    cr_assert_eq(want[i].seen, 1, "%s{%s} seen %d times", want[i].name,
                 want[i].labels, want[i].seen);
  free(out);
  keel_buf_free(&text);
  keel_heap_destroy(&h);
  keel_metrics_destroy(reg);
}

Test(prometheus, empty_registry_and_bad_arguments) {
  keel_metrics *reg;
  cr_assert_eq(keel_metrics_create(&reg), KEEL_OK);
  keel_buf text;
  keel_buf_init(&text);
  cr_assert_eq(keel_metrics_prometheus(reg, &text), KEEL_OK);
  cr_assert_eq(text.len, 0);
  cr_assert_eq(keel_metrics_prometheus(NULL, &text), KEEL_EINVAL);
  cr_assert_eq(keel_metrics_prometheus(reg, NULL), KEEL_EINVAL);
  keel_metrics_destroy(reg);
}
