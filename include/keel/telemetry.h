/*
 * keel/telemetry.h - telemetry events and handlers (Erlang's :telemetry).
 *
 * An *event* is named by a list of atoms ([http, request, stop]). Code that
 * emits an event looks its descriptor up once (keel_tel_event_get, or
 * keel_tel_event_parse for a dotted name) and keeps the pointer; descriptors
 * are interned and live for the rest of the OS process, like atoms.
 *
 * keel_tel_execute(event, measurements, metadata) runs every handler
 * attached to the event synchronously on the calling thread (TEL1), in
 * attach order. Measurements are (atom, double) pairs and metadata (term,
 * term) pairs, both plain C arrays the caller usually keeps on its stack:
 * emitting allocates nothing. An event with no handler costs one atomic
 * load.
 *
 * Handlers are attached by id (any term, unique: TEL2) to one or more
 * events. A handler that returns a negative value is detached from all of
 * its events and the event [telemetry, handler, failure] is emitted (TEL3).
 *
 * Concurrency: execute never locks. The handler list of an event is an
 * immutable array swapped atomically by attach and detach; replaced arrays
 * and detached handlers are freed after a grace period (every execute that
 * could still see them has returned). attach, detach and execute may run
 * concurrently on any threads, and handlers may attach or detach (also
 * themselves) while running.
 */
#ifndef KEEL_TELEMETRY_H
#define KEEL_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest event name, in atoms. */
#define KEEL_TEL_NAME_MAX 16
/* Most distinct event names (descriptors) per OS process. */
#define KEEL_TEL_EVENTS_MAX 65536
/* Most metadata pairs keel_tel_span_* accept (they append their own). */
#define KEEL_TEL_SPAN_META_MAX 32
/* Most extra measurements keel_tel_span_stop accepts. */
#define KEEL_TEL_SPAN_MEASURE_MAX 16

/* An interned event descriptor. Opaque; never freed. */
typedef struct keel_tel_event keel_tel_event;

/* One measurement: key (an atom) and a number. */
typedef struct keel_tel_measure {
  keel_term key;
  double value;
} keel_tel_measure;

/* One metadata pair: any key and value terms. The terms must stay valid
 * during the execute call only. */
typedef struct keel_tel_meta {
  keel_term key;
  keel_term value;
} keel_tel_meta;

/* A handler. Called on the emitting thread with the event's measurements
 * (nm pairs) and metadata (nmd pairs), which live only during the call, and
 * the config pointer given at attach. Returns >= 0 on success; a negative
 * value (a KEEL_E* code) is a failure: the handler is detached from every
 * event and [telemetry, handler, failure] is emitted with metadata
 * handler_id, event_name, kind = error, reason = the returned code and
 * stacktrace = []. A handler may call every function of this header, but
 * keel_tel_synchronize returns KEEL_ESTATE inside a handler. */
typedef int (*keel_tel_handler_fn)(const keel_tel_event *event,
                                   const keel_tel_measure *m, size_t nm,
                                   const keel_tel_meta *md, size_t nmd,
                                   void *config);

/* Finds or creates the descriptor of the event named by atoms[0..n) and
 * stores it in *out. The same name always gives the same pointer.
 * Errors: KEEL_EINVAL (out NULL, n == 0 or n > KEEL_TEL_NAME_MAX, an
 * element is not an atom), KEEL_ESYSLIMIT (KEEL_TEL_EVENTS_MAX names
 * exist), KEEL_ENOMEM. Thread-safe (takes a lock: call once, keep the
 * pointer). */
int keel_tel_event_get(const keel_term *atoms, size_t n, keel_tel_event **out);

/* keel_tel_event_get for a dotted name: "http.request.stop" is
 * [http, request, stop]. Errors as keel_tel_event_get, and KEEL_EINVAL for
 * an empty segment, plus the atom table's errors. Thread-safe. */
int keel_tel_event_parse(const char *dotted, keel_tel_event **out);

/* The atoms of an event's name: stores a pointer to them in *atoms (valid
 * forever) and returns their number. */
size_t keel_tel_event_atoms(const keel_tel_event *event,
                            const keel_term **atoms);

/* The event's name as a list term of atoms, valid forever (it lives in the
 * descriptor; no heap needed). */
keel_term keel_tel_event_name(const keel_tel_event *event);

/* Attaches handler `id` (any term; copied) to events[0..nevents), which
 * must be distinct. config is passed to every call and owned by the caller
 * (free it only after keel_tel_detach has returned, outside any handler).
 * Errors: KEEL_EINVAL (fn NULL, no events, an event NULL or repeated, id
 * KEEL_NONE), KEEL_EEXIST (a handler with an equal id is attached),
 * KEEL_ENOMEM. Thread-safe. */
int keel_tel_attach(keel_term id, keel_tel_event *const *events, size_t nevents,
                    keel_tel_handler_fn fn, void *config);

/* Detaches handler `id` from all its events. Called outside any handler,
 * it returns only once no execute is still running the handler, so its
 * config may be freed at once. Called from a handler, the handler may
 * still run in executes already in progress on other threads.
 * Errors: KEEL_ENOENT (no such handler). Thread-safe. */
int keel_tel_detach(keel_term id);

/* Runs every handler attached to event, in attach order, on the calling
 * thread. m (nm pairs) and md (nmd pairs) may be NULL when their count is
 * 0. A failing handler is detached and reported (see keel_tel_handler_fn);
 * the remaining handlers still run. event NULL: nothing happens.
 * Thread-safe, lock-free, allocation-free (a failing handler's detach
 * excepted). */
void keel_tel_execute(keel_tel_event *event, const keel_tel_measure *m,
                      size_t nm, const keel_tel_meta *md, size_t nmd);

/* Lists the attached handlers whose events start with prefix[0..n) (n == 0:
 * all) as a list of {Id, EventName} tuples built in h, one per (handler,
 * event) pair, in attach order. Errors:
 * KEEL_EINVAL (h or out NULL, n > KEEL_TEL_NAME_MAX), KEEL_ENOMEM.
 * Thread-safe. */
int keel_tel_list_handlers(const keel_term *prefix, size_t n, keel_heap *h,
                           keel_term *out);

/* Waits until every execute that started before this call has returned,
 * and frees what detached handlers left behind. Errors: KEEL_ESTATE when
 * called from a handler (it would wait for itself). Thread-safe. */
int keel_tel_synchronize(void);

/* Value of measurement `key` in m[0..nm): KEEL_OK or KEEL_ENOENT. */
int keel_tel_measure_get(const keel_tel_measure *m, size_t nm, keel_term key,
                         double *value);

/* Value of metadata `key` (compared with keel_eq_exact) in md[0..nmd):
 * KEEL_OK or KEEL_ENOENT. */
int keel_tel_meta_get(const keel_tel_meta *md, size_t nmd, keel_term key,
                      keel_term *value);

/* ------------------------------------------------------------------------ */
/* Spans (TEL4: telemetry:span/3)                                           */
/* ------------------------------------------------------------------------ */

/* The three events of a span: Prefix ++ [start], [stop], [exception]. */
typedef struct keel_tel_span_events {
  keel_tel_event *start;
  keel_tel_event *stop;
  keel_tel_event *exception;
} keel_tel_span_events;

/* Looks up the three events of the span prefix[0..n). Errors as
 * keel_tel_event_get (n must leave room for the last atom). Thread-safe. */
int keel_tel_span_events_get(const keel_term *prefix, size_t n,
                             keel_tel_span_events *out);

/* A running span, owned by the caller (usually on its stack). */
typedef struct keel_tel_span {
  const keel_tel_span_events *events;
  uint64_t start_ns; /* monotonic time of the start event */
  keel_term context; /* telemetry_span_context of every event of the span */
} keel_tel_span;

/* Starts a span: emits events->start with measurements monotonic_time and
 * system_time (ns) and metadata md plus telemetry_span_context (a unique
 * integer, unless md has that key: then md's value is used).
 * Errors: KEEL_EINVAL (NULL arguments), KEEL_ELIMIT (nmd >
 * KEEL_TEL_SPAN_META_MAX). Thread-safe. */
int keel_tel_span_start(keel_tel_span *s, const keel_tel_span_events *events,
                        const keel_tel_meta *md, size_t nmd);

/* Ends a span normally: emits stop with measurements duration (ns since
 * start) and monotonic_time plus extra[0..nextra) (an extra duration or
 * monotonic_time is ignored: they cannot be overridden) and metadata md
 * plus telemetry_span_context. Errors: KEEL_EINVAL, KEEL_ELIMIT (nmd >
 * KEEL_TEL_SPAN_META_MAX or nextra > KEEL_TEL_SPAN_MEASURE_MAX). */
int keel_tel_span_stop(keel_tel_span *s, const keel_tel_measure *extra,
                       size_t nextra, const keel_tel_meta *md, size_t nmd);

/* Ends a span with a failure: emits exception with measurements duration
 * and monotonic_time and metadata md plus kind, reason, stacktrace ([])
 * and telemetry_span_context. Errors as keel_tel_span_stop. */
int keel_tel_span_exception(keel_tel_span *s, keel_term kind, keel_term reason,
                            const keel_tel_meta *md, size_t nmd);

/* A function run in a span. Returns >= 0 on success, a KEEL_E* code on
 * failure. */
typedef int (*keel_tel_span_fn)(void *arg);

/* telemetry:span/3: start, fn(arg), then stop when it returns >= 0, or
 * exception with kind = error and reason = the returned code (a small
 * integer). Returns fn's result, or a span error before fn ran. */
int keel_tel_span_run(const keel_tel_span_events *events,
                      const keel_tel_meta *md, size_t nmd, keel_tel_span_fn fn,
                      void *arg);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_TELEMETRY_H */
