/* Monitor and demonitor signals are delivered lazily: they do not wake an
 * idle receiver (proc.c, keel__rt_deliver_lazy). These tests pin down
 * what must not change because of it:
 *   - a monitor of a process that ends without having looked at its
 *     mailbox gets a 'DOWN' with the process's own reason, as if the
 *     signal had been handled when it came (not noproc);
 *   - introspection sees every monitor sent before it, after a bounded
 *     wait;
 *   - an idle process holds fewer than RT_LAZY_WAKE of them unhandled.
 * Each runs with 1, 2 and 8 schedulers and in the simulation. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/rt_test.h"
#include "runtime/signal.h"

static atomic_long bad;

static void check(bool ok, long bit) {
  if (!ok)
    atomic_fetch_or(&bad, bit);
}

static bool m_down_ref(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 5 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(m, 1), *(keel_term *)arg);
}

/* The reason of ref's 'DOWN', KEEL_NONE if none comes within timeout_ms. */
static bool m_never(keel_term m, void *arg) {
  (void)m;
  (void)arg;
  return false;
}

static keel_term down_reason(keel_proc *self, keel_term ref,
                             int64_t timeout_ms) {
  keel_term m;
  if (keel_receive(self, m_down_ref, &ref, timeout_ms, &m) != KEEL_OK)
    return KEEL_NONE;
  return keel_tuple_get(m, 4);
}

static atomic_bool release;

/* Busy (it yields, never receives) until released, then ends with reason
 * 'done': it never looks at its mailbox. */
static void busy(keel_proc *self, void *arg) {
  (void)arg;
  while (!atomic_load(&release))
    (void)keel_fiber_yield(self);
  keel_stop(self, keel_atom("done"));
}

static void own_reason_scenario(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term target, r1, r2, r3;
  atomic_store(&release, false);
  check(keel_spawn_fiber(busy, NULL, NULL, &target) == KEEL_OK, 1);
  check(keel_monitor(self, target, 0, &h, &r1) == KEEL_OK, 2);
  check(keel_monitor(self, target, 0, &h, &r2) == KEEL_OK, 2);
  check(keel_demonitor(self, r1, 0) == 1, 4);
  check(keel_monitor(self, target, 0, &h, &r3) == KEEL_OK, 2);
  atomic_store(&release, true);
  /* The target never handled them while alive: both live monitors fire
   * with its own reason; the ended one never does. (The simulation may
   * delay a delivery past the death: then noproc is right.) */
  keel_term d2 = down_reason(self, r2, 10000),
            d3 = down_reason(self, r3, 10000);
  check(d2 == keel_atom("done") || (sim_mode && d2 == KEEL_ATOM(NOPROC)), 8);
  check(d3 == keel_atom("done") || (sim_mode && d3 == KEEL_ATOM(NOPROC)), 16);
  check(down_reason(self, r1, 0) == KEEL_NONE, 32);
  keel_heap_destroy(&h);
  signal_event();
}

/* Runs scenario fn (it ends with signal_event) in every configuration. */
static void each_config(keel_fiber_fn fn) {
  char cfg[96];
  for (size_t c = 0; config_start(c, cfg, sizeof cfg); c++) {
    atomic_store(&bad, 0);
    cr_assert_eq(keel_spawn_fiber(fn, NULL, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%s)", cfg);
    cr_assert_eq(atomic_load(&bad), 0, "violations %#lx (%s)",
                 atomic_load(&bad), cfg);
    config_stop();
  }
}

Test(signals_lazy, monitor_of_process_ending_by_itself_gets_its_reason) {
  each_config(own_reason_scenario);
}

/* Handler that ignores everything but 'stop'. */
static keel_handler_status idler(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  return msg == KEEL_ATOM(STOP) ? keel_stop(self, KEEL_ATOM(NORMAL))
                                : KEEL_CONTINUE;
}

/* Polls (bounded) until pid's monitored_by count is want. */
static bool monitored_by_becomes(keel_proc *self, keel_term pid, size_t want) {
  keel_term m;
  for (int i = 0; i < 5000; i++) {
    keel_process_info_t pi;
    if (keel_process_info_ex(pid, KEEL_PINFO_NO_SYMBOL, &pi) != KEEL_OK)
      return false;
    if (pi.monitored_by == want)
      return true;
    (void)keel_receive(self, m_never, NULL, 1, &m);
  }
  return false;
}

#define MONITORS 5

static void introspect_scenario(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term target, refs[MONITORS];
  check(keel_spawn(idler, NULL, NULL, &target) == KEEL_OK, 1);
  for (int i = 0; i < MONITORS; i++)
    check(keel_monitor(self, target, 0, &h, &refs[i]) == KEEL_OK, 2);
  check(monitored_by_becomes(self, target, MONITORS), 4);
  for (int i = 0; i < MONITORS; i++)
    check(keel_demonitor(self, refs[i], KEEL_DEMONITOR_FLUSH) == 1, 8);
  check(monitored_by_becomes(self, target, 0), 16);
  check(keel_send(target, KEEL_ATOM(STOP)) == KEEL_OK, 32);
  keel_heap_destroy(&h);
  signal_event();
}

Test(signals_lazy, process_info_sees_every_monitor_sent_before_it) {
  each_config(introspect_scenario);
}

/* The control word of the live process pid. */
static uint64_t ctl_of(keel_term pid) {
  keel_proc *p = keel__rt_lookup(keel__rt, keel_pid_local_number(pid));
  return p != NULL ? atomic_load(&p->ctl) : 0;
}

static void bound_scenario(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term target, ref, m;
  check(keel_spawn(idler, NULL, NULL, &target) == KEEL_OK, 1);
  /* Idle once it has run its first time (nothing to handle). */
  for (int i = 0; i < 5000 && (ctl_of(target) & RT_ST_MASK) != RT_ST_IDLE; i++)
    (void)keel_receive(self, m_never, NULL, 1, &m);
  check((ctl_of(target) & RT_ST_MASK) == RT_ST_IDLE, 2);
  for (int i = 0; i < RT_LAZY_WAKE - 1; i++)
    (void)keel_monitor(self, target, 0, &h, &ref);
  uint64_t ctl = ctl_of(target);
  check((ctl & RT_ST_MASK) == RT_ST_IDLE, 4); /* not woken */
  check((ctl & RT_LAZY_MASK) / RT_LAZY_ONE == RT_LAZY_WAKE - 1, 8);
  /* The next one wakes it: it handles all of them, no introspection. */
  (void)keel_monitor(self, target, 0, &h, &ref);
  check((ctl_of(target) & RT_LAZY_MASK) == 0, 16);
  check(monitored_by_becomes(self, target, RT_LAZY_WAKE), 32);
  check(keel_send(target, KEEL_ATOM(STOP)) == KEEL_OK, 64);
  keel_heap_destroy(&h);
  signal_event();
}

/* Threads only: the simulation may hold deliveries back (sim.c), so the
 * count is not exact there. */
Test(signals_lazy, an_idle_process_holds_a_bounded_number_unhandled) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&bad, 0);
    cr_assert_eq(keel_spawn_fiber(bound_scenario, NULL, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%u schedulers)",
              sched_counts[c]);
    cr_assert_eq(atomic_load(&bad), 0, "violations %#lx (%u schedulers)",
                 atomic_load(&bad), sched_counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* A monitor and its demonitor that the target has not yet seen cancel
 * out (the request is shared with the monitoring process, signal.h
 * RT_MON_LIVE): no DEMONITOR is sent, and the target, meeting the
 * cancelled request later, records nothing. A monitor the target has
 * seen is ended by a DEMONITOR as before. Neither ever delivers a 'DOWN'
 * (G17); a live one delivers the target's reason. count_check: threads
 * only (the simulation may hold deliveries back). */
#define PAIRS 10

static void cancel_scenario(keel_proc *self, void *arg) {
  bool count_check = arg != NULL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term target, ref, seen, live, m, refs[PAIRS];
  check(keel_spawn(idler, NULL, NULL, &target) == KEEL_OK, 1);
  for (int i = 0; i < 5000 && (ctl_of(target) & RT_ST_MASK) != RT_ST_IDLE; i++)
    (void)keel_receive(self, m_never, NULL, 1, &m);
  for (int i = 0; i < PAIRS; i++) {
    check(keel_monitor(self, target, 0, &h, &refs[i]) == KEEL_OK, 2);
    check(keel_demonitor(self, refs[i], KEEL_DEMONITOR_FLUSH) == 1, 4);
  }
  /* One signal per pair reached the idle target, not two. */
  if (count_check)
    check((ctl_of(target) & RT_LAZY_MASK) / RT_LAZY_ONE == PAIRS, 8);
  check(monitored_by_becomes(self, target, 0), 16);
  check(keel_monitor(self, target, 0, &h, &seen) == KEEL_OK, 32);
  check(monitored_by_becomes(self, target, 1), 64);
  check(keel_demonitor(self, seen, 0) == 1, 128);
  check(monitored_by_becomes(self, target, 0), 256);
  check(keel_monitor(self, target, KEEL_MONITOR_ALIAS, &h, &ref) == KEEL_OK,
        512);
  check(keel_demonitor(self, ref, 0) == 1, 1024);
  check(keel_monitor(self, target, 0, &h, &live) == KEEL_OK, 2048);
  check(keel_send(target, KEEL_ATOM(STOP)) == KEEL_OK, 4096);
  keel_term d = down_reason(self, live, 10000);
  check(d == KEEL_ATOM(NORMAL) || (!count_check && d == KEEL_ATOM(NOPROC)),
        8192);
  for (int i = 0; i < PAIRS; i++)
    check(down_reason(self, refs[i], 0) == KEEL_NONE, 16384);
  check(down_reason(self, seen, 0) == KEEL_NONE, 32768);
  check(down_reason(self, ref, 0) == KEEL_NONE, 65536);
  keel_heap_destroy(&h);
  signal_event();
}

Test(signals_lazy, unseen_monitor_and_demonitor_cancel_out) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&bad, 0);
    cr_assert_eq(keel_spawn_fiber(cancel_scenario, &bad, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%u schedulers)",
              sched_counts[c]);
    cr_assert_eq(atomic_load(&bad), 0, "violations %#lx (%u schedulers)",
                 atomic_load(&bad), sched_counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  each_config(cancel_scenario); /* NULL arg: also in the simulation */
}

/* Answers 'ping' with 'pong' to the pid in its state. */
static keel_handler_status ponger(keel_proc *self, keel_term msg, void *st) {
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, KEEL_ATOM(NORMAL));
  if (msg == keel_atom("ping"))
    (void)keel_send(*(keel_term *)st, keel_atom("pong"));
  return KEEL_CONTINUE;
}

static bool m_pong(keel_term m, void *arg) {
  (void)arg;
  return m == keel_atom("pong");
}

/* The lazy count holds only what the process has not looked at: a run
 * that handled them (woken by a message) starts it again from zero, so a
 * process that is busy now and then is not also woken every
 * RT_LAZY_WAKE-th monitor. */
static void count_reset_scenario(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term me = keel_self(self), target, ref, m;
  check(keel_spawn(ponger, &me, NULL, &target) == KEEL_OK, 1);
  for (int i = 0; i < 5000 && (ctl_of(target) & RT_ST_MASK) != RT_ST_IDLE; i++)
    (void)keel_receive(self, m_never, NULL, 1, &m);
  for (int i = 0; i < RT_LAZY_WAKE - 1; i++)
    (void)keel_monitor(self, target, 0, &h, &ref);
  check((ctl_of(target) & RT_LAZY_MASK) / RT_LAZY_ONE == RT_LAZY_WAKE - 1, 2);
  check(keel_send(target, keel_atom("ping")) == KEEL_OK, 4);
  check(keel_receive(self, m_pong, NULL, 10000, &m) == KEEL_OK, 8);
  for (int i = 0; i < 5000 && (ctl_of(target) & RT_ST_MASK) != RT_ST_IDLE; i++)
    (void)keel_receive(self, m_never, NULL, 1, &m);
  uint64_t ctl = ctl_of(target);
  check((ctl & RT_ST_MASK) == RT_ST_IDLE, 16);
  check((ctl & RT_LAZY_MASK) == 0, 32);
  /* The next one is counted from zero and wakes nobody. */
  (void)keel_monitor(self, target, 0, &h, &ref);
  ctl = ctl_of(target);
  check((ctl & RT_ST_MASK) == RT_ST_IDLE, 64);
  check((ctl & RT_LAZY_MASK) / RT_LAZY_ONE == 1, 128);
  check(monitored_by_becomes(self, target, RT_LAZY_WAKE), 256);
  check(keel_send(target, KEEL_ATOM(STOP)) == KEEL_OK, 512);
  keel_heap_destroy(&h);
  signal_event();
}

/* Threads only, as the bound test above. */
Test(signals_lazy, a_run_that_handles_them_restarts_the_lazy_count) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&bad, 0);
    cr_assert_eq(keel_spawn_fiber(count_reset_scenario, NULL, NULL, NULL),
                 KEEL_OK);
    cr_assert(wait_events(1), "scenario finished (%u schedulers)",
              sched_counts[c]);
    cr_assert_eq(atomic_load(&bad), 0, "violations %#lx (%u schedulers)",
                 atomic_load(&bad), sched_counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* A lazy signal whose push was in progress while its receiver emptied
 * its mailbox: the receiver met the push (head moved, link not yet
 * written), so it could not take the message before it either, though
 * that message's wake-up was spent on the pop; it went idle. The lazy
 * signal's delivery must then wake it (RT_STALLED), or the message stays
 * unseen. Found as a supervisor's child that never handled the kill sent
 * to it right after its start's DEMONITOR. The push is taken apart here
 * (keel__mbox_push_begin) to hold it in progress. Threads only: the
 * receiver blocks its scheduler thread while the test thread pushes. */
static atomic_int stall_phase; /* 1: in the blocking handler, 2: released */
static atomic_bool stall_seen;

static keel_handler_status stall_handler(keel_proc *self, keel_term msg,
                                         void *state) {
  (void)self;
  (void)state;
  if (msg == keel_atom("block")) {
    atomic_store(&stall_phase, 1);
    while (atomic_load(&stall_phase) != 2)
      sched_yield();
  } else if (msg == keel_atom("k")) {
    atomic_store(&stall_seen, true);
  }
  return KEEL_CONTINUE;
}

static bool phase_is_1(void *arg) {
  (void)arg;
  return atomic_load(&stall_phase) == 1;
}

static bool idle_now(void *arg) {
  return (ctl_of(*(keel_term *)arg) & RT_ST_MASK) == RT_ST_IDLE;
}

static bool k_seen(void *arg) {
  (void)arg;
  return atomic_load(&stall_seen);
}

Test(signals_lazy, a_lazy_push_that_stalled_the_receiver_wakes_it) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    atomic_store(&stall_phase, 0);
    atomic_store(&stall_seen, false);
    keel_term pid;
    cr_assert_eq(keel_spawn(stall_handler, NULL, NULL, &pid), KEEL_OK);
    uint64_t num = keel_pid_local_number(pid);
    cr_assert_eq(keel_send(pid, keel_atom("block")), KEEL_OK);
    cr_assert(wait_until(phase_is_1, NULL), "handler running");
    /* While it runs: a message that wakes it (NEWMAIL), then a lazy
     * DEMONITOR (of no monitor: ignored) held between its two steps. */
    cr_assert_eq(keel_send(pid, keel_atom("k")), KEEL_OK);
    rt_sig *sig = keel__rt_sig_new(keel__rt, RT_SIG_DEMONITOR, 0, RT_NO_PID,
                                   UINT64_C(0x5a5a), KEEL_NONE);
    cr_assert_not_null(sig);
    keel_proc *p = keel__rt_pin(keel__rt, num);
    cr_assert_not_null(p);
    rt_mnode *prev = keel__mbox_push_begin(p, (rt_msg *)sig);
    atomic_store(&stall_phase, 2);
    /* It pops, meets the push in progress, spends the wake-up, idles. */
    cr_assert(wait_until(idle_now, &pid), "idle (%u schedulers)",
              sched_counts[c]);
    cr_assert(!atomic_load(&stall_seen), "k cannot be taken yet");
    cr_assert(ctl_of(pid) & RT_STALLED, "the stall is published");
    keel__mbox_push_end(prev, (rt_msg *)sig);
    keel__rt_deliver_end(keel__rt, p, (rt_msg *)sig, RT_LAZY);
    cr_assert(wait_until(k_seen, NULL), "k handled (%u schedulers)",
              sched_counts[c]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
