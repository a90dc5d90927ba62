/*
 * tel_internal.h - shared between the telemetry core's files: the atoms it
 * uses, resolved once.
 */
#ifndef KEEL_TEL_INTERNAL_H
#define KEEL_TEL_INTERNAL_H

#include <stdbool.h>

#include "keel/term.h"

typedef struct keel__tel_atoms {
  keel_term telemetry, handler, failure, handler_id, event_name, kind, reason,
      stacktrace, error, monotonic_time, system_time, duration, span_context,
      start, stop, exception;
} keel__tel_atoms;

/* The atoms, interned on first use (thread-safe). */
const keel__tel_atoms *keel__tel_atoms_get(void);

/* Whether t may equal another term without being the same word: only
 * boxed terms and lists can (immediates are equal exactly when their words
 * are). Lets comparisons skip keel_eq_exact on the common atom keys. */
static inline bool keel__term_boxed(keel_term t) {
  return keel_is_boxed(t) || keel_is_cons(t);
}

/* Wall-clock time in ns (CLOCK_REALTIME). */
int64_t keel__tel_system_ns(void);

#endif /* KEEL_TEL_INTERNAL_H */
