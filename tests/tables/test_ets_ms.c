/* Match specifications: match, match_object, select, select_count,
 * select_delete and ms_run with heads, guards and bodies; bad specs.
 * Expected results are written by hand from Erlang's semantics. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/ets.h"
#include "tables/ets_internal.h"

static keel_heap H;

static void setup(void) {
  keel_heap_init(&H);
}
static void teardown(void) {
  keel_heap_destroy(&H);
  keel_ets_delete_all_tables();
}

TestSuite(ms, .init = setup, .fini = teardown);

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

/* An ordered_set (results come in key order) holding people. */
static keel_ets_tab people(void) {
  keel_ets_opts o = {.type = KEEL_ETS_ORDERED_SET};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  cr_assert_eq(keel_ets_insert(t, T("[{1, ann, 31, <<\"x\">>},"
                                    " {2, bob, 17, [a]},"
                                    " {3, cid, 45, 2.5},"
                                    " {4, dan, 17, {t}}]")),
               KEEL_OK);
  return t;
}

static keel_term sel(keel_ets_tab t, const char *spec) {
  keel_term r;
  int rc = keel_ets_select(t, T(spec), &H, &r);
  cr_assert_eq(rc, KEEL_OK, "%s: %d", spec, rc);
  return r;
}

Test(ms, match_and_match_object) {
  keel_ets_tab t = people();
  keel_term r;
  cr_assert_eq(keel_ets_match(t, T("{'$1', '$2', 17, '_'}"), &H, &r), KEEL_OK);
  assert_term(r, "[[2, bob], [4, dan]]");
  /* bindings come in variable-number order, not position order */
  cr_assert_eq(keel_ets_match(t, T("{'$2', '$1', 17, '_'}"), &H, &r), KEEL_OK);
  assert_term(r, "[[bob, 2], [dan, 4]]");
  cr_assert_eq(keel_ets_match_object(t, T("{'_', '_', 17, '_'}"), &H, &r),
               KEEL_OK);
  assert_term(r, "[{2, bob, 17, [a]}, {4, dan, 17, {t}}]");
  /* a repeated variable must bind equal terms */
  cr_assert_eq(keel_ets_insert(t, T("{5, x, x, 0}")), KEEL_OK);
  cr_assert_eq(keel_ets_match(t, T("{'$1', '$2', '$2', '_'}"), &H, &r),
               KEEL_OK);
  assert_term(r, "[[5, x]]");
  cr_assert_eq(keel_ets_match_object(t, T("'_'"), &H, &r), KEEL_OK);
  size_t n;
  cr_assert_eq(keel_list_length(r, &n), KEEL_OK);
  cr_assert_eq(n, 5);
  /* nested patterns */
  cr_assert_eq(keel_ets_match(t, T("{'_', '_', '_', ['$1']}"), &H, &r),
               KEEL_OK);
  assert_term(r, "[[a]]");
}

Test(ms, guards) {
  keel_ets_tab t = people();
  assert_term(sel(t, "[{{'$1', '$2', '$3', '_'}, [{'>', '$3', 20}], ['$2']}]"),
              "[ann, cid]");
  assert_term(sel(t, "[{{'$1', '$2', '$3', '_'},"
                     " [{'andalso', {'>=', '$3', 17}, {'<', '$3', 40}}],"
                     " ['$1']}]"),
              "[1, 2, 4]");
  assert_term(sel(t, "[{{'$1', '_', '$3', '_'},"
                     " [{'orelse', {'==', '$1', 1}, {'=:=', '$3', 45}}],"
                     " ['$1']}]"),
              "[1, 3]");
  assert_term(sel(t, "[{{'$1', '_', '_', '_'}, [{'not', {'==', '$1', 2}}],"
                     " ['$1']}]"),
              "[1, 3, 4]");
  /* arithmetic */
  assert_term(sel(t, "[{{'$1', '_', '$3', '_'},"
                     " [{'==', {'+', '$3', 3}, 20}], [{'-', '$3', '$1'}]}]"),
              "[15, 13]");
  /* type tests on the fourth element */
  assert_term(sel(t, "[{{'$1', '_', '_', '$4'}, [{is_binary, '$4'}], ['$1']},"
                     " {{'$1', '_', '_', '$4'}, [{is_float, '$4'}], ['$1']}]"),
              "[1, 3]");
  assert_term(sel(t, "[{{'$1', '_', '_', '$4'}, [{is_list, '$4'}], ['$1']}]"),
              "[2]");
  assert_term(sel(t, "[{{'$1', '_', '_', '$4'}, [{is_tuple, '$4'}], ['$1']}]"),
              "[4]");
  /* two guards: both must hold */
  assert_term(sel(t, "[{{'$1', '_', '$3', '_'}, [{'<', '$3', 40},"
                     " {'>', '$1', 1}], ['$1']}]"),
              "[2, 4]");
  /* a guard that raises (atom + 1) fails the clause, it does not abort */
  assert_term(sel(t, "[{{'$1', '$2', '_', '_'}, [{'>', {'+', '$2', 1}, 0}],"
                     " ['$1']}]"),
              "[]");
  /* a guard that is not exactly true fails */
  assert_term(sel(t, "[{{'$1', '_', '_', '_'}, ['$1'], ['$1']}]"), "[]");
  assert_term(sel(t, "[{{'$1', '_', '_', '_'}, [true], ['$1']}]"),
              "[1, 2, 3, 4]");
}

Test(ms, bodies) {
  keel_ets_tab t = people();
  assert_term(sel(t, "[{{2, '$1', '$2', '_'}, [], ['$_']}]"),
              "[{2, bob, 17, [a]}]");
  assert_term(sel(t, "[{{2, '$1', '$2', '_'}, [], ['$$']}]"), "[[bob, 17]]");
  assert_term(sel(t, "[{{2, '$1', '$2', '_'}, [], [{{'$2', '$1', k}}]}]"),
              "[{17, bob, k}]");
  assert_term(sel(t, "[{{2, '$1', '$2', '_'}, [], [['$1', {{'$2'}}]]}]"),
              "[[bob, {17}]]");
  assert_term(sel(t, "[{{2, '_', '_', '_'}, [], [{const, {'$1', x}}]}]"),
              "[{'$1', x}]");
  assert_term(sel(t, "[{{2, '_', '_', '_'}, [], [first, second]}]"),
              "[second]");
  assert_term(sel(t, "[{{2, '_', '_', '$4'}, [], [{hd, '$4'}]}]"), "[a]");
  assert_term(sel(t, "[{{4, '_', '_', '$4'}, [], [{element, 1, '$4'}]}]"),
              "[t]");
}

Test(ms, bound_key_and_counts) {
  keel_ets_opts o = {.type = KEEL_ETS_SET};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  for (int i = 0; i < 500; i++)
    cr_assert_eq(keel_ets_insert(t, keel_build(&H, "{{k, ~i}, ~i}", i, i % 3)),
                 KEEL_OK);
  uint64_t scans = atomic_load(&keel__ets_scans);
  assert_term(sel(t, "[{{{k, 77}, '$1'}, [], ['$1']}]"), "[2]");
  cr_assert_eq(atomic_load(&keel__ets_scans), scans, "bound key scanned");
  assert_term(sel(t, "[{{{k, '_'}, 77}, [], [x]}]"), "[]");
  cr_assert_eq(atomic_load(&keel__ets_scans), scans + 1);
  assert_term(sel(t, "[{{{k, 1000}, '$1'}, [], ['$1']}]"), "[]");
  /* the bound key still has to match exactly: 77.0 is another key */
  assert_term(sel(t, "[{{{k, 77.0}, '$1'}, [], ['$1']}]"), "[]");
  cr_assert_eq(
      keel_ets_select_count(t, T("[{{'_', '$1'}, [{'==', '$1', 0}], [true]}]")),
      167);
  cr_assert_eq(keel_ets_select_count(t, T("[{{'_', '$1'}, [], ['$1']}]")), 0);
  cr_assert_eq(keel_ets_select_delete(
                   t, T("[{{'_', '$1'}, [{'=/=', '$1', 1}], [true]}]")),
               333);
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.size, 167);
  cr_assert_eq(keel_ets_select_count(t, T("[{'_', [], [true]}]")), 167);
}

Test(ms, compile_and_run) {
  keel_ets_ms *ms;
  cr_assert_eq(keel_ets_ms_compile(
                   T("[{{'$1', '$2'}, [{is_integer, '$2'}], [{'*', '$2', 2}]},"
                     " {{'$1', '_'}, [], [{other, '$1'}]}]"),
                   &ms),
               KEEL_EBADARG); /* 'other' is no function */
  cr_assert_eq(keel_ets_ms_compile(
                   T("[{{'$1', '$2'}, [{is_integer, '$2'}], [{'*', '$2', 2}]},"
                     " {{'$1', '_'}, [], [{{other, '$1'}}]}]"),
                   &ms),
               KEEL_OK);
  keel_term r;
  cr_assert_eq(keel_ets_ms_run(ms, T("{a, 21}"), &H, &r), 1);
  assert_term(r, "42");
  cr_assert_eq(keel_ets_ms_run(ms, T("{a, b}"), &H, &r), 1);
  assert_term(r, "{other, a}");
  cr_assert_eq(keel_ets_ms_run(ms, T("{a, b, c}"), &H, &r), 0);
  keel_ets_ms_free(ms);
}

Test(ms, bad_specs) {
  keel_ets_ms *ms;
  const char *bad[] = {
      "x",                                 /* not a list */
      "[{a, [], [true]} | x]",             /* improper */
      "[{{'$1'}, []}]",                    /* not a triple */
      "[{{'$1'}, [], []}]",                /* empty body */
      "[{{'$1'}, x, [true]}]",             /* guards not a list */
      "[{{'$1'}, [{'>', '$1'}], [true]}]", /* wrong arity */
      "[{{'$1'}, [{}], [true]}]",          /* empty call */
      "[{{'$256'}, [], [true]}]",          /* variable too high */
      "[{\"str\", [], [true]}]",           /* head not a tuple */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(keel_ets_ms_compile(T(bad[i]), &ms), KEEL_EBADARG, "%s",
                 bad[i]);
  /* nesting beyond the limit */
  keel_term deep = T("x");
  for (int i = 0; i < 1500; i++)
    deep = keel_tuple(&H, 1, deep);
  keel_term spec = keel_build(&H, "[{{~t}, [], [true]}]", deep);
  cr_assert_eq(keel_ets_ms_compile(spec, &ms), KEEL_ELIMIT);
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(NULL, &t), KEEL_OK);
  keel_term r;
  cr_assert_eq(keel_ets_select(t, T("[bad]"), &H, &r), KEEL_EBADARG);
  cr_assert_eq(keel_ets_select_count(t, T("bad")), KEEL_EBADARG);
  cr_assert_eq(keel_ets_match(t, T("\"s\""), &H, &r), KEEL_EBADARG);
}

Test(ms, select_reverse_match_delete_all) {
  keel_ets_tab t = people();
  assert_term(sel(t, "[{{'$1', '_', 17, '_'}, [], ['$1']}]"), "[2, 4]");
  keel_term r;
  cr_assert_eq(keel_ets_select_reverse(
                   t, T("[{{'$1', '_', 17, '_'}, [], ['$1']}]"), &H, &r),
               KEEL_OK);
  assert_term(r, "[4, 2]");
  cr_assert_eq(keel_ets_match_delete(t, T("{'_', '_', 17, '_'}")), 2);
  cr_assert_eq(keel_ets_match_object(t, T("'_'"), &H, &r), KEEL_OK);
  assert_term(r, "[{1, ann, 31, <<\"x\">>}, {3, cid, 45, 2.5}]");
  keel_ets_opts o = {.name = T("named_one")};
  keel_ets_tab u;
  cr_assert_eq(keel_ets_new(&o, &u), KEEL_OK);
  cr_assert_eq(keel_ets_all(&H, &r), KEEL_OK);
  size_t n;
  cr_assert_eq(keel_list_length(r, &n), KEEL_OK);
  cr_assert_eq(n, 2);
  bool named = false, plain = false;
  for (; keel_is_cons(r); r = keel_tl(r)) {
    named |= keel_hd(r) == T("named_one");
    plain |= keel_hd(r) == keel_small((int64_t)t);
  }
  cr_assert(named && plain);
}
