/*
 * keel_print, keel_print_alloc, keel_fprint: Erlang's ~p/~w text for each
 * kind of term. Expected strings are what Erlang/OTP's io_lib:format
 * prints for the same terms (test_print_erl.c checks that against a live
 * erl on generated terms).
 */
#include <criterion/criterion.h>
#include <stdio.h>
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

TestSuite(print, .init = setup, .fini = teardown);

static void check(keel_term t, const keel_print_opts *o, const char *want) {
  char *s = keel_print_alloc(t, o);
  cr_assert_not_null(s);
  cr_assert_str_eq(s, want);
  free(s);
}

static keel_term P(const char *text) {
  keel_term t;
  cr_assert_eq(keel_parse(&h, text, strlen(text), &t, NULL), KEEL_OK, "%s",
               text);
  return t;
}

Test(print, floats_shortest_like_erlang) {
  static const struct {
    double v;
    const char *s;
  } cases[] = {{1.0, "1.0"},
               {0.1, "0.1"},
               {1e20, "1.0e20"},
               {-0.0, "-0.0"},
               {0.0, "0.0"},
               {100.0, "100.0"},
               {1000.0, "1.0e3"},
               {123456.0, "123456.0"},
               {1234567.0, "1234567.0"},
               {1e-4, "0.0001"},
               {1e-5, "1.0e-5"},
               {1.2e-4, "1.2e-4"},
               {120.0, "120.0"},
               {1200.0, "1.2e3"},
               {9007199254740992.0, "9.007199254740992e15"},
               {123.456, "123.456"},
               {5e-324, "5.0e-324"},
               {1.5e300, "1.5e300"},
               {-2.5e-5, "-2.5e-5"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check(keel_float(&h, cases[i].v), NULL, cases[i].s);
}

Test(print, integers_small_and_big) {
  check(keel_small(0), NULL, "0");
  check(keel_small(-42), NULL, "-42");
  check(keel_int(&h, INT64_MIN), NULL, "-9223372036854775808");
  check(keel_uint(&h, UINT64_MAX), NULL, "18446744073709551615");
  uint64_t limbs[2] = {0, 1};
  check(keel_bigint(&h, true, limbs, 2), NULL, "-18446744073709551616");
}

Test(print, atoms_quoted_when_needed) {
  check(keel_atom("ok"), NULL, "ok");
  check(keel_atom("Abc"), NULL, "'Abc'");
  check(keel_atom("a b"), NULL, "'a b'");
  check(keel_atom("case"), NULL, "'case'");
  check(keel_atom("maybe"), NULL, "maybe");
  check(keel_atom("a@b_1"), NULL, "a@b_1");
  check(keel_atom("a.b"), NULL, "'a.b'");
  check(keel_atom(""), NULL, "''");
  check(keel_atom("[]"), NULL, "'[]'");
  check(keel_atom("it's"), NULL, "'it\\'s'");
  check(keel_atom("back\\slash"), NULL, "'back\\\\slash'");
  check(keel_atom("\n\x01\x7f"), NULL, "'\\n\\001\\d'");
  check(keel_atom("\xc3\xa9t\xc3\xa9"), NULL, "\xc3\xa9t\xc3\xa9");
  check(keel_atom("\xc3\x89"), NULL, "'\xc3\x89'");
  check(keel_atom("\xcf\xa8"), NULL, "'\\x{3E8}'");
  check(keel_atom("\xc2\x80"), NULL, "'\\200'");
}

Test(print, strings_and_lists) {
  check(keel_string(&h, "abc"), NULL, "\"abc\"");
  check(keel_string(&h, "a\"b\\c\n\t\x1b"), NULL, "\"a\\\"b\\\\c\\n\\t\\e\"");
  check(keel_string(&h, "\xc3\xa9"), NULL, "\"\xc3\xa9\"");
  check(keel_string(&h, "\xcf\xa8"), NULL, "[1000]");
  check(keel_string(&h, "a\x01"), NULL, "[97,1]");
  keel_print_opts w = {.no_strings = true};
  check(keel_string(&h, "abc"), &w, "[97,98,99]");
  check(KEEL_NIL, NULL, "[]");
  check(keel_cons(&h, keel_atom("a"), keel_atom("b")), NULL, "[a|b]");
  check(keel_cons(&h, keel_small('a'), keel_atom("b")), NULL, "[97|b]");
}

Test(print, binaries_and_bitstrings) {
  check(keel_binary(&h, "abc", 3), NULL, "<<\"abc\">>");
  check(keel_binary(&h, "\xc3\xa9", 2), NULL, "<<\"\xc3\x83\xc2\xa9\">>");
  check(keel_binary(&h, "a\0", 2), NULL, "<<97,0>>");
  check(keel_binary(&h, "", 0), NULL, "<<>>");
  uint8_t b[2] = {1, 2 << 5};
  check(keel_bitstring(&h, b, 11), NULL, "<<1,2:3>>");
  keel_print_opts w = {.no_strings = true};
  check(keel_binary(&h, "abc", 3), &w, "<<97,98,99>>");
  char big[100];
  memset(big, 'x', sizeof big);
  char *s = keel_print_alloc(keel_binary(&h, big, sizeof big), NULL);
  cr_assert_eq(strlen(s), 100 + 6);
  free(s);
}

Test(print, tuples_maps_and_others) {
  keel_term t = keel_tuple(&h, 3, keel_atom("a"), keel_small(1), KEEL_NIL);
  check(t, NULL, "{a,1,[]}");
  check(keel_tuple_from(&h, 0, NULL), NULL, "{}");
  check(keel_map_new(&h), NULL, "#{}");
  keel_term k[3] = {keel_float(&h, 1.0), keel_small(2), keel_atom("a")};
  keel_term v[3] = {keel_small(1), keel_small(2), keel_small(3)};
  check(keel_map_from(&h, 3, k, v), NULL, "#{2 => 2,1.0 => 1,a => 3}");
  check(keel_pid_local(7), NULL, "<0.7.0>");
  check(keel_pid_local(5 | (UINT64_C(3) << 32)), NULL, "<0.5.3>");
  keel_ref_parts r = {
      .node = keel_term_local_node(&r.creation), .len = 3, .id = {1, 2, 3}};
  check(keel_ref_make(&h, &r), NULL, "#Ref<0.3.2.1>");
  keel_port_parts pp = {.node = keel_term_local_node(&pp.creation), .id = 9};
  check(keel_port_make(&h, &pp), NULL, "#Port<0.9>");
  check(keel_export_fun(&h, keel_atom("lists"), keel_atom("map"), 2), NULL,
        "fun lists:map/2");
  check(keel_export_fun(&h, keel_atom("M"), keel_atom("case"), 0), NULL,
        "fun 'M':case/0");
}

Test(print, remote_identifiers_use_keel_syntax) {
  keel_pid_parts p = {
      .node = keel_atom("n@h"), .id = 1, .serial = 2, .creation = 3};
  check(keel_pid_make(&h, &p), NULL, "#Pid<n@h.3.1.2>");
  keel_port_parts pp = {.node = keel_atom("n@h"), .id = 4, .creation = 5};
  check(keel_port_make(&h, &pp), NULL, "#Port<n@h.5.4>");
}

Test(print, depth_limit_like_tilde_P) {
  keel_print_opts d3 = {.depth = 3}, d2 = {.depth = 2}, d1 = {.depth = 1};
  check(P("[1,[2,[3,[4]]],{a,{b,{c}}}]"), &d3, "[1,[...]|...]");
  check(P("[1,2,3,4,5,6,7,8,9,10]"), &d3, "[1,2|...]");
  check(P("{1,2,3,4,5}"), &d3, "{1,2,...}");
  check(P("#{a => 1,b => 2,c => 3}"), &d2, "#{a => 1,...}");
  check(P("<<1,2,3,4,5,6,7>>"), &d3, "<<1,2,...>>");
  check(P("\"abcdefgh\""), &d3, "\"abcdefgh\"");
  check(P("<<\"abcdefghijklmnopqrstuvwxyz\">>"), &d3, "<<\"abcdefgh\"...>>");
  check(P("<<\"abc\",1,\"defghijklmnop\">>"), &d2, "<<\"abc\"...>>");
  check(P("{a,\"abc\",<<\"xy\">>}"), &d3, "{a,[...],...}");
  check(P("[1,2|c]"), &d3, "[1,2|...]");
  check(P("{a,b}"), &d1, "{...}");
  check(P("atom"), &d1, "atom");
}

Test(print, snprintf_semantics) {
  keel_term t = P("{hello,\"world\"}");
  char buf[8];
  memset(buf, 'Z', sizeof buf);
  int n = keel_print(buf, sizeof buf, t, NULL);
  cr_assert_eq(n, (int)strlen("{hello,\"world\"}"));
  cr_assert_str_eq(buf, "{hello,");
  cr_assert_eq(keel_print(NULL, 0, t, NULL), n);
  char one[1] = {'Z'};
  cr_assert_eq(keel_print(one, 1, t, NULL), n);
  cr_assert_eq(one[0], '\0');
  cr_assert_eq(keel_print(buf, sizeof buf, KEEL_NONE, NULL), KEEL_EINVAL);
  cr_assert_null(keel_print_alloc(KEEL_NONE, NULL));
}

Test(print, fprint_writes_the_same_text) {
  keel_term t = P("[{a,1.5},<<\"x\">>,#{k => \"v\"}]");
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  int n = keel_fprint(f, t, NULL);
  char *want = keel_print_alloc(t, NULL);
  cr_assert_eq(n, (int)strlen(want));
  rewind(f);
  char got[128] = {0};
  cr_assert_eq(fread(got, 1, sizeof got - 1, f), (size_t)n);
  cr_assert_str_eq(got, want);
  free(want);
  fclose(f);
  cr_assert_eq(keel_fprint(NULL, t, NULL), KEEL_EINVAL);
}

Test(print, deep_terms_print_iteratively) {
  enum { DEPTH = 200000 };
  keel_term t = KEEL_NIL;
  for (int i = 0; i < DEPTH; i++)
    t = keel_cons(&h, t, KEEL_NIL);
  int n = keel_print(NULL, 0, t, NULL);
  cr_assert_eq(n, 2 * DEPTH + 2);
  keel_term u = keel_atom("x");
  for (int i = 0; i < DEPTH; i++)
    u = keel_tuple(&h, 1, u);
  char *s = keel_print_alloc(u, NULL);
  cr_assert_not_null(s);
  cr_assert_eq(strlen(s), 2 * (size_t)DEPTH + 1);
  cr_assert_eq(s[DEPTH], 'x');
  free(s);
  keel_print_opts d = {.depth = 4};
  check(u, &d, "{{{{...}}}}");
}
