/*
 * metrics.c - metric definitions over telemetry events, recorded at
 * emission time into per-tag-combination series.
 *
 * Series of a metric live in an open-addressed table of atomic pointers
 * that only grows up to max_series (never shrinks before the registry is
 * destroyed), so recording finds its series without a lock and updates it
 * with atomic operations; only the first event of a new tag combination
 * takes the metric's lock.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics_internal.h"

static _Atomic int64_t g_registry_ids;

int keel_metrics_create(keel_metrics **out) {
  if (out == NULL)
    return KEEL_EINVAL;
  keel_metrics *r = calloc(1, sizeof *r);
  if (r == NULL)
    return KEEL_ENOMEM;
  pthread_mutex_init(&r->mu, NULL);
  r->uid = atomic_fetch_add(&g_registry_ids, 1);
  *out = r;
  return KEEL_OK;
}

static void metric_free(keel__metric *mt) {
  if (mt->slots != NULL) {
    for (size_t i = 0; i < mt->cap; i++) {
      keel__series *s =
          atomic_load_explicit(&mt->slots[i], memory_order_relaxed);
      if (s == NULL)
        continue;
      keel_heap_destroy(&s->heap);
      free(s);
    }
  }
  free(mt->slots);
  pthread_mutex_destroy(&mt->mu);
  keel_heap_destroy(&mt->id_heap);
  free(mt->name);
  free(mt->prom);
  free(mt->help);
  free(mt->bounds);
  free(mt);
}

void keel_metrics_destroy(keel_metrics *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n; i++) {
    (void)keel_tel_detach(r->m[i]->handler_id);
    metric_free(r->m[i]);
  }
  free(r->m);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* ---- recording ------------------------------------------------------------
 */

static uint64_t tags_hash(const keel_term *tv, size_t n) {
  uint64_t h = UINT64_C(0x9E3779B97F4A7C15);
  for (size_t i = 0; i < n; i++)
    h = (h ^ keel_hash(tv[i])) * UINT64_C(0xBF58476D1CE4E5B9);
  return h ^ (h >> 31);
}

static keel__series *series_find(const keel__metric *mt, const keel_term *tv,
                                 uint64_t hash) {
  size_t mask = mt->cap - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    keel__series *s = atomic_load_explicit(&mt->slots[i], memory_order_acquire);
    if (s == NULL)
      return NULL;
    if (s->hash != hash)
      continue;
    size_t k = 0;
    while (k < mt->ntags && keel__same_term(tv[k], s->tags[k]))
      k++;
    if (k == mt->ntags)
      return s;
  }
}

static keel__series *series_new(const keel__metric *mt, const keel_term *tv,
                                uint64_t hash) {
  size_t nb = mt->type == KEEL_METRIC_DISTRIBUTION ? mt->nbuckets + 1
              : mt->type == KEEL_METRIC_SUMMARY    ? KEEL__SK_BUCKETS
                                                   : 0;
  keel__series *s = calloc(1, sizeof *s + nb * sizeof s->buckets[0]);
  if (s == NULL)
    return NULL;
  keel_heap_init(&s->heap);
  s->hash = hash;
  if (mt->ntags > 0) {
    s->tags = (keel_term *)keel_heap_alloc(&s->heap, mt->ntags);
    for (size_t i = 0; s->tags != NULL && i < mt->ntags; i++) {
      s->tags[i] = keel_term_copy(&s->heap, tv[i]);
      if (s->tags[i] == KEEL_NONE)
        s->tags = NULL;
    }
    if (s->tags == NULL) {
      keel_heap_destroy(&s->heap);
      free(s);
      return NULL;
    }
  }
  atomic_init(&s->min, keel__double_bits(INFINITY));
  atomic_init(&s->max, keel__double_bits(-INFINITY));
  return s;
}

/* The series of tv, created if there is room; NULL when full. */
static keel__series *series_get(keel__metric *mt, const keel_term *tv) {
  uint64_t hash = tags_hash(tv, mt->ntags);
  keel__series *s = series_find(mt, tv, hash);
  if (s != NULL)
    return s;
  pthread_mutex_lock(&mt->mu);
  s = series_find(mt, tv, hash);
  if (s == NULL && mt->nseries < mt->max_series &&
      (s = series_new(mt, tv, hash)) != NULL) {
    size_t mask = mt->cap - 1, i = hash & mask;
    while (atomic_load_explicit(&mt->slots[i], memory_order_relaxed))
      i = (i + 1) & mask;
    atomic_store_explicit(&mt->slots[i], s, memory_order_release);
    mt->nseries++;
  }
  pthread_mutex_unlock(&mt->mu);
  return s;
}

static void atomic_add_double(_Atomic uint64_t *p, double v) {
  uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      p, &old, keel__double_bits(keel__bits_double(old) + v),
      memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* Replaces *p by v while better(v, *p). */
static void atomic_extreme(_Atomic uint64_t *p, double v, bool want_less) {
  uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
  for (;;) {
    double cur = keel__bits_double(old);
    if (want_less ? !(v < cur) : !(v > cur))
      return;
    if (atomic_compare_exchange_weak_explicit(p, &old, keel__double_bits(v),
                                              memory_order_relaxed,
                                              memory_order_relaxed))
      return;
  }
}

static void update(const keel__metric *mt, keel__series *s, double v) {
  switch (mt->type) {
  case KEEL_METRIC_COUNTER:
    break;
  case KEEL_METRIC_LAST_VALUE:
    atomic_store_explicit(&s->last, keel__double_bits(v), memory_order_relaxed);
    break;
  case KEEL_METRIC_SUMMARY:
    atomic_fetch_add_explicit(&s->buckets[keel__sketch_index(v)], 1,
                              memory_order_relaxed);
    atomic_extreme(&s->min, v, true);
    atomic_extreme(&s->max, v, false);
    atomic_add_double(&s->sum, v);
    break;
  case KEEL_METRIC_DISTRIBUTION: {
    size_t i = 0;
    while (i < mt->nbuckets && !(v <= mt->bounds[i]))
      i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&s->sum, v);
    break;
  }
  case KEEL_METRIC_SUM:
    atomic_add_double(&s->sum, v);
    break;
  }
  atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

/* The telemetry handler of a metric. Never fails: a metric that cannot
 * record an event counts it as dropped instead of being detached. */
static int on_event(const keel_tel_event *ev, const keel_tel_measure *m,
                    size_t nm, const keel_tel_meta *md, size_t nmd,
                    void *config) {
  (void)ev;
  keel__metric *mt = config;
  if (mt->keep != NULL && !mt->keep(md, nmd, mt->keep_arg))
    return 0;
  double v = 1;
  if (mt->type != KEEL_METRIC_COUNTER) {
    int rc = mt->measure != NULL
                 ? mt->measure(m, nm, md, nmd, mt->measure_arg, &v)
                 : keel_tel_measure_get(m, nm, mt->measurement, &v);
    if (rc != KEEL_OK)
      return 0;
    v *= mt->scale;
  }
  keel_term tv[KEEL_METRIC_MAX_TAGS];
  for (size_t i = 0; i < mt->ntags; i++)
    if (keel_tel_meta_get(md, nmd, mt->tags[i], &tv[i]) != KEEL_OK)
      tv[i] = KEEL_NIL;
  keel__series *s = series_get(mt, tv);
  if (s == NULL) {
    atomic_fetch_add_explicit(&mt->reg->dropped, 1, memory_order_relaxed);
    return 0;
  }
  update(mt, s, v);
  return 0;
}

/* ---- definitions
 * ------------------------------------------------------------- */

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, others become '_'. */
static char *prom_name(const char *dotted) {
  size_t n = strlen(dotted);
  char *p = malloc(n + 2);
  if (p == NULL)
    return NULL;
  size_t j = 0;
  if (dotted[0] >= '0' && dotted[0] <= '9')
    p[j++] = '_';
  for (size_t i = 0; i < n; i++) {
    char c = dotted[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == ':';
    p[j++] = ok ? c : '_';
  }
  p[j] = '\0';
  return p;
}

static bool dotted_ok(const char *s) {
  if (s == NULL || *s == '\0' || *s == '.')
    return false;
  for (const char *p = s; *p; p++)
    if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
      return false;
  return true;
}

static int check_spec(const keel_metric_spec *sp) {
  if (sp == NULL || !dotted_ok(sp->name) ||
      (unsigned)sp->type > KEEL_METRIC_DISTRIBUTION ||
      sp->ntags > KEEL_METRIC_MAX_TAGS || (sp->ntags > 0 && !sp->tags) ||
      sp->max_series > KEEL_METRIC_MAX_SERIES || !isfinite(sp->scale))
    return KEEL_EINVAL;
  if (sp->event_name == NULL && strchr(sp->name, '.') == NULL)
    return KEEL_EINVAL; /* no event name to derive */
  if (sp->event_name != NULL && !dotted_ok(sp->event_name))
    return KEEL_EINVAL;
  for (size_t i = 0; i < sp->ntags; i++)
    if (sp->tags[i] == NULL || sp->tags[i][0] == '\0')
      return KEEL_EINVAL;
  if (sp->type != KEEL_METRIC_DISTRIBUTION)
    return KEEL_OK;
  if (sp->buckets == NULL || sp->nbuckets == 0 ||
      sp->nbuckets > KEEL_METRIC_MAX_BUCKETS)
    return KEEL_EINVAL;
  for (size_t i = 0; i < sp->nbuckets; i++)
    if (!isfinite(sp->buckets[i]) ||
        (i > 0 && !(sp->buckets[i] > sp->buckets[i - 1])))
      return KEEL_EINVAL;
  return KEEL_OK;
}

/* Event and measurement of the spec. */
static int resolve_event(keel__metric *mt, const keel_metric_spec *sp) {
  const char *last = strrchr(sp->name, '.');
  int rc;
  if (sp->event_name != NULL) {
    rc = keel_tel_event_parse(sp->event_name, &mt->event);
  } else {
    char *ev = dup_str(sp->name);
    if (ev == NULL)
      return KEEL_ENOMEM;
    ev[last - sp->name] = '\0';
    rc = keel_tel_event_parse(ev, &mt->event);
    free(ev);
  }
  if (rc != KEEL_OK || sp->measure != NULL || sp->type == KEEL_METRIC_COUNTER)
    return rc;
  const char *meas = sp->measurement ? sp->measurement
                     : last          ? last + 1
                                     : sp->name;
  if (*meas == '\0')
    return KEEL_EINVAL;
  return keel_atom_intern(meas, strlen(meas), &mt->measurement);
}

static int metric_init(keel__metric *mt, const keel_metric_spec *sp) {
  mt->type = sp->type;
  mt->measure = sp->measure;
  mt->measure_arg = sp->measure_arg;
  mt->keep = sp->keep;
  mt->keep_arg = sp->keep_arg;
  mt->scale = sp->scale != 0 ? sp->scale : 1;
  mt->max_series = sp->max_series ? sp->max_series : KEEL_METRIC_DEFAULT_SERIES;
  mt->cap = 16;
  while (mt->cap < 2 * mt->max_series)
    mt->cap *= 2;
  pthread_mutex_init(&mt->mu, NULL);
  keel_heap_init(&mt->id_heap);
  mt->name = dup_str(sp->name);
  mt->prom = prom_name(sp->name);
  mt->help = sp->description ? dup_str(sp->description) : NULL;
  mt->slots = calloc(mt->cap, sizeof *mt->slots);
  if (mt->name == NULL || mt->prom == NULL || mt->slots == NULL ||
      (sp->description && mt->help == NULL))
    return KEEL_ENOMEM;
  for (size_t i = 0; i < sp->ntags; i++) {
    int rc = keel_atom_intern(sp->tags[i], strlen(sp->tags[i]), &mt->tags[i]);
    if (rc != KEEL_OK)
      return rc;
  }
  mt->ntags = sp->ntags;
  if (sp->type == KEEL_METRIC_DISTRIBUTION) {
    mt->bounds = malloc(sp->nbuckets * sizeof *mt->bounds);
    if (mt->bounds == NULL)
      return KEEL_ENOMEM;
    memcpy(mt->bounds, sp->buckets, sp->nbuckets * sizeof *mt->bounds);
    mt->nbuckets = sp->nbuckets;
  }
  return resolve_event(mt, sp);
}

static int registry_push(keel_metrics *r, keel__metric *mt) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->m[i]->prom, mt->prom) == 0)
      return KEEL_EEXIST;
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    keel__metric **a = realloc(r->m, cap * sizeof(keel__metric *));
    if (a == NULL)
      return KEEL_ENOMEM;
    r->m = a;
    r->cap = cap;
  }
  mt->handler_id = keel_tuple(&mt->id_heap, 3, keel_atom("keel_metrics"),
                              keel_small(r->uid), keel_small((int64_t)r->n));
  if (mt->handler_id == KEEL_NONE)
    return KEEL_ENOMEM;
  int rc = keel_tel_attach(mt->handler_id, &mt->event, 1, on_event, mt);
  if (rc == KEEL_OK)
    r->m[r->n++] = mt;
  return rc;
}

int keel_metrics_add(keel_metrics *r, const keel_metric_spec *spec) {
  if (r == NULL)
    return KEEL_EINVAL;
  int rc = check_spec(spec);
  if (rc != KEEL_OK)
    return rc;
  keel__metric *mt = calloc(1, sizeof *mt);
  if (mt == NULL)
    return KEEL_ENOMEM;
  mt->reg = r;
  rc = metric_init(mt, spec);
  if (rc == KEEL_OK) {
    pthread_mutex_lock(&r->mu);
    rc = registry_push(r, mt);
    pthread_mutex_unlock(&r->mu);
  }
  if (rc != KEEL_OK)
    metric_free(mt);
  return rc;
}

/* ---- summary sketch ---- */

size_t keel__sketch_index(double v) {
  if (!(v > 0))
    return 0; /* zero, negative, NaN */
  int e;
  double m = frexp(v, &e); /* v = m * 2^e, m in [0.5, 1) */
  if (isinf(v) || e - 1 >= KEEL__SK_EMIN + KEEL__SK_OCTAVES)
    return KEEL__SK_BUCKETS - 1;
  if (e - 1 < KEEL__SK_EMIN)
    return 0;
  size_t sub = (size_t)((m - 0.5) * 2 * KEEL__SK_SUB);
  if (sub >= KEEL__SK_SUB)
    sub = KEEL__SK_SUB - 1;
  return (size_t)(e - 1 - KEEL__SK_EMIN) * KEEL__SK_SUB + sub;
}

/* Midpoint of bucket i. */
static double sketch_mid(size_t i) {
  int e = (int)(i / KEEL__SK_SUB) + KEEL__SK_EMIN + 1;
  double m = 0.5 + ((double)(i % KEEL__SK_SUB) + 0.5) / (2 * KEEL__SK_SUB);
  return ldexp(m, e);
}

double keel__sketch_quantile(const keel__series *s, double q) {
  uint64_t counts[KEEL__SK_BUCKETS];
  uint64_t total = 0;
  for (size_t i = 0; i < KEEL__SK_BUCKETS; i++) {
    counts[i] = atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    total += counts[i];
  }
  if (total == 0)
    return NAN;
  double mn = keel__bits_double(atomic_load(&s->min));
  double mx = keel__bits_double(atomic_load(&s->max));
  uint64_t rank = (uint64_t)ceil(q * (double)total);
  if (rank < 1)
    rank = 1;
  uint64_t cum = 0;
  size_t i = 0;
  for (; i < KEEL__SK_BUCKETS - 1; i++) {
    cum += counts[i];
    if (cum >= rank)
      break;
  }
  double v = i == 0 ? mn : sketch_mid(i);
  return fmin(fmax(v, mn), mx);
}

/* ---- reading ----------------------------------------------------------------
 */

static void series_read(const keel__metric *mt, keel__series *s,
                        keel_metric_value *out) {
  out->count = atomic_load(&s->count);
  out->sum = keel__bits_double(atomic_load(&s->sum));
  out->last = keel__bits_double(atomic_load(&s->last));
  out->min = keel__bits_double(atomic_load(&s->min));
  out->max = keel__bits_double(atomic_load(&s->max));
  if (out->buckets == NULL || mt->type != KEEL_METRIC_DISTRIBUTION)
    return;
  for (size_t i = 0; i < out->nbuckets && i <= mt->nbuckets; i++)
    out->buckets[i] = atomic_load(&s->buckets[i]);
}

/* The metric `name` and its series for tags (call under r->mu). */
static int find_series(const keel_metrics *r, const char *name,
                       const keel_term *tags, size_t ntags,
                       keel__metric **mt_out, keel__series **s_out) {
  for (size_t i = 0; i < r->n; i++) {
    keel__metric *mt = r->m[i];
    if (strcmp(mt->name, name) != 0)
      continue;
    if (ntags != mt->ntags)
      return KEEL_EINVAL;
    *mt_out = mt;
    *s_out = series_find(mt, tags, tags_hash(tags, ntags));
    return *s_out ? KEEL_OK : KEEL_ENOENT;
  }
  return KEEL_ENOENT;
}

int keel_metrics_read(keel_metrics *r, const char *name, const keel_term *tags,
                      size_t ntags, keel_metric_value *out) {
  if (r == NULL || name == NULL || out == NULL || (ntags > 0 && !tags))
    return KEEL_EINVAL;
  keel__metric *mt;
  keel__series *s;
  pthread_mutex_lock(&r->mu);
  int rc = find_series(r, name, tags, ntags, &mt, &s);
  if (rc == KEEL_OK)
    series_read(mt, s, out);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int keel_metrics_quantile(keel_metrics *r, const char *name,
                          const keel_term *tags, size_t ntags, double q,
                          double *out) {
  if (r == NULL || name == NULL || out == NULL || (ntags > 0 && !tags) ||
      !(q >= 0 && q <= 1))
    return KEEL_EINVAL;
  keel__metric *mt;
  keel__series *s;
  pthread_mutex_lock(&r->mu);
  int rc = find_series(r, name, tags, ntags, &mt, &s);
  if (rc == KEEL_OK && mt->type != KEEL_METRIC_SUMMARY)
    rc = KEEL_EINVAL;
  double v = rc == KEEL_OK ? keel__sketch_quantile(s, q) : NAN;
  pthread_mutex_unlock(&r->mu);
  if (rc == KEEL_OK && isnan(v))
    rc = KEEL_ENOENT;
  if (rc == KEEL_OK)
    *out = v;
  return rc;
}

uint64_t keel_metrics_dropped(keel_metrics *r) {
  return r ? atomic_load(&r->dropped) : 0;
}

int keel_metrics_foreach(keel_metrics *r, keel_metrics_visit_fn fn, void *arg) {
  if (r == NULL || fn == NULL)
    return KEEL_EINVAL;
  int rc = KEEL_OK;
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n && rc == KEEL_OK; i++) {
    keel__metric *mt = r->m[i];
    for (size_t j = 0; j < mt->cap && rc == KEEL_OK; j++) {
      keel__series *s =
          atomic_load_explicit(&mt->slots[j], memory_order_acquire);
      if (s == NULL)
        continue;
      keel_metric_value v = {0};
      series_read(mt, s, &v);
      rc = fn(mt->name, mt->type, mt->tags, s->tags, mt->ntags, &v, arg);
    }
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}
