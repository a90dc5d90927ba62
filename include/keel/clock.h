/*
 * keel/clock.h - monotonic time.
 *
 * Keel measures every duration on CLOCK_MONOTONIC in nanoseconds, never on
 * the wall clock or a raw cycle counter.
 */
#ifndef KEEL_CLOCK_H
#define KEEL_CLOCK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Current CLOCK_MONOTONIC time in nanoseconds since an arbitrary origin.
 * Never fails; thread-safe; cheap (vDSO, no system call on Linux). */
uint64_t keel_monotonic_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_CLOCK_H */
