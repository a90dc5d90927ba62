/*
 * prometheus.c - the Prometheus text exposition format 0.0.4 of a metrics
 * registry.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics_internal.h"

/* Shortest %g text that reads back as v; Prometheus spellings of the
 * non-finite values. */
static void fmt_double(char *buf, size_t size, double v) {
  if (isnan(v)) {
    snprintf(buf, size, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      return;
  }
}

/* Appends s[0..n) with \\, \n (and \" when quoted) escaped. */
static int put_escaped(keel_buf *out, const char *s, size_t n, bool quoted) {
  int rc = KEEL_OK;
  for (size_t i = 0; i < n && rc == KEEL_OK; i++) {
    char c = s[i];
    if (c == '\\')
      rc = keel_buf_append(out, "\\\\", 2);
    else if (c == '\n')
      rc = keel_buf_append(out, "\\n", 2);
    else if (c == '"' && quoted)
      rc = keel_buf_append(out, "\\\"", 2);
    else
      rc = keel_buf_putc(out, (uint8_t)c);
  }
  return rc;
}

/* A label name: [a-zA-Z_][a-zA-Z0-9_]*, others become '_'. */
static int put_label_name(keel_buf *out, keel_term atom) {
  size_t n;
  const char *s = keel_atom_name(atom, &n);
  int rc = KEEL_OK;
  for (size_t i = 0; i < n && rc == KEEL_OK; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    rc = keel_buf_putc(out, (uint8_t)(ok ? c : '_'));
  }
  return rc;
}

/* A label value: atoms and binaries as their text, [] (a missing tag) as
 * "", other terms printed in Erlang syntax. */
static int put_label_value(keel_buf *out, keel_term v) {
  size_t n = 0;
  if (keel_is_atom(v)) {
    const char *name = keel_atom_name(v, &n);
    return put_escaped(out, name, n, true);
  }
  if (keel_is_nil(v))
    return KEEL_OK;
  if (keel_is_binary(v)) {
    const uint8_t *d = keel_binary_data(v, &n);
    return put_escaped(out, (const char *)d, n, true);
  }
  char *s = keel_print_alloc(v, NULL);
  if (s == NULL)
    return KEEL_ENOMEM;
  int rc = put_escaped(out, s, strlen(s), true);
  free(s);
  return rc;
}

/* {tag="v",...[,extra="x"]} or nothing; extra is "le" or "quantile". */
static int put_labels(keel_buf *out, const keel__metric *mt,
                      const keel__series *s, const char *extra, const char *x) {
  if (mt->ntags == 0 && x == NULL)
    return KEEL_OK;
  int rc = keel_buf_putc(out, '{');
  for (size_t i = 0; i < mt->ntags && rc == KEEL_OK; i++) {
    if (i > 0)
      rc = keel_buf_putc(out, ',');
    if (rc == KEEL_OK)
      rc = put_label_name(out, mt->tags[i]);
    if (rc == KEEL_OK)
      rc = keel_buf_append(out, "=\"", 2);
    if (rc == KEEL_OK)
      rc = put_label_value(out, s->tags[i]);
    if (rc == KEEL_OK)
      rc = keel_buf_putc(out, '"');
  }
  if (x != NULL && rc == KEEL_OK)
    rc = keel_buf_printf(out, "%s%s=\"%s\"", mt->ntags ? "," : "", extra, x);
  if (rc == KEEL_OK)
    rc = keel_buf_putc(out, '}');
  return rc;
}

/* name suffix{labels} value\n */
static int put_sample(keel_buf *out, const keel__metric *mt,
                      const keel__series *s, const char *suffix, const char *le,
                      const char *value) {
  int rc = keel_buf_printf(out, "%s%s", mt->prom, suffix);
  if (rc == KEEL_OK)
    rc = put_labels(out, mt, s, le ? "le" : NULL, le);
  if (rc == KEEL_OK)
    rc = keel_buf_printf(out, " %s\n", value);
  return rc;
}

static int put_histogram(keel_buf *out, const keel__metric *mt,
                         keel__series *s) {
  char le[32], val[32];
  uint64_t cum = 0;
  int rc = KEEL_OK;
  /* The count is the cumulative total read here, so +Inf and _count agree
   * even while events are being recorded. */
  for (size_t i = 0; i <= mt->nbuckets && rc == KEEL_OK; i++) {
    cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    if (i < mt->nbuckets)
      fmt_double(le, sizeof le, mt->bounds[i]);
    else
      snprintf(le, sizeof le, "+Inf");
    snprintf(val, sizeof val, "%llu", (unsigned long long)cum);
    rc = put_sample(out, mt, s, "_bucket", le, val);
  }
  fmt_double(val, sizeof val, keel__bits_double(atomic_load(&s->sum)));
  if (rc == KEEL_OK)
    rc = put_sample(out, mt, s, "_sum", NULL, val);
  snprintf(val, sizeof val, "%llu", (unsigned long long)cum);
  if (rc == KEEL_OK)
    rc = put_sample(out, mt, s, "_count", NULL, val);
  return rc;
}

/* name{tags,quantile="q"} v for the 0.5, 0.9 and 0.99 quantiles. */
static int put_quantiles(keel_buf *out, const keel__metric *mt,
                         const keel__series *s) {
  static const char *const names[3] = {"0.5", "0.9", "0.99"};
  static const double qs[3] = {0.5, 0.9, 0.99};
  char val[32];
  int rc = KEEL_OK;
  for (int i = 0; i < 3 && rc == KEEL_OK; i++) {
    double v = keel__sketch_quantile(s, qs[i]);
    if (isnan(v))
      continue; /* an empty series has no quantiles */
    fmt_double(val, sizeof val, v);
    rc = keel_buf_printf(out, "%s", mt->prom);
    if (rc == KEEL_OK)
      rc = put_labels(out, mt, s, "quantile", names[i]);
    if (rc == KEEL_OK)
      rc = keel_buf_printf(out, " %s\n", val);
  }
  return rc;
}

static int put_series(keel_buf *out, const keel__metric *mt, keel__series *s) {
  char val[32];
  uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
  double sum = keel__bits_double(atomic_load(&s->sum));
  switch (mt->type) {
  case KEEL_METRIC_COUNTER:
    snprintf(val, sizeof val, "%llu", (unsigned long long)count);
    return put_sample(out, mt, s, "", NULL, val);
  case KEEL_METRIC_SUM:
    fmt_double(val, sizeof val, sum);
    return put_sample(out, mt, s, "", NULL, val);
  case KEEL_METRIC_LAST_VALUE:
    fmt_double(val, sizeof val, keel__bits_double(atomic_load(&s->last)));
    return put_sample(out, mt, s, "", NULL, val);
  case KEEL_METRIC_SUMMARY: {
    int rc = put_quantiles(out, mt, s);
    fmt_double(val, sizeof val, sum);
    if (rc == KEEL_OK)
      rc = put_sample(out, mt, s, "_sum", NULL, val);
    snprintf(val, sizeof val, "%llu", (unsigned long long)count);
    return rc != KEEL_OK ? rc : put_sample(out, mt, s, "_count", NULL, val);
  }
  case KEEL_METRIC_DISTRIBUTION:
    return put_histogram(out, mt, s);
  }
  return KEEL_EINVAL;
}

static const char *prom_type(keel_metric_type t) {
  switch (t) {
  case KEEL_METRIC_COUNTER:
  case KEEL_METRIC_SUM:
    return "counter";
  case KEEL_METRIC_LAST_VALUE:
    return "gauge";
  case KEEL_METRIC_SUMMARY:
    return "summary";
  case KEEL_METRIC_DISTRIBUTION:
    return "histogram";
  }
  return "untyped";
}

static int put_metric(keel_buf *out, const keel__metric *mt) {
  int rc = KEEL_OK;
  if (mt->help != NULL) {
    rc = keel_buf_printf(out, "# HELP %s ", mt->prom);
    if (rc == KEEL_OK)
      rc = put_escaped(out, mt->help, strlen(mt->help), false);
    if (rc == KEEL_OK)
      rc = keel_buf_putc(out, '\n');
  }
  if (rc == KEEL_OK)
    rc = keel_buf_printf(out, "# TYPE %s %s\n", mt->prom, prom_type(mt->type));
  for (size_t i = 0; i < mt->cap && rc == KEEL_OK; i++) {
    keel__series *s = atomic_load_explicit(&mt->slots[i], memory_order_acquire);
    if (s != NULL)
      rc = put_series(out, mt, s);
  }
  return rc;
}

int keel_metrics_prometheus(keel_metrics *r, keel_buf *out) {
  if (r == NULL || out == NULL)
    return KEEL_EINVAL;
  int rc = KEEL_OK;
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n && rc == KEEL_OK; i++)
    rc = put_metric(out, r->m[i]);
  pthread_mutex_unlock(&r->mu);
  return rc;
}
