/* Chunked selects and their continuations: select/3, select_reverse/3,
 * match/3, match_object/3 and select/1 on every table type; chunk sizes,
 * order, bag keys kept whole, resumption after inserts and deletes,
 * deleted tables, bad arguments; and a property test from fixed seeds:
 * the union of the chunks equals select/2's result with no object twice,
 * also when keys outside a stable set are inserted and deleted between
 * chunks (every stable key then delivered exactly once). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "keel/ets.h"
#include "tables/ets_internal.h"

static const keel_ets_type types[] = {KEEL_ETS_SET, KEEL_ETS_ORDERED_SET,
                                      KEEL_ETS_BAG, KEEL_ETS_DUPLICATE_BAG};

static keel_ets_tab new_tab(keel_ets_type ty) {
  keel_ets_opts o = {.type = ty, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  return t;
}

static keel_term spec_of(keel_heap *h, const char *src) {
  keel_term s;
  cr_assert_eq(keel_parse(h, src, strlen(src), &s, NULL), KEEL_OK, "%s", src);
  return s;
}

static void insert_kv(keel_ets_tab t, int64_t k, int64_t v) {
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  cr_assert_eq(
      keel_ets_insert(t, keel_tuple(&h, 2, keel_small(k), keel_small(v))),
      KEEL_OK);
}

static size_t list_len(keel_term l) {
  size_t n = 0;
  for (; keel_is_cons(l); l = keel_tl(l))
    n++;
  return n;
}

/* Term order, then hash (so == terms that are not =:= do not mix). */
static int cmp_terms(const void *a, const void *b) {
  keel_term x = *(const keel_term *)a, y = *(const keel_term *)b;
  int c = keel_cmp(x, y);
  if (c != 0)
    return c;
  uint64_t hx = keel_hash(x), hy = keel_hash(y);
  return hx < hy ? -1 : hx > hy;
}

/* The elements of l, sorted, into v (at most cap). */
static size_t sorted(keel_term l, keel_term *v, size_t cap) {
  size_t n = 0;
  for (; keel_is_cons(l) && n < cap; l = keel_tl(l))
    v[n++] = keel_hd(l);
  qsort(v, n, sizeof *v, cmp_terms);
  return n;
}

/* All chunks of a chunked select concatenated, checking each chunk's
 * size against limit (bags: may exceed by one key's objects). */
typedef struct chunks {
  keel_term all[4096];
  size_t n, nchunks, biggest;
} chunks;

static int collect(chunks *c, int rc, keel_term out, keel_ets_cont *cont,
                   keel_heap *h) {
  while (rc == 1) {
    cr_assert(keel_is_cons(out), "a chunk is a non-empty list");
    size_t len = list_len(out);
    c->biggest = len > c->biggest ? len : c->biggest;
    c->nchunks++;
    for (keel_term l = out; keel_is_cons(l); l = keel_tl(l)) {
      cr_assert_lt(c->n, 4096);
      c->all[c->n++] = keel_hd(l);
    }
    rc = keel_ets_select_next(cont, h, &out);
  }
  cr_assert_eq(rc, 0, "ends with 0, not an error (%d)", rc);
  cr_assert_eq(out, keel_atom("$end_of_table"));
  cr_assert_eq(keel_ets_select_next(cont, h, &out), 0, "stays at the end");
  keel_ets_cont_free(cont);
  return rc;
}

Test(ets_cont, chunks_cover_select_on_every_type) {
  for (size_t ti = 0; ti < 4; ti++) {
    keel_ets_tab t = new_tab(types[ti]);
    for (int64_t k = 0; k < 300; k++)
      insert_kv(t, k, k % 7);
    keel_heap h;
    keel_heap_init(&h);
    keel_term spec = spec_of(&h, "[{{'$1','$2'}, [{'<', '$2', 4}], ['$1']}]");
    keel_term want;
    cr_assert_eq(keel_ets_select(t, spec, &h, &want), KEEL_OK);
    for (size_t limit = 1; limit <= 64; limit *= 4) {
      chunks *c = calloc(1, sizeof *c);
      keel_term out;
      keel_ets_cont *cont;
      int rc = keel_ets_select_limit(t, spec, limit, &h, &out, &cont);
      cr_assert_eq(rc, 1);
      cr_assert_not_null(cont);
      collect(c, rc, out, cont, &h);
      cr_assert_leq(c->biggest, limit, "type %zu limit %zu", ti, limit);
      size_t nwant = list_len(want);
      cr_assert_eq(c->n, nwant, "type %zu limit %zu: %zu of %zu", ti, limit,
                   c->n, nwant);
      cr_assert_geq(c->nchunks, (nwant + limit - 1) / limit);
      keel_term *w = malloc(nwant * sizeof *w);
      sorted(want, w, nwant);
      qsort(c->all, c->n, sizeof *c->all, cmp_terms);
      for (size_t i = 0; i < nwant; i++)
        cr_assert(keel_eq_exact(w[i], c->all[i]), "same results");
      if (types[ti] == KEEL_ETS_ORDERED_SET || types[ti] == KEEL_ETS_SET)
        for (size_t i = 1; i < c->n; i++)
          cr_assert_neq(keel_cmp(c->all[i - 1], c->all[i]), 0, "no repeat");
      free(w);
      free(c);
    }
    keel_heap_destroy(&h);
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  }
}

Test(ets_cont, ordered_chunks_come_in_term_order_and_reverse) {
  keel_ets_tab t = new_tab(KEEL_ETS_ORDERED_SET);
  for (int64_t k = 0; k < 100; k++)
    insert_kv(t, (k * 37) % 100, k);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = spec_of(&h, "[{{'$1','_'}, [], ['$1']}]");
  for (int dir = 1; dir >= -1; dir -= 2) {
    keel_term out;
    keel_ets_cont *cont;
    int rc = dir > 0
                 ? keel_ets_select_limit(t, spec, 9, &h, &out, &cont)
                 : keel_ets_select_reverse_limit(t, spec, 9, &h, &out, &cont);
    int64_t expect = dir > 0 ? 0 : 99;
    size_t nchunks = 0;
    while (rc == 1) {
      cr_assert_leq(list_len(out), 9);
      nchunks++;
      for (keel_term l = out; keel_is_cons(l); l = keel_tl(l)) {
        cr_assert_eq(keel_small_value(keel_hd(l)), expect);
        expect += dir;
      }
      rc = keel_ets_select_next(cont, &h, &out);
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(expect, dir > 0 ? 100 : -1, "every key");
    cr_assert_eq(nchunks, 12); /* 11 chunks of 9, one of 1 */
    keel_ets_cont_free(cont);
  }
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

Test(ets_cont, select_reverse_on_a_hashed_table_is_select) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET);
  for (int64_t k = 0; k < 50; k++)
    insert_kv(t, k, k);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = spec_of(&h, "[{{'$1','_'}, [], ['$1']}]");
  keel_term a, b;
  keel_ets_cont *ca, *cb;
  cr_assert_eq(keel_ets_select_limit(t, spec, 50, &h, &a, &ca), 1);
  cr_assert_eq(keel_ets_select_reverse_limit(t, spec, 50, &h, &b, &cb), 1);
  cr_assert(keel_eq_exact(a, b), "the same order");
  keel_ets_cont_free(ca);
  keel_ets_cont_free(cb);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

Test(ets_cont, nothing_to_select_is_end_of_table) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = spec_of(&h, "[{{'$1','_'}, [], ['$1']}]");
  keel_term out;
  keel_ets_cont *cont = (keel_ets_cont *)&h; /* overwritten */
  cr_assert_eq(keel_ets_select_limit(t, spec, 5, &h, &out, &cont), 0);
  cr_assert_eq(out, keel_atom("$end_of_table"));
  cr_assert_null(cont);
  insert_kv(t, 1, 1);
  keel_term none = spec_of(&h, "[{{'$1','_'}, [{'>', '$1', 5}], ['$1']}]");
  cr_assert_eq(keel_ets_select_limit(t, none, 5, &h, &out, &cont), 0);
  cr_assert_null(cont);
  cr_assert_eq(
      keel_ets_match_limit(t, spec_of(&h, "{2, '$1'}"), 5, &h, &out, &cont), 0,
      "a bound key that is absent");
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

Test(ets_cont, bad_arguments) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET);
  insert_kv(t, 1, 1);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = spec_of(&h, "[{{'$1','_'}, [], ['$1']}]");
  keel_term out;
  keel_ets_cont *cont;
  cr_assert_eq(keel_ets_select_limit(t, spec, 0, &h, &out, &cont), KEEL_EBADARG,
               "limit 0");
  cr_assert_null(cont);
  cr_assert_eq(keel_ets_select_limit(t, spec_of(&h, "[{{'$1'}, [], [{foo}]}]"),
                                     3, &h, &out, &cont),
               KEEL_EBADARG, "unknown function");
  cr_assert_eq(
      keel_ets_select_limit(t, spec_of(&h, "not_a_spec"), 3, &h, &out, &cont),
      KEEL_EBADARG);
  cr_assert_eq(keel_ets_select_limit(t + 1, spec, 3, &h, &out, &cont),
               KEEL_EBADARG, "stale id");
  cr_assert_eq(keel_ets_select_limit(t, spec, 3, NULL, &out, &cont),
               KEEL_EINVAL);
  cr_assert_eq(keel_ets_select_next(NULL, &h, &out), KEEL_EINVAL);
  keel_ets_cont_free(NULL);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

Test(ets_cont, a_deleted_table_fails_the_continuation) {
  keel_ets_tab t = new_tab(KEEL_ETS_ORDERED_SET);
  for (int64_t k = 0; k < 20; k++)
    insert_kv(t, k, k);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = spec_of(&h, "[{{'$1','_'}, [], ['$1']}]");
  keel_term out;
  keel_ets_cont *cont;
  cr_assert_eq(keel_ets_select_limit(t, spec, 5, &h, &out, &cont), 1);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  cr_assert_eq(keel_ets_select_next(cont, &h, &out), KEEL_EBADARG);
  /* A new table in the freed slot is not reached through the old id. */
  keel_ets_tab t2 = new_tab(KEEL_ETS_ORDERED_SET);
  for (int64_t k = 0; k < 20; k++)
    insert_kv(t2, k, k);
  cr_assert_neq(t2, t);
  cr_assert_eq(keel_ets_select_next(cont, &h, &out), KEEL_EBADARG);
  keel_ets_cont_free(cont);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t2), KEEL_OK);
}

Test(ets_cont, ordered_resumes_after_the_last_key_delivered) {
  keel_ets_tab t = new_tab(KEEL_ETS_ORDERED_SET);
  for (int64_t k = 1; k <= 20; k++)
    insert_kv(t, k, k);
  keel_heap h;
  keel_heap_init(&h);
  keel_term spec = spec_of(&h, "[{{'$1','_'}, [], ['$1']}]");
  keel_term out;
  keel_ets_cont *cont;
  cr_assert_eq(keel_ets_select_limit(t, spec, 5, &h, &out, &cont), 1);
  cr_assert(keel_eq_exact(out, keel_build(&h, "[1,2,3,4,5]")));
  /* The last key delivered and the next one go; keys before and after
   * come in; 5.0 == 5 is not after 5. */
  cr_assert_eq(keel_ets_delete_key(t, keel_small(5)), KEEL_OK);
  cr_assert_eq(keel_ets_delete_key(t, keel_small(6)), KEEL_OK);
  insert_kv(t, 0, 0);
  insert_kv(t, 100, 0);
  cr_assert_eq(keel_ets_insert(t, keel_build(&h, "{5.0, x}")), KEEL_OK);
  cr_assert_eq(keel_ets_select_next(cont, &h, &out), 1);
  cr_assert(keel_eq_exact(out, keel_build(&h, "[7,8,9,10,11]")));
  cr_assert_eq(keel_ets_select_next(cont, &h, &out), 1);
  cr_assert_eq(keel_ets_select_next(cont, &h, &out), 1);
  cr_assert(keel_eq_exact(out, keel_build(&h, "[17,18,19,20,100]")));
  cr_assert_eq(keel_ets_select_next(cont, &h, &out), 0);
  keel_ets_cont_free(cont);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

Test(ets_cont, bag_keys_are_never_split) {
  for (size_t ti = 2; ti < 4; ti++) {
    keel_ets_tab t = new_tab(types[ti]);
    for (int64_t k = 0; k < 30; k++)
      for (int64_t v = 0; v < 1 + k % 4; v++)
        insert_kv(t, k, v);
    keel_heap h;
    keel_heap_init(&h);
    keel_term spec = spec_of(&h, "[{'$1', [], ['$1']}]");
    keel_term out;
    keel_ets_cont *cont;
    int rc = keel_ets_select_limit(t, spec, 2, &h, &out, &cont);
    size_t total = 0;
    int64_t seen_keys[30] = {0};
    while (rc == 1) {
      size_t len = list_len(out);
      cr_assert_leq(len, 2 + 3, "at most limit plus the rest of one key");
      /* every key of this chunk has all its objects here */
      for (keel_term l = out; keel_is_cons(l); l = keel_tl(l)) {
        int64_t k = keel_small_value(keel_tuple_get(keel_hd(l), 0));
        seen_keys[k]++;
      }
      for (keel_term l = out; keel_is_cons(l); l = keel_tl(l)) {
        int64_t k = keel_small_value(keel_tuple_get(keel_hd(l), 0));
        cr_assert_eq(seen_keys[k], 1 + k % 4, "key %lld whole", (long long)k);
      }
      total += len;
      rc = keel_ets_select_next(cont, &h, &out);
    }
    cr_assert_eq(rc, 0);
    size_t expect = 0;
    for (int64_t k = 0; k < 30; k++)
      expect += 1 + (size_t)(k % 4);
    cr_assert_eq(total, expect);
    keel_ets_cont_free(cont);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
  }
}

Test(ets_cont, match_and_match_object_chunks) {
  keel_ets_tab t = new_tab(KEEL_ETS_SET);
  for (int64_t k = 0; k < 40; k++)
    insert_kv(t, k, k % 3);
  keel_heap h;
  keel_heap_init(&h);
  keel_term pat = spec_of(&h, "{'$1', 1}");
  keel_term want_m, want_o, out;
  cr_assert_eq(keel_ets_match(t, pat, &h, &want_m), KEEL_OK);
  cr_assert_eq(keel_ets_match_object(t, pat, &h, &want_o), KEEL_OK);
  for (int obj = 0; obj < 2; obj++) {
    keel_ets_cont *cont;
    int rc = obj ? keel_ets_match_object_limit(t, pat, 4, &h, &out, &cont)
                 : keel_ets_match_limit(t, pat, 4, &h, &out, &cont);
    chunks *c = calloc(1, sizeof *c);
    collect(c, rc, out, cont, &h);
    keel_term want = obj ? want_o : want_m;
    size_t nw = list_len(want);
    cr_assert_eq(c->n, nw);
    cr_assert_eq(nw, 13);
    keel_term w[64];
    sorted(want, w, 64);
    qsort(c->all, c->n, sizeof *c->all, cmp_terms);
    for (size_t i = 0; i < nw; i++)
      cr_assert(keel_eq_exact(w[i], c->all[i]));
    free(c);
  }
  /* A bound key is one chunk. */
  keel_ets_cont *cont;
  cr_assert_eq(keel_ets_match_object_limit(t, spec_of(&h, "{7, '_'}"), 1, &h,
                                           &out, &cont),
               1);
  cr_assert(keel_eq_exact(out, keel_build(&h, "[{7, 1}]")));
  cr_assert_eq(keel_ets_select_next(cont, &h, &out), 0);
  keel_ets_cont_free(cont);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

/* ---- property test ---- */

static uint64_t rng;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Keys: stable ones (0..STABLE-1, never touched after the start) and
 * volatile ones (STABLE.., inserted and deleted between chunks), as
 * integers, floats and tuples so that 1 and 1.0 both occur. */
#define STABLE 120
#define VOLATILE 200

static keel_term key_term(keel_heap *h, unsigned i) {
  switch (i % 3) {
  case 0:
    return keel_small(i);
  case 1:
    return keel_float(h, (double)(i - 1));
  default:
    return keel_tuple(h, 2, keel_small(i % 5), keel_float(h, (double)i));
  }
}

static const char *const prop_specs[] = {
    "[{{'$1','$2'}, [], ['$_']}]",
    "[{{'$1','$2'}, [{'<', '$2', 50}], ['$_']}]",
    "[{{'$1','$2'}, [{is_float, '$1'}], [{{'$1', '$2', float}}]}, "
    "{{'$1','$2'}, [], ['$_']}]",
};

static void prop_round(keel_ets_type ty, unsigned round) {
  keel_ets_tab t = new_tab(ty);
  keel_heap h;
  keel_heap_init(&h);
  for (unsigned i = 0; i < STABLE; i++)
    cr_assert_eq(keel_ets_insert(t, keel_tuple(&h, 2, key_term(&h, i),
                                               keel_small(rnd() % 100))),
                 KEEL_OK);
  for (unsigned i = 0; i < VOLATILE; i++)
    if (rnd() % 2)
      cr_assert_eq(
          keel_ets_insert(t, keel_tuple(&h, 2, key_term(&h, STABLE + i),
                                        keel_small(rnd() % 100))),
          KEEL_OK);
  keel_term spec = spec_of(&h, prop_specs[round % 3]);
  size_t limit = 1 + rnd() % 12;
  bool churn = round % 2 == 1;
  keel_term want;
  cr_assert_eq(keel_ets_select(t, spec, &h, &want), KEEL_OK);
  keel_term out;
  keel_ets_cont *cont;
  int rc = keel_ets_select_limit(t, spec, limit, &h, &out, &cont);
  chunks *c = calloc(1, sizeof *c);
  while (rc == 1) {
    for (keel_term l = out; keel_is_cons(l); l = keel_tl(l))
      c->all[c->n++] = keel_hd(l);
    if (churn) /* volatile keys come and go between chunks */
      for (int k = 0; k < 8; k++) {
        keel_term key = key_term(&h, STABLE + (unsigned)(rnd() % VOLATILE));
        if (rnd() % 2) /* insert_new: still one object per key */
          cr_assert_geq(keel_ets_insert_new(
                            t, keel_tuple(&h, 2, key, keel_small(rnd() % 100))),
                        0);
        else
          cr_assert_eq(keel_ets_delete_key(t, key), KEEL_OK);
      }
    rc = keel_ets_select_next(cont, &h, &out);
  }
  cr_assert_eq(rc, 0);
  keel_ets_cont_free(cont);
  /* No object twice (each result carries or is its key; for the bag
   * types one object per key was inserted here, so keys do not repeat). */
  qsort(c->all, c->n, sizeof *c->all, cmp_terms);
  for (size_t i = 1; i < c->n; i++)
    cr_assert(!keel_eq_exact(c->all[i - 1], c->all[i]),
              "type %d round %u: a result twice", (int)ty, round);
  /* Every result of a stable key is there exactly once; without churn
   * the results are select/2's exactly. */
  keel_term *w = malloc(4096 * sizeof *w);
  size_t nw = sorted(want, w, 4096);
  size_t j = 0;
  for (size_t i = 0; i < nw; i++) {
    keel_term k = keel_is_tuple(w[i]) ? keel_tuple_get(w[i], 0) : KEEL_NONE;
    bool stable = true;
    for (unsigned v = 0; churn && v < VOLATILE; v++) {
      keel_heap tmp;
      keel_heap_init(&tmp);
      if (keel_eq_exact(k, key_term(&tmp, STABLE + v)))
        stable = false;
      keel_heap_destroy(&tmp);
    }
    if (!stable)
      continue;
    while (j < c->n && cmp_terms(&c->all[j], &w[i]) < 0)
      j++;
    cr_assert(j < c->n && keel_eq_exact(c->all[j], w[i]),
              "type %d round %u: a stable result missing", (int)ty, round);
  }
  if (!churn)
    cr_assert_eq(c->n, nw, "type %d round %u: the union is select/2's", (int)ty,
                 round);
  free(w);
  free(c);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

Test(ets_cont, property_chunks_union_is_select_without_repeats) {
  for (uint64_t seed = 1; seed <= 12; seed++) {
    rng = seed * 0x9E3779B97F4A7C15ull;
    for (size_t ti = 0; ti < 4; ti++)
      for (unsigned round = 0; round < 6; round++)
        prop_round(types[ti], round);
  }
}

/* The hashed store's key order on equal hashes (forced here; real
 * collisions of == keys are rare): a strict total order, 0 only for =:=. */
Test(ets_cont, equal_hash_keys_have_a_total_order) {
  keel_heap h;
  keel_heap_init(&h);
  const char *src[] = {"1",           "1.0",     "{1, 2.0}", "{1, 2}",
                       "[1 | 2.0]",   "[1 | 2]", "[1.0, 2]", "#{1 => a}",
                       "#{1.0 => a}", "0.0",     "-0.0",     "abc"};
  size_t n = sizeof src / sizeof src[0];
  keel_term t[16];
  for (size_t i = 0; i < n; i++)
    t[i] = spec_of(&h, src[i]);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      int a = keel__ets_hkey_cmp(7, t[i], 7, t[j]);
      int b = keel__ets_hkey_cmp(7, t[j], 7, t[i]);
      cr_assert_eq(a == 0, keel_eq_exact(t[i], t[j]), "%s vs %s", src[i],
                   src[j]);
      cr_assert_eq(a, -b, "antisymmetric: %s vs %s", src[i], src[j]);
      for (size_t k = 0; k < n; k++)
        if (a < 0 && keel__ets_hkey_cmp(7, t[j], 7, t[k]) < 0)
          cr_assert_lt(keel__ets_hkey_cmp(7, t[i], 7, t[k]), 0,
                       "transitive: %s < %s < %s", src[i], src[j], src[k]);
    }
  cr_assert_lt(keel__ets_hkey_cmp(1, t[11], 2, t[0]), 0, "hash first");
  keel_heap_destroy(&h);
}
