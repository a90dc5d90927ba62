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

/* ---- G4: no ordering promise across senders --------------------------- */

/* Two shapes whose cross-sender order nothing promises: (a) two senders,
 * one message each, to one receiver; (b) A sends `direct` to R, then
 * `relayed` to C, which forwards it to R. The receiver records which
 * message came first; every run must deliver both exactly once. */
typedef struct g04_run {
  keel_term receiver, relay;
  atomic_int first; /* 1: `direct`/sender 1 first; 2: the other */
  atomic_int got;
} g04_run;

static g04_run g04;

static keel_handler_status g04_receiver(keel_proc *self, keel_term msg,
                                        void *st) {
  (void)self, (void)st;
  int which = msg == keel_atom("direct") || msg == keel_small(1) ? 1 : 2;
  int none = 0;
  (void)atomic_compare_exchange_strong(&g04.first, &none, which);
  if (atomic_fetch_add(&g04.got, 1) + 1 == 2)
    signal_event();
  return KEEL_CONTINUE;
}

static keel_handler_status g04_relay(keel_proc *self, keel_term msg, void *st) {
  (void)self, (void)st;
  (void)keel_send(g04.receiver, msg);
  return KEEL_CONTINUE;
}

static void g04_sender(keel_proc *self, void *arg) {
  (void)self;
  (void)keel_send(g04.receiver, keel_small((int64_t)(intptr_t)arg));
}

static void g04_via_relay(keel_proc *self, void *arg) {
  (void)self, (void)arg;
  (void)keel_send(g04.receiver, keel_atom("direct"));
  (void)keel_send(g04.relay, keel_atom("relayed"));
}

/* One run of shape `relay` (false: two senders) on a started node; the
 * first message's tag (1 or 2). */
static int g04_once(bool relay, const char *cfg) {
  atomic_store(&g04.first, 0);
  atomic_store(&g04.got, 0);
  reset_events();
  cr_assert_eq(keel_spawn(g04_receiver, NULL, NULL, &g04.receiver), KEEL_OK);
  if (relay) {
    cr_assert_eq(keel_spawn(g04_relay, NULL, NULL, &g04.relay), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(g04_via_relay, NULL, NULL, NULL), KEEL_OK);
  } else {
    for (intptr_t s = 1; s <= 2; s++)
      cr_assert_eq(keel_spawn_fiber(g04_sender, (void *)s, NULL, NULL),
                   KEEL_OK);
  }
  cr_assert(wait_events(1), "both messages arrive (%s)", cfg);
  cr_assert_eq(atomic_load(&g04.got), 2, "exactly once (%s)", cfg);
  return atomic_load(&g04.first);
}

/* The simulation produces both orders of each shape across seeds, so a
 * test of the suite that relied on one order would fail under some seed
 * of the G-suite's runs rather than pass by luck. On real threads the
 * test only checks that both messages arrive. */
Test(sim, g04_no_order_across_senders_both_orders_happen) {
  char cfg[64];
  for (int shape = 0; shape < 2; shape++) {
    for (size_t c = 0; c < NCONF; c++) {
      keel_node_opts o = {.schedulers = sched_counts[c]};
      cr_assert_eq(keel_node_start(&o), KEEL_OK);
      snprintf(cfg, sizeof cfg, "%u schedulers", sched_counts[c]);
      int first = g04_once(shape == 1, cfg);
      cr_assert(first == 1 || first == 2);
      cr_assert_eq(keel_node_stop(), KEEL_OK);
    }
    bool order_seen[3] = {false, false, false};
    uint64_t seed = 1;
    for (; seed <= 400 && !(order_seen[1] && order_seen[2]); seed++) {
      start_sim(seed);
      snprintf(cfg, sizeof cfg, "seed %llu", (unsigned long long)seed);
      order_seen[g04_once(shape == 1, cfg)] = true;
      stop_sim();
    }
    cr_assert(order_seen[1] && order_seen[2],
              "shape %d: only one order in %llu seeds (%s first)", shape,
              (unsigned long long)(seed - 1),
              order_seen[1] ? "first" : "second");
    printf("G4 shape %d: both orders within %llu seeds\n", shape,
           (unsigned long long)(seed - 1));
  }
}
