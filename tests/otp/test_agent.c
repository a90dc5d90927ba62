/* Agent: start with a function, get, update, get_and_update and cast run
 * inside the agent; concurrent get_and_update from many fibers loses no
 * update; a failing init and a dead agent. Every scenario runs with 1, 2
 * and 8 schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "keel/agent.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

#define TMO 10000

static int64_t ival(keel_term t) {
  int64_t v = -1;
  (void)keel_get_int64(t, &v);
  return v;
}

static keel_term init_n(keel_heap *h, keel_term s, void *arg) {
  (void)s;
  return keel_int(h, *(const int64_t *)arg);
}

static keel_term init_fail(keel_heap *h, keel_term s, void *arg) {
  (void)h;
  (void)s;
  (void)arg;
  return KEEL_NONE;
}

static keel_term get_id(keel_heap *h, keel_term s, void *arg) {
  (void)h;
  (void)arg;
  return s;
}

static keel_term add(keel_heap *h, keel_term s, void *arg) {
  return keel_int(h, ival(s) + *(const int64_t *)arg);
}

/* Returns the old value, stores old + 1. */
static keel_term incr(keel_heap *h, keel_term s, void *arg, keel_term *ns) {
  (void)arg;
  *ns = keel_int(h, ival(s) + 1);
  return s;
}

Test(agent, AG1_get_update_cast_stop) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_heap h;
    keel_heap_init(&h);
    int64_t ten = 10, five = 5;
    keel_term ag, v;
    keel_gen_server_opts o = {.name = keel_atom("ag1")};
    cr_assert_eq(keel_agent_start(init_n, &ten, &o, &ag), KEEL_OK);
    cr_assert_eq(keel_agent_get(ag, get_id, NULL, TMO, &h, &v), KEEL_OK);
    cr_assert_eq(ival(v), 10);
    cr_assert_eq(keel_agent_update(keel_atom("ag1"), add, &five, TMO), KEEL_OK);
    cr_assert_eq(keel_agent_get_and_update(ag, incr, NULL, TMO, &h, &v),
                 KEEL_OK);
    cr_assert_eq(ival(v), 15);
    static int64_t hundred = 100; /* lives until the cast has run */
    cr_assert_eq(keel_agent_cast(ag, add, &hundred), KEEL_OK);
    int64_t got = 0;
    for (int i = 0; i < 100000 && got != 116; i++) {
      cr_assert_eq(keel_agent_get(ag, get_id, NULL, TMO, &h, &v), KEEL_OK);
      got = ival(v);
    }
    cr_assert_eq(got, 116);
    cr_assert_eq(keel_agent_stop(ag, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
    cr_assert_eq(keel_agent_get(ag, get_id, NULL, TMO, &h, &v), KEEL_ENOPROC);
    cr_assert_eq(keel_agent_cast(ag, add, &hundred), KEEL_OK);
    /* failing init; bad arguments */
    keel_term reason = KEEL_NONE;
    keel_gen_server_opts fo = {.reason_heap = &h, .reason = &reason};
    cr_assert_eq(keel_agent_start(init_fail, NULL, &fo, &ag), KEEL_ENOPROC);
    cr_assert_eq(reason, keel_atom("init_failed"));
    cr_assert_eq(keel_agent_start(NULL, NULL, NULL, &ag), KEEL_EINVAL);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- atomicity: many fibers increment with get_and_update ---------------- */

#define WORKERS 16
#define ROUNDS 200

typedef struct shared {
  keel_term agent;
  atomic_long ok;
  /* seen[i]: some worker got old value i (each must be seen once) */
  atomic_int seen[WORKERS * ROUNDS];
} shared;

static void worker(keel_proc *self, void *arg) {
  (void)self;
  shared *sh = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < ROUNDS; i++) {
    keel_term v;
    if (keel_agent_get_and_update(sh->agent, incr, NULL, TMO, &h, &v) !=
        KEEL_OK)
      break;
    int64_t old = ival(v);
    if (old >= 0 && old < WORKERS * ROUNDS)
      atomic_fetch_add(&sh->seen[old], 1);
    atomic_fetch_add(&sh->ok, 1);
  }
  keel_heap_destroy(&h);
  signal_event();
}

Test(agent, AG1_get_and_update_is_atomic) {
  static shared sh;
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    memset(&sh, 0, sizeof sh);
    int64_t zero = 0;
    cr_assert_eq(keel_agent_start(init_n, &zero, NULL, &sh.agent), KEEL_OK);
    for (int w = 0; w < WORKERS; w++)
      cr_assert_eq(keel_spawn_fiber(worker, &sh, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(WORKERS));
    cr_assert_eq(atomic_load(&sh.ok), WORKERS * ROUNDS);
    for (int i = 0; i < WORKERS * ROUNDS; i++)
      cr_assert_eq(atomic_load(&sh.seen[i]), 1, "value %d", i);
    keel_heap h;
    keel_heap_init(&h);
    keel_term v;
    cr_assert_eq(keel_agent_get(sh.agent, get_id, NULL, TMO, &h, &v), KEEL_OK);
    cr_assert_eq(ival(v), WORKERS * ROUNDS);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Requests that do not come from this API are refused, never run. */
Test(agent, AG1_forged_requests_are_refused) {
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    keel_heap h;
    keel_heap_init(&h);
    int64_t one = 1;
    keel_term ag, v;
    cr_assert_eq(keel_agent_start(init_n, &one, NULL, &ag), KEEL_OK);
    cr_assert_eq(
        keel_gen_server_call(ag, keel_build(&h, "{get, 4096}"), TMO, &h, &v),
        KEEL_OK);
    cr_assert(keel_eq_exact(v, keel_build(&h, "{error, badarg}")));
    cr_assert_eq(keel_gen_server_cast(ag, keel_build(&h, "{cast, 4096}")),
                 KEEL_OK);
    cr_assert_eq(keel_agent_get(ag, get_id, NULL, TMO, &h, &v), KEEL_OK);
    cr_assert_eq(ival(v), 1);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
