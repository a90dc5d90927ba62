/*
 * print.c - terms as Erlang text.
 *
 * The output is byte-for-byte what io_lib:format("~0p", [T]) produces in
 * Erlang/OTP (latin1 mode: lists and binaries of printable Latin-1
 * characters print as strings; other code points are escaped), encoded as
 * UTF-8. With opts->no_strings it is io_lib:format("~w") instead. A depth
 * limit behaves like ~P: the element budget shrinks by one per element and
 * per nesting level, and what is cut off prints as "...".
 *
 * Printing is iterative: an explicit work stack replaces recursion, so
 * arbitrarily deep terms print without exhausting the C stack.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "term/term_internal.h"
#include "term/text_internal.h"

/* ---- output sink ---------------------------------------------------------
 */

typedef struct out {
  char *buf;   /* NULL when writing to f or only measuring */
  size_t size; /* capacity of buf including the NUL */
  size_t len;  /* bytes produced so far (may exceed size) */
  FILE *f;
  int err;
} out;

static void put(out *o, const char *s, size_t n) {
  if (o->f != NULL) {
    if (o->err == 0 && fwrite(s, 1, n, o->f) != n)
      o->err = KEEL_EIO;
  } else if (o->buf != NULL && o->len + 1 < o->size) {
    size_t room = o->size - 1 - o->len;
    memcpy(o->buf + o->len, s, n < room ? n : room);
  }
  o->len += n;
}

static void puts_(out *o, const char *s) {
  put(o, s, strlen(s));
}

static void putc_(out *o, char c) {
  put(o, &c, 1);
}

/* Writes code point c as UTF-8. */
static void put_utf8(out *o, uint32_t c) {
  char b[4];
  size_t n;
  if (c < 0x80) {
    b[0] = (char)c;
    n = 1;
  } else if (c < 0x800) {
    b[0] = (char)(0xc0 | (c >> 6));
    b[1] = (char)(0x80 | (c & 0x3f));
    n = 2;
  } else if (c < 0x10000) {
    b[0] = (char)(0xe0 | (c >> 12));
    b[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    b[2] = (char)(0x80 | (c & 0x3f));
    n = 3;
  } else {
    b[0] = (char)(0xf0 | (c >> 18));
    b[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    b[3] = (char)(0x80 | (c & 0x3f));
    n = 4;
  }
  put(o, b, n);
}

static void put_u64(out *o, uint64_t v) {
  char b[24];
  int n = snprintf(b, sizeof b, "%llu", (unsigned long long)v);
  put(o, b, (size_t)n);
}

/* ---- atoms and strings ---------------------------------------------------
 */

/* Decodes one code point of valid UTF-8 (atom names are validated). */
static uint32_t utf8_next(const uint8_t **s) {
  const uint8_t *p = *s;
  uint32_t c = p[0];
  size_t n = 1;
  if (c >= 0xf0) {
    c = ((c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3f) << 12) |
        ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
    n = 4;
  } else if (c >= 0xe0) {
    c = ((c & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
    n = 3;
  } else if (c >= 0xc0) {
    c = ((c & 0x1f) << 6) | (p[1] & 0x3f);
    n = 2;
  }
  *s = p + n;
  return c;
}

static bool is_lower(uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 0xdf && c <= 0xff && c != 0xf7);
}

static bool is_name_char(uint32_t c) {
  return is_lower(c) || (c >= 'A' && c <= 'Z') ||
         (c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= '0' && c <= '9') ||
         c == '_' || c == '@';
}

static const char *const RESERVED[] = {
    "after",  "and",     "andalso", "band", "begin", "bnot", "bor",
    "bsl",    "bsr",     "bxor",    "case", "catch", "cond", "div",
    "end",    "fun",     "if",      "let",  "not",   "of",   "or",
    "orelse", "receive", "rem",     "try",  "when",  "xor"};

static bool is_reserved(const char *s, size_t n) {
  for (size_t i = 0; i < sizeof RESERVED / sizeof RESERVED[0]; i++)
    if (strlen(RESERVED[i]) == n && memcmp(RESERVED[i], s, n) == 0)
      return true;
  return false;
}

static bool atom_needs_quotes(const char *s, size_t n, bool reserved) {
  const uint8_t *p = (const uint8_t *)s, *end = p + n;
  if (n == 0 || !is_lower(utf8_next(&p)))
    return true;
  while (p < end)
    if (!is_name_char(utf8_next(&p)))
      return true;
  return reserved && is_reserved(s, n);
}

/* One character inside quotes q, as io_lib's string writer does: in latin1
 * mode code points above 255 are escaped, in unicode mode written. */
static void put_quoted_char(out *o, uint32_t c, char q, bool uni) {
  static const char ESC[] = "\n\r\t\v\b\f\033\177";
  static const char NAME[] = "nrtvbfed";
  char b[16];
  if (c == (uint32_t)q || c == '\\') {
    putc_(o, '\\');
    putc_(o, (char)c);
  } else if (c >= ' ' && c <= '~') {
    putc_(o, (char)c);
  } else if (c >= 0xa0 && (c <= 0xff || uni)) {
    put_utf8(o, c);
  } else if (c != 0 && c < 0x80 && strchr(ESC, (int)c) != NULL) {
    putc_(o, '\\');
    putc_(o, NAME[strchr(ESC, (int)c) - ESC]);
  } else if (c < 0xa0) {
    snprintf(b, sizeof b, "\\%c%c%c", '0' + (c >> 6), '0' + ((c >> 3) & 7),
             '0' + (c & 7));
    puts_(o, b);
  } else {
    snprintf(b, sizeof b, "\\x{%X}", (unsigned)c);
    puts_(o, b);
  }
}

static void put_atom(out *o, keel_term a) {
  size_t n;
  const char *s = keel_atom_name(a, &n);
  if (!atom_needs_quotes(s, n, true)) {
    put(o, s, n);
    return;
  }
  const uint8_t *p = (const uint8_t *)s, *end = p + n;
  putc_(o, '\'');
  while (p < end)
    put_quoted_char(o, utf8_next(&p), '\'', false);
  putc_(o, '\'');
}

/* Atoms inside a fun as the runtime's fun_to_list writes them: reserved
 * words stay bare. (For names with non-ASCII characters the runtime emits
 * the UTF-8 bytes as Latin-1 characters, which does not read back; Keel
 * writes the characters themselves instead.) */
static void put_fun_atom(out *o, keel_term a) {
  size_t n;
  const char *s = keel_atom_name(a, &n);
  const uint8_t *p = (const uint8_t *)s, *end = p + n;
  bool q = atom_needs_quotes(s, n, false);
  if (q)
    putc_(o, '\'');
  while (p < end) {
    uint32_t c = utf8_next(&p);
    if (q)
      put_quoted_char(o, c, '\'', true);
    else
      put_utf8(o, c);
  }
  if (q)
    putc_(o, '\'');
}

static bool printable_char(uint64_t c) {
  return (c >= ' ' && c <= '~') || (c >= 0xa0 && c <= 0xff) ||
         (c >= '\b' && c <= '\r') || c == 033;
}

/* A proper, non-empty list of printable Latin-1 character codes. */
static bool printable_list(keel_term t) {
  for (; keel_is_cons(t); t = keel_tl(t)) {
    keel_term h = keel_hd(t);
    if (!keel_is_small(h) || keel_small_value(h) < 0 ||
        !printable_char((uint64_t)keel_small_value(h)))
      return false;
  }
  return keel_is_nil(t);
}

static void put_string(out *o, keel_term t) {
  putc_(o, '"');
  for (; keel_is_cons(t); t = keel_tl(t))
    put_quoted_char(o, (uint32_t)keel_small_value(keel_hd(t)), '"', false);
  putc_(o, '"');
}

/* ---- numbers ---------------------------------------------------------------
 */

static void put_integer(out *o, keel_term t) {
  if (keel_is_small(t)) {
    char b[24];
    int n = snprintf(b, sizeof b, "%lld", (long long)keel_small_value(t));
    put(o, b, (size_t)n);
    return;
  }
  int need = keel_integer_format(NULL, 0, t, 10);
  if (need < 0) {
    o->err = need;
    return;
  }
  char *b = malloc((size_t)need + 1);
  if (b == NULL) {
    o->err = KEEL_ENOMEM;
    return;
  }
  keel_integer_format(b, (size_t)need + 1, t, 10);
  put(o, b, (size_t)need);
  free(b);
}

/* Shortest decimal digits that read back as v (v finite, non-zero, > 0):
 * digits in d (NUL-terminated), value = 0.d * 10^(*exp10) scaled so that
 * v = digits * 10^(*ryu_exp). Returns the digit count. */
static int shortest_digits(double v, char *d, int *ryu_exp) {
  char b[40];
  for (int p = 1; p <= 17; p++) {
    snprintf(b, sizeof b, "%.*e", p - 1, v);
    if (strtod(b, NULL) == v || p == 17)
      break;
  }
  int n = 0;
  const char *s = b;
  for (; *s != 'e'; s++)
    if (*s >= '0' && *s <= '9')
      d[n++] = *s;
  int sci = atoi(s + 1);
  while (n > 1 && d[n - 1] == '0')
    n--;
  d[n] = '\0';
  *ryu_exp = sci - (n - 1);
  return n;
}

/* Erlang's float_to_list(F, [short]) choice between fixed and scientific. */
static bool use_fixed(const char *d, int n, int e) {
  int sci = e + n - 1, lower, upper;
  if (n == 1) {
    lower = -4;
    upper = 2;
  } else if (sci >= 10) {
    lower = -(n + 2);
    upper = 2;
  } else {
    lower = -(n + 2);
    upper = 1;
  }
  if (e < lower || e > upper)
    return false;
  uint64_t m = strtoull(d, NULL, 10);
  if ((m >= (UINT64_C(1) << 53) && e == 0) ||
      (m > (UINT64_C(1) << 52) / 5 && e == 1) ||
      (m > (UINT64_C(1) << 51) / 25 && e == 2))
    return false;
  return true;
}

static void put_float(out *o, double v) {
  if (v == 0) {
    puts_(o, signbit(v) ? "-0.0" : "0.0");
    return;
  }
  if (v < 0) {
    putc_(o, '-');
    v = -v;
  }
  char d[24], b[64];
  int e, n = shortest_digits(v, d, &e);
  if (!use_fixed(d, n, e)) {
    putc_(o, d[0]);
    putc_(o, '.');
    if (n > 1)
      put(o, d + 1, (size_t)n - 1);
    else
      putc_(o, '0');
    snprintf(b, sizeof b, "e%d", e + n - 1);
    puts_(o, b);
  } else if (e >= 0) {
    put(o, d, (size_t)n);
    for (int i = 0; i < e; i++)
      putc_(o, '0');
    puts_(o, ".0");
  } else if (n + e > 0) {
    int whole = n + e;
    put(o, d, (size_t)whole);
    putc_(o, '.');
    put(o, d + whole, (size_t)-e);
  } else {
    puts_(o, "0.");
    for (int i = 0; i < -(n + e); i++)
      putc_(o, '0');
    put(o, d, (size_t)n);
  }
}

/* ---- pids, refs, ports, funs ---------------------------------------------
 */

static bool node_is_local(keel_term node, uint32_t creation) {
  uint32_t lc;
  keel_term ln = keel_term_local_node(&lc);
  return node == ln && creation == lc;
}

/* "0" for the local node, else 'node'.creation (a Keel extension). */
static void put_node(out *o, keel_term node, uint32_t creation) {
  if (node_is_local(node, creation)) {
    putc_(o, '0');
    return;
  }
  put_atom(o, node);
  putc_(o, '.');
  put_u64(o, creation);
}

static void put_pid(out *o, keel_term t) {
  keel_pid_parts p;
  keel_pid_get(t, &p);
  bool local = node_is_local(p.node, p.creation);
  puts_(o, local ? "<" : "#Pid<");
  put_node(o, p.node, p.creation);
  putc_(o, '.');
  put_u64(o, p.id);
  putc_(o, '.');
  put_u64(o, p.serial);
  putc_(o, '>');
}

static void put_ref(out *o, keel_term t) {
  keel_ref_parts r;
  keel_ref_get(t, &r);
  puts_(o, "#Ref<");
  put_node(o, r.node, r.creation);
  for (uint32_t i = r.len; i-- > 0;) {
    putc_(o, '.');
    put_u64(o, r.id[i]);
  }
  putc_(o, '>');
}

static void put_port(out *o, keel_term t) {
  keel_port_parts p;
  keel_port_get(t, &p);
  puts_(o, "#Port<");
  put_node(o, p.node, p.creation);
  putc_(o, '.');
  put_u64(o, p.id);
  putc_(o, '>');
}

static void put_fun(out *o, keel_term t) {
  keel_term m, f;
  uint8_t a;
  keel_fun_get(t, &m, &f, &a);
  puts_(o, "fun ");
  put_fun_atom(o, m);
  putc_(o, ':');
  put_fun_atom(o, f);
  putc_(o, '/');
  put_u64(o, a);
}

static void put_resource(out *o, keel_term t) {
  char b[48];
  snprintf(b, sizeof b, "#Ref<0.%llu>",
           (unsigned long long)(uintptr_t)keel_resource_get(t));
  puts_(o, b);
}

/* ---- binaries --------------------------------------------------------------
 */

/* <<1,2,3>> or <<1,2:3>>, cut off like io_lib:write_binary/3. */
static void put_byte_list(out *o, const uint8_t *p, size_t nbytes,
                          size_t tailbits, long d) {
  puts_(o, "<<");
  for (size_t i = 0;; i++) {
    if (i == nbytes && tailbits == 0)
      break;
    if (d == 1) {
      puts_(o, "...");
      break;
    }
    if (i == nbytes) {
      put_u64(o, (unsigned)p[nbytes] >> (8 - tailbits));
      putc_(o, ':');
      put_u64(o, tailbits);
      break;
    }
    put_u64(o, p[i]);
    if (i + 1 == nbytes && tailbits == 0)
      break;
    putc_(o, ',');
    d = d < 0 ? d : d - 1;
  }
  puts_(o, ">>");
}

static void put_bin_string(out *o, const uint8_t *p, size_t n, bool dots) {
  puts_(o, "<<\"");
  for (size_t i = 0; i < n; i++)
    put_quoted_char(o, p[i], '"', false);
  puts_(o, dots ? "\"...>>" : "\">>");
}

/* Length of the printable prefix of p[0..n). */
static size_t printable_prefix(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n && printable_char(p[i]))
    i++;
  return i;
}

static void put_binary(out *o, keel_term t, long d, bool strings) {
  size_t n, bits = keel_bitstring_bits(t);
  const uint8_t *p = keel_binary_data(t, &n);
  size_t whole = bits / 8, tail = bits % 8;
  if (bits == 0) {
    puts_(o, "<<>>");
    return;
  }
  if (d == 1) {
    puts_(o, "<<...>>");
    return;
  }
  if (strings && tail == 0) {
    long d1 = d < 0 ? -1 : d - 1;
    size_t len = whole;
    if (d1 >= 0 && (size_t)d1 * 4 < whole)
      len = (size_t)d1 * 4;
    size_t pre = printable_prefix(p, len);
    if (len > 0 && pre == len) {
      put_bin_string(o, p, len, len < whole);
      return;
    }
    if (len > 0 && d1 > 0 && pre >= (size_t)d1) {
      put_bin_string(o, p, pre, true);
      return;
    }
  }
  put_byte_list(o, p, whole, tail, d);
}

/* ---- the iterative printer -------------------------------------------------
 */

enum job_kind { J_TERM, J_LIST, J_TUPLE, J_MAP, J_TEXT };

typedef struct job {
  unsigned kind;
  long d;        /* remaining depth; negative means unlimited */
  long d0;       /* J_MAP: depth for keys and values */
  size_t i;      /* J_TUPLE, J_MAP: next index */
  keel_term t;   /* term, list tail, tuple or map */
  const char *s; /* J_TEXT */
} job;

typedef struct jobs {
  job *v;
  size_t n, cap;
  int err;
} jobs;

static void push(jobs *js, job j) {
  if (js->n == js->cap) {
    size_t cap = js->cap ? js->cap * 2 : 64;
    job *v = realloc(js->v, cap * sizeof *v);
    if (v == NULL) {
      js->err = KEEL_ENOMEM;
      return;
    }
    js->v = v;
    js->cap = cap;
  }
  js->v[js->n++] = j;
}

static long dec(long d) {
  return d < 0 ? d : d - 1;
}

static void push_term(jobs *js, keel_term t, long d) {
  push(js, (job){.kind = J_TERM, .t = t, .d = d});
}

static void push_text(jobs *js, const char *s) {
  push(js, (job){.kind = J_TEXT, .s = s});
}

/* Continues a list after an element printed at depth d+1: t is the tail. */
static void step_list(out *o, jobs *js, job j) {
  if (keel_is_nil(j.t)) {
    putc_(o, ']');
    return;
  }
  if (j.d == 1) {
    puts_(o, "|...]");
    return;
  }
  if (keel_is_cons(j.t)) {
    putc_(o, ',');
    push(js, (job){.kind = J_LIST, .t = keel_tl(j.t), .d = dec(j.d)});
    push_term(js, keel_hd(j.t), dec(j.d));
  } else {
    putc_(o, '|');
    push_text(js, "]");
    push_term(js, j.t, dec(j.d));
  }
}

static void step_tuple(out *o, jobs *js, job j) {
  size_t n = keel_tuple_arity(j.t);
  if (j.i >= n) {
    putc_(o, '}');
    return;
  }
  if (j.i > 0)
    putc_(o, ',');
  if (j.d == 1) {
    puts_(o, "...}");
    return;
  }
  push(js, (job){.kind = J_TUPLE, .t = j.t, .i = j.i + 1, .d = dec(j.d)});
  push_term(js, keel_tuple_get(j.t, j.i), dec(j.d));
}

static void step_map(out *o, jobs *js, job j) {
  if (j.i >= keel_map_size(j.t)) {
    putc_(o, '}');
    return;
  }
  if (j.i > 0)
    putc_(o, ',');
  if (j.d == 1) {
    puts_(o, "...}");
    return;
  }
  keel_term k, v;
  keel_map_at(j.t, j.i, &k, &v);
  push(js,
       (job){.kind = J_MAP, .t = j.t, .i = j.i + 1, .d = dec(j.d), .d0 = j.d0});
  push_term(js, v, j.d0);
  push_text(js, " => ");
  push_term(js, k, j.d0);
}

static void step_term(out *o, jobs *js, keel_term t, long d, bool strings) {
  if (d == 0) {
    puts_(o, "...");
    return;
  }
  switch (keel_type_of(t)) {
  case KEEL_T_INTEGER:
    put_integer(o, t);
    break;
  case KEEL_T_FLOAT:
    put_float(o, keel__float_value(t));
    break;
  case KEEL_T_ATOM:
    put_atom(o, t);
    break;
  case KEEL_T_REF:
    put_ref(o, t);
    break;
  case KEEL_T_RESOURCE:
    put_resource(o, t);
    break;
  case KEEL_T_FUN:
    put_fun(o, t);
    break;
  case KEEL_T_PORT:
    put_port(o, t);
    break;
  case KEEL_T_PID:
    put_pid(o, t);
    break;
  case KEEL_T_NIL:
    puts_(o, "[]");
    break;
  case KEEL_T_BINARY:
    put_binary(o, t, d, strings);
    break;
  case KEEL_T_TUPLE:
    if (keel_tuple_arity(t) == 0) {
      puts_(o, "{}");
    } else if (d == 1) {
      puts_(o, "{...}");
    } else {
      putc_(o, '{');
      push(js, (job){.kind = J_TUPLE, .t = t, .i = 0, .d = d});
    }
    break;
  case KEEL_T_MAP:
    if (keel_map_size(t) == 0) {
      puts_(o, "#{}");
    } else if (d == 1) {
      puts_(o, "#{...}");
    } else {
      puts_(o, "#{");
      push(js, (job){.kind = J_MAP, .t = t, .i = 0, .d = d, .d0 = dec(d)});
    }
    break;
  case KEEL_T_LIST:
    if (strings && d != 1 && printable_list(t)) {
      put_string(o, t);
    } else if (d == 1) {
      puts_(o, "[...]");
    } else {
      putc_(o, '[');
      push(js, (job){.kind = J_LIST, .t = keel_tl(t), .d = dec(d)});
      push_term(js, keel_hd(t), dec(d));
    }
    break;
  default:
    o->err = KEEL_EINVAL;
    break;
  }
}

static int print_to(out *o, keel_term t, const keel_print_opts *opts) {
  long depth = opts != NULL && opts->depth > 0 ? (long)opts->depth : -1;
  bool strings = opts == NULL || !opts->no_strings;
  jobs js = {0};
  push_term(&js, t, depth);
  while (js.n > 0 && js.err == 0 && o->err == 0) {
    job j = js.v[--js.n];
    switch (j.kind) {
    case J_TERM:
      step_term(o, &js, j.t, j.d, strings);
      break;
    case J_LIST:
      step_list(o, &js, j);
      break;
    case J_TUPLE:
      step_tuple(o, &js, j);
      break;
    case J_MAP:
      step_map(o, &js, j);
      break;
    default:
      puts_(o, j.s);
      break;
    }
  }
  free(js.v);
  if (js.err != 0)
    return js.err;
  if (o->err != 0)
    return o->err;
  return o->len > INT_MAX ? KEEL_ELIMIT : (int)o->len;
}

int keel_print(char *buf, size_t size, keel_term t,
               const keel_print_opts *opts) {
  if (t == KEEL_NONE)
    return KEEL_EINVAL;
  out o = {.buf = buf, .size = buf == NULL ? 0 : size};
  int rc = print_to(&o, t, opts);
  if (buf != NULL && size > 0)
    buf[o.len < size ? o.len : size - 1] = '\0';
  return rc;
}

char *keel_print_alloc(keel_term t, const keel_print_opts *opts) {
  int n = keel_print(NULL, 0, t, opts);
  if (n < 0)
    return NULL;
  char *s = malloc((size_t)n + 1);
  if (s == NULL)
    return NULL;
  if (keel_print(s, (size_t)n + 1, t, opts) != n) {
    free(s);
    return NULL;
  }
  return s;
}

int keel_fprint(FILE *f, keel_term t, const keel_print_opts *opts) {
  if (f == NULL || t == KEEL_NONE)
    return KEEL_EINVAL;
  out o = {.f = f};
  return print_to(&o, t, opts);
}
