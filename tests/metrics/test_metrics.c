/* Metrics (MET1, MET2): each type aggregated from telemetry events,
 * checked against sums the test keeps itself; tags, keep, measure
 * functions, scale, the series limit and bad definitions. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keel/metrics.h"

static keel_metrics *reg;

static void setup(void) {
  cr_assert_eq(keel_metrics_create(&reg), KEEL_OK);
}
static void teardown(void) {
  keel_metrics_destroy(reg);
}

static keel_tel_event *ev(const char *dotted) {
  keel_tel_event *e;
  cr_assert_eq(keel_tel_event_parse(dotted, &e), KEEL_OK);
  return e;
}

static void emit(keel_tel_event *e, double latency, keel_term method) {
  keel_tel_measure m[1] = {{keel_atom("latency"), latency}};
  keel_tel_meta md[1] = {{keel_atom("method"), method}};
  keel_tel_execute(e, m, 1, md, 1);
}

Test(metrics, every_type_matches_a_reference_aggregate, .init = setup,
     .fini = teardown) {
  static const char *const tags[] = {"method"};
  static const double bounds[] = {10, 50, 100};
  keel_metric_spec specs[5] = {
      {.type = KEEL_METRIC_COUNTER,
       .name = "web.req.count",
       .event_name = "web.req",
       .tags = tags,
       .ntags = 1},
      {.type = KEEL_METRIC_SUM,
       .name = "web.req.latency",
       .tags = tags,
       .ntags = 1},
      {.type = KEEL_METRIC_LAST_VALUE,
       .name = "web.req.last",
       .event_name = "web.req",
       .measurement = "latency",
       .tags = tags,
       .ntags = 1},
      {.type = KEEL_METRIC_SUMMARY,
       .name = "web.req.summary",
       .event_name = "web.req",
       .measurement = "latency",
       .tags = tags,
       .ntags = 1},
      {.type = KEEL_METRIC_DISTRIBUTION,
       .name = "web.req.hist",
       .event_name = "web.req",
       .measurement = "latency",
       .tags = tags,
       .ntags = 1,
       .buckets = bounds,
       .nbuckets = 3},
  };
  for (int i = 0; i < 5; i++)
    cr_assert_eq(keel_metrics_add(reg, &specs[i]), KEEL_OK, "spec %d", i);
  keel_tel_event *e = ev("web.req");
  keel_term methods[2] = {keel_atom("get"), keel_atom("post")};
  /* Reference aggregates, per method. */
  double sum[2] = {0}, last[2] = {0}, mn[2] = {INFINITY, INFINITY},
         mx[2] = {-INFINITY, -INFINITY};
  uint64_t count[2] = {0}, buckets[2][4] = {{0}};
  unsigned seed = 7;
  for (int i = 0; i < 1000; i++) {
    int k = rand_r(&seed) % 2;
    double v = (rand_r(&seed) % 2000) / 10.0; /* 0 .. 199.9 */
    emit(e, v, methods[k]);
    count[k]++;
    sum[k] += v;
    last[k] = v;
    mn[k] = fmin(mn[k], v);
    mx[k] = fmax(mx[k], v);
    buckets[k][v <= 10 ? 0 : v <= 50 ? 1 : v <= 100 ? 2 : 3]++;
  }
  for (int k = 0; k < 2; k++) {
    keel_metric_value v = {0};
    cr_assert_eq(keel_metrics_read(reg, "web.req.count", &methods[k], 1, &v),
                 KEEL_OK);
    cr_assert_eq(v.count, count[k]);
    cr_assert_eq(keel_metrics_read(reg, "web.req.latency", &methods[k], 1, &v),
                 KEEL_OK);
    cr_assert_float_eq(v.sum, sum[k], 1e-6);
    cr_assert_eq(keel_metrics_read(reg, "web.req.last", &methods[k], 1, &v),
                 KEEL_OK);
    cr_assert_float_eq(v.last, last[k], 0);
    cr_assert_eq(keel_metrics_read(reg, "web.req.summary", &methods[k], 1, &v),
                 KEEL_OK);
    cr_assert_eq(v.count, count[k]);
    cr_assert_float_eq(v.min, mn[k], 0);
    cr_assert_float_eq(v.max, mx[k], 0);
    uint64_t got[4];
    v.buckets = got;
    v.nbuckets = 4;
    cr_assert_eq(keel_metrics_read(reg, "web.req.hist", &methods[k], 1, &v),
                 KEEL_OK);
    for (int b = 0; b < 4; b++)
      cr_assert_eq(got[b], buckets[k][b], "method %d bucket %d", k, b);
    cr_assert_float_eq(v.sum, sum[k], 1e-6);
  }
  keel_term other = keel_atom("delete");
  keel_metric_value v;
  cr_assert_eq(keel_metrics_read(reg, "web.req.count", &other, 1, &v),
               KEEL_ENOENT);
  cr_assert_eq(keel_metrics_read(reg, "nope", &other, 1, &v), KEEL_ENOENT);
  cr_assert_eq(keel_metrics_read(reg, "web.req.count", NULL, 0, &v),
               KEEL_EINVAL);
}

static bool keep_get(const keel_tel_meta *md, size_t nmd, void *arg) {
  (void)arg;
  keel_term m;
  return keel_tel_meta_get(md, nmd, keel_atom("method"), &m) == KEEL_OK &&
         m == keel_atom("get");
}

static int twice_latency(const keel_tel_measure *m, size_t nm,
                         const keel_tel_meta *md, size_t nmd, void *arg,
                         double *out) {
  (void)md, (void)nmd;
  double v;
  if (keel_tel_measure_get(m, nm, keel_atom("latency"), &v) != KEEL_OK)
    return KEEL_ENOENT;
  *out = v * *(double *)arg;
  return KEEL_OK;
}

Test(metrics, keep_measure_scale_and_missing_values, .init = setup,
     .fini = teardown) {
  static double factor = 2;
  keel_metric_spec kept = {
      .type = KEEL_METRIC_SUM, .name = "k.req.latency", .keep = keep_get};
  keel_metric_spec fn = {.type = KEEL_METRIC_SUM,
                         .name = "k.req.twice",
                         .measure = twice_latency,
                         .measure_arg = &factor};
  keel_metric_spec scaled = {.type = KEEL_METRIC_SUM,
                             .name = "k.req.ms",
                             .measurement = "latency",
                             .scale = 1e-3};
  keel_metric_spec absent = {.type = KEEL_METRIC_SUM, .name = "k.req.bytes"};
  cr_assert_eq(keel_metrics_add(reg, &kept), KEEL_OK);
  cr_assert_eq(keel_metrics_add(reg, &fn), KEEL_OK);
  cr_assert_eq(keel_metrics_add(reg, &scaled), KEEL_OK);
  cr_assert_eq(keel_metrics_add(reg, &absent), KEEL_OK);
  keel_tel_event *e = ev("k.req");
  emit(e, 100, keel_atom("get"));
  emit(e, 1000, keel_atom("post"));
  keel_metric_value v;
  cr_assert_eq(keel_metrics_read(reg, "k.req.latency", NULL, 0, &v), KEEL_OK);
  cr_assert_float_eq(v.sum, 100, 0);
  cr_assert_eq(v.count, 1);
  cr_assert_eq(keel_metrics_read(reg, "k.req.twice", NULL, 0, &v), KEEL_OK);
  cr_assert_float_eq(v.sum, 2200, 0);
  cr_assert_eq(keel_metrics_read(reg, "k.req.ms", NULL, 0, &v), KEEL_OK);
  cr_assert_float_eq(v.sum, 1.1, 1e-12);
  /* No 'bytes' measurement: nothing recorded, no series. */
  cr_assert_eq(keel_metrics_read(reg, "k.req.bytes", NULL, 0, &v), KEEL_ENOENT);
}

Test(metrics, series_limit_drops_and_counts, .init = setup, .fini = teardown) {
  static const char *const tags[] = {"method"};
  keel_metric_spec s = {.type = KEEL_METRIC_COUNTER,
                        .name = "lim.req.count",
                        .tags = tags,
                        .ntags = 1,
                        .max_series = 2};
  cr_assert_eq(keel_metrics_add(reg, &s), KEEL_OK);
  keel_tel_event *e = ev("lim.req");
  for (int i = 0; i < 5; i++)
    emit(e, 1, keel_small(i));
  emit(e, 1, keel_small(0));
  keel_metric_value v;
  keel_term t0 = keel_small(0), t2 = keel_small(2);
  cr_assert_eq(keel_metrics_read(reg, "lim.req.count", &t0, 1, &v), KEEL_OK);
  cr_assert_eq(v.count, 2);
  cr_assert_eq(keel_metrics_read(reg, "lim.req.count", &t2, 1, &v),
               KEEL_ENOENT);
  cr_assert_eq(keel_metrics_dropped(reg), 3);
  /* A missing tag is recorded under [] (an empty label). */
  keel_tel_execute(e, NULL, 0, NULL, 0);
  cr_assert_eq(keel_metrics_dropped(reg), 4, "still full");
}

Test(metrics, bad_definitions, .init = setup, .fini = teardown) {
  static const double bad_bounds[] = {1, 1};
  static const double nan_bounds[] = {1, NAN};
  static const char *const empty_tag[] = {""};
  keel_metric_spec bad[] = {
      {.type = KEEL_METRIC_SUM, .name = NULL},
      {.type = KEEL_METRIC_SUM, .name = "nodots"},
      {.type = KEEL_METRIC_SUM, .name = "a..b"},
      {.type = KEEL_METRIC_SUM, .name = "a.b."},
      {.type = (keel_metric_type)9, .name = "a.b"},
      {.type = KEEL_METRIC_DISTRIBUTION, .name = "a.b"},
      {.type = KEEL_METRIC_DISTRIBUTION,
       .name = "a.b",
       .buckets = bad_bounds,
       .nbuckets = 2},
      {.type = KEEL_METRIC_DISTRIBUTION,
       .name = "a.b",
       .buckets = nan_bounds,
       .nbuckets = 2},
      {.type = KEEL_METRIC_SUM, .name = "a.b", .tags = empty_tag, .ntags = 1},
      {.type = KEEL_METRIC_SUM, .name = "a.b", .ntags = 1},
      {.type = KEEL_METRIC_SUM, .name = "a.b", .event_name = ".x"},
      {.type = KEEL_METRIC_SUM, .name = "a.b", .scale = INFINITY},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(keel_metrics_add(reg, &bad[i]), KEEL_EINVAL, "spec %zu", i);
  cr_assert_eq(keel_metrics_add(reg, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_metrics_add(NULL, &bad[1]), KEEL_EINVAL);
  keel_metric_spec ok = {.type = KEEL_METRIC_COUNTER, .name = "a.b"};
  cr_assert_eq(keel_metrics_add(reg, &ok), KEEL_OK);
  keel_metric_spec clash = {
      .type = KEEL_METRIC_SUM, .name = "a_b", .event_name = "a"};
  cr_assert_eq(keel_metrics_add(reg, &clash), KEEL_EEXIST, "same a_b");
  cr_assert_eq(keel_metrics_create(NULL), KEEL_EINVAL);
  keel_metrics_destroy(NULL);
}

/* Recording from 1, 2 and 8 threads loses no update. */
static keel_tel_event *g_ev;
#define PER_THREAD 20000

static void *recorder(void *arg) {
  keel_term tag = keel_small((int64_t)(uintptr_t)arg % 3);
  for (int i = 0; i < PER_THREAD; i++)
    emit(g_ev, 0.5, tag);
  return NULL;
}

Test(metrics_concurrent, parallel_recording_is_exact, .init = setup,
     .fini = teardown) {
  static const char *const tags[] = {"method"};
  static const double bounds[] = {0.25, 1};
  keel_metric_spec specs[2] = {{.type = KEEL_METRIC_SUM,
                                .name = "par.req.latency",
                                .tags = tags,
                                .ntags = 1},
                               {.type = KEEL_METRIC_DISTRIBUTION,
                                .name = "par.req.hist",
                                .measurement = "latency",
                                .tags = tags,
                                .ntags = 1,
                                .buckets = bounds,
                                .nbuckets = 2}};
  cr_assert_eq(keel_metrics_add(reg, &specs[0]), KEEL_OK);
  cr_assert_eq(keel_metrics_add(reg, &specs[1]), KEEL_OK);
  g_ev = ev("par.req");
  static const unsigned counts[] = {1, 2, 8};
  uint64_t expect[3] = {0};
  for (size_t k = 0; k < 3; k++) {
    pthread_t th[8];
    for (unsigned i = 0; i < counts[k]; i++) {
      cr_assert_eq(pthread_create(&th[i], NULL, recorder, (void *)(uintptr_t)i),
                   0);
      expect[i % 3] += PER_THREAD;
    }
    for (unsigned i = 0; i < counts[k]; i++)
      pthread_join(th[i], NULL);
    for (int t = 0; t < 3; t++) {
      if (expect[t] == 0)
        continue;
      keel_term tag = keel_small(t);
      uint64_t b[3];
      keel_metric_value v = {.buckets = b, .nbuckets = 3};
      cr_assert_eq(keel_metrics_read(reg, "par.req.latency", &tag, 1, &v),
                   KEEL_OK);
      cr_assert_eq(v.count, expect[t]);
      cr_assert_float_eq(v.sum, 0.5 * (double)expect[t], 0);
      cr_assert_eq(keel_metrics_read(reg, "par.req.hist", &tag, 1, &v),
                   KEEL_OK);
      cr_assert_eq(b[1], expect[t]);
      cr_assert_eq(b[0] + b[2], 0);
    }
  }
}

/* Scrapes while 1, 2 and 8 threads record: each histogram in every text
 * is consistent (+Inf bucket == _count), counts never go down between
 * scrapes, and the final text has every event. Run under TSan. */
static atomic_bool g_stop_rec;

static void *recorder_until_stopped(void *arg) {
  keel_term tag = keel_small((int64_t)(uintptr_t)arg % 2);
  long n = 0;
  while (n < PER_THREAD / 4 || !atomic_load(&g_stop_rec)) {
    emit(g_ev, (double)(n % 7), tag);
    n++;
  }
  return (void *)(uintptr_t)n;
}

/* The value of the first line starting with prefix, or 0 when there is
 * none (the series does not exist yet). */
static double sample(const keel_buf *b, const char *prefix) {
  size_t n = strlen(prefix);
  const char *p = (const char *)b->data, *end = p + b->len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
      nl = end;
    if ((size_t)(nl - p) > n && memcmp(p, prefix, n) == 0)
      return strtod(p + n, NULL);
    p = nl + 1;
  }
  return 0;
}

Test(metrics_concurrent, scrape_while_recording, .init = setup,
     .fini = teardown) {
  static const char *const tags[] = {"method"};
  static const double bounds[] = {2, 4};
  keel_metric_spec spec = {.type = KEEL_METRIC_DISTRIBUTION,
                           .name = "scr.req.latency",
                           .tags = tags,
                           .ntags = 1,
                           .buckets = bounds,
                           .nbuckets = 2};
  cr_assert_eq(keel_metrics_add(reg, &spec), KEEL_OK);
  g_ev = ev("scr.req");
  static const unsigned counts[] = {1, 2, 8};
  for (size_t k = 0; k < 3; k++) {
    atomic_store(&g_stop_rec, false);
    pthread_t th[8];
    for (unsigned i = 0; i < counts[k]; i++)
      cr_assert_eq(pthread_create(&th[i], NULL, recorder_until_stopped,
                                  (void *)(uintptr_t)i),
                   0);
    double prev = 0;
    for (int s = 0; s < 50; s++) {
      keel_buf b;
      keel_buf_init(&b);
      cr_assert_eq(keel_metrics_prometheus(reg, &b), KEEL_OK);
      double inf =
          sample(&b, "scr_req_latency_bucket{method=\"0\",le=\"+Inf\"} ");
      double cnt = sample(&b, "scr_req_latency_count{method=\"0\"} ");
      cr_assert_float_eq(inf, cnt, 0, "+Inf %g, count %g", inf, cnt);
      cr_assert_geq(cnt, prev);
      prev = cnt;
      keel_buf_free(&b);
    }
    atomic_store(&g_stop_rec, true);
    double total = 0;
    for (unsigned i = 0; i < counts[k]; i++) {
      void *n;
      pthread_join(th[i], &n);
      if (i % 2 == 0)
        total += (double)(uintptr_t)n;
    }
    keel_buf b;
    keel_buf_init(&b);
    cr_assert_eq(keel_metrics_prometheus(reg, &b), KEEL_OK);
    double cnt = sample(&b, "scr_req_latency_count{method=\"0\"} ");
    cr_assert_geq(cnt, prev);
    static double done_before;
    cr_assert_float_eq(cnt, done_before + total, 0);
    done_before = cnt;
    keel_buf_free(&b);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

Test(metrics, summary_quantiles_within_the_sketch_error, .init = setup,
     .fini = teardown) {
  keel_metric_spec spec = {.type = KEEL_METRIC_SUMMARY,
                           .name = "q.req.latency"};
  cr_assert_eq(keel_metrics_add(reg, &spec), KEEL_OK);
  keel_tel_event *e = ev("q.req");
  enum { N = 5000 };
  static double vals[N];
  unsigned seed = 99;
  for (int i = 0; i < N; i++) {
    /* Log-uniform over 2^-10 .. 2^30. */
    vals[i] = exp2(-10 + 40.0 * rand_r(&seed) / RAND_MAX);
    emit(e, vals[i], KEEL_NIL);
  }
  qsort(vals, N, sizeof vals[0], cmp_double);
  static const double qs[] = {0, 0.01, 0.25, 0.5, 0.9, 0.99, 1};
  for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
    /* Nearest rank: the ceil(q * N)-th smallest value (at least the 1st). */
    size_t rank = (size_t)ceil(qs[i] * N);
    double exact = vals[rank ? rank - 1 : 0];
    double got;
    cr_assert_eq(
        keel_metrics_quantile(reg, "q.req.latency", NULL, 0, qs[i], &got),
        KEEL_OK);
    cr_assert_float_eq(got, exact, exact / 32, "q %g: %g vs exact %g", qs[i],
                       got, exact);
  }
  double got;
  cr_assert_eq(keel_metrics_quantile(reg, "q.req.latency", NULL, 0, 1.5, &got),
               KEEL_EINVAL);
  cr_assert_eq(keel_metrics_quantile(reg, "nope", NULL, 0, 0.5, &got),
               KEEL_ENOENT);
  /* Zero and negative values count as the minimum. */
  keel_metric_spec neg = {.type = KEEL_METRIC_SUMMARY, .name = "n.req.latency"};
  cr_assert_eq(keel_metrics_add(reg, &neg), KEEL_OK);
  keel_tel_event *ne = ev("n.req");
  emit(ne, -5, KEEL_NIL);
  emit(ne, 0, KEEL_NIL);
  emit(ne, 8, KEEL_NIL);
  cr_assert_eq(keel_metrics_quantile(reg, "n.req.latency", NULL, 0, 0.5, &got),
               KEEL_OK);
  cr_assert_float_eq(got, -5, 0);
  cr_assert_eq(keel_metrics_quantile(reg, "n.req.latency", NULL, 0, 1, &got),
               KEEL_OK);
  cr_assert_float_eq(got, 8, 8.0 / 32);
  /* Not a summary. */
  keel_metric_spec sum = {
      .type = KEEL_METRIC_SUM, .name = "n.req.other", .measurement = "latency"};
  cr_assert_eq(keel_metrics_add(reg, &sum), KEEL_OK);
  emit(ne, 1, KEEL_NIL);
  cr_assert_eq(keel_metrics_quantile(reg, "n.req.other", NULL, 0, 0.5, &got),
               KEEL_EINVAL);
}

typedef struct visits {
  int n;
  uint64_t get, post;
  bool name_ok, tags_ok;
} visits;

static int visit(const char *name, keel_metric_type type,
                 const keel_term *tag_names, const keel_term *tag_values,
                 size_t ntags, const keel_metric_value *v, void *arg) {
  visits *s = arg;
  s->n++;
  s->name_ok =
      strcmp(name, "web.req.count") == 0 && type == KEEL_METRIC_COUNTER;
  s->tags_ok = ntags == 1 && tag_names[0] == keel_atom("method");
  if (ntags == 1 && tag_values[0] == keel_atom("get"))
    s->get = v->count;
  if (ntags == 1 && tag_values[0] == keel_atom("post"))
    s->post = v->count;
  return KEEL_OK;
}

static int stop_at_first(const char *name, keel_metric_type type,
                         const keel_term *tag_names,
                         const keel_term *tag_values, size_t ntags,
                         const keel_metric_value *v, void *arg) {
  (void)name, (void)type, (void)tag_names, (void)tag_values, (void)ntags;
  (void)v;
  ++*(int *)arg;
  return KEEL_ENOENT;
}

Test(metrics, foreach_visits_every_series, .init = setup, .fini = teardown) {
  static const char *const tags[] = {"method"};
  keel_metric_spec s = {.type = KEEL_METRIC_COUNTER,
                        .name = "web.req.count",
                        .tags = tags,
                        .ntags = 1};
  cr_assert_eq(keel_metrics_add(reg, &s), KEEL_OK);
  keel_tel_event *e = ev("web.req");
  for (int i = 0; i < 5; i++)
    emit(e, 1.0, keel_atom(i < 3 ? "get" : "post"));
  visits v = {0};
  cr_assert_eq(keel_metrics_foreach(reg, visit, &v), KEEL_OK);
  cr_assert_eq(v.n, 2);
  cr_assert(v.name_ok && v.tags_ok);
  cr_assert_eq(v.get, 3);
  cr_assert_eq(v.post, 2);
  int calls = 0;
  cr_assert_eq(keel_metrics_foreach(reg, stop_at_first, &calls), KEEL_ENOENT);
  cr_assert_eq(calls, 1);
  cr_assert_eq(keel_metrics_foreach(NULL, visit, &v), KEEL_EINVAL);
  cr_assert_eq(keel_metrics_foreach(reg, NULL, &v), KEEL_EINVAL);
}
