/*
 * futex.h - thin wrappers over Linux futexes and a CPU pause hint.
 *
 * Internal to Keel (not installed). A futex word is a plain 32-bit C11
 * atomic, so the code that reads and writes it stays visible to TSan.
 */
#ifndef KEEL_BASE_FUTEX_H
#define KEEL_BASE_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>

/* Blocks the calling thread while *word == expected, for at most
 * timeout_ns nanoseconds (0 = no timeout). Returns on a wake-up, a
 * mismatch, a timeout or a signal: callers re-check their own condition.
 * Process-private futex. */
void keel__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                      uint64_t timeout_ns);

/* Wakes up to n threads blocked in keel__futex_wait on word. */
void keel__futex_wake(_Atomic uint32_t *word, int n);

/* A spin-wait hint to the CPU (pause / yield instruction). */
static inline void keel__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif /* KEEL_BASE_FUTEX_H */
