/*
 * span.c - telemetry:span/3: start, stop and exception events with
 * monotonic time, duration and a span context in the metadata.
 */
#include <stdatomic.h>
#include <string.h>

#include "keel/clock.h"
#include "keel/telemetry.h"
#include "telemetry/tel_internal.h"

static _Atomic int64_t g_span_ids;

int keel_tel_span_events_get(const keel_term *prefix, size_t n,
                             keel_tel_span_events *out) {
  if (prefix == NULL || out == NULL || n == 0 || n >= KEEL_TEL_NAME_MAX)
    return KEEL_EINVAL;
  const keel__tel_atoms *a = keel__tel_atoms_get();
  keel_term name[KEEL_TEL_NAME_MAX];
  memcpy(name, prefix, n * sizeof *prefix);
  keel_term last[3] = {a->start, a->stop, a->exception};
  keel_tel_event **dst[3] = {&out->start, &out->stop, &out->exception};
  for (int i = 0; i < 3; i++) {
    name[n] = last[i];
    int rc = keel_tel_event_get(name, n + 1, dst[i]);
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

/* Copies md into buf (room for KEEL_TEL_SPAN_META_MAX + 4 pairs) with the
 * span context appended unless md has one; returns the count. */
static size_t meta_with_context(keel_tel_meta *buf, const keel_tel_meta *md,
                                size_t nmd, keel_term ctx) {
  const keel__tel_atoms *a = keel__tel_atoms_get();
  if (nmd > 0)
    memcpy(buf, md, nmd * sizeof *md);
  if (keel_tel_meta_get(md, nmd, a->span_context, NULL) == KEEL_OK)
    return nmd;
  buf[nmd].key = a->span_context;
  buf[nmd].value = ctx;
  return nmd + 1;
}

int keel_tel_span_start(keel_tel_span *s, const keel_tel_span_events *events,
                        const keel_tel_meta *md, size_t nmd) {
  if (s == NULL || events == NULL || (nmd > 0 && md == NULL))
    return KEEL_EINVAL;
  if (nmd > KEEL_TEL_SPAN_META_MAX)
    return KEEL_ELIMIT;
  const keel__tel_atoms *a = keel__tel_atoms_get();
  keel_term ctx;
  if (keel_tel_meta_get(md, nmd, a->span_context, &ctx) != KEEL_OK) {
    int64_t id =
        atomic_fetch_add_explicit(&g_span_ids, 1, memory_order_relaxed) &
        KEEL_SMALL_MAX;
    ctx = keel_small(id);
  }
  s->events = events;
  s->context = ctx;
  s->start_ns = keel_monotonic_ns();
  keel_tel_meta buf[KEEL_TEL_SPAN_META_MAX + 4];
  size_t n = meta_with_context(buf, md, nmd, ctx);
  keel_tel_measure m[2] = {{a->monotonic_time, (double)s->start_ns},
                           {a->system_time, (double)keel__tel_system_ns()}};
  keel_tel_execute(events->start, m, 2, buf, n);
  return KEEL_OK;
}

/* duration and monotonic_time, then the extras except those two keys. */
static size_t end_measures(keel_tel_measure *m, const keel_tel_span *s,
                           const keel_tel_measure *extra, size_t nextra) {
  const keel__tel_atoms *a = keel__tel_atoms_get();
  uint64_t now = keel_monotonic_ns();
  m[0].key = a->duration;
  m[0].value = (double)(now - s->start_ns);
  m[1].key = a->monotonic_time;
  m[1].value = (double)now;
  size_t n = 2;
  for (size_t i = 0; i < nextra; i++)
    if (extra[i].key != a->duration && extra[i].key != a->monotonic_time)
      m[n++] = extra[i];
  return n;
}

static int end_check(const keel_tel_span *s, size_t nextra,
                     const keel_tel_meta *md, size_t nmd) {
  if (s == NULL || s->events == NULL || (nmd > 0 && md == NULL))
    return KEEL_EINVAL;
  if (nmd > KEEL_TEL_SPAN_META_MAX || nextra > KEEL_TEL_SPAN_MEASURE_MAX)
    return KEEL_ELIMIT;
  return KEEL_OK;
}

int keel_tel_span_stop(keel_tel_span *s, const keel_tel_measure *extra,
                       size_t nextra, const keel_tel_meta *md, size_t nmd) {
  int rc = end_check(s, nextra, md, nmd);
  if (rc != KEEL_OK)
    return rc;
  if (nextra > 0 && extra == NULL)
    return KEEL_EINVAL;
  keel_tel_measure m[KEEL_TEL_SPAN_MEASURE_MAX + 2];
  size_t nm = end_measures(m, s, extra, nextra);
  keel_tel_meta buf[KEEL_TEL_SPAN_META_MAX + 4];
  size_t n = meta_with_context(buf, md, nmd, s->context);
  keel_tel_execute(s->events->stop, m, nm, buf, n);
  return KEEL_OK;
}

int keel_tel_span_exception(keel_tel_span *s, keel_term kind, keel_term reason,
                            const keel_tel_meta *md, size_t nmd) {
  int rc = end_check(s, 0, md, nmd);
  if (rc != KEEL_OK)
    return rc;
  const keel__tel_atoms *a = keel__tel_atoms_get();
  keel_tel_measure m[2];
  size_t nm = end_measures(m, s, NULL, 0);
  keel_tel_meta buf[KEEL_TEL_SPAN_META_MAX + 4];
  size_t n = meta_with_context(buf, md, nmd, s->context);
  buf[n++] = (keel_tel_meta){a->kind, kind};
  buf[n++] = (keel_tel_meta){a->reason, reason};
  buf[n++] = (keel_tel_meta){a->stacktrace, KEEL_NIL};
  keel_tel_execute(s->events->exception, m, nm, buf, n);
  return KEEL_OK;
}

int keel_tel_span_run(const keel_tel_span_events *events,
                      const keel_tel_meta *md, size_t nmd, keel_tel_span_fn fn,
                      void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  keel_tel_span s;
  int rc = keel_tel_span_start(&s, events, md, nmd);
  if (rc != KEEL_OK)
    return rc;
  int res = fn(arg);
  if (res >= 0)
    (void)keel_tel_span_stop(&s, NULL, 0, md, nmd);
  else
    (void)keel_tel_span_exception(&s, KEEL_ATOM(ERROR), keel_small(res), md,
                                  nmd);
  return res;
}
