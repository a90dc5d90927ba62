/*
 * tel_internal.h - shared between the telemetry core's files: the atoms it
 * uses, resolved once.
 */
#ifndef KEEL_TEL_INTERNAL_H
#define KEEL_TEL_INTERNAL_H

#include "keel/term.h"

typedef struct keel__tel_atoms {
  keel_term telemetry, handler, failure, handler_id, event_name, kind, reason,
      stacktrace, error, monotonic_time, system_time, duration, span_context,
      start, stop, exception;
} keel__tel_atoms;

/* The atoms, interned on first use (thread-safe). */
const keel__tel_atoms *keel__tel_atoms_get(void);

/* Wall-clock time in ns (CLOCK_REALTIME). */
int64_t keel__tel_system_ns(void);

#endif /* KEEL_TEL_INTERNAL_H */
