/* gen_server: start (ok, ignore, stop, already_started, init timeout,
 * continue), call (reply, deferred reply, timeout with the late reply
 * dropped, dead server, server dying during the call, calling itself),
 * cast, handle_info, idle timeout, hibernation, stop with terminate,
 * terminate on the parent's exit. Every scenario runs with 1, 2 and 8
 * schedulers; the idle timeout also under simulation. Callers are the
 * test thread (a plain thread) and fiber processes. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "keel/gen_server.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

#define TMO 10000

static keel_term A(const char *s) {
  return keel_atom(s);
}

static bool is(keel_term t, const char *tag, size_t arity) {
  return keel_is_tuple(t) && keel_tuple_arity(t) == arity &&
         keel_tuple_get(t, 0) == A(tag);
}

static int64_t ival(keel_term t) {
  int64_t v = -1;
  (void)keel_get_int64(t, &v);
  return v;
}

/* ---- the test server ---------------------------------------------------
 * State {Count, Pending} where Pending is a held caller or 'none'.
 * init(Arg): Arg an integer: ok; ignore; {stop, R}; {error, R};
 * {continue, N};
 * {timeout, Ms}; {trap, N}: trap exits. */

static atomic_long terminated;      /* terminate calls */
static _Atomic keel_term last_term; /* last terminate reason (an atom) */
static atomic_long timeouts;        /* idle timeouts seen */

static keel_term st(keel_gen_server *gs, int64_t n, keel_term pending) {
  return keel_tuple(keel_gs_heap(gs), 2, keel_int(keel_gs_heap(gs), n),
                    pending);
}

static keel_gs_ret t_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  if (arg == KEEL_ATOM(IGNORE))
    return keel_gs_ignore(gs);
  if (is(arg, "stop", 2))
    return keel_gs_stop(gs, keel_tuple_get(arg, 1));
  if (is(arg, "error", 2))
    return keel_gs_init_error(gs, keel_tuple_get(arg, 1));
  if (is(arg, "continue", 2)) {
    *s = st(gs, 0, A("none"));
    keel_gs_continue(gs, keel_tuple_get(arg, 1));
    return keel_gs_ok(gs);
  }
  if (is(arg, "timeout", 2)) {
    *s = st(gs, 0, A("none"));
    keel_gs_timeout(gs, ival(keel_tuple_get(arg, 1)));
    return keel_gs_ok(gs);
  }
  if (is(arg, "trap", 2)) {
    (void)keel_trap_exit(keel_gs_proc(gs), true);
    arg = keel_tuple_get(arg, 1);
  }
  *s = st(gs, ival(arg), A("none"));
  return keel_gs_ok(gs);
}

static keel_gs_ret t_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  int64_t n = ival(keel_tuple_get(*s, 0));
  if (req == A("get"))
    return keel_gs_reply(gs, keel_tuple_get(*s, 0));
  if (is(req, "add", 2)) {
    *s = st(gs, n + ival(keel_tuple_get(req, 1)), keel_tuple_get(*s, 1));
    return keel_gs_reply(gs, keel_tuple_get(*s, 0));
  }
  if (req == A("hold")) { /* deferred: answered by the cast 'release' */
    *s = st(gs, n, keel_term_copy(keel_gs_heap(gs), from));
    return keel_gs_ok(gs);
  }
  if (req == A("die"))
    return keel_gs_stop(gs, A("died"));
  if (req == A("stop_reply"))
    return keel_gs_stop_reply(gs, KEEL_ATOM(NORMAL), A("bye"));
  if (req == A("hibernate")) {
    keel_gs_hibernate(gs);
    return keel_gs_reply(gs, KEEL_ATOM(OK));
  }
  if (req == A("self")) { /* a call to itself */
    keel_term r;
    int rc = keel_gen_server_call(keel_gs_self(gs), A("get"), 100,
                                  keel_gs_heap(gs), &r);
    return keel_gs_reply(gs,
                         keel_tuple(keel_gs_heap(gs), 2, keel_small(rc), r));
  }
  return keel_gs_reply(gs, A("unknown"));
}

static keel_gs_ret t_cast(keel_gen_server *gs, keel_term msg, keel_term *s) {
  int64_t n = ival(keel_tuple_get(*s, 0));
  if (is(msg, "add", 2))
    *s = st(gs, n + ival(keel_tuple_get(msg, 1)), keel_tuple_get(*s, 1));
  else if (msg == A("release") && keel_tuple_get(*s, 1) != A("none")) {
    (void)keel_gen_server_reply(keel_tuple_get(*s, 1), keel_tuple_get(*s, 0));
    *s = st(gs, n, A("none"));
  }
  return keel_gs_ok(gs);
}

static keel_gs_ret t_info(keel_gen_server *gs, keel_term msg, keel_term *s) {
  int64_t n = ival(keel_tuple_get(*s, 0));
  if (msg == KEEL_ATOM(TIMEOUT) && keel_gs_timed_out(gs)) {
    atomic_fetch_add(&timeouts, 1);
    signal_event();
    return keel_gs_ok(gs);
  }
  if (is(msg, "EXIT", 3)) /* an exit from a non-parent */
    return keel_gs_ok(gs);
  *s = st(gs, n + 1000, keel_tuple_get(*s, 1)); /* any other message */
  return keel_gs_ok(gs);
}

static keel_gs_ret t_continue(keel_gen_server *gs, keel_term c, keel_term *s) {
  *s = st(gs, ival(c), keel_tuple_get(*s, 1));
  return keel_gs_ok(gs);
}

static void t_terminate(keel_gen_server *gs, keel_term reason, keel_term s) {
  (void)gs;
  (void)s;
  atomic_store(&last_term, keel_is_atom(reason) ? reason : A("other"));
  atomic_fetch_add(&terminated, 1);
  signal_event();
}

static const keel_gen_server_module tmod = {
    .version = KEEL_GEN_SERVER_MODULE_V1,
    .name = "test_server",
    .init = t_init,
    .handle_call = t_call,
    .handle_cast = t_cast,
    .handle_info = t_info,
    .handle_continue = t_continue,
    .terminate = t_terminate,
};

static void start(unsigned n) {
  start_node(n, 0);
  atomic_store(&terminated, 0);
  atomic_store(&timeouts, 0);
  atomic_store(&last_term, KEEL_NONE);
}

static keel_term start_ok(keel_term arg, const keel_gen_server_opts *o) {
  keel_term pid = KEEL_NONE;
  cr_assert_eq(keel_gen_server_start(&tmod, arg, o, &pid), KEEL_OK);
  cr_assert(keel_is_local_pid(pid));
  return pid;
}

static int64_t call_int(keel_term srv, keel_term req) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term r;
  cr_assert_eq(keel_gen_server_call(srv, req, TMO, &h, &r), KEEL_OK);
  int64_t v = ival(r);
  keel_heap_destroy(&h);
  return v;
}

static bool proc_gone(void *arg) {
  keel_process_info_t pi;
  return keel_process_info(*(keel_term *)arg, &pi) == KEEL_ENOPROC;
}

/* ---- start and call from a plain thread ---------------------------------- */

Test(gen_server, GS1_GS2_GS4_GS5_call_cast_info_from_a_thread) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    for (int fiber = 0; fiber < 2; fiber++) {
      keel_gen_server_opts o = {.fiber = fiber};
      keel_term srv = start_ok(keel_small(5), &o);
      int64_t model = 5;
      for (int i = 1; i <= 50; i++) {
        model += i;
        cr_assert_eq(call_int(srv, keel_build(&h, "{add, ~i}", i)), model);
      }
      for (int i = 1; i <= 50; i++) {
        cr_assert_eq(keel_gen_server_cast(srv, keel_build(&h, "{add, ~i}", i)),
                     KEEL_OK);
        model += i;
      }
      cr_assert_eq(keel_send(srv, A("hello")), KEEL_OK);
      model += 1000;
      /* cast and info come from this thread's proxies, in their own
       * order relative to the next call's proxy: a call after them sees
       * them only if they arrived; poll with calls until it does. */
      int64_t got = 0;
      for (int k = 0; k < 100000 && got != model; k++)
        got = call_int(srv, A("get"));
      cr_assert_eq(got, model);
      cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
      cr_assert(wait_until(proc_gone, &srv));
    }
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_server, GS1_init_results_and_names) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_term reason = KEEL_NONE, pid = KEEL_NONE;
    keel_gen_server_opts o = {.reason_heap = &h, .reason = &reason};
    cr_assert_eq(keel_gen_server_start(&tmod, KEEL_ATOM(IGNORE), &o, &pid),
                 KEEL_GEN_SERVER_IGNORED);
    cr_assert_eq(
        keel_gen_server_start(&tmod, keel_build(&h, "{stop, bad}"), &o, &pid),
        KEEL_ENOPROC);
    cr_assert_eq(reason, A("bad"));
    /* a name, taken twice */
    o.name = A("gs_named");
    keel_term p1 = start_ok(keel_small(1), &o);
    cr_assert_eq(keel_whereis(A("gs_named")), p1);
    cr_assert_eq(keel_gen_server_start(&tmod, keel_small(2), &o, &pid),
                 KEEL_EEXIST);
    cr_assert_eq(pid, p1);
    cr_assert_eq(call_int(A("gs_named"), A("get")), 1);
    cr_assert_eq(keel_gen_server_stop(A("gs_named"), KEEL_ATOM(NORMAL), TMO),
                 KEEL_OK);
    /* a failing init releases the name before the start returns */
    for (int i = 0; i < 20; i++) {
      cr_assert_eq(
          keel_gen_server_start(&tmod, keel_build(&h, "{stop, x}"), &o, &pid),
          KEEL_ENOPROC);
      cr_assert_eq(keel_whereis(A("gs_named")), KEEL_ATOM(UNDEFINED));
    }
    keel_term p2 = start_ok(keel_small(3), &o);
    cr_assert_eq(call_int(A("gs_named"), A("get")), 3);
    cr_assert_eq(keel_gen_server_stop(p2, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    /* bad arguments */
    cr_assert_eq(keel_gen_server_start(NULL, keel_small(1), NULL, &pid),
                 KEEL_EINVAL);
    keel_gen_server_module bad = tmod;
    bad.version = 99;
    cr_assert_eq(keel_gen_server_start(&bad, keel_small(1), NULL, &pid),
                 KEEL_EINVAL);
    keel_gen_server_opts bo = {.name = keel_small(1)};
    cr_assert_eq(keel_gen_server_start(&tmod, keel_small(1), &bo, &pid),
                 KEEL_EINVAL);
    keel_term mref; /* start_monitor needs a process to own the monitor */
    keel_gen_server_opts mo = {.monitor_ref = &mref, .monitor_heap = &h};
    cr_assert_eq(keel_gen_server_start(&tmod, keel_small(1), &mo, &pid),
                 KEEL_ESTATE);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- init timeout: a fiber server whose init waits forever --------------- */

static keel_gs_ret slow_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  (void)arg;
  keel_term m;
  (void)keel_receive(keel_gs_proc(gs), NULL, NULL, KEEL_INFINITY, &m);
  *s = KEEL_ATOM(OK);
  return keel_gs_ok(gs);
}

Test(gen_server, GS1_init_timeout_kills_the_server) {
  static const keel_gen_server_module slow = {
      .version = KEEL_GEN_SERVER_MODULE_V1, .init = slow_init};
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_term reason = KEEL_NONE, pid = KEEL_NONE;
    keel_gen_server_opts o = {.fiber = true,
                              .timeout_ms = 30,
                              .name = A("slow"),
                              .reason_heap = &h,
                              .reason = &reason};
    cr_assert_eq(keel_gen_server_start(&slow, keel_small(0), &o, &pid),
                 KEEL_ETIMEDOUT);
    cr_assert_eq(reason, KEEL_ATOM(TIMEOUT));
    keel_term name = A("slow");
    keel_term w = keel_whereis(name);
    if (keel_is_local_pid(w))
      cr_assert(wait_until(proc_gone, &w));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- call errors --------------------------------------------------------- */

Test(gen_server, GS2_call_errors_dead_dying_self_and_timeout) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    keel_term r;
    cr_assert_eq(keel_gen_server_call(A("nobody"), A("get"), TMO, &h, &r),
                 KEEL_ENOPROC);
    cr_assert_eq(r, KEEL_ATOM(NOPROC));
    keel_term srv = start_ok(keel_small(0), NULL);
    cr_assert_eq(keel_gen_server_call(srv, A("die"), TMO, &h, &r),
                 KEEL_ENOPROC);
    cr_assert_eq(r, A("died"));
    cr_assert_eq(atomic_load(&last_term), A("died"));
    cr_assert_eq(keel_gen_server_call(srv, A("get"), TMO, &h, &r),
                 KEEL_ENOPROC);
    cr_assert_eq(r, KEEL_ATOM(NOPROC));
    /* stop with a reply: the reply arrives */
    srv = start_ok(keel_small(0), NULL);
    cr_assert_eq(keel_gen_server_call(srv, A("stop_reply"), TMO, &h, &r),
                 KEEL_OK);
    cr_assert_eq(r, A("bye"));
    cr_assert(wait_until(proc_gone, &srv));
    /* a fiber server calling itself */
    keel_gen_server_opts fo = {.fiber = true};
    srv = start_ok(keel_small(0), &fo);
    cr_assert_eq(keel_gen_server_call(srv, A("self"), TMO, &h, &r), KEEL_OK);
    cr_assert_eq(ival(keel_tuple_get(r, 0)), KEEL_ESTATE);
    cr_assert_eq(keel_tuple_get(r, 1), A("calling_self"));
    /* timeout: the held call is never answered in time */
    cr_assert_eq(keel_gen_server_call(srv, A("hold"), 20, &h, &r),
                 KEEL_ETIMEDOUT);
    cr_assert_eq(r, KEEL_ATOM(TIMEOUT));
    cr_assert_eq(keel_gen_server_cast(srv, A("release")), KEEL_OK);
    cr_assert_eq(call_int(srv, A("get")), 0);
    cr_assert_eq(keel_gen_server_call(srv, A("x"), -5, &h, &r), KEEL_EINVAL);
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(SHUTDOWN), TMO), KEEL_OK);
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(SHUTDOWN), TMO),
                 KEEL_ENOPROC);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- a fiber client: deferred reply, late reply dropped, O(1) mailbox ---- */

#define BACKLOG 5000

typedef struct client {
  keel_term srv;
  atomic_int step; /* last step passed */
  atomic_size_t queue_left;
} client;

/* Receives {'DOWN', Ref, process, _, bye} within TMO. */
static int receive_down(keel_proc *self, keel_term ref) {
  keel_pattern *p;
  int rc = keel_pattern_compile(&p, "{'DOWN', ~t, process, _, bye}", ref);
  if (rc != KEEL_OK)
    return rc;
  keel_term m;
  rc = keel_receive_pattern(self, p, TMO, &m, NULL);
  keel_pattern_free(p);
  return rc;
}

static void client_main(keel_proc *self, void *arg) {
  client *cl = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term r;
  /* 1. deferred reply: held, then released by a cast from here */
  keel_term req;
  if (keel_gen_server_send_request(cl->srv, A("hold"), &h, &req) != KEEL_OK)
    goto out;
  (void)keel_gen_server_cast(cl->srv, keel_build(&h, "{add, 7}"));
  (void)keel_gen_server_cast(cl->srv, A("release"));
  if (keel_gen_server_receive_response(req, TMO, &h, &r) != KEEL_OK ||
      ival(r) != 7)
    goto out;
  /* 0. start_monitor: the monitor outlives the start and sees the end */
  keel_term mref = KEEL_NONE, mon_srv;
  keel_gen_server_opts mo = {.monitor_ref = &mref, .monitor_heap = &h};
  if (keel_gen_server_start(&tmod, keel_small(0), &mo, &mon_srv) != KEEL_OK ||
      keel_gen_server_stop(mon_srv, A("bye"), TMO) != KEEL_OK ||
      receive_down(self, mref) != KEEL_OK)
    goto out;
  atomic_store(&cl->step, 1);
  /* 1b. wait_response keeps the request on timeout */
  if (keel_gen_server_send_request(cl->srv, A("hold"), &h, &req) != KEEL_OK ||
      keel_gen_server_wait_response(req, 10, &h, &r) != KEEL_ETIMEDOUT)
    goto out;
  (void)keel_gen_server_cast(cl->srv, A("release"));
  if (keel_gen_server_wait_response(req, TMO, &h, &r) != KEEL_OK ||
      ival(r) != 7)
    goto out;
  /* 2. a timed-out call whose late reply must never reach us, made past
   * a backlog of BACKLOG unrelated messages that must stay queued */
  for (int i = 0; i < BACKLOG; i++)
    (void)keel_send(keel_self(self), keel_small(i));
  if (keel_gen_server_call(cl->srv, A("hold"), 10, &h, &r) != KEEL_ETIMEDOUT)
    goto out;
  (void)keel_gen_server_cast(cl->srv, A("release"));
  if (keel_gen_server_call(cl->srv, A("get"), TMO, &h, &r) != KEEL_OK ||
      ival(r) != 7)
    goto out;
  atomic_store(&cl->step, 2);
  keel_process_info_t pi;
  if (keel_process_info(keel_self(self), &pi) == KEEL_OK)
    atomic_store(&cl->queue_left, pi.message_queue_len);
out:
  keel_heap_destroy(&h);
  signal_event();
}

/* init's {error, R} (OTP 26): the start fails with R as for {stop, R},
 * but the server ends with reason normal: no terminate, the linked
 * (non-trapping) starter lives on, the start monitor sees normal. */
typedef struct init_error_run {
  _Atomic keel_term reason, down;
  atomic_int rc;
} init_error_run;

static void init_error_main(keel_proc *self, void *arg) {
  init_error_run *r = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term reason = KEEL_NONE, mref = KEEL_NONE, pid, m;
  keel_gen_server_opts o = {.link = true,
                            .monitor_ref = &mref,
                            .monitor_heap = &h,
                            .reason_heap = &h,
                            .reason = &reason};
  atomic_store(&r->rc, keel_gen_server_start(
                           &tmod, keel_build(&h, "{error, nope}"), &o, &pid));
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

Test(gen_server, GS1_init_error_fails_the_start_and_exits_normally) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    long before = atomic_load(&terminated);
    init_error_run r = {0};
    cr_assert_eq(keel_spawn_fiber(init_error_main, &r, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "the starter survived (%u)", sched_counts[c]);
    cr_assert_eq(atomic_load(&r.rc), KEEL_ENOPROC);
    cr_assert_eq(atomic_load(&r.reason), A("nope"));
    cr_assert_eq(atomic_load(&r.down), KEEL_ATOM(NORMAL));
    cr_assert_eq(atomic_load(&terminated), before, "no terminate");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_server, GS2_GS3_GS13_fiber_client_deferred_and_late_reply) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    client cl = {.srv = start_ok(keel_small(0), NULL)};
    atomic_store(&cl.queue_left, 99);
    cr_assert_eq(keel_spawn_fiber(client_main, &cl, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(2)); /* the monitored server's terminate, the end */
    cr_assert_eq(atomic_load(&cl.step), 2);
    cr_assert_eq(atomic_load(&cl.queue_left), BACKLOG,
                 "a late reply got through, or the backlog was touched");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- send_request / check_response from a handler process ---------------- */

typedef struct hclient {
  keel_term srv, req;
  keel_heap h;
  atomic_long answer;
} hclient;

static keel_handler_status hclient_fn(keel_proc *self, keel_term msg,
                                      void *state) {
  hclient *hc = state;
  if (msg == A("go")) {
    /* blocking calls are refused in a handler; start is asynchronous
     * there, and our later request arrives after its init message */
    keel_term r;
    if (keel_gen_server_call(hc->srv, A("get"), TMO, &hc->h, &r) != KEEL_ESTATE)
      return keel_stop(self, A("call_accepted"));
    keel_gen_server_opts o = {.link = true};
    if (keel_gen_server_start(&tmod, keel_small(10), &o, &hc->srv) != KEEL_OK)
      return keel_stop(self, A("start"));
    if (keel_gen_server_send_request(hc->srv, keel_build(&hc->h, "{add, 3}"),
                                     &hc->h, &hc->req) != KEEL_OK)
      return keel_stop(self, A("send_request"));
    return KEEL_CONTINUE;
  }
  keel_term r;
  int rc = keel_gen_server_check_response(msg, hc->req, &hc->h, &r);
  if (rc == KEEL_OK) {
    atomic_store(&hc->answer, ival(r));
    signal_event();
  }
  return KEEL_CONTINUE;
}

Test(gen_server, GS13_handler_send_request_check_response) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    hclient hc = {.srv = A("nobody")};
    keel_heap_init(&hc.h);
    keel_term pid;
    cr_assert_eq(keel_spawn(hclient_fn, &hc, NULL, &pid), KEEL_OK);
    cr_assert_eq(keel_send(pid, A("go")), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(atomic_load(&hc.answer), 13);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    keel_heap_destroy(&hc.h);
  }
}

/* ---- continue, idle timeout, hibernation --------------------------------- */

Test(gen_server, GS8_continue_runs_before_any_call) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    for (int i = 0; i < 20; i++) {
      keel_term srv = start_ok(keel_build(&h, "{continue, 42}"), NULL);
      cr_assert_eq(call_int(srv, A("get")), 42);
      cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    }
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

static void idle_timeout_case(bool fiber) {
  keel_heap h;
  keel_heap_init(&h);
  keel_gen_server_opts o = {.fiber = fiber};
  keel_term srv = start_ok(keel_build(&h, "{timeout, 30}"), &o);
  cr_assert(wait_events(1));
  cr_assert_eq(atomic_load(&timeouts), 1);
  /* no further timeout is armed by a plain ok */
  cr_assert_eq(call_int(srv, A("get")), 0);
  cr_assert_eq(atomic_load(&timeouts), 1);
  keel_heap_destroy(&h);
}

Test(gen_server, GS6_idle_timeout) {
  for (size_t c = 0; c < NCONF; c++) {
    for (int fiber = 0; fiber < 2; fiber++) {
      start(sched_counts[c]);
      idle_timeout_case(fiber);
      cr_assert_eq(keel_node_stop(), KEEL_OK);
    }
  }
}

/* Under simulation: a fiber client sees the timeout in virtual time. */
static void sim_client(keel_proc *self, void *arg) {
  (void)self;
  keel_heap h;
  keel_heap_init(&h);
  keel_term pid;
  keel_gen_server_opts o = {.fiber = *(int *)arg};
  if (keel_gen_server_start(&tmod, keel_build(&h, "{timeout, 1000}"), &o,
                            &pid) == KEEL_OK)
    signal_event();
  keel_heap_destroy(&h);
}

Test(gen_server, GS6_idle_timeout_simulated) {
  for (uint64_t s = sim_seed_first(), k = 0; k < sim_seed_count(); k++, s++) {
    for (int fiber = 0; fiber < 2; fiber++) {
      start_sim(s);
      atomic_store(&timeouts, 0);
      cr_assert_eq(keel_spawn_fiber(sim_client, &fiber, NULL, NULL), KEEL_OK);
      cr_assert(wait_events(2), "seed %llu", (unsigned long long)s);
      cr_assert_eq(atomic_load(&timeouts), 1);
      stop_sim();
    }
  }
}

/* The driving thread of a simulation calls like any plain thread: its
 * blocking calls drive the simulation while they wait. */
Test(gen_server, GS2_calls_from_the_driving_thread_simulated) {
  for (uint64_t s = sim_seed_first(), k = 0; k < sim_seed_count(); k++, s++) {
    start_sim(s);
    keel_heap h;
    keel_heap_init(&h);
    keel_gen_server_opts o = {.fiber = s % 2};
    keel_term srv = start_ok(keel_small(4), &o), r;
    cr_assert_eq(call_int(srv, keel_build(&h, "{add, 3}")), 7);
    uint64_t t0 = keel_sim_time_ms();
    cr_assert_eq(keel_gen_server_call(srv, A("hold"), 5000, &h, &r),
                 KEEL_ETIMEDOUT, "seed %llu", (unsigned long long)s);
    cr_assert_geq(keel_sim_time_ms() - t0, 5000);
    cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    keel_heap_destroy(&h);
    stop_sim();
  }
}

Test(gen_server, GS7_hibernate_keeps_the_state) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    keel_heap h;
    keel_heap_init(&h);
    for (int fiber = 0; fiber < 2; fiber++) {
      keel_gen_server_opts o = {.fiber = fiber, .hibernate_after_ms = 5};
      keel_term srv = start_ok(keel_small(1), &o);
      int64_t model = 1;
      for (int i = 0; i < 2000; i++) { /* garbage that compaction drops */
        model += i;
        cr_assert_eq(call_int(srv, keel_build(&h, "{add, ~i}", i)), model);
      }
      keel_process_info_t before, after;
      cr_assert_eq(keel_process_info(srv, &before), KEEL_OK);
      keel_term r;
      cr_assert_eq(keel_gen_server_call(srv, A("hibernate"), TMO, &h, &r),
                   KEEL_OK);
      cr_assert_eq(r, KEEL_ATOM(OK));
      cr_assert_eq(call_int(srv, A("get")), model);
      cr_assert_eq(keel_process_info(srv, &after), KEEL_OK);
      cr_assert_leq(after.heap_bytes, before.heap_bytes);
      cr_assert_eq(keel_gen_server_stop(srv, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    }
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- terminate ----------------------------------------------------------- */

typedef struct parent {
  keel_term srv;
  int trap;
} parent;

/* Starts a linked server, then exits with 'boom'. */
static void parent_main(keel_proc *self, void *arg) {
  parent *p = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_gen_server_opts o = {.link = true, .trap_exit = p->trap == 2};
  keel_term init = p->trap == 1 ? keel_build(&h, "{trap, 0}") : keel_small(0);
  if (keel_gen_server_start(&tmod, init, &o, &p->srv) == KEEL_OK)
    signal_event();
  keel_heap_destroy(&h);
  (void)keel_stop(self, A("boom"));
}

Test(gen_server, GS9_terminate_on_stop_and_on_parent_exit_when_trapping) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    keel_term srv = start_ok(keel_small(0), NULL);
    cr_assert_eq(keel_gen_server_stop(srv, A("bye"), TMO), KEEL_OK);
    cr_assert_eq(atomic_load(&terminated), 1);
    cr_assert_eq(atomic_load(&last_term), A("bye"));
    /* trapping: terminate(boom) */
    parent p = {.trap = 1};
    cr_assert_eq(keel_spawn_fiber(parent_main, &p, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(3)); /* stop's terminate, start, terminate */
    cr_assert_eq(atomic_load(&last_term), A("boom"));
    cr_assert(wait_until(proc_gone, &p.srv));
    /* the trap_exit start option does the same */
    atomic_store(&last_term, KEEL_NONE);
    parent p2 = {.trap = 2};
    cr_assert_eq(keel_spawn_fiber(parent_main, &p2, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(5));
    cr_assert_eq(atomic_load(&last_term), A("boom"));
    /* not trapping: the server dies with boom without terminate */
    parent q = {.trap = 0};
    cr_assert_eq(keel_spawn_fiber(parent_main, &q, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(6));
    cr_assert(wait_until(proc_gone, &q.srv));
    cr_assert_eq(atomic_load(&terminated), 3);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- enter_loop ---------------------------------------------------------- */

static void looper(keel_proc *self, void *arg) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term st0 = keel_build(&h, "{7, none}");
  int rc = keel_gen_server_enter_loop(self, &tmod, st0, NULL);
  keel_heap_destroy(&h);
  *(int *)arg = rc;
  signal_event();
}

Test(gen_server, GS15_enter_loop) {
  for (size_t c = 0; c < NCONF; c++) {
    start(sched_counts[c]);
    int rc = 99;
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(looper, &rc, NULL, &pid), KEEL_OK);
    cr_assert_eq(call_int(pid, A("get")), 7);
    keel_heap h;
    keel_heap_init(&h);
    cr_assert_eq(call_int(pid, keel_build(&h, "{add, 2}")), 9);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_gen_server_stop(pid, A("done"), TMO), KEEL_OK);
    cr_assert(wait_events(2)); /* terminate, then the fiber's return */
    cr_assert_eq(rc, KEEL_OK);
    cr_assert_eq(atomic_load(&last_term), A("done"));
    cr_assert_eq(keel_gen_server_enter_loop(NULL, &tmod, KEEL_NIL, NULL),
                 KEEL_ESTATE);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
