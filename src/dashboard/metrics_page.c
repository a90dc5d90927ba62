/*
 * metrics_page.c - rings of recent samples per metric series (the
 * node's own figures and every series of the metrics registry) and the
 * metrics page built from them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard/dash_internal.h"

static void series_free(dash_series *s) {
  free(s->id);
  free(s->name);
  free(s->tags);
  free(s->val);
  free(s->at);
  *s = (dash_series){0};
}

void keel__dash_metrics_free(keel_dashboard *d) {
  for (size_t i = 0; i < d->nseries; i++)
    series_free(&d->series[i]);
  free(d->series);
  d->series = NULL;
  d->nseries = 0;
}

static char *dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p != NULL)
    memcpy(p, s, n);
  return p;
}

/* The series named id, created when new; NULL when full or out of
 * memory. */
static dash_series *series_get(keel_dashboard *d, const char *id,
                               const char *name, const char *tags,
                               const char *kind) {
  for (size_t i = 0; i < d->nseries; i++)
    if (strcmp(d->series[i].id, id) == 0)
      return &d->series[i];
  if (d->nseries == DASH_MAX_SERIES)
    return NULL;
  if (d->series == NULL) {
    d->series = calloc(DASH_MAX_SERIES, sizeof *d->series);
    if (d->series == NULL)
      return NULL;
  }
  dash_series s = {.id = dup(id),
                   .name = dup(name),
                   .tags = dup(tags),
                   .kind = kind,
                   .val = calloc(d->history, sizeof(double)),
                   .at = calloc(d->history, sizeof(uint64_t))};
  if (!s.id || !s.name || !s.tags || !s.val || !s.at) {
    series_free(&s);
    return NULL;
  }
  d->series[d->nseries] = s;
  return &d->series[d->nseries++];
}

static void push(keel_dashboard *d, dash_series *s, double v) {
  if (s == NULL)
    return;
  size_t at = (s->head + s->n) % d->history;
  if (s->n == d->history) {
    s->head = (s->head + 1) % d->history;
    at = (s->head + s->n - 1) % d->history;
  } else {
    s->n++;
  }
  s->val[at] = v;
  s->at[at] = d->cur.wall_ms;
}

static void push_builtin(keel_dashboard *d, const char *name, const char *kind,
                         double v) {
  push(d, series_get(d, name, name, "", kind), v);
}

static const char *kind_name(keel_metric_type t) {
  switch (t) {
  case KEEL_METRIC_COUNTER:
    return "counter";
  case KEEL_METRIC_SUM:
    return "sum";
  case KEEL_METRIC_LAST_VALUE:
    return "last_value";
  case KEEL_METRIC_SUMMARY:
    return "summary";
  case KEEL_METRIC_DISTRIBUTION:
    return "distribution";
  }
  return "unknown";
}

static double value_of(keel_metric_type t, const keel_metric_value *v) {
  switch (t) {
  case KEEL_METRIC_COUNTER:
  case KEEL_METRIC_DISTRIBUTION:
    return (double)v->count;
  case KEEL_METRIC_SUM:
    return v->sum;
  case KEEL_METRIC_LAST_VALUE:
    return v->last;
  case KEEL_METRIC_SUMMARY:
    return v->count ? v->sum / (double)v->count : 0.0;
  }
  return 0.0;
}

/* Appends "k=v" of each tag to buf. */
static void tags_text(char *buf, size_t size, const keel_term *names,
                      const keel_term *vals, size_t n) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && off < size; i++) {
    size_t len;
    const char *k = keel_atom_name(names[i], &len);
    char v[96];
    if (!keel__dash_text(vals[i], v, sizeof v) &&
        keel_print(v, sizeof v, vals[i], NULL) < 0)
      v[0] = '\0';
    int w = snprintf(buf + off, size - off, "%s%.*s=%s", i ? "," : "", (int)len,
                     k, v);
    if (w < 0)
      break;
    off += (size_t)w;
  }
}

static int visit(const char *name, keel_metric_type type,
                 const keel_term *tag_names, const keel_term *tag_values,
                 size_t ntags, const keel_metric_value *value, void *arg) {
  keel_dashboard *d = arg;
  char tags[256], id[512];
  tags_text(tags, sizeof tags, tag_names, tag_values, ntags);
  snprintf(id, sizeof id, "%s{%s}", name, tags);
  push(d, series_get(d, id, name, tags, kind_name(type)),
       value_of(type, value));
  return KEEL_OK;
}

int keel__dash_metrics_sample(keel_dashboard *d) {
  uint64_t dt = d->prev.t_ns ? d->cur.t_ns - d->prev.t_ns : 0;
  double msgs = 0, util = 0;
  if (dt > 0) {
    msgs = (double)(d->cur.messages_sent - d->prev.messages_sent) * 1e9 /
           (double)dt;
    uint64_t busy = 0, total = 0;
    for (unsigned i = 0; i < d->cur.nsched && i < d->prev.nsched; i++) {
      busy += d->cur.st[i].busy_ns - d->prev.st[i].busy_ns;
      total += d->cur.st[i].total_ns - d->prev.st[i].total_ns;
    }
    util = total ? (double)busy / (double)total : 0;
  }
  push_builtin(d, "keel.vm.process_count", "last_value", (double)d->cur.nreds);
  push_builtin(d, "keel.vm.messages_per_second", "last_value", msgs);
  push_builtin(d, "keel.vm.scheduler_utilisation", "last_value", util);
  if (d->metrics != NULL)
    keel_metrics_foreach(d->metrics, visit, d);
  return KEEL_OK;
}

static keel_term points(keel_dashboard *d, keel_heap *h, const dash_series *s) {
  keel_term l = KEEL_NIL;
  for (size_t i = s->n; i-- > 0;) {
    size_t at = (s->head + i) % d->history;
    keel_term pr[2] = {keel_uint(h, s->at[at]), keel_float(h, s->val[at])};
    keel_term p = keel_list_from(h, 2, pr);
    l = p == KEEL_NONE ? KEEL_NONE : keel_cons(h, p, l);
    if (l == KEEL_NONE)
      return KEEL_NONE;
  }
  return l;
}

int keel__dash_metrics(keel_dashboard *d, keel_heap *h, keel_term *out) {
  keel_term rows = KEEL_NIL;
  for (size_t i = d->nseries; i-- > 0;) {
    const dash_series *s = &d->series[i];
    static const char *const k[] = {"id", "name", "tags", "kind", "points"};
    keel_term v[] = {keel_binary(h, s->id, strlen(s->id)),
                     keel_binary(h, s->name, strlen(s->name)),
                     keel_binary(h, s->tags, strlen(s->tags)),
                     keel_atom(s->kind), points(d, h, s)};
    keel_term row = keel__dash_map(h, 5, k, v);
    rows = row == KEEL_NONE ? KEEL_NONE : keel_cons(h, row, rows);
    if (rows == KEEL_NONE)
      return KEEL_ENOMEM;
  }
  static const char *const k[] = {"page", "interval_ms", "history", "series"};
  keel_term v[] = {keel_atom("metrics"), keel_small(d->interval_ms),
                   keel_small(d->history), rows};
  *out = keel__dash_map(h, 4, k, v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}
