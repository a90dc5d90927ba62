/* keel_build / keel_build_v: Erlang syntax with '~' directives. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "keel/term.h"

static keel_heap h;
static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(build, .init = setup, .fini = teardown);

static keel_term P(const char *text) {
  keel_term t;
  cr_assert_eq(keel_parse(&h, text, strlen(text), &t, NULL), KEEL_OK);
  return t;
}

static int build_in(keel_heap *hp, keel_term *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = keel_build_v(hp, out, fmt, ap);
  va_end(ap);
  return rc;
}

static int build_rc(keel_term *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = keel_build_v(&h, out, fmt, ap);
  va_end(ap);
  return rc;
}

Test(build, header_example) {
  keel_term t = keel_build(&h, "{ok, ~i, ~b}", 42, "x");
  cr_assert(keel_eq_exact(t, P("{ok,42,<<\"x\">>}")));
}

Test(build, every_directive) {
  keel_term inner = P("[x|y]");
  keel_term t =
      keel_build(&h, "[~i, ~l, ~L, ~u, ~f, ~a, ~s, ~b, ~B, ~t]", -7, -8L,
                 (long long)INT64_MIN, ULONG_MAX, 0.5, "Hi there", "h\xc3\xa9",
                 "bin", "a\0b", (size_t)3, inner);
  keel_term want = keel_list_from(
      &h, 10,
      (keel_term[]){keel_small(-7), keel_small(-8), keel_int(&h, INT64_MIN),
                    keel_uint(&h, ULONG_MAX), keel_float(&h, 0.5),
                    keel_atom("Hi there"), keel_string(&h, "h\xc3\xa9"),
                    keel_binary(&h, "bin", 3), keel_binary(&h, "a\0b", 3),
                    inner});
  cr_assert(keel_eq_exact(t, want));
}

Test(build, nested_and_mixed_with_literals) {
  keel_term t =
      keel_build(&h, "#{~a => {~i, [1.5, \"s\"]}, k => <<1,2>>}", "key", 3);
  cr_assert(keel_eq_exact(t, P("#{key => {3,[1.5,\"s\"]},k => <<1,2>>}")));
  keel_term u = keel_build(&h, "{'~~a', \"~~\", ~s}", "~");
  cr_assert(keel_eq_exact(u, P("{'~a', \"~\", \"~\"}")));
}

Test(build, large_binary_is_shared_object) {
  char big[1000];
  memset(big, 7, sizeof big);
  keel_term t = keel_build(&h, "{data, ~B}", big, sizeof big);
  cr_assert(keel_is_tuple(t));
  size_t len;
  const uint8_t *d = keel_binary_data(keel_tuple_get(t, 1), &len);
  cr_assert_eq(len, sizeof big);
  cr_assert_eq(memcmp(d, big, len), 0);
}

Test(build, errors) {
  keel_term t = P("ok");
  cr_assert_eq(build_rc(&t, "{~i", 1), KEEL_EPARSE);
  cr_assert_eq(t, KEEL_NONE);
  cr_assert_eq(build_rc(&t, "~q"), KEEL_EPARSE);
  cr_assert_eq(build_rc(&t, "~a", (const char *)NULL), KEEL_EINVAL);
  cr_assert_eq(build_rc(&t, "~s", "\xff"), KEEL_EINVAL);
  cr_assert_eq(build_rc(&t, "~f", NAN), KEEL_EINVAL);
  cr_assert_eq(build_rc(&t, "~t", KEEL_NONE), KEEL_EINVAL);
  cr_assert_eq(build_rc(&t, "~b", (const char *)NULL), KEEL_EINVAL);
  cr_assert_eq(build_rc(&t, "'~'"), KEEL_EPARSE);
  cr_assert_eq(build_rc(&t, "X"), KEEL_EPARSE);
  cr_assert_eq(build_rc(&t, "{a} b"), KEEL_EPARSE);
  cr_assert_eq(keel_build(&h, "[~i|", 1), KEEL_NONE);
  cr_assert_eq(build_in(NULL, &t, "a"), KEEL_EINVAL);
  cr_assert_eq(build_in(&h, NULL, "a"), KEEL_EINVAL);
}

Test(build, atom_too_long) {
  char name[300];
  memset(name, 'a', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  keel_term t;
  cr_assert_eq(build_rc(&t, "~a", name), KEEL_ELIMIT);
}
