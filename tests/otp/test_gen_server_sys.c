/* gen_server's sys-like requests (get_state, replace_state,
 * suspend/resume with messages held in order, trace events, get_status
 * through format_status), crash reports as telemetry events, code change
 * by swapping the module descriptor, and fiber servers calling another
 * server from a callback. Every scenario runs with 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "keel/gen_server.h"
#include "keel/signals.h"
#include "keel/telemetry.h"
#include "runtime/rt_test.h"

#define TMO 10000

static keel_term A(const char *s) {
  return keel_atom(s);
}

static int64_t ival(keel_term t) {
  int64_t v = -1;
  (void)keel_get_int64(t, &v);
  return v;
}

/* ---- a list server: state is the list of cast items, newest first -------- */

static keel_gs_ret l_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  (void)arg;
  *s = KEEL_NIL;
  return keel_gs_ok(gs);
}

static keel_gs_ret l_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  (void)from;
  if (req == A("crash"))
    return keel_gs_stop(gs, A("crashed"));
  if (keel_is_tuple(req) && keel_tuple_get(req, 0) == A("call_other")) {
    /* fiber servers only: a nested call from inside handle_call */
    keel_term r;
    int rc = keel_gen_server_call(keel_tuple_get(req, 1), A("len"), TMO,
                                  keel_gs_heap(gs), &r);
    return keel_gs_reply(gs, rc == KEEL_OK ? r : keel_small(rc));
  }
  size_t n = 0;
  (void)keel_list_length(*s, &n);
  return keel_gs_reply(gs, keel_small((int64_t)n));
}

static keel_gs_ret l_cast(keel_gen_server *gs, keel_term msg, keel_term *s) {
  *s = keel_cons(keel_gs_heap(gs), msg, *s);
  return keel_gs_ok(gs);
}

/* Hides the state: shows only its length. */
static keel_term l_status(keel_gen_server *gs, keel_term s) {
  size_t n = 0;
  (void)keel_list_length(s, &n);
  return keel_tuple(keel_gs_heap(gs), 2, A("items"), keel_small((int64_t)n));
}

static const keel_gen_server_module lmod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "list_server",
    .init = l_init,
    .handle_call = l_call,
    .handle_cast = l_cast,
    .format_status = l_status,
};

/* Version 2: code_change turns the list into {v2, List}; 'len' reads it. */
static keel_gs_ret l2_call(keel_gen_server *gs, keel_term req, keel_term from,
                           keel_term *s) {
  (void)from;
  (void)req;
  size_t n = 0;
  (void)keel_list_length(keel_tuple_get(*s, 1), &n);
  return keel_gs_reply(gs, keel_small((int64_t)n + 100));
}

static int l2_change(keel_gen_server *gs, const keel_gen_server_module *old,
                     keel_term extra, keel_term *s) {
  if (old != &lmod || extra != A("upgrade"))
    return KEEL_EINVAL;
  *s = keel_tuple(keel_gs_heap(gs), 2, A("v2"), *s);
  return KEEL_OK;
}

static const keel_gen_server_module lmod2 = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "list_server_v2",
    .init = l_init,
    .handle_call = l2_call,
    .code_change = l2_change,
};

static keel_term start_list(bool fiber) {
  keel_gen_server_opts o = {.fiber = fiber};
  keel_term pid;
  cr_assert_eq(keel_gen_server_start(&lmod, KEEL_NIL, &o, &pid), KEEL_OK);
  return pid;
}

static int64_t len(keel_term srv) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term r;
  cr_assert_eq(keel_gen_server_call(srv, A("len"), TMO, &h, &r), KEEL_OK);
  keel_heap_destroy(&h);
  return ival(r);
}

/* Waits (bounded) until the server has n items. */
static void wait_len(keel_term srv, int64_t n) {
  for (int i = 0; i < 100000; i++)
    if (len(srv) == n)
      return;
  cr_assert_fail("never reached %lld items", (long long)n);
}

static keel_term add_one(keel_heap *h, keel_term state, void *arg) {
  return keel_cons(h, keel_small(*(int *)arg), state);
}

Test(gen_server_sys, GS12_get_state_replace_state_suspend_resume) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term srv = start_list(c % 2);
    for (int i = 0; i < 3; i++)
      cr_assert_eq(keel_gen_server_cast(srv, keel_small(i)), KEEL_OK);
    wait_len(srv, 3);
    keel_term s;
    cr_assert_eq(keel_gen_server_get_state(srv, TMO, &h, &s), KEEL_OK);
    cr_assert(keel_eq_exact(s, keel_build(&h, "[2, 1, 0]")));
    int v = 9;
    cr_assert_eq(keel_gen_server_replace_state(srv, add_one, &v, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_server_get_state(srv, TMO, &h, &s), KEEL_OK);
    cr_assert(keel_eq_exact(s, keel_build(&h, "[9, 2, 1, 0]")));
    /* suspended: casts wait; system requests are served */
    cr_assert_eq(keel_gen_server_suspend(srv, TMO), KEEL_OK);
    for (int i = 10; i < 15; i++)
      cr_assert_eq(keel_gen_server_cast(srv, keel_small(i)), KEEL_OK);
    cr_assert_eq(keel_gen_server_get_state(srv, TMO, &h, &s), KEEL_OK);
    cr_assert(keel_eq_exact(s, keel_build(&h, "[9, 2, 1, 0]")));
    cr_assert_eq(keel_gen_server_get_status(srv, TMO, &h, &s), KEEL_OK);
    cr_assert(keel_eq_exact(s, keel_build(&h, "{items, 4}")));
    /* a call made while suspended is answered after resume */
    cr_assert_eq(keel_gen_server_call(srv, A("len"), 20, &h, &s),
                 KEEL_ETIMEDOUT);
    cr_assert_eq(keel_gen_server_resume(srv, TMO), KEEL_OK);
    wait_len(srv, 9);
    cr_assert_eq(keel_gen_server_get_state(srv, TMO, &h, &s), KEEL_OK);
    cr_assert(
        keel_eq_exact(s, keel_build(&h, "[14, 13, 12, 11, 10, 9, 2, 1, 0]")));
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    cr_assert_eq(keel_gen_server_get_state(srv, TMO, &h, &s), KEEL_ENOPROC);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- telemetry: trace and crash ------------------------------------------ */

static pthread_mutex_t tmu = PTHREAD_MUTEX_INITIALIZER;
static keel_heap theap;
static keel_term crash_meta; /* {Reason, State, LastMessage, Module} */
static long traced;
static long unexpected; /* [keel, gen_server, unexpected_message] events */

static keel_term meta(const keel_tel_meta *md, size_t n, const char *k) {
  keel_term v = KEEL_NONE;
  (void)keel_tel_meta_get(md, n, A(k), &v);
  return v;
}

static int on_event(const keel_tel_event *ev, const keel_tel_measure *m,
                    size_t nm, const keel_tel_meta *md, size_t nmd,
                    void *config) {
  (void)m;
  (void)nm;
  (void)config;
  const keel_term *atoms;
  size_t n = keel_tel_event_atoms(ev, &atoms);
  pthread_mutex_lock(&tmu);
  if (n == 3 && atoms[2] == A("unexpected_message"))
    unexpected += meta(md, nmd, "message") == A("stray");
  else if (n == 3 && atoms[2] == A("crash"))
    crash_meta = keel_term_copy(
        &theap,
        keel_tuple(&theap, 4, meta(md, nmd, "reason"), meta(md, nmd, "state"),
                   meta(md, nmd, "last_message"), meta(md, nmd, "module")));
  else
    traced++;
  pthread_mutex_unlock(&tmu);
  signal_event();
  return 0;
}

static bool one_unexpected(void *arg) {
  (void)arg;
  pthread_mutex_lock(&tmu);
  bool ok = unexpected == 1;
  pthread_mutex_unlock(&tmu);
  return ok;
}

static void attach(void) {
  keel_tel_event *ev[3];
  cr_assert_eq(keel_tel_event_parse("keel.gen_server.crash", &ev[0]), KEEL_OK);
  cr_assert_eq(keel_tel_event_parse("keel.gen_server.trace", &ev[1]), KEEL_OK);
  cr_assert_eq(
      keel_tel_event_parse("keel.gen_server.unexpected_message", &ev[2]),
      KEEL_OK);
  cr_assert_eq(keel_tel_attach(A("gs_test"), ev, 3, on_event, NULL), KEEL_OK);
}

Test(gen_server_sys, GS11_GS12_trace_and_crash_report) {
  keel_heap_init(&theap);
  attach();
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    pthread_mutex_lock(&tmu);
    traced = 0;
    unexpected = 0;
    crash_meta = KEEL_NONE;
    pthread_mutex_unlock(&tmu);
    keel_heap h;
    keel_heap_init(&h);
    keel_term srv = start_list(c % 2);
    cr_assert_eq(keel_gen_server_trace(srv, true, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_server_cast(srv, A("secret")), KEEL_OK);
    wait_len(srv, 1);
    cr_assert_eq(keel_gen_server_trace(srv, false, TMO), KEEL_OK);
    /* no handle_info: a stray message is reported, then dropped */
    cr_assert_eq(keel_send(srv, A("stray")), KEEL_OK);
    cr_assert(wait_until(one_unexpected, NULL));
    pthread_mutex_lock(&tmu);
    long t = traced;
    pthread_mutex_unlock(&tmu);
    cr_assert_geq(t, 2); /* the cast and at least one 'len' call */
    keel_term r;
    cr_assert_eq(keel_gen_server_call(srv, A("crash"), TMO, &h, &r),
                 KEEL_ENOPROC);
    cr_assert_eq(r, A("crashed"));
    /* the report is emitted before the process dies, so it is there */
    pthread_mutex_lock(&tmu);
    keel_term cm = crash_meta;
    long t2 = traced;
    pthread_mutex_unlock(&tmu);
    cr_assert_eq(t2, t, "trace off still traces");
    cr_assert_neq(cm, KEEL_NONE);
    cr_assert_eq(keel_tuple_get(cm, 0), A("crashed"));
    cr_assert(
        keel_eq_exact(keel_tuple_get(cm, 1), keel_build(&h, "{items, 1}")));
    cr_assert_eq(keel_tuple_get(keel_tuple_get(cm, 2), 0), KEEL_ATOM(CALL));
    cr_assert_eq(keel_tuple_get(cm, 3), A("list_server"));
    /* clean stops make no report */
    pthread_mutex_lock(&tmu);
    crash_meta = KEEL_NONE;
    pthread_mutex_unlock(&tmu);
    srv = start_list(false);
    cr_assert_eq(
        keel_gen_server_stop(srv, keel_build(&h, "{shutdown, x}"), TMO),
        KEEL_OK);
    pthread_mutex_lock(&tmu);
    cr_assert_eq(crash_meta, KEEL_NONE);
    pthread_mutex_unlock(&tmu);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  cr_assert_eq(keel_tel_detach(A("gs_test")), KEEL_OK);
  keel_heap_destroy(&theap);
}

/* ---- code change --------------------------------------------------------- */

Test(gen_server_sys, GS10_change_code_swaps_the_module) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_term srv = start_list(c % 2);
    cr_assert_eq(keel_gen_server_cast(srv, A("a")), KEEL_OK);
    wait_len(srv, 1);
    cr_assert_eq(keel_gen_server_suspend(srv, TMO), KEEL_OK);
    /* refused by code_change: nothing changes */
    cr_assert_eq(keel_gen_server_change_code(srv, &lmod2, A("wrong"), TMO),
                 KEEL_EINVAL);
    cr_assert_eq(keel_gen_server_change_code(srv, &lmod2, A("upgrade"), TMO),
                 KEEL_OK);
    cr_assert_eq(keel_gen_server_resume(srv, TMO), KEEL_OK);
    cr_assert_eq(len(srv), 101);
    cr_assert_eq(keel_gen_server_change_code(srv, NULL, A("x"), TMO),
                 KEEL_EINVAL);
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- fiber server calling another server from a callback ----------------- */

Test(gen_server_sys, GS2_fiber_server_calls_from_a_callback) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term a = start_list(true), b = start_list(false);
    for (int i = 0; i < 4; i++)
      cr_assert_eq(keel_gen_server_cast(b, keel_small(i)), KEEL_OK);
    wait_len(b, 4);
    keel_term r;
    keel_term req = keel_tuple(&h, 2, A("call_other"), b);
    cr_assert_eq(keel_gen_server_call(a, req, TMO, &h, &r), KEEL_OK);
    cr_assert_eq(ival(r), 4);
    /* a handler server cannot block: the nested call is refused */
    req = keel_tuple(&h, 2, A("call_other"), a);
    cr_assert_eq(keel_gen_server_call(b, req, TMO, &h, &r), KEEL_OK);
    cr_assert_eq(ival(r), KEEL_ESTATE);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- forged requests: integers where C pointers are expected ------------- */

Test(gen_server_sys, forged_system_requests_are_refused) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term srv = start_list(c % 2);
    cr_assert_eq(keel_gen_server_cast(srv, A("a")), KEEL_OK);
    wait_len(srv, 1);
    const char *forged[] = {
        "{'$gen_system', {nobody, x}, {replace_state, 4096, []}}",
        "{'$gen_system', {nobody, x}, {change_code, 4096, x}}",
        "{'$gen_system', {nobody, x}, {replace_state, 1}}",
        "{'$gen_system', bad_from, what}",
        "{'$gen_call', bad_from, len}",
        "{'$gen_call', {1, 2}, len}",
    };
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++)
      cr_assert_eq(keel_send(srv, keel_build(&h, forged[i])), KEEL_OK);
    keel_term s;
    cr_assert_eq(keel_gen_server_get_state(srv, TMO, &h, &s), KEEL_OK);
    cr_assert(keel_eq_exact(s, keel_build(&h, "[a]")));
    cr_assert_eq(len(srv), 1);
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Many messages held while suspended (the heap is compacted while they are
 * replayed) are all handled, in order; the state keeps the messages
 * themselves (tuples with binaries), which the server owns. */
Test(gen_server_sys, GS12_resume_replays_a_long_backlog_in_order) {
  enum { N = 3000 };
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term srv = start_list(c % 2);
    cr_assert_eq(keel_gen_server_suspend(srv, TMO), KEEL_OK);
    for (int i = 0; i < N; i++)
      cr_assert_eq(keel_gen_server_cast(
                       srv, keel_build(&h, "{item, ~i, <<\"payload\">>}", i)),
                   KEEL_OK);
    cr_assert_eq(keel_gen_server_resume(srv, TMO), KEEL_OK);
    wait_len(srv, N);
    keel_term s;
    cr_assert_eq(keel_gen_server_get_state(srv, TMO, &h, &s), KEEL_OK);
    int64_t want = N - 1; /* newest first */
    for (; keel_is_cons(s); s = keel_tl(s), want--)
      cr_assert_eq(ival(keel_tuple_get(keel_hd(s), 1)), want);
    cr_assert_eq(want, -1);
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* sys:statistics and sys:log. Calls and casts from the test thread, in
 * order (a call answers after every earlier cast is handled). */
static keel_term stat_of(keel_term stats, const char *key) {
  for (keel_term l = stats; keel_is_cons(l); l = keel_tl(l))
    if (keel_tuple_get(keel_hd(l), 0) == A(key))
      return keel_tuple_get(keel_hd(l), 1);
  return KEEL_NONE;
}

Test(gen_server_sys, GS12_statistics_and_log) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term srv = start_list(c % 2), st, r;
    cr_assert_eq(keel_gen_server_get_statistics(srv, TMO, &h, &st),
                 KEEL_ENOENT);
    cr_assert_eq(keel_gen_server_cast(srv, A("before")), KEEL_OK);
    cr_assert_eq(keel_gen_server_statistics(srv, true, TMO), KEEL_OK);
    for (int i = 0; i < 2; i++)
      cr_assert_eq(keel_gen_server_cast(srv, keel_small(i)), KEEL_OK);
    for (int i = 0; i < 3; i++)
      cr_assert_eq(keel_gen_server_call(srv, A("len"), TMO, &h, &r), KEEL_OK);
    cr_assert_eq(keel_gen_server_get_statistics(srv, TMO, &h, &st), KEEL_OK);
    cr_assert_eq(ival(stat_of(st, "messages_in")), 5, "2 casts + 3 calls");
    cr_assert_eq(ival(stat_of(st, "messages_out")), 3, "3 replies");
    cr_assert_geq(ival(stat_of(st, "current_time")),
                  ival(stat_of(st, "start_time")));
    cr_assert_geq(ival(stat_of(st, "reductions")), 0);
    cr_assert_eq(keel_gen_server_statistics(srv, false, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_server_get_statistics(srv, TMO, &h, &st),
                 KEEL_ENOENT);
    /* the log keeps the last 3 events, oldest first */
    cr_assert_eq(keel_gen_server_get_log(srv, TMO, &h, &r), KEEL_ENOENT);
    cr_assert_eq(keel_gen_server_log(srv, 65, TMO), KEEL_EINVAL);
    cr_assert_eq(keel_gen_server_log(srv, 3, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_server_call(srv, A("len"), TMO, &h, &r), KEEL_OK);
    cr_assert_eq(keel_gen_server_cast(srv, A("x")), KEEL_OK);
    cr_assert_eq(keel_gen_server_call(srv, A("len"), TMO, &h, &r), KEEL_OK);
    cr_assert_eq(ival(r), 4); /* before, 0, 1, x */
    keel_term log;
    cr_assert_eq(keel_gen_server_get_log(srv, TMO, &h, &log), KEEL_OK);
    size_t n = 0;
    cr_assert_eq(keel_list_length(log, &n), KEEL_OK);
    cr_assert_eq(n, 3);
    keel_term e1 = keel_hd(log), e2 = keel_hd(keel_tl(log)),
              e3 = keel_hd(keel_tl(keel_tl(log)));
    /* ... {noreply, S} of the cast x, {in, len, From}, {out, 4, From} */
    cr_assert_eq(keel_tuple_get(e1, 0), A("noreply"));
    cr_assert_eq(keel_tuple_arity(e2), 3);
    cr_assert_eq(keel_tuple_get(e2, 0), A("in"));
    cr_assert_eq(keel_tuple_get(e2, 1), A("len"));
    cr_assert_eq(keel_tuple_get(e3, 0), A("out"));
    cr_assert_eq(ival(keel_tuple_get(e3, 1)), 4);
    cr_assert(keel_eq_exact(keel_tuple_get(e3, 2), keel_tuple_get(e2, 2)),
              "the reply goes to the caller of the request");
    cr_assert_eq(keel_gen_server_log(srv, 0, TMO), KEEL_OK);
    cr_assert_eq(keel_gen_server_get_log(srv, TMO, &h, &r), KEEL_ENOENT);
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
