/*
 * rt_test.h - helpers shared by the runtime tests: the scheduler counts
 * every scenario runs with, an event counter the test thread waits on with
 * a bound (never a sleep), and node start. Header-only, static inline:
 * include it once per test file.
 */
#ifndef KEEL_RT_TEST_H
#define KEEL_RT_TEST_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "keel/runtime.h"

static const unsigned sched_counts[] = {1, 2, 8};
#define NCONF (sizeof sched_counts / sizeof sched_counts[0])
/* Bound of every wait: a lost wake-up fails the test instead of hanging. */
#define TIMEOUT_S 30

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long events;

/* Counts one event (any thread, any process). */
static inline void signal_event(void) {
  pthread_mutex_lock(&mu);
  events++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* Waits until `events` reaches target; false after TIMEOUT_S. */
static inline bool wait_events(long target) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += TIMEOUT_S;
  pthread_mutex_lock(&mu);
  int rc = 0;
  while (events < target && rc == 0)
    rc = pthread_cond_timedwait(&cv, &mu, &dl);
  bool ok = events >= target;
  pthread_mutex_unlock(&mu);
  return ok;
}

static inline void reset_events(void) {
  pthread_mutex_lock(&mu);
  events = 0;
  pthread_mutex_unlock(&mu);
}

/* Starts a node with nsched schedulers and at most max_procs processes
 * (0: the default) and resets the event counter. */
static inline void start_node(unsigned nsched, size_t max_procs) {
  keel_node_opts o = {.schedulers = nsched, .max_processes = max_procs};
  cr_assert_eq(keel_node_start(&o), KEEL_OK, "start with %u", nsched);
  cr_assert_eq(keel_node_schedulers(), nsched);
  reset_events();
}

#endif /* KEEL_RT_TEST_H */
