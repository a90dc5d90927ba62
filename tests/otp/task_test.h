/*
 * task_test.h - helpers of the Task tests: scenarios run as fibers in
 * every configuration (1, 2 and 8 schedulers, then simulated seeds),
 * failures counted from any process and asserted on the test thread, and
 * task functions shared by the suites. Header-only: include once.
 */
#ifndef KEEL_TASK_TEST_H
#define KEEL_TASK_TEST_H

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/signals.h"
#include "keel/task.h"
#include "runtime/rt_test.h"

/* Failed checks of the running scenario (processes cannot cr_assert). */
static atomic_int failures;

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      atomic_fetch_add(&failures, 1);                                          \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);    \
    }                                                                          \
  } while (0)

static inline keel_term atom(const char *s) {
  return keel_atom(s);
}

/* Runs the fiber scenario fn in every configuration; fn ends with
 * signal_event(). */
static inline void each_config(keel_fiber_fn fn, bool sim) {
  char cfg[96];
  for (size_t c = 0; config_start_sim(c, sim, cfg, sizeof cfg); c++) {
    atomic_store(&failures, 0);
    cr_assert_eq(keel_spawn_fiber(fn, NULL, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%s)", cfg);
    cr_assert_eq(atomic_load(&failures), 0, "checks failed (%s)", cfg);
    config_stop();
  }
}

static inline int64_t small_of(keel_term t) {
  return keel_small_value(t);
}

/* Task: input * input + 1 (the oracle computes it independently). */
static inline keel_term square_plus_one(keel_proc *self, void *arg,
                                        keel_term input, keel_heap *h) {
  (void)self;
  (void)arg;
  int64_t v = small_of(input);
  return keel_int(h, v * v + 1);
}

static inline bool is_release(keel_term msg, void *arg) {
  (void)arg;
  return msg == atom("release");
}

/* Task: waits for the message 'release', then returns {released, Input}. */
static inline keel_term blocker(keel_proc *self, void *arg, keel_term input,
                                keel_heap *h) {
  (void)arg;
  keel_term m;
  if (keel_receive(self, is_release, NULL, KEEL_INFINITY, &m) != KEEL_OK)
    return KEEL_NONE;
  return keel_tuple(h, 2, atom("released"), input);
}

/* Task: exits with reason {boom, Input}. */
static inline keel_term crasher(keel_proc *self, void *arg, keel_term input,
                                keel_heap *h) {
  (void)arg;
  (void)keel_stop(self, keel_tuple(h, 2, atom("boom"), input));
  return KEEL_NONE;
}

/* Messages queued for self. */
static inline size_t queue_len(keel_proc *self) {
  keel_process_info_t pi;
  if (keel_process_info(keel_self(self), &pi) != KEEL_OK)
    return SIZE_MAX;
  return pi.message_queue_len;
}

static inline bool alive(keel_term pid) {
  keel_process_info_t pi;
  return keel_process_info(pid, &pi) == KEEL_OK;
}

static inline bool is_down_of(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 5 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(m, 1), *(keel_term *)arg);
}

/* A monitor of pid by self (KEEL_NONE on failure). */
static inline keel_term mon(keel_proc *self, keel_term pid) {
  keel_term ref;
  if (keel_monitor(self, pid, 0, keel_proc_heap(self), &ref) != KEEL_OK)
    return KEEL_NONE;
  return ref;
}

/* Waits for the 'DOWN' of monitor ref; its reason, or KEEL_NONE. */
static inline keel_term down_reason(keel_proc *self, keel_term ref) {
  keel_term m;
  if (ref == KEEL_NONE)
    return KEEL_NONE;
  if (keel_receive(self, is_down_of, &ref, TIMEOUT_S * 1000, &m) != KEEL_OK)
    return KEEL_NONE;
  return keel_term_copy(keel_proc_heap(self), keel_tuple_get(m, 4));
}

/* Waits until pid, which ends normally, is dead (noproc: it already was). */
static inline bool wait_normal_end(keel_proc *self, keel_term pid) {
  keel_term r = down_reason(self, mon(self, pid));
  return r == KEEL_ATOM(NORMAL) || r == KEEL_ATOM(NOPROC);
}

#endif /* KEEL_TASK_TEST_H */
