/* Cross-check of the JSON codec against python3's json module.
 *
 * A seeded generator writes random RFC 8259 documents (odd whitespace,
 * every escape form, surrogate pairs, raw UTF-8, big integers, exponents,
 * duplicate keys). python3 parses each one and dumps it canonically
 * (sort_keys, ensure_ascii=False, compact separators); Keel decodes the same
 * text and encodes it compactly. The two outputs must agree token by token,
 * numbers compared by value. Without python3 the test fails, unless
 * KEEL_SKIP_PY=1 is set. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/json.h"

#define NDOCS 500

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t next(rng *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

static uint32_t pick(rng *r, uint32_t n) {
  return (uint32_t)(next(r) % n);
}

static void put(keel_buf *b, const char *s) {
  cr_assert_eq(keel_buf_append(b, s, strlen(s)), KEEL_OK);
}

static void ws(rng *r, keel_buf *b) {
  static const char *const spaces[] = {" ", "\t", "\n", "\r\n", "  "};
  if (pick(r, 4) == 0)
    put(b, spaces[pick(r, 5)]);
}

static void put_utf8(keel_buf *b, uint32_t cp) {
  char o[5] = {0};
  if (cp < 0x80) {
    o[0] = (char)cp;
  } else if (cp < 0x800) {
    o[0] = (char)(0xc0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 63));
  } else if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 63));
    o[2] = (char)(0x80 | (cp & 63));
  } else {
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63));
    o[3] = (char)(0x80 | (cp & 63));
  }
  put(b, o);
}

/* A code point that is not a surrogate, anywhere in Unicode. */
static uint32_t rand_scalar(rng *r) {
  uint32_t cp = 0x80 + pick(r, 0x10ffff - 0x7f);
  return cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp;
}

static void gen_string(rng *r, keel_buf *b, unsigned maxlen) {
  static const char *const esc[] = {"\\\"", "\\\\", "\\/", "\\b",
                                    "\\f",  "\\n",  "\\r", "\\t"};
  put(b, "\"");
  unsigned n = pick(r, maxlen + 1);
  for (unsigned i = 0; i < n; i++) {
    char tmp[16];
    switch (pick(r, 7)) {
    case 0:
      put(b, esc[pick(r, 8)]);
      break;
    case 1: { /* \uXXXX of a BMP scalar, random hex case */
      uint32_t cp = pick(r, 3) ? pick(r, 0x100) : pick(r, 0xd800);
      snprintf(tmp, sizeof tmp, pick(r, 2) ? "\\u%04x" : "\\u%04X", cp);
      put(b, tmp);
      break;
    }
    case 2: { /* surrogate pair */
      uint32_t c = 0x10000 + pick(r, 0x100000);
      snprintf(tmp, sizeof tmp, "\\u%04X\\u%04x", 0xd800 + (c - 0x10000) / 1024,
               0xdc00 + (c - 0x10000) % 1024);
      put(b, tmp);
      break;
    }
    case 3:
      put_utf8(b, rand_scalar(r));
      break;
    default: {
      char c = (char)(0x20 + pick(r, 0x60)); /* includes DEL */
      if (c == '"' || c == '\\')
        c = 'q';
      tmp[0] = c;
      tmp[1] = 0;
      put(b, tmp);
    }
    }
  }
  put(b, "\"");
}

static void gen_digits(rng *r, keel_buf *b, unsigned n, bool lead_nonzero) {
  for (unsigned i = 0; i < n; i++) {
    char d[2] = {(char)('0' + pick(r, 10)), 0};
    if (i == 0 && lead_nonzero)
      d[0] = (char)('1' + pick(r, 9));
    put(b, d);
  }
}

static void gen_number(rng *r, keel_buf *b) {
  if (pick(r, 2))
    put(b, "-");
  bool frac = pick(r, 3) == 0, exp = pick(r, 3) == 0;
  /* Integers may be big; with an exponent the magnitude stays finite. */
  unsigned nint = 1 + pick(r, exp ? 18 : pick(r, 4) ? 12 : 45);
  if (pick(r, 5) == 0)
    put(b, "0");
  else
    gen_digits(r, b, nint, true);
  if (frac) {
    put(b, ".");
    gen_digits(r, b, 1 + pick(r, 20), false);
  }
  if (exp) {
    static const char *const e[] = {"e", "E", "e+", "E-", "e-", "E+"};
    put(b, e[pick(r, 6)]);
    char tmp[16];
    snprintf(tmp, sizeof tmp, pick(r, 4) ? "%u" : "%03u", pick(r, 250));
    put(b, tmp);
  }
}

static void gen_value(rng *r, keel_buf *b, int depth) {
  static const char *const lits[] = {"true", "false", "null"};
  uint32_t k = pick(r, depth > 0 ? 10 : 6);
  ws(r, b);
  if (k < 2) {
    gen_number(r, b);
  } else if (k < 4) {
    gen_string(r, b, pick(r, 4) ? 8 : 40);
  } else if (k < 6) {
    put(b, lits[pick(r, 3)]);
  } else {
    bool obj = k < 8;
    unsigned n = pick(r, 7);
    put(b, obj ? "{" : "[");
    for (unsigned i = 0; i < n; i++) {
      if (i > 0)
        put(b, ",");
      if (obj) {
        ws(r, b);
        if (pick(r, 3) == 0) { /* a small pool: duplicate keys happen */
          char key[8];
          snprintf(key, sizeof key, "\"k%u\"", pick(r, 3));
          put(b, key);
        } else {
          gen_string(r, b, 6);
        }
        ws(r, b);
        put(b, ":");
      }
      gen_value(r, b, depth - 1);
    }
    ws(r, b);
    put(b, obj ? "}" : "]");
  }
  ws(r, b);
}

/* ---- running python3 --------------------------------------------------- */

static const char py_script[] =
    "import json, sys\n"
    "data = open(sys.argv[1], 'rb').read().split(b'\\0')[:-1]\n"
    "out = sys.stdout.buffer\n"
    "for d in data:\n"
    "    v = json.loads(d.decode('utf-8'))\n"
    "    s = json.dumps(v, sort_keys=True, ensure_ascii=False,\n"
    "                   separators=(',', ':'))\n"
    "    out.write(s.encode('utf-8') + b'\\0')\n";

static bool have_python(void) {
  return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

static char *tmp_path(const char *dir, const char *stem) {
  char *p = malloc(strlen(dir) + 64);
  cr_assert_not_null(p);
  sprintf(p, "%s/%s_%ld", dir, stem, (long)getpid());
  return p;
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot create %s", path);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

/* Runs the script on the documents; returns python's NUL-separated output. */
static keel_buf run_python(const keel_buf *docs) {
  const char *dir = getenv("KEEL_BINARY_DIR");
  if (dir == NULL)
    dir = P_tmpdir;
  char *script = tmp_path(dir, "json_oracle.py");
  char *input = tmp_path(dir, "json_oracle_in");
  write_file(script, py_script, sizeof py_script - 1);
  write_file(input, docs->data, docs->len);
  char *cmd = malloc(strlen(script) + strlen(input) + 32);
  cr_assert_not_null(cmd);
  sprintf(cmd, "python3 '%s' '%s'", script, input);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  keel_buf out;
  keel_buf_init(&out);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
    cr_assert_eq(keel_buf_append(&out, chunk, n), KEEL_OK);
  int status = pclose(p);
  remove(script);
  remove(input);
  free(cmd);
  free(script);
  free(input);
  cr_assert_eq(status, 0, "python3 failed");
  return out;
}

/* ---- comparing canonical texts ----------------------------------------- */

static size_t number_len(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && strchr("+-0123456789.eE", s[i]) != NULL)
    i++;
  return i;
}

static size_t string_len(const char *s, size_t n) {
  size_t i = 1;
  while (i < n && s[i] != '"')
    i += s[i] == '\\' ? 2 : 1;
  return i + 1;
}

static bool is_float_text(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
      return true;
  return false;
}

static bool same_number(const char *a, size_t na, const char *b, size_t nb) {
  bool fa = is_float_text(a, na), fb = is_float_text(b, nb);
  if (fa != fb)
    return false;
  if (!fa)
    return na == nb && memcmp(a, b, na) == 0;
  char ta[64], tb[64];
  if (na >= sizeof ta || nb >= sizeof tb)
    return false;
  memcpy(ta, a, na);
  ta[na] = 0;
  memcpy(tb, b, nb);
  tb[nb] = 0;
  double x = strtod(ta, NULL), y = strtod(tb, NULL);
  return x == y && signbit(x) == signbit(y);
}

/* Token-wise equality of two compact JSON texts. */
static bool same_json(const char *a, size_t na, const char *b, size_t nb) {
  size_t i = 0, j = 0;
  while (i < na && j < nb) {
    if (a[i] == '-' || (a[i] >= '0' && a[i] <= '9')) {
      size_t la = number_len(a + i, na - i), lb = number_len(b + j, nb - j);
      if (lb == 0 || !same_number(a + i, la, b + j, lb))
        return false;
      i += la;
      j += lb;
    } else if (a[i] == '"') {
      size_t la = string_len(a + i, na - i);
      if (b[j] != '"' || la > nb - j || memcmp(a + i, b + j, la) != 0)
        return false;
      i += la;
      j += la;
    } else {
      if (a[i++] != b[j++])
        return false;
    }
  }
  return i == na && j == nb;
}

Test(json_py, matches_python_json_module) {
  if (!have_python()) {
    const char *skip = getenv("KEEL_SKIP_PY");
    if (skip != NULL && strcmp(skip, "1") == 0)
      cr_skip_test("python3 not available (KEEL_SKIP_PY=1)");
    cr_assert_fail("python3 with the json module is required "
                   "(set KEEL_SKIP_PY=1 to skip)");
  }
  rng r = {0x6a09e667f3bcc908u};
  keel_buf docs;
  keel_buf_init(&docs);
  size_t starts[NDOCS + 1];
  for (int i = 0; i < NDOCS; i++) {
    starts[i] = docs.len;
    gen_value(&r, &docs, 1 + (int)pick(&r, 5));
    cr_assert_eq(keel_buf_putc(&docs, 0), KEEL_OK);
  }
  starts[NDOCS] = docs.len;
  keel_buf py = run_python(&docs);
  size_t pos = 0, mismatches = 0;
  for (int i = 0; i < NDOCS; i++) {
    const char *text = (const char *)docs.data + starts[i];
    size_t len = starts[i + 1] - starts[i] - 1;
    const char *want = (const char *)py.data + pos;
    cr_assert_lt(pos, py.len, "python produced too few documents");
    size_t wlen = strnlen(want, py.len - pos);
    pos += wlen + 1;
    keel_heap h;
    keel_heap_init(&h);
    keel_term t;
    int rc = keel_json_decode(&h, text, len, &t);
    cr_assert_eq(rc, KEEL_OK, "doc %d: %s on %.*s", i, keel_err_name(rc),
                 (int)len, text);
    keel_buf got;
    keel_buf_init(&got);
    cr_assert_eq(keel_json_encode(&got, t, NULL), KEEL_OK);
    if (!same_json(want, wlen, (const char *)got.data, got.len)) {
      mismatches++;
      cr_log_error("doc %d:\n input  %.*s\n python %.*s\n keel   %.*s", i,
                   (int)len, text, (int)wlen, want, (int)got.len,
                   (char *)got.data);
    }
    keel_buf_free(&got);
    keel_heap_destroy(&h);
  }
  cr_assert_eq(pos, py.len, "python produced extra output");
  cr_assert_eq(mismatches, 0, "%zu of %d documents differ", mismatches, NDOCS);
  keel_buf_free(&py);
  keel_buf_free(&docs);
}

Test(json_py, comparator_detects_differences) {
  /* The comparison itself must be able to fail. */
  cr_assert(same_json("[1.0,\"a\"]", 9, "[1.00,\"a\"]", 10));
  cr_assert(same_json("1e+22", 5, "1e22", 4));
  cr_assert_not(same_json("[1.0]", 5, "[1]", 3));
  cr_assert_not(same_json("[-0.0]", 6, "[0.0]", 5));
  cr_assert_not(same_json("{\"a\":1}", 7, "{\"b\":1}", 7));
  cr_assert_not(
      same_json("12345678901234567890", 20, "12345678901234567891", 20));
  cr_assert_not(same_json("[1,2]", 5, "[1,2,3]", 7));
}
