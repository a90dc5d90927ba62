/* The set fast paths: lookup copying straight from the chain (one memcpy
 * for tuples of immediates), insert overwriting such tuples in place or
 * replacing with one chain walk, member on every type, small-integer keys
 * hashed without keel_hash; and readers never seeing a half-written
 * object while writers overwrite in place. Expected values are written
 * out by hand. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
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

TestSuite(ets_fast, .init = setup, .fini = teardown);

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

static keel_ets_tab new_tab(keel_ets_type type, unsigned keypos) {
  keel_ets_opts o = {.type = type, .access = KEEL_ETS_PUBLIC, .keypos = keypos};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  return t;
}

static keel_term lookup(keel_ets_tab t, const char *key) {
  keel_term r;
  cr_assert_eq(keel_ets_lookup(t, T(key), &H, &r), KEEL_OK);
  return r;
}

static size_t size_of(keel_ets_tab t) {
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  return in.size;
}

Test(ets_fast, overwrites_keep_values_copies_and_memory) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, 1);
  cr_assert_eq(keel_ets_insert(t, T("{k, 1, 2}")), KEEL_OK);
  keel_term first = lookup(t, "k");
  int64_t m1 = keel_ets_memory(t);
  cr_assert_eq(keel_ets_insert(t, T("{k, 3, 4}")), KEEL_OK); /* in place */
  assert_term(lookup(t, "k"), "[{k, 3, 4}]");
  assert_term(first, "[{k, 1, 2}]"); /* the earlier copy is the caller's */
  cr_assert_eq(keel_ets_memory(t), m1, "same shape, same memory");
  cr_assert_eq(keel_ets_insert(t, T("{k, 5}")), KEEL_OK); /* other arity */
  assert_term(lookup(t, "k"), "[{k, 5}]");
  cr_assert_lt(keel_ets_memory(t), m1);
  cr_assert_eq(keel_ets_insert(t, T("{k, <<\"bin\">>, [1, 2]}")), KEEL_OK);
  assert_term(lookup(t, "k"), "[{k, <<\"bin\">>, [1, 2]}]");
  cr_assert_gt(keel_ets_memory(t), m1);
  cr_assert_eq(keel_ets_insert(t, T("{k, 7, 8}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{k, 9, 10}")), KEEL_OK);
  assert_term(lookup(t, "k"), "[{k, 9, 10}]");
  cr_assert_eq(keel_ets_memory(t), m1);
  cr_assert_eq(size_of(t), 1);
  /* Atoms, pids-free immediates and [] are flat too. */
  cr_assert_eq(keel_ets_insert(t, T("{k, [], ok}")), KEEL_OK);
  assert_term(lookup(t, "k"), "[{k, [], ok}]");
  cr_assert_eq(keel_ets_delete_key(t, T("k")), KEEL_OK);
  assert_term(lookup(t, "k"), "[]");
  cr_assert_eq(size_of(t), 0);
}

Test(ets_fast, boxed_keys_and_elements) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, 1);
  cr_assert_eq(keel_ets_insert(t, T("{{a, 1}, x}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{{a, 1}, y}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{\"str\", 1.5}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{\"str\", 2.5}")), KEEL_OK);
  assert_term(lookup(t, "{a, 1}"), "[{{a, 1}, y}]");
  assert_term(lookup(t, "\"str\""), "[{\"str\", 2.5}]");
  cr_assert_eq(size_of(t), 2);
}

Test(ets_fast, small_integer_keys_are_distinct_from_floats_and_bignums) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, 1);
  const char *objs[] = {"{1, a}",  "{1.0, b}", "{4611686018427387904, c}",
                        "{-1, d}", "{0, e}",   "{2305843009213693951, f}"};
  for (size_t i = 0; i < 6; i++)
    cr_assert_eq(keel_ets_insert(t, T(objs[i])), KEEL_OK);
  assert_term(lookup(t, "1"), "[{1, a}]");
  assert_term(lookup(t, "1.0"), "[{1.0, b}]");
  assert_term(lookup(t, "4611686018427387904"), "[{4611686018427387904, c}]");
  assert_term(lookup(t, "-1"), "[{-1, d}]");
  assert_term(lookup(t, "0"), "[{0, e}]");
  assert_term(lookup(t, "2305843009213693951"), "[{2305843009213693951, f}]");
  cr_assert_eq(keel_ets_member(t, T("2")), 0);
  cr_assert_eq(keel_ets_member(t, T("1.0")), 1);
  cr_assert_eq(keel_ets_delete_key(t, T("1")), KEEL_OK);
  cr_assert_eq(keel_ets_member(t, T("1")), 0);
  cr_assert_eq(keel_ets_member(t, T("1.0")), 1);
  cr_assert_eq(size_of(t), 5);
}

Test(ets_fast, keypos_two) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, 2);
  cr_assert_eq(keel_ets_insert(t, T("{1, k, 2}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{3, k, 4}")), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("{5, j, 6}")), KEEL_OK);
  assert_term(lookup(t, "k"), "[{3, k, 4}]");
  assert_term(lookup(t, "j"), "[{5, j, 6}]");
  cr_assert_eq(keel_ets_insert(t, T("{1}")), KEEL_EBADARG, "too short");
  cr_assert_eq(size_of(t), 2);
}

Test(ets_fast, member_on_every_type) {
  keel_ets_type types[] = {KEEL_ETS_SET, KEEL_ETS_ORDERED_SET, KEEL_ETS_BAG,
                           KEEL_ETS_DUPLICATE_BAG};
  for (int i = 0; i < 4; i++) {
    keel_ets_tab t = new_tab(types[i], 1);
    cr_assert_eq(keel_ets_insert(t, T("[{a, 1}, {a, 2}, {b, 3}]")), KEEL_OK);
    cr_assert_eq(keel_ets_member(t, T("a")), 1);
    cr_assert_eq(keel_ets_member(t, T("b")), 1);
    cr_assert_eq(keel_ets_member(t, T("c")), 0);
    cr_assert_eq(keel_ets_member(t, KEEL_NONE), KEEL_EBADARG);
    cr_assert_eq(keel_ets_delete_key(t, T("a")), KEEL_OK);
    cr_assert_eq(keel_ets_member(t, T("a")), 0);
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
    cr_assert_eq(keel_ets_member(t, T("b")), KEEL_EBADARG, "stale id");
  }
}

Test(ets_fast, lookup_arguments) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, 1);
  keel_term r;
  cr_assert_eq(keel_ets_lookup(t, KEEL_NONE, &H, &r), KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup(t, T("a"), NULL, &r), KEEL_EINVAL);
  cr_assert_eq(keel_ets_lookup(t, T("a"), &H, NULL), KEEL_EINVAL);
  /* A fixed heap too small for the copy: out of memory, nothing written. */
  cr_assert_eq(keel_ets_insert(t, T("{a, 1, 2, 3, 4, 5, 6, 7}")), KEEL_OK);
  uint64_t buf[4];
  keel_heap small;
  keel_heap_init_fixed(&small, buf, 4);
  r = KEEL_NIL;
  cr_assert_eq(keel_ets_lookup(t, T("a"), &small, &r), KEEL_ENOMEM);
  cr_assert_eq(r, KEEL_NIL);
  keel_heap_destroy(&small);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  cr_assert_eq(keel_ets_lookup(t, T("a"), &H, &r), KEEL_EBADARG);
}

/* Writers overwrite {K, V, V} in place (and sometimes with a longer,
 * non-flat object) while readers look the keys up: every object read is
 * whole (its two values equal, its key the one asked for). */
#define KEYS 64
#define ROUNDS 20000

typedef struct ctx {
  keel_ets_tab t;
  int id;
  atomic_int *done;
  int bad;
} ctx;

static void *writer(void *arg) {
  ctx *c = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; i < ROUNDS; i++) {
    int k = (i * 7 + c->id) % KEYS;
    keel_term v = keel_small(i);
    keel_term o = i % 16 == 0 ? keel_tuple(&h, 4, keel_small(k), v, v,
                                           keel_binary(&h, "x", 1))
                              : keel_tuple(&h, 3, keel_small(k), v, v);
    c->bad += keel_ets_insert(c->t, o) != KEEL_OK;
    if (i % 512 == 0) {
      keel_heap_destroy(&h);
      keel_heap_init(&h);
    }
  }
  keel_heap_destroy(&h);
  atomic_fetch_add(c->done, 1);
  return NULL;
}

static void *reader(void *arg) {
  ctx *c = arg;
  keel_heap h;
  keel_heap_init(&h);
  for (int i = 0; atomic_load(c->done) < 2 || i < 1000; i++) {
    int k = i % KEYS;
    keel_term r;
    if (keel_ets_lookup(c->t, keel_small(k), &h, &r) != KEEL_OK ||
        !keel_is_cons(r)) {
      c->bad++;
      continue;
    }
    keel_term o = keel_hd(r);
    if (keel_tuple_get(o, 0) != keel_small(k) ||
        keel_tuple_get(o, 1) != keel_tuple_get(o, 2))
      c->bad++;
    if (i % 512 == 0) {
      keel_heap_destroy(&h);
      keel_heap_init(&h);
    }
  }
  keel_heap_destroy(&h);
  return NULL;
}

Test(ets_fast, readers_never_see_half_written_objects) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, 1);
  for (int k = 0; k < KEYS; k++)
    cr_assert_eq(keel_ets_insert(t, keel_tuple(&H, 3, keel_small(k),
                                               keel_small(0), keel_small(0))),
                 KEEL_OK);
  atomic_int done = 0;
  ctx c[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    c[i] = (ctx){.t = t, .id = i, .done = &done};
    cr_assert_eq(pthread_create(&th[i], NULL, i < 2 ? writer : reader, &c[i]),
                 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    cr_assert_eq(c[i].bad, 0, "thread %d", i);
  }
  cr_assert_eq(size_of(t), KEYS);
}

static keel_term counter(keel_ets_tab t, const char *key, int64_t incr,
                         int *rc) {
  keel_term r = KEEL_NONE;
  *rc = keel_ets_update_counter(t, T(key), keel_small(incr), KEEL_NONE, &H, &r);
  return r;
}

Test(ets_fast, counter_in_place_and_its_limits) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET, 1);
  int rc;
  cr_assert_eq(keel_ets_insert(t, T("{k, 5, x}")), KEEL_OK);
  assert_term(counter(t, "k", 3, &rc), "8");
  cr_assert_eq(rc, KEEL_OK);
  assert_term(counter(t, "k", -10, &rc), "-2");
  assert_term(lookup(t, "k"), "[{k, -2, x}]");
  /* Past the immediate range: a bignum (general path), and back. */
  cr_assert_eq(keel_ets_insert(t, T("{b, 2305843009213693951}")), KEEL_OK);
  assert_term(counter(t, "b", 1, &rc), "2305843009213693952");
  assert_term(lookup(t, "b"), "[{b, 2305843009213693952}]");
  assert_term(counter(t, "b", -1, &rc), "2305843009213693951");
  assert_term(lookup(t, "b"), "[{b, 2305843009213693951}]");
  /* Not an integer, no element after the key, no key: errors, nothing
   * changed. */
  cr_assert_eq(keel_ets_insert(t, T("{a, x}")), KEEL_OK);
  counter(t, "a", 1, &rc);
  cr_assert_eq(rc, KEEL_EBADARG);
  assert_term(lookup(t, "a"), "[{a, x}]");
  cr_assert_eq(keel_ets_insert(t, T("{s}")), KEEL_OK);
  counter(t, "s", 1, &rc);
  cr_assert_eq(rc, KEEL_EBADARG);
  counter(t, "missing", 1, &rc);
  cr_assert_eq(rc, KEEL_ENOENT);
  /* A float counter is not flat: general path. */
  cr_assert_eq(keel_ets_insert(t, T("{f, 1.5}")), KEEL_OK);
  counter(t, "f", 1, &rc);
  cr_assert_eq(rc, KEEL_EBADARG);
  /* keypos 2: the counter is element 3. */
  keel_ets_tab t2 = new_tab(KEEL_ETS_SET, 2);
  cr_assert_eq(keel_ets_insert(t2, T("{1, k, 10}")), KEEL_OK);
  assert_term(counter(t2, "k", 5, &rc), "15");
  assert_term(lookup(t2, "k"), "[{1, k, 15}]");
}
