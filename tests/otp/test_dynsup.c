/* Dynamic supervisors (keel/dynamic_supervisor.h): extra arguments,
 * max_children, restart types, the child API by pid, and all-at-once
 * shutdown (on virtual time). The intent of Elixir's
 * dynamic_supervisor_test.exs cases, listed in
 * docs/behaviours/supervisor.md. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "keel/dynamic_supervisor.h"
#include "keel/signals.h"
#include "otp/sup_test.h"
#include "runtime/rt_test.h"

static size_t active(keel_term sup) {
  keel_sup_counts n;
  cr_assert_eq(keel_sup_count_children(sup, &n), KEEL_OK);
  cr_assert_eq(n.specs, n.active); /* dynamic children always run */
  return n.active;
}

static bool has_child(keel_term sup, keel_term pid) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term l;
  bool found = false;
  cr_assert_eq(keel_sup_which_children(sup, &h, &l), KEEL_OK);
  for (; keel_is_cons(l); l = keel_tl(l)) {
    keel_term t = keel_hd(l);
    cr_assert_eq(keel_tuple_get(t, 0), KEEL_ATOM(UNDEFINED));
    cr_assert_eq(keel_tuple_get(t, 2), keel_atom("worker"));
    found |= keel_tuple_get(t, 1) == pid;
  }
  keel_heap_destroy(&h);
  return found;
}

static bool starts_reached(void *arg) {
  wcfg *w = arg;
  return atomic_load(&w->starts) >= w->want;
}

Test(dynsup, extra_arguments_and_max_children) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term extra = keel_build(&h, "[x, 42]");
    wcfg w = {.tag = 'w', .expect_extra = extra};
    keel_dynsup_spec ds = KEEL_DYNSUP_SPEC_INIT;
    ds.extra_args = extra;
    ds.max_children = 2;
    keel_term sup, p1, p2;
    cr_assert_eq(keel_dynsup_start_link(&ds, &sup), KEEL_OK);
    keel_sup_child_spec cs = worker_spec(&w);
    cr_assert_eq(keel_dynsup_start_child(sup, &cs, &p1), KEEL_OK);
    cr_assert_eq(keel_dynsup_start_child(sup, &cs, &p2), KEEL_OK);
    cr_assert_neq(p1, p2);
    keel_sup_child_spec got; /* get_childspec by pid (ids are undefined) */
    cr_assert_eq(keel_sup_get_childspec(sup, p2, &h, &got), KEEL_OK);
    cr_assert(got.arg == (void *)&w && got.id == KEEL_ATOM(UNDEFINED));
    cr_assert_eq(keel_sup_get_childspec(sup, keel_atom("w"), &h, &got),
                 KEEL_ENOENT);
    cr_assert_eq(keel_dynsup_start_child(sup, &cs, NULL), KEEL_ELIMIT);
    cr_assert_eq(active(sup), 2);
    cr_assert(has_child(sup, p1) && has_child(sup, p2));
    cr_assert_eq(keel_sup_terminate_child(sup, p1), KEEL_OK);
    cr_assert_eq(keel_sup_terminate_child(sup, p1), KEEL_ENOENT);
    cr_assert(!has_child(sup, p1));
    cr_assert_eq(keel_dynsup_start_child(sup, &cs, NULL), KEEL_OK);
    cr_assert_eq(active(sup), 2);
    cr_assert_eq(atomic_load(&w.starts), 3);
    /* extra arguments the start function does not expect: its error */
    wcfg other = {.tag = 'o', .expect_extra = KEEL_NIL};
    keel_sup_child_spec co = worker_spec(&other);
    cr_assert_eq(keel_sup_terminate_child(sup, p2), KEEL_OK);
    cr_assert_eq(keel_dynsup_start_child(sup, &co, NULL), KEEL_EBADARG);
    cr_assert_eq(active(sup), 1);
    /* static-only requests */
    cr_assert_eq(keel_sup_restart_child(sup, p2, NULL), KEEL_ESTATE);
    cr_assert_eq(keel_sup_delete_child(sup, p2), KEEL_ESTATE);
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    keel_heap_destroy(&h);
    ds.extra_args = keel_small(1); /* not a list */
    cr_assert_eq(keel_dynsup_start_link(&ds, NULL), KEEL_EINVAL);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(dynsup, restart_types_and_ignore) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    log_reset();
    wcfg wp = {.tag = 'p'}, wt = {.tag = 't'}, wr = {.tag = 'r'};
    wcfg wi = {.tag = 'i', .ignore = true};
    keel_dynsup_spec ds = KEEL_DYNSUP_SPEC_INIT;
    keel_term sup, pp, pt, pr;
    cr_assert_eq(keel_dynsup_start_link(&ds, &sup), KEEL_OK);
    keel_sup_child_spec cp = worker_spec(&wp), ct = worker_spec(&wt);
    keel_sup_child_spec cr = worker_spec(&wr), ci = worker_spec(&wi);
    ct.restart = KEEL_SUP_TRANSIENT;
    cr.restart = KEEL_SUP_TEMPORARY;
    cr_assert_eq(keel_dynsup_start_child(sup, &cp, &pp), KEEL_OK);
    cr_assert_eq(keel_dynsup_start_child(sup, &ct, &pt), KEEL_OK);
    cr_assert_eq(keel_dynsup_start_child(sup, &cr, &pr), KEEL_OK);
    cr_assert_eq(keel_dynsup_start_child(sup, &ci, NULL), KEEL_SUP_IGNORE);
    cr_assert_eq(active(sup), 3);
    keel_send(pp, keel_atom("crash")); /* permanent: a new pid */
    wp.want = 2;
    cr_assert(wait_until(starts_reached, &wp));
    cr_assert(wait_log("+p+t+r-p+p"));
    cr_assert(!has_child(sup, pp));
    keel_send(pr, keel_atom("crash")); /* temporary: removed */
    cr_assert(wait_log("+p+t+r-p+p-r"));
    keel_send(pt, keel_atom("crash")); /* transient, abnormal: again */
    cr_assert(wait_log("+p+t+r-p+p-r-t+t"));
    cr_assert_eq(active(sup), 2);
    cr_assert(!has_child(sup, pt));
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    /* stopped together: in any order */
    const char *l = log_get();
    cr_assert(strcmp(l, "+p+t+r-p+p-r-t+t-p-t") == 0 ||
                  strcmp(l, "+p+t+r-p+p-r-t+t-t-p") == 0,
              "%s", l);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* Three children that must be killed after 500 ms each: stopping the
 * supervisor waits for them together (about 500 virtual ms), not one
 * after the other (1500). */
Test(dynsup, stop_shuts_children_down_together) {
  for (uint64_t seed = sim_seed_first(), e = seed + sim_seed_count(); seed < e;
       seed++) {
    start_sim(seed);
    log_reset();
    wcfg w = {.tag = 'd', .trap = true, .deaf = true};
    keel_dynsup_spec ds = KEEL_DYNSUP_SPEC_INIT;
    keel_term sup;
    cr_assert_eq(keel_dynsup_start_link(&ds, &sup), KEEL_OK);
    keel_sup_child_spec cs = worker_spec(&w);
    cs.shutdown = 500;
    for (int i = 0; i < 3; i++)
      cr_assert_eq(keel_dynsup_start_child(sup, &cs, NULL), KEEL_OK);
    uint64_t t0 = keel_sim_time_ms();
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
    uint64_t dt = keel_sim_time_ms() - t0;
    cr_assert(dt >= 500 && dt < 1000, "stop took %llu ms",
              (unsigned long long)dt);
    cr_assert_eq(atomic_load(&w.got_shutdown), 3);
    cr_assert_str_eq(log_get(), "+d+d+d-d-d-d");
    stop_sim();
  }
}

static bool none_left(void *arg) {
  (void)arg;
  keel_node_stats st;
  return keel_node_stats_get(&st) == KEEL_OK && st.processes == 0;
}

typedef struct part_probe {
  keel_term name, key, old;
} part_probe;

static bool partition_back(void *arg) {
  part_probe *p = arg;
  keel_term now;
  return keel_partsup_whereis(p->name, p->key, 4, &now) == KEEL_OK &&
         now != p->old;
}

Test(dynsup, partition_supervisor_routes_keys_and_restarts_partitions) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_heap h;
    keel_heap_init(&h);
    keel_term extra = keel_build(&h, "[p]");
    wcfg w = {.tag = 'w', .expect_extra = extra};
    keel_partsup_spec ps = {.version = KEEL_SUP_VERSION,
                            .name = keel_atom("parts"),
                            .partitions = 4,
                            .child = KEEL_DYNSUP_SPEC_INIT};
    ps.child.extra_args = extra;
    keel_term top;
    cr_assert_eq(keel_partsup_start_link(&ps, &top), KEEL_OK);
    cr_assert_eq(keel_whereis(keel_atom("parts")), top);
    cr_assert_eq(keel_partsup_partitions(keel_atom("parts")), 4);
    keel_term seen[4] = {0};
    size_t nseen = 0;
    keel_sup_child_spec cs = worker_spec(&w);
    for (int i = 0; i < 40; i++) {
      keel_term key = keel_small(i), d, d2;
      cr_assert_eq(keel_partsup_whereis(keel_atom("parts"), key, 4, &d),
                   KEEL_OK);
      cr_assert_eq(keel_partsup_whereis(keel_atom("parts"), key, 4, &d2),
                   KEEL_OK);
      cr_assert_eq(d, d2); /* a key always maps to one partition */
      bool known = false;
      for (size_t j = 0; j < nseen; j++)
        known |= seen[j] == d;
      if (!known) {
        cr_assert_lt(nseen, 4);
        seen[nseen++] = d;
      }
      cr_assert_eq(keel_dynsup_start_child(d, &cs, NULL), KEEL_OK);
    }
    cr_assert_geq(nseen, 2);
    size_t total = 0;
    for (size_t j = 0; j < nseen; j++) {
      keel_sup_counts n;
      cr_assert_eq(keel_sup_count_children(seen[j], &n), KEEL_OK);
      total += n.active;
    }
    cr_assert_eq(total, 40);
    /* a killed partition is restarted (empty) under its name */
    part_probe pp = {keel_atom("parts"), keel_small(0), KEEL_NONE};
    cr_assert_eq(keel_partsup_whereis(pp.name, pp.key, 4, &pp.old), KEEL_OK);
    cr_assert_eq(keel_exit(pp.old, KEEL_ATOM(KILL)), KEEL_OK);
    cr_assert(wait_until(partition_back, &pp));
    cr_assert_eq(keel_sup_stop(keel_atom("parts")), KEEL_OK);
    cr_assert(wait_until(none_left, NULL));
    cr_assert_eq(keel_partsup_whereis(pp.name, pp.key, 4, &pp.old),
                 KEEL_ENOPROC);
    ps.name = KEEL_NONE;
    cr_assert_eq(keel_partsup_start_link(&ps, NULL), KEEL_EINVAL);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
