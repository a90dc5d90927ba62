/* Registry: entries removed when their process dies, before any monitor
 * sees the 'DOWN' (REG2); listeners told of registrations and removals
 * (REG6); via names (REG5); many processes registering and dying at once.
 * 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/registry.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

static const unsigned part_counts[] = {1, 8};

/* ---- cleanup before 'DOWN' ---------------------------------------------- */

typedef struct death_case {
  keel_registry *reg;
  keel_term victim;
  int64_t count_at_down;   /* entries left when the watcher saw 'DOWN' */
  keel_term where_at_down; /* whereis(k0) then */
  size_t keys_at_down;
} death_case;

static void victim_body(keel_proc *self, void *arg) {
  death_case *c = arg;
  for (int i = 0; i < 10; i++)
    cr_assert_eq(keel_registry_register(c->reg, keel_small(i), keel_small(i)),
                 KEEL_OK);
  signal_event();
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

static void watcher_body(keel_proc *self, void *arg) {
  death_case *c = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref, m;
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
  cr_assert_eq(keel_spawn_fiber(victim_body, c, &so, &c->victim), KEEL_OK);
  cr_assert_eq(keel_receive(self, NULL, NULL, 30000, &m), KEEL_OK);
  cr_assert_eq(keel_tuple_get(m, 0), keel_atom("DOWN"));
  c->count_at_down = keel_registry_count(c->reg);
  c->where_at_down = keel_registry_whereis(c->reg, keel_small(0));
  keel_term l;
  cr_assert_eq(keel_registry_keys(c->reg, c->victim, &h, &l), KEEL_OK);
  cr_assert_eq(keel_list_length(l, &c->keys_at_down), KEEL_OK);
  keel_heap_destroy(&h);
  signal_event();
}

Test(registry_death, entries_gone_before_down) {
  char cfg[96];
  for (size_t k = 0; config_start(k, cfg, sizeof cfg); k++)
    for (size_t p = 0; p < 2; p++)
      for (int kind = 0; kind < 3; kind++) {
        if (p + kind > 0)
          cr_assert(config_start(k, cfg, sizeof cfg));
        keel_registry_opts o = {.keys = (keel_registry_kind)kind,
                                .partitions = part_counts[p]};
        death_case c = {0};
        cr_assert_eq(keel_registry_new(&o, &c.reg), KEEL_OK);
        cr_assert_eq(keel_spawn_fiber(watcher_body, &c, NULL, NULL), KEEL_OK);
        cr_assert(wait_events(1));
        cr_assert_eq(keel_registry_count(c.reg), 10);
        cr_assert_eq(keel_registry_whereis(c.reg, keel_small(0)), c.victim);
        cr_assert_eq(keel_exit(c.victim, keel_atom("crash")), KEEL_OK);
        cr_assert(wait_events(2));
        cr_assert_eq(c.count_at_down, 0, "%s, parts %u kind %d", cfg,
                     part_counts[p], kind);
        cr_assert_eq(c.where_at_down, KEEL_ATOM(UNDEFINED));
        cr_assert_eq(c.keys_at_down, 0);
        config_stop();
        cr_assert_eq(keel_registry_delete(c.reg), KEEL_OK);
      }
}

/* ---- listeners ------------------------------------------------------------
 */

typedef struct listen_case {
  keel_registry *reg;
  keel_term listener;
  keel_heap heap;    /* the listener's copies, read by the test after */
  keel_term seen[4]; /* the four messages the listener got */
} listen_case;

static void listener_body(keel_proc *self, void *arg) {
  listen_case *c = arg;
  for (int i = 0; i < 4; i++) {
    keel_term m;
    cr_assert_eq(keel_receive(self, NULL, NULL, 30000, &m), KEEL_OK);
    c->seen[i] = keel_term_copy(&c->heap, m);
  }
  signal_event();
}

static void registrant_body(keel_proc *self, void *arg) {
  listen_case *c = arg;
  (void)self;
  cr_assert_eq(keel_registry_register(c->reg, keel_atom("k1"), keel_small(7)),
               KEEL_OK);
  cr_assert_eq(keel_registry_unregister(c->reg, keel_atom("k1")), KEEL_OK);
  cr_assert_eq(keel_registry_register(c->reg, keel_atom("k2"), keel_small(8)),
               KEEL_OK);
  /* returns: dies normally, k2 is removed and the listener told */
}

Test(registry_death, listeners_hear_register_unregister_and_death) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    listen_case c = {0};
    keel_heap_init(&c.heap);
    cr_assert_eq(keel_spawn_fiber(listener_body, &c, NULL, &c.listener),
                 KEEL_OK);
    keel_registry_opts o = {
        .name = keel_atom("lreg"), .listeners = &c.listener, .nlisteners = 1};
    cr_assert_eq(keel_registry_new(&o, &c.reg), KEEL_OK);
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(registrant_body, &c, NULL, &pid), KEEL_OK);
    cr_assert(wait_events(1));
    /* From one sender, messages arrive in the order sent. */
    keel_heap h;
    keel_heap_init(&h);
    cr_assert(keel_eq_exact(
        c.seen[0], keel_build(&h, "{register, lreg, k1, ~t, 7}", pid)));
    cr_assert(keel_eq_exact(c.seen[1],
                            keel_build(&h, "{unregister, lreg, k1, ~t}", pid)));
    cr_assert(keel_eq_exact(
        c.seen[2], keel_build(&h, "{register, lreg, k2, ~t, 8}", pid)));
    /* the registrant returned: its death removed k2 */
    cr_assert(keel_eq_exact(c.seen[3],
                            keel_build(&h, "{unregister, lreg, k2, ~t}", pid)));
    keel_heap_destroy(&h);
    keel_heap_destroy(&c.heap);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_registry_delete(c.reg), KEEL_OK);
  }
}

/* ---- via names -------------------------------------------------------- */

static void via_server(keel_proc *self, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term name = keel_build(&h, "{via, registry, {vreg, server, meta1}}");
  cr_assert_eq(keel_name_register(name, keel_self(self)), KEEL_OK);
  signal_event();
  keel_term m;
  cr_assert_eq(keel_receive(self, NULL, NULL, 30000, &m), KEEL_OK);
  if (m == keel_atom("ping"))
    signal_event();
  cr_assert_eq(keel_name_unregister(name), KEEL_OK);
  keel_heap_destroy(&h);
  signal_event();
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

Test(registry_death, via_names_resolve_and_send) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_registry_opts o = {.name = keel_atom("vreg")};
    keel_registry *r;
    cr_assert_eq(keel_registry_new(&o, &r), KEEL_OK);
    keel_term pid;
    cr_assert_eq(keel_spawn_fiber(via_server, NULL, NULL, &pid), KEEL_OK);
    cr_assert(wait_events(1));
    keel_heap h;
    keel_heap_init(&h);
    keel_term name = keel_build(&h, "{via, registry, {vreg, server}}");
    cr_assert_eq(keel_name_whereis(name), pid);
    cr_assert_eq(keel_registry_whereis(r, keel_atom("server")), pid);
    keel_term l;
    cr_assert_eq(keel_registry_lookup(r, keel_atom("server"), &h, &l), KEEL_OK);
    cr_assert_eq(keel_tuple_get(keel_hd(l), 1), keel_atom("meta1"));
    cr_assert_eq(keel_name_whereis(pid), pid);
    cr_assert_eq(keel_name_whereis(keel_build(&h, "{via, nomod, x}")),
                 KEEL_ATOM(UNDEFINED));
    cr_assert_eq(keel_name_send(keel_build(&h, "{via, registry, {vreg, nob}}"),
                                KEEL_ATOM(OK)),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_name_send(keel_small(3), KEEL_ATOM(OK)), KEEL_EBADARG);
    cr_assert_eq(keel_name_register(keel_build(&h, "{via, registry, "
                                                   "{vreg, other}}"),
                                    pid),
                 KEEL_ESTATE, "only a process registers itself");
    cr_assert_eq(keel_name_send(name, keel_atom("ping")), KEEL_OK);
    cr_assert(wait_events(3));
    cr_assert_eq(keel_name_whereis(name), KEEL_ATOM(UNDEFINED));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_send(pid, KEEL_ATOM(OK)), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_registry_delete(r), KEEL_OK);
  }
}

/* ---- many processes at once --------------------------------------------- */

#define CHURN 300

typedef struct churn_case {
  keel_registry *uniq, *dup;
  _Atomic int won; /* registrations of the contended unique key */
} churn_case;

static void churner(keel_proc *self, void *arg) {
  churn_case *c = arg;
  keel_term me = keel_self(self);
  /* everyone races for 'leader'; each has its own key and joins 'topic' */
  if (keel_registry_register(c->uniq, keel_atom("leader"), me) == KEEL_OK)
    atomic_fetch_add(&c->won, 1);
  cr_assert_eq(keel_registry_register(c->uniq, me, KEEL_NIL), KEEL_OK);
  cr_assert_eq(keel_registry_register(c->dup, keel_atom("topic"), me), KEEL_OK);
  signal_event();
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 30000, &m);
  if (m == keel_atom("crash"))
    keel_stop(self, keel_atom("crash"));
}

static bool all_gone(void *arg) {
  churn_case *c = arg;
  return keel_registry_count(c->uniq) == 0 && keel_registry_count(c->dup) == 0;
}

Test(registry_death, many_register_and_die_at_once) {
  char cfg[96];
  for (size_t k = 0; config_start(k, cfg, sizeof cfg); k++) {
    churn_case c = {0};
    keel_registry_opts ou = {.partitions = 8};
    keel_registry_opts od = {.keys = KEEL_REGISTRY_DUPLICATE, .partitions = 8};
    cr_assert_eq(keel_registry_new(&ou, &c.uniq), KEEL_OK);
    cr_assert_eq(keel_registry_new(&od, &c.dup), KEEL_OK);
    static keel_term pids[CHURN];
    for (int i = 0; i < CHURN; i++)
      cr_assert_eq(keel_spawn_fiber(churner, &c, NULL, &pids[i]), KEEL_OK);
    cr_assert(wait_events(CHURN));
    cr_assert_eq(atomic_load(&c.won), 1, "one leader");
    cr_assert_eq(keel_registry_count(c.uniq), CHURN + 1);
    cr_assert_eq(keel_registry_count(c.dup), CHURN);
    for (int i = 0; i < CHURN; i++)
      cr_assert_eq(keel_registry_whereis(c.uniq, pids[i]), pids[i]);
    /* a third killed, a third crash, a third end normally */
    for (int i = 0; i < CHURN; i++)
      cr_assert_eq(i % 3 == 0
                       ? keel_exit(pids[i], KEEL_ATOM(KILL))
                       : keel_send(pids[i], i % 3 == 1 ? keel_atom("crash")
                                                       : KEEL_ATOM(OK)),
                   KEEL_OK);
    cr_assert(wait_until(all_gone, &c), "%s", cfg);
    cr_assert_eq(keel_registry_whereis(c.uniq, keel_atom("leader")),
                 KEEL_ATOM(UNDEFINED));
    config_stop();
    cr_assert_eq(keel_registry_delete(c.uniq), KEEL_OK);
    cr_assert_eq(keel_registry_delete(c.dup), KEEL_OK);
  }
}
