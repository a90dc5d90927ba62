/*
 * parse.c - Erlang term text to terms.
 *
 * One parser serves keel_parse(), keel_build_v() ('~' directives take C
 * arguments) and keel_pattern_compile_v() (variables become pattern
 * variable immediates). It is iterative: containers being built live on an
 * explicit frame stack and their elements on a value stack, both malloc'd,
 * so nesting depth costs heap memory, never C stack. Nesting deeper than
 * KEEL__PARSE_MAX_DEPTH is refused with KEEL_ELIMIT.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "term/term_internal.h"
#include "term/text_internal.h"

typedef struct vec {
  keel_term *v;
  size_t n, cap;
} vec;

enum frame_kind { F_TUPLE, F_LIST, F_LIST_TAIL, F_MAP_KEY, F_MAP_VAL };

typedef struct frame {
  unsigned kind;
  size_t start; /* index of the first element in the value stack */
  size_t pos;   /* offset of the opening token (for error reports) */
} frame;

typedef struct parser {
  keel_heap *h;
  const char *s;
  size_t len, pos;
  const keel__parse_mode *mode;
  vec vals;
  frame *frames;
  size_t nframes, capframes;
  vec scratch; /* code points of strings, pairs of maps */
  uint8_t *bits;
  size_t nbits, capbits;
} parser;

static int vec_push(vec *v, keel_term t) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 32;
    keel_term *nv = realloc(v->v, cap * sizeof *nv);
    if (nv == NULL)
      return KEEL_ENOMEM;
    v->v = nv;
    v->cap = cap;
  }
  v->v[v->n++] = t;
  return KEEL_OK;
}

/* ---- characters ----------------------------------------------------------
 */

static int peek(const parser *p) {
  return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int peek_at(const parser *p, size_t k) {
  return p->pos + k < p->len ? (unsigned char)p->s[p->pos + k] : -1;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '%') {
      while (p->pos < p->len && p->s[p->pos] != '\n')
        p->pos++;
    } else if (c == ' ' || (c >= '\t' && c <= '\r')) {
      p->pos++;
    } else {
      break;
    }
  }
}

/* Decodes one UTF-8 code point at p->pos; 0 on invalid input. */
static int utf8_decode(parser *p, uint32_t *out) {
  const uint8_t *s = (const uint8_t *)p->s + p->pos;
  size_t left = p->len - p->pos;
  if (left == 0)
    return 0;
  size_t k = s[0] < 0x80 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
  if (k > left || keel__utf8_count(s, k) != 1)
    return 0;
  uint32_t c = k == 1 ? s[0] : s[0] & (0x7fu >> k);
  for (size_t i = 1; i < k; i++)
    c = (c << 6) | (s[i] & 0x3f);
  *out = c;
  p->pos += k;
  return 1;
}

static bool is_digit(int c) {
  return c >= '0' && c <= '9';
}

static bool lower_cp(uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 0xdf && c <= 0xff && c != 0xf7);
}

static bool name_cp(uint32_t c) {
  return lower_cp(c) || (c >= 'A' && c <= 'Z') ||
         (c >= 0xc0 && c <= 0xde && c != 0xd7) || is_digit((int)c) ||
         c == '_' || c == '@';
}

/* Reads the code point after a backslash (erl_scan's escapes). */
static int read_escape(parser *p, uint32_t *out) {
  static const char FROM[] = "bdefnrstv";
  static const char TO[] = "\b\177\033\f\n\r \t\v";
  int c = peek(p);
  if (c < 0)
    return KEEL_EPARSE;
  if (c >= '0' && c <= '7') {
    uint32_t v = 0;
    for (int i = 0; i < 3 && peek(p) >= '0' && peek(p) <= '7'; i++)
      v = v * 8 + (uint32_t)(p->s[p->pos++] - '0');
    *out = v;
    return KEEL_OK;
  }
  if (c == 'x') {
    p->pos++;
    uint32_t v = 0;
    if (peek(p) == '{') {
      p->pos++;
      int n = 0;
      while (keel__digit_value(peek(p)) < 16 && n < 8) {
        v = v * 16 + (uint32_t)keel__digit_value(p->s[p->pos++]);
        n++;
      }
      if (n == 0 || peek(p) != '}' || v > 0x10ffff)
        return KEEL_EPARSE;
      p->pos++;
    } else {
      for (int i = 0; i < 2; i++) {
        if (keel__digit_value(peek(p)) >= 16)
          return KEEL_EPARSE;
        v = v * 16 + (uint32_t)keel__digit_value(p->s[p->pos++]);
      }
    }
    *out = v;
    return KEEL_OK;
  }
  if (c == '^') {
    p->pos++;
    int d = peek(p);
    if (d < 0)
      return KEEL_EPARSE;
    p->pos++;
    *out = (uint32_t)d & 31;
    return KEEL_OK;
  }
  const char *f = c != 0 ? strchr(FROM, c) : NULL;
  if (f != NULL) {
    p->pos++;
    *out = (unsigned char)TO[f - FROM];
    return KEEL_OK;
  }
  return utf8_decode(p, out) ? KEEL_OK : KEEL_EPARSE;
}

/* Reads quoted text up to the closing q into p->scratch (code points). In
 * builder and pattern modes "~~" stands for '~' and a lone '~' is an
 * error. */
static int read_quoted(parser *p, char q) {
  p->pos++; /* opening quote */
  for (;;) {
    int c = peek(p);
    uint32_t cp;
    if (c < 0)
      return KEEL_EPARSE;
    if (c == q) {
      p->pos++;
      return KEEL_OK;
    }
    if (c == '\\') {
      p->pos++;
      int rc = read_escape(p, &cp);
      if (rc < 0)
        return rc;
    } else if (c == '~' && p->mode->ap != NULL) {
      if (peek_at(p, 1) != '~')
        return KEEL_EPARSE;
      p->pos += 2;
      cp = '~';
    } else if (!utf8_decode(p, &cp)) {
      return KEEL_EPARSE;
    }
    if (vec_push(&p->scratch, keel_small(cp)) < 0)
      return KEEL_ENOMEM;
  }
}

/* UTF-8 encodes code points scratch[from..] into a malloc'd buffer. */
static char *scratch_utf8(parser *p, size_t from, size_t *len) {
  char *b = malloc((p->scratch.n - from) * 4 + 1);
  size_t n = 0;
  if (b == NULL)
    return NULL;
  for (size_t i = from; i < p->scratch.n; i++) {
    uint32_t c = (uint32_t)keel_small_value(p->scratch.v[i]);
    if (c < 0x80) {
      b[n++] = (char)c;
    } else if (c < 0x800) {
      b[n++] = (char)(0xc0 | (c >> 6));
      b[n++] = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      b[n++] = (char)(0xe0 | (c >> 12));
      b[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
      b[n++] = (char)(0x80 | (c & 0x3f));
    } else {
      b[n++] = (char)(0xf0 | (c >> 18));
      b[n++] = (char)(0x80 | ((c >> 12) & 0x3f));
      b[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
      b[n++] = (char)(0x80 | (c & 0x3f));
    }
  }
  *len = n;
  return b;
}

static int intern(const char *s, size_t n, keel_term *out) {
  int rc = keel_atom_intern(s, n, out);
  return rc == KEEL_EINVAL ? KEEL_EPARSE : rc;
}

static int quoted_atom(parser *p, keel_term *out) {
  p->scratch.n = 0;
  int rc = read_quoted(p, '\'');
  if (rc < 0)
    return rc;
  size_t n;
  char *b = scratch_utf8(p, 0, &n);
  if (b == NULL)
    return KEEL_ENOMEM;
  rc = intern(b, n, out);
  free(b);
  return rc;
}

/* "..." possibly followed by more adjacent strings, as one list. */
static int string_lit(parser *p, keel_term *out) {
  p->scratch.n = 0;
  do {
    int rc = read_quoted(p, '"');
    if (rc < 0)
      return rc;
    skip_ws(p);
  } while (peek(p) == '"');
  *out = keel_list_from(p->h, p->scratch.n, p->scratch.v);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* ---- numbers ---------------------------------------------------------------
 */

/* Copies digits of `base` with single '_' separators between digits into
 * b (NUL-terminated); returns the count or -1 on a misplaced '_'. */
static long read_digits(parser *p, int base, char **b) {
  size_t start = p->pos;
  while (p->pos < p->len &&
         (keel__digit_value(peek(p)) < base || peek(p) == '_')) {
    if (peek(p) == '_' &&
        (p->pos == start || keel__digit_value(peek_at(p, 1)) >= base))
      break;
    p->pos++;
  }
  size_t n = p->pos - start, k = 0;
  *b = malloc(n + 1);
  if (*b == NULL)
    return -2;
  for (size_t i = 0; i < n; i++)
    if (p->s[start + i] != '_')
      (*b)[k++] = p->s[start + i];
  (*b)[k] = '\0';
  return k == 0 ? -1 : (long)k;
}

static int float_lit(parser *p, bool neg, const char *ip, keel_term *out) {
  char *frac = NULL, *exp = NULL;
  p->pos++; /* '.' */
  long nf = read_digits(p, 10, &frac), ne = 0;
  bool eneg = false;
  int rc = nf == -2 ? KEEL_ENOMEM : nf < 0 ? KEEL_EPARSE : KEEL_OK;
  if (rc == KEEL_OK && (peek(p) == 'e' || peek(p) == 'E')) {
    p->pos++;
    if (peek(p) == '+' || peek(p) == '-')
      eneg = p->s[p->pos++] == '-';
    ne = read_digits(p, 10, &exp);
    rc = ne == -2 ? KEEL_ENOMEM : ne < 0 ? KEEL_EPARSE : KEEL_OK;
  }
  if (rc == KEEL_OK) {
    size_t sz = strlen(ip) + (size_t)nf + (size_t)ne + 8;
    char *b = malloc(sz);
    if (b == NULL) {
      rc = KEEL_ENOMEM;
    } else {
      snprintf(b, sz, "%s%s.%se%s%s", neg ? "-" : "", ip, frac, eneg ? "-" : "",
               exp != NULL ? exp : "0");
      double v = strtod(b, NULL);
      free(b);
      if (!isfinite(v))
        rc = KEEL_EPARSE;
      else if ((*out = keel_float(p->h, v)) == KEEL_NONE)
        rc = KEEL_ENOMEM;
    }
  }
  free(frac);
  free(exp);
  return rc;
}

/* Parses digits (already unsigned text d of length n) in base with an
 * optional minus sign. */
static int signed_int(parser *p, bool neg, const char *d, size_t n, int base,
                      keel_term *out) {
  if (n > KEEL__PARSE_MAX_DIGITS)
    return KEEL_ELIMIT;
  char *b = malloc(n + 2);
  if (b == NULL)
    return KEEL_ENOMEM;
  b[0] = '-';
  memcpy(b + 1, d, n);
  int rc =
      keel_integer_parse(p->h, neg ? b : b + 1, neg ? n + 1 : n, base, out);
  free(b);
  return rc;
}

static int char_lit(parser *p, bool neg, keel_term *out) {
  uint32_t c;
  p->pos++; /* '$' */
  if (peek(p) == '\\') {
    p->pos++;
    if (read_escape(p, &c) < 0)
      return KEEL_EPARSE;
  } else if (!utf8_decode(p, &c)) {
    return KEEL_EPARSE;
  }
  *out = keel_small(neg ? -(int64_t)c : (int64_t)c);
  return KEEL_OK;
}

static int number_lit(parser *p, keel_term *out) {
  bool neg = false;
  if (peek(p) == '-' || peek(p) == '+') {
    neg = p->s[p->pos++] == '-';
    skip_ws(p);
  }
  if (peek(p) == '$')
    return char_lit(p, neg, out);
  if (!is_digit(peek(p)))
    return KEEL_EPARSE;
  char *ip, *d = NULL;
  long n = read_digits(p, 10, &ip);
  int rc = n == -2 ? KEEL_ENOMEM : n < 0 ? KEEL_EPARSE : KEEL_OK;
  if (rc == KEEL_OK && peek(p) == '#') {
    long base = strtol(ip, NULL, 10);
    p->pos++;
    if (n > 2 || base < 2 || base > 36) {
      rc = KEEL_EPARSE;
    } else {
      long nd = read_digits(p, (int)base, &d);
      rc = nd == -2 ? KEEL_ENOMEM : nd < 0 ? KEEL_EPARSE : KEEL_OK;
      if (rc == KEEL_OK)
        rc = signed_int(p, neg, d, (size_t)nd, (int)base, out);
    }
  } else if (rc == KEEL_OK && peek(p) == '.' && is_digit(peek_at(p, 1))) {
    rc = float_lit(p, neg, ip, out);
  } else if (rc == KEEL_OK) {
    rc = signed_int(p, neg, ip, (size_t)n, 10, out);
  }
  free(ip);
  free(d);
  return rc;
}

/* ---- binaries ------------------------------------------------------------
 */

static int bits_put(parser *p, uint64_t v, unsigned size) {
  size_t need = (p->nbits + size + 7) / 8;
  if (need > p->capbits) {
    size_t cap = need * 2 + 16;
    uint8_t *b = realloc(p->bits, cap);
    if (b == NULL)
      return KEEL_ENOMEM;
    memset(b + p->capbits, 0, cap - p->capbits);
    p->bits = b;
    p->capbits = cap;
  }
  for (unsigned i = size; i-- > 0;) {
    if (i < 64 && ((v >> i) & 1))
      p->bits[p->nbits / 8] |= (uint8_t)(0x80u >> (p->nbits % 8));
    p->nbits++;
  }
  return KEEL_OK;
}

static int put_utf8_bits(parser *p, uint32_t c) {
  if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
    return KEEL_EPARSE;
  if (c < 0x80)
    return bits_put(p, c, 8);
  if (c < 0x800)
    return bits_put(p, 0xc080u | ((c << 2) & 0x1f00) | (c & 0x3f), 16);
  if (c < 0x10000)
    return bits_put(
        p, 0xe08080u | ((c << 4) & 0x0f0000) | ((c << 2) & 0x3f00) | (c & 0x3f),
        24);
  return bits_put(p,
                  0xf0808080u | ((c << 6) & 0x07000000) |
                      ((c << 4) & 0x3f0000) | ((c << 2) & 0x3f00) | (c & 0x3f),
                  32);
}

/* Segment type specifiers: utf8, little or the no-op ones. */
static int seg_types(parser *p, bool *utf8, bool *little) {
  do {
    p->pos++; /* '/' or '-' */
    size_t st = p->pos;
    while ((peek(p) >= 'a' && peek(p) <= 'z') || is_digit(peek(p)))
      p->pos++;
    size_t n = p->pos - st;
    const char *w = p->s + st;
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(w, lit, n) == 0)
    if (IS("utf8"))
      *utf8 = true;
    else if (IS("little"))
      *little = true;
    else if (!IS("integer") && !IS("big") && !IS("signed") && !IS("unsigned"))
      return KEEL_EPARSE;
#undef IS
  } while (peek(p) == '-');
  return KEEL_OK;
}

static int put_int_seg(parser *p, keel_term v, long size, bool utf8,
                       bool little) {
  int64_t x;
  uint64_t u;
  if (keel_get_int64(v, &x) == KEEL_OK)
    u = (uint64_t)x;
  else if (keel_get_uint64(v, &u) != KEEL_OK)
    return KEEL_EPARSE;
  if (utf8)
    return size >= 0 ? KEEL_EPARSE : put_utf8_bits(p, (uint32_t)u);
  if (size < 0)
    size = 8;
  if (size > 64)
    return KEEL_EPARSE;
  if (!little || size <= 8)
    return bits_put(p, u, (unsigned)size);
  if (size % 8 != 0)
    return KEEL_EPARSE;
  for (long i = 0; i < size / 8; i++) {
    int rc = bits_put(p, u >> (8 * i), 8);
    if (rc < 0)
      return rc;
  }
  return KEEL_OK;
}

static int segment(parser *p) {
  keel_term v = KEEL_NONE;
  size_t s0 = 0, s1 = 0;
  int rc;
  if (peek(p) == '"') {
    rc = string_lit(p, &v);
    s1 = p->scratch.n;
  } else {
    rc = number_lit(p, &v);
    if (rc == KEEL_OK && !keel_is_integer(v))
      rc = KEEL_EPARSE;
  }
  if (rc < 0)
    return rc;
  skip_ws(p);
  long size = -1;
  bool utf8 = false, little = false;
  if (peek(p) == ':') {
    p->pos++;
    skip_ws(p);
    char *d;
    long n = read_digits(p, 10, &d);
    if (n >= 0)
      size = n > 4 ? 100000 : strtol(d, NULL, 10);
    free(d);
    if (n < 0)
      return n == -2 ? KEEL_ENOMEM : KEEL_EPARSE;
    skip_ws(p);
  }
  if (peek(p) == '/' && (rc = seg_types(p, &utf8, &little)) < 0)
    return rc;
  if (!keel_is_integer(v) || s1 > 0) {
    /* A string: each character is one segment. scratch still holds it. */
    for (size_t i = s0; i < s1 && rc == KEEL_OK; i++)
      rc = put_int_seg(p, p->scratch.v[i], size, utf8, little);
    return rc;
  }
  return put_int_seg(p, v, size, utf8, little);
}

static int binary_lit(parser *p, keel_term *out) {
  p->pos += 2; /* "<<" */
  p->nbits = 0;
  if (p->bits != NULL)
    memset(p->bits, 0, p->capbits);
  skip_ws(p);
  if (peek(p) != '>') {
    for (;;) {
      int rc = segment(p);
      if (rc < 0)
        return rc;
      skip_ws(p);
      if (peek(p) != ',')
        break;
      p->pos++;
      skip_ws(p);
    }
  }
  if (peek(p) != '>' || peek_at(p, 1) != '>')
    return KEEL_EPARSE;
  p->pos += 2;
  *out = keel_bitstring(p->h, p->bits, p->nbits);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* ---- pids, refs, ports, funs ---------------------------------------------
 */

static int read_u64(parser *p, uint64_t max, uint64_t *out) {
  if (!is_digit(peek(p)))
    return KEEL_EPARSE;
  uint64_t v = 0;
  while (is_digit(peek(p))) {
    uint64_t d = (uint64_t)(p->s[p->pos++] - '0');
    if (v > (max - d) / 10)
      return KEEL_EPARSE;
    v = v * 10 + d;
  }
  *out = v;
  return KEEL_OK;
}

static int expect(parser *p, char c) {
  skip_ws(p);
  if (peek(p) != c)
    return KEEL_EPARSE;
  p->pos++;
  skip_ws(p);
  return KEEL_OK;
}

static int atom_tok(parser *p, keel_term *out);

/* "0" (the local node) or 'node'.Creation, followed by '.'. */
static int node_part(parser *p, keel_term *node, uint32_t *creation) {
  skip_ws(p);
  if (peek(p) == '0' && peek_at(p, 1) == '.') {
    p->pos++;
    *node = keel_term_local_node(creation);
  } else {
    uint64_t c = 0;
    int rc = atom_tok(p, node);
    if (rc == KEEL_OK)
      rc = expect(p, '.');
    if (rc == KEEL_OK)
      rc = read_u64(p, UINT32_MAX, &c);
    if (rc < 0)
      return rc;
    *creation = (uint32_t)c;
  }
  return expect(p, '.');
}

static int pid_lit(parser *p, keel_term *out) {
  keel_pid_parts pp = {0};
  uint64_t id = 0, serial = 0;
  int rc = node_part(p, &pp.node, &pp.creation);
  if (rc == KEEL_OK)
    rc = read_u64(p, UINT32_MAX, &id);
  if (rc == KEEL_OK)
    rc = expect(p, '.');
  if (rc == KEEL_OK)
    rc = read_u64(p, UINT32_MAX, &serial);
  if (rc == KEEL_OK)
    rc = expect(p, '>');
  if (rc < 0)
    return rc;
  pp.id = (uint32_t)id;
  pp.serial = (uint32_t)serial;
  *out = keel_pid_make(p->h, &pp);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

static int ref_lit(parser *p, keel_term *out) {
  keel_ref_parts r;
  uint32_t ids[KEEL_REF_MAX_WORDS];
  uint64_t v;
  int rc = node_part(p, &r.node, &r.creation);
  r.len = 0;
  while (rc == KEEL_OK) {
    if (r.len == KEEL_REF_MAX_WORDS || read_u64(p, UINT32_MAX, &v) < 0)
      return KEEL_EPARSE;
    ids[r.len++] = (uint32_t)v;
    skip_ws(p);
    if (peek(p) == '>')
      break;
    rc = expect(p, '.');
  }
  if (rc < 0)
    return rc;
  p->pos++;
  for (uint32_t i = 0; i < r.len; i++)
    r.id[i] = ids[r.len - 1 - i];
  *out = keel_ref_make(p->h, &r);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

static int port_lit(parser *p, keel_term *out) {
  keel_port_parts pp;
  int rc = node_part(p, &pp.node, &pp.creation);
  if (rc == KEEL_OK)
    rc = read_u64(p, UINT64_MAX, &pp.id);
  if (rc == KEEL_OK)
    rc = expect(p, '>');
  if (rc < 0)
    return rc;
  *out = keel_port_make(p->h, &pp);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* After '#': Ref<...>, Port<...> or Pid<...>. */
static int hash_lit(parser *p, keel_term *out) {
  static const char *const KW[] = {"Ref<", "Port<", "Pid<"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(KW[i]);
    if (p->len - p->pos >= n + 1 && memcmp(p->s + p->pos + 1, KW[i], n) == 0) {
      p->pos += n + 1;
      return i == 0   ? ref_lit(p, out)
             : i == 1 ? port_lit(p, out)
                      : pid_lit(p, out);
    }
  }
  return KEEL_EPARSE;
}

/* A bare or quoted atom. */
static int atom_tok(parser *p, keel_term *out) {
  if (peek(p) == '\'')
    return quoted_atom(p, out);
  size_t st = p->pos;
  uint32_t c;
  if (!utf8_decode(p, &c) || !lower_cp(c)) {
    p->pos = st;
    return KEEL_EPARSE;
  }
  for (;;) {
    size_t at = p->pos;
    if (!utf8_decode(p, &c) || !name_cp(c)) {
      p->pos = at;
      break;
    }
  }
  return intern(p->s + st, p->pos - st, out);
}

static int fun_lit(parser *p, keel_term *out) {
  keel_term m = KEEL_NONE, f = KEEL_NONE;
  uint64_t a = 0;
  skip_ws(p);
  int rc = atom_tok(p, &m);
  if (rc == KEEL_OK)
    rc = expect(p, ':');
  if (rc == KEEL_OK)
    rc = atom_tok(p, &f);
  if (rc == KEEL_OK)
    rc = expect(p, '/');
  if (rc == KEEL_OK)
    rc = read_u64(p, 255, &a);
  if (rc < 0)
    return rc;
  *out = keel_export_fun(p->h, m, f, (uint8_t)a);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* ---- builder directives and pattern variables ----------------------------
 */

static int directive(parser *p, keel_term *out) {
  va_list *ap = p->mode->ap;
  int c = peek_at(p, 1);
  const char *s;
  p->pos += 2;
  switch (c) {
  case 'i':
    *out = keel_int(p->h, va_arg(*ap, int));
    break;
  case 'l':
    *out = keel_int(p->h, va_arg(*ap, long));
    break;
  case 'L':
    *out = keel_int(p->h, va_arg(*ap, long long));
    break;
  case 'u':
    *out = keel_uint(p->h, va_arg(*ap, unsigned long));
    break;
  case 'f': {
    double d = va_arg(*ap, double);
    if (!isfinite(d))
      return KEEL_EINVAL;
    *out = keel_float(p->h, d);
    break;
  }
  case 'a':
    s = va_arg(*ap, const char *);
    return s == NULL ? KEEL_EINVAL : keel_atom_intern(s, strlen(s), out);
  case 's':
    s = va_arg(*ap, const char *);
    if (s == NULL || keel__utf8_count((const uint8_t *)s, strlen(s)) < 0)
      return KEEL_EINVAL;
    *out = keel_string(p->h, s);
    break;
  case 'b':
    s = va_arg(*ap, const char *);
    if (s == NULL)
      return KEEL_EINVAL;
    *out = keel_binary(p->h, s, strlen(s));
    break;
  case 'B': {
    const void *d = va_arg(*ap, const void *);
    size_t n = va_arg(*ap, size_t);
    if (d == NULL && n > 0)
      return KEEL_EINVAL;
    *out = keel_binary(p->h, d, n);
    break;
  }
  case 't':
    *out = va_arg(*ap, keel_term);
    if (*out == KEEL_NONE)
      return KEEL_EINVAL;
    /* A pattern owns its values: copy into its heap. The builder embeds
     * the term itself (it must outlive the result, as usual). */
    if (p->mode->vars != NULL)
      *out = keel_term_copy(p->h, *out);
    break;
  default:
    p->pos -= 2;
    return KEEL_EPARSE;
  }
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

static const char *const TYPE_NAMES[] = {
    "",     "integer", "float", "number", "atom", "binary", "bitstring",
    "list", "tuple",   "map",   "pid",    "ref",  "port",   "fun"};

static int var_type(parser *p, unsigned *type) {
  size_t st = p->pos;
  while (peek(p) >= 'a' && peek(p) <= 'z')
    p->pos++;
  size_t n = p->pos - st;
  if (n == 3 && memcmp(p->s + st, "int", 3) == 0) {
    *type = KEEL__PT_INTEGER;
    return KEEL_OK;
  }
  for (unsigned i = 1; i < sizeof TYPE_NAMES / sizeof TYPE_NAMES[0]; i++)
    if (strlen(TYPE_NAMES[i]) == n &&
        memcmp(TYPE_NAMES[i], p->s + st, n) == 0) {
      *type = i;
      return KEEL_OK;
    }
  p->pos = st;
  return KEEL_EINVAL;
}

static int variable(parser *p, keel_term *out) {
  keel__patvars *vs = p->mode->vars;
  size_t st = p->pos;
  while (p->pos < p->len && name_cp((unsigned char)p->s[p->pos]) &&
         (unsigned char)p->s[p->pos] < 0x80)
    p->pos++;
  size_t n = p->pos - st;
  uint32_t slot = KEEL__PATVAR_ANY;
  unsigned type = KEEL__PT_ANY;
  if (vs == NULL)
    return KEEL_EPARSE;
  if (p->s[st] != '_') {
    for (slot = 0; slot < vs->n; slot++)
      if (strlen(vs->names[slot]) == n &&
          memcmp(vs->names[slot], p->s + st, n) == 0)
        break;
    if (slot == vs->n) {
      if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 8;
        char **nn = realloc(vs->names, cap * sizeof *nn);
        if (nn == NULL)
          return KEEL_ENOMEM;
        vs->names = nn;
        vs->cap = cap;
      }
      char *name = malloc(n + 1);
      if (name == NULL)
        return KEEL_ENOMEM;
      memcpy(name, p->s + st, n);
      name[n] = '\0';
      vs->names[vs->n++] = name;
    }
  }
  if (peek(p) == ':' && peek_at(p, 1) != '=') {
    p->pos++;
    int rc = var_type(p, &type);
    if (rc < 0)
      return rc;
  }
  *out = keel__patvar(slot, type);
  return KEEL_OK;
}

void keel__patvars_free(keel__patvars *v) {
  for (size_t i = 0; i < v->n; i++)
    free(v->names[i]);
  free(v->names);
  v->names = NULL;
  v->n = v->cap = 0;
}

/* ---- the driver ------------------------------------------------------------
 */

/* A value that is not a container opener. */
static int scalar(parser *p, keel_term *out) {
  int c = peek(p);
  if (c == '\'')
    return quoted_atom(p, out);
  if (c == '"')
    return string_lit(p, out);
  if (c == '<' && peek_at(p, 1) == '<')
    return binary_lit(p, out);
  if (c == '<') {
    p->pos++;
    return pid_lit(p, out);
  }
  if (c == '#')
    return hash_lit(p, out);
  if (c == '~' && p->mode->ap != NULL)
    return directive(p, out);
  if (c == '-' || c == '+' || c == '$' || is_digit(c))
    return number_lit(p, out);
  if (c == '_' || (c >= 'A' && c <= 'Z'))
    return variable(p, out);
  size_t st = p->pos;
  int rc = atom_tok(p, out);
  if (rc == KEEL_OK && p->pos - st == 3 && memcmp(p->s + st, "fun", 3) == 0)
    return fun_lit(p, out);
  return rc;
}

static int push_frame(parser *p, unsigned kind) {
  if (p->nframes >= KEEL__PARSE_MAX_DEPTH)
    return KEEL_ELIMIT;
  if (p->nframes == p->capframes) {
    size_t cap = p->capframes ? p->capframes * 2 : 16;
    frame *f = realloc(p->frames, cap * sizeof *f);
    if (f == NULL)
      return KEEL_ENOMEM;
    p->frames = f;
    p->capframes = cap;
  }
  p->frames[p->nframes++] = (frame){kind, p->vals.n, p->pos};
  return KEEL_OK;
}

/* Builds the map of the top frame from its key/value pairs. */
static int close_map(parser *p, frame *f, keel_term *out) {
  size_t n = (p->vals.n - f->start) / 2;
  p->scratch.n = 0;
  for (size_t i = 0; i < 2 * n; i++)
    if (vec_push(&p->scratch, p->vals.v[f->start + (i % n) * 2 + i / n]) < 0)
      return KEEL_ENOMEM;
  for (size_t i = 0; i < n; i++)
    if (keel__is_patvar(p->scratch.v[i]))
      return KEEL_EPARSE; /* keys of map patterns must be literals */
  *out = keel_map_from(p->h, n, p->scratch.v, p->scratch.v + n);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

/* Opens a container if the next token starts one. 1: opened (and maybe
 * closed at once into *v, returning 2), 0: not a container. */
static int open_container(parser *p, keel_term *v) {
  int c = peek(p), rc;
  unsigned kind;
  if (c == '{')
    kind = F_TUPLE;
  else if (c == '[')
    kind = F_LIST;
  else if (c == '#' && peek_at(p, 1) == '{')
    kind = F_MAP_KEY;
  else
    return 0;
  if ((rc = push_frame(p, kind)) < 0)
    return rc;
  p->pos += kind == F_MAP_KEY ? 2 : 1;
  skip_ws(p);
  int close = kind == F_TUPLE ? '}' : kind == F_LIST ? ']' : '}';
  if (peek(p) != close)
    return 1;
  p->pos++;
  p->nframes--;
  *v = kind == F_TUPLE  ? keel_tuple_from(p->h, 0, NULL)
       : kind == F_LIST ? KEEL_NIL
                        : keel_map_new(p->h);
  return *v == KEEL_NONE ? KEEL_ENOMEM : 2;
}

/* Feeds a finished value to the innermost open container. Returns 1 when
 * another value is expected, 0 when *v completed the outermost term, or a
 * negative error; closed containers replace *v and are fed in turn. */
static int feed(parser *p, keel_term *v) {
  while (p->nframes > 0) {
    frame *f = &p->frames[p->nframes - 1];
    if (vec_push(&p->vals, *v) < 0)
      return KEEL_ENOMEM;
    skip_ws(p);
    int c = peek(p);
    if (f->kind == F_MAP_KEY) {
      bool assoc = c == '=' && peek_at(p, 1) == '>';
      bool exact = c == ':' && peek_at(p, 1) == '=' && p->mode->vars != NULL;
      if (!assoc && !exact)
        return KEEL_EPARSE;
      p->pos += 2;
      f->kind = F_MAP_VAL;
      return 1;
    }
    if (c == ',' && f->kind != F_LIST_TAIL) {
      p->pos++;
      if (f->kind == F_MAP_VAL)
        f->kind = F_MAP_KEY;
      return 1;
    }
    if (c == '|' && f->kind == F_LIST) {
      p->pos++;
      f->kind = F_LIST_TAIL;
      return 1;
    }
    size_t n = p->vals.n - f->start;
    keel_term *e = p->vals.v + f->start;
    int rc = KEEL_OK;
    if (c == '}' && f->kind == F_TUPLE)
      *v = keel_tuple_from(p->h, n, e);
    else if (c == ']' && f->kind == F_LIST)
      *v = keel_list_from(p->h, n, e);
    else if (c == ']' && f->kind == F_LIST_TAIL)
      *v = keel_list_from_tail(p->h, n - 1, e, e[n - 1]);
    else if (c == '}' && f->kind == F_MAP_VAL)
      rc = close_map(p, f, v);
    else
      return KEEL_EPARSE;
    if (rc < 0)
      return rc;
    if (*v == KEEL_NONE)
      return KEEL_ENOMEM;
    p->pos++;
    p->vals.n = f->start;
    p->nframes--;
  }
  return 0;
}

static int run(parser *p, keel_term *out) {
  for (;;) {
    keel_term v = KEEL_NONE;
    skip_ws(p);
    int rc = open_container(p, &v);
    if (rc == 1)
      continue;
    if (rc == 0)
      rc = scalar(p, &v);
    if (rc < 0)
      return rc;
    rc = feed(p, &v);
    if (rc < 0)
      return rc;
    if (rc == 0) {
      *out = v;
      return KEEL_OK;
    }
  }
}

/* An Erlang end dot: '.' followed by whitespace, '%' or the end. */
static void skip_end(parser *p) {
  skip_ws(p);
  int c = peek_at(p, 1);
  if (peek(p) == '.' &&
      (c < 0 || c == '%' || c == ' ' || (c >= '\t' && c <= '\r'))) {
    p->pos++;
    skip_ws(p);
  }
}

int keel__parse(keel_heap *h, const char *text, size_t len, keel_term *out,
                size_t *consumed, const keel__parse_mode *mode) {
  if (h == NULL || out == NULL || (text == NULL && len > 0))
    return KEEL_EINVAL;
  parser p = {.h = h, .s = text, .len = len, .mode = mode};
  int rc = run(&p, out);
  if (rc == KEEL_OK) {
    skip_end(&p);
    if (consumed == NULL && p.pos != p.len)
      rc = KEEL_EPARSE;
  }
  if (consumed != NULL)
    *consumed = p.pos;
  free(p.vals.v);
  free(p.frames);
  free(p.scratch.v);
  free(p.bits);
  return rc;
}

int keel_parse(keel_heap *h, const char *text, size_t len, keel_term *out,
               size_t *consumed) {
  static const keel__parse_mode plain = {NULL, NULL};
  return keel__parse(h, text, len, out, consumed, &plain);
}
