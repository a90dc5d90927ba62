/*
 * fault.c - allocation fault injection (see fault.h).
 */
#include "base/fault.h"

_Atomic int64_t keel__fault_countdown = -1;
static _Atomic uint64_t passed;

bool keel__fault_slow(void) {
  atomic_fetch_add_explicit(&passed, 1, memory_order_relaxed);
  int64_t left = atomic_fetch_sub_explicit(&keel__fault_countdown, 1,
                                           memory_order_relaxed);
  if (left == 0) {
    /* This one fails; later ones pass (counting continues from -1 down,
     * so re-arm to fail again). */
    atomic_store_explicit(&keel__fault_countdown, INT64_MIN / 2,
                          memory_order_relaxed);
    return true;
  }
  return false;
}

void keel__fault_arm(int64_t after) {
  atomic_store_explicit(&passed, 0, memory_order_relaxed);
  atomic_store_explicit(&keel__fault_countdown, after, memory_order_relaxed);
}

uint64_t keel__fault_disarm(void) {
  atomic_store_explicit(&keel__fault_countdown, -1, memory_order_relaxed);
  return atomic_load_explicit(&passed, memory_order_relaxed);
}
