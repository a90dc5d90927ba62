/* gen_statem: state_functions mode with enter calls (a code lock with an
 * automatic relock by state timeout and a postponed call), unknown
 * states, init results and names, start_link and terminate on the
 * parent's exit, deferred replies and send_request, hibernation and the
 * automatic heap compaction under many events, get_status with
 * format_status, change_code, crash reports as telemetry. Every scenario
 * runs with 1, 2 and 8 schedulers, as a handler and as a fiber. */
#include <pthread.h>

#include "keel/signals.h"
#include "keel/telemetry.h"
#include "otp/gsm_test.h"

#define FOR_CONFIGS                                                            \
  for (size_t c = 0; c < NCONF; c++)                                           \
    for (int fiber = 0; fiber < 2; fiber++)

static int64_t ival(keel_term t) {
  int64_t v = -1;
  (void)keel_get_int64(t, &v);
  return v;
}

/* ---- a code lock (state_functions + state_enter) -------------------------
 * data {Code, Entered, Opened}: the last three buttons as an integer and
 * how many times it opened. */

static keel_term door_data(keel_gen_statem *sm, keel_term d, int64_t entered,
                           int64_t opened) {
  keel_heap *h = keel_gsm_heap(sm);
  return keel_tuple(h, 3, keel_tuple_get(d, 0), keel_int(h, entered),
                    keel_int(h, opened));
}

static keel_gsm_ret locked(keel_gen_statem *sm, keel_term type,
                           keel_term content, keel_term *d) {
  keel_term from;
  keel_gsm_kind k = keel_gsm_kind_of(type, &from);
  int64_t opened = ival(keel_tuple_get(*d, 2));
  if (k == KEEL_GSM_ENTER) {
    *d = door_data(sm, *d, 0, opened);
    return keel_gsm_keep_state(sm);
  }
  if (k != KEEL_GSM_CALL)
    return keel_gsm_keep_state(sm);
  if (content == A("wait_locked") || content == A("state")) {
    keel_gsm_reply(sm, from, A("locked"));
    return keel_gsm_keep_state(sm);
  }
  int64_t e =
      (ival(keel_tuple_get(*d, 1)) * 10 + ival(keel_tuple_get(content, 1))) %
      1000;
  if (e == ival(keel_tuple_get(*d, 0))) {
    *d = door_data(sm, *d, e, opened + 1);
    keel_gsm_reply(sm, from, A("open"));
    return keel_gsm_next_state(sm, A("open"));
  }
  *d = door_data(sm, *d, e, opened);
  keel_gsm_reply(sm, from, A("locked"));
  return keel_gsm_keep_state(sm);
}

static keel_gsm_ret open_fn(keel_gen_statem *sm, keel_term type,
                            keel_term content, keel_term *d) {
  (void)d;
  keel_term from;
  switch (keel_gsm_kind_of(type, &from)) {
  case KEEL_GSM_ENTER:
    keel_gsm_state_timeout(sm, 20, A("lock"));
    return keel_gsm_keep_state(sm);
  case KEEL_GSM_STATE_TIMEOUT:
    return keel_gsm_next_state(sm, A("locked"));
  case KEEL_GSM_CALL:
    if (content == A("wait_locked")) {
      keel_gsm_postpone(sm);
      return keel_gsm_keep_state(sm);
    }
    if (content == A("break")) /* a state without a function */
      return keel_gsm_next_state(sm, A("broken"));
    keel_gsm_reply(sm, from, A("open"));
    return keel_gsm_keep_state(sm);
  default:
    return keel_gsm_keep_state(sm);
  }
}

static keel_gsm_ret door_init(keel_gen_statem *sm, keel_term code,
                              keel_term *state, keel_term *data) {
  *state = A("locked");
  *data = keel_tuple(keel_gsm_heap(sm), 3, code, keel_small(0), keel_small(0));
  return keel_gsm_ok(sm);
}

static const keel_gsm_state_entry door_states[] = {
    {"locked", locked}, {"open", open_fn}, {NULL, NULL}};

static const keel_gen_statem_module door = {.version =
                                                KEEL_GEN_STATEM_MODULE_V1,
                                            .name = "door",
                                            .mode = KEEL_GSM_STATE_FUNCTIONS,
                                            .state_enter = true,
                                            .init = door_init,
                                            .states = door_states,
                                            .terminate = t_terminate};

static keel_term press(keel_term sm, int b, keel_heap *h) {
  keel_term r = KEEL_NONE;
  cr_assert_eq(
      keel_gen_statem_call(sm, keel_build(h, "{button, ~i}", b), TMO, h, &r),
      KEEL_OK);
  return r;
}

Test(gen_statem_sys, state_functions_code_lock) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_gen_statem_opts o = {.fiber = fiber, .name = A("door")};
    keel_term pid;
    cr_assert_eq(keel_gen_statem_start(&door, keel_small(123), &o, &pid),
                 KEEL_OK);
    cr_assert_eq(keel_whereis(A("door")), pid);
    int wrong[] = {1, 2, 4, 3, 2};
    for (size_t i = 0; i < 5; i++)
      cr_assert_eq(press(A("door"), wrong[i], &h), A("locked"));
    cr_assert_eq(press(A("door"), 1, &h), A("locked"));
    cr_assert_eq(press(A("door"), 2, &h), A("locked"));
    cr_assert_eq(press(A("door"), 3, &h), A("open"));
    /* postponed while open, answered once the state timeout relocked */
    keel_term r;
    cr_assert_eq(keel_gen_statem_call(A("door"), A("wait_locked"), TMO, &h, &r),
                 KEEL_OK);
    cr_assert_eq(r, A("locked"));
    /* the enter call into locked forgot the buttons: 3 alone is wrong */
    cr_assert_eq(press(A("door"), 3, &h), A("locked"));
    keel_term st;
    cr_assert_eq(keel_gen_statem_get_state(pid, TMO, &h, &st), KEEL_OK);
    cr_assert_eq(keel_tuple_get(st, 0), A("locked"));
    cr_assert_eq(ival(keel_tuple_get(keel_tuple_get(st, 1), 2)), 1);
    /* a state with no function stops the machine */
    cr_assert_eq(press(A("door"), 1, &h), A("locked"));
    cr_assert_eq(press(A("door"), 2, &h), A("locked"));
    cr_assert_eq(press(A("door"), 3, &h), A("open"));
    cr_assert_eq(keel_gen_statem_call(pid, A("break"), TMO, &h, &r),
                 KEEL_ENOPROC);
    cr_assert(is(r, "undef_state_function", 2));
    cr_assert_eq(keel_tuple_get(r, 1), A("broken"));
    cr_assert_eq(keel_whereis(A("door")), KEEL_ATOM(UNDEFINED));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- init results, names, bad arguments -------------------------------- */

Test(gen_statem_sys, init_results_names_and_bad_arguments) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_term reason = KEEL_NONE, pid = KEEL_NONE;
    keel_gen_statem_opts o = {
        .fiber = fiber, .reason_heap = &h, .reason = &reason};
    cr_assert_eq(keel_gen_statem_start(&plain_mod, KEEL_ATOM(IGNORE), &o, &pid),
                 KEEL_GEN_SERVER_IGNORED);
    cr_assert_eq(keel_gen_statem_start(&plain_mod,
                                       keel_build(&h, "{stop, bad}"), &o, &pid),
                 KEEL_ENOPROC);
    cr_assert_eq(reason, A("bad"));
    o.name = A("gsm_named");
    cr_assert_eq(
        keel_gen_statem_start(&plain_mod, keel_build(&h, "{a, []}"), &o, &pid),
        KEEL_OK);
    keel_term p1 = pid;
    cr_assert_eq(
        keel_gen_statem_start(&plain_mod, keel_build(&h, "{a, []}"), &o, &pid),
        KEEL_EEXIST);
    cr_assert_eq(pid, p1);
    cr_assert_eq(keel_gen_statem_stop(A("gsm_named"), KEEL_ATOM(NORMAL), TMO),
                 KEEL_OK);
    cr_assert_eq(keel_gen_statem_stop(A("gsm_named"), KEEL_ATOM(NORMAL), TMO),
                 KEEL_ENOPROC);
    keel_gen_statem_module bad = plain_mod;
    bad.handle_event = NULL;
    cr_assert_eq(keel_gen_statem_start(&bad, KEEL_NIL, NULL, &pid),
                 KEEL_EINVAL);
    bad = door;
    bad.states = NULL;
    cr_assert_eq(keel_gen_statem_start(&bad, KEEL_NIL, NULL, &pid),
                 KEEL_EINVAL);
    bad = plain_mod;
    bad.version = 7;
    cr_assert_eq(keel_gen_statem_start(&bad, KEEL_NIL, NULL, &pid),
                 KEEL_EINVAL);
    cr_assert_eq(keel_gen_statem_start(NULL, KEEL_NIL, NULL, &pid),
                 KEEL_EINVAL);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* init's {error, R} (OTP 26): the start fails with R, the machine ends
 * with reason normal: no terminate, a linked non-trapping starter lives
 * on, its start monitor sees normal. */
typedef struct init_error_run {
  int fiber;
  _Atomic keel_term reason, down;
  atomic_int rc;
} init_error_run;

static void init_error_main(keel_proc *self, void *arg) {
  init_error_run *r = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term reason = KEEL_NONE, mref = KEEL_NONE, pid, m;
  keel_gen_statem_opts o = {.fiber = r->fiber,
                            .link = true,
                            .monitor_ref = &mref,
                            .monitor_heap = &h,
                            .reason_heap = &h,
                            .reason = &reason};
  atomic_store(&r->rc, keel_gen_statem_start(&plain_mod,
                                             keel_build(&h, "{error, nope}"),
                                             &o, &pid));
  atomic_store(&r->reason, reason);
  keel_pattern *p;
  if (keel_pattern_compile(&p, "{'DOWN', ~t, process, _, _}", mref) ==
      KEEL_OK) {
    if (keel_receive_pattern(self, p, TMO, &m, NULL) == KEEL_OK)
      atomic_store(&r->down, keel_tuple_get(m, 4));
    keel_pattern_free(p);
  }
  keel_heap_destroy(&h);
  signal_event(); /* reached: the link's exit did not kill us */
}

Test(gen_statem_sys, init_error_fails_the_start_and_exits_normally) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    long before = atomic_load(&terminated);
    init_error_run r = {.fiber = fiber};
    cr_assert_eq(keel_spawn_fiber(init_error_main, &r, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "the starter survived");
    cr_assert_eq(atomic_load(&r.rc), KEEL_ENOPROC);
    cr_assert_eq(atomic_load(&r.reason), A("nope"));
    cr_assert_eq(atomic_load(&r.down), KEEL_ATOM(NORMAL));
    cr_assert_eq(atomic_load(&terminated), before, "no terminate");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- start_link from a fiber; terminate on the parent's exit ----------- */

typedef struct parent_arg {
  int fiber;
  _Atomic keel_term child;
} parent_arg;

static void parent_main(keel_proc *self, void *arg) {
  parent_arg *pa = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_gen_statem_opts o = {
      .fiber = pa->fiber, .link = true, .trap_exit = true};
  keel_term pid = KEEL_NONE;
  if (keel_gen_statem_start(&plain_mod, keel_build(&h, "{a, []}"), &o, &pid) ==
      KEEL_OK)
    atomic_store(&pa->child, pid);
  keel_heap_destroy(&h);
  signal_event();
  keel_term m; /* wait to be killed */
  (void)keel_receive(self, NULL, NULL, KEEL_INFINITY, &m);
}

Test(gen_statem_sys, terminate_on_parent_exit_when_trapping) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    parent_arg pa = {.fiber = fiber, .child = KEEL_NONE};
    keel_term parent;
    cr_assert_eq(keel_spawn_fiber(parent_main, &pa, NULL, &parent), KEEL_OK);
    cr_assert(wait_events(1));
    keel_term child = atomic_load(&pa.child);
    cr_assert(keel_is_local_pid(child));
    cr_assert_eq(keel_exit(parent, A("bye")), KEEL_OK);
    cr_assert(wait_until(proc_gone, &child));
    cr_assert_eq(atomic_load(&terminated), 1);
    cr_assert_eq(atomic_load(&last_reason), A("bye"));
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- deferred replies, send_request ------------------------------------ */

static keel_gsm_ret hold_event(keel_gen_statem *sm, keel_term type,
                               keel_term content, keel_term state,
                               keel_term *data) {
  (void)state;
  keel_term from;
  keel_gsm_kind k = keel_gsm_kind_of(type, &from);
  if (k == KEEL_GSM_CALL && content == A("hold")) {
    *data = keel_term_copy(keel_gsm_heap(sm), from);
  } else if (k == KEEL_GSM_CALL) {
    keel_gsm_reply(sm, from, content);
  } else if (k == KEEL_GSM_CAST && content == A("release")) {
    cr_assert_eq(keel_gen_statem_reply(*data, A("released")), KEEL_OK);
  }
  return keel_gsm_keep_state(sm);
}

static keel_gsm_ret hold_init(keel_gen_statem *sm, keel_term arg,
                              keel_term *state, keel_term *data) {
  (void)arg;
  *state = A("s");
  *data = KEEL_NIL;
  return keel_gsm_ok(sm);
}

static const keel_gen_statem_module hold_mod = {
    .version = KEEL_GEN_STATEM_MODULE_V1,
    .mode = KEEL_GSM_HANDLE_EVENT_FUNCTION,
    .init = hold_init,
    .handle_event = hold_event};

typedef struct req_arg {
  keel_term sm;
  _Atomic int rc1, rc2;
  _Atomic keel_term r1, r2;
} req_arg;

/* A fiber: holds a call, releases it by cast, and a send_request. */
static void requester(keel_proc *self, void *arg) {
  (void)self;
  req_arg *ra = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term id, r = KEEL_NONE;
  int rc = keel_gen_statem_send_request(ra->sm, A("hold"), &h, &id);
  if (rc == KEEL_OK)
    rc = keel_gen_statem_cast(ra->sm, A("release"));
  if (rc == KEEL_OK)
    rc = keel_gen_statem_receive_response(id, TMO, &h, &r);
  atomic_store(&ra->r1, r == A("released") ? r : KEEL_NONE);
  atomic_store(&ra->rc1, rc);
  rc = keel_gen_statem_send_request(ra->sm, A("echo"), &h, &id);
  keel_term m;
  if (rc == KEEL_OK)
    rc = keel_receive(self, NULL, NULL, TMO, &m);
  if (rc == KEEL_OK)
    rc = keel_gen_statem_check_response(m, id, &h, &r);
  atomic_store(&ra->r2, r == A("echo") ? r : KEEL_NONE);
  atomic_store(&ra->rc2, rc);
  keel_heap_destroy(&h);
  signal_event();
}

Test(gen_statem_sys, deferred_reply_and_send_request) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_gen_statem_opts o = {.fiber = fiber};
    req_arg ra = {.rc1 = -1, .rc2 = -1};
    cr_assert_eq(keel_gen_statem_start(&hold_mod, KEEL_NIL, &o, &ra.sm),
                 KEEL_OK);
    keel_term p;
    cr_assert_eq(keel_spawn_fiber(requester, &ra, NULL, &p), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(atomic_load(&ra.rc1), KEEL_OK);
    cr_assert_eq(atomic_load(&ra.r1), A("released"));
    cr_assert_eq(atomic_load(&ra.rc2), KEEL_OK);
    cr_assert_eq(atomic_load(&ra.r2), A("echo"));
    cr_assert_eq(keel_gen_statem_stop(ra.sm, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- hibernation, automatic compaction ---------------------------------- */

typedef struct len_wait {
  keel_term sm;
  size_t want;
} len_wait;

static bool log_len_is(void *arg) {
  len_wait *w = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term st;
  size_t n = 0;
  bool ok = keel_gen_statem_get_state(w->sm, TMO, &h, &st) == KEEL_OK &&
            keel_list_length(keel_tuple_get(st, 1), &n) == KEEL_OK &&
            n == w->want;
  keel_heap_destroy(&h);
  return ok;
}

Test(gen_statem_sys, hibernate_and_compaction_keep_everything) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    /* hibernate_after 1 ms: idle moments compact the heap too */
    keel_gen_statem_opts o = {.fiber = fiber, .hibernate_after_ms = 1};
    keel_term sm = start_sm_opts(&plain_mod, &o, "{a, []}");
    /* a pending generic timeout and postponed events survive compaction
     * (the timeout may fire anywhere among the casts) */
    cast(sm, "{s, t, [{gt, late, 200, {kept, [1, 2]}}]}");
    cast(sm, "{s, p, [{in, a, [postpone]}]}");
    for (int i = 0; i < 3000; i++) {
      keel_term m = keel_build(&h, "{s, ~i, [~a]}", i,
                               i % 100 == 0 ? "hibernate" : "keep");
      cr_assert_eq(keel_gen_statem_cast(sm, m), KEEL_OK);
    }
    cast(sm, "{s, go, [{next, b}]}");
    len_wait w = {sm, 3005};
    cr_assert(wait_until(log_len_is, &w));
    char *l = log_of(sm);
    cr_assert_not_null(l);
    cr_assert(strstr(l, "{cast,1,a},{cast,2,a},") != NULL);
    cr_assert(strstr(l, "{cast,2999,a},") != NULL);
    cr_assert(strstr(l, "{cast,go,a},{cast,p,b}") != NULL);
    cr_assert(strstr(l, "{{timeout,late},{kept,[1,2]},") != NULL);
    free(l);
    keel_heap_destroy(&h);
    stop_sm(sm);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- get_status, format_status, change_code ----------------------------- */

static keel_term hide(keel_gen_statem *sm, keel_term state, keel_term data) {
  (void)data;
  return keel_tuple(keel_gsm_heap(sm), 2, state, A("hidden"));
}

/* The new version: data becomes {v2, OldLogLength}; events are answered
 * (calls) with v2. */
static int upgrade(keel_gen_statem *sm, const keel_gen_statem_module *old,
                   keel_term extra, keel_term *state, keel_term *data) {
  (void)state;
  if (extra == A("refuse"))
    return KEEL_EBADARG;
  size_t n = 0;
  (void)keel_list_length(*data, &n);
  *data = keel_tuple(keel_gsm_heap(sm), 3, A("v2"), keel_small((int64_t)n),
                     keel_atom(old->name));
  return KEEL_OK;
}

static keel_gsm_ret v2_event(keel_gen_statem *sm, keel_term type,
                             keel_term content, keel_term state,
                             keel_term *data) {
  (void)content;
  (void)state;
  (void)data;
  keel_term from;
  if (keel_gsm_kind_of(type, &from) == KEEL_GSM_CALL)
    keel_gsm_reply(sm, from, A("v2"));
  return keel_gsm_keep_state(sm);
}

static const keel_gen_statem_module v2_mod = {
    .version = KEEL_GEN_STATEM_MODULE_V1,
    .name = "gsm_v2",
    .mode = KEEL_GSM_HANDLE_EVENT_FUNCTION,
    .init = t_init,
    .handle_event = v2_event,
    .code_change = upgrade,
    .format_status = hide};

Test(gen_statem_sys, get_status_format_status_change_code) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cast(sm, "{s, one, []}");
    expect_log(sm, "[{cast,one,a}]");
    keel_term st;
    cr_assert_eq(keel_gen_statem_get_status(sm, TMO, &h, &st), KEEL_OK);
    cr_assert(keel_eq_exact(st, keel_build(&h, "{a, [{cast, one, a}]}")));
    /* a refused upgrade changes nothing */
    cr_assert_eq(keel_gen_statem_change_code(sm, &v2_mod, A("refuse"), TMO),
                 KEEL_EBADARG);
    cr_assert_eq(call(sm, "{s, c, [{reply, v1}]}", KEEL_OK, &h), A("v1"));
    cr_assert_eq(keel_gen_statem_change_code(sm, &v2_mod, KEEL_NIL, TMO),
                 KEEL_OK);
    cr_assert_eq(call(sm, "{s, c, [{reply, v1}]}", KEEL_OK, &h), A("v2"));
    cr_assert_eq(keel_gen_statem_get_state(sm, TMO, &h, &st), KEEL_OK);
    cr_assert(keel_eq_exact(st, keel_build(&h, "{a, {v2, 2, gsm_plain}}")));
    cr_assert_eq(keel_gen_statem_get_status(sm, TMO, &h, &st), KEEL_OK);
    cr_assert(keel_eq_exact(st, keel_build(&h, "{a, hidden}")));
    cr_assert_eq(keel_gen_statem_change_code(sm, NULL, KEEL_NIL, TMO),
                 KEEL_EINVAL);
    stop_sm(sm);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- crash reports --------------------------------------------------------
 */

static pthread_mutex_t tmu = PTHREAD_MUTEX_INITIALIZER;
static keel_heap theap;
static keel_term crash_meta; /* {Reason, State, LastMessage, Module} */
static long crashes;

static keel_term meta(const keel_tel_meta *md, size_t n, const char *k) {
  keel_term v = KEEL_NONE;
  (void)keel_tel_meta_get(md, n, A(k), &v);
  return v;
}

static int on_crash(const keel_tel_event *ev, const keel_tel_measure *m,
                    size_t nm, const keel_tel_meta *md, size_t nmd,
                    void *config) {
  (void)ev;
  (void)m;
  (void)nm;
  (void)config;
  pthread_mutex_lock(&tmu);
  crashes++;
  crash_meta = keel_term_copy(
      &theap,
      keel_tuple(&theap, 4, meta(md, nmd, "reason"), meta(md, nmd, "state"),
                 meta(md, nmd, "last_message"), meta(md, nmd, "module")));
  pthread_mutex_unlock(&tmu);
  return 0;
}

Test(gen_statem_sys, crash_report_telemetry) {
  keel_heap_init(&theap);
  keel_tel_event *ev;
  cr_assert_eq(keel_tel_event_parse("keel.gen_statem.crash", &ev), KEEL_OK);
  cr_assert_eq(keel_tel_attach(A("gsm_test"), &ev, 1, on_crash, NULL), KEEL_OK);
  FOR_CONFIGS {
    start(sched_counts[c]);
    pthread_mutex_lock(&tmu);
    crashes = 0;
    crash_meta = KEEL_NONE;
    pthread_mutex_unlock(&tmu);
    keel_heap h;
    keel_heap_init(&h);
    /* normal, shutdown and {shutdown, _} are not crashes */
    keel_term sm = start_sm(&plain_mod, fiber, "{a, []}");
    cr_assert_eq(
        call(sm, "{s, c, [{stop_reply, {shutdown, x}, ok}]}", KEEL_OK, &h),
        KEEL_ATOM(OK));
    cr_assert(wait_until(proc_gone, &sm));
    sm = start_sm(&plain_mod, fiber, "{a, []}");
    cr_assert_eq(call(sm, "{s, boom, [{stop, boom}]}", KEEL_ENOPROC, &h),
                 A("boom"));
    /* the report is emitted before the process dies */
    pthread_mutex_lock(&tmu);
    keel_term cm = crash_meta;
    long n = crashes;
    pthread_mutex_unlock(&tmu);
    cr_assert_eq(n, 1);
    cr_assert_eq(keel_tuple_get(cm, 0), A("boom"));
    cr_assert(keel_eq_exact(keel_tuple_get(cm, 1),
                            keel_build(&h, "{a, [{call, boom, a}]}")));
    cr_assert(is(keel_tuple_get(cm, 2), "s", 3));
    cr_assert_eq(keel_tuple_get(cm, 3), A("gsm_plain"));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  cr_assert_eq(keel_tel_detach(A("gsm_test")), KEEL_OK);
}

/* sys:statistics and sys:log of a machine (the shared implementation
 * also serves gen_server: test_gen_server_sys.c). */
static keel_term stat_of(keel_term stats, const char *key) {
  for (keel_term l = stats; keel_is_cons(l); l = keel_tl(l))
    if (keel_tuple_get(keel_hd(l), 0) == A(key))
      return keel_tuple_get(keel_hd(l), 1);
  return KEEL_NONE;
}

Test(gen_statem_sys, statistics_and_log) {
  FOR_CONFIGS {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_gen_statem_opts o = {.fiber = fiber};
    keel_term pid, st, r, log;
    cr_assert_eq(
        keel_gen_statem_start(&plain_mod, keel_build(&h, "{a, []}"), &o, &pid),
        KEEL_OK);
    cr_assert_eq(keel_gen_statem_get_statistics(pid, TMO, &h, &st),
                 KEEL_ENOENT);
    cr_assert_eq(keel_gen_statem_statistics(pid, true, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_statem_log(pid, 2, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_statem_cast(pid, A("c1")), KEEL_OK);
    keel_term req = keel_build(&h, "{s, q, [{reply, yes}]}");
    cr_assert_eq(keel_gen_statem_call(pid, req, TMO, &h, &r), KEEL_OK);
    cr_assert_eq(r, A("yes"));
    cr_assert_eq(keel_gen_statem_get_statistics(pid, TMO, &h, &st), KEEL_OK);
    cr_assert_eq(ival(stat_of(st, "messages_in")), 2);
    cr_assert_eq(ival(stat_of(st, "messages_out")), 1);
    cr_assert_eq(keel_gen_statem_get_log(pid, TMO, &h, &log), KEEL_OK);
    size_t n = 0;
    cr_assert_eq(keel_list_length(log, &n), KEEL_OK);
    cr_assert_eq(n, 2); /* {in, Req, From}, {out, yes, From} */
    keel_term e1 = keel_hd(log), e2 = keel_hd(keel_tl(log));
    cr_assert_eq(keel_tuple_get(e1, 0), A("in"));
    cr_assert(keel_eq_exact(keel_tuple_get(e1, 1), req));
    cr_assert_eq(keel_tuple_get(e2, 0), A("out"));
    cr_assert_eq(keel_tuple_get(e2, 1), A("yes"));
    cr_assert_eq(keel_gen_statem_log(pid, 0, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_statem_get_log(pid, TMO, &h, &log), KEEL_ENOENT);
    cr_assert_eq(keel_gen_statem_stop(pid, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
