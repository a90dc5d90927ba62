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
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "keel/runtime.h"
#include "keel/sim.h"

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

/* True while the node under test is simulated (keel/sim.h): waits then
 * drive the simulation instead of sleeping. */
static bool sim_mode;
/* Most steps a simulated wait makes before it counts as lost. */
#define SIM_MAX_STEPS 50000000u

static inline bool events_reached(void *arg) {
  pthread_mutex_lock(&mu);
  bool ok = events >= *(long *)arg;
  pthread_mutex_unlock(&mu);
  return ok;
}

/* Waits until pred(arg): drives the simulation in sim mode, else polls
 * (yielding the CPU) for at most TIMEOUT_S. */
static inline bool wait_until(bool (*pred)(void *), void *arg) {
  if (sim_mode)
    return keel_sim_run(pred, arg, SIM_MAX_STEPS) == KEEL_OK;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (!pred(arg)) {
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > TIMEOUT_S)
      return false;
  }
  return true;
}

/* Waits until `events` reaches target; false after TIMEOUT_S. */
static inline bool wait_events(long target) {
  if (sim_mode)
    return wait_until(events_reached, &target);
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

/* Seeds of the simulated runs: KEEL_SEED alone when set, else
 * KEEL_SIM_SEEDS of them (default 20) starting at 1. */
static inline uint64_t sim_seed_first(void) {
  const char *e = getenv("KEEL_SEED");
  return e != NULL && *e != '\0' ? strtoull(e, NULL, 0) : 1;
}

static inline uint64_t sim_seed_count(void) {
  if (getenv("KEEL_SEED") != NULL && *getenv("KEEL_SEED") != '\0')
    return 1;
  const char *e = getenv("KEEL_SIM_SEEDS");
  uint64_t k = e != NULL ? strtoull(e, NULL, 0) : 20;
  return k != 0 ? k : 1;
}

/* Starts a simulated node for `seed` with 1 to 4 simulated schedulers
 * (from the seed) and switches the waits to driving it. */
static inline void start_sim(uint64_t seed) {
  keel_node_opts o = {.schedulers = (unsigned)(1 + seed % 4)};
  cr_assert_eq(keel_sim_start(&o, seed), KEEL_OK, "sim start, seed %llu",
               (unsigned long long)seed);
  cr_assert_eq(keel_sim_seed(), seed);
  sim_mode = true;
  reset_events();
}

static inline void stop_sim(void) {
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  sim_mode = false;
}

/* Configuration c of a scenario run: the NCONF threaded ones, then (when
 * sim) the simulated seeds (keel/sim.h); describes it in cfg. False past
 * the last one. Stop each one with config_stop. */
static inline bool config_start_sim(size_t c, bool sim, char *cfg, size_t len) {
  uint64_t first = sim_seed_first(), count = sim ? sim_seed_count() : 0;
  if (c < NCONF) {
    start_node(sched_counts[c], 0);
    snprintf(cfg, len, "%u schedulers", sched_counts[c]);
    return true;
  }
  if (c >= NCONF + count)
    return false;
  start_sim(first + (c - NCONF));
  snprintf(cfg, len, "simulation, KEEL_SEED=%llu",
           (unsigned long long)(first + (c - NCONF)));
  return true;
}

/* Threaded configurations, then simulated seeds. */
static inline bool config_start(size_t c, char *cfg, size_t len) {
  return config_start_sim(c, true, cfg, len);
}

static inline void config_stop(void) {
  if (sim_mode)
    stop_sim();
  else
    cr_assert_eq(keel_node_stop(), KEEL_OK);
}

#endif /* KEEL_RT_TEST_H */
