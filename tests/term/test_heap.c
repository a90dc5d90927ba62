/* Heaps, deep copy and off-heap reference counting. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "keel/term.h"
#include "term/term_internal.h"

static int dtor_calls;
static void count_dtor(void *data) {
  (void)data;
  dtor_calls++;
}

Test(heap, alloc_grows_across_chunks) {
  keel_heap h;
  keel_heap_init(&h);
  uint64_t *prev = NULL;
  for (int i = 0; i < 10000; i++) {
    uint64_t *p = keel_heap_alloc(&h, 3);
    cr_assert_not_null(p);
    p[0] = p[1] = p[2] = (uint64_t)i;
    if (prev != NULL)
      cr_assert_eq(prev[2], (uint64_t)(i - 1), "earlier words intact");
    prev = p;
  }
  cr_assert_eq(keel_heap_used_words(&h), 30000);
  uint64_t *big = keel_heap_alloc(&h, 1 << 20);
  cr_assert_not_null(big);
  big[(1 << 20) - 1] = 7;
  keel_heap_destroy(&h);
}

Test(heap, fixed_heap_refuses_overflow) {
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  cr_assert_eq(keel_heap_alloc(&h, 5), buf);
  cr_assert_eq(keel_heap_alloc(&h, 3), buf + 5);
  cr_assert_null(keel_heap_alloc(&h, 1));
  keel_term t = keel_tuple(&h, 2, KEEL_NIL, KEEL_NIL);
  cr_assert_eq(t, KEEL_NONE);
  keel_heap_destroy(&h);
}

static keel_term sample(keel_heap *h) {
  uint8_t big[1000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)i;
  keel_term keys[2] = {keel_atom("a"), keel_small(1)};
  keel_term vals[2] = {keel_float(h, 2.5), keel_binary(h, "xyz", 3)};
  keel_term elems[4] = {keel_binary(h, big, sizeof big), keel_int(h, INT64_MIN),
                        keel_map_from(h, 2, keys, vals),
                        keel_string(h, "héllo")};
  return keel_tuple(h, 3, keel_list_from(h, 4, elems), KEEL_ATOM(OK),
                    keel_cons(h, keel_small(1), keel_small(2)));
}

Test(heap, copy_size_matches_and_is_equal) {
  keel_heap h, m;
  keel_heap_init(&h);
  keel_term t = sample(&h);
  cr_assert_neq(t, KEEL_NONE);
  size_t words = keel_term_copy_words(t);
  uint64_t *buf = malloc(words * 8);
  keel_heap_init_fixed(&m, buf, words);
  keel_term c = keel_term_copy(&m, t);
  cr_assert_neq(c, KEEL_NONE, "copy fits exactly in the computed size");
  cr_assert_eq(keel_heap_used_words(&m), words);
  cr_assert_neq(c, t);
  keel_heap_destroy(&h); /* source gone: copy must stand alone */
  keel_heap_init(&h);
  keel_term again = sample(&h);
  cr_assert(keel_eq_exact(c, again));
  keel_heap_destroy(&m);
  keel_heap_destroy(&h);
  free(buf);
}

Test(heap, copy_shares_large_binary_and_counts_refs) {
  keel_heap a, b;
  keel_heap_init(&a);
  keel_heap_init(&b);
  uint8_t data[200] = {1, 2, 3};
  keel_term bin = keel_binary(&a, data, sizeof data);
  keel_binobj *obj = (keel_binobj *)(uintptr_t)keel__box(bin)[2];
  cr_assert_eq(atomic_load(&obj->refc), 1);
  keel_term c = keel_term_copy(&b, bin);
  cr_assert_eq(atomic_load(&obj->refc), 2);
  size_t n1, n2;
  cr_assert_eq(keel_binary_data(bin, &n1), keel_binary_data(c, &n2),
               "no bytes copied");
  cr_assert_eq(n1, 200);
  keel_heap_destroy(&a);
  cr_assert_eq(atomic_load(&obj->refc), 1);
  cr_assert_eq(keel_binary_data(c, NULL)[2], 3);
  keel_heap_destroy(&b);
}

Test(heap, resource_dtor_runs_once_after_last_heap) {
  dtor_calls = 0;
  keel_resource *r = keel_resource_new(16, count_dtor);
  cr_assert_not_null(r);
  keel_heap a, b;
  keel_heap_init(&a);
  keel_heap_init(&b);
  keel_term t = keel_resource_term(&a, r);
  keel_term c = keel_term_copy(&b, keel_tuple(&a, 1, t));
  keel_resource_release(r);
  cr_assert_eq(dtor_calls, 0);
  keel_heap_destroy(&a);
  cr_assert_eq(dtor_calls, 0);
  cr_assert_eq(keel_resource_get(keel_tuple_get(c, 0)), r);
  keel_heap_destroy(&b);
  cr_assert_eq(dtor_calls, 1);
}

Test(heap, copy_deep_terms_iteratively) {
  keel_heap h, d;
  keel_heap_init(&h);
  keel_heap_init(&d);
  keel_term t = KEEL_NIL;
  for (int i = 0; i < 1000000; i++)
    t = keel_tuple(&h, 2, keel_small(i), t);
  keel_term l = KEEL_NIL;
  for (int i = 0; i < 1000000; i++)
    l = keel_cons(&h, l, KEEL_NIL); /* deep in the head direction */
  keel_term both = keel_tuple(&h, 2, t, l);
  cr_assert_eq(keel_term_copy_words(both), 3 + 3000000 + 2000000);
  keel_term c = keel_term_copy(&d, both);
  cr_assert_neq(c, KEEL_NONE);
  keel_term x = keel_tuple_get(c, 0);
  for (int i = 999999; i >= 0; i--) {
    cr_assert_eq(keel_tuple_get(x, 0), keel_small(i));
    x = keel_tuple_get(x, 1);
  }
  cr_assert_eq(x, KEEL_NIL);
  keel_heap_destroy(&h);
  keel_heap_destroy(&d);
}

Test(heap, copy_long_list_and_immediates) {
  keel_heap h, d;
  keel_heap_init(&h);
  keel_heap_init(&d);
  cr_assert_eq(keel_term_copy(&d, keel_small(5)), keel_small(5));
  cr_assert_eq(keel_term_copy(&d, KEEL_ATOM(OK)), KEEL_ATOM(OK));
  cr_assert_eq(keel_heap_used_words(&d), 0);
  keel_term l = KEEL_NIL;
  for (int i = 0; i < 3000000; i++)
    l = keel_cons(&h, keel_small(i), l);
  keel_term c = keel_term_copy(&d, l);
  size_t len;
  cr_assert_eq(keel_list_length(c, &len), KEEL_OK);
  cr_assert_eq(len, 3000000);
  cr_assert_eq(keel_hd(c), keel_small(2999999));
  keel_heap_destroy(&h);
  keel_heap_destroy(&d);
}

Test(heap, copy_into_full_fixed_heap_fails_cleanly) {
  keel_heap h, m;
  keel_heap_init(&h);
  keel_term t = sample(&h);
  size_t words = keel_term_copy_words(t);
  uint64_t *buf = malloc(words * 8);
  for (size_t cut = 0; cut < words; cut += 3) {
    keel_heap_init_fixed(&m, buf, cut);
    cr_assert_eq(keel_term_copy(&m, t), KEEL_NONE);
    keel_heap_destroy(&m); /* drops any references taken so far */
  }
  keel_term first = keel_hd(keel_tuple_get(t, 0));
  keel_binobj *obj = (keel_binobj *)(uintptr_t)keel__box(first)[2];
  cr_assert_eq(atomic_load(&obj->refc), 1, "no reference leaked");
  keel_heap_destroy(&h);
  free(buf);
}

static int offheap_dtor_runs;
static void offheap_dtor(void *data) {
  (void)data;
  offheap_dtor_runs++;
}

/* A detached off-heap chain keeps its references until released, after the
 * heap it came from is gone. */
Test(heap, take_and_release_offheap) {
  offheap_dtor_runs = 0;
  keel_heap a;
  keel_heap_init(&a);
  keel_resource *r = keel_resource_new(8, offheap_dtor);
  uint8_t bytes[200] = {1};
  keel_term t = keel_tuple(&a, 2, keel_resource_term(&a, r),
                           keel_binary(&a, bytes, sizeof bytes));
  keel_resource_release(r); /* heap a holds the only reference now */
  size_t words = keel_term_copy_words(t);
  uint64_t *buf = malloc(words * sizeof *buf);
  keel_heap b;
  keel_heap_init_fixed(&b, buf, words);
  keel_term c = keel_term_copy(&b, t);
  cr_assert(keel_eq_exact(c, t));
  keel_offheap *chain = keel_heap_take_offheap(&b);
  cr_assert_not_null(chain);
  cr_assert_null(keel_heap_take_offheap(&b), "the chain is detached once");
  keel_heap_destroy(&b);
  keel_heap_destroy(&a);
  cr_assert_eq(offheap_dtor_runs, 0, "the chain still holds a reference");
  size_t len;
  cr_assert_eq(keel_binary_data(keel_tuple_get(c, 1), &len)[0], 1);
  keel_offheap_release(chain);
  cr_assert_eq(offheap_dtor_runs, 1);
  keel_offheap_release(NULL);
  free(buf);
}
