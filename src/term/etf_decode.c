/*
 * etf_decode.c - binary_to_term: the external term format to terms.
 *
 * Decoding runs in two passes over the input, neither of which recurses:
 *
 * 1. scan() checks every byte: tags, lengths against the bytes that are
 *    left, UTF-8 of atoms, floats, bit counts, fixed-size fields. It keeps
 *    only a count of terms still to read (ETF is a prefix encoding: a
 *    container announces how many terms follow), so it needs no stack at
 *    all. Since every pending term needs at least one byte, the count never
 *    exceeds the bytes left, which rejects huge declared lengths at once.
 *    It also adds up the heap words the result needs.
 *
 * 2. After one keel_heap_alloc() of that many words, build() walks the
 *    input again and writes boxes and cons cells directly into the block. An
 *    explicit stack of frames (one per open container, holding the next
 *    slot to fill and how many remain) replaces recursion. Atoms are
 *    interned (or, in safe mode, looked up) here; maps are sorted into key
 *    order and checked for duplicate keys when their last value is in.
 *
 * Binaries of more than KEEL_HEAP_BIN_MAX bytes get one reference-counted
 * object each (the input buffer is never retained).
 */
#include <math.h>
#include <stdlib.h>
#include <zlib.h>

#include "keel/etf.h"
#include "term/etf_internal.h"
#include "term/term_internal.h"

#define DEFAULT_MAX_UNCOMPRESSED ((size_t)64 << 20)

/* ---- pass 1: validation -------------------------------------------------- */

typedef struct scanner {
  const uint8_t *p, *end;
  size_t words;
} scanner;

#define NEED(s, k)                                                             \
  do {                                                                         \
    if ((size_t)((s)->end - (s)->p) < (size_t)(k))                             \
      return KEEL_ETRUNC;                                                      \
  } while (0)

/* Heap words of an integer whose magnitude is the n little-endian bytes at
 * b: 0 when it is a small immediate. */
static size_t big_words(const uint8_t *b, size_t n, bool neg) {
  while (n > 0 && b[n - 1] == 0)
    n--;
  if (n > 8)
    return 1 + (n + 7) / 8;
  uint64_t m = 0;
  for (size_t i = n; i-- > 0;)
    m = m << 8 | b[i];
  uint64_t lim = (uint64_t)KEEL_SMALL_MAX + (neg ? 1 : 0);
  return m <= lim ? 0 : 2;
}

static size_t bin_words(size_t bytes) {
  return bytes <= KEEL_HEAP_BIN_MAX ? 1 + (bytes + 7) / 8 : KEEL_REFCBIN_WORDS;
}

static bool is_ascii(const uint8_t *p, size_t len) {
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < len; i++)
    acc |= p[i];
  return (acc & UINT64_C(0x8080808080808080)) == 0;
}

/* Checks an atom at s->p (tag included) and skips it. */
static int scan_atom(scanner *s) {
  NEED(s, 1);
  uint8_t tag = *s->p++;
  size_t len;
  switch (tag) {
  case KEEL_ETF_ATOM:
  case KEEL_ETF_ATOM_UTF8:
    NEED(s, 2);
    len = keel__get_be16(s->p);
    s->p += 2;
    break;
  case KEEL_ETF_SMALL_ATOM:
  case KEEL_ETF_SMALL_ATOM_UTF8:
    NEED(s, 1);
    len = *s->p++;
    break;
  case KEEL_ETF_ATOM_CACHE_REF:
    return KEEL_EUNSUPPORTED;
  default:
    return KEEL_EDECODE;
  }
  NEED(s, len);
  if ((tag == KEEL_ETF_ATOM_UTF8 || tag == KEEL_ETF_SMALL_ATOM_UTF8) &&
      (len > KEEL_ATOM_MAX_CHARS || !is_ascii(s->p, len))) {
    long n = keel__utf8_count(s->p, len);
    if (n < 0 || n > KEEL_ATOM_MAX_CHARS)
      return KEEL_EDECODE;
  } else if (len > KEEL_ATOM_MAX_CHARS) {
    return KEEL_EDECODE;
  }
  s->p += len;
  return KEEL_OK;
}

/* Parses FLOAT_EXT's 31 bytes of text as Erlang does: up to the first NUL,
 * a complete finite number made of digits, sign, '.', 'e'. */
static int parse_text_float(const uint8_t *p, double *out) {
  char text[32];
  size_t n = 0;
  while (n < 31 && p[n] != 0) {
    if (!strchr("0123456789+-.eE", p[n]))
      return KEEL_EDECODE;
    text[n] = (char)p[n];
    n++;
  }
  text[n] = 0;
  char *endp;
  double d = strtod(text, &endp);
  if (n == 0 || endp != text + n || !isfinite(d))
    return KEEL_EDECODE;
  *out = d;
  return KEEL_OK;
}

static int scan_bits(scanner *s, bool bit) {
  NEED(s, bit ? 5 : 4);
  size_t len = keel__get_be32(s->p);
  if (bit) {
    uint8_t bits = s->p[4];
    if (bits > 8 || (len == 0) != (bits == 0))
      return KEEL_EDECODE;
  }
  s->p += bit ? 5 : 4;
  NEED(s, len);
  s->p += len;
  s->words += bin_words(len);
  return KEEL_OK;
}

/* Pids, ports and references: node atom and fixed-size fields. */
static int scan_ident(scanner *s, uint8_t tag) {
  size_t nids = 0;
  if (tag == KEEL_ETF_NEW_REFERENCE || tag == KEEL_ETF_NEWER_REFERENCE) {
    NEED(s, 2);
    nids = keel__get_be16(s->p);
    s->p += 2;
    if (nids < 1 || nids > KEEL_REF_MAX_WORDS)
      return KEEL_EDECODE;
  }
  int rc = scan_atom(s);
  if (rc < 0)
    return rc;
  size_t fixed;
  switch (tag) {
  case KEEL_ETF_PID:
    fixed = 9;
    break;
  case KEEL_ETF_NEW_PID:
    fixed = 12;
    break;
  case KEEL_ETF_PORT:
  case KEEL_ETF_REFERENCE:
    fixed = 5;
    break;
  case KEEL_ETF_NEW_PORT:
    fixed = 8;
    break;
  case KEEL_ETF_V4_PORT:
    fixed = 12;
    break;
  case KEEL_ETF_NEW_REFERENCE:
    fixed = 1 + 4 * nids;
    break;
  default: /* NEWER_REFERENCE */
    fixed = 4 + 4 * nids;
    break;
  }
  NEED(s, fixed);
  s->p += fixed;
  s->words += tag == KEEL_ETF_NEW_REFERENCE ||
                      tag == KEEL_ETF_NEWER_REFERENCE ||
                      tag == KEEL_ETF_REFERENCE
                  ? KEEL_REF_WORDS
                  : KEEL_PORT_WORDS;
  return KEEL_OK;
}

static int scan_number(scanner *s, uint8_t tag) {
  size_t n;
  switch (tag) {
  case KEEL_ETF_SMALL_INTEGER:
    NEED(s, 1);
    s->p += 1;
    return KEEL_OK;
  case KEEL_ETF_INTEGER:
    NEED(s, 4);
    s->p += 4;
    return KEEL_OK;
  case KEEL_ETF_SMALL_BIG:
  case KEEL_ETF_LARGE_BIG:
    NEED(s, tag == KEEL_ETF_SMALL_BIG ? 2 : 5);
    n = tag == KEEL_ETF_SMALL_BIG ? s->p[0] : keel__get_be32(s->p);
    s->p += tag == KEEL_ETF_SMALL_BIG ? 1 : 4;
    NEED(s, 1 + n);
    s->words += big_words(s->p + 1, n, s->p[0] != 0);
    s->p += 1 + n;
    return KEEL_OK;
  case KEEL_ETF_NEW_FLOAT: {
    NEED(s, 8);
    uint64_t bits = keel__get_be64(s->p);
    double d;
    memcpy(&d, &bits, sizeof d);
    if (!isfinite(d))
      return KEEL_EDECODE;
    s->p += 8;
    s->words += KEEL_FLOAT_WORDS;
    return KEEL_OK;
  }
  default: { /* FLOAT_EXT */
    NEED(s, 31);
    double d;
    if (parse_text_float(s->p, &d) < 0)
      return KEEL_EDECODE;
    s->p += 31;
    s->words += KEEL_FLOAT_WORDS;
    return KEEL_OK;
  }
  }
}

/* Reads a container header: *count gets the number of terms that follow. */
static int scan_container(scanner *s, uint8_t tag, size_t *count) {
  size_t n;
  switch (tag) {
  case KEEL_ETF_SMALL_TUPLE:
    NEED(s, 1);
    n = *s->p++;
    s->words += 1 + n;
    *count = n;
    return KEEL_OK;
  case KEEL_ETF_LARGE_TUPLE:
    NEED(s, 4);
    n = keel__get_be32(s->p);
    s->p += 4;
    s->words += 1 + n;
    *count = n;
    return KEEL_OK;
  case KEEL_ETF_LIST:
    NEED(s, 4);
    n = keel__get_be32(s->p);
    s->p += 4;
    s->words += 2 * n;
    *count = n + 1;
    return KEEL_OK;
  case KEEL_ETF_STRING:
    NEED(s, 2);
    n = keel__get_be16(s->p);
    s->p += 2;
    NEED(s, n);
    s->p += n;
    s->words += 2 * n;
    return KEEL_OK;
  default: /* MAP */
    NEED(s, 4);
    n = keel__get_be32(s->p);
    s->p += 4;
    s->words += 1 + 2 * n;
    *count = 2 * n;
    return KEEL_OK;
  }
}

static int scan_export(scanner *s) {
  int rc = scan_atom(s);
  if (rc == KEEL_OK)
    rc = scan_atom(s);
  if (rc < 0)
    return rc;
  NEED(s, 2);
  if (s->p[0] != KEEL_ETF_SMALL_INTEGER)
    return KEEL_EDECODE;
  s->p += 2;
  s->words += KEEL_FUN_WORDS;
  return KEEL_OK;
}

/* Validates one term's own bytes; *count gets the number of sub-terms. */
static int scan_one(scanner *s, size_t *count) {
  *count = 0;
  uint8_t tag = *s->p++;
  switch (tag) {
  case KEEL_ETF_SMALL_INTEGER:
  case KEEL_ETF_INTEGER:
  case KEEL_ETF_SMALL_BIG:
  case KEEL_ETF_LARGE_BIG:
  case KEEL_ETF_NEW_FLOAT:
  case KEEL_ETF_FLOAT:
    return scan_number(s, tag);
  case KEEL_ETF_ATOM:
  case KEEL_ETF_SMALL_ATOM:
  case KEEL_ETF_ATOM_UTF8:
  case KEEL_ETF_SMALL_ATOM_UTF8:
  case KEEL_ETF_ATOM_CACHE_REF:
    s->p--;
    return scan_atom(s);
  case KEEL_ETF_NIL:
    return KEEL_OK;
  case KEEL_ETF_SMALL_TUPLE:
  case KEEL_ETF_LARGE_TUPLE:
  case KEEL_ETF_LIST:
  case KEEL_ETF_STRING:
  case KEEL_ETF_MAP:
    return scan_container(s, tag, count);
  case KEEL_ETF_BINARY:
  case KEEL_ETF_BIT_BINARY:
    return scan_bits(s, tag == KEEL_ETF_BIT_BINARY);
  case KEEL_ETF_PID:
  case KEEL_ETF_NEW_PID:
  case KEEL_ETF_PORT:
  case KEEL_ETF_NEW_PORT:
  case KEEL_ETF_V4_PORT:
  case KEEL_ETF_REFERENCE:
  case KEEL_ETF_NEW_REFERENCE:
  case KEEL_ETF_NEWER_REFERENCE:
    return scan_ident(s, tag);
  case KEEL_ETF_EXPORT:
    return scan_export(s);
  case KEEL_ETF_NEW_FUN:
  case KEEL_ETF_FUN:
  case KEEL_ETF_DIST_HEADER:
    return KEEL_EUNSUPPORTED;
  default:
    return KEEL_EDECODE;
  }
}

/* Pass 1 over one term (no version byte) in buf[0..len). */
static int scan(const uint8_t *buf, size_t len, size_t *used, size_t *words) {
  scanner s = {.p = buf, .end = buf + len, .words = 0};
  size_t pending = 1;
  while (pending > 0) {
    if (s.p == s.end)
      return KEEL_ETRUNC;
    pending--;
    /* Fast paths for the most frequent tags (integers, short ASCII atoms,
     * small tuples) without a jump table; anything else, or a term that
     * does not fit, takes the generic path, which reports errors. */
    uint8_t tag = *s.p;
    size_t left = (size_t)(s.end - s.p);
    if (tag == KEEL_ETF_SMALL_INTEGER && left >= 2) {
      s.p += 2;
      if (pending > left - 2)
        return KEEL_ETRUNC;
      continue;
    }
    if (tag == KEEL_ETF_SMALL_ATOM_UTF8 && left >= 2 &&
        (size_t)s.p[1] + 2 <= left && is_ascii(s.p + 2, s.p[1])) {
      s.p += 2 + (size_t)s.p[1];
      if (pending > (size_t)(s.end - s.p))
        return KEEL_ETRUNC;
      continue;
    }
    if (tag == KEEL_ETF_SMALL_TUPLE && left >= 2) {
      size_t n = s.p[1];
      s.p += 2;
      s.words += 1 + n;
      pending += n;
      if (pending > left - 2)
        return KEEL_ETRUNC;
      continue;
    }
    if (tag == KEEL_ETF_INTEGER && left >= 5) {
      s.p += 5;
      if (pending > left - 5)
        return KEEL_ETRUNC;
      continue;
    }
    size_t count;
    int rc = scan_one(&s, &count);
    if (rc < 0)
      return rc;
    pending += count;
    if (pending > (size_t)(s.end - s.p))
      return KEEL_ETRUNC;
  }
  *used = (size_t)(s.p - buf);
  *words = s.words;
  return KEEL_OK;
}

/* ---- pass 2: building ---------------------------------------------------- */

typedef struct bframe {
  uint64_t *slot; /* next slot to fill; for a map finaliser: the map box */
  size_t left;    /* slots left; 0 marks a map finaliser */
  size_t stride;  /* words between slots */
} bframe;

/* Atoms resolved recently by this thread, by their encoded bytes: most
 * messages repeat a few atoms (map keys, record tags, node names), and
 * atoms live for the whole process, so a cached term stays valid. Short
 * names only; a slot is overwritten on collision. */
#define ATOM_CACHE 256
#define ATOM_CACHE_NAME 30

typedef struct atom_slot {
  keel_term atom; /* 0: empty */
  uint8_t len;
  uint8_t latin1;
  char name[ATOM_CACHE_NAME];
} atom_slot;

static _Thread_local atom_slot atom_cache[ATOM_CACHE];

typedef struct builder {
  keel_heap *h;
  const uint8_t *p;
  uint64_t *top, *end; /* the pre-allocated block */
  int safe;
  atom_slot *cache; /* this thread's atom_cache, looked up once */
  keel_term root;   /* the slot of the whole term */
  bframe *stack;
  size_t sp, cap;
  bframe inline_stack[16];
} builder;

static uint64_t *take(builder *b, size_t words) {
  if (words > (size_t)(b->end - b->top))
    return NULL; /* cannot happen when scan() and build() agree */
  uint64_t *p = b->top;
  b->top += words;
  return p;
}

static int grow_bstack(builder *b) {
  size_t cap = b->cap * 2;
  bframe *s = malloc(cap * sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  memcpy(s, b->stack, b->sp * sizeof *s);
  if (b->stack != b->inline_stack)
    free(b->stack);
  b->stack = s;
  b->cap = cap;
  return KEEL_OK;
}

/* Pushes a frame, field by field (see etf_encode.c's push). */
static inline int bpush(builder *b, uint64_t *slot, size_t left,
                        size_t stride) {
  if (b->sp == b->cap && grow_bstack(b) < 0)
    return KEEL_ENOMEM;
  bframe *f = &b->stack[b->sp++];
  f->slot = slot;
  f->left = left;
  f->stride = stride;
  return KEEL_OK;
}

static int intern(builder *b, const char *name, size_t len, keel_term *out) {
  int rc = b->safe ? keel_atom_find(name, len, out)
                   : keel_atom_intern(name, len, out);
  if (rc == KEEL_EINVAL || rc == KEEL_ELIMIT)
    return KEEL_EDECODE;
  return rc;
}

/* Interns (or finds) an atom from its encoded name. */
static int resolve_atom(builder *b, const uint8_t *s, size_t len, bool latin1,
                        keel_term *out) {
  if (!latin1)
    return intern(b, (const char *)s, len, out);
  char utf8[2 * KEEL_ATOM_MAX_CHARS];
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < 0x80) {
      utf8[n++] = (char)s[i];
    } else {
      utf8[n++] = (char)(0xc0 | (s[i] >> 6));
      utf8[n++] = (char)(0x80 | (s[i] & 0x3f));
    }
  }
  return intern(b, utf8, n, out);
}

/* memcmp(a, b, n) == 0 for the short names of the atom cache, without a
 * library call. */
static inline bool same_bytes(const char *a, const uint8_t *b, size_t n) {
  unsigned diff = 0;
  for (size_t i = 0; i < n; i++)
    diff |= (unsigned)(uint8_t)a[i] ^ b[i];
  return diff == 0;
}

/* Cache miss: resolves the atom and remembers it in slot c (if any). */
static __attribute__((noinline)) int lookup_atom_slow(builder *b, atom_slot *c,
                                                      const uint8_t *s,
                                                      size_t len, bool latin1,
                                                      keel_term *out) {
  int rc = resolve_atom(b, s, len, latin1, out);
  if (rc == KEEL_OK && c != NULL) {
    c->atom = *out;
    c->len = (uint8_t)len;
    c->latin1 = latin1;
    memcpy(c->name, s, len);
  }
  return rc;
}

/* The atom named s[0..len), through this thread's cache. */
static inline int lookup_atom(builder *b, const uint8_t *s, size_t len,
                              bool latin1, keel_term *out) {
  if (len > ATOM_CACHE_NAME)
    return lookup_atom_slow(b, NULL, s, len, latin1, out);
  unsigned i =
      len == 0
          ? 0
          : (unsigned)(len * 31 + s[0] * 7 + s[len / 2] * 3 + s[len - 1] * 13);
  atom_slot *c = &b->cache[i & (ATOM_CACHE - 1)];
  if (c->atom != 0 && c->len == len && c->latin1 == latin1 &&
      same_bytes(c->name, s, len)) {
    *out = c->atom;
    return KEEL_OK;
  }
  return lookup_atom_slow(b, c, s, len, latin1, out);
}

/* Reads a validated atom at b->p. */
static int build_atom(builder *b, keel_term *out) {
  uint8_t tag = *b->p++;
  size_t len;
  if (tag == KEEL_ETF_ATOM || tag == KEEL_ETF_ATOM_UTF8) {
    len = keel__get_be16(b->p);
    b->p += 2;
  } else {
    len = *b->p++;
  }
  const uint8_t *s = b->p;
  b->p += len;
  return lookup_atom(b, s, len,
                     tag == KEEL_ETF_ATOM || tag == KEEL_ETF_SMALL_ATOM, out);
}

static int build_big(builder *b, size_t n, keel_term *out) {
  bool neg = *b->p++ != 0;
  const uint8_t *d = b->p;
  b->p += n;
  while (n > 0 && d[n - 1] == 0)
    n--;
  size_t nl = (n + 7) / 8;
  if (big_words(d, n, neg) == 0) {
    uint64_t m = 0;
    for (size_t i = n; i-- > 0;)
      m = m << 8 | d[i];
    *out = neg ? keel_small(-(int64_t)(m - 1) - 1) : keel_small((int64_t)m);
    if (m == 0)
      *out = keel_small(0);
    return KEEL_OK;
  }
  uint64_t *p = take(b, 1 + nl);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(neg ? KEEL_BOX_NEGBIG : KEEL_BOX_POSBIG, nl);
  memset(p + 1, 0, nl * 8);
  for (size_t i = 0; i < n; i++)
    p[1 + i / 8] |= (uint64_t)d[i] << (8 * (i % 8));
  *out = keel__boxed(p);
  return KEEL_OK;
}

static int build_float(builder *b, double d, keel_term *out) {
  uint64_t *p = take(b, KEEL_FLOAT_WORDS);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(KEEL_BOX_FLOAT, 1);
  memcpy(&p[1], &d, sizeof d);
  *out = keel__boxed(p);
  return KEEL_OK;
}

static int build_bits(builder *b, bool bit, keel_term *out) {
  size_t len = keel__get_be32(b->p);
  size_t nbits = len * 8;
  if (bit && len > 0)
    nbits = (len - 1) * 8 + b->p[4];
  b->p += bit ? 5 : 4;
  const uint8_t *src = b->p;
  b->p += len;
  uint8_t *dst;
  uint64_t *p = take(b, bin_words(len));
  if (p == NULL)
    return KEEL_EDECODE;
  if (len <= KEEL_HEAP_BIN_MAX) {
    p[0] = keel__hdr(KEEL_BOX_HEAPBIN, nbits);
    if (len > 0)
      p[(len + 7) / 8] = 0;
    dst = (uint8_t *)(p + 1);
  } else {
    keel_binobj *obj = keel__binobj_new(len);
    if (obj == NULL)
      return KEEL_ENOMEM;
    p[0] = keel__hdr(KEEL_BOX_REFCBIN, nbits);
    p[1] = (uint64_t)(uintptr_t)obj->data;
    p[2] = (uint64_t)(uintptr_t)obj;
    keel__heap_link_offheap(b->h, p);
    dst = obj->data;
  }
  if (len > 0) {
    memcpy(dst, src, len);
    if (nbits % 8 != 0)
      dst[len - 1] &= (uint8_t)(0xffu << (8 - nbits % 8));
  }
  *out = keel__boxed(p);
  return KEEL_OK;
}

static int build_pid(builder *b, uint8_t tag, keel_term *out) {
  keel_term node = KEEL_NONE;
  int rc = build_atom(b, &node);
  if (rc < 0)
    return rc;
  uint64_t number = keel__get_be32(b->p) | (uint64_t)keel__get_be32(b->p + 4)
                                               << 32;
  uint32_t creation = tag == KEEL_ETF_PID ? b->p[8] : keel__get_be32(b->p + 8);
  b->p += tag == KEEL_ETF_PID ? 9 : 12;
  if (node == keel__local_node && creation == keel__local_creation &&
      number <= KEEL_PID_NUMBER_MAX) {
    *out = keel_pid_local(number);
    return KEEL_OK;
  }
  uint64_t *p = take(b, KEEL_EXTPID_WORDS);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(KEEL_BOX_EXTPID, 0);
  p[1] = node;
  p[2] = number;
  p[3] = creation;
  *out = keel__boxed(p);
  return KEEL_OK;
}

static int build_port(builder *b, uint8_t tag, keel_term *out) {
  keel_term node = KEEL_NONE;
  int rc = build_atom(b, &node);
  if (rc < 0)
    return rc;
  uint64_t *p = take(b, KEEL_PORT_WORDS);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(KEEL_BOX_PORT, 0);
  p[1] = node;
  if (tag == KEEL_ETF_V4_PORT) {
    p[2] = keel__get_be64(b->p);
    p[3] = keel__get_be32(b->p + 8);
    b->p += 12;
  } else {
    p[2] = keel__get_be32(b->p);
    p[3] = tag == KEEL_ETF_PORT ? b->p[4] : keel__get_be32(b->p + 4);
    b->p += tag == KEEL_ETF_PORT ? 5 : 8;
  }
  *out = keel__boxed(p);
  return KEEL_OK;
}

static int build_ref(builder *b, uint8_t tag, keel_term *out) {
  uint32_t len = 1;
  if (tag != KEEL_ETF_REFERENCE) {
    len = keel__get_be16(b->p);
    b->p += 2;
  }
  keel_term node = KEEL_NONE;
  int rc = build_atom(b, &node);
  if (rc < 0)
    return rc;
  uint64_t *p = take(b, KEEL_REF_WORDS);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(KEEL_BOX_REF, len);
  p[1] = node;
  p[3] = p[4] = p[5] = 0;
  const uint8_t *ids;
  if (tag == KEEL_ETF_REFERENCE) {
    ids = b->p;
    p[2] = b->p[4];
    b->p += 5;
  } else if (tag == KEEL_ETF_NEW_REFERENCE) {
    p[2] = b->p[0];
    ids = b->p + 1;
    b->p += 1 + 4 * len;
  } else {
    p[2] = keel__get_be32(b->p);
    ids = b->p + 4;
    b->p += 4 + 4 * len;
  }
  for (uint32_t i = 0; i < len; i++)
    p[3 + i / 2] |= (uint64_t)keel__get_be32(ids + 4 * i) << (32 * (i % 2));
  *out = keel__boxed(p);
  return KEEL_OK;
}

static int build_export(builder *b, keel_term *out) {
  keel_term m = KEEL_NONE, f = KEEL_NONE;
  int rc = build_atom(b, &m);
  if (rc == KEEL_OK)
    rc = build_atom(b, &f);
  if (rc != KEEL_OK)
    return rc;
  uint64_t *p = take(b, KEEL_FUN_WORDS);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(KEEL_BOX_FUN, 0);
  p[1] = m;
  p[2] = f;
  p[3] = b->p[1];
  b->p += 2;
  *out = keel__boxed(p);
  return KEEL_OK;
}

/* ---- containers ----------------------------------------------------------
 */

/* Decodes the term at *pp into *slot when it is an immediate (no heap,
 * no frame), advancing *pp. 1: done; 0: not an immediate; negative: error.
 * The cursor is a separate pointer so that, inlined into a loop, it stays
 * in a register instead of being reloaded after every store to a slot. */
static inline __attribute__((always_inline)) int
imm_at(builder *b, const uint8_t **pp, uint64_t *slot) {
  const uint8_t *p = *pp;
  /* The most common tags are tested first, without a jump table. */
  if (p[0] == KEEL_ETF_SMALL_INTEGER) {
    *slot = keel_small(p[1]);
    *pp = p + 2;
    return 1;
  }
  if (p[0] == KEEL_ETF_INTEGER) {
    *slot = keel_small((int32_t)keel__get_be32(p + 1));
    *pp = p + 5;
    return 1;
  }
  if (p[0] == KEEL_ETF_SMALL_ATOM_UTF8) {
    *pp = p + 2 + (size_t)p[1];
    int rc = lookup_atom(b, p + 2, p[1], false, slot);
    return rc < 0 ? rc : 1;
  }
  switch (p[0]) {
  case KEEL_ETF_SMALL_INTEGER:
    *slot = keel_small(p[1]);
    *pp = p + 2;
    return 1;
  case KEEL_ETF_INTEGER:
    *slot = keel_small((int32_t)keel__get_be32(p + 1));
    *pp = p + 5;
    return 1;
  case KEEL_ETF_NIL:
    *slot = KEEL_NIL;
    *pp = p + 1;
    return 1;
  case KEEL_ETF_SMALL_ATOM_UTF8:
  case KEEL_ETF_SMALL_ATOM: {
    *pp = p + 2 + (size_t)p[1];
    int rc = lookup_atom(b, p + 2, p[1], p[0] == KEEL_ETF_SMALL_ATOM, slot);
    return rc < 0 ? rc : 1;
  }
  case KEEL_ETF_ATOM_UTF8:
  case KEEL_ETF_ATOM: {
    size_t len = keel__get_be16(p + 1);
    *pp = p + 3 + len;
    int rc = lookup_atom(b, p + 3, len, p[0] == KEEL_ETF_ATOM, slot);
    return rc < 0 ? rc : 1;
  }
  default:
    return 0;
  }
}

static inline int build_imm(builder *b, uint64_t *slot) {
  return imm_at(b, &b->p, slot);
}

/* Fills leading immediate elements of n slots `stride` words apart in
 * place; pushes a frame for the rest. Returns the number of slots left for
 * the frame (0: all done) or a negative error. */
static long fill_slots(builder *b, uint64_t *slot, size_t n, size_t stride) {
  size_t i = 0;
  const uint8_t *p = b->p;
  for (; i < n; i++) {
    int rc = imm_at(b, &p, slot + i * stride);
    if (rc < 0)
      return rc;
    if (rc == 0)
      break;
  }
  b->p = p;
  if (i == n)
    return 0;
  int rc = bpush(b, slot + i * stride, n - i, stride);
  return rc < 0 ? rc : (long)(n - i);
}

static int build_tuple(builder *b, size_t n, keel_term *out) {
  uint64_t *p = take(b, 1 + n);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(KEEL_BOX_TUPLE, n);
  *out = keel__boxed(p);
  long rc = fill_slots(b, p + 1, n, 1);
  return rc < 0 ? (int)rc : KEEL_OK;
}

static int build_list(builder *b, uint64_t *slot) {
  size_t n = keel__get_be32(b->p);
  b->p += 4;
  if (n == 0) /* only the tail follows: it goes into the same slot */
    return bpush(b, slot, 1, 1);
  uint64_t *c = take(b, 2 * n);
  if (c == NULL)
    return KEEL_EDECODE;
  for (size_t i = 0; i + 1 < n; i++)
    c[2 * i + 1] = keel__cons_term(&c[2 * i + 2]);
  *slot = keel__cons_term(c);
  /* The tail's frame goes first: it is filled after every element. */
  int rc = bpush(b, &c[2 * n - 1], 1, 1);
  if (rc < 0)
    return rc;
  long left = fill_slots(b, c, n, 2);
  if (left < 0)
    return (int)left;
  if (left == 0) { /* all elements done: the tail may be immediate too */
    rc = build_imm(b, &c[2 * n - 1]);
    if (rc == 1)
      b->sp--;
  }
  return rc < 0 ? rc : KEEL_OK;
}

static int build_string(builder *b, keel_term *out) {
  size_t n = keel__get_be16(b->p);
  const uint8_t *s = b->p + 2;
  b->p += 2 + n;
  if (n == 0) {
    *out = KEEL_NIL;
    return KEEL_OK;
  }
  uint64_t *c = take(b, 2 * n);
  if (c == NULL)
    return KEEL_EDECODE;
  for (size_t i = 0; i < n; i++) {
    c[2 * i] = keel_small(s[i]);
    c[2 * i + 1] = i + 1 < n ? keel__cons_term(&c[2 * i + 2]) : KEEL_NIL;
  }
  *out = keel__cons_term(c);
  return KEEL_OK;
}

static int finish_map(uint64_t *box);

static int build_map(builder *b, size_t n, keel_term *out) {
  uint64_t *p = take(b, 1 + 2 * n);
  if (p == NULL)
    return KEEL_EDECODE;
  p[0] = keel__hdr(KEEL_BOX_MAP, n);
  *out = keel__boxed(p);
  if (n == 0)
    return KEEL_OK;
  int rc = bpush(b, p, 0, 0); /* the finaliser runs after every pair */
  if (rc < 0)
    return rc;
  long left = fill_slots(b, p + 1, 2 * n, 1);
  if (left < 0)
    return (int)left;
  if (left > 0)
    return KEEL_OK;
  b->sp--;
  return finish_map(p);
}

/* Stable merge sort of pair indices by key; pairs are interleaved. */
static void sort_pairs(uint32_t *idx, uint32_t *tmp, size_t n,
                       const uint64_t *kv) {
  for (size_t w = 1; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n,
             hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        tmp[k++] = keel__map_key_cmp(kv[2 * idx[j]], kv[2 * idx[i]]) < 0
                       ? idx[j++]
                       : idx[i++];
      while (i < mid)
        tmp[k++] = idx[i++];
      while (j < hi)
        tmp[k++] = idx[j++];
    }
    memcpy(idx, tmp, n * sizeof *idx);
  }
}

/* Turns a map box whose pairs were read interleaved (k0 v0 k1 v1 ...) into
 * the sorted keys-then-values layout; duplicate keys are an error. */
static int finish_map(uint64_t *box) {
  size_t n = keel__hdr_size(box[0]);
  uint64_t *kv = box + 1;
  uint64_t small_kv[64];
  uint32_t small_idx[64];
  uint64_t *copy = n <= 32 ? small_kv : malloc(2 * n * sizeof *copy);
  uint32_t *idx = n <= 32 ? small_idx : malloc(2 * n * sizeof *idx);
  int rc = KEEL_OK;
  if (copy == NULL || idx == NULL) {
    rc = KEEL_ENOMEM;
    goto out;
  }
  memcpy(copy, kv, 2 * n * sizeof *copy);
  bool sorted = true;
  for (size_t i = 0; i < n; i++) {
    idx[i] = (uint32_t)i;
    if (i > 0 && sorted && keel__map_key_cmp(copy[2 * i - 2], copy[2 * i]) >= 0)
      sorted = false;
  }
  if (!sorted) {
    sort_pairs(idx, idx + n, n, copy);
    for (size_t i = 1; i < n && rc == KEEL_OK; i++)
      if (keel__map_key_cmp(copy[2 * idx[i - 1]], copy[2 * idx[i]]) == 0)
        rc = KEEL_EDECODE;
  }
  for (size_t i = 0; i < n && rc == KEEL_OK; i++) {
    kv[i] = copy[2 * idx[i]];
    kv[n + i] = copy[2 * idx[i] + 1];
  }
out:
  if (copy != small_kv)
    free(copy);
  if (idx != small_idx)
    free(idx);
  return rc;
}

/* Builds the term at b->p into *slot. */
static int build_one(builder *b, uint64_t *slot) {
  uint8_t tag = *b->p;
  const uint8_t *d = b->p + 1;
  switch (tag) {
  case KEEL_ETF_SMALL_INTEGER:
    *slot = keel_small(d[0]);
    b->p += 2;
    return KEEL_OK;
  case KEEL_ETF_INTEGER:
    *slot = keel_small((int32_t)keel__get_be32(d));
    b->p += 5;
    return KEEL_OK;
  case KEEL_ETF_SMALL_BIG:
    b->p += 2;
    return build_big(b, d[0], slot);
  case KEEL_ETF_LARGE_BIG:
    b->p += 5;
    return build_big(b, keel__get_be32(d), slot);
  case KEEL_ETF_NEW_FLOAT: {
    uint64_t bits = keel__get_be64(d);
    double v;
    memcpy(&v, &bits, sizeof v);
    b->p += 9;
    return build_float(b, v, slot);
  }
  case KEEL_ETF_FLOAT: {
    double v = 0;
    parse_text_float(d, &v);
    b->p += 32;
    return build_float(b, v, slot);
  }
  case KEEL_ETF_NIL:
    *slot = KEEL_NIL;
    b->p += 1;
    return KEEL_OK;
  case KEEL_ETF_SMALL_TUPLE:
    b->p += 2;
    return build_tuple(b, d[0], slot);
  case KEEL_ETF_LARGE_TUPLE:
    b->p += 5;
    return build_tuple(b, keel__get_be32(d), slot);
  case KEEL_ETF_LIST:
    b->p += 1;
    return build_list(b, slot);
  case KEEL_ETF_STRING:
    b->p += 1;
    return build_string(b, slot);
  case KEEL_ETF_MAP:
    b->p += 5;
    return build_map(b, keel__get_be32(d), slot);
  case KEEL_ETF_BINARY:
  case KEEL_ETF_BIT_BINARY:
    b->p += 1;
    return build_bits(b, tag == KEEL_ETF_BIT_BINARY, slot);
  case KEEL_ETF_PID:
  case KEEL_ETF_NEW_PID:
    b->p += 1;
    return build_pid(b, tag, slot);
  case KEEL_ETF_PORT:
  case KEEL_ETF_NEW_PORT:
  case KEEL_ETF_V4_PORT:
    b->p += 1;
    return build_port(b, tag, slot);
  case KEEL_ETF_REFERENCE:
  case KEEL_ETF_NEW_REFERENCE:
  case KEEL_ETF_NEWER_REFERENCE:
    b->p += 1;
    return build_ref(b, tag, slot);
  case KEEL_ETF_EXPORT:
    b->p += 1;
    return build_export(b, slot);
  default:
    return build_atom(b, slot);
  }
}

/* Pass 2: builds the term validated by scan() into the block [top, end). */
static int build(builder *b, keel_term *out) {
  b->root = KEEL_NIL;
  int rc = bpush(b, &b->root, 1, 1);
  while (rc == KEEL_OK && b->sp > 0) {
    bframe *f = &b->stack[b->sp - 1];
    if (f->left == 0) {
      b->sp--;
      rc = finish_map(f->slot);
      continue;
    }
    uint64_t *slot = f->slot;
    f->slot += f->stride;
    if (--f->left == 0)
      b->sp--;
    rc = build_one(b, slot);
  }
  if (b->stack != b->inline_stack)
    free(b->stack);
  b->sp = 0;
  *out = b->root;
  return rc;
}

/* Decodes one term without version byte from buf[0..len). */
static int decode_body(keel_heap *h, const uint8_t *buf, size_t len,
                       size_t *used, keel_term *out, int safe) {
  size_t words;
  int rc = scan(buf, len, used, &words);
  if (rc < 0)
    return rc;
  uint64_t *block = NULL;
  if (words > 0 && (block = keel_heap_alloc(h, words)) == NULL)
    return KEEL_ENOMEM;
  builder b; /* fields set one by one: the inline stack needs no zeroing */
  b.h = h;
  b.p = buf;
  b.top = block;
  b.end = block != NULL ? block + words : NULL;
  b.safe = safe;
  b.cache = atom_cache;
  b.sp = 0;
  b.stack = b.inline_stack;
  b.cap = sizeof b.inline_stack / sizeof b.inline_stack[0];
  return build(&b, out);
}

/* Inflates exactly `size` bytes from src[0..len) into a malloc'd buffer,
 * grown as output arrives. *consumed gets the compressed bytes used. */
static int inflate_all(const uint8_t *src, size_t len, size_t size,
                       uint8_t **dst, size_t *consumed) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK)
    return KEEL_ENOMEM;
  size_t cap = size < 65536 ? size : 65536;
  uint8_t *out = malloc(cap + 1);
  int rc = out == NULL ? KEEL_ENOMEM : KEEL_OK;
  z.next_in = (Bytef *)(uintptr_t)src;
  z.avail_in = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
  while (rc == KEEL_OK) {
    if (z.total_out >= cap && cap < size) {
      cap = cap > size / 2 ? size : cap * 2;
      uint8_t *grown = realloc(out, cap + 1);
      if (grown == NULL) {
        rc = KEEL_ENOMEM;
        break;
      }
      out = grown;
    }
    /* One spare byte detects data beyond the declared size. */
    z.next_out = out + z.total_out;
    z.avail_out = (uInt)(cap + 1 - z.total_out);
    int zr = inflate(&z, Z_NO_FLUSH);
    if (z.total_out > size)
      rc = KEEL_EDECODE;
    else if (zr == Z_STREAM_END)
      break;
    else if (zr == Z_BUF_ERROR && z.avail_in == 0)
      rc = KEEL_ETRUNC;
    else if (zr == Z_MEM_ERROR)
      rc = KEEL_ENOMEM;
    else if (zr != Z_OK && zr != Z_BUF_ERROR)
      rc = KEEL_EDECODE;
  }
  if (rc == KEEL_OK && z.total_out != size)
    rc = KEEL_EDECODE;
  *consumed = z.total_in;
  inflateEnd(&z);
  if (rc < 0)
    free(out);
  else
    *dst = out;
  return rc;
}

static int decode_compressed(keel_heap *h, const uint8_t *buf, size_t len,
                             size_t *used, keel_term *out,
                             const keel_etf_decode_opts *opts) {
  if (len < 4)
    return KEEL_ETRUNC;
  size_t size = keel__get_be32(buf);
  size_t cap = opts != NULL && opts->max_uncompressed != 0
                   ? opts->max_uncompressed
                   : DEFAULT_MAX_UNCOMPRESSED;
  if (size > cap)
    return KEEL_ELIMIT;
  uint8_t *raw;
  size_t zused, inner;
  int rc = inflate_all(buf + 4, len - 4, size, &raw, &zused);
  if (rc < 0)
    return rc;
  rc = decode_body(h, raw, size, &inner, out, opts != NULL && opts->safe);
  free(raw);
  if (rc == KEEL_ETRUNC)
    rc = KEEL_EDECODE; /* the inflated data, not the input, ended early */
  *used = 4 + zused;
  return rc;
}

int keel_etf_decode(keel_heap *h, const uint8_t *buf, size_t len, size_t *used,
                    keel_term *out, const keel_etf_decode_opts *opts) {
  if (h == NULL || out == NULL || (buf == NULL && len > 0))
    return KEEL_EINVAL;
  if (len < 2)
    return len == 1 && buf[0] != KEEL_ETF_VERSION ? KEEL_EDECODE : KEEL_ETRUNC;
  if (buf[0] != KEEL_ETF_VERSION)
    return KEEL_EDECODE;
  size_t n = 0;
  keel_term t;
  int rc = buf[1] == KEEL_ETF_COMPRESSED
               ? decode_compressed(h, buf + 2, len - 2, &n, &t, opts)
               : decode_body(h, buf + 1, len - 1, &n, &t,
                             opts != NULL && opts->safe);
  if (rc < 0)
    return rc;
  if (used != NULL)
    *used = 1 + n + (buf[1] == KEEL_ETF_COMPRESSED ? 1 : 0);
  *out = t;
  return KEEL_OK;
}
