/* Tables: the order and multiset semantics of duplicate_bag (insertion
 * order of a key's objects through growth, deletes and re-inserts, as
 * Erlang's ets documents), duplicate_bag with any_order (every object
 * kept, any order, many objects under one key), the one-object insert
 * paths, keel_ets_lookup_elements and keel_ets_delete_by_element, and
 * threads appending under one key at once (also under TSan). Called
 * from threads that run no process. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "keel/ets.h"

static keel_heap H;

static void setup(void) {
  keel_heap_init(&H);
}
static void teardown(void) {
  keel_heap_destroy(&H);
  keel_ets_delete_all_tables();
  cr_assert_eq(keel_ets_count(), 0);
}

TestSuite(ets_dupbag, .init = setup, .fini = teardown);

static keel_term T(const char *text) {
  keel_term t;
  cr_assert_eq(keel_parse(&H, text, strlen(text), &t, NULL), KEEL_OK, "%s",
               text);
  return t;
}

static void assert_term(keel_term got, const char *want) {
  char *s = keel_print_alloc(got, NULL);
  cr_assert(keel_eq_exact(got, T(want)), "got %s, want %s", s, want);
  free(s);
}

static keel_ets_tab mk(keel_ets_type type, bool any_order) {
  keel_ets_opts o = {
      .type = type, .access = KEEL_ETS_PUBLIC, .any_order = any_order};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  return t;
}

static size_t size_of(keel_ets_tab t) {
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  return in.size;
}

/* The values (element 2) of the objects under key k, in lookup's order. */
static size_t values(keel_ets_tab t, keel_term k, int64_t *out, size_t cap) {
  keel_term l;
  cr_assert_eq(keel_ets_lookup(t, k, &H, &l), KEEL_OK);
  size_t n = 0;
  for (; keel_is_cons(l); l = keel_tl(l), n++) {
    cr_assert_lt(n, cap);
    cr_assert_eq(keel_tuple_get(keel_hd(l), 0), k);
    out[n] = keel_small_value(keel_tuple_get(keel_hd(l), 1));
  }
  return n;
}

/* Three keys interleaved, 3,000 objects (the stripes grow meanwhile), a
 * value deleted in the middle, then more inserts: each key's objects come
 * back in insertion order, from lookup and take, copies included. */
Test(ets_dupbag, insertion_order_through_growth_and_deletes) {
  keel_ets_tab t = mk(KEEL_ETS_DUPLICATE_BAG, false);
  enum { N = 3000, K = 3 };
  static int64_t model[K][N + 8];
  size_t mn[K] = {0};
  for (int i = 0; i < N; i++) {
    int k = i % K;
    int64_t v = i % 7 == 0 ? 7 : i; /* value 7 repeats (duplicates kept) */
    cr_assert_eq(keel_ets_insert(t, keel_build(&H, "{~i, ~i}", k, v)), KEEL_OK);
    model[k][mn[k]++] = v;
  }
  cr_assert_eq(size_of(t), N);
  /* delete_object removes every identical copy of {1, 7} */
  cr_assert_eq(keel_ets_delete_object(t, T("{1, 7}")), KEEL_OK);
  size_t w = 0;
  for (size_t i = 0; i < mn[1]; i++)
    if (model[1][i] != 7)
      model[1][w++] = model[1][i];
  mn[1] = w;
  /* a list insert keeps its order, after the objects already there */
  cr_assert_eq(keel_ets_insert(t, T("[{1, -1}, {1, -2}, {1, 7}, {1, -1}]")),
               KEEL_OK);
  model[1][mn[1]++] = -1;
  model[1][mn[1]++] = -2;
  model[1][mn[1]++] = 7;
  model[1][mn[1]++] = -1;
  static int64_t got[N + 8];
  for (int k = 0; k < K; k++) {
    size_t n = values(t, keel_small(k), got, N + 8);
    cr_assert_eq(n, mn[k], "key %d", k);
    for (size_t i = 0; i < n; i++)
      cr_assert_eq(got[i], model[k][i], "key %d at %zu", k, i);
  }
  cr_assert_eq(size_of(t), mn[0] + mn[1] + mn[2]);
  keel_term l;
  cr_assert_eq(keel_ets_take(t, keel_small(2), &H, &l), KEEL_OK);
  size_t i = 0;
  for (; keel_is_cons(l); l = keel_tl(l), i++)
    cr_assert_eq(keel_tuple_get(keel_hd(l), 1), keel_small(model[2][i]));
  cr_assert_eq(i, mn[2]);
  cr_assert_eq(keel_ets_member(t, keel_small(2)), 0);
  /* element lookup in the same order */
  cr_assert_eq(keel_ets_lookup_element(t, keel_small(0), 2, KEEL_NONE, &H, &l),
               KEEL_OK);
  for (i = 0; keel_is_cons(l); l = keel_tl(l), i++)
    cr_assert_eq(keel_hd(l), keel_small(model[0][i]));
  cr_assert_eq(i, mn[0]);
}

/* A bag keeps one of equal objects on the one-object insert path too,
 * and a duplicate_bag every copy. */
Test(ets_dupbag, one_object_inserts) {
  keel_ets_tab b = mk(KEEL_ETS_BAG, false);
  keel_ets_tab d = mk(KEEL_ETS_DUPLICATE_BAG, false);
  keel_ets_tab a = mk(KEEL_ETS_DUPLICATE_BAG, true);
  const char *objs[] = {"{k, \"s\", [1]}", "{k, 1}", "{k, \"s\", [1]}",
                        "{k, 1}", "{k, 2.5}"};
  for (size_t i = 0; i < 5; i++) {
    cr_assert_eq(keel_ets_insert(b, T(objs[i])), KEEL_OK);
    cr_assert_eq(keel_ets_insert(d, T(objs[i])), KEEL_OK);
    cr_assert_eq(keel_ets_insert(a, T(objs[i])), KEEL_OK);
  }
  keel_term l;
  cr_assert_eq(keel_ets_lookup(b, T("k"), &H, &l), KEEL_OK);
  assert_term(l, "[{k, \"s\", [1]}, {k, 1}, {k, 2.5}]");
  cr_assert_eq(keel_ets_lookup(d, T("k"), &H, &l), KEEL_OK);
  assert_term(l, "[{k, \"s\", [1]}, {k, 1}, {k, \"s\", [1]}, {k, 1}, "
                 "{k, 2.5}]");
  cr_assert_eq(size_of(a), 5);
  cr_assert_eq(keel_ets_delete_object(a, T("{k, \"s\", [1]}")), KEEL_OK);
  cr_assert_eq(size_of(a), 3, "both copies gone");
  /* insert_new of one object into a set, boxed and immediate */
  keel_ets_tab s = mk(KEEL_ETS_SET, false);
  cr_assert_eq(keel_ets_insert_new(s, T("{\"s\", [1]}")), 1);
  cr_assert_eq(keel_ets_insert_new(s, T("{\"s\", [2]}")), 0);
  cr_assert_eq(keel_ets_insert_new(s, T("{x, 1}")), 1);
  cr_assert_eq(keel_ets_insert_new(s, T("{x, 2}")), 0);
  cr_assert_eq(keel_ets_insert_new(s, T("{}")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup(s, T("\"s\""), &H, &l), KEEL_OK);
  assert_term(l, "[{\"s\", [1]}]");
  cr_assert_eq(keel_ets_lookup(s, T("x"), &H, &l), KEEL_OK);
  assert_term(l, "[{x, 1}]");
  cr_assert_eq(size_of(s), 2);
}

Test(ets_dupbag, any_order_is_for_duplicate_bags_only) {
  for (int ty = KEEL_ETS_SET; ty < KEEL_ETS_DUPLICATE_BAG; ty++) {
    keel_ets_opts o = {.type = (keel_ets_type)ty, .any_order = true};
    keel_ets_tab t = 0;
    cr_assert_eq(keel_ets_new(&o, &t), KEEL_EINVAL, "type %d", ty);
    cr_assert_eq(t, 0);
  }
}

/* 100,000 objects under one key (and other keys around it): every object
 * is there exactly as many times as it was inserted, whatever the order,
 * and the other keys are unaffected. */
Test(ets_dupbag, any_order_keeps_every_object) {
  keel_ets_tab t = mk(KEEL_ETS_DUPLICATE_BAG, true);
  enum { N = 100000, OTHERS = 1000 };
  keel_term big = T("{big, \"key\"}");
  for (int i = 0; i < N; i++) {
    if (i % 100 == 0) { /* the objects built so far are copies: drop them */
      keel_heap_destroy(&H);
      keel_heap_init(&H);
      big = T("{big, \"key\"}");
    }
    cr_assert_eq(keel_ets_insert(t, keel_build(&H, "{~t, ~i}", big, i % 50000)),
                 KEEL_OK);
    if (i % (N / OTHERS) == 0)
      cr_assert_eq(keel_ets_insert(t, keel_build(&H, "{~i, x}", i)), KEEL_OK);
  }
  cr_assert_eq(size_of(t), N + OTHERS);
  keel_term l;
  cr_assert_eq(keel_ets_lookup(t, big, &H, &l), KEEL_OK);
  unsigned char *seen = calloc(50000, 1);
  size_t n = 0;
  for (; keel_is_cons(l); l = keel_tl(l), n++) {
    cr_assert(keel_eq_exact(keel_tuple_get(keel_hd(l), 0), big));
    int64_t v = keel_small_value(keel_tuple_get(keel_hd(l), 1));
    cr_assert(v >= 0 && v < 50000);
    seen[v]++;
  }
  cr_assert_eq(n, N);
  for (int v = 0; v < 50000; v++)
    cr_assert_eq(seen[v], 2, "value %d", v);
  free(seen);
  for (int i = 0; i < N; i += N / OTHERS) {
    cr_assert_eq(keel_ets_lookup(t, keel_small(i), &H, &l), KEEL_OK);
    cr_assert(keel_eq_exact(l, keel_build(&H, "[{~i, x}]", i)), "key %d", i);
  }
  /* delete_object removes both copies; select counts the rest */
  cr_assert_eq(keel_ets_delete_object(t, keel_build(&H, "{~t, 7}", big)),
               KEEL_OK);
  cr_assert_eq(size_of(t), N + OTHERS - 2);
  cr_assert_eq(keel_ets_select_count(
                   t, keel_build(&H, "[{{~t, '_'}, [], [true]}]", big)),
               N - 2);
  /* a traversal visits each key once */
  size_t keys = 0;
  keel_term k;
  int rc = keel_ets_first(t, &H, &k);
  for (; rc == 1; rc = keel_ets_next(t, k, &H, &k))
    keys++;
  cr_assert_eq(rc, 0);
  cr_assert_eq(keys, 1 + OTHERS);
  cr_assert_eq(keel_ets_take(t, big, &H, &l), KEEL_OK);
  size_t taken = 0;
  cr_assert_eq(keel_list_length(l, &taken), KEEL_OK);
  cr_assert_eq(taken, N - 2);
  cr_assert_eq(size_of(t), OTHERS);
  cr_assert_eq(keel_ets_member(t, big), 0);
}

Test(ets_dupbag, lookup_elements) {
  keel_term l;
  for (int ty = KEEL_ETS_SET; ty <= KEEL_ETS_DUPLICATE_BAG; ty++) {
    keel_ets_tab t = mk((keel_ets_type)ty, false);
    cr_assert_eq(keel_ets_insert(t, T("{k, \"p\", {v, [1, 2]}, z}")), KEEL_OK);
    cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 2, 2, &H, &l), KEEL_OK);
    assert_term(l, "[{\"p\", {v, [1, 2]}}]");
    cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 4, 1, &H, &l), KEEL_OK);
    assert_term(l, "[{z}]");
    cr_assert_eq(keel_ets_lookup_elements(t, T("none"), 2, 2, &H, &l), KEEL_OK);
    assert_term(l, "[]");
    cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 4, 2, &H, &l),
                 KEEL_EBADARG, "beyond the object");
    cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 0, 1, &H, &l),
                 KEEL_EBADARG);
    cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 1, 0, &H, &l),
                 KEEL_EBADARG);
    cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 1, 1, NULL, &l),
                 KEEL_EINVAL);
    if (ty >= KEEL_ETS_BAG) {
      cr_assert_eq(keel_ets_insert(t, T("{k, 2, 3}")), KEEL_OK);
      cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 2, 2, &H, &l), KEEL_OK);
      assert_term(l, "[{\"p\", {v, [1, 2]}}, {2, 3}]");
    }
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
    cr_assert_eq(keel_ets_lookup_elements(t, T("k"), 1, 1, &H, &l),
                 KEEL_EBADARG, "stale table");
  }
}

Test(ets_dupbag, delete_by_element) {
  for (int ty = KEEL_ETS_SET; ty <= KEEL_ETS_DUPLICATE_BAG; ty++) {
    keel_ets_tab t = mk((keel_ets_type)ty, false);
    cr_assert_eq(keel_ets_insert(t, T("{k, \"p\", 1}")), KEEL_OK);
    cr_assert_eq(keel_ets_insert(t, T("{j, \"p\", 1}")), KEEL_OK);
    cr_assert_eq(keel_ets_delete_by_element(t, T("k"), 2, T("\"q\"")), 0);
    cr_assert_eq(keel_ets_delete_by_element(t, T("k"), 9, T("\"p\"")), 0,
                 "short objects stay");
    if (ty >= KEEL_ETS_BAG) {
      cr_assert_eq(keel_ets_insert(t, T("[{k, q, 2}, {k, \"p\", 3}, {k}]")),
                   KEEL_OK);
      cr_assert_eq(keel_ets_delete_by_element(t, T("k"), 2, T("\"p\"")), 2);
      keel_term l;
      cr_assert_eq(keel_ets_lookup(t, T("k"), &H, &l), KEEL_OK);
      assert_term(l, "[{k, q, 2}, {k}]");
    } else {
      cr_assert_eq(keel_ets_delete_by_element(t, T("k"), 2, T("\"p\"")), 1);
      cr_assert_eq(keel_ets_member(t, T("k")), 0);
    }
    cr_assert_eq(keel_ets_member(t, T("j")), 1, "other keys stay");
    cr_assert_eq(keel_ets_delete_by_element(t, T("k"), 0, T("x")),
                 KEEL_EBADARG);
    cr_assert_eq(keel_ets_delete_by_element(t, T("k"), 1, KEEL_NONE),
                 KEEL_EINVAL);
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
    cr_assert_eq(keel_ets_delete_by_element(t, T("k"), 1, T("k")), KEEL_EBADARG,
                 "stale table");
  }
}

/* ---- threads appending under one key of an any_order duplicate_bag ---- */

#define APPENDERS 4
#define APPENDS 10000

typedef struct appender {
  keel_ets_tab t;
  int id;
  int failed;
} appender;

static void *append_many(void *arg) {
  appender *a = arg;
  uint64_t buf[8];
  for (int i = 0; i < APPENDS && !a->failed; i++) {
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 8);
    keel_term o =
        keel_tuple(&h, 3, keel_atom("hot"), keel_small(a->id), keel_small(i));
    a->failed = keel_ets_insert(a->t, o) != KEEL_OK;
  }
  return NULL;
}

Test(ets_dupbag, any_order_concurrent_appends_to_one_key) {
  keel_ets_tab t = mk(KEEL_ETS_DUPLICATE_BAG, true);
  pthread_t th[APPENDERS];
  appender a[APPENDERS];
  for (int i = 0; i < APPENDERS; i++) {
    a[i] = (appender){.t = t, .id = i};
    cr_assert_eq(pthread_create(&th[i], NULL, append_many, &a[i]), 0);
  }
  for (int i = 0; i < APPENDERS; i++) {
    cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_eq(a[i].failed, 0);
  }
  cr_assert_eq(size_of(t), APPENDERS * APPENDS);
  /* each thread's objects all there, once each */
  for (int i = 0; i < APPENDERS; i++) {
    keel_term spec = keel_build(&H, "[{{hot, ~i, '_'}, [], [true]}]", i);
    cr_assert_eq(keel_ets_select_count(t, spec), APPENDS, "thread %d", i);
    cr_assert_eq(
        keel_ets_delete_by_element(t, keel_atom("hot"), 2, keel_small(i)),
        APPENDS);
  }
  cr_assert_eq(size_of(t), 0);
}
