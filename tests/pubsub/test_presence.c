/* Presence (PR1, PR2 on one node): track, update, untrack, list and
 * get_by_key with several metas per key, phx_ref, the presence_diff
 * messages' contents, and untrack at death. 1, 2 and 8 schedulers. */
#include <criterion/criterion.h>

#include "keel/presence.h"
#include "pubsub/ps_test.h"

/* The metas under key in a Key => [Meta] map ([] when absent). */
static keel_term metas_of(keel_term map, keel_term key) {
  keel_term l;
  return keel_map_get(map, key, &l) == KEEL_OK ? l : KEEL_NIL;
}

static size_t len(keel_term l) {
  size_t n = 0;
  cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
  return n;
}

static keel_term field(keel_term meta, const char *k) {
  keel_term v = KEEL_NONE;
  (void)keel_map_get(meta, keel_atom(k), &v);
  return v;
}

/* Asserts d is {presence_diff, Topic, Joins, Leaves} with the given
 * number of keys in joins and leaves. */
static void check_diff(keel_term d, keel_term topic, size_t nj, size_t nl) {
  cr_assert(keel_is_tuple(d) && keel_tuple_arity(d) == 4);
  cr_assert_eq(keel_tuple_get(d, 0), keel_atom("presence_diff"));
  cr_assert(keel_eq_exact(keel_tuple_get(d, 1), topic));
  cr_assert_eq(keel_map_size(keel_tuple_get(d, 2)), nj);
  cr_assert_eq(keel_map_size(keel_tuple_get(d, 3)), nl);
}

Test(presence, track_update_untrack_and_diffs) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps;
    cr_assert_eq(keel_pubsub_start(NULL, &ps), KEEL_OK);
    keel_presence pr;
    cr_assert_eq(keel_presence_start(ps, &pr), KEEL_OK);
    sub_state *watcher = sub_new(ps);
    sub_state *u1 = sub_new(ps), *u2 = sub_new(ps);
    keel_heap h;
    keel_heap_init(&h);
    keel_term topic = keel_build(&h, "<<\"room:1\">>");
    keel_term alice = keel_atom("alice");
    cr_assert_eq(sub_subscribe(watcher, topic, KEEL_NONE), KEEL_OK);
    keel_term ref1, ref2;
    keel_term meta = keel_build(&h, "#{status => away}");
    cr_assert_eq(
        keel_presence_track(pr, u1->pid, topic, alice, meta, &h, &ref1),
        KEEL_OK);
    cr_assert(keel_is_binary(ref1));
    cr_assert_eq(keel_presence_track(pr, u1->pid, topic, alice, meta, &h, NULL),
                 KEEL_EEXIST);
    /* a second tab: another pid, same key */
    cr_assert_eq(
        keel_presence_track(pr, u2->pid, topic, alice, KEEL_NONE, &h, &ref2),
        KEEL_OK);
    cr_assert(!keel_eq_exact(ref1, ref2), "refs are unique");
    keel_term l;
    cr_assert_eq(keel_presence_list(pr, topic, &h, &l), KEEL_OK);
    cr_assert_eq(keel_map_size(l), 1);
    cr_assert_eq(len(metas_of(l, alice)), 2, "several metas per key");
    cr_assert_eq(keel_presence_get_by_key(pr, topic, alice, &h, &l), KEEL_OK);
    cr_assert_eq(len(l), 2);
    /* diffs: two joins */
    cr_assert(sub_wait(watcher, 2));
    keel_term d = sub_log(watcher, 0);
    check_diff(d, topic, 1, 0);
    keel_term jm = keel_hd(metas_of(keel_tuple_get(d, 2), alice));
    cr_assert_eq(field(jm, "status"), keel_atom("away"));
    cr_assert(keel_eq_exact(field(jm, "phx_ref"), ref1));
    /* update: a leave of the old meta and a join of the new one */
    keel_term ref3;
    cr_assert_eq(keel_presence_update(pr, u1->pid, topic, alice,
                                      keel_build(&h, "#{status => online}"), &h,
                                      &ref3),
                 KEEL_OK);
    cr_assert(sub_wait(watcher, 3));
    d = sub_log(watcher, 2);
    check_diff(d, topic, 1, 1);
    jm = keel_hd(metas_of(keel_tuple_get(d, 2), alice));
    keel_term lm = keel_hd(metas_of(keel_tuple_get(d, 3), alice));
    cr_assert_eq(field(jm, "status"), keel_atom("online"));
    cr_assert(keel_eq_exact(field(jm, "phx_ref"), ref3));
    cr_assert(keel_eq_exact(field(jm, "phx_ref_prev"), ref1));
    cr_assert_eq(field(lm, "status"), keel_atom("away"));
    cr_assert(keel_eq_exact(field(lm, "phx_ref"), ref1));
    cr_assert_eq(keel_presence_update(pr, u1->pid, topic, keel_atom("bob"),
                                      KEEL_NONE, &h, NULL),
                 KEEL_ENOENT);
    /* untrack: a leave with the current meta */
    cr_assert_eq(keel_presence_untrack(pr, u1->pid, topic, alice), KEEL_OK);
    cr_assert(sub_wait(watcher, 4));
    d = sub_log(watcher, 3);
    check_diff(d, topic, 0, 1);
    lm = keel_hd(metas_of(keel_tuple_get(d, 3), alice));
    cr_assert(keel_eq_exact(field(lm, "phx_ref"), ref3));
    cr_assert_eq(keel_presence_untrack(pr, u1->pid, topic, alice), KEEL_OK,
                 "not tracked: still ok");
    cr_assert_eq(keel_presence_list(pr, topic, &h, &l), KEEL_OK);
    cr_assert_eq(len(metas_of(l, alice)), 1);
    /* bad arguments */
    cr_assert_eq(keel_presence_track(pr, keel_small(1), topic, alice, KEEL_NONE,
                                     NULL, NULL),
                 KEEL_EBADARG);
    cr_assert_eq(keel_presence_track(pr, u1->pid, topic, alice, keel_small(1),
                                     NULL, NULL),
                 KEEL_EBADARG, "meta must be a map");
    cr_assert_eq(keel_presence_stop(pr), KEEL_OK);
    cr_assert_eq(keel_presence_list(pr, topic, &h, &l), KEEL_EBADARG);
    cr_assert_eq(keel_presence_stop(pr), KEEL_EBADARG);
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(sub_nlog(watcher), 4, "one diff per change");
    keel_heap_destroy(&h);
    sub_free(watcher);
    sub_free(u1);
    sub_free(u2);
  }
}

static bool list_empty(void *arg) {
  void **a = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term l;
  bool e = keel_presence_list(*(keel_presence *)a[0], *(keel_term *)a[1], &h,
                              &l) == KEEL_OK &&
           keel_map_size(l) == 0;
  keel_heap_destroy(&h);
  return e;
}

Test(presence, death_untracks_with_leaves) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps;
    cr_assert_eq(keel_pubsub_start(NULL, &ps), KEEL_OK);
    keel_presence pr;
    cr_assert_eq(keel_presence_start(ps, &pr), KEEL_OK);
    sub_state *w = sub_new(ps), *u = sub_new(ps);
    keel_term t1 = keel_atom("t1"), t2 = keel_atom("t2");
    cr_assert_eq(sub_subscribe(w, t1, KEEL_NONE), KEEL_OK);
    cr_assert_eq(sub_subscribe(w, t2, KEEL_NONE), KEEL_OK);
    cr_assert_eq(keel_presence_track(pr, u->pid, t1, keel_atom("a"), KEEL_NONE,
                                     NULL, NULL),
                 KEEL_OK);
    cr_assert_eq(keel_presence_track(pr, u->pid, t1, keel_atom("b"), KEEL_NONE,
                                     NULL, NULL),
                 KEEL_OK);
    cr_assert_eq(keel_presence_track(pr, u->pid, t2, keel_atom("a"), KEEL_NONE,
                                     NULL, NULL),
                 KEEL_OK);
    cr_assert(sub_wait(w, 3));
    cr_assert_eq(keel_exit(u->pid, keel_atom("kill")), KEEL_OK);
    void *a1[2] = {&pr, &t1}, *a2[2] = {&pr, &t2};
    cr_assert(wait_until(list_empty, a1) && wait_until(list_empty, a2));
    cr_assert(sub_wait(w, 5), "one leave diff per topic");
    size_t left_t1 = 0, left_t2 = 0;
    for (size_t i = 3; i < 5; i++) {
      keel_term d = sub_log(w, i);
      cr_assert_eq(keel_tuple_get(d, 0), keel_atom("presence_diff"));
      cr_assert_eq(keel_map_size(keel_tuple_get(d, 2)), 0);
      if (keel_tuple_get(d, 1) == t1)
        left_t1 = keel_map_size(keel_tuple_get(d, 3));
      else
        left_t2 = keel_map_size(keel_tuple_get(d, 3));
    }
    cr_assert_eq(left_t1, 2);
    cr_assert_eq(left_t2, 1);
    cr_assert_eq(keel_presence_track(pr, u->pid, t1, keel_atom("a"), KEEL_NONE,
                                     NULL, NULL),
                 KEEL_ENOPROC, "a dead pid is not tracked");
    cr_assert(list_empty(a1));
    cr_assert_eq(keel_presence_stop(pr), KEEL_OK);
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    sub_free(w);
    sub_free(u);
  }
}

/* ---- concurrent changes: diffs replayed in arrival order rebuild the
 * state (every leave follows its join) ---- */

#define PFIBERS 8
#define POPS 40

typedef struct pchurn {
  keel_presence pr;
  keel_term topic;
  _Atomic long diffs;
  _Atomic int done;
} pchurn;

typedef struct pchurn_arg {
  pchurn *c;
  int id;
} pchurn_arg;

static void presence_churner(keel_proc *self, void *arg) {
  pchurn_arg *a = arg;
  pchurn *c = a->c;
  keel_term me = keel_self(self);
  bool tracked[3] = {false, false, false};
  for (int i = 0; i < POPS; i++) {
    int k = i % 3;
    keel_term key = keel_small(a->id * 10 + k);
    int rc;
    if (!tracked[k]) {
      rc = keel_presence_track(c->pr, me, c->topic, key, KEEL_NONE, NULL, NULL);
      tracked[k] = rc == KEEL_OK;
    } else if (i % 2 == 0) {
      rc =
          keel_presence_update(c->pr, me, c->topic, key, KEEL_NONE, NULL, NULL);
    } else {
      rc = keel_presence_untrack(c->pr, me, c->topic, key);
      tracked[k] = false;
    }
    if (rc == KEEL_OK)
      atomic_fetch_add(&c->diffs, 1);
  }
  /* dies holding what is still tracked: one leave diff for all of it */
  if (tracked[0] || tracked[1] || tracked[2])
    atomic_fetch_add(&c->diffs, 1);
  atomic_fetch_add(&c->done, 1);
}

static bool churners_done(void *arg) {
  return atomic_load(&((pchurn *)arg)->done) == PFIBERS;
}

/* Applies one diff's leaves then joins to refs (a list of phx_refs,
 * rebuilt in h); fails when a leave names a ref that is not present or a
 * join one that is. */
static keel_term apply_diff(keel_heap *h, keel_term refs, keel_term d) {
  for (int side = 3; side >= 2; side--) {
    keel_term m = keel_tuple_get(d, (size_t)side);
    for (size_t i = 0; i < keel_map_size(m); i++) {
      keel_term key, metas;
      keel_map_at(m, i, &key, &metas);
      for (; keel_is_cons(metas); metas = keel_tl(metas)) {
        keel_term ref = field(keel_hd(metas), "phx_ref");
        keel_term out = KEEL_NIL;
        bool found = false;
        for (keel_term l = refs; keel_is_cons(l); l = keel_tl(l))
          if (!found && keel_eq_exact(keel_hd(l), ref))
            found = true;
          else
            out = keel_cons(h, keel_hd(l), out);
        cr_assert_eq(found, side == 3, "a %s out of order",
                     side == 3 ? "leave" : "join");
        refs = side == 2 ? keel_cons(h, ref, out) : out;
      }
    }
  }
  return refs;
}

Test(presence, concurrent_diffs_replay_in_order) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_pubsub ps;
    cr_assert_eq(keel_pubsub_start(NULL, &ps), KEEL_OK);
    pchurn c = {.topic = keel_atom("lobby")};
    atomic_init(&c.diffs, 0);
    atomic_init(&c.done, 0);
    cr_assert_eq(keel_presence_start(ps, &c.pr), KEEL_OK);
    sub_state *w = sub_new(ps);
    cr_assert_eq(sub_subscribe(w, c.topic, KEEL_NONE), KEEL_OK);
    pchurn_arg args[PFIBERS];
    for (int i = 0; i < PFIBERS; i++) {
      args[i] = (pchurn_arg){&c, i};
      cr_assert_eq(keel_spawn_fiber(presence_churner, &args[i], NULL, NULL),
                   KEEL_OK);
    }
    cr_assert(wait_until(churners_done, &c));
    void *a[2] = {&c.pr, &c.topic};
    cr_assert(wait_until(list_empty, a), "the dead are untracked");
    cr_assert(sub_wait(w, atomic_load(&c.diffs)));
    keel_heap h;
    keel_heap_init(&h);
    keel_term refs = KEEL_NIL;
    for (size_t i = 0; i < (size_t)atomic_load(&c.diffs); i++) {
      keel_term d = sub_log(w, i);
      cr_assert_neq(d, KEEL_NONE, "diff %zu of %ld: logged %zu", i,
                    atomic_load(&c.diffs), sub_nlog(w));
      refs = apply_diff(&h, refs, d);
    }
    cr_assert_eq(refs, KEEL_NIL, "the replayed state is empty, as list is");
    cr_assert_eq(keel_presence_stop(c.pr), KEEL_OK);
    cr_assert_eq(keel_pubsub_stop(ps), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(sub_nlog(w), (size_t)atomic_load(&c.diffs),
                 "no diff beyond the changes");
    keel_heap_destroy(&h);
    sub_free(w);
  }
}
