/*
 * keel/metrics.h - metrics aggregated from telemetry events
 * (Telemetry.Metrics), their Prometheus text exposition, a poller of
 * runtime figures (telemetry_poller) and a testing utility forwarding events
 * to a process (telemetry_test).
 *
 * A keel_metrics registry holds metric definitions. Adding one attaches a
 * telemetry handler to its event; the handler aggregates on the emitting
 * thread at record time (no raw observations are kept, so memory does not
 * grow when nobody scrapes): one series per combination of tag values, at
 * most max_series per metric (further combinations are dropped and
 * counted). Series are found without a lock and updated with atomic
 * operations; a new series is inserted under the metric's lock.
 */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/error.h"
#include "keel/telemetry.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default and largest number of series (tag combinations) per metric. */
#define KEEL_METRIC_DEFAULT_SERIES 1000
#define KEEL_METRIC_MAX_SERIES 1000000
/* Most tags and buckets per metric. */
#define KEEL_METRIC_MAX_TAGS 16
#define KEEL_METRIC_MAX_BUCKETS 128

typedef enum keel_metric_type {
  KEEL_METRIC_COUNTER,     /* number of events */
  KEEL_METRIC_SUM,         /* sum of the measurement */
  KEEL_METRIC_LAST_VALUE,  /* last measurement seen */
  KEEL_METRIC_SUMMARY,     /* count, sum, min, max and quantiles */
  KEEL_METRIC_DISTRIBUTION /* histogram over explicit buckets */
} keel_metric_type;

/* Computes the value to record from an event; returns KEEL_OK, or anything
 * else to skip the event. */
typedef int (*keel_metric_measure_fn)(const keel_tel_measure *m, size_t nm,
                                      const keel_tel_meta *md, size_t nmd,
                                      void *arg, double *out);

/* Decides whether an event is recorded (Telemetry.Metrics keep/drop). */
typedef bool (*keel_metric_keep_fn)(const keel_tel_meta *md, size_t nmd,
                                    void *arg);

/* A metric definition. Strings are copied by keel_metrics_add. */
typedef struct keel_metric_spec {
  keel_metric_type type;
  /* Dotted name, e.g. "http.request.duration". Required. */
  const char *name;
  /* Dotted event name; NULL: name without its last segment. */
  const char *event_name;
  /* Measurement key; NULL: the last segment of name. Ignored by counters
   * and when measure is set. */
  const char *measurement;
  keel_metric_measure_fn measure; /* may be NULL */
  void *measure_arg;
  /* Metadata keys (atom names) whose values label the series. */
  const char *const *tags;
  size_t ntags;
  keel_metric_keep_fn keep; /* may be NULL: keep everything */
  void *keep_arg;
  const char *description; /* may be NULL */
  /* Multiplies each recorded value (unit conversion, e.g. 1e-6 for ns to
   * ms); 0 means 1. */
  double scale;
  /* Distribution: strictly increasing finite upper bounds (le); an +Inf
   * bucket is added. Required for distributions, ignored otherwise. */
  const double *buckets;
  size_t nbuckets;
  /* Most series; 0: KEEL_METRIC_DEFAULT_SERIES. */
  size_t max_series;
} keel_metric_spec;

/* A registry of metrics. */
typedef struct keel_metrics keel_metrics;

/* Creates an empty registry. Errors: KEEL_EINVAL (out NULL), KEEL_ENOMEM. */
int keel_metrics_create(keel_metrics **out);

/* Detaches every metric's handler (waiting until no handler runs, see
 * keel_tel_detach) and frees the registry. Must not be called from a
 * telemetry handler. NULL is ignored. */
void keel_metrics_destroy(keel_metrics *r);

/* Adds a metric and starts recording. Errors: KEEL_EINVAL (missing or
 * malformed name, event name or measurement; bad type; tags or buckets out
 * of range; buckets not strictly increasing or not finite; a
 * distribution without buckets), KEEL_EEXIST (a metric whose Prometheus
 * name is the same), KEEL_ENOMEM, and keel_tel_event_parse's errors.
 * Thread-safe (with other calls on the registry and with recording). */
int keel_metrics_add(keel_metrics *r, const keel_metric_spec *spec);

/* The aggregate of one series, as read by keel_metrics_read. */
typedef struct keel_metric_value {
  uint64_t count;    /* events recorded */
  double sum;        /* sum (sum, summary, distribution) */
  double last;       /* last_value */
  double min, max;   /* summary (quantiles: keel_metrics_quantile) */
  uint64_t *buckets; /* distribution: per-bucket counts (not cumulative),
                        nbuckets + 1 entries (the last is +Inf); caller's
                        array, may be NULL */
  size_t nbuckets;   /* entries of buckets the caller provides */
} keel_metric_value;

/* Reads the series of metric `name` whose tag values are tags[0..ntags)
 * (in the metric's tag order; compared exactly). Errors: KEEL_ENOENT (no
 * such metric or series), KEEL_EINVAL. Thread-safe; a snapshot whose
 * fields may be from slightly different instants under concurrent
 * recording. */
int keel_metrics_read(keel_metrics *r, const char *name, const keel_term *tags,
                      size_t ntags, keel_metric_value *out);

/* Quantile q (0 <= q <= 1) of the series of summary metric `name` with
 * tag values tags[0..ntags), by nearest rank, from a log-linear sketch of
 * 16 buckets per power of two (2^-20 .. 2^44; values at or below 2^-20,
 * zero and negative ones count as the minimum): within 3.1% of a recorded
 * value of that rank, and within [min, max]. Errors: KEEL_ENOENT (no such
 * metric or series, or an empty one), KEEL_EINVAL (not a summary, q out
 * of range, NULL arguments). Thread-safe. */
int keel_metrics_quantile(keel_metrics *r, const char *name,
                          const keel_term *tags, size_t ntags, double q,
                          double *out);

/* Number of events dropped because a metric had max_series series (all
 * metrics). Thread-safe. */
uint64_t keel_metrics_dropped(keel_metrics *r);

/* Called by keel_metrics_foreach once per series: the metric's dotted
 * name and type, the tag names (atoms) and values of the series (ntags
 * each) and its aggregate (buckets NULL). Everything lives only during
 * the call. Must not call into the registry. Return KEEL_OK to go on,
 * anything else to stop (keel_metrics_foreach then returns it). */
typedef int (*keel_metrics_visit_fn)(const char *name, keel_metric_type type,
                                     const keel_term *tag_names,
                                     const keel_term *tag_values, size_t ntags,
                                     const keel_metric_value *value, void *arg);

/* Visits every series of every metric, metrics in the order added (the
 * series of a metric in no particular order), under the registry's lock
 * (recording goes on meanwhile). Returns KEEL_OK, KEEL_EINVAL (r or fn
 * NULL) or the first non-KEEL_OK value fn returned. Thread-safe. */
int keel_metrics_foreach(keel_metrics *r, keel_metrics_visit_fn fn, void *arg);

/* Appends the Prometheus text exposition (format 0.0.4) of every metric
 * to out: HELP and TYPE lines, one sample per series, labels from tags
 * (values: atoms and binaries as text, integers in decimal, other terms
 * printed), escaped. counter and sum are counters, last_value a gauge,
 * summary a summary with quantiles 0.5, 0.9, 0.99 (see
 * keel_metrics_quantile), _sum and _count, distribution a
 * histogram with cumulative _bucket{le=...} lines, +Inf, _sum and _count.
 * Names: dots and other characters not allowed become '_'.
 * Errors: KEEL_EINVAL, KEEL_ENOMEM (out then holds a partial text).
 * Thread-safe. */
int keel_metrics_prometheus(keel_metrics *r, keel_buf *out);

/* ------------------------------------------------------------------------ */
/* Poller (telemetry_poller)                                                */
/* ------------------------------------------------------------------------ */

/* A measurement the poller runs each period; it emits its own events. */
typedef void (*keel_poller_fn)(void *arg);

typedef struct keel_poller_opts {
  uint64_t period_ms;     /* 0: 5000 */
  uint64_t init_delay_ms; /* before the first round; default 0 */
  /* Emit [keel, vm, system_counts] from keel_node_stats_get each round
   * (when a node runs): process_count, spawned, messages_live,
   * messages_sent, timer_count. Such a poller must be stopped before
   * keel_node_stop (the runtime's figures are not readable while the
   * node stops). */
  bool node_stats;
  const keel_poller_fn *fns; /* nfns measurements, with args[i] */
  void *const *args;
  size_t nfns;
} keel_poller_opts;

typedef struct keel_poller keel_poller;

/* Starts a poller thread that runs the measurements every period_ms
 * (CLOCK_MONOTONIC). Errors: KEEL_EINVAL (bad options: period or delay
 * longer than 2^32 - 1 ms, nothing to measure, fns NULL with nfns > 0),
 * KEEL_ENOMEM, KEEL_EIO (no thread). */
int keel_poller_start(const keel_poller_opts *opts, keel_poller **out);

/* Stops the poller: wakes its thread, waits until it has ended (a round in
 * progress completes) and frees it. Not from a measurement. NULL is
 * ignored. */
void keel_poller_stop(keel_poller *p);

/* ------------------------------------------------------------------------ */
/* Testing utility (telemetry_test:attach_event_handlers)                  */
/* ------------------------------------------------------------------------ */

/* Attaches a handler to events[0..n) that sends {EventName, Ref,
 * Measurements, Metadata} to pid for every event (maps; integral
 * measurements as integers, others as floats). Ref is a new reference,
 * built in h and stored in *ref; it is also the handler id. Sending
 * errors (no node) are ignored, but as for any thread that sends, events
 * must not be emitted on non-node threads while keel_node_stop runs.
 * Detach with keel_tel_forward_detach.
 * Errors: keel_tel_attach's, KEEL_EBADARG (pid not a local pid),
 * KEEL_EINVAL, KEEL_ENOMEM. Thread-safe. */
int keel_tel_forward_attach(keel_term pid, keel_tel_event *const *events,
                            size_t n, keel_heap *h, keel_term *ref);

/* Detaches a forwarding handler and frees it. KEEL_OK or KEEL_ENOENT. Not
 * from a telemetry handler. */
int keel_tel_forward_detach(keel_term ref);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_METRICS_H */
