/* Out of memory everywhere: a scenario using every runtime operation runs
 * in the deterministic simulation once to count its allocations, then
 * once per allocation with exactly that one failing. Every call must
 * answer KEEL_OK or KEEL_ENOMEM (or its documented error), nothing may
 * crash, and once every process is gone no message or timer is left
 * (leaks are also caught by the ASan run). */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "base/fault.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "keel/sim.h"
#include "runtime/rt_test.h"

static atomic_long unexpected; /* calls that answered something else */
static int last_bad_rc, last_bad_line;

#define EXPECT(call, ...)                                                      \
  do {                                                                         \
    int rc_ = (call);                                                          \
    int ok_[] = {KEEL_OK, KEEL_ENOMEM, __VA_ARGS__};                           \
    bool fine_ = false;                                                        \
    for (size_t i_ = 0; i_ < sizeof ok_ / sizeof ok_[0]; i_++)                 \
      fine_ |= rc_ == ok_[i_];                                                 \
    if (!fine_) {                                                              \
      atomic_fetch_add(&unexpected, 1);                                        \
      last_bad_rc = rc_;                                                       \
      last_bad_line = __LINE__;                                                \
    }                                                                          \
  } while (0)

static keel_handler_status worker(keel_proc *self, keel_term msg, void *st) {
  (void)st;
  if (msg == KEEL_ATOM(STOP))
    return keel_stop(self, keel_atom("done"));
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 2)
    EXPECT(keel_send(keel_tuple_get(msg, 0), keel_tuple_get(msg, 1)), KEEL_OK);
  return KEEL_CONTINUE;
}

static void child_fiber(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 500, &m);
}

static void scenario(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term me = keel_self(self), w1 = KEEL_NONE, w2 = KEEL_NONE, f1, ref, ref2,
            al, tref, m;
  keel_trap_exit(self, true);
  keel_spawn_opts lo = {.link = true, .monitor_ref = &ref, .monitor_heap = &h};
  EXPECT(keel_spawn(worker, NULL, &lo, &w1));
  EXPECT(keel_spawn(worker, NULL, NULL, &w2));
  EXPECT(keel_spawn_fiber(child_fiber, NULL, &lo, &f1));
  if (w2 != KEEL_NONE) {
    EXPECT(keel_register(keel_atom("fault_w2"), w2), KEEL_ENOPROC);
    EXPECT(keel_link(self, w2), KEEL_ENOPROC);
    EXPECT(keel_monitor(self, w2, 0, &h, &ref2), KEEL_OK);
    EXPECT(keel_unlink(self, w2));
  }
  static const char bytes[96] = "a large binary, shared by reference count";
  keel_term big = keel_binary(&h, bytes, sizeof bytes);
  if (w1 != KEEL_NONE) {
    EXPECT(keel_send(w1, keel_tuple(&h, 2, me, big)));
    EXPECT(keel_send(w1, keel_tuple(&h, 2, me, keel_small(7))));
  }
  EXPECT(keel_send(keel_atom("fault_w2"), keel_tuple(&h, 2, me, big)),
         KEEL_ENOPROC);
  if (keel_alias(self, &h, &al) == KEEL_OK)
    EXPECT(keel_send(al, keel_atom("via_alias")));
  EXPECT(keel_send_after(me, keel_atom("later"), 5, NULL));
  EXPECT(keel_start_timer(me, keel_atom("later2"), 7, &h, &tref));
  if (w1 != KEEL_NONE)
    EXPECT(keel_exit(w1, KEEL_ATOM(KILL)));
  if (w2 != KEEL_NONE)
    EXPECT(keel_send(w2, KEEL_ATOM(STOP)));
  EXPECT(keel_receive_mark(self));
  /* Take whatever arrives for a while (virtual time). */
  while (keel_receive(self, NULL, NULL, 50, &m) == KEEL_OK)
    ;
  keel_heap_destroy(&h);
  signal_event();
}

static bool procs_gone(void *arg) {
  (void)arg;
  return keel_processes(NULL, 0) == 0;
}

/* Runs the scenario on a fresh simulated node with fault `k` armed (k < 0:
 * none) and returns the allocation checks passed while armed. */
static uint64_t run_with_fault(int64_t k) {
  cr_assert_eq(keel_sim_start(&(keel_node_opts){.schedulers = 2}, 4242),
               KEEL_OK);
  sim_mode = true;
  reset_events();
  keel__fault_arm(k >= 0 ? k : INT64_MAX / 4);
  int rc = keel_spawn_fiber(scenario, NULL, NULL, NULL);
  if (rc == KEEL_OK)
    (void)keel_sim_run(events_reached, &(long){1}, SIM_MAX_STEPS);
  uint64_t passed = keel__fault_disarm();
  /* Everyone goes; then nothing may be left over. */
  keel_term pids[64];
  size_t np = keel_processes(pids, 64);
  for (size_t i = 0; i < np && i < 64; i++)
    cr_assert_eq(keel_exit(pids[i], KEEL_ATOM(KILL)), KEEL_OK);
  cr_assert(wait_until(procs_gone, NULL), "fault %lld: processes stay",
            (long long)k);
  cr_assert_eq(keel_sim_run(NULL, NULL, SIM_MAX_STEPS), KEEL_OK);
  keel_node_stats st;
  cr_assert_eq(keel_node_stats_get(&st), KEEL_OK);
  cr_assert_eq(st.messages_live, 0, "fault %lld: %lld messages leaked",
               (long long)k, (long long)st.messages_live);
  cr_assert_eq(st.timers, 0, "fault %lld: timers left", (long long)k);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  sim_mode = false;
  return passed;
}

Test(faults, every_allocation_failing_once_is_survived) {
  uint64_t total = run_with_fault(-1);
  cr_log_info("%llu allocation checks", (unsigned long long)total);
  cr_assert_gt(total, 20, "the scenario allocates (%llu checks)",
               (unsigned long long)total);
  cr_assert_eq(atomic_load(&unexpected), 0, "fault-free run: rc %d line %d",
               last_bad_rc, last_bad_line);
  for (uint64_t k = 0; k < total; k++) {
    (void)run_with_fault((int64_t)k);
    cr_assert_eq(atomic_load(&unexpected), 0,
                 "fault at check %llu: rc %d at line %d", (unsigned long long)k,
                 last_bad_rc, last_bad_line);
  }
}
