/* Task: async/await, yield, yield_many, shutdown, ignore, crashes, handler
 * owners, fire-and-forget starts and keel_task_run from a plain thread.
 * Ports the intent of Elixir's task_test.exs (see docs/behaviours/task.md).
 * Fiber scenarios run with 1, 2 and 8 schedulers and simulated seeds. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "otp/task_test.h"

#define NTASKS 50

/* TK1: 50 tasks, awaited in reverse order; every value checked against
 * the oracle, and nothing left in the mailbox. */
static void sc_async_await(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_task t[NTASKS];
  for (int i = 0; i < NTASKS; i++)
    CHECK(keel_task_async(self, square_plus_one, NULL, keel_small(i), &h,
                          &t[i]) == KEEL_OK);
  for (int i = NTASKS - 1; i >= 0; i--) {
    keel_term v = KEEL_NONE;
    CHECK(keel_task_await(self, &t[i], KEEL_INFINITY, &h, &v) == KEEL_OK);
    CHECK(v == keel_small((int64_t)i * i + 1));
  }
  CHECK(queue_len(self) == 0);
  keel_heap_destroy(&h);
  signal_event();
}

Test(task, TK1_async_await_values_in_any_order) {
  each_config(sc_async_await, true);
}

/* TK2: await past its timeout returns ETIMEDOUT and leaves the task
 * running; a later await gets the reply; the mailbox ends empty. */
static void sc_await_timeout(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_task t;
  CHECK(keel_task_async(self, blocker, NULL, keel_small(7), &h, &t) == KEEL_OK);
  keel_term v = KEEL_NONE;
  CHECK(keel_task_await(self, &t, 20, &h, &v) == KEEL_ETIMEDOUT);
  CHECK(alive(t.pid));
  keel_task_result r;
  CHECK(keel_task_yield(self, &t, 0, &h, &r) == KEEL_ETIMEDOUT);
  CHECK(keel_send(t.pid, atom("release")) == KEEL_OK);
  CHECK(keel_task_await(self, &t, KEEL_INFINITY, &h, &v) == KEEL_OK);
  CHECK(keel_is_tuple(v) && keel_tuple_get(v, 0) == atom("released") &&
        keel_tuple_get(v, 1) == keel_small(7));
  CHECK(queue_len(self) == 0);
  keel_heap_destroy(&h);
  signal_event();
}

Test(task, TK2_await_timeout_leaves_task_running) {
  each_config(sc_await_timeout, true);
}

/* TK2: a crashing linked task: the trapping owner's await returns
 * ENOPROC with the reason, and the link delivers the same reason. */
static void sc_crash(keel_proc *self, void *arg) {
  (void)arg;
  keel_trap_exit(self, true);
  keel_heap h;
  keel_heap_init(&h);
  keel_task t;
  CHECK(keel_task_async(self, crasher, NULL, keel_small(3), &h, &t) == KEEL_OK);
  keel_term v = KEEL_NONE;
  CHECK(keel_task_await(self, &t, KEEL_INFINITY, &h, &v) == KEEL_ENOPROC);
  keel_term want = keel_tuple(&h, 2, atom("boom"), keel_small(3));
  CHECK(keel_eq_exact(v, want));
  keel_term m;
  CHECK(keel_receive(self, NULL, NULL, TIMEOUT_S * 1000, &m) == KEEL_OK);
  CHECK(keel_tuple_get(m, 0) == KEEL_ATOM(EXIT) &&
        keel_tuple_get(m, 1) == t.pid &&
        keel_eq_exact(keel_tuple_get(m, 2), want));
  keel_heap_destroy(&h);
  signal_event();
}

Test(task, TK2_crash_reaches_owner_as_exit_reason) {
  each_config(sc_crash, true);
}

/* TK2: yield_many returns the finished tasks and leaves the blocked one
 * running; a second yield_many collects it once released. */
static void sc_yield_many(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_task t[3];
  keel_trap_exit(self, true);
  CHECK(keel_task_async(self, square_plus_one, NULL, keel_small(4), &h,
                        &t[0]) == KEEL_OK);
  CHECK(keel_task_async(self, blocker, NULL, keel_small(5), &h, &t[1]) ==
        KEEL_OK);
  CHECK(keel_task_async(self, crasher, NULL, keel_small(6), &h, &t[2]) ==
        KEEL_OK);
  /* The two quick tasks produce four messages: the reply and the normal
   * 'EXIT' of the first, the 'DOWN' and the 'EXIT' of the crash. */
  while (queue_len(self) < 4)
    (void)keel_fiber_yield(self);
  keel_task_result r[3];
  int done = keel_task_yield_many(self, t, 3, 0, &h, r);
  CHECK(done == 2);
  CHECK(r[0].status == KEEL_TASK_REPLY && r[0].value == keel_small(17));
  CHECK(r[1].status == KEEL_TASK_PENDING && alive(t[1].pid));
  CHECK(r[2].status == KEEL_TASK_EXIT && keel_is_tuple(r[2].value) &&
        keel_tuple_get(r[2].value, 0) == atom("boom"));
  CHECK(keel_send(t[1].pid, atom("release")) == KEEL_OK);
  CHECK(keel_task_yield_many(self, &t[1], 1, KEEL_INFINITY, &h, r) == 1);
  CHECK(r[0].status == KEEL_TASK_REPLY &&
        keel_tuple_get(r[0].value, 1) == keel_small(5));
  keel_heap_destroy(&h);
  signal_event();
}

Test(task, TK2_yield_many_returns_finished_leaves_others) {
  each_config(sc_yield_many, true);
}

/* TK2: shutdown of a blocked task (timeout and brutal_kill) is Elixir's
 * nil, the task is dead and no 'EXIT' is left for a trapping owner; a
 * task that had replied gives its reply; a task trapping the shutdown
 * is killed when the timeout runs out. */
static keel_term trapper(keel_proc *self, void *arg, keel_term input,
                         keel_heap *h) {
  keel_trap_exit(self, true);
  return blocker(self, arg, input, h);
}

static void sc_shutdown(keel_proc *self, void *arg) {
  (void)arg;
  keel_trap_exit(self, true);
  keel_heap h;
  keel_heap_init(&h);
  keel_task t;
  keel_task_result r;
  const int64_t modes[] = {1000, KEEL_TASK_BRUTAL_KILL};
  for (int k = 0; k < 2; k++) {
    CHECK(keel_task_async(self, blocker, NULL, keel_small(1), &h, &t) ==
          KEEL_OK);
    CHECK(keel_task_shutdown(self, &t, modes[k], &h, &r) == KEEL_OK);
    CHECK(r.status == KEEL_TASK_PENDING && !alive(t.pid));
    CHECK(queue_len(self) == 0);
  }
  CHECK(keel_task_async(self, square_plus_one, NULL, keel_small(9), &h, &t) ==
        KEEL_OK);
  while (queue_len(self) < 1) /* its reply (sent before its 'EXIT') */
    (void)keel_fiber_yield(self);
  CHECK(keel_task_shutdown(self, &t, 1000, &h, &r) == KEEL_OK);
  CHECK(r.status == KEEL_TASK_REPLY && r.value == keel_small(82));
  CHECK(keel_task_async(self, trapper, NULL, keel_small(2), &h, &t) == KEEL_OK);
  CHECK(keel_task_shutdown(self, &t, 30, &h, &r) == KEEL_OK);
  CHECK(r.status == KEEL_TASK_PENDING && !alive(t.pid));
  CHECK(queue_len(self) == 0);
  keel_heap_destroy(&h);
  signal_event();
}

Test(task, TK2_shutdown_timeout_brutal_and_finished) {
  each_config(sc_shutdown, true);
}

/* TK2: ignore keeps the task running unlinked and its late reply is
 * dropped (alias gone); a crash after ignore does not reach the owner. */
static void sc_ignore(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_task t;
  keel_task_result r;
  CHECK(keel_task_async(self, blocker, NULL, keel_small(8), &h, &t) == KEEL_OK);
  CHECK(keel_task_ignore(self, &t, &h, &r) == KEEL_OK);
  CHECK(r.status == KEEL_TASK_PENDING && alive(t.pid));
  CHECK(keel_send(t.pid, atom("release")) == KEEL_OK);
  CHECK(wait_normal_end(self, t.pid));
  CHECK(queue_len(self) == 0);
  /* Unlinked: a crash after ignore leaves the (non-trapping) owner alive. */
  CHECK(keel_task_async(self, blocker, NULL, keel_small(8), &h, &t) == KEEL_OK);
  CHECK(keel_task_ignore(self, &t, &h, &r) == KEEL_OK);
  keel_term ref = mon(self, t.pid);
  CHECK(keel_exit(t.pid, atom("crash")) == KEEL_OK);
  CHECK(down_reason(self, ref) == atom("crash"));
  CHECK(queue_len(self) == 0);
  /* A task that already answered: ignore hands the answer over. */
  CHECK(keel_task_async(self, square_plus_one, NULL, keel_small(2), &h, &t) ==
        KEEL_OK);
  while (queue_len(self) < 1) /* its reply */
    (void)keel_fiber_yield(self);
  CHECK(keel_task_ignore(self, &t, &h, &r) == KEEL_OK);
  CHECK(r.status == KEEL_TASK_REPLY && r.value == keel_small(5));
  keel_heap_destroy(&h);
  signal_event();
}

Test(task, TK2_ignore_drops_late_reply) {
  each_config(sc_ignore, true);
}

/* Only the owner may wait for a task; bad arguments are refused. */
static void other_waiter(keel_proc *self, void *arg) {
  keel_task *t = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term v;
  CHECK(keel_task_await(self, t, 0, &h, &v) == KEEL_ESTATE);
  CHECK(keel_send(t->owner, atom("checked")) == KEEL_OK);
  keel_heap_destroy(&h);
}

static bool is_checked(keel_term m, void *arg) {
  (void)arg;
  return m == atom("checked");
}

static void sc_errors(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_task t;
  keel_term v;
  CHECK(keel_task_async(self, NULL, NULL, KEEL_NIL, &h, &t) == KEEL_EINVAL);
  CHECK(keel_task_async(self, blocker, NULL, KEEL_NONE, &h, &t) == KEEL_EINVAL);
  CHECK(keel_task_async(NULL, blocker, NULL, KEEL_NIL, &h, &t) == KEEL_EINVAL);
  CHECK(keel_task_async(self, blocker, NULL, KEEL_NIL, &h, &t) == KEEL_OK);
  CHECK(keel_task_await(self, &t, -5, &h, &v) == KEEL_EINVAL);
  CHECK(keel_task_await(self, &t, 0, &h, NULL) == KEEL_EINVAL);
  CHECK(keel_task_run(blocker, NULL, KEEL_NIL, 0, &h, NULL) == KEEL_EINVAL);
  keel_task_result r;
  CHECK(keel_task_run(blocker, NULL, KEEL_NIL, 0, &h, &r) == KEEL_ESTATE);
  CHECK(keel_spawn_fiber(other_waiter, &t, NULL, NULL) == KEEL_OK);
  keel_term m;
  CHECK(keel_receive(self, is_checked, NULL, TIMEOUT_S * 1000, &m) == KEEL_OK);
  CHECK(keel_task_shutdown(self, &t, KEEL_TASK_BRUTAL_KILL, &h, &r) == KEEL_OK);
  keel_heap_destroy(&h);
  signal_event();
}

static void sc_errors_main(keel_proc *self, void *arg) {
  sc_errors(self, arg);
}

Test(task, errors_are_codes) {
  char cfg[96];
  for (size_t c = 0; config_start_sim(c, false, cfg, sizeof cfg); c++) {
    atomic_store(&failures, 0);
    cr_assert_eq(keel_spawn_fiber(sc_errors_main, NULL, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "%s", cfg);
    cr_assert_eq(atomic_load(&failures), 0, "%s", cfg);
    config_stop();
  }
}

/* A handler process owns a task: it cannot block, so it recognises the
 * reply and the 'DOWN' with keel_task_reply_match. */
typedef struct hstate {
  keel_heap h;
  keel_task t[2];
  int seen;
} hstate;

static keel_handler_status handler_owner(keel_proc *self, keel_term msg,
                                         void *state) {
  hstate *s = state;
  keel_task_result r;
  if (msg == atom("go")) {
    keel_trap_exit(self, true);
    CHECK(keel_task_async(self, square_plus_one, NULL, keel_small(11), &s->h,
                          &s->t[0]) == KEEL_OK);
    CHECK(keel_task_async(self, crasher, NULL, keel_small(12), &s->h,
                          &s->t[1]) == KEEL_OK);
  } else if (keel_task_reply_match(&s->t[0], msg, &r)) {
    CHECK(r.status == KEEL_TASK_REPLY && r.value == keel_small(122));
    s->seen++;
  } else if (keel_task_reply_match(&s->t[1], msg, &r)) {
    CHECK(r.status == KEEL_TASK_EXIT &&
          keel_tuple_get(r.value, 1) == keel_small(12));
    s->seen++;
  }
  if (s->seen == 2) {
    s->seen++;
    signal_event();
  }
  return KEEL_CONTINUE;
}

static void handler_end(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  keel_heap_destroy(&((hstate *)state)->h);
  free(state);
}

Test(task, TK1_handler_owner_matches_replies) {
  char cfg[96];
  for (size_t c = 0; config_start_sim(c, true, cfg, sizeof cfg); c++) {
    atomic_store(&failures, 0);
    hstate *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    keel_heap_init(&s->h);
    keel_spawn_opts o = {.terminate = handler_end};
    keel_term pid;
    cr_assert_eq(keel_spawn(handler_owner, s, &o, &pid), KEEL_OK);
    cr_assert_eq(keel_send(pid, atom("go")), KEEL_OK);
    cr_assert(wait_events(1), "%s", cfg);
    cr_assert_eq(atomic_load(&failures), 0, "%s", cfg);
    config_stop();
  }
}

/* TK3: fire-and-forget starts from a plain thread report back. */
static keel_term reporter(keel_proc *self, void *arg, keel_term input,
                          keel_heap *h) {
  (void)self;
  (void)h;
  atomic_fetch_add((atomic_long *)arg, small_of(input));
  signal_event();
  return KEEL_ATOM(OK);
}

Test(task, TK3_start_fire_and_forget) {
  char cfg[96];
  for (size_t c = 0; config_start_sim(c, true, cfg, sizeof cfg); c++) {
    atomic_long sum = 0;
    for (int i = 1; i <= 20; i++)
      cr_assert_eq(keel_task_start(reporter, &sum, keel_small(i), false, NULL),
                   KEEL_OK);
    cr_assert_eq(keel_task_start(reporter, &sum, keel_small(1), true, NULL),
                 KEEL_ESTATE, "link needs a process");
    cr_assert(wait_events(20), "%s", cfg);
    cr_assert_eq(atomic_load(&sum), 20 * 21 / 2, "%s", cfg);
    config_stop();
  }
}

/* keel_task_run from a plain thread: a reply, a crash, and a timeout that
 * kills the task. */
static atomic_ullong run_pid;

static keel_term blocker_pid(keel_proc *self, void *arg, keel_term input,
                             keel_heap *h) {
  atomic_store(&run_pid, keel_self(self));
  return blocker(self, arg, input, h);
}

Test(task, run_from_plain_thread) {
  char cfg[96];
  for (size_t c = 0; config_start_sim(c, false, cfg, sizeof cfg); c++) {
    keel_heap h;
    keel_heap_init(&h);
    keel_task_result r;
    cr_assert_eq(
        keel_task_run(square_plus_one, NULL, keel_small(30), 5000, &h, &r),
        KEEL_OK);
    cr_assert(r.status == KEEL_TASK_REPLY && r.value == keel_small(901));
    cr_assert_eq(
        keel_task_run(crasher, NULL, keel_small(31), KEEL_INFINITY, &h, &r),
        KEEL_OK);
    cr_assert(r.status == KEEL_TASK_EXIT &&
              keel_tuple_get(r.value, 0) == atom("boom"));
    cr_assert_eq(keel_task_run(blocker_pid, NULL, KEEL_NIL, 20, &h, &r),
                 KEEL_ETIMEDOUT);
    keel_process_info_t pi;
    cr_assert_eq(keel_process_info((keel_term)atomic_load(&run_pid), &pi),
                 KEEL_ENOPROC, "killed before the call returned");
    keel_heap_destroy(&h);
    config_stop();
  }
  keel_heap h;
  keel_heap_init(&h);
  keel_task_result r;
  start_sim(1);
  cr_assert_eq(keel_task_run(square_plus_one, NULL, KEEL_NIL, 0, &h, &r),
               KEEL_ESTATE, "no blocking in simulation mode");
  stop_sim();
  keel_heap_destroy(&h);
}
