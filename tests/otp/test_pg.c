/* pg (PG1-PG3, PG5): scopes, join/leave counted per pid, reads, monitors
 * of a scope and of a group, removal at death before the 'DOWN', and many
 * processes joining and dying at once. 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel/pg.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

/* How many times pid appears in the list l. */
static int occurrences(keel_term l, keel_term pid) {
  int n = 0;
  for (; keel_is_cons(l); l = keel_tl(l))
    n += keel_hd(l) == pid;
  return n;
}

static size_t len(keel_term l) {
  size_t n = 0;
  cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
  return n;
}

static void idle_body(keel_proc *self, void *arg) {
  (void)arg;
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

Test(pg, join_leave_counts_and_reads) {
  keel_pg_scope *none;
  cr_assert_eq(keel_pg_scope_new(KEEL_NONE, &none), KEEL_ESTATE, "no node");
  cr_assert_eq(keel_pg_scope_new(keel_small(1), &none), KEEL_EINVAL);
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pg_scope *s;
    cr_assert_eq(keel_pg_scope_new(keel_atom("sc1"), &s), KEEL_OK);
    keel_pg_scope *s2;
    cr_assert_eq(keel_pg_scope_new(keel_atom("sc1"), &s2), KEEL_EEXIST);
    cr_assert_eq(keel_pg_scope_find(keel_atom("sc1")), s);
    keel_term a, b;
    cr_assert_eq(keel_spawn_fiber(idle_body, NULL, NULL, &a), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(idle_body, NULL, NULL, &b), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term g = keel_build(&h, "{room, 1}"), l;
    /* model: a joined g twice, b once (in a list join) */
    cr_assert_eq(keel_pg_join(s, g, a), KEEL_OK);
    cr_assert_eq(keel_pg_join(s, g, keel_build(&h, "[~t, ~t]", a, b)), KEEL_OK);
    cr_assert_eq(keel_pg_join(s, keel_atom("other"), b), KEEL_OK);
    cr_assert_eq(keel_pg_get_members(s, g, &h, &l), KEEL_OK);
    cr_assert_eq(len(l), 3);
    cr_assert_eq(occurrences(l, a), 2);
    cr_assert_eq(occurrences(l, b), 1);
    cr_assert_eq(keel_pg_get_local_members(s, g, &h, &l), KEEL_OK);
    cr_assert_eq(len(l), 3);
    cr_assert_eq(keel_pg_which_groups(s, &h, &l), KEEL_OK);
    cr_assert_eq(len(l), 2);
    /* leave once each time */
    cr_assert_eq(keel_pg_leave(s, g, a), KEEL_OK);
    cr_assert_eq(keel_pg_get_members(s, g, &h, &l), KEEL_OK);
    cr_assert_eq(occurrences(l, a), 1);
    cr_assert_eq(keel_pg_leave(s, g, keel_build(&h, "[~t, ~t]", a, b)),
                 KEEL_OK);
    cr_assert_eq(keel_pg_leave(s, g, a), KEEL_ENOENT, "not_joined");
    cr_assert_eq(keel_pg_get_members(s, g, &h, &l), KEEL_OK);
    cr_assert(keel_is_nil(l), "an empty group is no group");
    cr_assert_eq(keel_pg_which_groups(s, &h, &l), KEEL_OK);
    cr_assert(keel_eq_exact(l, keel_build(&h, "[other]")));
    cr_assert_eq(keel_pg_get_members(s, keel_atom("never"), &h, &l), KEEL_OK);
    cr_assert(keel_is_nil(l));
    /* bad input */
    cr_assert_eq(keel_pg_join(s, g, keel_atom("x")), KEEL_EBADARG);
    cr_assert_eq(keel_pg_join(s, g, KEEL_NIL), KEEL_EBADARG);
    cr_assert_eq(keel_pg_join(s, g, keel_build(&h, "[~t, x]", a)),
                 KEEL_EBADARG);
    cr_assert_eq(keel_pg_join(NULL, g, a), KEEL_EINVAL);
    keel_term mref;
    cr_assert_eq(keel_pg_monitor_scope(s, &h, &mref, NULL), KEEL_ESTATE,
                 "monitoring needs a process");
    cr_assert_eq(keel_pg_demonitor(s, keel_atom("x")), KEEL_ENOENT);
    /* a dead pid joins nothing */
    keel_term dead;
    cr_assert_eq(keel_spawn_fiber(idle_body, NULL, NULL, &dead), KEEL_OK);
    cr_assert_eq(keel_exit(dead, KEEL_ATOM(KILL)), KEEL_OK);
    keel_process_info_t info;
    while (keel_process_info(dead, &info) == KEEL_OK)
      sched_yield();
    cr_assert_eq(keel_pg_join(s, g, keel_build(&h, "[~t, ~t]", a, dead)),
                 KEEL_ENOPROC);
    cr_assert_eq(keel_pg_get_members(s, g, &h, &l), KEEL_OK);
    cr_assert(keel_is_nil(l), "nobody joined");
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_pg_scope_delete(s), KEEL_OK);
    cr_assert_null(keel_pg_scope_find(keel_atom("sc1")));
  }
}

/* ---- monitors --------------------------------------------------------------
 */

typedef struct mon_case {
  keel_pg_scope *s;
  keel_term a, b;
  bool ok_snapshot, ok_sequence, ok_after_demonitor;
} mon_case;

/* Receives one message whose first element is ref. */
static bool has_ref(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 4 &&
         keel_eq_exact(keel_tuple_get(m, 0), *(keel_term *)arg);
}

static keel_term next_note(keel_proc *self, keel_term *ref) {
  keel_term m = KEEL_NONE;
  cr_assert_eq(keel_receive(self, has_ref, ref, 30000, &m), KEEL_OK);
  return m;
}

static void monitor_body(keel_proc *self, void *arg) {
  mon_case *c = arg;
  keel_heap *h = keel_proc_heap(self);
  keel_term sref, gref, groups, members;
  cr_assert_eq(keel_pg_monitor_scope(c->s, h, &sref, &groups), KEEL_OK);
  cr_assert_eq(keel_pg_monitor(c->s, keel_atom("g"), h, &gref, &members),
               KEEL_OK);
  keel_term want_groups =
      keel_build(h, "#{g => [~t], solo => [~t]}", c->a, c->b);
  c->ok_snapshot = keel_eq_exact(groups, want_groups) &&
                   keel_eq_exact(members, keel_build(h, "[~t]", c->a));
  signal_event(); /* 1: monitors in place */
  /* main: join g b; leave g a; join other a; then b dies */
  keel_term want[] = {
      keel_build(h, "{~t, join, g, [~t]}", sref, c->b),
      keel_build(h, "{~t, leave, g, [~t]}", sref, c->a),
      keel_build(h, "{~t, join, other, [~t]}", sref, c->a),
  };
  bool ok = true;
  for (size_t i = 0; i < 3; i++)
    ok = ok && keel_eq_exact(next_note(self, &sref), want[i]);
  ok = ok && keel_eq_exact(next_note(self, &gref),
                           keel_build(h, "{~t, join, g, [~t]}", gref, c->b));
  ok = ok && keel_eq_exact(next_note(self, &gref),
                           keel_build(h, "{~t, leave, g, [~t]}", gref, c->a));
  /* b's death: it leaves g and solo (either order) */
  keel_term d1 = keel_term_copy(h, next_note(self, &sref));
  keel_term d2 = next_note(self, &sref);
  ok = ok && keel_tuple_get(d1, 1) == keel_atom("leave") &&
       keel_tuple_get(d2, 1) == keel_atom("leave") &&
       keel_eq_exact(keel_tuple_get(d1, 3), keel_build(h, "[~t]", c->b));
  ok = ok && keel_eq_exact(next_note(self, &gref),
                           keel_build(h, "{~t, leave, g, [~t]}", gref, c->b));
  c->ok_sequence = ok;
  cr_assert_eq(keel_pg_demonitor(c->s, sref), KEEL_OK);
  cr_assert_eq(keel_pg_demonitor(c->s, sref), KEEL_ENOENT);
  signal_event(); /* 2: demonitored the scope */
  keel_term m;
  /* main joins g again: only the group monitor hears of it */
  next_note(self, &gref);
  c->ok_after_demonitor =
      keel_receive(self, has_ref, &sref, 0, &m) == KEEL_ETIMEDOUT;
  signal_event(); /* 3 */
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

Test(pg, monitors_see_snapshot_then_every_change) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    mon_case c = {0};
    cr_assert_eq(keel_pg_scope_new(KEEL_NONE, &c.s), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(idle_body, NULL, NULL, &c.a), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(idle_body, NULL, NULL, &c.b), KEEL_OK);
    cr_assert_eq(keel_pg_join(c.s, keel_atom("g"), c.a), KEEL_OK);
    cr_assert_eq(keel_pg_join(c.s, keel_atom("solo"), c.b), KEEL_OK);
    keel_term mon;
    cr_assert_eq(keel_spawn_fiber(monitor_body, &c, NULL, &mon), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert(c.ok_snapshot);
    cr_assert_eq(keel_pg_join(c.s, keel_atom("g"), c.b), KEEL_OK);
    cr_assert_eq(keel_pg_leave(c.s, keel_atom("g"), c.a), KEEL_OK);
    cr_assert_eq(keel_pg_join(c.s, keel_atom("other"), c.a), KEEL_OK);
    cr_assert_eq(keel_exit(c.b, keel_atom("bye")), KEEL_OK);
    cr_assert(wait_events(2));
    cr_assert(c.ok_sequence, "notifications (sched %u)", sched_counts[k]);
    cr_assert_eq(keel_pg_join(c.s, keel_atom("g"), c.a), KEEL_OK);
    cr_assert(wait_events(3));
    cr_assert(c.ok_after_demonitor);
    cr_assert_eq(keel_send(mon, KEEL_ATOM(OK)), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_pg_scope_delete(c.s), KEEL_OK);
  }
}

/* ---- death -------------------------------------------------------------- */

typedef struct death_case {
  keel_pg_scope *s;
  keel_term victim;
  int seen_at_down; /* occurrences of victim in g at the 'DOWN' */
  size_t groups_at_down;
} death_case;

static void watcher_body(keel_proc *self, void *arg) {
  death_case *c = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ref, m, l;
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
  cr_assert_eq(keel_spawn_fiber(idle_body, NULL, &so, &c->victim), KEEL_OK);
  cr_assert_eq(keel_pg_join(c->s, keel_atom("g"), c->victim), KEEL_OK);
  cr_assert_eq(keel_pg_join(c->s, keel_atom("g"), c->victim), KEEL_OK);
  cr_assert_eq(keel_pg_join(c->s, keel_atom("h"), c->victim), KEEL_OK);
  signal_event();
  cr_assert_eq(keel_receive(self, NULL, NULL, 30000, &m), KEEL_OK);
  cr_assert_eq(keel_tuple_get(m, 0), keel_atom("DOWN"));
  cr_assert_eq(keel_pg_get_members(c->s, keel_atom("g"), &h, &l), KEEL_OK);
  c->seen_at_down = occurrences(l, c->victim);
  cr_assert_eq(keel_pg_which_groups(c->s, &h, &l), KEEL_OK);
  c->groups_at_down = len(l);
  keel_heap_destroy(&h);
  signal_event();
}

Test(pg, members_gone_before_down) {
  char cfg[96];
  for (size_t k = 0; config_start(k, cfg, sizeof cfg); k++) {
    death_case c = {0};
    cr_assert_eq(keel_pg_scope_new(KEEL_NONE, &c.s), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(watcher_body, &c, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    keel_heap h;
    keel_heap_init(&h);
    keel_term l;
    cr_assert_eq(keel_pg_get_members(c.s, keel_atom("g"), &h, &l), KEEL_OK);
    cr_assert_eq(occurrences(l, c.victim), 2);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_exit(c.victim, keel_atom("crash")), KEEL_OK);
    cr_assert(wait_events(2));
    cr_assert_eq(c.seen_at_down, 0, "%s", cfg);
    cr_assert_eq(c.groups_at_down, 0);
    config_stop();
    cr_assert_eq(keel_pg_scope_delete(c.s), KEEL_OK);
  }
}

/* ---- churn ------------------------------------------------------------------
 */

#define CHURN 300

typedef struct churn_case {
  keel_pg_scope *s;
  keel_term monitor;
  _Atomic long joined, left; /* pids in join / leave notifications */
} churn_case;

static void churn_member(keel_proc *self, void *arg) {
  churn_case *c = arg;
  keel_term me = keel_self(self);
  cr_assert_eq(keel_pg_join(c->s, keel_atom("all"), me), KEEL_OK);
  cr_assert_eq(keel_pg_join(c->s, keel_atom("all"), me), KEEL_OK);
  cr_assert_eq(keel_pg_join(c->s, me, me), KEEL_OK);
  cr_assert_eq(keel_pg_leave(c->s, keel_atom("all"), me), KEEL_OK);
  signal_event();
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

static void churn_monitor(keel_proc *self, void *arg) {
  churn_case *c = arg;
  keel_heap *h = keel_proc_heap(self);
  keel_term ref, m;
  cr_assert_eq(keel_pg_monitor_scope(c->s, h, &ref, NULL), KEEL_OK);
  signal_event();
  for (;;) {
    if (keel_receive(self, NULL, NULL, 30000, &m) != KEEL_OK ||
        !keel_is_tuple(m))
      break;
    size_t n = len(keel_tuple_get(m, 3));
    if (keel_tuple_get(m, 1) == keel_atom("join"))
      atomic_fetch_add(&c->joined, (long)n);
    else
      atomic_fetch_add(&c->left, (long)n);
  }
}

static bool churn_done(void *arg) {
  churn_case *c = arg;
  return atomic_load(&c->joined) == 3L * CHURN &&
         atomic_load(&c->left) == 3L * CHURN;
}

Test(pg, many_join_and_die_at_once) {
  char cfg[96];
  for (size_t k = 0; config_start(k, cfg, sizeof cfg); k++) {
    churn_case c = {0};
    cr_assert_eq(keel_pg_scope_new(KEEL_NONE, &c.s), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(churn_monitor, &c, NULL, &c.monitor),
                 KEEL_OK);
    cr_assert(wait_events(1));
    static keel_term pids[CHURN];
    for (int i = 0; i < CHURN; i++)
      cr_assert_eq(keel_spawn_fiber(churn_member, &c, NULL, &pids[i]), KEEL_OK);
    cr_assert(wait_events(1 + CHURN));
    keel_heap h;
    keel_heap_init(&h);
    keel_term l;
    cr_assert_eq(keel_pg_get_members(c.s, keel_atom("all"), &h, &l), KEEL_OK);
    cr_assert_eq(len(l), CHURN, "two joins and one leave each");
    cr_assert_eq(keel_pg_which_groups(c.s, &h, &l), KEEL_OK);
    cr_assert_eq(len(l), CHURN + 1);
    for (int i = 0; i < CHURN; i++)
      cr_assert_eq(i % 2 ? keel_exit(pids[i], KEEL_ATOM(KILL))
                         : keel_send(pids[i], KEEL_ATOM(OK)),
                   KEEL_OK);
    /* 3 joins and 3 leaves per member (the last two at death) */
    cr_assert(wait_until(churn_done, &c), "%s", cfg);
    cr_assert_eq(keel_pg_which_groups(c.s, &h, &l), KEEL_OK);
    cr_assert(keel_is_nil(l), "every group empty");
    keel_heap_destroy(&h);
    cr_assert_eq(keel_send(c.monitor, KEEL_ATOM(OK)), KEEL_OK);
    config_stop();
    cr_assert_eq(keel_pg_scope_delete(c.s), KEEL_OK);
  }
}

/* ---- a writer yielding while it sends its notifications ------------------ */

#define NMON 500 /* more sends than one slice allows */
#define ROUNDS 5

typedef struct busy_case {
  keel_pg_scope *s;
  _Atomic long notes; /* notifications received by all monitors */
} busy_case;

static void busy_monitor(keel_proc *self, void *arg) {
  busy_case *c = arg;
  keel_term ref, m;
  cr_assert_eq(keel_pg_monitor_scope(c->s, keel_proc_heap(self), &ref, NULL),
               KEEL_OK);
  signal_event();
  while (keel_receive(self, NULL, NULL, 30000, &m) == KEEL_OK &&
         keel_is_tuple(m))
    atomic_fetch_add(&c->notes, 1);
}

static void busy_writer(keel_proc *self, void *arg) {
  busy_case *c = arg;
  for (int i = 0; i < ROUNDS; i++) {
    cr_assert_eq(keel_pg_join(c->s, keel_atom("g"), keel_self(self)), KEEL_OK);
    cr_assert_eq(keel_pg_leave(c->s, keel_atom("g"), keel_self(self)), KEEL_OK);
  }
  signal_event();
}

static bool busy_done(void *arg) {
  busy_case *c = arg;
  return atomic_load(&c->notes) == 2L * 2 * ROUNDS * NMON;
}

/* Two writers on one scheduler: each join sends NMON notifications, so a
 * writer yields inside its sends and the other runs on the same thread;
 * neither may find the scope locked by the other. */
Test(pg, writers_yielding_in_sends_do_not_block_each_other) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    busy_case c = {0};
    cr_assert_eq(keel_pg_scope_new(KEEL_NONE, &c.s), KEEL_OK);
    keel_spawn_opts so = {.stack_size = KEEL_FIBER_STACK_MIN};
    static keel_term mons[NMON];
    for (int i = 0; i < NMON; i++)
      cr_assert_eq(keel_spawn_fiber(busy_monitor, &c, &so, &mons[i]), KEEL_OK);
    cr_assert(wait_events(NMON));
    cr_assert_eq(keel_spawn_fiber(busy_writer, &c, NULL, NULL), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(busy_writer, &c, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(NMON + 2));
    cr_assert(wait_until(busy_done, &c), "every notification arrives");
    for (int i = 0; i < NMON; i++)
      cr_assert_eq(keel_send(mons[i], KEEL_ATOM(OK)), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_pg_scope_delete(c.s), KEEL_OK);
  }
}

/* ---- notifications replay to the true membership ------------------------ */

#define NV 200

typedef struct replay_case {
  keel_pg_scope *s;
  keel_term victims[NV];
  int count[NV];           /* membership of each victim, from notifications */
  _Atomic int negative;    /* a leave seen before its join */
  _Atomic long notes_left; /* leave pids still expected */
} replay_case;

static int victim_index(replay_case *c, keel_term pid) {
  for (int i = 0; i < NV; i++)
    if (c->victims[i] == pid)
      return i;
  return -1;
}

static void replay_monitor(keel_proc *self, void *arg) {
  replay_case *c = arg;
  keel_term ref, m;
  cr_assert_eq(
      keel_pg_monitor(c->s, keel_atom("g"), keel_proc_heap(self), &ref, NULL),
      KEEL_OK);
  signal_event();
  while (keel_receive(self, NULL, NULL, 30000, &m) == KEEL_OK &&
         keel_is_tuple(m)) {
    int d = keel_tuple_get(m, 1) == keel_atom("join") ? 1 : -1;
    for (keel_term l = keel_tuple_get(m, 3); keel_is_cons(l); l = keel_tl(l)) {
      int i = victim_index(c, keel_hd(l));
      cr_assert_geq(i, 0);
      if ((c->count[i] += d) < 0)
        atomic_store(&c->negative, 1);
      if (d < 0)
        atomic_fetch_sub(&c->notes_left, 1);
    }
  }
}

/* Joins victims [lo, hi) to g, each once, while the test kills them. */
typedef struct joiner_arg {
  replay_case *c;
  int lo, hi;
} joiner_arg;

static void replay_joiner(keel_proc *self, void *arg) {
  joiner_arg *j = arg;
  (void)self;
  for (int i = j->lo; i < j->hi; i++) {
    int rc = keel_pg_join(j->c->s, keel_atom("g"), j->c->victims[i]);
    cr_assert(rc == KEEL_OK || rc == KEEL_ENOPROC);
    if (rc == KEEL_ENOPROC)
      atomic_fetch_sub(&j->c->notes_left, 1); /* no join, no leave */
  }
  signal_event();
}

static bool replay_done(void *arg) {
  return atomic_load(&((replay_case *)arg)->notes_left) == 0;
}

/* Joins by two processes race with the members' deaths (killed by a third
 * party): the monitor's replay of join/leave notifications must never go
 * below zero and must end at zero for everyone. */
Test(pg, notifications_replay_to_the_true_membership) {
  char cfg[96];
  for (size_t k = 0; config_start(k, cfg, sizeof cfg); k++) {
    static replay_case c;
    memset(&c, 0, sizeof c);
    atomic_store(&c.notes_left, NV);
    cr_assert_eq(keel_pg_scope_new(KEEL_NONE, &c.s), KEEL_OK);
    keel_spawn_opts so = {.stack_size = KEEL_FIBER_STACK_MIN};
    for (int i = 0; i < NV; i++)
      cr_assert_eq(keel_spawn_fiber(idle_body, NULL, &so, &c.victims[i]),
                   KEEL_OK);
    keel_term mon;
    cr_assert_eq(keel_spawn_fiber(replay_monitor, &c, NULL, &mon), KEEL_OK);
    cr_assert(wait_events(1));
    joiner_arg j1 = {&c, 0, NV / 2}, j2 = {&c, NV / 2, NV};
    cr_assert_eq(keel_spawn_fiber(replay_joiner, &j1, NULL, NULL), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(replay_joiner, &j2, NULL, NULL), KEEL_OK);
    for (int i = 0; i < NV; i++)
      cr_assert_eq(keel_exit(c.victims[(i * 7) % NV], KEEL_ATOM(KILL)),
                   KEEL_OK);
    cr_assert(wait_events(3));
    cr_assert(wait_until(replay_done, &c), "%s", cfg);
    cr_assert_eq(atomic_load(&c.negative), 0, "leave before join (%s)", cfg);
    cr_assert_eq(keel_send(mon, KEEL_ATOM(OK)), KEEL_OK);
    config_stop();
    for (int i = 0; i < NV; i++)
      cr_assert_eq(c.count[i], 0, "%s", cfg);
    cr_assert_eq(keel_pg_scope_delete(c.s), KEEL_OK);
  }
}

/* ---- a monitor ends with its process ---------------------------------------
 */

typedef struct mondeath_case {
  keel_pg_scope *s;
  keel_heap heap; /* the ref, copied by the dying monitor */
  keel_term ref;
  int demonitor_at_down;
} mondeath_case;

static void short_monitor(keel_proc *self, void *arg) {
  mondeath_case *c = arg;
  keel_term ref;
  cr_assert_eq(
      keel_pg_monitor(c->s, keel_atom("g"), keel_proc_heap(self), &ref, NULL),
      KEEL_OK);
  c->ref = keel_term_copy(&c->heap, ref);
  /* returns: the monitor ends with the process */
}

static void mondeath_watcher(keel_proc *self, void *arg) {
  mondeath_case *c = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term mref, m;
  keel_spawn_opts so = {.monitor_ref = &mref, .monitor_heap = &h};
  cr_assert_eq(keel_spawn_fiber(short_monitor, c, &so, NULL), KEEL_OK);
  cr_assert_eq(keel_receive(self, NULL, NULL, 30000, &m), KEEL_OK);
  cr_assert_eq(keel_tuple_get(m, 0), keel_atom("DOWN"));
  c->demonitor_at_down = keel_pg_demonitor(c->s, c->ref);
  /* and a join now notifies nobody (nothing to check but no crash) */
  cr_assert_eq(keel_pg_join(c->s, keel_atom("g"), keel_self(self)), KEEL_OK);
  keel_heap_destroy(&h);
  signal_event();
}

Test(pg, monitor_ends_with_its_process) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    mondeath_case c = {0};
    keel_heap_init(&c.heap);
    cr_assert_eq(keel_pg_scope_new(KEEL_NONE, &c.s), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(mondeath_watcher, &c, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(c.demonitor_at_down, KEEL_ENOENT,
                 "the monitor was gone by the 'DOWN'");
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_pg_scope_delete(c.s), KEEL_OK);
    keel_heap_destroy(&c.heap);
  }
}
