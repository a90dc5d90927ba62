/*
 * keel_print checked against real Erlang/OTP.
 *
 * A seeded generator plus hand-picked cases give ~250 terms. They are
 * written (in ~w form, one per line) to a file that escript reads with
 * file:consult/1 and prints with io_lib:format: "~0p", "~w", "~0P" at
 * depths 3 and 6. Keel parses the same file and must print exactly the same
 * four lines for each term. (Funs are generated with ASCII, non-reserved names
 * only: erl writes reserved words bare there and non-ASCII names as raw UTF-8
 * bytes, neither of which reads back, see print.c.) KEEL_TEST_SEED
 * picks another generator seed. The test needs
 * `escript` on PATH; without it it fails, unless KEEL_SKIP_ERL=1.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/term.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static size_t below(size_t n) {
  return (size_t)(rnd() % n);
}

static const char *const ATOMS[] = {"ok",
                                    "error",
                                    "a",
                                    "hello_world",
                                    "Abc",
                                    "a b",
                                    "case",
                                    "maybe",
                                    "else",
                                    "[]",
                                    "a@b",
                                    "a.b",
                                    "\xc3\xa9t\xc3\xa9",
                                    "\xc3\x89t\xc3\xa9",
                                    "\xd0\xb6",
                                    "q'uote",
                                    "back\\slash",
                                    "tab\tnl\n",
                                    "",
                                    "\x01\x7f",
                                    "\xc2\x80",
                                    "\xc3\xbf",
                                    "ok1",
                                    "_x",
                                    "true",
                                    "\xe2\x82\xac"};

static const double FLOATS[] = {
    0.0,    -0.0,          1.0,      0.1,       1e20,
    100.0,  1000.0,        1e15,     1e16,      1e-4,
    1e-5,   1.2e-4,        123456.0, 1234567.0, 9007199254740992.0,
    1e21,   1e22,          1e23,     5e-324,    1.7976931348623157e308,
    2.5e-5, 0.5,           123.456,  -1.5,      3.141592653589793,
    1e100,  12345678901.0, 1.0e9,    1.0e10,    123456789012.0};

static keel_term gen(keel_heap *h, int depth);

static keel_term gen_float(keel_heap *h) {
  if (below(3) == 0)
    return keel_float(h, FLOATS[below(sizeof FLOATS / sizeof FLOATS[0])]);
  for (;;) {
    uint64_t bits = rnd();
    double d;
    if (below(2) == 0)
      bits = (bits & 0x800fffffffffffffu) |
             ((uint64_t)(1023 - 40 + below(80)) << 52);
    memcpy(&d, &bits, sizeof d);
    if (isfinite(d))
      return keel_float(h, below(4) == 0 ? (double)(int64_t)(d * 1000) / 8 : d);
  }
}

static keel_term gen_int(keel_heap *h) {
  switch (below(4)) {
  case 0:
    return keel_small((int64_t)below(300) - 50);
  case 1:
    return keel_int(h, (int64_t)rnd());
  case 2: {
    uint64_t limbs[4] = {rnd(), rnd(), rnd(), rnd()};
    return keel_bigint(h, below(2), limbs, 1 + below(4));
  }
  default:
    return keel_small((int64_t)(rnd() >> 4) - (INT64_C(1) << 59));
  }
}

static keel_term gen_string(keel_heap *h) {
  keel_term c[24];
  size_t n = 1 + below(20);
  bool bad = below(5) == 0;
  for (size_t i = 0; i < n; i++) {
    size_t k = below(20);
    uint32_t ch = k < 14   ? 32 + (uint32_t)below(95)
                  : k < 16 ? 0xa0 + (uint32_t)below(96)
                  : k < 18 ? (uint32_t) "\n\t\r\v\b\f\033\"\\"[below(9)]
                           : (uint32_t)below(0x300);
    c[i] = keel_small(ch);
  }
  if (bad)
    c[below(n)] = keel_small((int64_t)below(32));
  return keel_list_from(h, n, c);
}

static keel_term gen_binary(keel_heap *h) {
  uint8_t b[40];
  size_t n = below(30);
  bool printable = below(2) == 0;
  for (size_t i = 0; i < n; i++)
    b[i] = printable ? (uint8_t)(32 + below(95)) : (uint8_t)rnd();
  if (below(4) == 0)
    return keel_bitstring(h, b, n * 8 + 1 + below(7));
  return keel_binary(h, b, n);
}

static keel_term gen_container(keel_heap *h, int depth) {
  keel_term e[12] = {0}, v[12] = {0};
  size_t n = below(6);
  for (size_t i = 0; i < n; i++)
    e[i] = gen(h, depth - 1);
  switch (below(4)) {
  case 0:
    return keel_tuple_from(h, n, e);
  case 1:
    return keel_list_from(h, n, e);
  case 2:
    return n == 0 ? keel_list_from(h, 0, e)
                  : keel_list_from_tail(h, n, e, gen(h, 0));
  default:
    for (size_t i = 0; i < n; i++)
      v[i] = gen(h, depth - 1);
    if (n > 1 && below(2) == 0) {
      e[0] = keel_small(1);
      e[1] = keel_float(h, 1.0);
    }
    return keel_map_from(h, n, e, v);
  }
}

static keel_term gen(keel_heap *h, int depth) {
  size_t k = below(depth > 0 ? 12 : 8);
  switch (k) {
  case 0:
    return gen_int(h);
  case 1:
    return gen_float(h);
  case 2:
    return keel_atom(ATOMS[below(sizeof ATOMS / sizeof ATOMS[0])]);
  case 3:
    return gen_string(h);
  case 4:
    return gen_binary(h);
  case 5:
    return keel_export_fun(h, keel_atom(ATOMS[below(6)]),
                           keel_atom(ATOMS[below(6)]), (uint8_t)below(256));
  case 6:
    return KEEL_NIL;
  case 7:
    return keel_small((int64_t)below(256));
  default:
    return gen_container(h, depth);
  }
}

static const char *const HAND[] = {
    "[1,2,3]",
    "\"abc\"",
    "[233,1000]",
    "<<\"abc\">>",
    "<<195,169>>",
    "<<233>>",
    "<<1,2:3>>",
    "{a,\"b\\n\"}",
    "#{a => 1,\"b\" => []}",
    "#{1.0 => a,2 => b,1 => c,-1.5 => d}",
    "123456789012345678901234567890",
    "-98765432109876543210987654321098765432109876543210",
    "'\\x{3E8}'",
    "'\\x{1F600}'",
    "[$a|b]",
    "\"a\\tb\\x{1}\"",
    "<<\"a\\tb\",0>>",
    "\"\\e\\d\"",
    "[[[[[[[[]]]]]]]]",
    "{{{{{{a}}}}}}",
    "[1,[2,[3,[4]]],{a,{b,{c}}}]",
    "lists:seq",
    "#{a => {1,{2,{3}}},b => [1,2,3],c => 3}",
    "<<\"abcdefghijklmnopqrstuvwxyz\">>",
    "<<\"abc\",1,\"defghijklmnop\">>",
    "<<1,2,3,4:4>>",
    "[a|b]",
    "[1,2|c]",
    "{a,\"abc\",<<\"xy\">>}",
    "\"\\x{100}\"",
    "[160,255,\"x\"]",
    "{[],{},#{},<<>>,\"\"}",
    "#{{a,b} => [1|2],[] => <<1>>,<<\"k\">> => 2.5}",
    "fun 'Mod':'f f'/0",
    "16#7FFFFFFFFFFFFFFF",
    "-16#8000000000000000",
    "2305843009213693951",
    "2305843009213693952",
    "-2305843009213693952",
    "-2305843009213693953"};

static char *tmpdir;

static char *path(const char *name) {
  size_t n = strlen(tmpdir) + strlen(name) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", tmpdir, name);
  return p;
}

static const char SCRIPT[] =
    "%% -*- coding: utf-8 -*-\n"
    "main([In, Out]) ->\n"
    "    {ok, Terms} = file:consult(In),\n"
    "    F = fun(T) -> [io_lib:format(\"~0p\", [T]), $\\n,\n"
    "                   io_lib:format(\"~w\", [T]), $\\n,\n"
    "                   io_lib:format(\"~0P\", [T, 3]), $\\n,\n"
    "                   io_lib:format(\"~0P\", [T, 6]), $\\n] end,\n"
    "    Bin = unicode:characters_to_binary([F(T) || T <- Terms]),\n"
    "    ok = file:write_file(Out, Bin).\n";

/* Everything Keel prints for one term, in the script's order. */
static void keel_lines(FILE *f, keel_term t) {
  keel_print_opts w = {.no_strings = true};
  keel_print_opts d3 = {.depth = 3};
  keel_print_opts d6 = {.depth = 6};
  const keel_print_opts *opts[] = {NULL, &w, &d3, &d6};
  for (int i = 0; i < 4; i++) {
    char *s = keel_print_alloc(t, opts[i]);
    cr_assert_not_null(s);
    fprintf(f, "%s\n", s);
    free(s);
  }
}

static char *slurp(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  cr_assert_not_null(f, "cannot read %s", p);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return b;
}

/* Writes the input file; returns the number of terms. */
static size_t write_terms(keel_heap *h, const char *in, keel_term *terms,
                          size_t max) {
  FILE *f = fopen(in, "w");
  cr_assert_not_null(f);
  fprintf(f, "%%%% -*- coding: utf-8 -*-\n");
  size_t n = 0;
  keel_print_opts w = {.no_strings = true};
  for (size_t i = 0; i < sizeof HAND / sizeof HAND[0]; i++) {
    keel_term t;
    if (strcmp(HAND[i], "lists:seq") == 0) {
      keel_term e[40];
      for (int k = 0; k < 40; k++)
        e[k] = keel_small(k + 1);
      t = keel_list_from(h, 40, e);
    } else {
      cr_assert_eq(keel_parse(h, HAND[i], strlen(HAND[i]), &t, NULL), KEEL_OK,
                   "hand case %s", HAND[i]);
    }
    terms[n++] = t;
  }
  while (n < max)
    terms[n++] = gen(h, 3);
  for (size_t i = 0; i < n; i++) {
    keel_fprint(f, terms[i], &w);
    fprintf(f, ".\n");
  }
  fclose(f);
  return n;
}

Test(print_erl, matches_io_lib_format, .timeout = 120) {
  if (system("command -v escript >/dev/null 2>&1") != 0) {
    if (getenv("KEEL_SKIP_ERL") != NULL &&
        strcmp(getenv("KEEL_SKIP_ERL"), "1") == 0)
      cr_skip_test("escript not found and KEEL_SKIP_ERL=1");
    cr_assert_fail("escript (Erlang/OTP) not found on PATH: install erlang "
                   "or set KEEL_SKIP_ERL=1 to skip this test");
  }
  const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
  char tmpl[512];
  snprintf(tmpl, sizeof tmpl, "%s/keel_print_erl_XXXXXX", base);
  tmpdir = mkdtemp(tmpl);
  cr_assert_not_null(tmpdir);
  char *in = path("in.txt"), *out = path("out.txt"), *scr = path("p.escript");
  char *mine = path("keel.txt");
  FILE *sf = fopen(scr, "w");
  fputs(SCRIPT, sf);
  fclose(sf);

  if (getenv("KEEL_TEST_SEED") != NULL)
    rng = strtoull(getenv("KEEL_TEST_SEED"), NULL, 0) | 1;
  keel_heap h;
  keel_heap_init(&h);
  enum { N = 260 };
  static keel_term terms[N];
  size_t n = write_terms(&h, in, terms, N);

  /* Keel reads back the very file escript reads. */
  size_t len, off = 0, k = 0;
  char *text = slurp(in, &len);
  FILE *mf = fopen(mine, "w");
  while (k < n) {
    keel_term t;
    size_t used;
    cr_assert_eq(keel_parse(&h, text + off, len - off, &t, &used), KEEL_OK,
                 "term %zu does not parse back", k);
    cr_assert(keel_eq_exact(t, terms[k]), "term %zu changed on re-parse", k);
    keel_lines(mf, t);
    off += used;
    k++;
  }
  fclose(mf);

  char cmd[2048];
  snprintf(cmd, sizeof cmd, "escript %s %s %s", scr, in, out);
  cr_assert_eq(system(cmd), 0, "escript failed: %s", cmd);

  size_t elen, klen;
  char *erl = slurp(out, &elen), *kl = slurp(mine, &klen);
  char *es = erl, *ks = kl;
  size_t line = 0, mismatches = 0;
  while (*es != '\0' && *ks != '\0') {
    char *ee = strchr(es, '\n'), *ke = strchr(ks, '\n');
    cr_assert(ee != NULL && ke != NULL);
    *ee = *ke = '\0';
    if (strcmp(es, ks) != 0 && mismatches++ < 10)
      cr_log_error("term %zu form %zu:\n erl:  %s\n keel: %s", line / 4,
                   line % 4, es, ks);
    es = ee + 1;
    ks = ke + 1;
    line++;
  }
  cr_assert_eq(line, 4 * n, "line count: erl %zu lines, expected %zu", line,
               4 * n);
  cr_assert_eq(mismatches, 0, "%zu lines differ from Erlang", mismatches);

  unlink(in);
  unlink(out);
  unlink(scr);
  unlink(mine);
  rmdir(tmpdir);
  free(in);
  free(out);
  free(scr);
  free(mine);
  free(text);
  free(erl);
  free(kl);
  keel_heap_destroy(&h);
}
