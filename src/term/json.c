/*
 * json.c - RFC 8259 JSON to and from terms (contract in keel/json.h).
 *
 * Decoder: one forward pass over the text. Open containers live on an
 * explicit stack of at most KEEL_JSON_MAX_DEPTH frames; finished values are
 * pushed on a growable value stack and turned into a list or map when their
 * container closes, so the C stack depth never depends on the input.
 *
 * Encoder: also iterative, with a growable stack of open lists and maps.
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/json.h"
#include "term/term_internal.h"

/* Integers longer than KEEL_JSON_MAX_INT_DIGITS are refused: converting
 * decimal text to a big integer costs time quadratic in its length, so
 * without a bound a megabyte of digits would take seconds. */

/* ---- shared helpers ------------------------------------------------------ */

static bool is_cont(uint8_t c) {
  return (c & 0xc0) == 0x80;
}

/* Length of the well-formed UTF-8 sequence starting at p (a byte >= 0x80),
 * or 0 when it is malformed, overlong, a surrogate or above U+10FFFF. */
static size_t utf8_seq_len(const uint8_t *p, const uint8_t *end) {
  uint8_t c = p[0];
  size_t avail = (size_t)(end - p);
  if (c >= 0xc2 && c <= 0xdf)
    return avail >= 2 && is_cont(p[1]) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (avail < 3 || !is_cont(p[1]) || !is_cont(p[2]))
      return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
      return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (avail < 4 || !is_cont(p[1]) || !is_cont(p[2]) || !is_cont(p[3]))
      return 0;
    if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
      return 0;
    return 4;
  }
  return 0;
}

/* ---- decoder ------------------------------------------------------------- */

typedef struct dec_frame {
  size_t base; /* index in the value stack of the container's first item */
  bool object; /* items are key, value, key, value, ... */
} dec_frame;

typedef struct dec {
  keel_heap *h;
  const uint8_t *p;
  const uint8_t *end;
  keel_term *vals; /* finished values of the open containers */
  size_t nvals;
  size_t capvals;
  keel_buf scratch; /* unescaped bytes of the current string */
  size_t depth;
  dec_frame frames[KEEL_JSON_MAX_DEPTH];
} dec;

static int vals_reserve(dec *d, size_t extra) {
  if (extra <= d->capvals - d->nvals)
    return KEEL_OK;
  if (extra > SIZE_MAX / (4 * sizeof(keel_term)) - d->nvals)
    return KEEL_ENOMEM;
  size_t cap = d->capvals ? d->capvals : 64;
  while (cap < d->nvals + extra)
    cap *= 2;
  keel_term *v = realloc(d->vals, cap * sizeof *v);
  if (v == NULL)
    return KEEL_ENOMEM;
  d->vals = v;
  d->capvals = cap;
  return KEEL_OK;
}

static int vals_push(dec *d, keel_term t) {
  if (d->nvals == d->capvals) {
    int rc = vals_reserve(d, 1);
    if (rc != KEEL_OK)
      return rc;
  }
  d->vals[d->nvals++] = t;
  return KEEL_OK;
}

static void skip_ws(dec *d) {
  const uint8_t *p = d->p, *end = d->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  d->p = p;
}

static int hex_digit(uint8_t c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Reads the four hex digits after "\u" at d->p. -1 when malformed. */
static long read_hex4(dec *d) {
  if (d->end - d->p < 4)
    return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int x = hex_digit(d->p[i]);
    if (x < 0)
      return -1;
    v = v << 4 | x;
  }
  d->p += 4;
  return v;
}

static size_t utf8_put(uint8_t *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xc0 | cp >> 6);
    out[1] = (uint8_t)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xe0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (uint8_t)(0xf0 | cp >> 18);
  out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (uint8_t)(0x80 | (cp & 0x3f));
  return 4;
}

/* Decodes the escape after a backslash (d->p is just past it) and appends
 * its UTF-8 bytes to the scratch buffer. */
static int decode_escape(dec *d) {
  if (d->p == d->end)
    return KEEL_EPARSE;
  uint8_t c = *d->p++, out[4];
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *hit = c != 0 ? strchr(from, c) : NULL;
  if (hit != NULL)
    return keel_buf_putc(&d->scratch, (uint8_t)to[hit - from]);
  if (c != 'u')
    return KEEL_EPARSE;
  long cp = read_hex4(d);
  if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
    return KEEL_EPARSE;
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (d->end - d->p < 2 || d->p[0] != '\\' || d->p[1] != 'u')
      return KEEL_EPARSE;
    d->p += 2;
    long lo = read_hex4(d);
    if (lo < 0xdc00 || lo > 0xdfff)
      return KEEL_EPARSE;
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  return keel_buf_append(&d->scratch, out, utf8_put(out, (uint32_t)cp));
}

/* Parses a string whose opening quote d->p points at into a binary. */
static int parse_string(dec *d, keel_term *out) {
  const uint8_t *p = ++d->p, *end = d->end, *run = p;
  bool escaped = false;
  d->scratch.len = 0;
  for (;;) {
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
      p++;
    if (p == end || *p < 0x20)
      return KEEL_EPARSE;
    if (*p >= 0x80) {
      size_t n = utf8_seq_len(p, end);
      if (n == 0)
        return KEEL_EPARSE;
      p += n;
      continue;
    }
    if (*p == '"')
      break;
    /* A backslash: flush the plain run, then decode the escape. */
    int rc = keel_buf_append(&d->scratch, run, (size_t)(p - run));
    if (rc != KEEL_OK)
      return rc;
    d->p = p + 1;
    rc = decode_escape(d);
    if (rc != KEEL_OK)
      return rc;
    p = run = d->p;
    escaped = true;
  }
  if (escaped) {
    int rc = keel_buf_append(&d->scratch, run, (size_t)(p - run));
    if (rc != KEEL_OK)
      return rc;
    *out = keel_binary(d->h, d->scratch.data, d->scratch.len);
  } else {
    *out = keel_binary(d->h, run, (size_t)(p - run));
  }
  d->p = p + 1;
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

static bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}

static const uint8_t *skip_digits(const uint8_t *p, const uint8_t *end) {
  while (p < end && is_digit(*p))
    p++;
  return p;
}

/* Exact powers of ten representable as doubles. */
static const double pow10_exact[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path: when the decimal significand fits 53 bits and the
 * power of ten is exact, one IEEE multiplication or division gives the
 * correctly rounded result. Returns false when it does not apply. */
static bool fast_float(const uint8_t *p, const uint8_t *end, double *out) {
#if FLT_EVAL_METHOD == 0
  bool neg = *p == '-';
  uint64_t m = 0;
  int nd = 0, e10 = 0, frac = 0;
  for (p += neg; p < end && *p != 'e' && *p != 'E'; p++) {
    if (*p == '.') {
      frac = 1;
      continue;
    }
    e10 -= frac;
    if (m == 0 && *p == '0')
      continue;
    if (++nd > 19)
      return false;
    m = m * 10 + (uint64_t)(*p - '0');
  }
  if (p < end) {
    int sign = 1, x = 0;
    if (*++p == '+' || *p == '-')
      sign = *p++ == '-' ? -1 : 1;
    for (; p < end; p++)
      if ((x = x * 10 + (*p - '0')) > 1000)
        return false;
    e10 += sign * x;
  }
  if (m > (UINT64_C(1) << 53) || e10 < -22 || e10 > 22)
    return false;
  double v = (double)m;
  v = e10 < 0 ? v / pow10_exact[-e10] : v * pow10_exact[e10];
  *out = neg ? -v : v;
  return true;
#else
  (void)p, (void)end, (void)out;
  return false;
#endif
}

/* Converts the float text s[0..len) (already checked against the grammar). */
static int make_float(dec *d, const uint8_t *s, size_t len, keel_term *out) {
  double v;
  if (!fast_float(s, s + len, &v)) {
    char small[64];
    char *buf = len < sizeof small ? small : malloc(len + 1);
    if (buf == NULL)
      return KEEL_ENOMEM;
    memcpy(buf, s, len);
    buf[len] = '\0';
    v = strtod(buf, NULL);
    if (buf != small)
      free(buf);
    if (isinf(v))
      return KEEL_ERANGE;
  }
  *out = keel_float(d->h, v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* Parses a number at d->p (a '-' or a digit). */
static int parse_number(dec *d, keel_term *out) {
  const uint8_t *s = d->p, *p = s, *end = d->end;
  bool neg = *p == '-';
  if (neg)
    p++;
  if (p == end || !is_digit(*p))
    return KEEL_EPARSE;
  const uint8_t *digits = p;
  p = *p == '0' ? p + 1 : skip_digits(p, end);
  size_t ndigits = (size_t)(p - digits);
  bool is_float = false;
  if (p < end && *p == '.') {
    if (++p == end || !is_digit(*p))
      return KEEL_EPARSE;
    p = skip_digits(p, end);
    is_float = true;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    if (++p < end && (*p == '+' || *p == '-'))
      p++;
    if (p == end || !is_digit(*p))
      return KEEL_EPARSE;
    p = skip_digits(p, end);
    is_float = true;
  }
  d->p = p;
  if (is_float)
    return make_float(d, s, (size_t)(p - s), out);
  if (ndigits > KEEL_JSON_MAX_INT_DIGITS)
    return KEEL_ELIMIT;
  if (ndigits > 18)
    return keel_integer_parse(d->h, (const char *)s, (size_t)(p - s), 10, out);
  int64_t v = 0;
  for (size_t i = 0; i < ndigits; i++)
    v = v * 10 + (digits[i] - '0');
  *out = keel_int(d->h, neg ? -v : v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

static int parse_literal(dec *d, const char *word, keel_term atom,
                         keel_term *out) {
  size_t n = strlen(word);
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
    return KEEL_EPARSE;
  d->p += n;
  *out = atom;
  return KEEL_OK;
}

static int parse_scalar(dec *d, keel_term *out) {
  switch (*d->p) {
  case '"':
    return parse_string(d, out);
  case 't':
    return parse_literal(d, "true", KEEL_ATOM(TRUE), out);
  case 'f':
    return parse_literal(d, "false", KEEL_ATOM(FALSE), out);
  case 'n':
    return parse_literal(d, "null", KEEL_ATOM(NULL), out);
  default:
    if (*d->p == '-' || is_digit(*d->p))
      return parse_number(d, out);
    return KEEL_EPARSE;
  }
}

/* Parses `"key" :` inside an object and pushes the key. */
static int parse_key(dec *d) {
  skip_ws(d);
  if (d->p == d->end || *d->p != '"')
    return KEEL_EPARSE;
  keel_term key;
  int rc = parse_string(d, &key);
  if (rc != KEEL_OK)
    return rc;
  skip_ws(d);
  if (d->p == d->end || *d->p != ':')
    return KEEL_EPARSE;
  d->p++;
  return vals_push(d, key);
}

/* Builds the list or map of the innermost open container and pops it. */
static int close_container(dec *d, keel_term *out) {
  dec_frame *f = &d->frames[--d->depth];
  size_t n = d->nvals - f->base;
  if (!f->object) {
    *out = keel_list_from(d->h, n, d->vals + f->base);
  } else {
    n /= 2;
    int rc = vals_reserve(d, 2 * n);
    if (rc != KEEL_OK)
      return rc;
    keel_term *pairs = d->vals + f->base, *keys = d->vals + d->nvals;
    for (size_t i = 0; i < n; i++) {
      keys[i] = pairs[2 * i];
      keys[n + i] = pairs[2 * i + 1];
    }
    *out = keel_map_from(d->h, n, keys, keys + n);
  }
  d->nvals = f->base;
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* Starts a value at d->p: either opens a container (*opened set, nothing
 * finished yet) or produces a finished value in *out (a scalar or an empty
 * container). */
static int begin_value(dec *d, keel_term *out, bool *opened) {
  skip_ws(d);
  *opened = false;
  if (d->p == d->end)
    return KEEL_EPARSE;
  uint8_t c = *d->p;
  if (c != '[' && c != '{')
    return parse_scalar(d, out);
  if (d->depth == KEEL_JSON_MAX_DEPTH)
    return KEEL_ELIMIT;
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == c + 2) { /* "[]" or "{}" */
    d->p++;
    *out = c == '[' ? KEEL_NIL : keel_map_new(d->h);
    return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  d->frames[d->depth].base = d->nvals;
  d->frames[d->depth].object = c == '{';
  d->depth++;
  *opened = true;
  return c == '{' ? parse_key(d) : KEEL_OK;
}

/* Hands the finished value v to its container, closing every container
 * that ends here. Sets *done when v completes the whole document. */
static int finish_value(dec *d, keel_term v, bool *done) {
  for (;;) {
    if (d->depth == 0) {
      *done = true;
      d->vals[0] = v;
      return KEEL_OK;
    }
    int rc = vals_push(d, v);
    if (rc != KEEL_OK)
      return rc;
    skip_ws(d);
    if (d->p == d->end)
      return KEEL_EPARSE;
    bool object = d->frames[d->depth - 1].object;
    uint8_t c = *d->p++;
    if (c == ',')
      return object ? parse_key(d) : KEEL_OK;
    if (c != (object ? '}' : ']'))
      return KEEL_EPARSE;
    rc = close_container(d, &v);
    if (rc != KEEL_OK)
      return rc;
  }
}

static int decode_doc(dec *d, keel_term *out) {
  int rc = vals_reserve(d, 1);
  bool done = false;
  while (rc == KEEL_OK && !done) {
    keel_term v;
    bool opened;
    rc = begin_value(d, &v, &opened);
    if (rc == KEEL_OK && !opened)
      rc = finish_value(d, v, &done);
  }
  if (rc != KEEL_OK)
    return rc;
  skip_ws(d);
  if (d->p != d->end)
    return KEEL_EPARSE;
  *out = d->vals[0];
  return KEEL_OK;
}

int keel_json_decode(keel_heap *h, const char *text, size_t len,
                     keel_term *out) {
  if (h == NULL || out == NULL || (text == NULL && len > 0))
    return KEEL_EINVAL;
  dec *d = malloc(sizeof *d);
  if (d == NULL)
    return KEEL_ENOMEM;
  d->h = h;
  d->p = (const uint8_t *)text;
  d->end = d->p + len;
  d->vals = NULL;
  d->nvals = d->capvals = 0;
  d->depth = 0;
  keel_buf_init(&d->scratch);
  int rc = text == NULL ? KEEL_EPARSE : decode_doc(d, out);
  keel_buf_free(&d->scratch);
  free(d->vals);
  free(d);
  return rc;
}

/* ---- encoder ------------------------------------------------------------- */

typedef struct enc_frame {
  keel_term t; /* list: the current cell; map: the map */
  size_t i;    /* map: index of the current pair */
} enc_frame;

typedef struct enc {
  keel_buf *out;
  bool pretty;
  enc_frame *stack;
  size_t depth;
  size_t cap;
} enc;

/* Writes s[0..len) as a JSON string. KEEL_EBADARG unless valid UTF-8. */
static int put_string(keel_buf *b, const uint8_t *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const uint8_t *p = s, *end = s + len, *run = s;
  int rc = keel_buf_putc(b, '"');
  while (rc == KEEL_OK && p < end) {
    uint8_t c = *p;
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      p++;
      continue;
    }
    if (c >= 0x80) {
      size_t n = utf8_seq_len(p, end);
      if (n == 0)
        return KEEL_EBADARG;
      p += n;
      continue;
    }
    char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
    size_t n = 2;
    const char *hit = strchr("\b\f\n\r\t", c);
    if (c != 0 && hit != NULL) {
      esc[1] = "bfnrt"[hit - "\b\f\n\r\t"];
    } else if (c < 0x20) {
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      n = 6;
    }
    rc = keel_buf_append(b, run, (size_t)(p - run));
    if (rc == KEEL_OK)
      rc = keel_buf_append(b, esc, n);
    run = ++p;
  }
  if (rc == KEEL_OK)
    rc = keel_buf_append(b, run, (size_t)(p - run));
  return rc == KEEL_OK ? keel_buf_putc(b, '"') : rc;
}

static int put_integer(keel_buf *b, keel_term t) {
  if (keel_is_small(t)) {
    int64_t v = keel_small_value(t);
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char digits[24];
    size_t i = sizeof digits;
    do {
      digits[--i] = (char)('0' + m % 10);
      m /= 10;
    } while (m != 0);
    if (v < 0)
      digits[--i] = '-';
    return keel_buf_append(b, digits + i, sizeof digits - i);
  }
  bool neg;
  const uint64_t *limbs;
  size_t n;
  uint64_t scratch;
  int rc = keel_integer_limbs(t, &neg, &limbs, &n, &scratch);
  if (rc != KEEL_OK)
    return rc;
  /* 64 bits hold fewer than 20 decimal digits; one more for the sign and
   * one for the NUL keel_integer_format writes. */
  size_t room = n * 20 + 2;
  rc = keel_buf_reserve(b, room);
  if (rc != KEEL_OK)
    return rc;
  int len = keel_integer_format((char *)b->data + b->len, room, t, 10);
  if (len < 0)
    return len;
  b->len += (size_t)len;
  return KEEL_OK;
}

/* Shortest of %.15g, %.16g, %.17g that reads back as v; always has a '.'
 * or an exponent so that it decodes as a float again. */
static int put_float(keel_buf *b, double v) {
  char buf[40];
  int len = 0;
  for (int prec = 15; prec <= 17; prec++) {
    len = snprintf(buf, sizeof buf - 2, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  if (strpbrk(buf, ".e") == NULL) {
    memcpy(buf + len, ".0", 3);
    len += 2;
  }
  return keel_buf_append(b, buf, (size_t)len);
}

static int put_atom(keel_buf *b, keel_term a) {
  if (a == KEEL_ATOM(TRUE))
    return keel_buf_append(b, "true", 4);
  if (a == KEEL_ATOM(FALSE))
    return keel_buf_append(b, "false", 5);
  if (a == KEEL_ATOM(NULL))
    return keel_buf_append(b, "null", 4);
  size_t len;
  const char *name = keel_atom_name(a, &len);
  return put_string(b, (const uint8_t *)name, len);
}

static int put_binary(keel_buf *b, keel_term t) {
  if (!keel_is_binary(t))
    return KEEL_EBADARG;
  size_t len;
  const uint8_t *data = keel_binary_data(t, &len);
  return put_string(b, data, len);
}

/* Writes a map key followed by ':' (": " when pretty). */
static int put_key(enc *e, keel_term k) {
  int rc;
  if (keel_is_binary(k)) {
    rc = put_binary(e->out, k);
  } else if (keel_is_atom(k)) {
    size_t len;
    const char *name = keel_atom_name(k, &len);
    rc = put_string(e->out, (const uint8_t *)name, len);
  } else if (keel_is_integer(k)) {
    rc = keel_buf_putc(e->out, '"');
    if (rc == KEEL_OK)
      rc = put_integer(e->out, k);
    if (rc == KEEL_OK)
      rc = keel_buf_putc(e->out, '"');
  } else {
    rc = KEEL_EBADARG;
  }
  if (rc != KEEL_OK)
    return rc;
  return e->pretty ? keel_buf_append(e->out, ": ", 2)
                   : keel_buf_putc(e->out, ':');
}

/* Writes `c` then, when pretty, a newline and the indentation of the
 * current depth. */
static int put_sep(enc *e, char c) {
  int rc = c != 0 ? keel_buf_putc(e->out, (uint8_t)c) : KEEL_OK;
  if (rc != KEEL_OK || !e->pretty)
    return rc;
  rc = keel_buf_reserve(e->out, 1 + 2 * e->depth);
  if (rc != KEEL_OK)
    return rc;
  e->out->data[e->out->len++] = '\n';
  memset(e->out->data + e->out->len, ' ', 2 * e->depth);
  e->out->len += 2 * e->depth;
  return KEEL_OK;
}

static int push_frame(enc *e, keel_term t) {
  if (e->depth == e->cap) {
    size_t cap = e->cap ? 2 * e->cap : 32;
    enc_frame *s = realloc(e->stack, cap * sizeof *s);
    if (s == NULL)
      return KEEL_ENOMEM;
    e->stack = s;
    e->cap = cap;
  }
  e->stack[e->depth].t = t;
  e->stack[e->depth].i = 0;
  e->depth++;
  return KEEL_OK;
}

/* Writes a scalar, or opens a non-empty list or map; *next receives the
 * first element to write when a container was opened, else KEEL_NONE. */
static int begin_term(enc *e, keel_term t, keel_term *next) {
  *next = KEEL_NONE;
  switch (keel_type_of(t)) {
  case KEEL_T_INTEGER:
    return put_integer(e->out, t);
  case KEEL_T_FLOAT:
    return put_float(e->out, keel__float_value(t));
  case KEEL_T_ATOM:
    return put_atom(e->out, t);
  case KEEL_T_BINARY:
    return put_binary(e->out, t);
  case KEEL_T_NIL:
    return keel_buf_append(e->out, "[]", 2);
  case KEEL_T_LIST: {
    int rc = push_frame(e, t);
    if (rc == KEEL_OK)
      rc = put_sep(e, '[');
    *next = keel_hd(t);
    return rc;
  }
  case KEEL_T_MAP: {
    if (keel_map_size(t) == 0)
      return keel_buf_append(e->out, "{}", 2);
    int rc = push_frame(e, t);
    if (rc == KEEL_OK)
      rc = put_sep(e, '{');
    if (rc == KEEL_OK)
      rc = put_key(e, keel__map_keys(t)[0]);
    *next = keel__map_values(t)[0];
    return rc;
  }
  default:
    return KEEL_EBADARG;
  }
}

/* After a value: finds the next one to write (closing finished containers)
 * or sets *next to KEEL_NONE when the whole term is written. */
static int next_term(enc *e, keel_term *next) {
  *next = KEEL_NONE;
  while (e->depth > 0) {
    enc_frame *f = &e->stack[e->depth - 1];
    int rc;
    if (keel_is_cons(f->t)) {
      keel_term tail = keel_tl(f->t);
      if (keel_is_cons(tail)) {
        f->t = tail;
        *next = keel_hd(tail);
        return put_sep(e, ',');
      }
      if (!keel_is_nil(tail))
        return KEEL_EBADARG;
    } else if (++f->i < keel_map_size(f->t)) {
      rc = put_sep(e, ',');
      if (rc == KEEL_OK)
        rc = put_key(e, keel__map_keys(f->t)[f->i]);
      *next = keel__map_values(f->t)[f->i];
      return rc;
    }
    bool list = keel_is_cons(f->t);
    e->depth--;
    rc = put_sep(e, 0);
    if (rc == KEEL_OK)
      rc = keel_buf_putc(e->out, list ? ']' : '}');
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

int keel_json_encode(keel_buf *out, keel_term t, const keel_json_opts *opts) {
  if (out == NULL)
    return KEEL_EINVAL;
  enc e = {out, opts != NULL && opts->pretty, NULL, 0, 0};
  size_t mark = out->len;
  int rc;
  do {
    keel_term next;
    rc = begin_term(&e, t, &next);
    while (rc == KEEL_OK && next == KEEL_NONE && e.depth > 0)
      rc = next_term(&e, &next);
    t = next;
  } while (rc == KEEL_OK && t != KEEL_NONE);
  free(e.stack);
  if (rc != KEEL_OK)
    out->len = mark;
  return rc;
}
