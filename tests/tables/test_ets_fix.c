/* safe_fixtable: fixations counted per fixer, shown by keel_ets_safe_fixed,
 * released by their process's death; and traversals (first/next and
 * chunked selects) of fixed tables while writer threads insert and delete
 * other keys and make the table grow: every key present throughout is seen
 * exactly once and no key (no object) twice. Processes run on 1, 2 and 8
 * schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keel/ets.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

static keel_ets_tab new_tab(keel_ets_type ty, keel_ets_access acc) {
  keel_ets_opts o = {.type = ty, .access = acc};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  return t;
}

/* The [{Pid, Count}] of keel_ets_safe_fixed, or [] when not fixed. */
static keel_term fixers(keel_ets_tab t, keel_heap *h) {
  keel_term f;
  cr_assert_eq(keel_ets_safe_fixed(t, h, &f), KEEL_OK);
  if (f == KEEL_ATOM(FALSE))
    return KEEL_NIL;
  cr_assert(keel_is_tuple(f) && keel_tuple_arity(f) == 2);
  cr_assert(keel_is_integer(keel_tuple_get(f, 0)));
  return keel_tuple_get(f, 1);
}

/* Count of fixer pid in the list (0 when absent). */
static int64_t count_of(keel_term l, keel_term pid) {
  for (; keel_is_cons(l); l = keel_tl(l))
    if (keel_tuple_get(keel_hd(l), 0) == pid)
      return keel_small_value(keel_tuple_get(keel_hd(l), 1));
  return 0;
}

Test(ets_fix, fixations_are_counted_and_released) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, KEEL_ETS_PROTECTED);
  keel_heap h;
  keel_heap_init(&h);
  keel_term f;
  cr_assert_eq(keel_ets_safe_fixed(t, &h, &f), KEEL_OK);
  cr_assert_eq(f, KEEL_ATOM(FALSE));
  cr_assert_eq(keel_ets_safe_fixtable(t, true), KEEL_OK);
  cr_assert_eq(keel_ets_safe_fixtable(t, true), KEEL_OK);
  keel_term l = fixers(t, &h);
  cr_assert(keel_eq_exact(l, keel_build(&h, "[{undefined, 2}]")));
  cr_assert_eq(keel_ets_safe_fixtable(t, false), KEEL_OK);
  cr_assert_eq(count_of(fixers(t, &h), KEEL_ATOM(UNDEFINED)), 1);
  cr_assert_eq(keel_ets_safe_fixtable(t, false), KEEL_OK);
  cr_assert_eq(keel_ets_safe_fixed(t, &h, &f), KEEL_OK);
  cr_assert_eq(f, KEEL_ATOM(FALSE), "released");
  cr_assert_eq(keel_ets_safe_fixtable(t, false), KEEL_OK, "nothing held");
  cr_assert_eq(keel_ets_safe_fixed(t, &h, &f), KEEL_OK);
  cr_assert_eq(f, KEEL_ATOM(FALSE));
  /* A table deleted while fixed. */
  cr_assert_eq(keel_ets_safe_fixtable(t, true), KEEL_OK);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  cr_assert_eq(keel_ets_safe_fixtable(t, false), KEEL_EBADARG);
  cr_assert_eq(keel_ets_safe_fixed(t, &h, &f), KEEL_EBADARG);
  cr_assert_eq(keel_ets_safe_fixed(t, NULL, &f), KEEL_EINVAL);
  keel_heap_destroy(&h);
}

Test(ets_fix, a_fixed_table_works_and_deletes_at_once) {
  keel_ets_tab t = new_tab(KEEL_ETS_BAG, KEEL_ETS_PUBLIC);
  keel_heap h;
  keel_heap_init(&h);
  cr_assert_eq(keel_ets_safe_fixtable(t, true), KEEL_OK);
  for (int64_t k = 0; k < 2000; k++) /* grows while fixed */
    cr_assert_eq(
        keel_ets_insert(t, keel_tuple(&h, 2, keel_small(k), keel_small(k))),
        KEEL_OK);
  cr_assert_eq(keel_ets_delete_key(t, keel_small(7)), KEEL_OK);
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.size, 1999, "a deletion is not deferred");
  cr_assert_eq(keel_ets_member(t, keel_small(7)), 0);
  /* next of the deleted key continues (no badarg) */
  keel_term k;
  int rc = keel_ets_next(t, keel_small(7), &h, &k);
  cr_assert(rc == 0 || rc == 1);
  cr_assert_eq(keel_ets_safe_fixtable(t, false), KEEL_OK);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

/* ---- processes ---- */

typedef struct fixer_arg {
  keel_ets_tab tab; /* 0: make a table of its own and fix that */
  int fixes, unfixes;
  int rc;
  keel_ets_tab own;
} fixer_arg;

/* Fixes (and unfixes) as told, reports, then waits to be killed. */
static void fixer(keel_proc *self, void *arg) {
  fixer_arg *a = arg;
  keel_ets_tab t = a->tab;
  if (t == 0) {
    keel_ets_opts o = {.access = KEEL_ETS_PUBLIC};
    a->rc = keel_ets_new(&o, &a->own);
    t = a->own;
  }
  for (int i = 0; i < a->fixes && a->rc == KEEL_OK; i++)
    a->rc = keel_ets_safe_fixtable(t, true);
  for (int i = 0; i < a->unfixes && a->rc == KEEL_OK; i++)
    a->rc = keel_ets_safe_fixtable(t, false);
  signal_event();
  keel_term m;
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

typedef struct gone_arg {
  keel_ets_tab t;
  keel_term pid;
} gone_arg;

static bool fixation_gone(void *arg) {
  gone_arg *g = arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term f;
  bool gone =
      keel_ets_safe_fixed(g->t, &h, &f) == KEEL_OK &&
      (f == KEEL_ATOM(FALSE) || count_of(keel_tuple_get(f, 1), g->pid) == 0);
  keel_heap_destroy(&h);
  return gone;
}

static bool table_gone(void *arg) {
  keel_ets_info in;
  return keel_ets_info_get(*(keel_ets_tab *)arg, &in) == KEEL_EBADARG;
}

Test(ets_fix, a_fixer_death_releases_its_fixations) {
  for (size_t k = 0; k < NCONF; k++) {
    start_node(sched_counts[k], 0);
    keel_ets_tab t = new_tab(KEEL_ETS_SET, KEEL_ETS_PUBLIC);
    cr_assert_eq(keel_ets_safe_fixtable(t, true), KEEL_OK); /* this thread */
    static fixer_arg a, b, c;
    a = (fixer_arg){.tab = t, .fixes = 2};
    b = (fixer_arg){.tab = t, .fixes = 3, .unfixes = 3};
    c = (fixer_arg){.fixes = 1}; /* fixes its own table */
    keel_term pa, pb, pc;
    cr_assert_eq(keel_spawn_fiber(fixer, &a, NULL, &pa), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(fixer, &b, NULL, &pb), KEEL_OK);
    cr_assert_eq(keel_spawn_fiber(fixer, &c, NULL, &pc), KEEL_OK);
    cr_assert(wait_events(3));
    cr_assert_eq(a.rc, KEEL_OK);
    cr_assert_eq(b.rc, KEEL_OK);
    cr_assert_eq(c.rc, KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term l = fixers(t, &h);
    cr_assert_eq(count_of(l, pa), 2, "%u schedulers", sched_counts[k]);
    cr_assert_eq(count_of(l, pb), 0, "released by itself");
    cr_assert_eq(count_of(l, KEEL_ATOM(UNDEFINED)), 1);
    cr_assert_eq(count_of(fixers(c.own, &h), pc), 1);
    cr_assert_eq(keel_exit(pa, KEEL_ATOM(KILL)), KEEL_OK);
    gone_arg g = {t, pa};
    cr_assert(wait_until(fixation_gone, &g), "death releases (%u)",
              sched_counts[k]);
    cr_assert_eq(count_of(fixers(t, &h), KEEL_ATOM(UNDEFINED)), 1,
                 "other fixers keep theirs");
    /* An owner that dies while it fixes its own table: the table goes. */
    cr_assert_eq(keel_exit(pc, keel_atom("bye")), KEEL_OK);
    cr_assert(wait_until(table_gone, &c.own));
    cr_assert_eq(keel_ets_safe_fixtable(t, false), KEEL_OK);
    keel_term f;
    cr_assert_eq(keel_ets_safe_fixed(t, &h, &f), KEEL_OK);
    cr_assert_eq(f, KEEL_ATOM(FALSE));
    keel_heap_destroy(&h);
    cr_assert_eq(keel_exit(pb, KEEL_ATOM(KILL)), KEEL_OK);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  }
}

static void try_fix_private(keel_proc *self, void *arg) {
  (void)self;
  fixer_arg *a = arg;
  a->rc = keel_ets_safe_fixtable(a->tab, true);
  signal_event();
}

Test(ets_fix, fixing_needs_read_access) {
  start_node(2, 0);
  keel_ets_tab t = new_tab(KEEL_ETS_SET, KEEL_ETS_PRIVATE);
  static fixer_arg a;
  a = (fixer_arg){.tab = t, .rc = 1};
  keel_term p;
  cr_assert_eq(keel_spawn_fiber(try_fix_private, &a, NULL, &p), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(a.rc, KEEL_EBADARG, "a private table of another owner");
  keel_heap h;
  keel_heap_init(&h);
  keel_term f;
  cr_assert_eq(keel_ets_safe_fixed(t, &h, &f), KEEL_OK);
  cr_assert_eq(f, KEEL_ATOM(FALSE));
  keel_heap_destroy(&h);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

/* ---- fixed traversals under concurrent writers ---- */

#define STABLE 1500
#define VOLATILE 6000
#define VALS 4
#define NWRITERS 3

typedef struct stress {
  keel_ets_tab tab;
  keel_ets_type type;
  _Atomic bool stop;
  bool ok;
  char why[160];
  uint8_t *seen_key; /* STABLE + VOLATILE */
  uint8_t *seen_obj; /* (STABLE + VOLATILE) * VALS */
  _Atomic long writes, write_errors;
} stress;

typedef struct writer_arg {
  stress *s;
  uint64_t seed;
} writer_arg;

static void *writer(void *arg) {
  writer_arg *w = arg;
  uint64_t x = w->seed;
  uint64_t buf[8];
  keel_heap h;
  while (!atomic_load(&w->s->stop)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t k = STABLE + (int64_t)(x % VOLATILE);
    keel_heap_init_fixed(&h, buf, 8);
    if ((x >> 32) % 3 != 0) {
      keel_term o = keel_tuple(&h, 2, keel_small(k),
                               keel_small((int64_t)(x >> 40) % VALS));
      if (keel_ets_insert(w->s->tab, o) != KEEL_OK)
        atomic_fetch_add(&w->s->write_errors, 1);
    } else if (keel_ets_delete_key(w->s->tab, keel_small(k)) != KEEL_OK) {
      atomic_fetch_add(&w->s->write_errors, 1);
    }
    atomic_fetch_add(&w->s->writes, 1);
  }
  return NULL;
}

static void fail(stress *s, const char *why, int64_t k) {
  if (s->ok)
    snprintf(s->why, sizeof s->why, "%s (key %lld)", why, (long long)k);
  s->ok = false;
}

static void check_stable(stress *s, const char *what) {
  for (int64_t k = 0; k < STABLE; k++)
    if (s->seen_key[k] != 1)
      fail(s, what, k);
}

/* first/next over the fixed table. */
static void traverse_next(stress *s) {
  memset(s->seen_key, 0, STABLE + VOLATILE);
  keel_heap h;
  keel_heap_init(&h);
  keel_term k;
  int rc = keel_ets_first(s->tab, &h, &k);
  while (rc == 1) {
    int64_t kv = keel_small_value(k);
    if (s->seen_key[kv]++ != 0)
      fail(s, "next: a key twice", kv);
    rc = keel_ets_next(s->tab, k, &h, &k); /* small keys: h stays empty */
  }
  if (rc != 0)
    fail(s, "next failed", rc);
  keel_heap_destroy(&h);
  check_stable(s, "next: a stable key not seen exactly once");
}

/* select/3 + select/1 over the fixed table. */
static void traverse_select(stress *s) {
  memset(s->seen_key, 0, STABLE + VOLATILE);
  memset(s->seen_obj, 0, (STABLE + VOLATILE) * VALS);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = keel_build(&h, "[{'$1', [], ['$1']}]");
  keel_term out;
  keel_ets_cont *cont;
  int rc = keel_ets_select_limit(s->tab, spec, 7, &h, &out, &cont);
  bool one_per_key = s->type == KEEL_ETS_SET || s->type == KEEL_ETS_ORDERED_SET;
  while (rc == 1) {
    for (keel_term l = out; keel_is_cons(l); l = keel_tl(l)) {
      int64_t kv = keel_small_value(keel_tuple_get(keel_hd(l), 0));
      int64_t v = keel_small_value(keel_tuple_get(keel_hd(l), 1));
      if (s->seen_obj[kv * VALS + v]++ != 0 &&
          s->type != KEEL_ETS_DUPLICATE_BAG)
        fail(s, "select: an object twice", kv);
      if (s->seen_key[kv]++ != 0 && one_per_key)
        fail(s, "select: a key twice", kv);
    }
    keel_heap_destroy(&h);
    keel_heap_init(&h);
    rc = keel_ets_select_next(cont, &h, &out);
  }
  if (rc != 0)
    fail(s, "select failed", rc);
  keel_ets_cont_free(cont);
  keel_heap_destroy(&h);
  check_stable(s, "select: a stable key not seen exactly once");
}

static void traverser(keel_proc *self, void *arg) {
  (void)self;
  stress *s = arg;
  if (keel_ets_safe_fixtable(s->tab, true) != KEEL_OK)
    fail(s, "fix", 0);
  for (int r = 0; r < 4; r++) {
    traverse_next(s);
    traverse_select(s);
  }
  if (keel_ets_safe_fixtable(s->tab, false) != KEEL_OK)
    fail(s, "unfix", 0);
  signal_event();
}

static bool writers_busy(void *arg) {
  return atomic_load(&((stress *)arg)->writes) >= 1000;
}

static void stress_one(keel_ets_type ty, unsigned nsched) {
  start_node(nsched, 0);
  stress *s = calloc(1, sizeof *s);
  s->seen_key = calloc(STABLE + VOLATILE, 1);
  s->seen_obj = calloc((STABLE + VOLATILE) * VALS, 1);
  s->ok = true;
  s->type = ty;
  s->tab = new_tab(ty, KEEL_ETS_PUBLIC);
  uint64_t buf[8];
  keel_heap h;
  for (int64_t k = 0; k < STABLE; k++) {
    keel_heap_init_fixed(&h, buf, 8);
    cr_assert_eq(keel_ets_insert(
                     s->tab, keel_tuple(&h, 2, keel_small(k), keel_small(0))),
                 KEEL_OK);
  }
  pthread_t th[NWRITERS];
  writer_arg wa[NWRITERS];
  for (int i = 0; i < NWRITERS; i++) {
    wa[i] = (writer_arg){s, 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
    cr_assert_eq(pthread_create(&th[i], NULL, writer, &wa[i]), 0);
  }
  /* The writers are busy before the traversals start (on a loaded
   * machine the traversals could otherwise end before any write). */
  cr_assert(wait_until(writers_busy, s), "writers ran");
  keel_term p;
  cr_assert_eq(keel_spawn_fiber(traverser, s, NULL, &p), KEEL_OK);
  bool done = wait_events(1);
  atomic_store(&s->stop, true);
  for (int i = 0; i < NWRITERS; i++)
    pthread_join(th[i], NULL);
  cr_assert(done, "the traversal ended");
  cr_assert(s->ok, "type %d, %u schedulers: %s", (int)ty, nsched, s->why);
  cr_assert_eq(atomic_load(&s->write_errors), 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_ets_delete(s->tab), KEEL_OK);
  free(s->seen_key);
  free(s->seen_obj);
  free(s);
}

static void stress_type(keel_ets_type ty) {
  for (size_t k = 0; k < NCONF; k++)
    stress_one(ty, sched_counts[k]);
}

Test(ets_fix, fixed_set_traversals_under_writers, .timeout = 300) {
  stress_type(KEEL_ETS_SET);
}

Test(ets_fix, fixed_bag_traversals_under_writers, .timeout = 300) {
  stress_type(KEEL_ETS_BAG);
}

Test(ets_fix, fixed_duplicate_bag_traversals_under_writers, .timeout = 300) {
  stress_type(KEEL_ETS_DUPLICATE_BAG);
}

Test(ets_fix, fixed_ordered_set_traversals_under_writers, .timeout = 300) {
  stress_type(KEEL_ETS_ORDERED_SET);
}
