/* Constructors and accessors of the term core. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "keel/term.h"

static keel_heap h;
static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(term, .init = setup, .fini = teardown);

Test(term, immediates_round_trip) {
  cr_assert_eq(keel_small_value(keel_small(KEEL_SMALL_MAX)), KEEL_SMALL_MAX);
  cr_assert_eq(keel_small_value(keel_small(KEEL_SMALL_MIN)), KEEL_SMALL_MIN);
  cr_assert_eq(keel_small_value(keel_small(-1)), -1);
  cr_assert(keel_is_small(keel_small(0)));
  cr_assert_eq(keel_type_of(keel_small(3)), KEEL_T_INTEGER);
  cr_assert_eq(keel_type_of(KEEL_NIL), KEEL_T_NIL);
  cr_assert_eq(keel_type_of(KEEL_ATOM(OK)), KEEL_T_ATOM);
  cr_assert_eq(keel_type_of(KEEL_NONE), KEEL_T_NONE);
  keel_term p = keel_pid_local(KEEL_PID_NUMBER_MAX);
  cr_assert(keel_is_pid(p));
  cr_assert_eq(keel_pid_local_number(p), KEEL_PID_NUMBER_MAX);
  cr_assert_str_eq(keel_type_name(KEEL_T_BINARY), "bitstring");
  cr_assert_str_eq(keel_type_name((keel_type)99), "none");
}

Test(term, floats_reject_non_finite) {
  keel_term f = keel_float(&h, -0.5);
  double d;
  cr_assert_eq(keel_get_double(f, &d), KEEL_OK);
  cr_assert_eq(d, -0.5);
  cr_assert(keel_is_float(f));
  cr_assert_eq(keel_float(&h, NAN), KEEL_NONE);
  cr_assert_eq(keel_float(&h, INFINITY), KEEL_NONE);
  cr_assert_eq(keel_get_double(keel_small(1), &d), KEEL_EBADARG);
}

Test(term, tuples) {
  keel_term t = keel_tuple(&h, 3, KEEL_ATOM(OK), keel_small(1), KEEL_NIL);
  cr_assert(keel_is_tuple(t));
  cr_assert_eq(keel_tuple_arity(t), 3);
  cr_assert_eq(keel_tuple_get(t, 1), keel_small(1));
  cr_assert_eq(keel_tuple(&h, 2, KEEL_NIL, KEEL_NONE), KEEL_NONE);
  keel_term e = keel_tuple(&h, 0);
  cr_assert_eq(keel_tuple_arity(e), 0);
  keel_term xs[2] = {keel_small(7), keel_small(8)};
  cr_assert_eq(keel_tuple_get(keel_tuple_from(&h, 2, xs), 1), keel_small(8));
  cr_assert_not(keel_is_tuple(keel_small(1)));
}

Test(term, lists_and_strings) {
  keel_term xs[3] = {keel_small(1), keel_small(2), keel_small(3)};
  keel_term l = keel_list_from(&h, 3, xs);
  size_t n;
  cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
  cr_assert_eq(n, 3);
  cr_assert_eq(keel_hd(keel_tl(l)), keel_small(2));
  keel_term imp = keel_list_from_tail(&h, 2, xs, keel_small(9));
  cr_assert_eq(keel_list_length(imp, &n), KEEL_EBADARG);
  cr_assert_eq(keel_tl(keel_tl(imp)), keel_small(9));
  cr_assert_eq(keel_list_from(&h, 0, xs), KEEL_NIL);
  keel_term s = keel_string(&h, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  cr_assert_eq(keel_list_length(s, &n), KEEL_OK);
  cr_assert_eq(n, 4);
  cr_assert_eq(keel_hd(s), keel_small('a'));
  cr_assert_eq(keel_hd(keel_tl(s)), keel_small(0xe9));
  cr_assert_eq(keel_hd(keel_tl(keel_tl(s))), keel_small(0x20ac));
  cr_assert_eq(keel_hd(keel_tl(keel_tl(keel_tl(s)))), keel_small(0x1f600));
  cr_assert_eq(keel_string(&h, "\xc3"), KEEL_NONE, "truncated UTF-8");
  cr_assert_eq(keel_string(&h, "\xc0\xaf"), KEEL_NONE, "overlong");
  cr_assert_eq(keel_string(&h, "\xed\xa0\x80"), KEEL_NONE, "surrogate");
  cr_assert_eq(keel_string(&h, ""), KEEL_NIL);
}

Test(term, binaries_heap_and_refc) {
  uint8_t bytes[65];
  for (int i = 0; i < 65; i++)
    bytes[i] = (uint8_t)(i * 3);
  keel_term small = keel_binary(&h, bytes, 64);
  keel_term large = keel_binary(&h, bytes, 65);
  size_t n;
  cr_assert(keel_is_binary(small));
  cr_assert(keel_is_binary(large));
  cr_assert_eq(memcmp(keel_binary_data(small, &n), bytes, 64), 0);
  cr_assert_eq(n, 64);
  cr_assert_eq(memcmp(keel_binary_data(large, &n), bytes, 65), 0);
  cr_assert_eq(n, 65);
  cr_assert_eq(keel_bitstring_bits(large), 520);
  keel_term sub = keel_sub_binary(&h, large, 1, 64);
  cr_assert_eq(memcmp(keel_binary_data(sub, &n), bytes + 1, 64), 0);
  cr_assert_eq(keel_sub_binary(&h, large, 60, 6), KEEL_NONE);
  cr_assert_eq(keel_sub_binary(&h, large, 66, 0), KEEL_NONE);
  keel_term empty = keel_binary(&h, NULL, 0);
  cr_assert_eq(keel_bitstring_bits(empty), 0);
}

Test(term, large_sub_binary_shares_bytes) {
  uint8_t bytes[300];
  memset(bytes, 0xab, sizeof bytes);
  keel_term big = keel_binary(&h, bytes, sizeof bytes);
  keel_term sub = keel_sub_binary(&h, big, 100, 150);
  cr_assert_eq(keel_binary_data(sub, NULL), keel_binary_data(big, NULL) + 100);
  keel_term subsub = keel_sub_binary(&h, sub, 10, 100);
  cr_assert_eq(keel_binary_data(subsub, NULL),
               keel_binary_data(big, NULL) + 110);
}

Test(term, bitstrings_clear_unused_bits) {
  uint8_t b[2] = {0xff, 0xff};
  keel_term t = keel_bitstring(&h, b, 11);
  size_t n;
  const uint8_t *d = keel_binary_data(t, &n);
  cr_assert_eq(n, 2);
  cr_assert_eq(d[1], 0xe0);
  cr_assert(keel_is_bitstring(t));
  cr_assert_not(keel_is_binary(t));
  cr_assert_eq(keel_bitstring_bits(t), 11);
  cr_assert_eq(keel_sub_binary(&h, t, 0, 1), KEEL_NONE);
}

Test(term, maps_sorted_and_last_duplicate_wins) {
  keel_term one_f = keel_float(&h, 1.0);
  keel_term keys[5] = {keel_atom("b"), keel_small(1), one_f, keel_atom("a"),
                       keel_atom("b")};
  keel_term vals[5] = {keel_small(10), keel_small(11), keel_small(12),
                       keel_small(13), keel_small(14)};
  keel_term m = keel_map_from(&h, 5, keys, vals);
  cr_assert(keel_is_map(m));
  cr_assert_eq(keel_map_size(m), 4, "1 and 1.0 are distinct keys");
  keel_term k, v;
  keel_map_at(m, 0, &k, &v);
  cr_assert_eq(k, keel_small(1), "integers first");
  keel_map_at(m, 1, &k, &v);
  cr_assert(keel_is_float(k), "then floats");
  keel_map_at(m, 2, &k, NULL);
  cr_assert_eq(k, keel_atom("a"));
  cr_assert_eq(keel_map_get(m, keel_atom("b"), &v), KEEL_OK);
  cr_assert_eq(v, keel_small(14));
  cr_assert_eq(keel_map_get(m, keel_atom("zz"), &v), KEEL_ENOENT);
  cr_assert_eq(keel_map_get(keel_small(1), keel_atom("a"), &v), KEEL_EBADARG);
}

Test(term, map_put_inserts_and_replaces) {
  keel_term m = keel_map_new(&h);
  for (int i = 99; i >= 0; i--)
    m = keel_map_put(&h, m, keel_small(i * 2), keel_small(i));
  cr_assert_eq(keel_map_size(m), 100);
  for (size_t i = 0; i < 100; i++) {
    keel_term k;
    keel_map_at(m, i, &k, NULL);
    cr_assert_eq(k, keel_small((int64_t)i * 2));
  }
  keel_term m2 = keel_map_put(&h, m, keel_small(10), KEEL_ATOM(OK));
  keel_term v;
  cr_assert_eq(keel_map_size(m2), 100);
  cr_assert_eq(keel_map_get(m2, keel_small(10), &v), KEEL_OK);
  cr_assert_eq(v, KEEL_ATOM(OK));
  cr_assert_eq(keel_map_get(m, keel_small(10), &v), KEEL_OK);
  cr_assert_eq(v, keel_small(5), "the original map is unchanged");
}

Test(term, large_map_from_many_keys) {
  enum { N = 5000 };
  static keel_term keys[N], vals[N];
  for (int i = 0; i < N; i++) {
    keys[i] = keel_small((i * 7919) % N);
    vals[i] = keel_small(i);
  }
  keel_term m = keel_map_from(&h, N, keys, vals);
  cr_assert_eq(keel_map_size(m), N);
  for (int i = 0; i < N; i++) {
    keel_term v;
    cr_assert_eq(keel_map_get(m, keel_small(i), &v), KEEL_OK);
  }
}

Test(term, pids_local_and_remote) {
  keel_pid_parts p = {.node = KEEL_ATOM(NONODE), .id = 42, .serial = 3};
  keel_term pid = keel_pid_make(&h, &p);
  cr_assert(keel_is_local_pid(pid), "local node pids are immediates");
  keel_pid_parts q;
  cr_assert_eq(keel_pid_get(pid, &q), KEEL_OK);
  cr_assert_eq(q.id, 42);
  cr_assert_eq(q.serial, 3);
  cr_assert_eq(q.node, KEEL_ATOM(NONODE));
  keel_pid_parts r = {
      .node = keel_atom("a@b"), .id = 1, .serial = 2, .creation = 7};
  keel_term rp = keel_pid_make(&h, &r);
  cr_assert(keel_is_pid(rp));
  cr_assert_not(keel_is_local_pid(rp));
  cr_assert_eq(keel_pid_get(rp, &q), KEEL_OK);
  cr_assert_eq(q.creation, 7);
  cr_assert_eq(q.node, keel_atom("a@b"));
  keel_pid_parts big = {
      .node = KEEL_ATOM(NONODE), .id = 1, .serial = 0xffffffffu};
  cr_assert_not(keel_is_local_pid(keel_pid_make(&h, &big)));
  cr_assert_eq(keel_pid_get(KEEL_NIL, &q), KEEL_EBADARG);
  r.node = keel_small(1);
  cr_assert_eq(keel_pid_make(&h, &r), KEEL_NONE);
}

Test(term, refs_ports_funs) {
  keel_ref_parts r = {.node = KEEL_ATOM(NONODE),
                      .creation = 1,
                      .len = 3,
                      .id = {1, 0xfffffffe, 3}};
  keel_term ref = keel_ref_make(&h, &r);
  keel_ref_parts r2;
  cr_assert_eq(keel_ref_get(ref, &r2), KEEL_OK);
  cr_assert_eq(r2.len, 3);
  cr_assert_eq(r2.id[1], 0xfffffffe);
  cr_assert_eq(r2.id[3], 0);
  r.len = 6;
  cr_assert_eq(keel_ref_make(&h, &r), KEEL_NONE);
  keel_port_parts p = {
      .node = keel_atom("n@h"), .id = UINT64_C(1) << 40, .creation = 9};
  keel_port_parts p2;
  cr_assert_eq(keel_port_get(keel_port_make(&h, &p), &p2), KEEL_OK);
  cr_assert_eq(p2.id, UINT64_C(1) << 40);
  keel_term f = keel_export_fun(&h, keel_atom("lists"), keel_atom("map"), 2);
  keel_term m, fn;
  uint8_t ar;
  cr_assert_eq(keel_fun_get(f, &m, &fn, &ar), KEEL_OK);
  cr_assert_eq(fn, keel_atom("map"));
  cr_assert_eq(ar, 2);
  cr_assert_eq(keel_type_of(f), KEEL_T_FUN);
}

Test(term, local_node_identity) {
  keel_term node = keel_atom("keel@localhost");
  keel_term old = keel_term_local_node(NULL);
  keel_term_set_local_node(node, 5);
  keel_pid_parts p = {.node = node, .id = 1, .creation = 5};
  cr_assert(keel_is_local_pid(keel_pid_make(&h, &p)));
  uint32_t c;
  cr_assert_eq(keel_term_local_node(&c), node);
  cr_assert_eq(c, 5);
  keel_term_set_local_node(old, 0);
}

Test(term, binary_and_atom_memory_are_counted) {
  size_t n0, n1, n2;
  size_t b0 = keel_binary_memory(&n0);
  keel_heap own;
  keel_heap_init(&own);
  uint8_t *data;
  keel_term big = keel_binary_new(&own, 10000, &data);
  cr_assert_neq(big, KEEL_NONE);
  keel_term small = keel_binary_new(&own, 10, &data); /* in the heap */
  cr_assert_neq(small, KEEL_NONE);
  size_t b1 = keel_binary_memory(&n1);
  cr_assert_eq(b1 - b0, 10000);
  cr_assert_eq(n1 - n0, 1);
  keel_heap h2;
  keel_heap_init(&h2);
  keel_term shared = keel_term_copy(&h2, big); /* shares the bytes */
  cr_assert_neq(shared, KEEL_NONE);
  cr_assert_eq(keel_binary_memory(NULL), b1);
  keel_heap_destroy(&own);
  cr_assert_eq(keel_binary_memory(NULL), b1, "still referenced");
  keel_heap_destroy(&h2);
  cr_assert_eq(keel_binary_memory(&n2), b0);
  cr_assert_eq(n2, n0);
  size_t a0 = keel_atom_memory();
  cr_assert_neq(keel_atom("an_atom_made_for_the_memory_test"), KEEL_NONE);
  cr_assert_geq(keel_atom_memory(),
                a0 + strlen("an_atom_made_for_the_memory_test"));
  cr_assert_gt(a0, 0);
}
