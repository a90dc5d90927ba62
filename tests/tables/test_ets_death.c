/* A table's owner dying for real (not a direct call of the hook): the table
 * is deleted, or handed to its heir with 'ETS-TRANSFER', before anyone
 * monitoring the owner sees its 'DOWN'. 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/ets.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

typedef struct death_case {
  keel_term heir; /* KEEL_NONE: no heir */
  keel_ets_tab tab;
  bool gone_at_down;      /* the table no longer existed at the 'DOWN' */
  bool heir_owns_at_down; /* or the heir owned it then */
  bool transfer_first;    /* 'ETS-TRANSFER' came before the 'DOWN' */
} death_case;

static void owner(keel_proc *self, void *arg) {
  death_case *c = arg;
  keel_ets_opts o = {.type = KEEL_ETS_SET,
                     .name = keel_atom("death_tab"),
                     .heir = c->heir,
                     .heir_data = keel_atom("yours")};
  cr_assert_eq(keel_ets_new(&o, &c->tab), KEEL_OK);
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  cr_assert_eq(
      keel_ets_insert(c->tab, keel_tuple(&h, 2, keel_small(1), keel_small(2))),
      KEEL_OK);
  signal_event();
  keel_term m; /* waits to be killed */
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

static void watcher(keel_proc *self, void *arg) {
  death_case *c = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term pid, ref, m;
  keel_spawn_opts so = {.monitor_ref = &ref, .monitor_heap = &h};
  if (c->heir == KEEL_ATOM(TRUE))
    c->heir = keel_self(self); /* this watcher is the heir */
  cr_assert_eq(keel_spawn_fiber(owner, c, &so, &pid), KEEL_OK);
  bool transfer_seen = false;
  for (;;) {
    if (keel_receive(self, NULL, NULL, 30000, &m) != KEEL_OK)
      break;
    if (keel_tuple_get(m, 0) == keel_atom("ETS-TRANSFER")) {
      transfer_seen = true;
      continue;
    }
    /* the 'DOWN' */
    keel_ets_info info;
    int rc = keel_ets_info_get(c->tab, &info);
    c->gone_at_down = rc != KEEL_OK;
    c->heir_owns_at_down = rc == KEEL_OK && info.owner == keel_self(self);
    c->transfer_first = transfer_seen;
    break;
  }
  keel_heap_destroy(&h);
  signal_event();
}

static void run_case(bool with_heir) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    death_case c = {.heir = with_heir ? KEEL_ATOM(TRUE) : KEEL_NONE};
    keel_term w;
    cr_assert_eq(keel_spawn_fiber(watcher, &c, NULL, &w), KEEL_OK);
    cr_assert(wait_events(1)); /* the owner made its table */
    keel_ets_tab t;
    cr_assert_eq(keel_ets_whereis(keel_atom("death_tab"), &t), KEEL_OK);
    /* The owner ends: its table goes (or passes on) with it. */
    keel_ets_info info;
    cr_assert_eq(keel_ets_info_get(t, &info), KEEL_OK);
    cr_assert_eq(keel_exit(info.owner, keel_atom("bye")), KEEL_OK);
    cr_assert(wait_events(2));
    if (with_heir) {
      cr_assert(c.heir_owns_at_down, "the heir owns it by the DOWN (%u)",
                sched_counts[k]);
      cr_assert(c.transfer_first, "'ETS-TRANSFER' before the 'DOWN'");
      /* The heir dies too (node stop): the table goes with it. */
    } else {
      cr_assert(c.gone_at_down, "deleted before the DOWN (%u)",
                sched_counts[k]);
      cr_assert_neq(keel_ets_whereis(keel_atom("death_tab"), &t), KEEL_OK);
    }
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    keel_ets_tab left;
    if (keel_ets_whereis(keel_atom("death_tab"), &left) == KEEL_OK)
      cr_assert_eq(keel_ets_delete(left), KEEL_OK); /* node stop keeps it */
  }
}

Test(ets_death, owner_death_deletes_its_table_before_down) {
  run_case(false);
}

Test(ets_death, owner_death_hands_the_table_to_its_heir) {
  run_case(true);
}

Test(ets_death, dead_owner_or_receiver_is_refused) {
  start_node(1, 0);
  keel_term dead;
  static death_case plain; /* outlives the fiber */
  memset(&plain, 0, sizeof plain);
  cr_assert_eq(keel_spawn_fiber(owner, &plain, NULL, &dead), KEEL_OK);
  cr_assert(wait_events(1));
  keel_ets_tab t;
  cr_assert_eq(keel_ets_whereis(keel_atom("death_tab"), &t), KEEL_OK);
  cr_assert_eq(keel_exit(dead, KEEL_ATOM(KILL)), KEEL_OK);
  while (keel_ets_whereis(keel_atom("death_tab"), &t) == KEEL_OK)
    sched_yield();
  keel_ets_opts o = {.owner = dead};
  keel_ets_tab t2;
  cr_assert_eq(keel_ets_new(&o, &t2), KEEL_EBADARG, "a dead owner");
  keel_ets_tab mine;
  cr_assert_eq(keel_ets_new(NULL, &mine), KEEL_OK); /* no owner: a thread */
  cr_assert_eq(keel_ets_give_away(mine, dead, KEEL_ATOM(OK)), KEEL_EBADARG,
               "a dead receiver");
  cr_assert_eq(keel_ets_delete(mine), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
