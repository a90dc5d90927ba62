/* Scheduler utilisation (keel_sched_utilisation): busy and total wall time
 * per scheduler since node start. A scheduler kept busy shows a
 * utilisation near 1 over an interval, an idle node near 0. */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "keel/clock.h"
#include "keel/runtime.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"

/* Self-messaging until a deadline (state): never blocks, always runnable. */
static keel_handler_status busy_loop(keel_proc *self, keel_term msg,
                                     void *state) {
  (void)msg;
  uint64_t *until = state;
  if (keel_monotonic_ns() < *until)
    keel_send(keel_self(self), KEEL_NIL);
  else
    signal_event();
  return KEEL_CONTINUE;
}

static bool wait_all_parked(void) {
  rt_node *n = keel__rt;
  uint64_t all =
      n->nsched == 64 ? ~UINT64_C(0) : (UINT64_C(1) << n->nsched) - 1;
  uint64_t t0 = keel_monotonic_ns();
  while (atomic_load(&n->idle_mask) != all) {
    if (keel_monotonic_ns() - t0 > (uint64_t)TIMEOUT_S * 1000000000u)
      return false;
    sched_yield();
  }
  return true;
}

static void snapshot(keel_sched_time *t, unsigned ns) {
  cr_assert_eq(keel_sched_utilisation(t, ns), (int)ns);
  for (unsigned i = 0; i < ns; i++)
    cr_assert_leq(t[i].busy_ns, t[i].total_ns);
}

static double util(const keel_sched_time *a, const keel_sched_time *b) {
  return (double)(b->busy_ns - a->busy_ns) /
         (double)(b->total_ns - a->total_ns);
}

/* One process per scheduler, each busy for 300 ms: every scheduler's
 * utilisation over that interval is high. Busy time is wall time, so a
 * thread descheduled by a loaded machine still counts as busy. */
Test(util, busy_schedulers_show_high_utilisation) {
  const unsigned counts[] = {1, 2};
  for (size_t c = 0; c < 2; c++) {
    unsigned ns = counts[c];
    start_node(ns, 0);
    keel_sched_time a[2], b[2];
    snapshot(a, ns);
    uint64_t until = keel_monotonic_ns() + 300000000u;
    for (unsigned i = 0; i < ns; i++) {
      keel_term p;
      cr_assert_eq(keel_spawn(busy_loop, &until, NULL, &p), KEEL_OK);
      cr_assert_eq(keel_send(p, KEEL_NIL), KEEL_OK);
    }
    cr_assert(wait_events(ns));
    snapshot(b, ns);
    double sum = 0;
    for (unsigned i = 0; i < ns; i++) {
      double u = util(&a[i], &b[i]);
      printf("busy: scheduler %u of %u at %.2f\n", i, ns, u);
      cr_assert(u >= 0.0 && u <= 1.0);
      sum += u;
    }
    /* Stealing may leave both loopers on one scheduler for a while. */
    cr_assert_geq(sum, 0.6 * ns, "utilisation %.2f over %u schedulers", sum,
                  ns);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* An idle node: every scheduler parked, utilisation ~0 over 300 ms. */
Test(util, idle_node_shows_no_utilisation) {
  for (size_t c = 0; c < NCONF; c++) {
    unsigned ns = sched_counts[c];
    start_node(ns, 0);
    cr_assert(wait_all_parked());
    keel_sched_time a[8], b[8];
    snapshot(a, ns);
    /* A measurement window, not synchronisation. */
    struct timespec win = {0, 300000000};
    while (nanosleep(&win, &win) != 0)
      ;
    snapshot(b, ns);
    for (unsigned i = 0; i < ns; i++) {
      double u = util(&a[i], &b[i]);
      cr_assert_lt(u, 0.05, "idle scheduler %u of %u at %.3f", i, ns, u);
      cr_assert_geq(b[i].total_ns - a[i].total_ns, 300000000u);
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(util, arguments) {
  keel_sched_time t[4];
  cr_assert_eq(keel_sched_utilisation(t, 4), KEEL_ESTATE);
  start_node(2, 0);
  cr_assert_eq(keel_sched_utilisation(NULL, 0), 2);
  cr_assert_eq(keel_sched_utilisation(NULL, 1), KEEL_EINVAL);
  t[1].total_ns = 12345;
  cr_assert_eq(keel_sched_utilisation(t, 1), 2); /* fills only t[0] */
  cr_assert_eq(t[1].total_ns, 12345);
  cr_assert_eq(keel_sched_utilisation(t, 4), 2);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* Run-queue lengths (keel_sched_run_queues): processes made runnable
 * while the only scheduler is held by a blocked handler are counted,
 * and the queues drain to zero once it is released. */
static atomic_int hold;

static keel_handler_status holder(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)msg;
  (void)state;
  signal_event();
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&hold)) { /* bounded: never longer than TIMEOUT_S */
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > TIMEOUT_S)
      break;
    sched_yield();
  }
  return KEEL_CONTINUE;
}

static keel_handler_status sink(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)msg;
  (void)state;
  signal_event();
  return KEEL_CONTINUE;
}

static bool queued_at_least(void *arg) {
  size_t q[1] = {0}, shared = 0;
  keel_sched_run_queues(q, 1, &shared);
  return q[0] + shared >= *(size_t *)arg;
}

static bool queues_empty(void *arg) {
  (void)arg;
  size_t q[1] = {1}, shared = 1;
  keel_sched_run_queues(q, 1, &shared);
  return q[0] + shared == 0;
}

Test(util, run_queue_lengths) {
  size_t q[4];
  cr_assert_eq(keel_sched_run_queues(q, 4, NULL), KEEL_ESTATE);
  keel_node_opts o = {.schedulers = 1, .long_schedule_ms = 60000};
  cr_assert_eq(keel_node_start(&o), KEEL_OK);
  reset_events();
  cr_assert_eq(keel_sched_run_queues(NULL, 1, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_sched_run_queues(NULL, 0, NULL), 1);
  atomic_store(&hold, 1);
  keel_term h;
  cr_assert_eq(keel_spawn(holder, NULL, NULL, &h), KEEL_OK);
  keel_send(h, KEEL_NIL);
  cr_assert(wait_events(1)); /* the scheduler is held now */
  for (int i = 0; i < 5; i++) {
    keel_term p;
    cr_assert_eq(keel_spawn(sink, NULL, NULL, &p), KEEL_OK);
    keel_send(p, KEEL_NIL);
  }
  size_t want = 5;
  cr_assert(wait_until(queued_at_least, &want));
  atomic_store(&hold, 0);
  cr_assert(wait_events(6));
  cr_assert(wait_until(queues_empty, NULL));
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
