/* Compiled patterns: captures, types, repeated variables, maps,
 * placeholders, errors and limits. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/term.h"

static keel_heap h;
static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(pattern, .init = setup, .fini = teardown);

static keel_term P(const char *text) {
  keel_term t;
  cr_assert_eq(keel_parse(&h, text, strlen(text), &t, NULL), KEEL_OK, "%s",
               text);
  return t;
}

static keel_pattern *C(const char *fmt) {
  keel_pattern *p = NULL;
  cr_assert_eq(keel_pattern_compile(&p, fmt), KEEL_OK, "%s", fmt);
  return p;
}

Test(pattern, captures_in_order_of_appearance) {
  keel_pattern *p = C("{reply, Ref, _, [Head | Tail]}");
  cr_assert_eq(keel_pattern_nvars(p), 3);
  cr_assert_eq(keel_pattern_var(p, "Ref"), 0);
  cr_assert_eq(keel_pattern_var(p, "Head"), 1);
  cr_assert_eq(keel_pattern_var(p, "Tail"), 2);
  cr_assert_eq(keel_pattern_var(p, "_"), -1);
  cr_assert_eq(keel_pattern_var(p, "Nope"), -1);
  keel_term caps[3];
  cr_assert(keel_match(p, P("{reply, 7, anything, [a, b]}"), caps));
  cr_assert_eq(caps[0], keel_small(7));
  cr_assert_eq(caps[1], keel_atom("a"));
  cr_assert(keel_eq_exact(caps[2], P("[b]")));
  cr_assert_not(keel_match(p, P("{reply, 7, x, []}"), caps));
  cr_assert_not(keel_match(p, P("{reply, 7, x}"), caps));
  cr_assert_not(keel_match(p, P("{noreply, 7, x, [a]}"), caps));
  cr_assert_not(keel_match(p, P("[reply, 7, x, [a]]"), caps));
  cr_assert(keel_match(p, P("{reply, 7, x, [a]}"), NULL));
  keel_pattern_free(p);
}

Test(pattern, typed_captures) {
  static const struct {
    const char *type, *yes, *no;
  } cases[] = {{"int", "12345678901234567890123", "1.0"},
               {"integer", "-3", "a"},
               {"float", "1.0", "1"},
               {"number", "2.5", "\"2\""},
               {"atom", "x", "\"x\""},
               {"binary", "<<1>>", "<<1:3>>"},
               {"bitstring", "<<1:3>>", "[]"},
               {"list", "[]", "{}"},
               {"tuple", "{}", "[]"},
               {"map", "#{}", "{}"},
               {"pid", "<0.1.0>", "#Ref<0.1.2.3>"},
               {"ref", "#Ref<0.1.2.3>", "<0.1.0>"},
               {"port", "#Port<0.3>", "<0.1.0>"},
               {"fun", "fun m:f/1", "m"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char fmt[64];
    snprintf(fmt, sizeof fmt, "{ok, X:%s}", cases[i].type);
    keel_pattern *p = C(fmt);
    keel_term cap, yes = P(cases[i].yes);
    cr_assert(keel_match(p, keel_tuple(&h, 2, keel_atom("ok"), yes), &cap),
              "%s should match %s", fmt, cases[i].yes);
    cr_assert(keel_eq_exact(cap, yes));
    cr_assert_not(
        keel_match(p, keel_tuple(&h, 2, keel_atom("ok"), P(cases[i].no)), &cap),
        "%s should not match %s", fmt, cases[i].no);
    keel_pattern_free(p);
  }
  keel_pattern *any = C("_:atom");
  cr_assert_eq(keel_pattern_nvars(any), 0);
  cr_assert(keel_match(any, keel_atom("a"), NULL));
  cr_assert_not(keel_match(any, keel_small(1), NULL));
  keel_pattern_free(any);
}

Test(pattern, repeated_variable_means_exact_equality) {
  keel_pattern *p = C("{X, X, _Ignored, _Ignored}");
  cr_assert_eq(keel_pattern_nvars(p), 1);
  keel_term cap;
  cr_assert(keel_match(p, P("{\"ab\", \"ab\", 1, 2}"), &cap));
  cr_assert(keel_eq_exact(cap, P("\"ab\"")));
  cr_assert_not(keel_match(p, P("{1, 1.0, x, x}"), &cap));
  cr_assert_not(keel_match(p, P("{a, b, x, x}"), NULL));
  cr_assert(keel_match(p, P("{<<1>>, <<1>>, x, y}"), NULL));
  keel_pattern_free(p);
}

Test(pattern, literals_match_exactly) {
  keel_pattern *p = C("{1, 2.0, \"s\", <<\"b\">>, [], #Ref<0.1.2.3>}");
  cr_assert_eq(keel_pattern_nvars(p), 0);
  cr_assert(
      keel_match(p, P("{1, 2.0, \"s\", <<\"b\">>, [], #Ref<0.1.2.3>}"), NULL));
  cr_assert_not(keel_match(
      p, P("{1.0, 2.0, \"s\", <<\"b\">>, [], #Ref<0.1.2.3>}"), NULL));
  cr_assert_not(
      keel_match(p, P("{1, 2, \"s\", <<\"b\">>, [], #Ref<0.1.2.3>}"), NULL));
  cr_assert_not(
      keel_match(p, P("{1, 2.0, \"s\", <<\"b\">>, [], #Ref<0.1.2.4>}"), NULL));
  keel_pattern_free(p);
}

Test(pattern, maps_match_present_keys) {
  keel_pattern *p = C("#{k := V, {a, 1} := [W | _]}");
  keel_term caps[2];
  cr_assert(keel_match(p, P("#{k => 1, {a,1} => [x, y], other => z}"), caps));
  cr_assert_eq(caps[0], keel_small(1));
  cr_assert_eq(caps[1], keel_atom("x"));
  cr_assert_not(keel_match(p, P("#{k => 1}"), caps));
  cr_assert_not(keel_match(p, P("#{k => 1, {a,1} => []}"), caps));
  cr_assert_not(keel_match(p, P("[k]"), caps));
  keel_pattern_free(p);
  keel_pattern *any = C("#{}");
  cr_assert(keel_match(any, P("#{a => b}"), NULL));
  cr_assert_not(keel_match(any, P("{}"), NULL));
  keel_pattern_free(any);
  keel_pattern *bad = NULL;
  cr_assert_eq(keel_pattern_compile(&bad, "#{K := 1}"), KEEL_EPARSE);
  cr_assert_eq(keel_pattern_compile(&bad, "#{{a, [K]} := 1}"), KEEL_EPARSE);
  cr_assert_null(bad);
}

Test(pattern, placeholders_insert_values) {
  keel_ref_parts r = {
      .node = keel_term_local_node(&r.creation), .len = 3, .id = {10, 20, 30}};
  keel_term ref = keel_ref_make(&h, &r);
  keel_pattern *p = NULL;
  cr_assert_eq(
      keel_pattern_compile(&p, "{~t, ~a, ~i, ~b, Reply}", ref, "tag", 5, "bin"),
      KEEL_OK);
  /* The pattern owns copies of its values: the source heap may go. */
  keel_heap_destroy(&h);
  keel_heap_init(&h);
  keel_term cap;
  keel_term msg = P("{#Ref<0.30.20.10>, tag, 5, <<\"bin\">>, {ok, 1}}");
  cr_assert(keel_match(p, msg, &cap));
  cr_assert(keel_eq_exact(cap, P("{ok, 1}")));
  cr_assert_not(
      keel_match(p, P("{#Ref<0.30.20.11>, tag, 5, <<\"bin\">>, x}"), &cap));
  keel_pattern_free(p);
}

Test(pattern, compile_errors) {
  keel_pattern *p = (keel_pattern *)&h;
  cr_assert_eq(keel_pattern_compile(&p, "{ok, X"), KEEL_EPARSE);
  cr_assert_null(p);
  cr_assert_eq(keel_pattern_compile(&p, "{ok, X:integr}"), KEEL_EINVAL);
  cr_assert_eq(keel_pattern_compile(&p, "~q"), KEEL_EPARSE);
  cr_assert_eq(keel_pattern_compile(&p, "<<X>>"), KEEL_EPARSE);
  cr_assert_eq(keel_pattern_compile(&p, "{a} b"), KEEL_EPARSE);
  cr_assert_eq(keel_pattern_compile(NULL, "a"), KEEL_EINVAL);
  keel_pattern_free(NULL);
  cr_assert_eq(keel_pattern_nvars(NULL), 0);
  cr_assert_not(keel_match(NULL, keel_atom("a"), NULL));
}

Test(pattern, depth_limit_and_long_lists) {
  enum { N = 5000 };
  static char fmt[4 * N + 16];
  size_t k = 0;
  for (int i = 0; i < N; i++)
    fmt[k++] = '{';
  fmt[k++] = 'X';
  for (int i = 0; i < N; i++)
    fmt[k++] = '}';
  fmt[k] = '\0';
  keel_pattern *p = NULL;
  /* Deep single-element tuples only need a frame while open... */
  cr_assert_eq(keel_pattern_compile(&p, fmt), KEEL_OK);
  keel_term t = keel_atom("leaf");
  for (int i = 0; i < N; i++)
    t = keel_tuple(&h, 1, t);
  keel_term cap;
  cr_assert(keel_match(p, t, &cap));
  cr_assert_eq(cap, keel_atom("leaf"));
  keel_pattern_free(p);
  /* ...but nesting in first positions keeps one frame per level open. */
  k = 0;
  for (int i = 0; i < 100; i++)
    fmt[k++] = '{';
  fmt[k++] = 'X';
  for (int i = 0; i < 100; i++) {
    memcpy(fmt + k, ",a}", 3);
    k += 3;
  }
  fmt[k] = '\0';
  cr_assert_eq(keel_pattern_compile(&p, fmt), KEEL_OK);
  keel_pattern_free(p);
  k = 0;
  for (int i = 0; i < 1000; i++)
    fmt[k++] = '{';
  fmt[k++] = 'X';
  for (int i = 0; i < 1000; i++) {
    memcpy(fmt + k, ",a}", 3);
    k += 3;
  }
  fmt[k] = '\0';
  cr_assert_eq(keel_pattern_compile(&p, fmt), KEEL_ELIMIT);
  /* A long list pattern costs no depth. */
  k = 0;
  fmt[k++] = '[';
  for (int i = 0; i < N; i++) {
    fmt[k++] = 'a';
    fmt[k++] = ',';
  }
  fmt[k++] = 'T';
  fmt[k++] = ']';
  fmt[k] = '\0';
  cr_assert_eq(keel_pattern_compile(&p, fmt), KEEL_OK);
  keel_term e[N + 1];
  for (int i = 0; i < N; i++)
    e[i] = keel_atom("a");
  e[N] = keel_small(9);
  cr_assert(keel_match(p, keel_list_from(&h, N + 1, e), &cap));
  cr_assert_eq(cap, keel_small(9));
  e[N - 1] = keel_atom("b");
  cr_assert_not(keel_match(p, keel_list_from(&h, N + 1, e), &cap));
  keel_pattern_free(p);
}
