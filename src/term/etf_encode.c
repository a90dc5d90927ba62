/*
 * etf_encode.c - term_to_binary: terms to the external term format.
 *
 * One walker serves both keel_etf_size() and keel_etf_encode(): it visits
 * the term in encoding (prefix) order with an explicit stack of frames and
 * either only counts bytes (out == NULL) or writes them, making room before
 * each term for its fixed-size part (at most TERM_SLACK bytes) and before
 * each payload (binary bytes, big integer magnitude, string), so the write
 * path needs no separate sizing walk. Lists are walked
 * along their spine, so a frame stands for a whole tuple, map or list, never
 * for one element, and the stack grows with nesting depth only.
 */
#include <stdlib.h>
#include <zlib.h>

#include "keel/etf.h"
#include "term/etf_internal.h"
#include "term/term_internal.h"

enum frame_kind { FR_ARRAY, FR_MAP, FR_LIST };

typedef struct enc_frame {
  const keel_term *arr; /* FR_ARRAY: elements; FR_MAP: keys */
  keel_term cur;        /* FR_LIST: the next cons cell */
  size_t i, n;
  unsigned kind;
} enc_frame;

typedef struct enc {
  uint8_t *out;  /* NULL: count only */
  size_t n;      /* bytes counted or written */
  size_t cap;    /* bytes available at out */
  keel_buf *buf; /* where out lives (write mode) */
  size_t start;  /* offset of out in buf->data */
  int minor;
  enc_frame *stack;
  size_t sp, scap;
  enc_frame inline_stack[16];
} enc;

/* Claims k bytes: returns where to write them (NULL when counting). Hot
 * paths write a term's bytes through this one pointer, so that the byte
 * stores (which may alias anything) are not followed by reloads of e->n. */
static inline uint8_t *claim(enc *e, size_t k) {
  uint8_t *o = e->out != NULL ? e->out + e->n : NULL;
  e->n += k;
  return o;
}

static inline void put_u8(enc *e, uint8_t v) {
  if (e->out != NULL)
    e->out[e->n] = v;
  e->n += 1;
}

static inline void put_u16(enc *e, uint32_t v) {
  if (e->out != NULL)
    keel__put_be16(e->out + e->n, v);
  e->n += 2;
}

static inline void put_u32(enc *e, uint32_t v) {
  if (e->out != NULL)
    keel__put_be32(e->out + e->n, v);
  e->n += 4;
}

static inline void put_u64(enc *e, uint64_t v) {
  if (e->out != NULL)
    keel__put_be64(e->out + e->n, v);
  e->n += 8;
}

static inline void put_bytes(enc *e, const void *src, size_t n) {
  if (e->out != NULL && n > 0)
    memcpy(e->out + e->n, src, n);
  e->n += n;
}

/* Largest fixed-size part of one term: a reference with a 255-character
 * node name (1 + 2 + 3 + 4 * 255 + 4 + 4 * 5 bytes) and some margin. */
#define TERM_SLACK 1100

/* Makes room for k more bytes in write mode. */
static int ensure(enc *e, size_t k) {
  if (e->out == NULL || e->cap - e->n >= k)
    return KEEL_OK;
  size_t want = e->n + k;
  want = want < SIZE_MAX / 2 ? want * 2 : want;
  if (keel_buf_reserve(e->buf, e->start - e->buf->len + want) != KEEL_OK)
    return KEEL_ENOMEM;
  e->out = e->buf->data + e->start;
  e->cap = e->buf->cap - e->start;
  return KEEL_OK;
}

static int grow_stack(enc *e) {
  size_t cap = e->scap * 2;
  enc_frame *s = malloc(cap * sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  memcpy(s, e->stack, e->sp * sizeof *s);
  if (e->stack != e->inline_stack)
    free(e->stack);
  e->stack = s;
  e->scap = cap;
  return KEEL_OK;
}

/* Pushes a frame. Fields are stored one by one: building the frame in a
 * temporary and copying it costs store-forwarding stalls. */
static inline int push(enc *e, unsigned kind, const keel_term *arr,
                       keel_term cur, size_t n) {
  if (e->sp == e->scap && grow_stack(e) < 0)
    return KEEL_ENOMEM;
  enc_frame *f = &e->stack[e->sp++];
  f->arr = arr;
  f->cur = cur;
  f->i = 0;
  f->n = n;
  f->kind = kind;
  return KEEL_OK;
}

/* ---- scalars -------------------------------------------------------------
 */

static void put_magnitude(enc *e, bool neg, const uint64_t *limbs, size_t n) {
  size_t top = 8;
  while (top > 1 && (limbs[n - 1] >> (8 * (top - 1))) == 0)
    top--;
  size_t bytes = (n - 1) * 8 + top;
  if (bytes < 256) {
    put_u8(e, KEEL_ETF_SMALL_BIG);
    put_u8(e, (uint8_t)bytes);
  } else {
    put_u8(e, KEEL_ETF_LARGE_BIG);
    put_u32(e, (uint32_t)bytes);
  }
  put_u8(e, neg ? 1 : 0);
  if (e->out == NULL) {
    e->n += bytes;
    return;
  }
  for (size_t i = 0; i < bytes; i++)
    e->out[e->n + i] = (uint8_t)(limbs[i / 8] >> (8 * (i % 8)));
  e->n += bytes;
}

static void put_small(enc *e, int64_t v) {
  if (v >= 0 && v <= 255) {
    uint8_t *o = claim(e, 2);
    if (o != NULL) {
      o[0] = KEEL_ETF_SMALL_INTEGER;
      o[1] = (uint8_t)v;
    }
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    uint8_t *o = claim(e, 5);
    if (o != NULL) {
      o[0] = KEEL_ETF_INTEGER;
      keel__put_be32(o + 1, (uint32_t)(int32_t)v);
    }
  } else {
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    put_magnitude(e, v < 0, &m, 1);
  }
}

/* Latin-1 length of a UTF-8 atom name, or -1 if some character is above
 * U+00FF. */
static long latin1_len(const uint8_t *s, size_t len) {
  long n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] >= 0xc4)
      return -1;
    if (s[i] < 0x80 || s[i] >= 0xc0)
      n++;
  }
  return n;
}

static void put_atom(enc *e, keel_term a) {
  size_t len;
  const uint8_t *s = (const uint8_t *)keel_atom_name(a, &len);
  long l1 = e->minor == 1 ? latin1_len(s, len) : -1;
  if (l1 >= 0) {
    put_u8(e, KEEL_ETF_ATOM);
    put_u16(e, (uint32_t)l1);
    if (e->out == NULL || (size_t)l1 == len) {
      put_bytes(e, s, (size_t)l1);
      return;
    }
    for (size_t i = 0; i < len; i++) {
      if (s[i] < 0x80)
        put_u8(e, s[i]);
      else if (s[i] >= 0xc0)
        put_u8(e, (uint8_t)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3f)));
    }
    return;
  }
  if (len < 256) {
    uint8_t *o = claim(e, 2 + len);
    if (o == NULL)
      return;
    o[0] = KEEL_ETF_SMALL_ATOM_UTF8;
    o[1] = (uint8_t)len;
    if (len <= 16) { /* short names: no library call */
      for (size_t i = 0; i < len; i++)
        o[2 + i] = s[i];
    } else {
      memcpy(o + 2, s, len);
    }
    return;
  }
  put_u8(e, KEEL_ETF_ATOM_UTF8);
  put_u16(e, (uint32_t)len);
  put_bytes(e, s, len);
}

static void put_pid(enc *e, keel_term node, uint64_t number,
                    uint32_t creation) {
  put_u8(e, KEEL_ETF_NEW_PID);
  put_atom(e, node);
  put_u32(e, (uint32_t)number);
  put_u32(e, (uint32_t)(number >> 32));
  put_u32(e, creation);
}

static void put_ref(enc *e, const uint64_t *box) {
  uint32_t len = (uint32_t)keel__hdr_size(box[0]);
  put_u8(e, KEEL_ETF_NEWER_REFERENCE);
  put_u16(e, len);
  put_atom(e, box[1]);
  put_u32(e, (uint32_t)box[2]);
  for (uint32_t i = 0; i < len; i++)
    put_u32(e, (uint32_t)(box[3 + i / 2] >> (32 * (i % 2))));
}

/* OTP writes V4_PORT_EXT as soon as the id needs more than 28 bits (the
 * largest port number of the older formats). */
#define V3_PORT_ID_MAX 0xfffffffu

static void put_port(enc *e, const uint64_t *box) {
  uint64_t id = box[2];
  put_u8(e, id > V3_PORT_ID_MAX ? KEEL_ETF_V4_PORT : KEEL_ETF_NEW_PORT);
  put_atom(e, box[1]);
  if (id > V3_PORT_ID_MAX)
    put_u64(e, id);
  else
    put_u32(e, (uint32_t)id);
  put_u32(e, (uint32_t)box[3]);
}

static void put_float(enc *e, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  uint8_t *o = claim(e, 9);
  if (o != NULL) {
    o[0] = KEEL_ETF_NEW_FLOAT;
    keel__put_be64(o + 1, bits);
  }
}

static void put_bits(enc *e, const uint64_t *box) {
  size_t nbits = keel__hdr_size(box[0]), bytes = (nbits + 7) / 8;
  if (nbits % 8 == 0) {
    put_u8(e, KEEL_ETF_BINARY);
    put_u32(e, (uint32_t)bytes);
  } else {
    put_u8(e, KEEL_ETF_BIT_BINARY);
    put_u32(e, (uint32_t)bytes);
    put_u8(e, (uint8_t)(nbits % 8));
  }
  put_bytes(e, keel__bin_bytes(box), bytes);
}

/* ---- containers ---------------------------------------------------------- */

static int put_term(enc *e, keel_term t);

static inline bool is_imm(keel_term t) {
  return (t & KEEL_TAG_MASK) >= KEEL_TAG_SMALL;
}

/* Writes a list's leading immediate elements in place, then pushes a frame
 * for the rest of the spine, or writes/pushes the tail. */
static int put_spine(enc *e, keel_term l) {
  const uint64_t *cell = keel__cons_ptr(l);
  for (;;) {
    if (!is_imm(cell[0]))
      return push(e, FR_LIST, NULL, keel__cons_term(cell), 0);
    int rc = put_term(e, cell[0]);
    if (rc < 0)
      return rc;
    if (!keel_is_cons(cell[1]))
      break;
    cell = keel__cons_ptr(cell[1]);
  }
  return is_imm(cell[1]) ? put_term(e, cell[1])
                         : push(e, FR_ARRAY, &cell[1], 0, 1);
}

/* Writes a list's header (or the whole list when it is a STRING_EXT) and
 * pushes a frame for its elements. */
static int put_list(enc *e, keel_term l) {
  size_t len = 0;
  bool str = true;
  keel_term t = l;
  for (; keel_is_cons(t); t = keel_tl(t)) {
    keel_term hd = keel_hd(t);
    len++;
    if (str && (hd & ~(keel_term)(255u << 2)) != KEEL_TAG_SMALL)
      str = false;
  }
  if (len > UINT32_MAX)
    return KEEL_EBADARG;
  if (str && keel_is_nil(t) && len <= KEEL_ETF_STRING_MAX) {
    if (ensure(e, 3 + len) < 0)
      return KEEL_ENOMEM;
    put_u8(e, KEEL_ETF_STRING);
    put_u16(e, (uint32_t)len);
    if (e->out == NULL) {
      e->n += len;
      return KEEL_OK;
    }
    uint8_t *o = e->out + e->n;
    for (t = l; keel_is_cons(t); t = keel_tl(t))
      *o++ = (uint8_t)(keel_hd(t) >> 2);
    e->n += len;
    return KEEL_OK;
  }
  uint8_t *o = claim(e, 5);
  if (o != NULL) {
    o[0] = KEEL_ETF_LIST;
    keel__put_be32(o + 1, (uint32_t)len);
  }
  return put_spine(e, l);
}

/* Writes leading immediate elements of a tuple in place and pushes a frame
 * for the rest, if any. */
static int put_elems(enc *e, const keel_term *el, size_t n) {
  size_t i = 0;
  for (; i < n && is_imm(el[i]); i++) {
    int rc = put_term(e, el[i]);
    if (rc < 0)
      return rc;
  }
  return i == n ? KEEL_OK : push(e, FR_ARRAY, el + i, 0, n - i);
}

static int put_boxed(enc *e, keel_term t) {
  const uint64_t *box = keel__box(t);
  size_t n = keel__hdr_size(box[0]);
  switch (keel__hdr_type(box[0])) {
  case KEEL_BOX_TUPLE:
    if (n > UINT32_MAX)
      return KEEL_EBADARG;
    if (n < 256) {
      uint8_t *o = claim(e, 2);
      if (o != NULL) {
        o[0] = KEEL_ETF_SMALL_TUPLE;
        o[1] = (uint8_t)n;
      }
    } else {
      put_u8(e, KEEL_ETF_LARGE_TUPLE);
      put_u32(e, (uint32_t)n);
    }
    return put_elems(e, box + 1, n);
  case KEEL_BOX_MAP: {
    uint8_t *o = claim(e, 5);
    if (o != NULL) {
      o[0] = KEEL_ETF_MAP;
      keel__put_be32(o + 1, (uint32_t)n);
    }
  }
    return n == 0 ? KEEL_OK : push(e, FR_MAP, box + 1, 0, n);
  case KEEL_BOX_POSBIG:
  case KEEL_BOX_NEGBIG:
    if (ensure(e, 8 * n + 8) < 0)
      return KEEL_ENOMEM;
    put_magnitude(e, keel__hdr_type(box[0]) == KEEL_BOX_NEGBIG, box + 1, n);
    return KEEL_OK;
  case KEEL_BOX_FLOAT:
    put_float(e, keel__float_value(t));
    return KEEL_OK;
  case KEEL_BOX_HEAPBIN:
  case KEEL_BOX_REFCBIN:
    if ((n + 7) / 8 > UINT32_MAX)
      return KEEL_EBADARG;
    if (ensure(e, (n + 7) / 8 + 8) < 0)
      return KEEL_ENOMEM;
    put_bits(e, box);
    return KEEL_OK;
  case KEEL_BOX_EXTPID:
    put_pid(e, box[1], box[2], (uint32_t)box[3]);
    return KEEL_OK;
  case KEEL_BOX_REF:
    put_ref(e, box);
    return KEEL_OK;
  case KEEL_BOX_PORT:
    put_port(e, box);
    return KEEL_OK;
  case KEEL_BOX_FUN:
    put_u8(e, KEEL_ETF_EXPORT);
    put_atom(e, box[1]);
    put_atom(e, box[2]);
    put_u8(e, KEEL_ETF_SMALL_INTEGER);
    put_u8(e, (uint8_t)box[3]);
    return KEEL_OK;
  default:
    return KEEL_EBADARG;
  }
}

/* Encodes one term's own bytes; children go on the stack. */
static int put_term(enc *e, keel_term t) {
  if (ensure(e, TERM_SLACK) < 0)
    return KEEL_ENOMEM;
  switch (t & KEEL_TAG_MASK) {
  case KEEL_TAG_SMALL:
    put_small(e, keel_small_value(t));
    return KEEL_OK;
  case KEEL_TAG_CONS:
    return put_list(e, t);
  case KEEL_TAG_BOXED:
    return t == KEEL_NONE ? KEEL_EBADARG : put_boxed(e, t);
  default:
    break;
  }
  switch (t & KEEL_IMM_MASK) {
  case KEEL_IMM_ATOM:
    put_atom(e, t);
    return KEEL_OK;
  case KEEL_IMM_NIL:
    put_u8(e, KEEL_ETF_NIL);
    return KEEL_OK;
  case KEEL_IMM_PID:
    put_pid(e, keel__local_node, keel_pid_local_number(t),
            keel__local_creation);
    return KEEL_OK;
  default:
    return KEEL_EBADARG;
  }
}

/* The next term to encode from the top frame (which is popped when done). */
static keel_term next_term(enc *e) {
  enc_frame *f = &e->stack[e->sp - 1];
  keel_term x;
  switch (f->kind) {
  case FR_ARRAY:
    x = f->arr[f->i++];
    if (f->i == f->n)
      e->sp--;
    return x;
  case FR_MAP: {
    size_t k = f->i++;
    x = (k & 1) ? f->arr[f->n + k / 2] : f->arr[k / 2];
    if (f->i == 2 * f->n)
      e->sp--;
    return x;
  }
  default: {
    const uint64_t *cell = keel__cons_ptr(f->cur);
    x = cell[0];
    if (keel_is_cons(cell[1]))
      f->cur = cell[1];
    else {
      f->arr = &cell[1];
      f->i = 0;
      f->n = 1;
      f->kind = FR_ARRAY;
    }
    return x;
  }
  }
}

static int walk(enc *e, keel_term t) {
  e->stack = e->inline_stack;
  e->sp = 0;
  e->scap = sizeof e->inline_stack / sizeof e->inline_stack[0];
  int rc = put_term(e, t);
  while (rc == KEEL_OK && e->sp > 0)
    rc = put_term(e, next_term(e));
  if (e->stack != e->inline_stack)
    free(e->stack);
  return rc;
}

long long keel_etf_size(keel_term t) {
  enc e = {.out = NULL, .n = 0, .minor = 2};
  int rc = walk(&e, t);
  return rc < 0 ? rc : (long long)e.n;
}

/* Replaces the uncompressed encoding at out->data[start..] by tag 80 and a
 * zlib stream when that is shorter, as term_to_binary(T, [compressed]). */
static int compress_tail(keel_buf *out, size_t start, int level) {
  size_t size = out->len - start - 1; /* without the version byte */
  if (size > UINT32_MAX)
    return KEEL_OK;
  uLongf zlen = compressBound((uLong)size);
  uint8_t *z = malloc(zlen);
  if (z == NULL)
    return KEEL_ENOMEM;
  int zrc = compress2(z, &zlen, out->data + start + 1, (uLong)size, level);
  if (zrc == Z_OK && 5 + (size_t)zlen < size) {
    uint8_t *p = out->data + start + 1;
    p[0] = KEEL_ETF_COMPRESSED;
    keel__put_be32(p + 1, (uint32_t)size);
    memcpy(p + 5, z, zlen);
    out->len = start + 6 + zlen;
  }
  free(z);
  return zrc == Z_MEM_ERROR ? KEEL_ENOMEM : KEEL_OK;
}

int keel_etf_encode(keel_buf *out, keel_term t,
                    const keel_etf_encode_opts *opts) {
  if (out == NULL)
    return KEEL_EINVAL;
  int minor = opts != NULL && opts->minor_version == 1 ? 1 : 2;
  int level = opts != NULL ? opts->compressed : 0;
  if (level < 0 || level > 9)
    return KEEL_EINVAL;
  size_t start = out->len;
  if (keel_buf_reserve(out, 256) != KEEL_OK)
    return KEEL_ENOMEM;
  out->data[start] = KEEL_ETF_VERSION;
  enc e = {.out = out->data + start + 1,
           .n = 0,
           .minor = minor,
           .buf = out,
           .start = start + 1};
  e.cap = out->cap - e.start;
  int rc = walk(&e, t);
  if (rc < 0) {
    out->len = start;
    return rc;
  }
  out->len = start + 1 + e.n;
  if (level > 0) {
    rc = compress_tail(out, start, level);
    if (rc < 0)
      out->len = start;
  }
  return rc;
}
