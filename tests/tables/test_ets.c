/* Tables: every operation of keel/ets.h on every table type, with its
 * error cases (called from the test thread, which runs no process and so
 * has the owner's rights; access checks from processes are in
 * test_ets_owner.c). Expected values are written out by hand from
 * Erlang's ets documentation. */
#include <criterion/criterion.h>
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

TestSuite(ets, .init = setup, .fini = teardown);

/* Parses Erlang text (the test's literal). */
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

/* Sorted copy of a list (for hash-ordered results). */
static keel_term sorted(keel_term l) {
  size_t n;
  cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
  keel_term *v = malloc((n + 1) * sizeof *v);
  size_t i = 0;
  for (; keel_is_cons(l); l = keel_tl(l))
    v[i++] = keel_hd(l);
  for (size_t a = 1; a < n; a++)
    for (size_t b = a; b > 0 && keel_cmp(v[b - 1], v[b]) > 0; b--) {
      keel_term x = v[b];
      v[b] = v[b - 1];
      v[b - 1] = x;
    }
  keel_term r = keel_list_from(&H, n, v);
  free(v);
  return r;
}

static keel_ets_tab mk(keel_ets_type type) {
  keel_ets_opts o = {.type = type, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  cr_assert_neq(t, 0);
  return t;
}

static keel_term lookup(keel_ets_tab t, const char *key) {
  keel_term r;
  cr_assert_eq(keel_ets_lookup(t, T(key), &H, &r), KEEL_OK);
  return r;
}

Test(ets, set_insert_lookup_replace) {
  keel_ets_tab t = mk(KEEL_ETS_SET);
  cr_assert_eq(keel_ets_insert(t, T("{a, 1}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("[{b, 2}, {c, 3}]")), KEEL_OK);
  assert_term(lookup(t, "a"), "[{a, 1}]");
  cr_assert_eq(keel_ets_insert(t, T("{a, 10, x}")), KEEL_OK);
  assert_term(lookup(t, "a"), "[{a, 10, x}]");
  assert_term(lookup(t, "zz"), "[]");
  /* set keys compare exactly: 1 and 1.0 are different keys */
  cr_assert_eq(keel_ets_insert(t, T("[{1, int}, {1.0, float}]")), KEEL_OK);
  assert_term(lookup(t, "1"), "[{1, int}]");
  assert_term(lookup(t, "1.0"), "[{1.0, float}]");
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.size, 5);
  cr_assert_eq(in.type, KEEL_ETS_SET);
  cr_assert_eq(in.keypos, 1);
  cr_assert_eq(in.owner, KEEL_NONE);
  cr_assert_gt(in.memory, 0);
}

Test(ets, ordered_set_keys_compare_equal) {
  keel_ets_tab t = mk(KEEL_ETS_ORDERED_SET);
  cr_assert_eq(keel_ets_insert(t, T("{1, int}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{1.0, float}")), KEEL_OK);
  assert_term(lookup(t, "1"), "[{1.0, float}]");
  assert_term(lookup(t, "1.0"), "[{1.0, float}]");
  cr_assert_eq(keel_ets_insert(t, T("[{b}, {a}, {3}, {\"s\"}, {{x}}]")),
               KEEL_OK);
  keel_term l;
  cr_assert_eq(keel_ets_tab2list(t, &H, &l), KEEL_OK);
  /* term order: number < atom < tuple < list */
  assert_term(l, "[{1.0, float}, {3}, {a}, {b}, {{x}}, {\"s\"}]");
}

Test(ets, bag_and_duplicate_bag) {
  keel_ets_tab b = mk(KEEL_ETS_BAG);
  keel_ets_tab d = mk(KEEL_ETS_DUPLICATE_BAG);
  const char *objs = "[{k, 1}, {k, 2}, {k, 1}, {j, 1}]";
  cr_assert_eq(keel_ets_insert(b, T(objs)), KEEL_OK);
  cr_assert_eq(keel_ets_insert(d, T(objs)), KEEL_OK);
  assert_term(lookup(b, "k"), "[{k, 1}, {k, 2}]");
  assert_term(lookup(d, "k"), "[{k, 1}, {k, 2}, {k, 1}]");
  cr_assert_eq(keel_ets_insert(b, T("{k, 1}")), KEEL_OK);
  assert_term(lookup(b, "k"), "[{k, 1}, {k, 2}]");
  /* delete_object removes every identical copy */
  cr_assert_eq(keel_ets_delete_object(d, T("{k, 1}")), KEEL_OK);
  assert_term(lookup(d, "k"), "[{k, 2}]");
  cr_assert_eq(keel_ets_delete_object(b, T("{k, 3}")), KEEL_OK);
  assert_term(lookup(b, "k"), "[{k, 1}, {k, 2}]");
  keel_term e;
  cr_assert_eq(keel_ets_lookup_element(b, T("k"), 2, KEEL_NONE, &H, &e),
               KEEL_OK);
  assert_term(e, "[1, 2]");
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(b, &in), KEEL_OK);
  cr_assert_eq(in.size, 3);
  /* counters and element updates are for sets only */
  cr_assert_eq(keel_ets_update_counter(b, T("k"), T("1"), KEEL_NONE, &H, &e),
               KEEL_EBADARG);
  cr_assert_eq(keel_ets_update_element(b, T("k"), T("{2, x}"), KEEL_NONE),
               KEEL_EBADARG);
}

Test(ets, bag_many_objects_per_key_survive_growth) {
  keel_ets_tab b = mk(KEEL_ETS_DUPLICATE_BAG);
  for (int i = 0; i < 2000; i++) {
    cr_assert_eq(keel_ets_insert(b, keel_build(&H, "{~i, ~i}", i % 7, i)),
                 KEEL_OK);
  }
  for (int k = 0; k < 7; k++) {
    keel_term l;
    cr_assert_eq(keel_ets_lookup(b, keel_small(k), &H, &l), KEEL_OK);
    int expect = k;
    size_t n = 0;
    for (; keel_is_cons(l); l = keel_tl(l), expect += 7, n++) /* in order */
      cr_assert_eq(keel_tuple_get(keel_hd(l), 1), keel_small(expect));
    cr_assert_eq(n, (2000 - k + 6) / 7);
  }
}

Test(ets, insert_new_member_delete_take) {
  for (int ty = KEEL_ETS_SET; ty <= KEEL_ETS_DUPLICATE_BAG; ty++) {
    keel_ets_tab t = mk((keel_ets_type)ty);
    cr_assert_eq(keel_ets_insert_new(t, T("{a, 1}")), 1);
    cr_assert_eq(keel_ets_insert_new(t, T("{a, 2}")), 0);
    /* a list with one taken key inserts nothing */
    cr_assert_eq(keel_ets_insert_new(t, T("[{b, 1}, {a, 3}]")), 0);
    cr_assert_eq(keel_ets_member(t, T("b")), 0);
    /* a list repeating a key inserts nothing */
    cr_assert_eq(keel_ets_insert_new(t, T("[{c, 1}, {c, 2}]")), 0);
    cr_assert_eq(keel_ets_insert_new(t, T("[{c, 1}, {d, 2}]")), 1);
    cr_assert_eq(keel_ets_member(t, T("a")), 1);
    cr_assert_eq(keel_ets_member(t, T("d")), 1);
    keel_term r;
    cr_assert_eq(keel_ets_take(t, T("c"), &H, &r), KEEL_OK);
    assert_term(r, "[{c, 1}]");
    cr_assert_eq(keel_ets_member(t, T("c")), 0);
    cr_assert_eq(keel_ets_take(t, T("c"), &H, &r), KEEL_OK);
    assert_term(r, "[]");
    cr_assert_eq(keel_ets_delete_key(t, T("a")), KEEL_OK);
    cr_assert_eq(keel_ets_delete_key(t, T("a")), KEEL_OK);
    cr_assert_eq(keel_ets_member(t, T("a")), 0);
    cr_assert_eq(keel_ets_delete_all_objects(t), KEEL_OK);
    cr_assert_eq(keel_ets_member(t, T("d")), 0);
    keel_ets_info in;
    cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
    cr_assert_eq(in.size, 0);
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  }
}

Test(ets, lookup_element_and_defaults) {
  keel_ets_tab t = mk(KEEL_ETS_SET);
  cr_assert_eq(keel_ets_insert(t, T("{k, a, b}")), KEEL_OK);
  keel_term e;
  cr_assert_eq(keel_ets_lookup_element(t, T("k"), 3, KEEL_NONE, &H, &e),
               KEEL_OK);
  assert_term(e, "b");
  cr_assert_eq(keel_ets_lookup_element(t, T("k"), 4, KEEL_NONE, &H, &e),
               KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup_element(t, T("k"), 0, KEEL_NONE, &H, &e),
               KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup_element(t, T("x"), 2, KEEL_NONE, &H, &e),
               KEEL_ENOENT);
  cr_assert_eq(keel_ets_lookup_element(t, T("x"), 2, T("dflt"), &H, &e),
               KEEL_OK);
  assert_term(e, "dflt");
}

Test(ets, update_counter_ops) {
  keel_ets_tab t = mk(KEEL_ETS_SET);
  cr_assert_eq(keel_ets_insert(t, T("{c, 10, 0, x}")), KEEL_OK);
  keel_term r;
  cr_assert_eq(keel_ets_update_counter(t, T("c"), T("5"), KEEL_NONE, &H, &r),
               KEEL_OK);
  assert_term(r, "15");
  cr_assert_eq(
      keel_ets_update_counter(t, T("c"), T("{3, -2}"), KEEL_NONE, &H, &r),
      KEEL_OK);
  assert_term(r, "-2");
  /* wrap-around: 15 + 10 > 20 -> 0; -2 - 5 < -5 -> 100 */
  cr_assert_eq(keel_ets_update_counter(t, T("c"),
                                       T("[{2, 10, 20, 0}, {3, -5, -5, 100}]"),
                                       KEEL_NONE, &H, &r),
               KEEL_OK);
  assert_term(r, "[0, 100]");
  /* the same position twice applies in order */
  cr_assert_eq(keel_ets_update_counter(t, T("c"), T("[{2, 1}, {2, 1}]"),
                                       KEEL_NONE, &H, &r),
               KEEL_OK);
  assert_term(r, "[1, 2]");
  assert_term(lookup(t, "c"), "[{c, 2, 100, x}]");
  /* errors change nothing */
  cr_assert_eq(
      keel_ets_update_counter(t, T("c"), T("{4, 1}"), KEEL_NONE, &H, &r),
      KEEL_EBADARG); /* not an integer */
  cr_assert_eq(
      keel_ets_update_counter(t, T("c"), T("{1, 1}"), KEEL_NONE, &H, &r),
      KEEL_EBADARG); /* the key */
  cr_assert_eq(
      keel_ets_update_counter(t, T("c"), T("{9, 1}"), KEEL_NONE, &H, &r),
      KEEL_EBADARG); /* beyond arity */
  cr_assert_eq(keel_ets_update_counter(t, T("c"), T("[{2, 1}, {4, 1}]"),
                                       KEEL_NONE, &H, &r),
               KEEL_EBADARG); /* second op fails: first not applied */
  cr_assert_eq(keel_ets_update_counter(t, T("c"), T("[1]"), KEEL_NONE, &H, &r),
               KEEL_EBADARG);
  cr_assert_eq(keel_ets_update_counter(t, T("c"), T("x"), KEEL_NONE, &H, &r),
               KEEL_EBADARG);
  cr_assert_eq(
      keel_ets_update_counter(t, T("nokey"), T("1"), KEEL_NONE, &H, &r),
      KEEL_ENOENT);
  assert_term(lookup(t, "c"), "[{c, 2, 100, x}]");
  /* overflow beyond int64 */
  cr_assert_eq(keel_ets_insert(t, T("{big, 9223372036854775807}")), KEEL_OK);
  cr_assert_eq(keel_ets_update_counter(t, T("big"), T("1"), KEEL_NONE, &H, &r),
               KEEL_ESYSLIMIT);
  cr_assert_eq(keel_ets_update_counter(t, T("big"), T("-7"), KEEL_NONE, &H, &r),
               KEEL_OK);
  assert_term(r, "9223372036854775800");
  /* default object: inserted with its key replaced */
  cr_assert_eq(keel_ets_update_counter(t, T("n"), T("{2, 3}"),
                                       T("{whatever, 39, z}"), &H, &r),
               KEEL_OK);
  assert_term(r, "42");
  assert_term(lookup(t, "n"), "[{n, 42, z}]");
  cr_assert_eq(keel_ets_update_counter(t, T("m"), T("1"), T("{}"), &H, &r),
               KEEL_EBADARG);
}

Test(ets, update_element) {
  keel_ets_tab t = mk(KEEL_ETS_ORDERED_SET);
  cr_assert_eq(keel_ets_insert(t, T("{k, a, b, c}")), KEEL_OK);
  cr_assert_eq(keel_ets_update_element(t, T("k"), T("{2, x}"), KEEL_NONE), 1);
  cr_assert_eq(
      keel_ets_update_element(t, T("k"), T("[{3, y}, {4, z}]"), KEEL_NONE), 1);
  assert_term(lookup(t, "k"), "[{k, x, y, z}]");
  cr_assert_eq(keel_ets_update_element(t, T("nokey"), T("{2, x}"), KEEL_NONE),
               0);
  cr_assert_eq(keel_ets_member(t, T("nokey")), 0);
  cr_assert_eq(keel_ets_update_element(t, T("k"), T("{1, x}"), KEEL_NONE),
               KEEL_EBADARG);
  cr_assert_eq(keel_ets_update_element(t, T("k"), T("{5, x}"), KEEL_NONE),
               KEEL_EBADARG);
  cr_assert_eq(
      keel_ets_update_element(t, T("k"), T("[{2, q}, {9, x}]"), KEEL_NONE),
      KEEL_EBADARG);
  assert_term(lookup(t, "k"), "[{k, x, y, z}]");
  cr_assert_eq(keel_ets_update_element(t, T("d"), T("{2, v}"), T("{0, 0, 0}")),
               1);
  assert_term(lookup(t, "d"), "[{d, v, 0}]");
}

Test(ets, keypos) {
  keel_ets_opts o = {.type = KEEL_ETS_SET, .keypos = 2};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{rec, k1, v}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{x}")), KEEL_EBADARG);
  assert_term(lookup(t, "k1"), "[{rec, k1, v}]");
  keel_term r;
  cr_assert_eq(
      keel_ets_update_counter(t, T("k1"), T("{3, 1}"), KEEL_NONE, &H, &r),
      KEEL_EBADARG);
  cr_assert_eq(keel_ets_insert(t, T("{rec, k2, 5}")), KEEL_OK);
  /* a bare increment applies to keypos + 1 */
  cr_assert_eq(keel_ets_update_counter(t, T("k2"), T("2"), KEEL_NONE, &H, &r),
               KEEL_OK);
  assert_term(r, "7");
}

Test(ets, traversal) {
  keel_ets_tab o = mk(KEEL_ETS_ORDERED_SET);
  keel_ets_tab s = mk(KEEL_ETS_SET);
  keel_term k;
  cr_assert_eq(keel_ets_first(o, &H, &k), 0);
  assert_term(k, "'$end_of_table'");
  for (int i = 0; i < 100; i += 2) {
    keel_term obj = keel_build(&H, "{~i}", i);
    cr_assert_eq(keel_ets_insert(o, obj), KEEL_OK);
    cr_assert_eq(keel_ets_insert(s, obj), KEEL_OK);
  }
  cr_assert_eq(keel_ets_first(o, &H, &k), 1);
  assert_term(k, "0");
  cr_assert_eq(keel_ets_last(o, &H, &k), 1);
  assert_term(k, "98");
  /* next/prev of absent keys follow term order */
  cr_assert_eq(keel_ets_next(o, T("5"), &H, &k), 1);
  assert_term(k, "6");
  cr_assert_eq(keel_ets_next(o, T("5.5"), &H, &k), 1);
  assert_term(k, "6");
  cr_assert_eq(keel_ets_prev(o, T("5"), &H, &k), 1);
  assert_term(k, "4");
  cr_assert_eq(keel_ets_prev(o, T("0"), &H, &k), 0);
  cr_assert_eq(keel_ets_next(o, T("98"), &H, &k), 0);
  cr_assert_eq(keel_ets_next(o, T("a"), &H, &k), 0);
  /* the hashed table: first/next visit every key once */
  int seen[100] = {0};
  int n = 0;
  for (int rc = keel_ets_first(s, &H, &k); rc == 1;
       rc = keel_ets_next(s, k, &H, &k)) {
    cr_assert(keel_is_small(k));
    seen[keel_small_value(k)]++;
    n++;
  }
  cr_assert_eq(n, 50);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(seen[i], i % 2 == 0 ? 1 : 0);
  keel_term l;
  cr_assert_eq(keel_ets_tab2list(s, &H, &l), KEEL_OK);
  keel_term lo;
  cr_assert_eq(keel_ets_tab2list(o, &H, &lo), KEEL_OK);
  cr_assert(keel_eq_exact(sorted(l), lo));
}

Test(ets, named_tables) {
  keel_ets_opts o = {.name = T("my_tab")};
  keel_ets_tab t, u;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  cr_assert_eq(keel_ets_new(&o, &u), KEEL_EEXIST);
  cr_assert_eq(keel_ets_whereis(T("my_tab"), &u), KEEL_OK);
  cr_assert_eq(u, t);
  cr_assert_eq(keel_ets_whereis(T("other"), &u), KEEL_ENOENT);
  cr_assert_eq(keel_ets_whereis(T("1"), &u), KEEL_EBADARG);
  cr_assert_eq(keel_ets_tab_term(t), T("my_tab"));
  cr_assert_eq(keel_ets_tab_from_term(T("my_tab"), &u), KEEL_OK);
  cr_assert_eq(u, t);
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.name, T("my_tab"));
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  cr_assert_eq(keel_ets_whereis(T("my_tab"), &u), KEEL_ENOENT);
  /* the name is free again */
  cr_assert_eq(keel_ets_new(&o, &u), KEEL_OK);
  cr_assert_neq(u, t);
}

Test(ets, stale_ids_never_reach_new_tables) {
  keel_ets_tab t = mk(KEEL_ETS_SET);
  cr_assert_eq(keel_ets_insert(t, T("{a}")), KEEL_OK);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  /* the slot is reused by the next table */
  keel_ets_tab u = mk(KEEL_ETS_SET);
  cr_assert_neq(u, t);
  keel_term r;
  cr_assert_eq(keel_ets_insert(t, T("{b}")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup(t, T("a"), &H, &r), KEEL_EBADARG);
  cr_assert_eq(keel_ets_member(t, T("a")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_delete(t), KEEL_EBADARG);
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_EBADARG);
  cr_assert_eq(keel_ets_tab_term(t), KEEL_NONE);
  cr_assert_eq(keel_ets_info_get(u, &in), KEEL_OK);
  cr_assert_eq(in.size, 0);
  /* garbage ids */
  cr_assert_eq(keel_ets_member(0, T("a")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_member(UINT64_MAX, T("a")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_member((keel_ets_tab)1 << 40 | 999999, T("a")),
               KEEL_EBADARG);
}

Test(ets, bad_arguments) {
  keel_ets_tab t = mk(KEEL_ETS_SET);
  keel_term r;
  cr_assert_eq(keel_ets_insert(t, T("a")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_insert(t, T("{}")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_insert(t, T("[{a} | b]")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_insert(t, T("[{a}, b]")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_member(t, T("a")), 0); /* list was atomic */
  cr_assert_eq(keel_ets_insert(t, T("[]")), KEEL_OK);
  cr_assert_eq(keel_ets_delete_object(t, T("a")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup(t, KEEL_NONE, &H, &r), KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup(t, T("a"), NULL, &r), KEEL_EINVAL);
  keel_ets_opts o = {.type = 9};
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_EINVAL);
  o = (keel_ets_opts){.name = T("\"notatom\"")};
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_EINVAL);
  o = (keel_ets_opts){.owner = T("x")};
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_EINVAL);
  o = (keel_ets_opts){.heir = T("1")};
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_EINVAL);
  cr_assert_eq(keel_ets_new(NULL, NULL), KEEL_EINVAL);
}

Test(ets, objects_are_copies) {
  keel_ets_tab t = mk(KEEL_ETS_SET);
  keel_heap tmp;
  keel_heap_init(&tmp);
  char big[200];
  memset(big, 'q', sizeof big);
  keel_term bin = keel_binary(&tmp, big, sizeof big);
  keel_term obj = keel_build(&tmp, "{k, [1, 2, {deep}], ~t}", bin);
  cr_assert_eq(keel_ets_insert(t, obj), KEEL_OK);
  keel_heap_destroy(&tmp); /* the table does not point into it */
  keel_term r;
  cr_assert_eq(keel_ets_lookup(t, T("k"), &H, &r), KEEL_OK);
  keel_term o = keel_hd(r);
  assert_term(keel_tuple_get(o, 1), "[1, 2, {deep}]");
  size_t len;
  const uint8_t *d = keel_binary_data(keel_tuple_get(o, 2), &len);
  cr_assert_eq(len, sizeof big);
  cr_assert_eq(memcmp(d, big, len), 0);
  int64_t m1 = keel_ets_memory(t);
  cr_assert_eq(keel_ets_delete_key(t, T("k")), KEEL_OK);
  cr_assert_lt(keel_ets_memory(t), m1);
}

/* Enough keys for the ordered store to split chunks, then deletes that
 * empty whole chunks (from the front, by key and by select_delete). */
Test(ets, ordered_set_many_keys) {
  keel_ets_tab t = mk(KEEL_ETS_ORDERED_SET);
  for (int i = 999; i >= 0; i--) /* descending: inserts at the front */
    cr_assert_eq(keel_ets_insert(t, keel_build(&H, "{~i, ~i}", i, i * i)),
                 KEEL_OK);
  for (int i = 0; i < 300; i++)
    cr_assert_eq(keel_ets_delete_key(t, keel_small(i)), KEEL_OK);
  cr_assert_eq(keel_ets_select_delete(
                   t, T("[{{'$1', '_'}, [{'>=', '$1', 700}], [true]}]")),
               300);
  /* 300..699 remain, in order, forwards and backwards */
  keel_term k;
  int want = 300;
  for (int rc = keel_ets_first(t, &H, &k); rc == 1;
       rc = keel_ets_next(t, k, &H, &k), want++)
    cr_assert_eq(k, keel_small(want));
  cr_assert_eq(want, 700);
  for (int rc = keel_ets_last(t, &H, &k); rc == 1;
       rc = keel_ets_prev(t, k, &H, &k))
    cr_assert_eq(k, keel_small(--want));
  cr_assert_eq(want, 300);
  keel_term e;
  cr_assert_eq(
      keel_ets_lookup_element(t, keel_small(512), 2, KEEL_NONE, &H, &e),
      KEEL_OK);
  cr_assert_eq(e, keel_small(512 * 512));
  cr_assert_eq(keel_ets_next(t, keel_small(100), &H, &k), 1);
  cr_assert_eq(k, keel_small(300));
  cr_assert_eq(keel_ets_prev(t, keel_small(5000), &H, &k), 1);
  cr_assert_eq(k, keel_small(699));
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.size, 400);
}
