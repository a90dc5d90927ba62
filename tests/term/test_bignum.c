/* Integers: construction, limbs, parse and format. Random big integers are
 * checked against python3's arbitrary-precision integers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "keel/term.h"

static keel_heap h;

static void setup(void) {
  keel_heap_init(&h);
}
static void teardown(void) {
  keel_heap_destroy(&h);
}

TestSuite(bignum, .init = setup, .fini = teardown);

static const char *fmt(keel_term t, int base) {
  static char buf[4096];
  int n = keel_integer_format(buf, sizeof buf, t, base);
  cr_assert(n >= 0 && (size_t)n < sizeof buf, "format failed: %d", n);
  return buf;
}

static keel_term parse(const char *s, int base) {
  keel_term t;
  int rc = keel_integer_parse(&h, s, strlen(s), base, &t);
  cr_assert_eq(rc, KEEL_OK, "parse(%s): %d", s, rc);
  return t;
}

Test(bignum, small_and_boundaries) {
  cr_assert(keel_is_small(keel_int(&h, KEEL_SMALL_MAX)));
  cr_assert_not(keel_is_small(keel_int(&h, KEEL_SMALL_MAX + 1)));
  cr_assert(keel_is_small(keel_int(&h, KEEL_SMALL_MIN)));
  cr_assert_not(keel_is_small(keel_int(&h, KEEL_SMALL_MIN - 1)));
  int64_t v;
  cr_assert_eq(keel_get_int64(keel_int(&h, INT64_MIN), &v), KEEL_OK);
  cr_assert_eq(v, INT64_MIN);
  cr_assert_eq(keel_get_int64(keel_int(&h, INT64_MAX), &v), KEEL_OK);
  cr_assert_eq(v, INT64_MAX);
  uint64_t u;
  cr_assert_eq(keel_get_uint64(keel_uint(&h, UINT64_MAX), &u), KEEL_OK);
  cr_assert_eq(u, UINT64_MAX);
  cr_assert_eq(keel_get_int64(keel_uint(&h, UINT64_MAX), &v), KEEL_ERANGE);
  cr_assert_eq(keel_get_uint64(keel_small(-1), &u), KEEL_ERANGE);
  cr_assert_eq(keel_get_int64(keel_atom("x"), &v), KEEL_EBADARG);
  cr_assert_str_eq(fmt(keel_int(&h, INT64_MIN), 10), "-9223372036854775808");
  cr_assert_str_eq(fmt(keel_uint(&h, UINT64_MAX), 16), "FFFFFFFFFFFFFFFF");
  cr_assert_str_eq(fmt(keel_small(0), 10), "0");
  cr_assert_str_eq(fmt(keel_small(-35), 36), "-Z");
}

Test(bignum, normalisation) {
  uint64_t limbs[3] = {5, 0, 0};
  keel_term t = keel_bigint(&h, true, limbs, 3);
  cr_assert(keel_is_small(t));
  cr_assert_eq(keel_small_value(t), -5);
  uint64_t zero[2] = {0, 0};
  cr_assert_eq(keel_bigint(&h, true, zero, 2), keel_small(0));
  /* -2^63 is an int64 but not a small. */
  uint64_t m63[1] = {UINT64_C(1) << 63};
  keel_term mn = keel_bigint(&h, true, m63, 1);
  int64_t v;
  cr_assert_eq(keel_get_int64(mn, &v), KEEL_OK);
  cr_assert_eq(v, INT64_MIN);
}

Test(bignum, parse_errors) {
  keel_term t;
  cr_assert_eq(keel_integer_parse(&h, "", 0, 10, &t), KEEL_EPARSE);
  cr_assert_eq(keel_integer_parse(&h, "-", 1, 10, &t), KEEL_EPARSE);
  cr_assert_eq(keel_integer_parse(&h, "12a", 3, 10, &t), KEEL_EPARSE);
  cr_assert_eq(keel_integer_parse(&h, " 1", 2, 10, &t), KEEL_EPARSE);
  cr_assert_eq(keel_integer_parse(&h, "1", 1, 37, &t), KEEL_EINVAL);
  cr_assert_eq(keel_integer_parse(&h, "1", 1, 1, &t), KEEL_EINVAL);
  cr_assert_eq(keel_integer_format(NULL, 0, keel_atom("a"), 10), KEEL_EBADARG);
  cr_assert_eq(parse("+17", 10), keel_small(17));
  cr_assert_eq(parse("-ff", 16), keel_small(-255));
  /* snprintf-like truncation reports the full length. */
  char small[4];
  int n = keel_integer_format(small, sizeof small, keel_small(123456), 10);
  cr_assert_eq(n, 6);
  cr_assert_str_eq(small, "123");
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Random decimal text of 1..300 digits with a random sign. */
static void random_decimal(char *out) {
  size_t n = 1 + rnd() % 300, i = 0;
  if (rnd() % 2)
    out[i++] = '-';
  out[i++] = (char)('1' + rnd() % 9);
  for (size_t k = 1; k < n; k++)
    out[i++] = (char)('0' + rnd() % 10);
  out[i] = 0;
}

Test(bignum, random_against_python) {
  if (system("python3 -c 1 >/dev/null 2>&1") != 0) {
    cr_assert(getenv("KEEL_SKIP_PY") != NULL, "python3 not found");
    return;
  }
  enum { N = 400 };
  static char nums[N][310];
  char in_path[] = "/tmp/keel_bignum_in_XXXXXX";
  int fd = mkstemp(in_path);
  cr_assert(fd >= 0);
  FILE *f = fdopen(fd, "w");
  for (size_t i = 0; i < N; i++) {
    random_decimal(nums[i]);
    fprintf(f, "%s\n", nums[i]);
  }
  fclose(f);
  /* For each number: hex, base 36, and its comparison with the next one. */
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "python3 -c '"
           "import sys\n"
           "def b(n, base):\n"
           "  d=\"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\"; s=\"\"; m=abs(n)\n"
           "  while True:\n"
           "    s=d[m%%base]+s; m//=base\n"
           "    if m==0: break\n"
           "  return (\"-\" if n<0 else \"\")+s\n"
           "v=[int(l) for l in open(sys.argv[1])]\n"
           "for i,n in enumerate(v):\n"
           "  o=v[(i+1)%%len(v)]\n"
           "  print(b(n,16), b(n,36), (n>o)-(n<o))\n' %s",
           in_path);
  FILE *p = popen(cmd, "r");
  cr_assert(p != NULL);
  char hex[1200], b36[1200];
  int c;
  keel_term t[N];
  for (size_t i = 0; i < N; i++)
    t[i] = parse(nums[i], 10);
  for (size_t i = 0; i < N; i++) {
    cr_assert_eq(fscanf(p, "%1199s %1199s %d", hex, b36, &c), 3);
    cr_assert_str_eq(fmt(t[i], 16), hex, "hex of %s", nums[i]);
    cr_assert_str_eq(fmt(t[i], 36), b36, "base36 of %s", nums[i]);
    cr_assert_str_eq(fmt(t[i], 10), nums[i]);
    int k = keel_cmp(t[i], t[(i + 1) % N]);
    cr_assert_eq((k > 0) - (k < 0), c, "cmp of %s", nums[i]);
    cr_assert(keel_eq_exact(parse(hex, 16), t[i]));
  }
  pclose(p);
  remove(in_path);
}
