/*
 * metrics_internal.h - the layouts shared by metrics.c (recording) and
 * prometheus.c (exposition).
 */
#ifndef KEEL_METRICS_INTERNAL_H
#define KEEL_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "keel/metrics.h"

/* One combination of tag values. Doubles are stored as their bits. */
typedef struct keel__series {
  uint64_t hash;
  keel_heap heap; /* tag values */
  keel_term *tags;
  _Atomic uint64_t count;
  _Atomic uint64_t sum, last, min, max;
  _Atomic uint64_t buckets[]; /* nbuckets + 1 */
} keel__series;

typedef struct keel__metric {
  keel_metric_type type;
  char *name; /* dotted */
  char *prom; /* Prometheus name */
  char *help; /* may be NULL */
  keel_tel_event *event;
  keel_term measurement; /* atom, or KEEL_NONE with measure set */
  keel_metric_measure_fn measure;
  void *measure_arg;
  keel_metric_keep_fn keep;
  void *keep_arg;
  keel_term tags[KEEL_METRIC_MAX_TAGS];
  size_t ntags;
  double scale;
  double *bounds;
  size_t nbuckets;
  size_t max_series, cap; /* cap: slots, a power of two >= 2 * max */
  _Atomic(keel__series *) *slots;
  pthread_mutex_t mu; /* inserts */
  size_t nseries;
  keel_term handler_id;
  keel_heap id_heap;
  struct keel_metrics *reg;
} keel__metric;

struct keel_metrics {
  pthread_mutex_t mu; /* the metric array */
  keel__metric **m;
  size_t n, cap;
  int64_t uid;
  _Atomic uint64_t dropped;
};

/* keel_eq_exact, without the call when a is an immediate (immediates are
 * equal exactly when their words are). */
static inline bool keel__same_term(keel_term a, keel_term b) {
  return a == b ||
         ((keel_is_boxed(a) || keel_is_cons(a)) && keel_eq_exact(a, b));
}

/* Summary sketch: log-linear buckets, KEEL__SK_SUB per power of two from
 * 2^KEEL__SK_EMIN to 2^(KEEL__SK_EMIN + KEEL__SK_OCTAVES); bucket 0 also
 * takes zero, negative and tiny values, the last bucket huge ones. A
 * quantile is read as its bucket's midpoint, clamped to [min, max]:
 * within 1 / (2 * KEEL__SK_SUB) (3.1%) of a value of that rank. */
#define KEEL__SK_SUB 16
#define KEEL__SK_EMIN (-20)
#define KEEL__SK_OCTAVES 64
#define KEEL__SK_BUCKETS (KEEL__SK_SUB * KEEL__SK_OCTAVES)

/* Bucket of v in the sketch. */
size_t keel__sketch_index(double v);

/* Value of quantile q (0..1) of a series of a summary metric, by nearest
 * rank; NaN when the series is empty. */
double keel__sketch_quantile(const keel__series *s, double q);

static inline double keel__bits_double(uint64_t b) {
  union {
    uint64_t u;
    double d;
  } x = {.u = b};
  return x.d;
}

static inline uint64_t keel__double_bits(double d) {
  union {
    double d;
    uint64_t u;
  } x = {.d = d};
  return x.u;
}

#endif /* KEEL_METRICS_INTERNAL_H */
