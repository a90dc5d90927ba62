/* Term order, equality and hashing. Expected orders for pids, ports and refs
 * were read off OTP 25 (lists:sort on terms decoded from constructed ETF);
 * the ETF property test re-checks the order against a live erl. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "keel/term.h"

static keel_heap h;

static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(compare, .init = setup, .fini = teardown);

static keel_term flt(double d) {
  return keel_float(&h, d);
}

static keel_term big(bool neg, uint64_t lo, uint64_t hi) {
  uint64_t limbs[2] = {lo, hi};
  return keel_bigint(&h, neg, limbs, 2);
}

static keel_term pid(const char *node, uint32_t id, uint32_t serial,
                     uint32_t creation) {
  keel_pid_parts p = {keel_atom(node), id, serial, creation};
  return keel_pid_make(&h, &p);
}

static keel_term port(const char *node, uint64_t id, uint32_t creation) {
  keel_port_parts p = {keel_atom(node), id, creation};
  return keel_port_make(&h, &p);
}

static keel_term ref(const char *node, uint32_t creation, uint32_t len,
                     uint32_t a, uint32_t b, uint32_t c) {
  keel_ref_parts r = {keel_atom(node), creation, len, {a, b, c, 0, 0}};
  return keel_ref_make(&h, &r);
}

/* Asserts that ts[0..n) is strictly increasing, pairwise. */
static void assert_increasing(const keel_term *ts, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      int c = keel_cmp(ts[i], ts[j]);
      int want = (i > j) - (i < j);
      cr_assert_eq((c > 0) - (c < 0), want, "cmp(#%zu, #%zu) = %d", i, j, c);
    }
}

Test(compare, type_order) {
  keel_term bin = keel_binary(&h, "a", 1);
  keel_term ts[] = {keel_small(5),
                    keel_atom("a"),
                    ref("n@h", 1, 1, 1, 0, 0),
                    keel_export_fun(&h, keel_atom("m"), keel_atom("f"), 1),
                    port("n@h", 1, 1),
                    keel_pid_local(3),
                    keel_tuple(&h, 0),
                    keel_map_new(&h),
                    KEEL_NIL,
                    keel_cons(&h, keel_small(1), KEEL_NIL),
                    bin};
  assert_increasing(ts, sizeof ts / sizeof ts[0]);
}

Test(compare, numbers_exact) {
  /* 2^53 + 1 is not representable as a double: 2^53 < 2^53+1. */
  keel_term two53 = flt(9007199254740992.0);
  keel_term i53p1 = keel_int(&h, (INT64_C(1) << 53) + 1);
  cr_assert(keel_cmp(two53, i53p1) < 0);
  cr_assert(keel_cmp(i53p1, two53) > 0);
  cr_assert(keel_cmp(keel_int(&h, INT64_C(1) << 53), two53) == 0);
  /* Big integers against floats around 2^64 and 2^127. */
  keel_term two64 = big(false, 0, 1);
  cr_assert(keel_cmp(two64, flt(18446744073709551616.0)) == 0);
  cr_assert(keel_cmp(big(false, 1, 1), flt(18446744073709551616.0)) > 0);
  cr_assert(keel_cmp(big(true, 1, 1), flt(-18446744073709551616.0)) < 0);
  cr_assert(keel_cmp(flt(1e300), big(false, 0, UINT64_MAX)) > 0);
  cr_assert(keel_cmp(flt(-1e300), big(true, 0, UINT64_MAX)) < 0);
  /* Fractions. */
  cr_assert(keel_cmp(keel_small(1), flt(1.5)) < 0);
  cr_assert(keel_cmp(keel_small(2), flt(1.5)) > 0);
  cr_assert(keel_cmp(keel_small(-2), flt(-1.5)) < 0);
  cr_assert(keel_cmp(keel_small(-1), flt(-1.5)) > 0);
  cr_assert(keel_cmp(big(false, 5, 1), flt(18446744073709551616.5)) > 0);
  /* Small and big integers. */
  keel_term ints[] = {big(true, 0, 2),
                      big(true, 0, 1),
                      keel_int(&h, INT64_MIN),
                      keel_small(KEEL_SMALL_MIN),
                      keel_small(-1),
                      keel_small(0),
                      keel_small(KEEL_SMALL_MAX),
                      keel_uint(&h, UINT64_MAX),
                      big(false, 0, 1),
                      big(false, 1, 1),
                      big(false, 0, 2)};
  assert_increasing(ints, sizeof ints / sizeof ints[0]);
}

Test(compare, eq_and_exact) {
  cr_assert(keel_eq(keel_small(1), flt(1.0)));
  cr_assert_not(keel_eq_exact(keel_small(1), flt(1.0)));
  cr_assert(keel_eq(flt(0.0), flt(-0.0)));
  cr_assert(keel_eq_exact(flt(0.0), flt(-0.0)));
  cr_assert_eq(keel_hash(flt(0.0)), keel_hash(flt(-0.0)));
  keel_term a = keel_tuple(&h, 2, keel_small(1), keel_binary(&h, "xy", 2));
  keel_term b = keel_tuple(&h, 2, flt(1.0), keel_binary(&h, "xy", 2));
  cr_assert(keel_eq(a, b));
  cr_assert_not(keel_eq_exact(a, b));
  cr_assert_eq(keel_cmp(a, b), 0);
}

Test(compare, maps) {
  keel_term k1[] = {keel_small(1)}, kf[] = {flt(1.0)};
  keel_term v[] = {keel_atom("a")};
  keel_term mi = keel_map_from(&h, 1, k1, v);
  keel_term mf = keel_map_from(&h, 1, kf, v);
  /* Keys compare exactly: #{1 => a} /= #{1.0 => a}, ints before floats. */
  cr_assert_not(keel_eq(mi, mf));
  cr_assert(keel_cmp(mi, mf) < 0);
  /* Size first. */
  keel_term k2[] = {keel_atom("z"), keel_atom("zz")};
  keel_term v2[] = {keel_small(0), keel_small(0)};
  keel_term m2 = keel_map_from(&h, 2, k2, v2);
  cr_assert(keel_cmp(mf, m2) < 0);
  /* Then keys, then values (values compare by ==). */
  keel_term va[] = {keel_small(2)}, vb[] = {flt(2.0)}, vc[] = {keel_small(3)};
  keel_term ma = keel_map_from(&h, 1, k1, va);
  keel_term mb = keel_map_from(&h, 1, k1, vb);
  keel_term mc = keel_map_from(&h, 1, k1, vc);
  cr_assert_eq(keel_cmp(ma, mb), 0);
  cr_assert(keel_eq(ma, mb));
  cr_assert_not(keel_eq_exact(ma, mb));
  cr_assert(keel_cmp(ma, mc) < 0);
  /* Map key order puts all integers before all floats. */
  keel_term big_int = big(false, 0, 1);
  keel_term ks[] = {flt(-5.0), big_int, keel_small(7)};
  keel_term vs[] = {KEEL_NIL, KEEL_NIL, KEEL_NIL};
  keel_term m3 = keel_map_from(&h, 3, ks, vs);
  keel_term key;
  keel_term val;
  keel_map_at(m3, 0, &key, &val);
  cr_assert(keel_eq_exact(key, keel_small(7)));
  keel_map_at(m3, 1, &key, &val);
  cr_assert(keel_eq_exact(key, big_int));
  keel_map_at(m3, 2, &key, &val);
  cr_assert(keel_is_float(key));
}

Test(compare, pids_ports_refs) {
  /* pids: serial, then number, then node, then creation. */
  keel_term pids[] = {pid("a@b", 1, 1, 1), pid("a@b", 1, 1, 2),
                      pid("b@a", 1, 1, 1), pid("a@b", 2, 1, 1),
                      pid("b@a", 2, 1, 2), pid("a@b", 1, 2, 1)};
  assert_increasing(pids, sizeof pids / sizeof pids[0]);
  /* ports: node, then creation, then number. */
  keel_term ports[] = {port("a@b", 1, 1), port("a@b", 2, 1), port("a@b", 1, 2),
                       port("b@a", 1, 1)};
  assert_increasing(ports, sizeof ports / sizeof ports[0]);
  /* refs: node, creation, then id words from the most significant. */
  keel_term refs[] = {ref("a@b", 1, 1, 1, 0, 0), ref("a@b", 1, 2, 3, 1, 0),
                      ref("a@b", 1, 2, 1, 2, 0), ref("a@b", 1, 3, 2, 1, 3),
                      ref("a@b", 1, 3, 1, 2, 3), ref("a@b", 2, 1, 1, 0, 0),
                      ref("b@a", 1, 1, 1, 0, 0)};
  assert_increasing(refs, sizeof refs / sizeof refs[0]);
  /* High zero words do not count: [1,0,0] =:= [1]. */
  keel_term r1 = ref("a@b", 1, 3, 1, 0, 0), r2 = ref("a@b", 1, 1, 1, 0, 0);
  cr_assert(keel_eq_exact(r1, r2));
  cr_assert_eq(keel_hash(r1), keel_hash(r2));
}

Test(compare, bitstrings) {
  uint8_t b1[] = {0xab, 0x80};
  keel_term bs9 = keel_bitstring(&h, b1, 9); /* <<171, 1:1>> */
  keel_term bs8 = keel_binary(&h, b1, 1);    /* <<171>> */
  keel_term bs16 = keel_binary(&h, b1, 2);   /* <<171, 128>> */
  uint8_t b2[] = {0xab, 0x00};
  keel_term bs9z = keel_bitstring(&h, b2, 9); /* <<171, 0:1>> */
  keel_term ts[] = {keel_binary(&h, "", 0), bs8, bs9z, bs9, bs16};
  /* <<171,1:1>> vs <<171,128>>: same first 9 bits, shorter first. */
  assert_increasing(ts, sizeof ts / sizeof ts[0]);
  uint8_t large[200];
  memset(large, 7, sizeof large);
  keel_term l1 = keel_binary(&h, large, sizeof large);
  keel_term l2 = keel_binary(&h, large, sizeof large);
  cr_assert(keel_eq_exact(l1, l2));
  cr_assert_eq(keel_hash(l1), keel_hash(l2));
  cr_assert(
      keel_eq_exact(keel_sub_binary(&h, l1, 10, 5), keel_binary(&h, large, 5)));
}

static keel_term list3(keel_term a, keel_term b, keel_term c, keel_term tl) {
  keel_term e[] = {a, b, c};
  return keel_list_from_tail(&h, 3, e, tl);
}

Test(compare, lists) {
  keel_term one = keel_small(1), two = keel_small(2);
  /* Improper tails order like any term: 0 < a < [] < [1]. */
  keel_term ts[] = {KEEL_NIL,
                    list3(one, one, one, keel_small(0)),
                    list3(one, one, one, keel_atom("a")),
                    list3(one, one, one, KEEL_NIL),
                    list3(one, one, one, keel_cons(&h, one, KEEL_NIL)),
                    list3(one, two, one, KEEL_NIL)};
  assert_increasing(ts, sizeof ts / sizeof ts[0]);
  /* [1 | 2] < [1, 2] because 2 (tail) < [2] (a list). */
  cr_assert(keel_cmp(keel_cons(&h, one, two),
                     keel_cons(&h, one, keel_cons(&h, two, KEEL_NIL))) < 0);
}

/* A list nested n levels deep: [[[...]]]. */
static keel_term deep(size_t n, keel_term leaf) {
  keel_term t = leaf;
  for (size_t i = 0; i < n; i++)
    t = keel_cons(&h, t, KEEL_NIL);
  return t;
}

Test(compare, deep_terms_are_iterative) {
  const size_t n = 1000000;
  keel_term a = deep(n, keel_small(1)), b = deep(n, keel_small(2));
  keel_term c = deep(n, keel_small(1));
  cr_assert(keel_cmp(a, b) < 0);
  cr_assert(keel_eq_exact(a, c));
  cr_assert_eq(keel_hash(a), keel_hash(c));
  cr_assert_neq(keel_hash(a), keel_hash(b));
  /* A long flat list. */
  keel_term *e = malloc(n * sizeof *e);
  for (size_t i = 0; i < n; i++)
    e[i] = keel_small((int64_t)i);
  keel_term l1 = keel_list_from(&h, n, e);
  e[n - 1] = keel_small(-1);
  keel_term l2 = keel_list_from(&h, n, e);
  free(e);
  cr_assert(keel_cmp(l2, l1) < 0);
  cr_assert_neq(keel_hash(l1), keel_hash(l2));
}

/* ---- property: a random term generator and order laws ---- */

static uint64_t rng = 88172645463325252u;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static keel_term gen(int depth) {
  switch (rnd() % (depth > 0 ? 10 : 6)) {
  case 0:
    return keel_small((int64_t)(rnd() % 5) - 2);
  case 1:
    return flt((double)((int64_t)(rnd() % 5) - 2) / 2);
  case 2:
    return keel_atom(rnd() % 2 ? "a" : "b");
  case 3:
    return keel_binary(&h, "ab", rnd() % 3);
  case 4:
    return KEEL_NIL;
  case 5:
    return rnd() % 2 ? big(rnd() % 2, rnd() % 2, 1) : keel_pid_local(rnd() % 3);
  case 6:
    return keel_tuple(&h, 2, gen(depth - 1), gen(depth - 1));
  case 7:
    return keel_cons(&h, gen(depth - 1), gen(depth - 1));
  case 8: {
    keel_term k[2] = {gen(0), gen(0)}, v[2] = {gen(depth - 1), gen(depth - 1)};
    return keel_map_from(&h, rnd() % 3, k, v);
  }
  default:
    return keel_tuple(&h, 1, gen(depth - 1));
  }
}

Test(compare, order_laws) {
  enum { N = 300 };
  keel_term t[N];
  for (size_t i = 0; i < N; i++)
    t[i] = gen(3);
  for (size_t i = 0; i < N; i++) {
    cr_assert_eq(keel_cmp(t[i], t[i]), 0);
    for (size_t j = 0; j < N; j++) {
      int cij = keel_cmp(t[i], t[j]), cji = keel_cmp(t[j], t[i]);
      cr_assert_eq((cij > 0) - (cij < 0), -((cji > 0) - (cji < 0)));
      /* Exact equality implies == and equal hashes. */
      if (keel_eq_exact(t[i], t[j])) {
        cr_assert_eq(cij, 0);
        if (keel_hash(t[i]) != keel_hash(t[j])) {
          cr_log_error("hash differs: %s vs %s",
                       keel_type_name(keel_type_of(t[i])),
                       keel_type_name(keel_type_of(t[j])));
        }
        cr_assert_eq(keel_hash(t[i]), keel_hash(t[j]));
      }
      cr_assert_eq(keel_eq(t[i], t[j]), cij == 0);
      /* A copy is exactly equal and hashes the same. */
    }
    keel_heap h2;
    keel_heap_init(&h2);
    keel_term c = keel_term_copy(&h2, t[i]);
    cr_assert(keel_eq_exact(c, t[i]));
    cr_assert_eq(keel_hash(c), keel_hash(t[i]));
    keel_heap_destroy(&h2);
  }
  /* Transitivity on triples. */
  for (size_t i = 0; i < 60; i++)
    for (size_t j = 0; j < 60; j++)
      for (size_t k = 0; k < 60; k++)
        if (keel_cmp(t[i], t[j]) <= 0 && keel_cmp(t[j], t[k]) <= 0)
          cr_assert(keel_cmp(t[i], t[k]) <= 0);
}
