/*
 * keel_parse: Erlang term syntax in, terms out; errors and limits; and the
 * print -> parse round trip over seeded random terms.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "keel/term.h"

static keel_heap h;
static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(parse, .init = setup, .fini = teardown);

static keel_term P(const char *text) {
  keel_term t = KEEL_NONE;
  int rc = keel_parse(&h, text, strlen(text), &t, NULL);
  cr_assert_eq(rc, KEEL_OK, "parse of %s: %d", text, rc);
  return t;
}

static void same(const char *text, keel_term want) {
  keel_term t = P(text);
  cr_assert(keel_eq_exact(t, want), "%s parsed to something else", text);
}

static int err(const char *text, size_t *at) {
  keel_term t;
  return keel_parse(&h, text, strlen(text), &t, at);
}

Test(parse, integers) {
  same("0", keel_small(0));
  same("-42", keel_small(-42));
  same("+7", keel_small(7));
  same("- 7", keel_small(-7));
  same("1_000_000", keel_small(1000000));
  same("16#FF", keel_small(255));
  same("16#ff_ff", keel_small(65535));
  same("-2#101", keel_small(-5));
  same("36#Zz", keel_small(35 * 36 + 35));
  same("$a", keel_small('a'));
  same("$\\n", keel_small('\n'));
  same("$\\x{1F600}", keel_small(0x1F600));
  same("$\\101", keel_small('A'));
  same("$\\^C", keel_small(3));
  same("$\xc3\xa9", keel_small(0xe9));
  same("$ ", keel_small(' '));
  same("18446744073709551615", keel_uint(&h, UINT64_MAX));
  same("-9223372036854775808", keel_int(&h, INT64_MIN));
  uint64_t limbs[2] = {0, 1};
  same("16#10000000000000000", keel_bigint(&h, false, limbs, 2));
}

Test(parse, floats) {
  double d;
  cr_assert_eq(keel_get_double(P("1.5"), &d), KEEL_OK);
  cr_assert_eq(d, 1.5);
  cr_assert_eq(keel_get_double(P("-0.0"), &d), KEEL_OK);
  cr_assert(d == 0 && signbit(d));
  cr_assert_eq(keel_get_double(P("1.0e-5"), &d), KEEL_OK);
  cr_assert_eq(d, 1e-5);
  cr_assert_eq(keel_get_double(P("2.5E+3"), &d), KEEL_OK);
  cr_assert_eq(d, 2500.0);
  cr_assert_eq(keel_get_double(P("1_0.2_5"), &d), KEEL_OK);
  cr_assert_eq(d, 10.25);
  cr_assert_eq(keel_get_double(P("5.0e-324"), &d), KEEL_OK);
  cr_assert_eq(d, 5e-324);
}

Test(parse, atoms_and_strings) {
  same("ok", keel_atom("ok"));
  same("a@b_C9", keel_atom("a@b_C9"));
  same("'Hello World'", keel_atom("Hello World"));
  same("'it\\'s'", keel_atom("it's"));
  same("'\\x{3E8}'", keel_atom("\xcf\xa8"));
  same("\xc3\xa9t\xc3\xa9", keel_atom("\xc3\xa9t\xc3\xa9"));
  same("'\\s\\d\\e'", keel_atom(" \x7f\x1b"));
  same("\"abc\"", keel_string(&h, "abc"));
  same("\"ab\" \"cd\"", keel_string(&h, "abcd"));
  same("\"\"", KEEL_NIL);
  same("\"\\t\\\"\\\\\\x41\\x{20AC}\"", keel_string(&h, "\t\"\\A\xe2\x82\xac"));
  same("\"\xe2\x82\xac\"", keel_string(&h, "\xe2\x82\xac"));
  same("'~'", keel_atom("~"));
}

Test(parse, containers) {
  same("{}", keel_tuple_from(&h, 0, NULL));
  same("{a, 1 ,[]}",
       keel_tuple(&h, 3, keel_atom("a"), keel_small(1), KEEL_NIL));
  same("[1,2|3]", keel_cons(&h, keel_small(1),
                            keel_cons(&h, keel_small(2), keel_small(3))));
  same("[a|[]]", keel_cons(&h, keel_atom("a"), KEEL_NIL));
  same("[ ]", KEEL_NIL);
  keel_term k[2] = {keel_atom("a"), keel_small(1)};
  keel_term v[2] = {keel_small(1), keel_string(&h, "x")};
  same("#{a => 1, 1 => \"x\"}", keel_map_from(&h, 2, k, v));
  same("#{a => 1, a => 2}",
       keel_map_put(&h, keel_map_new(&h), k[0], keel_small(2)));
  same("#{}", keel_map_new(&h));
}

Test(parse, binaries) {
  same("<<>>", keel_binary(&h, "", 0));
  same("<<\"abc\">>", keel_binary(&h, "abc", 3));
  same("<<1,2,3>>", keel_binary(&h, "\1\2\3", 3));
  same("<<300>>", keel_binary(&h, ",", 1));
  same("<<-1>>", keel_binary(&h, "\xff", 1));
  same("<<1:16>>", keel_binary(&h, "\0\1", 2));
  same("<<1:16/little>>", keel_binary(&h, "\1\0", 2));
  same("<<$a, \"b\":8, 16#63>>", keel_binary(&h, "abc", 3));
  same("<<\"\xc3\xa9\"/utf8>>", keel_binary(&h, "\xc3\xa9", 2));
  same("<<8364/utf8>>", keel_binary(&h, "\xe2\x82\xac", 3));
  uint8_t b[2] = {1, 2 << 5};
  same("<<1,2:3>>", keel_bitstring(&h, b, 11));
  same("<< 5:3 >>", keel_bitstring(&h, (uint8_t[]){5 << 5}, 3));
}

Test(parse, identifiers) {
  same("<0.7.0>", keel_pid_local(7));
  same("<0.5.3>", keel_pid_local(5 | (UINT64_C(3) << 32)));
  keel_ref_parts r = {
      .node = keel_term_local_node(&r.creation), .len = 3, .id = {1, 2, 3}};
  same("#Ref<0.3.2.1>", keel_ref_make(&h, &r));
  keel_port_parts pp = {.node = keel_term_local_node(&pp.creation), .id = 9};
  same("#Port<0.9>", keel_port_make(&h, &pp));
  same("fun lists:map/2",
       keel_export_fun(&h, keel_atom("lists"), keel_atom("map"), 2));
  same("fun 'A b':'c'/0",
       keel_export_fun(&h, keel_atom("A b"), keel_atom("c"), 0));
  keel_pid_parts p = {
      .node = keel_atom("n@h"), .id = 1, .serial = 2, .creation = 3};
  same("#Pid<n@h.3.1.2>", keel_pid_make(&h, &p));
}

Test(parse, whitespace_comments_dot_and_consumed) {
  same("  % comment\n {a, % inner\n b}. % end\n",
       keel_tuple(&h, 2, keel_atom("a"), keel_atom("b")));
  keel_term t;
  size_t used;
  const char *two = "{a}. [b].";
  cr_assert_eq(keel_parse(&h, two, strlen(two), &t, &used), KEEL_OK);
  cr_assert_eq(used, 5);
  cr_assert_eq(keel_parse(&h, two + used, strlen(two) - used, &t, &used),
               KEEL_OK);
  cr_assert(keel_eq_exact(t, keel_cons(&h, keel_atom("b"), KEEL_NIL)));
  cr_assert_eq(used, 4);
  cr_assert_eq(err("{a} junk", NULL), KEEL_EPARSE);
  cr_assert_eq(keel_parse(&h, "1.", 2, &t, NULL), KEEL_OK);
  cr_assert_eq(t, keel_small(1));
}

Test(parse, malformed_inputs) {
  static const char *const bad[] = {"",          "   ",
                                    "{",         "{a,}",
                                    "{a b}",     "[1,2",
                                    "[1|2|3]",   "[|1]",
                                    "#{a}",      "#{a => }",
                                    "#{a := 1}", "<<",
                                    "<<1,>>",    "<<a>>",
                                    "<<1:65>>",  "<<1/float>>",
                                    "\"abc",     "'abc",
                                    "$",         "1e5",
                                    "1.0e400",   "16#",
                                    "37#1",      "1__0",
                                    "_1",        "X",
                                    "<1.2.3>",   "<0.1>",
                                    "#Ref<0>",   "#Foo<0.1>",
                                    "fun a:b",   "fun a:b/256",
                                    "~i",        "\"\\x{110000}\"",
                                    "'\xff'",    "\"\xc3\"",
                                    "1 2",       "}",
                                    "a.b",       "1..2"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t at = 12345;
    cr_assert_eq(err(bad[i], NULL), KEEL_EPARSE, "input %zu (%s)", i, bad[i]);
    /* With *consumed the parser may stop after a leading term instead. */
    int rc = err(bad[i], &at);
    cr_assert(rc == KEEL_EPARSE || (rc == KEEL_OK && at < strlen(bad[i])),
              "input %zu (%s): %d", i, bad[i], rc);
    cr_assert(at <= strlen(bad[i]), "offset past the end for %s", bad[i]);
  }
  size_t at;
  cr_assert_eq(err("{a, b c}", &at), KEEL_EPARSE);
  cr_assert_eq(at, 6);
  keel_term t;
  cr_assert_eq(keel_parse(NULL, "a", 1, &t, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_parse(&h, NULL, 1, &t, NULL), KEEL_EINVAL);
}

Test(parse, atom_limits) {
  char name[300];
  memset(name, 'a', sizeof name);
  name[0] = '\'';
  name[257] = '\'';
  cr_assert_eq(keel_parse(&h, name, 258, &(keel_term){0}, NULL), KEEL_ELIMIT);
  name[256] = '\'';
  cr_assert_eq(keel_parse(&h, name, 257, &(keel_term){0}, NULL), KEEL_OK);
}

Test(parse, integer_length_limit) {
  size_t n = 100001;
  char *s = malloc(n);
  memset(s, '7', n);
  keel_term t;
  cr_assert_eq(keel_parse(&h, s, n, &t, NULL), KEEL_ELIMIT);
  cr_assert_eq(keel_parse(&h, s, 1000, &t, NULL), KEEL_OK);
  cr_assert(keel_is_integer(t) && !keel_is_small(t));
  free(s);
}

Test(parse, nesting_limit_without_stack_overflow) {
  size_t n = 1000000;
  char *s = malloc(n);
  memset(s, '[', n);
  keel_term t;
  cr_assert_eq(keel_parse(&h, s, n, &t, NULL), KEEL_ELIMIT);
  memset(s, '{', n);
  cr_assert_eq(keel_parse(&h, s, n, &t, NULL), KEEL_ELIMIT);
  /* 50000 levels are fine, and round-trip through the printer. */
  size_t d = 50000;
  for (size_t i = 0; i < d; i++) {
    s[i] = '[';
    s[d + i] = ']';
  }
  cr_assert_eq(keel_parse(&h, s, 2 * d, &t, NULL), KEEL_OK);
  char *out = keel_print_alloc(t, NULL);
  cr_assert_eq(strlen(out), 2 * d);
  cr_assert_eq(memcmp(out, s, 2 * d), 0);
  free(out);
  free(s);
}

/* ---- random round trip ---------------------------------------------------
 */

static uint64_t rng = 0x2545f4914f6cdd1du;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static size_t below(size_t n) {
  return (size_t)(rnd() % n);
}

static keel_term rand_atom(void) {
  static const char *const A[] = {
      "a",     "Abc",  "a b", "case", "\xc3\xa9",         "\xcf\xa8x",
      "'\"\\", "\n\t", "",    "[]",   "\xf0\x9f\x98\x80", "ok@host"};
  return keel_atom(A[below(sizeof A / sizeof A[0])]);
}

static keel_term rand_leaf(void) {
  uint8_t b[100];
  keel_term e[8];
  size_t n;
  switch (below(11)) {
  case 0:
    return keel_int(&h, (int64_t)rnd() >> below(64));
  case 1: {
    uint64_t l[3] = {rnd(), rnd(), rnd()};
    return keel_bigint(&h, below(2), l, 1 + below(3));
  }
  case 2: {
    double d;
    uint64_t bits = rnd();
    memcpy(&d, &bits, sizeof d);
    return keel_float(&h, isfinite(d) ? d : 0.25);
  }
  case 3:
    return rand_atom();
  case 4:
    n = below(8);
    for (size_t i = 0; i < n; i++)
      e[i] = keel_small((int64_t)(below(3) == 0 ? below(0x11000) : below(256)));
    return keel_list_from(&h, n, e);
  case 5:
    n = below(sizeof b);
    for (size_t i = 0; i < n; i++)
      b[i] = below(2) ? (uint8_t)rnd() : (uint8_t)('a' + below(26));
    return below(3) == 0 ? keel_bitstring(&h, b, n * 8 + below(8))
                         : keel_binary(&h, b, n);
  case 6:
    return keel_pid_local(rnd() & KEEL_PID_NUMBER_MAX);
  case 7: {
    keel_ref_parts r = {.node = keel_atom("n@h"),
                        .creation = (uint32_t)rnd(),
                        .len = 1 + (uint32_t)below(5)};
    if (below(2))
      r.node = keel_term_local_node(&r.creation);
    for (int i = 0; i < 5; i++)
      r.id[i] = (uint32_t)rnd();
    return keel_ref_make(&h, &r);
  }
  case 8: {
    keel_port_parts p = {.node = keel_term_local_node(&p.creation),
                         .id = rnd()};
    return keel_port_make(&h, &p);
  }
  case 9: {
    keel_pid_parts p = {.node = keel_atom("x@y"),
                        .id = (uint32_t)rnd(),
                        .serial = (uint32_t)rnd(),
                        .creation = 7};
    return below(2)
               ? keel_pid_make(&h, &p)
               : keel_export_fun(&h, rand_atom(), rand_atom(), (uint8_t)rnd());
  }
  default:
    return KEEL_NIL;
  }
}

static keel_term rand_term(int depth) {
  keel_term e[6], v[6];
  if (depth == 0 || below(3) == 0)
    return rand_leaf();
  size_t n = below(6);
  for (size_t i = 0; i < n; i++)
    e[i] = rand_term(depth - 1);
  switch (below(4)) {
  case 0:
    return keel_tuple_from(&h, n, e);
  case 1:
    return keel_list_from_tail(&h, n, e, n > 0 ? rand_leaf() : KEEL_NIL);
  case 2:
    return keel_list_from(&h, n, e);
  default:
    for (size_t i = 0; i < n; i++)
      v[i] = rand_term(depth - 1);
    return keel_map_from(&h, n, e, v);
  }
}

Test(parse, random_round_trip) {
  keel_print_opts w = {.no_strings = true};
  for (int i = 0; i < 3000; i++) {
    keel_term t = rand_term(4);
    for (int m = 0; m < 2; m++) {
      char *s = keel_print_alloc(t, m ? &w : NULL);
      cr_assert_not_null(s);
      keel_term u;
      size_t used;
      int rc = keel_parse(&h, s, strlen(s), &u, &used);
      cr_assert_eq(rc, KEEL_OK, "term %d: %s", i, s);
      cr_assert_eq(used, strlen(s));
      cr_assert(keel_eq_exact(t, u), "term %d differs after: %s", i, s);
      free(s);
    }
  }
}
