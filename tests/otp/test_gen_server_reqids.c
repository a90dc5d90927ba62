/* gen_server request-id collections (OTP 25's reqids_* and the
 * collection forms of send_request, receive_response, wait_response and
 * check_response), ported from the intent of gen_server_SUITE's
 * reqids cases: labels come back with their answers, a dead server's
 * 'DOWN' is an answer, receive_response abandons everything on timeout
 * (no late reply reaches the mailbox), wait_response keeps it, delete
 * false keeps the entry, an empty collection is no_request. Each runs
 * with 1, 2 and 8 schedulers from a fiber process. */
#include <criterion/criterion.h>
#include <stdatomic.h>

#include "keel/gen_server.h"
#include "runtime/rt_test.h"

#define TMO 10000

static keel_term A(const char *s) {
  return keel_atom(s);
}

/* The server: state {N, Held}; get -> N; crash -> stops with boom;
 * hold -> no answer until the cast release. */
static keel_gs_ret r_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  *s = keel_tuple(keel_gs_heap(gs), 2, arg, A("none"));
  return keel_gs_ok(gs);
}

static keel_gs_ret r_call(keel_gen_server *gs, keel_term req, keel_term from,
                          keel_term *s) {
  if (req == A("crash"))
    return keel_gs_stop(gs, A("boom"));
  if (req == A("hold")) {
    *s = keel_tuple(keel_gs_heap(gs), 2, keel_tuple_get(*s, 0), from);
    return keel_gs_ok(gs);
  }
  return keel_gs_reply(gs, keel_tuple_get(*s, 0));
}

static keel_gs_ret r_cast(keel_gen_server *gs, keel_term msg, keel_term *s) {
  keel_term held = keel_tuple_get(*s, 1);
  if (msg == A("release") && held != A("none")) {
    (void)keel_gen_server_reply(held, A("late"));
    *s = keel_tuple(keel_gs_heap(gs), 2, keel_tuple_get(*s, 0), A("none"));
  }
  return keel_gs_ok(gs);
}

static const keel_gen_server_module rmod = {.version =
                                                KEEL_GEN_SERVER_MODULE_V1,
                                            .name = "reqids_server",
                                            .init = r_init,
                                            .handle_call = r_call,
                                            .handle_cast = r_cast};

static atomic_long bad;

static void check(bool ok, long bit) {
  if (!ok)
    atomic_fetch_or(&bad, bit);
}

static keel_term start_server(int n) {
  keel_term pid = KEEL_NONE;
  check(keel_gen_server_start(&rmod, keel_small(n), NULL, &pid) == KEEL_OK, 1);
  return pid;
}

/* Answers of three requests come back with their labels, whatever the
 * order: the first one added is answered last (held until a cast), the
 * crashed server's answer is its exit reason. */
static void labels_and_down(keel_gen_server_reqids *c, keel_heap *h,
                            keel_term s1, keel_term s2, keel_term s3) {
  check(keel_gen_server_send_request_to(s1, A("hold"), A("a"), c) == KEEL_OK,
        2);
  check(keel_gen_server_send_request_to(s2, A("get"), A("b"), c) == KEEL_OK, 2);
  check(keel_gen_server_send_request_to(s3, A("crash"), A("c"), c) == KEEL_OK,
        2);
  check(keel_gen_server_reqids_size(c) == 3, 4);
  keel_term l;
  check(keel_gen_server_reqids_to_list(c, h, &l) == KEEL_OK, 8);
  for (int i = 0; i < 3; i++, l = keel_tl(l)) /* in the order added */
    check(keel_is_cons(l) && keel_tuple_get(keel_hd(l), 1) == A(i == 0   ? "a"
                                                                : i == 1 ? "b"
                                                                         : "c"),
          8);
  int seen = 0;
  for (int i = 0; i < 3; i++) {
    if (i == 2) /* b and c are in: now a */
      (void)keel_gen_server_cast(s1, A("release"));
    keel_term r, lab;
    int rc = keel_gen_server_receive_response_in(c, TMO, true, h, &r, &lab);
    if (lab == A("a") && rc == KEEL_OK && r == A("late") && i == 2)
      seen |= 1;
    else if (lab == A("b") && rc == KEEL_OK && r == keel_small(2))
      seen |= 2;
    else if (lab == A("c") && rc == KEEL_ENOPROC && r == A("boom"))
      seen |= 4;
  }
  check(seen == 7, 16);
  check(keel_gen_server_reqids_size(c) == 0, 32);
}

/* wait_response keeps a request on timeout; receive_response abandons
 * it, and its late reply never arrives. */
static void timeouts(keel_proc *self, keel_gen_server_reqids *c, keel_heap *h,
                     keel_term s1) {
  keel_term r, lab, m;
  check(keel_gen_server_send_request_to(s1, A("hold"), A("h"), c) == KEEL_OK,
        64);
  check(keel_gen_server_wait_response_in(c, 10, true, h, &r, &lab) ==
            KEEL_ETIMEDOUT,
        128);
  check(keel_gen_server_reqids_size(c) == 1, 128);
  check(keel_gen_server_receive_response_in(c, 10, true, h, &r, &lab) ==
            KEEL_ETIMEDOUT,
        256);
  check(keel_gen_server_reqids_size(c) == 0, 256);
  (void)keel_gen_server_cast(s1, A("release"));
  /* The release is handled before this call: a late reply would be
   * queued ahead of the call's answer. */
  check(keel_gen_server_call(s1, A("get"), TMO, h, &r) == KEEL_OK, 512);
  check(keel_receive(self, NULL, NULL, 0, &m) == KEEL_ETIMEDOUT, 1024);
  check(keel_gen_server_receive_response_in(c, 10, true, h, &r, &lab) ==
            KEEL_ENOENT,
        2048);
}

/* check_response on messages a handler would get; delete false keeps
 * the entry. */
static void checks(keel_proc *self, keel_gen_server_reqids *c, keel_heap *h,
                   keel_term s2) {
  keel_term r, lab, m;
  check(keel_gen_server_check_response_in(A("x"), c, true, h, &r, &lab) ==
            KEEL_ENOENT,
        4096);
  check(keel_gen_server_send_request_to(s2, A("get"), A("x"), c) == KEEL_OK,
        4096);
  check(keel_gen_server_check_response_in(A("other"), c, true, h, &r, &lab) ==
            KEEL_ENOMATCH,
        8192);
  check(keel_receive(self, NULL, NULL, TMO, &m) == KEEL_OK, 8192);
  check(keel_gen_server_check_response_in(m, c, false, h, &r, &lab) == KEEL_OK,
        16384);
  check(r == keel_small(2) && lab == A("x"), 16384);
  check(keel_gen_server_reqids_size(c) == 1, 32768);
  keel_term l;
  check(keel_gen_server_reqids_to_list(c, h, &l) == KEEL_OK && keel_is_cons(l),
        32768);
  check(keel_gen_server_reqids_add(c, keel_tuple_get(keel_hd(l), 0), A("y")) ==
            KEEL_EEXIST,
        65536);
  check(keel_gen_server_reqids_add(c, keel_small(1), A("y")) == KEEL_EINVAL,
        65536);
}

static void scenario(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_gen_server_reqids *c = keel_gen_server_reqids_new();
  check(c != NULL, 1);
  if (c != NULL) {
    keel_term r, lab;
    check(keel_gen_server_receive_response_in(c, 0, true, &h, &r, &lab) ==
              KEEL_ENOENT,
          1);
    keel_term s1 = start_server(1), s2 = start_server(2), s3 = start_server(3);
    labels_and_down(c, &h, s1, s2, s3);
    timeouts(self, c, &h, s1);
    checks(self, c, &h, s2);
    keel_gen_server_reqids_free(c);
  }
  keel_heap_destroy(&h);
  signal_event();
}

Test(gen_server_reqids, labels_down_timeouts_and_checks) {
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    atomic_store(&bad, 0);
    cr_assert_eq(keel_spawn_fiber(scenario, NULL, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1), "scenario ended (%u)", sched_counts[i]);
    cr_assert_eq(atomic_load(&bad), 0, "violations %#lx (%u schedulers)",
                 atomic_load(&bad), sched_counts[i]);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(gen_server_reqids, bad_arguments_and_outside_a_fiber) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term r, lab;
  cr_assert_eq(keel_gen_server_reqids_size(NULL), 0);
  cr_assert_eq(keel_gen_server_reqids_add(NULL, KEEL_NIL, A("l")), KEEL_EINVAL);
  keel_gen_server_reqids *c = keel_gen_server_reqids_new();
  cr_assert_not_null(c);
  cr_assert_eq(keel_gen_server_send_request_to(A("x"), A("get"), KEEL_NONE, c),
               KEEL_EINVAL);
  cr_assert_eq(
      keel_gen_server_check_response_in(KEEL_NONE, c, true, &h, &r, &lab),
      KEEL_EINVAL);
  cr_assert_eq(keel_gen_server_receive_response_in(c, 0, true, &h, &r, &lab),
               KEEL_ESTATE);
  cr_assert_eq(keel_gen_server_reqids_to_list(c, NULL, &r), KEEL_EINVAL);
  keel_gen_server_reqids_free(c);
  keel_gen_server_reqids_free(NULL);
  keel_heap_destroy(&h);
}
