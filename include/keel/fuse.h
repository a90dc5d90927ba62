/*
 * keel/fuse.h - circuit breakers with the semantics of Erlang's fuse
 * (jlouis/fuse 2.5).
 *
 * A keel_fuses set holds named fuses (a name is any term). A fuse is `ok`
 * until it melts too often: with the standard strategy it blows when the
 * melts inside a sliding window of window_ms exceed max_melts. A blown fuse
 * answers `blown` to every ask and heals fully to `ok` reset_ms after it
 * blew; there is no half-open state. The fault-injection strategy also
 * answers `blown` to an ok fuse's ask with probability `rate`.
 * circuit_disable blows a fuse administratively until circuit_enable;
 * it dominates every other operation except remove (a reinstall keeps it).
 *
 * keel_fuse_ask is lock-free (one atomic load; a hash probe to find the
 * name); melt and the administrative calls take the fuse's lock, so they
 * are linearizable. Time comes from the set's clock (injectable for tests,
 * CLOCK_MONOTONIC by default). The heal is applied when the set is next
 * used after the reset time (by ask, melt, run or an administrative call),
 * with the set's clock: the result is as if a timer had fired at that
 * time.
 *
 * Telemetry: [keel, fuse, blown] when a fuse goes from ok to blown (melts
 * or circuit_disable) and [keel, fuse, recovered] when it goes back (heal,
 * reset, reinstall, circuit_enable), both with metadata name => Name and no
 * measurements, emitted on the thread that made the change, after the
 * fuse's lock is released.
 */
#ifndef KEEL_FUSE_H
#define KEEL_FUSE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Results of keel_fuse_ask and keel_fuse_run, and what a keel_fuse_fn
 * returns to melt the fuse. */
#define KEEL_FUSE_OK 0
#define KEEL_FUSE_BLOWN 1
#define KEEL_FUSE_MELT 2

/* Largest max_melts (its history is kept in an array of max_melts + 1). */
#define KEEL_FUSE_MAX_MELTS (UINT32_C(1) << 20)
/* Default and largest number of names a set can hold. */
#define KEEL_FUSES_DEFAULT_MAX 1024
#define KEEL_FUSES_MAX (UINT32_C(1) << 24)

/* A clock: monotonic nanoseconds. */
typedef uint64_t (*keel_fuse_clock_fn)(void *arg);

/* Options of a set. Zero-initialise, then set what you need. */
typedef struct keel_fuses_opts {
  keel_fuse_clock_fn clock; /* NULL: keel_monotonic_ns */
  void *clock_arg;
  uint64_t seed;    /* of the fault-injection random numbers */
  size_t max_fuses; /* names ever installed; 0: KEEL_FUSES_DEFAULT_MAX */
} keel_fuses_opts;

/* A set of fuses. */
typedef struct keel_fuses keel_fuses;

/* Creates an empty set. opts may be NULL. Errors: KEEL_EINVAL (out NULL,
 * max_fuses > KEEL_FUSES_MAX), KEEL_ENOMEM. */
int keel_fuses_create(const keel_fuses_opts *opts, keel_fuses **out);

/* Destroys the set and every fuse in it. No other call on the set may run
 * or follow. NULL is ignored. */
void keel_fuses_destroy(keel_fuses *fs);

typedef enum keel_fuse_strategy {
  KEEL_FUSE_STANDARD = 0,       /* {standard, MaxMelts, WindowMs} */
  KEEL_FUSE_FAULT_INJECTION = 1 /* {fault_injection, Rate, MaxMelts, ...} */
} keel_fuse_strategy;

/* Options of a fuse: {Strategy, {reset, ResetMs}}. */
typedef struct keel_fuse_opts {
  keel_fuse_strategy strategy;
  double rate;        /* fault injection only: 0 < rate <= 1 */
  uint32_t max_melts; /* blows when melts in the window exceed this (>= 0) */
  uint64_t window_ms; /* sliding window; 0: melts never count */
  uint64_t reset_ms;  /* heal time after blowing */
} keel_fuse_opts;

/* Installs fuse `name` (copied), or reinstalls it: the options are
 * replaced and the state reset to ok with no melts, except that a
 * disabled fuse stays disabled (FU1, FU7). Errors: KEEL_EINVAL (bad
 * options: unknown strategy, rate outside (0, 1], max_melts >
 * KEEL_FUSE_MAX_MELTS, window or reset longer than 2^32 - 1 ms, name
 * KEEL_NONE, NULL pointers), KEEL_ESYSLIMIT (max_fuses names exist),
 * KEEL_ENOMEM. Thread-safe. */
int keel_fuse_install(keel_fuses *fs, keel_term name, const keel_fuse_opts *o);

/* Asks a fuse's state: KEEL_FUSE_OK, KEEL_FUSE_BLOWN, or KEEL_ENOENT (no
 * such fuse; also for fs NULL). Lock-free unless it applies a due heal.
 * Thread-safe. */
int keel_fuse_ask(keel_fuses *fs, keel_term name);

/* A handle on an installed fuse, for asks without the name's hash probe.
 * Its fields are private. It stays valid while the fuse stays installed
 * (melts, resets, reinstalls, circuit_disable/enable keep it); once the
 * fuse is removed the handle is stale for good (removes count a
 * generation), even if the name is installed again: take a new one. */
typedef struct keel_fuse_handle {
  void *fuse;   /* private */
  uint32_t gen; /* private */
} keel_fuse_handle;

/* Takes a handle on fuse `name`. KEEL_OK, KEEL_ENOENT (no such fuse, or
 * fs NULL), KEEL_EINVAL (out NULL). The handle holds no reference: it is
 * valid for fs only and only until keel_fuses_destroy. Thread-safe. */
int keel_fuse_handle_get(keel_fuses *fs, keel_term name, keel_fuse_handle *out);

/* keel_fuse_ask through a handle from keel_fuse_handle_get on the same
 * fs: KEEL_FUSE_OK, KEEL_FUSE_BLOWN, or KEEL_ENOENT (the fuse was removed
 * since the handle was taken, also when reinstalled; fs NULL; a zeroed
 * handle). One atomic load on an ok fuse; lock-free unless it applies a
 * due heal. Thread-safe. */
int keel_fuse_ask_h(keel_fuses *fs, keel_fuse_handle h);

/* Melts a fuse once, at the set's current time. Returns KEEL_OK, also for
 * an unknown name (as fuse:melt/1); KEEL_EINVAL for fs NULL. Thread-safe,
 * linearizable. */
int keel_fuse_melt(keel_fuses *fs, keel_term name);

/* Work run under a fuse: returns KEEL_FUSE_OK, or KEEL_FUSE_MELT (or any
 * other value) to melt the fuse. Results travel through arg. */
typedef int (*keel_fuse_fn)(void *arg);

/* fuse:run/3: asks; when ok, runs fn(arg) and melts the fuse if fn did not
 * return KEEL_FUSE_OK. Returns KEEL_FUSE_OK (fn ran), KEEL_FUSE_BLOWN (fn
 * did not run), KEEL_ENOENT, or KEEL_EINVAL (fn NULL). Thread-safe. */
int keel_fuse_run(keel_fuses *fs, keel_term name, keel_fuse_fn fn, void *arg);

/* Resets a fuse to ok with no melts (a disabled fuse stays blown).
 * KEEL_OK or KEEL_ENOENT. Thread-safe. */
int keel_fuse_reset(keel_fuses *fs, keel_term name);

/* Removes a fuse: later asks return KEEL_ENOENT. KEEL_OK or KEEL_ENOENT.
 * Thread-safe. */
int keel_fuse_remove(keel_fuses *fs, keel_term name);

/* Administratively blows (disable) or re-enables a fuse. Disabling
 * dominates melts, heals, resets and reinstalls; enabling an enabled fuse
 * does nothing, enabling a disabled one makes it ok with no melts.
 * KEEL_OK or KEEL_ENOENT. Thread-safe. */
int keel_fuse_circuit_disable(keel_fuses *fs, keel_term name);
int keel_fuse_circuit_enable(keel_fuses *fs, keel_term name);

/* One round of fuse's alarm monitor (fuse_monitor, run every 60 s
 * upstream; call it from a timer or a keel_poller measurement): a fuse
 * seen blown raises its alarm, emitting [keel, fuse, alarm_set] (metadata
 * name => Name) unless it is raised already; the alarm is cleared, with
 * [keel, fuse, alarm_cleared], only after 3 consecutive rounds that see
 * the fuse ok (hysteresis). Removed fuses are not visited (as upstream,
 * their alarm stays). Returns the number of alarms raised after the
 * round, or KEEL_EINVAL for fs NULL. Thread-safe (rounds are
 * serialized). */
int keel_fuses_monitor(keel_fuses *fs);

/* Whether fuse `name`'s alarm is raised: 1 or 0, or KEEL_ENOENT. */
int keel_fuse_alarm(keel_fuses *fs, keel_term name);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_FUSE_H */
