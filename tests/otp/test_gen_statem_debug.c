/* gen_statem's sys-like debugging (suspend/resume holding events in order,
 * replace_state of {State, Data}, trace events), enter_loop and absolute
 * timeouts ({abs, true}). Every scenario runs with 1, 2 and 8 schedulers,
 * as a handler and as a fiber machine (enter_loop: fibers only). */
#include <pthread.h>

#include "keel/signals.h"
#include "keel/telemetry.h"
#include "otp/gsm_test.h"

#define FOR_CONFIGS                                                            \
  for (size_t c = 0; c < NCONF; c++)                                           \
    for (int fiber = 0; fiber < 2; fiber++)

/* ---- suspend / resume ---------------------------------------------------- */

typedef struct caller {
  keel_term sm;
  _Atomic int rc;
  _Atomic keel_term reply; /* an atom */
} caller;

/* A fiber calling the machine (it blocks while the machine is suspended). */
static void call_fiber(keel_proc *self, void *arg) {
  caller *c = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term r = KEEL_NONE;
  keel_term q = keel_build(&h, "{s, c, [{reply, answered}]}");
  int rc = keel_gen_statem_call(c->sm, q, TMO, keel_proc_heap(self), &r);
  atomic_store(&c->reply, keel_is_atom(r) ? r : A("other"));
  atomic_store(&c->rc, rc);
  keel_heap_destroy(&h);
  signal_event();
}

static bool log_has(void *arg) {
  log_wait *w = arg;
  free(w->got);
  w->got = log_of(w->sm);
  return w->got != NULL && strstr(w->got, w->want) != NULL;
}

Test(gen_statem_debug, sys_suspend_holds_events_until_resume_in_order) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    /* a generic timeout of 1 ms, armed before the suspension */
    cast(sm, "{s, arm, [{gt, g, 1, fired}]}");
    log_wait w = {sm, "{cast,arm,a}", NULL};
    cr_assert(wait_until(log_has, &w));
    cr_assert_eq(keel_gen_statem_suspend(sm, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_statem_suspend(sm, TMO), KEEL_OK); /* idempotent */
    /* the timeout may have fired before the suspension, or be held */
    char *l0 = log_of(sm);
    cast(sm, "{s, one, [{next, b}]}");
    cast(sm, "two");
    cr_assert_eq(keel_send(sm, A("three")), KEEL_OK);
    caller cl = {.sm = sm, .rc = 99, .reply = KEEL_NONE};
    long ev0 = 0; /* start() reset the counter */
    keel_term cpid;
    cr_assert_eq(keel_spawn_fiber(call_fiber, &cl, NULL, &cpid), KEEL_OK);
    /* system requests are served while suspended; nothing else is */
    keel_heap h;
    keel_heap_init(&h);
    keel_term st;
    cr_assert_eq(keel_gen_statem_get_state(sm, TMO, &h, &st), KEEL_OK);
    cr_assert_eq(keel_tuple_get(st, 0), A("a"));
    cr_assert_eq(keel_gen_statem_get_status(sm, TMO, &h, &st), KEEL_OK);
    char *l = log_of(sm);
    cr_assert_str_eq(l, l0);
    free(l);
    free(l0);
    cr_assert_eq(atomic_load(&cl.rc), 99, "a call answered while suspended");
    cr_assert_eq(keel_gen_statem_resume(sm, TMO), KEEL_OK);
    /* the held events in arrival order (the timer's event once, after
     * arm), and the call answered */
    cr_assert(wait_events(ev0 + 1));
    cr_assert_eq(atomic_load(&cl.rc), KEEL_OK);
    cr_assert_eq(atomic_load(&cl.reply), A("answered"));
    w.want = "{cast,one,a}";
    cr_assert(wait_until(log_has, &w));
    w.want = "{{timeout,g},fired,";
    cr_assert(wait_until(log_has, &w), "%s", w.got);
    free(w.got);
    l = log_of(sm);
    const char *one = strstr(l, "{cast,one,a}"),
               *two = strstr(l, "{cast,two,b}"),
               *three = strstr(l, "{info,three,b}"),
               *call4 = strstr(l, "{call,c,b}");
    cr_assert(one && two && three && call4, "%s", l);
    cr_assert(one < two && two < three && three < call4, "%s", l);
    const char *tm = strstr(l, "{{timeout,g},fired,");
    cr_assert(tm != NULL && strstr(tm + 1, "{{timeout,g},fired,") == NULL);
    free(l);
    /* resume of a running machine does nothing */
    cr_assert_eq(keel_gen_statem_resume(sm, TMO), KEEL_OK);
    keel_heap_destroy(&h);
    stop_sm(sm);
    cr_assert_eq(keel_gen_statem_suspend(sm, TMO), KEEL_ENOPROC);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Many events held while suspended survive the heap compactions that the
 * events handled on resume trigger. */
Test(gen_statem_debug, sys_many_held_events_survive_compaction) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cr_assert_eq(keel_gen_statem_suspend(sm, TMO), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    for (int i = 0; i < 600; i++) {
      keel_term m = keel_build(&h, "{s, ~i, [hibernate]}", i);
      cr_assert_eq(keel_gen_statem_cast(sm, m), KEEL_OK);
    }
    cr_assert_eq(keel_gen_statem_resume(sm, TMO), KEEL_OK);
    cast(sm, "last");
    log_wait w = {sm, "{cast,last,a}", NULL};
    cr_assert(wait_until(log_has, &w));
    free(w.got);
    keel_term st;
    cr_assert_eq(keel_gen_statem_get_state(sm, TMO, &h, &st), KEEL_OK);
    keel_term l = keel_tuple_get(st, 1); /* newest first */
    size_t n = 0;
    cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
    cr_assert_eq(n, 601);
    l = keel_tl(l);
    for (int i = 599; i >= 0; i--, l = keel_tl(l)) {
      int64_t v = -1;
      (void)keel_get_int64(keel_tuple_get(keel_hd(l), 1), &v);
      cr_assert_eq(v, i);
    }
    keel_heap_destroy(&h);
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- replace_state ------------------------------------------------------- */

static keel_term to_b(keel_heap *h, keel_term sd, void *arg) {
  (void)arg;
  return keel_tuple(h, 2, A("b"),
                    keel_cons(h, A("replaced"), keel_tuple_get(sd, 1)));
}

static keel_term keep(keel_heap *h, keel_term sd, void *arg) {
  (void)h;
  (void)sd;
  (void)arg;
  return KEEL_NONE;
}

static keel_term bad_pair(keel_heap *h, keel_term sd, void *arg) {
  (void)h;
  (void)sd;
  (void)arg;
  return A("not_a_pair");
}

Test(gen_statem_debug, sys_replace_state_replaces_state_and_data) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    /* with enter calls: a replaced state is no state change */
    keel_term sm = start_sm(&enter_mod, fiber, "{a, []}");
    cast(sm, "{s, p, [postpone, {st, 60000, never}]}");
    expect_log(sm, "[{enter,a,a},{cast,p,a}]");
    cr_assert_eq(keel_gen_statem_replace_state(sm, to_b, NULL, TMO), KEEL_OK);
    cast(sm, "x");
    /* no enter call, the postponed event not retried */
    expect_log(sm, "[{enter,a,a},{cast,p,a},replaced,{cast,x,b}]");
    cr_assert_eq(keel_gen_statem_replace_state(sm, keep, NULL, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_statem_replace_state(sm, bad_pair, NULL, TMO),
                 KEEL_EINVAL);
    cr_assert_eq(keel_gen_statem_replace_state(sm, NULL, NULL, TMO),
                 KEEL_EINVAL);
    keel_heap h;
    keel_heap_init(&h);
    keel_term st;
    cr_assert_eq(keel_gen_statem_get_state(sm, TMO, &h, &st), KEEL_OK);
    cr_assert_eq(keel_tuple_get(st, 0), A("b"));
    /* a real change to c retries the postponed event there */
    cast(sm, "{s, go, [{next, c}]}");
    expect_log(sm, "[{enter,a,a},{cast,p,a},replaced,{cast,x,b},{cast,go,b},"
                   "{enter,b,c},{cast,p,c}]");
    keel_heap_destroy(&h);
    stop_sm(sm);
    cr_assert_eq(keel_gen_statem_replace_state(sm, keep, NULL, TMO),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- trace --------------------------------------------------------------- */

static pthread_mutex_t tmu = PTHREAD_MUTEX_INITIALIZER;
static keel_heap theap;
static keel_term traced; /* [{Type, State}], newest first */
static keel_term trace_pid;

static int on_trace(const keel_tel_event *ev, const keel_tel_measure *m,
                    size_t nm, const keel_tel_meta *md, size_t nmd,
                    void *config) {
  (void)ev;
  (void)m;
  (void)nm;
  (void)config;
  keel_term pid = KEEL_NONE, type = KEEL_NONE, st = KEEL_NONE,
            content = KEEL_NONE;
  (void)keel_tel_meta_get(md, nmd, A("pid"), &pid);
  (void)keel_tel_meta_get(md, nmd, A("type"), &type);
  (void)keel_tel_meta_get(md, nmd, A("state"), &st);
  (void)keel_tel_meta_get(md, nmd, A("content"), &content);
  pthread_mutex_lock(&tmu);
  if (pid == trace_pid && content != KEEL_NONE) {
    keel_term e = keel_tuple(&theap, 2, type, st);
    traced = keel_cons(&theap, keel_term_copy(&theap, e), traced);
  }
  pthread_mutex_unlock(&tmu);
  return 0;
}

static char *traced_text(void) {
  pthread_mutex_lock(&tmu);
  char *s = keel_print_alloc(traced, NULL);
  pthread_mutex_unlock(&tmu);
  return s;
}

Test(gen_statem_debug, sys_trace_on_off) {
  keel_heap_init(&theap);
  keel_tel_event *ev;
  cr_assert_eq(keel_tel_event_parse("keel.gen_statem.trace", &ev), KEEL_OK);
  cr_assert_eq(keel_tel_attach(A("gsm_trace"), &ev, 1, on_trace, NULL),
               KEEL_OK);
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    pthread_mutex_lock(&tmu);
    traced = KEEL_NIL;
    trace_pid = sm;
    pthread_mutex_unlock(&tmu);
    cast(sm, "untraced");
    cr_assert_eq(keel_gen_statem_trace(sm, true, TMO), KEEL_OK);
    cast(sm, "{s, go, [{next, b}, {ins, internal, i}, {gt, g, 0, z}]}");
    expect_log(sm, "[{cast,untraced,a},{cast,go,a},{internal,i,b},"
                   "{{timeout,g},z,b}]");
    cr_assert_eq(keel_gen_statem_trace(sm, false, TMO), KEEL_OK);
    cast(sm, "later");
    expect_log(sm, "[{cast,untraced,a},{cast,go,a},{internal,i,b},"
                   "{{timeout,g},z,b},{cast,later,b}]");
    /* the trace is emitted on the machine's thread before the callback:
     * complete once the log shows the events */
    char *t = traced_text();
    cr_assert_str_eq(t, "[{{timeout,g},b},{internal,b},{cast,a}]");
    free(t);
    stop_sm(sm);
    cr_assert_eq(keel_gen_statem_trace(sm, true, TMO), KEEL_ENOPROC);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- enter_loop ---------------------------------------------------------- */

typedef struct looper_arg {
  const char *name; /* registered before enter_loop; NULL: none */
  const char *opt_name;
  _Atomic int rc;
} looper_arg;

static void looper(keel_proc *self, void *arg) {
  looper_arg *la = arg;
  if (la->name != NULL)
    cr_assert_eq(keel_register(A(la->name), keel_self(self)), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  keel_term st = keel_build(&h, "{s0, [{st, 1, tick}]}");
  keel_gen_statem_opts o = {.name = la->opt_name ? A(la->opt_name) : KEEL_NONE,
                            .hibernate_after_ms = 1};
  int rc = keel_gen_statem_enter_loop(self, &enter_mod, st, KEEL_NIL, &o);
  keel_heap_destroy(&h);
  atomic_store(&la->rc, rc);
  signal_event();
}

Test(gen_statem_debug, enter_loop_turns_a_fiber_into_a_machine) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    looper_arg la = {.name = "armitage", .opt_name = "armitage", .rc = 99};
    keel_term pid;
    long ev0 = 0; /* start() reset the counter */
    cr_assert_eq(keel_spawn_fiber(looper, &la, NULL, &pid), KEEL_OK);
    /* the initial enter call ran and set a state timeout */
    expect_log(pid, "[{enter,s0,s0},{state_timeout,tick,s0}]");
    keel_heap h;
    keel_heap_init(&h);
    cr_assert_eq(
        call(A("armitage"), "{s, q, [{reply, yes}, hibernate]}", KEEL_OK, &h),
        A("yes"));
    /* hibernating (and hibernate_after) keeps the fiber's stack */
    cr_assert_eq(call(pid, "{s, q2, [{reply, still}]}", KEEL_OK, &h),
                 A("still"));
    cr_assert_eq(keel_gen_statem_suspend(pid, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_statem_resume(pid, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_statem_stop(pid, A("done"), TMO), KEEL_OK);
    cr_assert(wait_events(ev0 + 2)); /* terminate, then the fiber's return */
    cr_assert_eq(atomic_load(&la.rc), KEEL_OK);
    cr_assert_eq(atomic_load(&last_reason), A("done"));
    /* a name the process does not hold: process_not_registered */
    looper_arg bad = {.name = NULL, .opt_name = "armitage", .rc = 99};
    cr_assert_eq(keel_spawn_fiber(looper, &bad, NULL, &pid), KEEL_OK);
    cr_assert(wait_events(ev0 + 3));
    cr_assert_eq(atomic_load(&bad.rc), KEEL_ENOENT);
    /* not from a plain thread; bad arguments */
    cr_assert_eq(
        keel_gen_statem_enter_loop(NULL, &enter_mod, A("s"), KEEL_NIL, NULL),
        KEEL_ESTATE);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* enter_loop/6's initial actions: an inserted event handled first (after
 * the enter call), a generic timeout; a postpone is refused. */
static void initial_actions(keel_gen_statem *sm, void *arg) {
  if (arg != NULL) {
    cr_assert_eq(keel_gsm_postpone(sm), KEEL_OK);
    return;
  }
  cr_assert_eq(keel_gsm_next_event(sm, A("internal"), A("first")), KEEL_OK);
  cr_assert_eq(keel_gsm_generic_timeout(sm, A("g"), 50, A("gfired")), KEEL_OK);
}

static void actions_looper(keel_proc *self, void *arg) {
  looper_arg *la = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term st = keel_build(&h, "{s0, [{st, 1, tick}]}");
  int rc = keel_gen_statem_enter_actions(self, &enter_mod, st, KEEL_NIL, NULL,
                                         initial_actions,
                                         la->name != NULL ? la : NULL);
  keel_heap_destroy(&h);
  atomic_store(&la->rc, rc);
  signal_event();
}

Test(gen_statem_debug, enter_loop_with_initial_actions) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    looper_arg la = {.rc = 99};
    keel_term pid;
    long ev0 = 0; /* start() reset the counter */
    cr_assert_eq(keel_spawn_fiber(actions_looper, &la, NULL, &pid), KEEL_OK);
    expect_log(pid, "[{enter,s0,s0},{internal,first,s0},"
                    "{state_timeout,tick,s0},{{timeout,g},gfired,s0}]");
    cr_assert_eq(keel_gen_statem_stop(pid, A("done"), TMO), KEEL_OK);
    cr_assert(wait_events(ev0 + 2));
    cr_assert_eq(atomic_load(&la.rc), KEEL_OK);
    /* postpone is refused in the initial actions, as from init */
    looper_arg bad = {.name = "postpone", .rc = 99};
    cr_assert_eq(keel_spawn_fiber(actions_looper, &bad, NULL, &pid), KEEL_OK);
    cr_assert(wait_events(ev0 + 4)); /* terminate, then the fiber's return */
    cr_assert_eq(atomic_load(&bad.rc), KEEL_OK);
    cr_assert_eq(atomic_load(&last_reason), A("other"));
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

static void bad_looper(keel_proc *self, void *arg) {
  looper_arg *la = arg;
  static const keel_gen_statem_module nomod = {.version = 0};
  int r1 = keel_gen_statem_enter_loop(self, &nomod, A("s"), KEEL_NIL, NULL);
  int r2 =
      keel_gen_statem_enter_loop(self, &enter_mod, KEEL_NONE, KEEL_NIL, NULL);
  atomic_store(&la->rc, r1 == KEEL_EINVAL && r2 == KEEL_EINVAL ? 0 : -1);
  signal_event();
}

Test(gen_statem_debug, enter_loop_bad_arguments) {
  start(1);
  looper_arg la = {.rc = 99};
  keel_term pid;
  long ev0 = 0; /* start() reset the counter */
  cr_assert_eq(keel_spawn_fiber(bad_looper, &la, NULL, &pid), KEEL_OK);
  cr_assert(wait_events(ev0 + 1));
  cr_assert_eq(atomic_load(&la.rc), 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}

/* ---- absolute timeouts --------------------------------------------------- */

/* Casts fmt built with two absolute times (~L placeholders). */
static void cast_at(keel_term sm, const char *fmt, int64_t t1, int64_t t2) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term m = keel_build(&h, fmt, (long long)t1, (long long)t2);
  cr_assert_neq(m, KEEL_NONE, "%s", fmt);
  cr_assert_eq(keel_gen_statem_cast(sm, m), KEEL_OK);
  keel_heap_destroy(&h);
}

Test(gen_statem_debug, absolute_timeouts) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    int64_t t = keel_gsm_monotonic_ms();
    /* deadlines decide, not the order of the actions; a relative timeout
     * of the same transition counts from later than t */
    cast_at(sm,
            "{s, go, [{agt, g1, ~L, one}, {st, 600, rel}, {agt, g2, ~L, two}]}",
            t + 200, t + 20);
    expect_log(sm, "[{cast,go,a},{{timeout,g2},two,a},{{timeout,g1},one,a},"
                   "{state_timeout,rel,a}]");
    /* a time already past fires through the mailbox: after a zero
     * timeout, which is queued at once */
    t = keel_gsm_monotonic_ms();
    cast_at(sm, "{s, p, [{ast, ~L, abs0}, {gt, z, 0, rel0}, {agt, y, ~L, y0}]}",
            t - 1000, t + 300);
    expect_log(sm, "[{cast,go,a},{{timeout,g2},two,a},{{timeout,g1},one,a},"
                   "{state_timeout,rel,a},{cast,p,a},{{timeout,z},rel0,a},"
                   "{state_timeout,abs0,a},{{timeout,y},y0,a}]");
    /* the absolute event timeout: cancelled by an event, fires when idle;
     * infinity cancels an absolute generic timeout */
    t = keel_gsm_monotonic_ms();
    cast_at(sm, "{s, e, [{aet, ~L, never}, {agt, g3, ~L, no}]}", t + 600000,
            t + 600000);
    cast_at(sm,
            "{s, x, [{agt, g3, infinity, no}, {gt, probe, 300, p}, "
            "{aet, ~L, idle}]}",
            t + 10, 0);
    expect_log(sm, "[{cast,go,a},{{timeout,g2},two,a},{{timeout,g1},one,a},"
                   "{state_timeout,rel,a},{cast,p,a},{{timeout,z},rel0,a},"
                   "{state_timeout,abs0,a},{{timeout,y},y0,a},{cast,e,a},"
                   "{cast,x,a},{timeout,idle,a},{{timeout,probe},p,a}]");
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Out-of-range absolute times are refused with KEEL_EINVAL. */
static keel_gsm_ret range_init(keel_gen_statem *sm, keel_term arg,
                               keel_term *state, keel_term *data) {
  (void)arg;
  int64_t now = keel_gsm_monotonic_ms();
  bool ok =
      keel_gsm_state_timeout_at(sm, -5, A("x")) == KEEL_EINVAL &&
      keel_gsm_event_timeout_at(sm, now + (int64_t)KEEL_TIMER_MAX_MS + 100000,
                                A("x")) == KEEL_EINVAL &&
      keel_gsm_generic_timeout_at(sm, KEEL_NONE, now, A("x")) == KEEL_EINVAL &&
      keel_gsm_generic_timeout_at(sm, A("g"), KEEL_INFINITY, A("x")) == KEEL_OK;
  *state = ok ? A("ok") : A("bad");
  *data = KEEL_NIL;
  return keel_gsm_ok(sm);
}

Test(gen_statem_debug, absolute_timeout_range) {
  static const keel_gen_statem_module m = {.version = KEEL_GEN_STATEM_MODULE_V1,
                                           .mode =
                                               KEEL_GSM_HANDLE_EVENT_FUNCTION,
                                           .init = range_init,
                                           .handle_event = t_event};
  start(2);
  keel_term sm = start_sm(&m, false, "x");
  keel_heap h;
  keel_heap_init(&h);
  keel_term st;
  cr_assert_eq(keel_gen_statem_get_state(sm, TMO, &h, &st), KEEL_OK);
  cr_assert_eq(keel_tuple_get(st, 0), A("ok"));
  keel_heap_destroy(&h);
  cr_assert_eq(keel_gen_statem_stop(sm, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
