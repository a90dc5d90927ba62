/*
 * fault.h - allocation fault injection for tests (internal).
 *
 * Every allocation the runtime makes on behalf of an operation (messages,
 * signals, tables, process slots, timers, stacks, term heaps) goes through
 * keel__fault() first. Disarmed (the default) that is one relaxed load of a
 * global; armed with keel__fault_arm(k), the (k+1)-th check from then on
 * fails once, as if malloc had returned NULL, so a test can walk every
 * allocation of a scenario and prove each failure is reported, not fatal.
 */
#ifndef KEEL_BASE_FAULT_H
#define KEEL_BASE_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

extern _Atomic int64_t keel__fault_countdown; /* < 0: disarmed */

bool keel__fault_slow(void);

/* Whether this allocation must fail. Thread-safe. */
static inline bool keel__fault(void) {
  if (__builtin_expect(atomic_load_explicit(&keel__fault_countdown,
                                            memory_order_relaxed) < 0,
                       1))
    return false;
  return keel__fault_slow();
}

/* Fails the allocation that comes after `after` more checks, once. */
void keel__fault_arm(int64_t after);
/* Disarms; returns how many checks were passed since the last arm. */
uint64_t keel__fault_disarm(void);

#endif /* KEEL_BASE_FAULT_H */
