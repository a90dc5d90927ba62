/* Registry (REG1-REG6): unique and duplicate keys over 1 and 8 partitions,
 * reads, match specs, update_value, dispatch, meta, listeners, via names,
 * and removal at death before the 'DOWN'. Every scenario runs with 1, 2
 * and 8 schedulers. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/registry.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

static const unsigned part_counts[] = {1, 8};

static keel_term recv_any(keel_proc *self) {
  keel_term m = KEEL_NONE;
  cr_assert_eq(keel_receive(self, NULL, NULL, 30000, &m), KEEL_OK);
  return m;
}

static size_t len(keel_term l) {
  size_t n = 0;
  cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
  return n;
}

/* ---- unique keys: the whole read/write API from one process ------------ */

typedef struct api_case {
  keel_registry *reg;
  keel_term other; /* a second process holding key 'taken' */
} api_case;

static keel_term add_ten(keel_term old, keel_heap *h, void *arg) {
  (void)arg;
  return keel_int(h, keel_small_value(old) + 10);
}

static void unique_api_body(keel_proc *self, void *arg) {
  api_case *c = arg;
  keel_registry *r = c->reg;
  keel_term me = keel_self(self);
  keel_heap h;
  keel_heap_init(&h);
  keel_term l;
  cr_assert_eq(keel_registry_register(r, keel_atom("a"), keel_small(1)),
               KEEL_OK);
  cr_assert_eq(keel_registry_register(r, keel_atom("a"), keel_small(2)),
               KEEL_EEXIST, "a unique key twice");
  cr_assert_eq(keel_registry_register(r, keel_atom("taken"), keel_small(2)),
               KEEL_EEXIST, "another process's key");
  cr_assert_eq(keel_registry_register(r, keel_build(&h, "{b, \"x\"}"),
                                      keel_build(&h, "{5, blue}")),
               KEEL_OK);
  cr_assert_eq(keel_registry_lookup(r, keel_atom("a"), &h, &l), KEEL_OK);
  cr_assert(keel_eq_exact(l, keel_build(&h, "[{~t, 1}]", me)));
  cr_assert_eq(keel_registry_whereis(r, keel_atom("a")), me);
  cr_assert_eq(keel_registry_whereis(r, keel_atom("none")),
               KEEL_ATOM(UNDEFINED));
  cr_assert_eq(keel_registry_whereis(r, keel_atom("taken")), c->other);
  /* match with a pattern and a guard on the value */
  cr_assert_eq(keel_registry_match(r, keel_build(&h, "{b, \"x\"}"),
                                   keel_build(&h, "{'$1', '_'}"),
                                   keel_build(&h, "[{'>', '$1', 3}]"), &h, &l),
               KEEL_OK);
  cr_assert_eq(len(l), 1);
  cr_assert_eq(keel_registry_match(r, keel_build(&h, "{b, \"x\"}"),
                                   keel_build(&h, "{'$1', '_'}"),
                                   keel_build(&h, "[{'>', '$1', 7}]"), &h, &l),
               KEEL_OK);
  cr_assert(keel_is_nil(l));
  cr_assert_eq(
      keel_registry_count_match(r, keel_atom("a"), keel_atom("_"), KEEL_NIL),
      1);
  /* select over {Key, Pid, Value}: keys of this process */
  keel_term spec = keel_build(&h, "[{{'$1', ~t, '_'}, [], ['$1']}]", me);
  cr_assert_eq(keel_registry_select(r, spec, &h, &l), KEEL_OK);
  cr_assert_eq(len(l), 2);
  cr_assert_eq(keel_registry_count_select(r, spec), 0, "body is not true");
  cr_assert_eq(keel_registry_count_select(
                   r, keel_build(&h, "[{{'_', ~t, '_'}, [], [true]}]", me)),
               2);
  cr_assert_eq(keel_registry_count(r), 3);
  cr_assert_eq(keel_registry_keys(r, me, &h, &l), KEEL_OK);
  cr_assert_eq(len(l), 2);
  cr_assert_eq(keel_registry_values(r, keel_atom("a"), me, &h, &l), KEEL_OK);
  cr_assert(keel_eq_exact(l, keel_build(&h, "[1]")));
  /* update_value: own key only */
  keel_term nv, ov;
  cr_assert_eq(keel_registry_update_value(r, keel_atom("a"), add_ten, NULL, &h,
                                          &nv, &ov),
               KEEL_OK);
  cr_assert_eq(nv, keel_small(11));
  cr_assert_eq(ov, keel_small(1));
  cr_assert_eq(keel_registry_values(r, keel_atom("a"), me, &h, &l), KEEL_OK);
  cr_assert(keel_eq_exact(l, keel_build(&h, "[11]")));
  cr_assert_eq(keel_registry_update_value(r, keel_atom("taken"), add_ten, NULL,
                                          &h, &nv, &ov),
               KEEL_ENOENT);
  /* unregister_match: value must match */
  cr_assert_eq(keel_registry_unregister_match(r, keel_atom("a"), keel_small(0),
                                              KEEL_NIL),
               0);
  cr_assert_eq(keel_registry_unregister_match(r, keel_atom("a"), keel_small(11),
                                              KEEL_NIL),
               1);
  cr_assert_eq(keel_registry_whereis(r, keel_atom("a")), KEEL_ATOM(UNDEFINED));
  cr_assert_eq(keel_registry_unregister(r, keel_build(&h, "{b, \"x\"}")),
               KEEL_OK);
  cr_assert_eq(keel_registry_unregister(r, keel_atom("taken")), KEEL_OK);
  cr_assert_eq(keel_registry_whereis(r, keel_atom("taken")), c->other,
               "unregister leaves another process's entry");
  cr_assert_eq(keel_registry_keys(r, me, &h, &l), KEEL_OK);
  cr_assert(keel_is_nil(l));
  cr_assert_eq(keel_registry_count(r), 1);
  keel_heap_destroy(&h);
  signal_event();
}

static void holder_body(keel_proc *self, void *arg) {
  api_case *c = arg;
  cr_assert_eq(keel_registry_register(c->reg, keel_atom("taken"), KEEL_NIL),
               KEEL_OK);
  signal_event();
  (void)recv_any(self); /* until told to go */
}

Test(registry, unique_api) {
  for (size_t k = 0; k < NCONF; k++)
    for (size_t p = 0; p < 2; p++) {
      start_node(sched_counts[k], 0);
      keel_registry_opts o = {.partitions = part_counts[p]};
      api_case c = {0};
      cr_assert_eq(keel_registry_new(&o, &c.reg), KEEL_OK);
      cr_assert_eq(keel_registry_register(c.reg, keel_atom("x"), KEEL_NIL),
                   KEEL_ESTATE, "main is not a process");
      cr_assert_eq(keel_spawn_fiber(holder_body, &c, NULL, &c.other), KEEL_OK);
      cr_assert(wait_events(1));
      cr_assert_eq(keel_spawn_fiber(unique_api_body, &c, NULL, NULL), KEEL_OK);
      cr_assert(wait_events(2));
      cr_assert_eq(keel_send(c.other, KEEL_ATOM(OK)), KEEL_OK);
      cr_assert_eq(keel_node_stop(), KEEL_OK);
      cr_assert_eq(keel_registry_delete(c.reg), KEEL_OK);
    }
}

Test(registry, bad_arguments) {
  keel_registry *r = NULL;
  keel_registry_opts o = {.partitions = KEEL_REGISTRY_MAX_PARTITIONS + 1};
  cr_assert_eq(keel_registry_new(&o, &r), KEEL_EINVAL);
  o = (keel_registry_opts){.keys = 7};
  cr_assert_eq(keel_registry_new(&o, &r), KEEL_EINVAL);
  o = (keel_registry_opts){.name = keel_small(1)};
  cr_assert_eq(keel_registry_new(&o, &r), KEEL_EINVAL);
  keel_term notpid = keel_atom("x");
  o = (keel_registry_opts){.listeners = &notpid, .nlisteners = 1};
  cr_assert_eq(keel_registry_new(&o, &r), KEEL_EINVAL);
  cr_assert_eq(keel_registry_new(NULL, NULL), KEEL_EINVAL);
  o = (keel_registry_opts){.name = keel_atom("reg_named")};
  cr_assert_eq(keel_registry_new(&o, &r), KEEL_OK);
  keel_registry *r2;
  cr_assert_eq(keel_registry_new(&o, &r2), KEEL_EEXIST);
  cr_assert_eq(keel_registry_find(keel_atom("reg_named")), r);
  keel_heap h;
  keel_heap_init(&h);
  keel_term l;
  cr_assert_eq(keel_registry_select(r, keel_atom("notaspec"), &h, &l),
               KEEL_EBADARG);
  cr_assert_lt(keel_registry_count_select(r, keel_atom("bad")), 0);
  cr_assert_eq(keel_registry_lookup(NULL, keel_atom("k"), &h, &l), KEEL_EINVAL);
  cr_assert_eq(keel_registry_keys(r, keel_atom("k"), &h, &l), KEEL_EBADARG);
  cr_assert_eq(keel_registry_meta(r, keel_atom("m"), &h, &l), KEEL_ENOENT);
  cr_assert_eq(keel_registry_put_meta(r, keel_atom("m"), keel_small(3)),
               KEEL_OK);
  cr_assert_eq(keel_registry_meta(r, keel_atom("m"), &h, &l), KEEL_OK);
  cr_assert_eq(l, keel_small(3));
  keel_heap_destroy(&h);
  cr_assert_eq(keel_registry_delete(r), KEEL_OK);
  cr_assert_null(keel_registry_find(keel_atom("reg_named")));
  cr_assert_eq(keel_registry_delete(NULL), KEEL_OK);
}

/* ---- duplicate keys, dispatch ------------------------------------------ */

typedef struct dup_case {
  keel_registry *reg;
  int n;
} dup_case;

static void dup_member(keel_proc *self, void *arg) {
  dup_case *c = arg;
  /* Each member registers 'topic' twice (value 1 and 2) and 'own'. */
  cr_assert_eq(
      keel_registry_register(c->reg, keel_atom("topic"), keel_small(1)),
      KEEL_OK);
  cr_assert_eq(
      keel_registry_register(c->reg, keel_atom("topic"), keel_small(2)),
      KEEL_OK);
  cr_assert_eq(
      keel_registry_register(c->reg, keel_atom("own"), keel_self(self)),
      KEEL_OK);
  signal_event();
  (void)recv_any(self);
}

static void sum_values(keel_term entries, void *arg) {
  int64_t *sum = arg;
  for (; keel_is_cons(entries); entries = keel_tl(entries))
    *sum += keel_small_value(keel_tuple_get(keel_hd(entries), 1));
}

static void run_dup(keel_registry_kind kind) {
  for (size_t k = 0; k < NCONF; k++)
    for (size_t p = 0; p < 2; p++) {
      start_node(sched_counts[k], 0);
      keel_registry_opts o = {.keys = kind, .partitions = part_counts[p]};
      dup_case c = {.n = 20};
      cr_assert_eq(keel_registry_new(&o, &c.reg), KEEL_OK);
      keel_term pids[20];
      for (int i = 0; i < c.n; i++)
        cr_assert_eq(keel_spawn_fiber(dup_member, &c, NULL, &pids[i]), KEEL_OK);
      cr_assert(wait_events(c.n));
      keel_heap h;
      keel_heap_init(&h);
      keel_term l;
      cr_assert_eq(keel_registry_lookup(c.reg, keel_atom("topic"), &h, &l),
                   KEEL_OK);
      cr_assert_eq(len(l), 2 * (size_t)c.n);
      cr_assert_eq(keel_registry_count(c.reg), 3 * c.n);
      int64_t sum = 0;
      int calls =
          keel_registry_dispatch(c.reg, keel_atom("topic"), sum_values, &sum);
      cr_assert_gt(calls, 0);
      cr_assert_leq(calls, (int)part_counts[p]);
      cr_assert_eq(sum, 3 * c.n, "every entry dispatched once");
      cr_assert_eq(keel_registry_count_match(c.reg, keel_atom("topic"),
                                             keel_small(2), KEEL_NIL),
                   c.n);
      cr_assert_eq(keel_registry_keys(c.reg, pids[3], &h, &l), KEEL_OK);
      cr_assert_eq(len(l), 3, "topic twice (two entries), own once");
      cr_assert_eq(
          keel_registry_values(c.reg, keel_atom("topic"), pids[3], &h, &l),
          KEEL_OK);
      cr_assert_eq(len(l), 2);
      cr_assert_eq(keel_registry_whereis(c.reg, keel_atom("own")) != 0, true);
      keel_heap_destroy(&h);
      for (int i = 0; i < c.n; i++)
        cr_assert_eq(keel_exit(pids[i], KEEL_ATOM(KILL)), KEEL_OK);
      cr_assert_eq(keel_node_stop(), KEEL_OK);
      cr_assert_eq(keel_registry_count(c.reg), 0, "all gone at death");
      cr_assert_eq(keel_registry_delete(c.reg), KEEL_OK);
    }
}

Test(registry, duplicate_by_pid) {
  run_dup(KEEL_REGISTRY_DUPLICATE);
}
Test(registry, duplicate_by_key) {
  run_dup(KEEL_REGISTRY_DUPLICATE_KEY);
}

/* ---- a registry made by a process dies with it --------------------------- */

static void maker_body(keel_proc *self, void *arg) {
  keel_registry **out = arg;
  cr_assert_eq(keel_registry_new(NULL, out), KEEL_OK);
  cr_assert_eq(keel_registry_register(*out, keel_atom("me"), KEEL_NIL),
               KEEL_OK);
  cr_assert_eq(keel_registry_unregister_match(*out, keel_atom("me"),
                                              keel_atom("_"),
                                              keel_atom("notalist")),
               KEEL_EBADARG, "malformed guards");
  signal_event();
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

static bool registry_gone(void *arg) {
  return keel_registry_count(*(keel_registry **)arg) == KEEL_EBADARG;
}

Test(registry, made_by_a_process_goes_with_it) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_registry *r = NULL;
    keel_term maker;
    cr_assert_eq(keel_spawn_fiber(maker_body, &r, NULL, &maker), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(keel_registry_count(r), 1);
    cr_assert_eq(keel_exit(maker, keel_atom("bye")), KEEL_OK);
    cr_assert(wait_until(registry_gone, &r), "its tables went with it");
    keel_heap h;
    keel_heap_init(&h);
    keel_term l;
    cr_assert_eq(keel_registry_lookup(r, keel_atom("me"), &h, &l),
                 KEEL_EBADARG);
    cr_assert_eq(keel_registry_whereis(r, keel_atom("me")),
                 KEEL_ATOM(UNDEFINED));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_registry_delete(r), KEEL_OK);
  }
}
