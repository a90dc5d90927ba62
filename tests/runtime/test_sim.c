/* The deterministic simulation mode: replay by seed, virtual time,
 * quiescence, and that different seeds explore different interleavings. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel/clock.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "keel/sim.h"
#include "runtime/rt_test.h"

#define WORKERS 6
#define ROUNDS 200

/* The order in which the collector saw the workers' messages. */
static int seen[WORKERS * ROUNDS];
static atomic_int nseen;

static void worker(keel_proc *self, void *arg) {
  keel_term collector = *(keel_term *)arg;
  int id = (int)(keel_pid_local_number(keel_self(self)) & 0xff);
  for (int i = 0; i < ROUNDS; i++)
    (void)keel_send(collector, keel_small(id));
}

static keel_handler_status collect(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)st;
  int k = atomic_fetch_add(&nseen, 1);
  seen[k] = (int)keel_small_value(msg);
  if (k + 1 == WORKERS * ROUNDS)
    signal_event();
  return KEEL_CONTINUE;
}

typedef struct run_result {
  uint64_t trace, steps;
  uint64_t order_hash;
} run_result;

static run_result run_once(uint64_t seed, unsigned nsched) {
  keel_node_opts o = {.schedulers = nsched};
  cr_assert_eq(keel_sim_start(&o, seed), KEEL_OK);
  sim_mode = true;
  reset_events();
  atomic_store(&nseen, 0);
  keel_term collector;
  cr_assert_eq(keel_spawn(collect, NULL, NULL, &collector), KEEL_OK);
  for (int w = 0; w < WORKERS; w++)
    cr_assert_eq(keel_spawn_fiber(worker, &collector, NULL, NULL), KEEL_OK);
  cr_assert(wait_events(1), "seed %llu", (unsigned long long)seed);
  run_result r = {keel_sim_trace(), keel_sim_steps(), 1469598103934665603u};
  for (int k = 0; k < WORKERS * ROUNDS; k++)
    r.order_hash = (r.order_hash ^ (uint64_t)seen[k]) * 1099511628211u;
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  sim_mode = false;
  return r;
}

Test(sim, same_seed_replays_the_same_interleaving) {
  for (uint64_t seed = 1; seed <= 5; seed++) {
    run_result a = run_once(seed, 3), b = run_once(seed, 3);
    cr_assert_gt(a.steps, 0);
    cr_assert_eq(a.trace, b.trace, "seed %llu", (unsigned long long)seed);
    cr_assert_eq(a.steps, b.steps);
    cr_assert_eq(a.order_hash, b.order_hash, "same message order");
  }
}

Test(sim, different_seeds_explore_different_orders) {
  /* Eight workers' messages interleave at the collector; with random
   * scheduling and preemption, ten seeds give several distinct orders. */
  uint64_t orders[10];
  int distinct = 0;
  for (int i = 0; i < 10; i++) {
    orders[i] = run_once((uint64_t)i + 100, 2).order_hash;
    bool fresh = true;
    for (int j = 0; j < i; j++)
      fresh &= orders[j] != orders[i];
    distinct += fresh;
  }
  cr_assert_geq(distinct, 5, "only %d distinct orders in 10 seeds", distinct);
}

static atomic_int timed_out;

static void sleeper(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  if (keel_receive(self, NULL, NULL, 3600 * 1000, &m) == KEEL_ETIMEDOUT)
    atomic_store(&timed_out, 1);
  signal_event();
}

Test(sim, virtual_time_runs_an_hour_of_timeouts_at_once) {
  uint64_t t0 = keel_monotonic_ns();
  cr_assert_eq(keel_sim_start(NULL, 7), KEEL_OK);
  sim_mode = true;
  reset_events();
  atomic_store(&timed_out, 0);
  cr_assert_eq(keel_spawn_fiber(sleeper, NULL, NULL, NULL), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(atomic_load(&timed_out), 1);
  cr_assert_geq(keel_sim_time_ms(), 3600 * 1000, "no early timeout");
  cr_assert_lt(keel_sim_time_ms(), 3600 * 1000 + 100);
  /* Nothing is left: the node is quiescent. */
  cr_assert_eq(keel_sim_run(NULL, NULL, 1000), KEEL_OK);
  cr_assert_eq(keel_sim_step(), 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  sim_mode = false;
  cr_assert_lt(keel_monotonic_ns() - t0, UINT64_C(10) * 1000000000u,
               "virtual, not real, time");
}

Test(sim, seed_from_environment_and_errors) {
  cr_assert_eq(keel_sim_step(), KEEL_ESTATE);
  cr_assert_eq(keel_sim_run(NULL, NULL, 1), KEEL_ESTATE);
  cr_assert(!keel_sim_active());
  cr_assert_eq(keel_sim_seed(), 0);
  cr_assert_eq(keel_sim_time_ms(), 0);
  setenv("KEEL_SEED", "12345", 1);
  cr_assert_eq(keel_sim_start(NULL, 0), KEEL_OK);
  cr_assert_eq(keel_sim_seed(), 12345);
  cr_assert(keel_sim_active());
  cr_assert_eq(keel_sim_start(NULL, 1), KEEL_ESTATE, "one node at a time");
  cr_assert_eq(keel_node_start(NULL), KEEL_ESTATE);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  unsetenv("KEEL_SEED");
  cr_assert_eq(keel_sim_start(NULL, 0), KEEL_OK);
  cr_assert_neq(keel_sim_seed(), 0, "a seed is always chosen");
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* A send_after timer, a kill and a monitor in one simulation: the 'DOWN'
 * comes at the virtual time the timer says. */
static void victim(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &m);
  keel_stop(self, m);
}

static void watcher(keel_proc *self, void *arg) {
  uint64_t *at = arg;
  keel_term pid, ref, m;
  keel_heap h;
  keel_heap_init(&h);
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
  (void)keel_spawn_fiber(victim, NULL, &so, &pid);
  (void)keel_send_after(pid, keel_atom("late"), 250, NULL);
  if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) == KEEL_OK &&
      keel_tuple_get(m, 4) == keel_atom("late"))
    *at = keel_sim_time_ms();
  keel_heap_destroy(&h);
  signal_event();
}

Test(sim, timers_and_monitors_on_virtual_time) {
  for (uint64_t seed = 1; seed <= 10; seed++) {
    uint64_t at = 0;
    cr_assert_eq(keel_sim_start(&(keel_node_opts){.schedulers = 2}, seed),
                 KEEL_OK);
    sim_mode = true;
    reset_events();
    cr_assert_eq(keel_spawn_fiber(watcher, &at, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_geq(at, 250, "seed %llu: not before the timer",
                  (unsigned long long)seed);
    cr_assert_lt(at, 260);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    sim_mode = false;
  }
}
