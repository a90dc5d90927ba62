/* Task.Supervisor (start_child, async_nolink, max_children, children,
 * terminate_child, shutdown of the children with the supervisor) and
 * async_stream (ordered, unordered, max_concurrency, per-task timeout with
 * on_timeout exit and kill_task, zip_input_on_exit, nolink under a
 * supervisor). Ports the intent of Elixir's task/supervisor_test.exs and
 * the async_stream cases of task_test.exs (see docs/behaviours/task.md).
 * Fiber scenarios run with 1, 2 and 8 schedulers and simulated seeds. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "otp/task_internal.h"
#include "otp/task_test.h"

/* Task: adds its input to *arg and counts an event. */
static keel_term reporter_fn(keel_proc *self, void *arg, keel_term input,
                             keel_heap *h) {
  (void)self;
  (void)h;
  atomic_fetch_add((atomic_long *)arg, small_of(input));
  signal_event();
  return KEEL_ATOM(OK);
}

/* TK5: async_nolink: a crash comes back as an EXIT result and the
 * (non-trapping) owner lives on; a reply comes back as usual; the task
 * was a child of the supervisor and leaves its list when done. */
static void sc_nolink(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term sup;
  CHECK(keel_task_sup_start(NULL, &sup) == KEEL_OK);
  keel_task t;
  keel_task_result r;
  CHECK(keel_task_sup_async_nolink(self, sup, crasher, NULL, keel_small(4), &h,
                                   &t) == KEEL_OK);
  CHECK(!t.linked);
  CHECK(keel_task_yield(self, &t, KEEL_INFINITY, &h, &r) == KEEL_OK);
  CHECK(r.status == KEEL_TASK_EXIT &&
        keel_eq_exact(r.value, keel_tuple(&h, 2, atom("boom"), keel_small(4))));
  CHECK(keel_task_sup_async_nolink(self, sup, blocker, NULL, keel_small(5), &h,
                                   &t) == KEEL_OK);
  keel_term kids = KEEL_NONE;
  CHECK(keel_task_sup_children(self, sup, &h, &kids) == KEEL_OK);
  CHECK(keel_is_tuple(kids) == false && kids != KEEL_NIL);
  /* The blocked task is a child (the crashed one may still be listed:
   * its 'EXIT' to the supervisor and its 'DOWN' to us are unordered). */
  bool listed = false;
  for (keel_term l = kids; keel_is_cons(l); l = keel_tl(l))
    listed |= keel_hd(l) == t.pid;
  CHECK(listed);
  CHECK(keel_send(t.pid, atom("release")) == KEEL_OK);
  keel_term v;
  CHECK(keel_task_await(self, &t, KEEL_INFINITY, &h, &v) == KEEL_OK);
  CHECK(keel_tuple_get(v, 1) == keel_small(5));
  CHECK(wait_normal_end(self, t.pid));
  /* The supervisor hears of the death soon ('EXIT' and 'DOWN' are not
   * ordered with each other). */
  for (int k = 0; k < 100000; k++) {
    CHECK(keel_task_sup_children(self, sup, &h, &kids) == KEEL_OK);
    if (kids == KEEL_NIL)
      break;
    (void)keel_fiber_yield(self);
  }
  CHECK(kids == KEEL_NIL);
  keel_term ref = mon(self, sup);
  CHECK(keel_task_sup_stop(sup) == KEEL_OK);
  CHECK(down_reason(self, ref) == KEEL_ATOM(SHUTDOWN));
  CHECK(keel_task_sup_async_nolink(self, sup, blocker, NULL, KEEL_NIL, &h,
                                   &t) == KEEL_ENOPROC);
  CHECK(queue_len(self) == 0);
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_sup, TK5_async_nolink_crash_is_a_result) {
  each_config(sc_nolink, true);
}

/* TK5: max_children refuses with ELIMIT; terminate_child ends a child
 * (ENOENT for a stranger); stopping the supervisor ends its children. */
static void sc_max_children(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_task_sup_opts o = {.max_children = 2, .link = true};
  keel_term sup, p[3];
  CHECK(keel_task_sup_start(&o, &sup) == KEEL_OK);
  for (int i = 0; i < 2; i++)
    CHECK(keel_task_sup_start_child(self, sup, blocker, NULL, keel_small(i),
                                    &p[i]) == KEEL_OK);
  CHECK(keel_task_sup_start_child(self, sup, blocker, NULL, KEEL_NIL, &p[2]) ==
        KEEL_ELIMIT);
  keel_term ref0 = mon(self, p[0]), ref1 = mon(self, p[1]);
  CHECK(keel_task_sup_terminate_child(self, sup, p[0]) == KEEL_OK);
  CHECK(!alive(p[0])); /* terminate_child answers once the child is gone */
  keel_term r0 = down_reason(self, ref0);
  CHECK(r0 == KEEL_ATOM(SHUTDOWN) || r0 == KEEL_ATOM(NOPROC));
  CHECK(keel_task_sup_terminate_child(self, sup, keel_self(self)) ==
        KEEL_ENOENT);
  CHECK(keel_task_sup_start_child(self, sup, blocker, NULL, KEEL_NIL, &p[2]) ==
        KEEL_OK);
  keel_term kids;
  size_t len = 0;
  CHECK(keel_task_sup_children(self, sup, &h, &kids) == KEEL_OK);
  CHECK(keel_list_length(kids, &len) == KEEL_OK && len == 2);
  keel_term ref2 = mon(self, p[2]), refs = mon(self, sup);
  keel_trap_exit(self, true); /* the supervisor is linked to us */
  CHECK(keel_task_sup_stop(sup) == KEEL_OK);
  /* A child may end before it handles the monitor request: noproc. */
  keel_term r1 = down_reason(self, ref1), r2 = down_reason(self, ref2);
  CHECK(r1 == KEEL_ATOM(SHUTDOWN) || r1 == KEEL_ATOM(NOPROC));
  CHECK(r2 == KEEL_ATOM(SHUTDOWN) || r2 == KEEL_ATOM(NOPROC));
  CHECK(!alive(p[1]) && !alive(p[2]));
  CHECK(down_reason(self, refs) == KEEL_ATOM(SHUTDOWN));
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_sup, TK5_max_children_terminate_child_and_stop) {
  each_config(sc_max_children, true);
}

/* TK5: the supervisor dies with its linked parent, and takes its
 * children along. */
static void parent_of_sup(keel_proc *self, void *arg) {
  keel_term *out = arg; /* [sup, child] */
  keel_task_sup_opts o = {.link = true};
  CHECK(keel_task_sup_start(&o, &out[0]) == KEEL_OK);
  CHECK(keel_task_sup_start_child(self, out[0], blocker, NULL, KEEL_NIL,
                                  &out[1]) == KEEL_OK);
  (void)keel_stop(self, atom("parent_gone"));
}

static void sc_parent_death(keel_proc *self, void *arg) {
  (void)arg;
  keel_term pids[2] = {KEEL_NONE, KEEL_NONE}, parent;
  keel_term pref = KEEL_NONE;
  keel_spawn_opts so = {.monitor_ref = &pref,
                        .monitor_heap = keel_proc_heap(self)};
  CHECK(keel_spawn_fiber(parent_of_sup, pids, &so, &parent) == KEEL_OK);
  CHECK(down_reason(self, pref) == atom("parent_gone"));
  /* Dead or dying: the monitors say how they ended (noproc if already). */
  keel_term rs = down_reason(self, mon(self, pids[0]));
  keel_term rc = down_reason(self, mon(self, pids[1]));
  CHECK(rs == atom("parent_gone") || rs == KEEL_ATOM(NOPROC));
  CHECK(rc == KEEL_ATOM(SHUTDOWN) || rc == KEEL_ATOM(NOPROC));
  CHECK(!alive(pids[0]) && !alive(pids[1]));
  signal_event();
}

Test(task_sup, TK5_supervisor_follows_its_parent) {
  each_config(sc_parent_death, true);
}

/* TK3/TK5: start_child and children from a plain thread (proxy). */
Test(task_sup, TK5_start_child_from_plain_thread) {
  char cfg[96];
  for (size_t c = 0; config_start_sim(c, false, cfg, sizeof cfg); c++) {
    keel_term sup, p;
    atomic_long sum = 0;
    cr_assert_eq(keel_task_sup_start(NULL, &sup), KEEL_OK);
    for (int i = 1; i <= 10; i++)
      cr_assert_eq(keel_task_sup_start_child(NULL, sup, reporter_fn, &sum,
                                             keel_small(i), &p),
                   KEEL_OK, "%s", cfg);
    cr_assert(wait_events(10), "%s", cfg);
    cr_assert_eq(atomic_load(&sum), 55);
    keel_heap h;
    keel_heap_init(&h);
    keel_term kids;
    cr_assert_eq(keel_task_sup_children(NULL, sup, &h, &kids), KEEL_OK);
    cr_assert(keel_list_length(kids, &(size_t){0}) == KEEL_OK);
    cr_assert_eq(keel_task_sup_terminate_child(NULL, sup, keel_pid_local(1)),
                 KEEL_ENOENT);
    cr_assert_eq(keel_task_sup_children(NULL, KEEL_ATOM(OK), &h, &kids),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_task_sup_children(NULL, keel_small(1), &h, &kids),
                 KEEL_EBADARG);
    keel_heap_destroy(&h);
    config_stop();
  }
}

/* ---- async_stream ------------------------------------------------------- */

#define NIN 64

static atomic_int running_now, running_max;

/* Task: 3 * input, tracking how many run at once. */
static keel_term counted(keel_proc *self, void *arg, keel_term input,
                         keel_heap *h) {
  (void)arg;
  (void)h;
  int now = atomic_fetch_add(&running_now, 1) + 1;
  int seen = atomic_load(&running_max);
  while (now > seen && !atomic_compare_exchange_weak(&running_max, &seen, now))
    ;
  (void)keel_fiber_yield(self); /* let others start meanwhile */
  atomic_fetch_sub(&running_now, 1);
  return keel_small(3 * small_of(input));
}

/* TK4: ordered results match the inputs one to one; never more than
 * max_concurrency tasks at once; the mailbox ends empty. */
static void sc_stream_ordered(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term in[NIN], out[NIN];
  for (int i = 0; i < NIN; i++)
    in[i] = keel_small(i);
  atomic_store(&running_max, 0);
  keel_task_stream_opts o = {.max_concurrency = 4};
  CHECK(keel_task_async_stream(self, in, NIN, counted, NULL, &o, &h, out) ==
        KEEL_OK);
  for (int i = 0; i < NIN; i++)
    CHECK(keel_tuple_get(out[i], 0) == KEEL_ATOM(OK) &&
          keel_tuple_get(out[i], 1) == keel_small(3 * i));
  CHECK(atomic_load(&running_max) <= 4 && atomic_load(&running_max) >= 1);
  CHECK(queue_len(self) == 0);
  CHECK(keel_task_async_stream(self, in, 0, counted, NULL, NULL, &h, NULL) ==
        KEEL_OK);
  CHECK(keel_task_async_stream(self, NULL, 2, counted, NULL, NULL, &h, out) ==
        KEEL_EINVAL);
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_stream, TK4_ordered_bounded_concurrency) {
  each_config(sc_stream_ordered, true);
}

static _Atomic keel_term others[8];

/* Task: input 0 answers only after every other task has died (so after
 * their replies: a task replies before it ends); the others publish their
 * pid and return their input. */
static keel_term slow_head(keel_proc *self, void *arg, keel_term input,
                           keel_heap *h) {
  (void)h;
  int n = *(int *)arg;
  if (input != keel_small(0)) {
    atomic_store(&others[small_of(input)], keel_self(self));
    return input;
  }
  for (int i = 1; i < n; i++) {
    while (atomic_load(&others[i]) == KEEL_NONE)
      (void)keel_fiber_yield(self);
    (void)down_reason(self, mon(self, atomic_load(&others[i])));
  }
  return input;
}

/* TK4: a slow head: ordered mode still returns input order; unordered
 * mode returns completion order, the head last. */
static void sc_stream_unordered(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  int n = 8;
  keel_term in[8], out[8];
  for (int i = 0; i < n; i++)
    in[i] = keel_small(i);
  for (int unordered = 0; unordered < 2; unordered++) {
    for (int i = 0; i < n; i++)
      atomic_store(&others[i], KEEL_NONE);
    keel_task_stream_opts o = {.max_concurrency = 3,
                               .unordered = unordered != 0};
    CHECK(keel_task_async_stream(self, in, (size_t)n, slow_head, &n, &o, &h,
                                 out) == KEEL_OK);
    bool seen[8] = {false};
    for (int i = 0; i < n; i++) {
      CHECK(keel_tuple_get(out[i], 0) == KEEL_ATOM(OK));
      int64_t v = small_of(keel_tuple_get(out[i], 1));
      CHECK(v >= 0 && v < n && !seen[v]);
      if (v >= 0 && v < n)
        seen[v] = true;
      if (!unordered)
        CHECK(v == i);
    }
    /* The head cannot answer before task 3 ends, and task 3 starts only
     * once a result has come in: the first result is never the head's. */
    if (unordered)
      CHECK(small_of(keel_tuple_get(out[0], 1)) != 0);
  }
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_stream, TK4_unordered_is_completion_order) {
  each_config(sc_stream_unordered, true);
}

/* Per-task deadline of the timeout scenario: long enough that a task that
 * answers at once never overruns it on a loaded machine (virtual time in
 * simulation, so it costs nothing there). */
#define STREAM_TIMEOUT_MS 1000

/* Task: input 1 never answers; input 2 crashes; the others double. */
static keel_term mixed(keel_proc *self, void *arg, keel_term input,
                       keel_heap *h) {
  if (input == keel_small(1))
    return blocker(self, arg, input, h);
  if (input == keel_small(2))
    return crasher(self, arg, input, h);
  return keel_small(2 * small_of(input));
}

/* TK4: per-task timeout: kill_task gives {exit, timeout} (zipped:
 * {exit, {1, timeout}}) and kills the task; exit mode fails the stream;
 * a crash is {exit, Reason} in both. Also under a supervisor (nolink). */
static void sc_stream_timeout(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term in[5], out[5];
  for (int i = 0; i < 5; i++)
    in[i] = keel_small(i);
  keel_term sup;
  CHECK(keel_task_sup_start(NULL, &sup) == KEEL_OK);
  keel_trap_exit(self, true); /* the linked crash */
  for (int k = 0; k < 4; k++) {
    keel_task_stream_opts o = {.max_concurrency = 2,
                               .timeout_ms = STREAM_TIMEOUT_MS,
                               .on_timeout = KEEL_TASK_TIMEOUT_KILL,
                               .zip_input_on_exit = (k & 1) != 0,
                               .supervisor = k >= 2 ? sup : KEEL_NONE};
    CHECK(keel_task_async_stream(self, in, 5, mixed, NULL, &o, &h, out) ==
          KEEL_OK);
    keel_term to = o.zip_input_on_exit
                       ? keel_tuple(&h, 2, keel_small(1), KEEL_ATOM(TIMEOUT))
                       : KEEL_ATOM(TIMEOUT);
    keel_term boom = keel_tuple(&h, 2, atom("boom"), keel_small(2));
    if (o.zip_input_on_exit)
      boom = keel_tuple(&h, 2, keel_small(2), boom);
    CHECK(keel_eq_exact(out[1], keel_tuple(&h, 2, atom("exit"), to)));
    CHECK(keel_eq_exact(out[2], keel_tuple(&h, 2, atom("exit"), boom)));
    for (int i = 0; i < 5; i++)
      if (i != 1 && i != 2)
        CHECK(keel_eq_exact(
            out[i], keel_tuple(&h, 2, KEEL_ATOM(OK), keel_small(2 * i))));
  }
  keel_task_stream_opts o = {.max_concurrency = 5,
                             .timeout_ms = STREAM_TIMEOUT_MS};
  CHECK(keel_task_async_stream(self, in, 5, mixed, NULL, &o, &h, out) ==
        KEEL_ETIMEDOUT);
  keel_term kids;
  CHECK(keel_task_sup_children(self, sup, &h, &kids) == KEEL_OK &&
        kids == KEEL_NIL);
  keel_term ref = mon(self, sup);
  CHECK(keel_task_sup_stop(sup) == KEEL_OK);
  CHECK(down_reason(self, ref) == KEEL_ATOM(SHUTDOWN));
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_stream, TK4_timeout_kill_task_exit_and_zip) {
  each_config(sc_stream_timeout, true);
}

/* Hostile requests: a forged Spec (a binary, not the node's resource) or
 * a malformed body gets {error, badarg}, and the supervisor lives on. */
static bool is_reply_to(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 2 &&
         keel_eq_exact(keel_tuple_get(m, 0), *(keel_term *)arg);
}

static void sc_forged(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term sup, alias, m;
  CHECK(keel_task_sup_start(NULL, &sup) == KEEL_OK);
  CHECK(keel_alias(self, &h, &alias) == KEEL_OK);
  uint64_t fake[3] = {0, 0x1234, 0};
  keel_term bodies[3] = {
      keel_tuple(&h, 5, atom("start"), KEEL_ATOM(UNDEFINED),
                 keel_binary(&h, fake, sizeof fake), KEEL_NIL, KEEL_NIL),
      keel_tuple(&h, 2, atom("start"), KEEL_NIL), keel_small(3)};
  for (int i = 0; i < 3; i++) {
    CHECK(keel_send(sup, keel_tuple(&h, 3, atom("$task_sup"), alias,
                                    bodies[i])) == KEEL_OK);
    CHECK(keel_receive(self, is_reply_to, &alias, TIMEOUT_S * 1000, &m) ==
          KEEL_OK);
    CHECK(keel_eq_exact(keel_tuple_get(m, 1),
                        keel_tuple(&h, 2, KEEL_ATOM(ERROR), atom("badarg"))));
  }
  /* An exit signal from a non-parent is ignored; the call is then
   * answered after it (one ordered stream from us to sup). */
  CHECK(keel_exit(sup, KEEL_ATOM(SHUTDOWN)) == KEEL_OK);
  keel_term kids;
  CHECK(keel_task_sup_children(self, sup, &h, &kids) == KEEL_OK &&
        kids == KEEL_NIL);
  keel_term ref = mon(self, sup);
  CHECK(keel_exit(sup, KEEL_ATOM(KILL)) == KEEL_OK);
  CHECK(down_reason(self, ref) == KEEL_ATOM(KILLED));
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_sup, forged_requests_are_refused) {
  each_config(sc_forged, false);
}

static void parent_of_nothing(keel_proc *self, void *arg) {
  (void)self;
  (void)arg;
}

/* Polls sup's children until none is left (a bounded number of looks). */
static bool no_children(keel_proc *self, keel_term sup, keel_heap *h) {
  keel_term kids = KEEL_NONE;
  for (int k = 0; k < 100000; k++) {
    if (keel_task_sup_children(self, sup, h, &kids) != KEEL_OK)
      return false;
    if (kids == KEEL_NIL)
      return true;
    (void)keel_fiber_yield(self);
  }
  return false;
}

static atomic_int ran;

static keel_term mark_ran(keel_proc *self, void *arg, keel_term input,
                          keel_heap *h) {
  atomic_fetch_add(&ran, 1);
  return blocker(self, arg, input, h);
}

/* TK5: a stream under a supervisor whose max_children is below the
 * stream's concurrency fails with ELIMIT and leaves no task behind; an
 * async_nolink task whose owner is gone before it may run ends without
 * running its function. */
static void sc_sup_limits(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term sup, in[6], out[6];
  for (int i = 0; i < 6; i++)
    in[i] = keel_small(i);
  keel_task_sup_opts so = {.max_children = 2};
  CHECK(keel_task_sup_start(&so, &sup) == KEEL_OK);
  atomic_store(&ran, 0);
  keel_task_stream_opts o = {.max_concurrency = 4, .supervisor = sup};
  CHECK(keel_task_async_stream(self, in, 6, mark_ran, NULL, &o, &h, out) ==
        KEEL_ELIMIT);
  CHECK(no_children(self, sup, &h));
  CHECK(queue_len(self) == 0);
  /* A start request for an owner that is already dead. */
  keel_term dead, alias, m;
  CHECK(keel_spawn_fiber(parent_of_nothing, NULL, NULL, &dead) == KEEL_OK);
  CHECK(wait_normal_end(self, dead));
  CHECK(keel_alias(self, &h, &alias) == KEEL_OK);
  keel_term body =
      keel_tuple(&h, 5, atom("start"), dead,
                 keel__task_spec_term(&h, mark_ran, NULL), KEEL_NIL, KEEL_NIL);
  atomic_store(&ran, 0);
  CHECK(keel_send(sup, keel_tuple(&h, 3, atom("$task_sup"), alias, body)) ==
        KEEL_OK);
  CHECK(keel_receive(self, is_reply_to, &alias, TIMEOUT_S * 1000, &m) ==
        KEEL_OK);
  CHECK(keel_tuple_get(keel_tuple_get(m, 1), 0) == KEEL_ATOM(OK));
  CHECK(no_children(self, sup, &h));
  CHECK(atomic_load(&ran) == 0);
  keel_term ref = mon(self, sup);
  CHECK(keel_task_sup_stop(sup) == KEEL_OK);
  CHECK(down_reason(self, ref) == KEEL_ATOM(SHUTDOWN));
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_sup, TK5_limits_and_dead_owner) {
  each_config(sc_sup_limits, true);
}

/* ---- TK6: $callers ------------------------------------------------------ */

/* Task: its own callers list. */
static keel_term my_callers(keel_proc *self, void *arg, keel_term input,
                            keel_heap *h) {
  (void)arg;
  (void)input;
  keel_term l = KEEL_NONE;
  return keel_task_callers(self, h, &l) == KEEL_OK ? l : KEEL_NONE;
}

/* Task: starts my_callers as a subtask and returns what it returned. */
static keel_term nested_callers(keel_proc *self, void *arg, keel_term input,
                                keel_heap *h) {
  keel_task t;
  keel_term v = KEEL_NONE;
  if (keel_task_async(self, my_callers, arg, input, h, &t) != KEEL_OK ||
      keel_task_await(self, &t, KEEL_INFINITY, h, &v) != KEEL_OK)
    return KEEL_NONE;
  return keel_tuple(h, 2, keel_self(self), v);
}

/* TK6: a task's callers are its owner then the owner's callers; a plain
 * process has none; a nolink task under a supervisor has its owner. */
static void sc_callers(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term me = keel_self(self), l, v;
  CHECK(keel_task_callers(self, &h, &l) == KEEL_OK && l == KEEL_NIL);
  keel_task t;
  CHECK(keel_task_async(self, my_callers, NULL, KEEL_NIL, &h, &t) == KEEL_OK);
  CHECK(keel_task_await(self, &t, KEEL_INFINITY, &h, &v) == KEEL_OK);
  CHECK(keel_eq_exact(v, keel_list_from(&h, 1, &me)));
  CHECK(keel_task_async(self, nested_callers, NULL, KEEL_NIL, &h, &t) ==
        KEEL_OK);
  CHECK(keel_task_await(self, &t, KEEL_INFINITY, &h, &v) == KEEL_OK);
  keel_term chain[2] = {t.pid, me};
  CHECK(keel_is_tuple(v) && keel_tuple_get(v, 0) == t.pid &&
        keel_eq_exact(keel_tuple_get(v, 1), keel_list_from(&h, 2, chain)));
  keel_term sup;
  CHECK(keel_task_sup_start(NULL, &sup) == KEEL_OK);
  CHECK(keel_task_sup_async_nolink(self, sup, my_callers, NULL, KEEL_NIL, &h,
                                   &t) == KEEL_OK);
  CHECK(keel_task_await(self, &t, KEEL_INFINITY, &h, &v) == KEEL_OK);
  CHECK(keel_eq_exact(v, keel_list_from(&h, 1, &me)));
  CHECK(keel_task_callers(NULL, &h, &l) == KEEL_EINVAL);
  CHECK(keel_task_sup_stop(sup) == KEEL_OK);
  keel_heap_destroy(&h);
  signal_event();
}

Test(task_sup, TK6_callers_chain) {
  each_config(sc_callers, true);
}
