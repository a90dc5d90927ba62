/* The watchdog: long schedules are reported (pid, duration) and, with more
 * than one scheduler, the work queued behind a process stuck in an
 * undeclared blocking call is handed to the other schedulers (G26). With
 * one scheduler the watchdog only reports (as BEAM does): no other thread
 * may run processes. The watchdog sleeps while the node is idle. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "keel/clock.h"
#include "keel/runtime.h"
#include "keel/telemetry.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"

#define NQUEUED 100

static _Atomic uint64_t block_start_ns;
static _Atomic int blocker_done;
static _Atomic int ran_during_block;
static _Atomic uint64_t max_latency_ns;
static _Atomic uint64_t reported_pid;
static _Atomic uint64_t reported_ns;
static _Atomic int reports;
static keel_term queued[NQUEUED];
static uint64_t block_ms;

/* Keeps the longest report: on a loaded machine a short run whose thread
 * is descheduled for more than long_schedule_ms is a long schedule too. */
static void on_long(keel_term pid, uint64_t ns, void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  if (ns > atomic_load(&reported_ns)) {
    atomic_store(&reported_pid, keel_pid_local_number(pid));
    atomic_store(&reported_ns, ns);
  }
  atomic_fetch_add(&reports, 1);
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* Waits (bounded) for a report of at least min_ns. */
static bool wait_report(uint64_t min_ns) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += TIMEOUT_S;
  pthread_mutex_lock(&mu);
  int rc = 0;
  while (atomic_load(&reported_ns) < min_ns && rc == 0)
    rc = pthread_cond_timedwait(&cv, &mu, &dl);
  bool ok = atomic_load(&reported_ns) >= min_ns;
  pthread_mutex_unlock(&mu);
  return ok;
}

static void start_wd(unsigned nsched, unsigned long_ms) {
  keel_node_opts o = {.schedulers = nsched,
                      .long_schedule_ms = long_ms,
                      .on_long_schedule = on_long};
  cr_assert_eq(keel_node_start(&o), KEEL_OK);
  reset_events();
  atomic_store(&blocker_done, 0);
  atomic_store(&ran_during_block, 0);
  atomic_store(&max_latency_ns, 0);
  atomic_store(&reports, 0);
  atomic_store(&reported_pid, 0);
  atomic_store(&reported_ns, 0);
}

/* One of the processes queued behind the blocker: notes whether the
 * blocker was still blocked and how long after its start it ran. */
static keel_handler_status waiter(keel_proc *self, keel_term msg, void *state) {
  (void)self;
  (void)msg;
  (void)state;
  uint64_t lat = keel_monotonic_ns() - atomic_load(&block_start_ns);
  if (!atomic_load(&blocker_done))
    atomic_fetch_add(&ran_during_block, 1);
  uint64_t m = atomic_load(&max_latency_ns);
  while (lat > m && !atomic_compare_exchange_weak(&max_latency_ns, &m, lat))
    ;
  signal_event();
  return KEEL_CONTINUE;
}

/* On 'go': wakes every queued process (they go to this scheduler's
 * runnext and ring), then blocks in nanosleep for block_ms without telling
 * the runtime. Any later message is answered with an event. */
static keel_handler_status blocker(keel_proc *self, keel_term msg,
                                   void *state) {
  (void)self;
  (void)state;
  if (msg != KEEL_ATOM(OK)) {
    signal_event();
    return KEEL_CONTINUE;
  }
  atomic_store(&block_start_ns, keel_monotonic_ns());
  for (int i = 0; i < NQUEUED; i++)
    keel_send(queued[i], KEEL_NIL);
  struct timespec ts = {(time_t)(block_ms / 1000),
                        (long)(block_ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
  atomic_store(&blocker_done, 1);
  signal_event();
  return KEEL_CONTINUE;
}

static void blocking_scenario(unsigned nsched, int nq, keel_term *blk) {
  cr_assert_eq(keel_spawn(blocker, NULL, NULL, blk), KEEL_OK);
  for (int i = 0; i < nq; i++)
    cr_assert_eq(keel_spawn(waiter, NULL, NULL, &queued[i]), KEEL_OK);
  cr_assert_eq(keel_send(*blk, KEEL_ATOM(OK)), KEEL_OK);
  (void)nsched;
}

/* G26: with 2 and 8 schedulers, 100 processes queued on the scheduler of a
 * process blocked for 1 s all run while it is still blocked, including the
 * one in its (otherwise unstealable) runnext slot. */
Test(watchdog, g26_queued_work_runs_while_blocked) {
  const unsigned counts[] = {2, 8};
  for (size_t c = 0; c < 2; c++) {
    start_wd(counts[c], 10);
    block_ms = 1000;
    keel_term blk;
    blocking_scenario(counts[c], NQUEUED, &blk);
    cr_assert(wait_events(NQUEUED), "queued processes ran");
    int during = atomic_load(&ran_during_block);
    printf("G26 (%u schedulers): %d of %d queued processes ran while the "
           "blocker was blocked; last started %.1f ms after the block "
           "began (limit 10 ms + period)\n",
           counts[c], during, NQUEUED,
           (double)atomic_load(&max_latency_ns) / 1e6);
    cr_assert_eq(during, NQUEUED,
                 "%d of %d ran during the block (%u schedulers)", during,
                 NQUEUED, counts[c]);
    cr_assert(wait_events(NQUEUED + 1), "blocker returned");
    cr_assert(wait_report(900000000u), "blocker reported");
    cr_assert_eq(atomic_load(&reported_pid), keel_pid_local_number(blk));
    uint64_t ns = atomic_load(&reported_ns);
    cr_assert_lt(ns, 5000000000u, "duration %llu ns", (unsigned long long)ns);
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_geq(st.long_schedules, 1);
    /* The blocker's scheduler goes on normally. */
    cr_assert_eq(keel_send(blk, KEEL_NIL), KEEL_OK);
    cr_assert(wait_events(NQUEUED + 2), "blocker runs again");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* The same with a fiber process as the blocker (2 schedulers, 500 ms). */
static void fiber_blocker(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) != KEEL_OK)
    return;
  (void)blocker(self, KEEL_ATOM(OK), NULL);
}

Test(watchdog, g26_fiber_blocker) {
  start_wd(2, 10);
  block_ms = 500;
  keel_term blk;
  cr_assert_eq(keel_spawn_fiber(fiber_blocker, NULL, NULL, &blk), KEEL_OK);
  for (int i = 0; i < NQUEUED; i++)
    cr_assert_eq(keel_spawn(waiter, NULL, NULL, &queued[i]), KEEL_OK);
  cr_assert_eq(keel_send(blk, KEEL_NIL), KEEL_OK);
  cr_assert(wait_events(NQUEUED), "queued processes ran");
  cr_assert_eq(atomic_load(&ran_during_block), NQUEUED);
  cr_assert(wait_events(NQUEUED + 1), "blocker returned");
  cr_assert(wait_report(400000000u), "blocker reported");
  cr_assert_eq(atomic_load(&reported_pid), keel_pid_local_number(blk));
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* One scheduler: the watchdog reports the long schedule (pid, duration)
 * but nothing else can run: the queued processes run after the blocker. */
static atomic_uint_fast64_t tel_pid, tel_ns;

static int on_tel(const keel_tel_event *ev, const keel_tel_measure *m,
                  size_t nm, const keel_tel_meta *md, size_t nmd, void *cfg) {
  (void)ev, (void)cfg;
  double d = 0;
  keel_term pid = KEEL_NONE;
  if (keel_tel_measure_get(m, nm, keel_atom("duration"), &d) == KEEL_OK &&
      keel_tel_meta_get(md, nmd, keel_atom("pid"), &pid) == KEEL_OK &&
      keel_is_local_pid(pid)) {
    atomic_store(&tel_ns, (uint64_t)d);
    atomic_store(&tel_pid, keel_pid_local_number(pid));
  }
  return 0;
}

Test(watchdog, one_scheduler_reports_only) {
  keel_tel_event *ev;
  cr_assert_eq(keel_tel_event_parse("keel.runtime.long_schedule", &ev),
               KEEL_OK);
  cr_assert_eq(keel_tel_attach(keel_atom("wd_test"), &ev, 1, on_tel, NULL),
               KEEL_OK);
  start_wd(1, 10);
  block_ms = 300;
  keel_term blk;
  blocking_scenario(1, 10, &blk);
  cr_assert(wait_events(10 + 1), "all ran");
  cr_assert_eq(atomic_load(&ran_during_block), 0);
  cr_assert(wait_report(250000000u), "blocker reported");
  cr_assert_eq(atomic_load(&reported_pid), keel_pid_local_number(blk));
  uint64_t ns = atomic_load(&reported_ns);
  cr_assert_lt(ns, 3000000000u, "duration %llu ns", (unsigned long long)ns);
  /* The same report as a telemetry event, emitted before the hook. */
  cr_assert_eq(atomic_load(&tel_pid), keel_pid_local_number(blk));
  cr_assert_geq(atomic_load(&tel_ns), 250000000u);
  cr_assert_eq(keel_tel_detach(keel_atom("wd_test")), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* Runs shorter than long_schedule_ms are not reported: 200 ms of busy
 * self-messaging in slices of ~40 messages. The limit is 300 ms so that a
 * scheduler thread descheduled by a loaded machine cannot look stuck. */
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

Test(watchdog, short_runs_are_not_reported) {
  for (size_t c = 0; c < NCONF; c++) {
    start_wd(sched_counts[c], 300);
    uint64_t until = keel_monotonic_ns() + 200000000u;
    keel_term p;
    cr_assert_eq(keel_spawn(busy_loop, &until, NULL, &p), KEEL_OK);
    cr_assert_eq(keel_send(p, KEEL_NIL), KEEL_OK);
    cr_assert(wait_events(1));
    keel_node_stats st;
    cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
    cr_assert_eq(st.long_schedules, 0);
    cr_assert_eq(atomic_load(&reports), 0);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Waits (bounded) until the watchdog flag is `v`. */
static bool wait_wd_parked(uint32_t v) {
  uint64_t t0 = keel_monotonic_ns();
  while (atomic_load(&keel__rt->wd_parked) != v) {
    if (keel_monotonic_ns() - t0 > (uint64_t)TIMEOUT_S * 1000000000u)
      return false;
    sched_yield();
  }
  return true;
}

/* A process that keeps running until it sees the watchdog awake. */
static keel_handler_status wd_seer(keel_proc *self, keel_term msg,
                                   void *state) {
  (void)msg;
  (void)state;
  if (atomic_load(&keel__rt->wd_parked) == 0)
    signal_event();
  else
    keel_send(keel_self(self), KEEL_NIL);
  return KEEL_CONTINUE;
}

/* The watchdog parks when every scheduler is parked and wakes up when one
 * of them gets work. */
Test(watchdog, parks_when_idle) {
  for (size_t c = 0; c < NCONF; c++) {
    start_wd(sched_counts[c], 0);
    for (int round = 1; round <= 3; round++) {
      cr_assert(wait_wd_parked(1), "watchdog parked (%u schedulers)",
                sched_counts[c]);
      keel_term p;
      cr_assert_eq(keel_spawn(wd_seer, NULL, NULL, &p), KEEL_OK);
      cr_assert_eq(keel_send(p, KEEL_NIL), KEEL_OK);
      cr_assert(wait_events(round), "watchdog woke up");
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(watchdog, bad_options) {
  keel_node_opts o = {.schedulers = 1,
                      .long_schedule_ms = KEEL_LONG_SCHEDULE_MAX_MS + 1};
  cr_assert_eq(keel_node_start(&o), KEEL_EINVAL);
  o.long_schedule_ms = 0;
  o.dirty_cpu = KEEL_DIRTY_MAX_THREADS + 1;
  cr_assert_eq(keel_node_start(&o), KEEL_EINVAL);
  o.dirty_cpu = 0;
  o.dirty_io = KEEL_DIRTY_MAX_THREADS + 1;
  cr_assert_eq(keel_node_start(&o), KEEL_EINVAL);
  o.dirty_io = 0;
  cr_assert_eq(keel_node_start(&o), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- timers of a stuck scheduler --------------------------------------- */

#define NTARGETS 256
#define PICK 4

static keel_term targets[NTARGETS];
static _Atomic int timer_hits[4];
static _Atomic int timer_hits_late;

/* Counts a timer message by its value, and whether it came late (after
 * the blocker returned). */
static keel_handler_status timer_target(keel_proc *self, keel_term msg,
                                        void *state) {
  (void)self;
  (void)state;
  int64_t v = keel_small_value(msg);
  if (v >= 0 && v < 4)
    atomic_fetch_add(&timer_hits[v], 1);
  if (atomic_load(&blocker_done))
    atomic_fetch_add(&timer_hits_late, 1);
  signal_event();
  return KEEL_CONTINUE;
}

/* The wheel keel_send_after uses for a destination (timer.c's owner_of:
 * white-box knowledge of the hash). */
static unsigned wheel_of(keel_term dest, unsigned nsched) {
  uint64_t h = keel_pid_local_number(dest) * UINT64_C(0x9E3779B97F4A7C15);
  return (unsigned)((h >> 32) % nsched);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static _Atomic int picked;
static _Atomic int cancel_rc;

/* Starts timers on its own scheduler's wheel, blocks; after 300 ms (the
 * wheel then belongs to the watchdog) starts more and cancels one, and
 * blocks again. */
static keel_handler_status timer_blocker(keel_proc *self, keel_term msg,
                                         void *state) {
  (void)self;
  (void)msg;
  (void)state;
  unsigned me = keel__rt_tl_sched->id, ns = keel_node_schedulers();
  keel_term mine[PICK];
  int k = 0;
  for (int i = 0; i < NTARGETS && k < PICK; i++)
    if (wheel_of(targets[i], ns) == me)
      mine[k++] = targets[i];
  atomic_store(&picked, k);
  for (int i = 0; i < k; i++)
    keel_send_after(mine[i], keel_small(1), 20, NULL);
  sleep_ms(300);
  keel_timer_ref ref = 0;
  for (int i = 0; i < k; i++)
    keel_send_after(mine[i], keel_small(2), 20, NULL);
  if (k > 0) {
    keel_send_after(mine[0], keel_small(3), 20, &ref);
    atomic_store(&cancel_rc, keel_cancel_timer(ref));
  }
  sleep_ms(700);
  atomic_store(&blocker_done, 1);
  signal_event();
  return KEEL_CONTINUE;
}

/* Timers in the wheel of a stuck scheduler fire while it is stuck (the
 * watchdog fires them), also timers started and cancelled by the stuck
 * process after its wheel was taken over. */
Test(watchdog, stuck_schedulers_timers_fire) {
  const unsigned counts[] = {2, 8};
  for (size_t c = 0; c < 2; c++) {
    start_wd(counts[c], 10);
    for (int v = 0; v < 4; v++)
      atomic_store(&timer_hits[v], 0);
    atomic_store(&timer_hits_late, 0);
    atomic_store(&cancel_rc, -1);
    for (int i = 0; i < NTARGETS; i++)
      cr_assert_eq(keel_spawn(timer_target, NULL, NULL, &targets[i]), KEEL_OK);
    keel_term blk;
    cr_assert_eq(keel_spawn(timer_blocker, NULL, NULL, &blk), KEEL_OK);
    cr_assert_eq(keel_send(blk, KEEL_NIL), KEEL_OK);
    /* 2 * PICK timer messages and the blocker's return. */
    cr_assert(wait_events(2 * PICK + 1), "timers fired");
    cr_assert_eq(atomic_load(&picked), PICK);
    cr_assert_eq(atomic_load(&cancel_rc), 1);
    cr_assert_eq(atomic_load(&timer_hits[1]), PICK);
    cr_assert_eq(atomic_load(&timer_hits[2]), PICK);
    cr_assert_eq(atomic_load(&timer_hits_late), 0,
                 "timers waited for the stuck scheduler (%u schedulers)",
                 counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(atomic_load(&timer_hits[3]), 0); /* cancelled */
  }
}
