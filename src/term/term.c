/*
 * term.c - constructors and accessors for every kind of term except
 * integers (bignum.c).
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include "term/term_internal.h"

keel_type keel_type_of(keel_term t) {
  switch (t & KEEL_TAG_MASK) {
  case KEEL_TAG_SMALL:
    return KEEL_T_INTEGER;
  case KEEL_TAG_CONS:
    return KEEL_T_LIST;
  case KEEL_TAG_IMM:
    switch (t & KEEL_IMM_MASK) {
    case KEEL_IMM_ATOM:
      return KEEL_T_ATOM;
    case KEEL_IMM_NIL:
      return KEEL_T_NIL;
    case KEEL_IMM_PID:
      return KEEL_T_PID;
    default:
      return KEEL_T_NONE;
    }
  default:
    break;
  }
  if (t == KEEL_NONE)
    return KEEL_T_NONE;
  switch (keel__hdr_type(keel__box(t)[0])) {
  case KEEL_BOX_TUPLE:
    return KEEL_T_TUPLE;
  case KEEL_BOX_POSBIG:
  case KEEL_BOX_NEGBIG:
    return KEEL_T_INTEGER;
  case KEEL_BOX_FLOAT:
    return KEEL_T_FLOAT;
  case KEEL_BOX_HEAPBIN:
  case KEEL_BOX_REFCBIN:
    return KEEL_T_BINARY;
  case KEEL_BOX_MAP:
    return KEEL_T_MAP;
  case KEEL_BOX_EXTPID:
    return KEEL_T_PID;
  case KEEL_BOX_PORT:
    return KEEL_T_PORT;
  case KEEL_BOX_REF:
    return KEEL_T_REF;
  case KEEL_BOX_FUN:
    return KEEL_T_FUN;
  case KEEL_BOX_RESOURCE:
    return KEEL_T_RESOURCE;
  default:
    return KEEL_T_NONE;
  }
}

const char *keel_type_name(keel_type ty) {
  static const char *const names[] = {
      [KEEL_T_NONE] = "none",     [KEEL_T_INTEGER] = "integer",
      [KEEL_T_FLOAT] = "float",   [KEEL_T_ATOM] = "atom",
      [KEEL_T_REF] = "reference", [KEEL_T_RESOURCE] = "resource",
      [KEEL_T_FUN] = "fun",       [KEEL_T_PORT] = "port",
      [KEEL_T_PID] = "pid",       [KEEL_T_TUPLE] = "tuple",
      [KEEL_T_MAP] = "map",       [KEEL_T_NIL] = "nil",
      [KEEL_T_LIST] = "list",     [KEEL_T_BINARY] = "bitstring",
  };
  if ((unsigned)ty >= sizeof names / sizeof names[0])
    return "none";
  return names[ty];
}

static bool box_is(keel_term t, unsigned type) {
  return keel__box_type(t) == type;
}

/* ---- floats ------------------------------------------------------------- */

keel_term keel_float(keel_heap *h, double v) {
  if (!isfinite(v))
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, KEEL_FLOAT_WORDS);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_FLOAT, 1);
  memcpy(&p[1], &v, sizeof v);
  return keel__boxed(p);
}

bool keel_is_float(keel_term t) {
  return box_is(t, KEEL_BOX_FLOAT);
}

int keel_get_double(keel_term t, double *out) {
  if (!keel_is_float(t))
    return KEEL_EBADARG;
  *out = keel__float_value(t);
  return KEEL_OK;
}

/* ---- tuples ------------------------------------------------------------- */

keel_term keel_tuple_new(keel_heap *h, size_t arity, keel_term **elems) {
  if (arity > (SIZE_MAX >> 7))
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, 1 + arity);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_TUPLE, arity);
  *elems = p + 1;
  return keel__boxed(p);
}

keel_term keel_tuple_from(keel_heap *h, size_t arity, const keel_term *elems) {
  for (size_t i = 0; i < arity; i++)
    if (elems[i] == KEEL_NONE)
      return KEEL_NONE;
  keel_term *to = NULL;
  keel_term t = keel_tuple_new(h, arity, &to);
  if (t != KEEL_NONE && arity > 0)
    memcpy(to, elems, arity * sizeof *to);
  return t;
}

keel_term keel_tuple(keel_heap *h, size_t arity, ...) {
  keel_term *to = NULL;
  keel_term t = keel_tuple_new(h, arity, &to);
  va_list ap;
  va_start(ap, arity);
  for (size_t i = 0; i < arity; i++) {
    keel_term e = va_arg(ap, keel_term);
    if (e == KEEL_NONE)
      t = KEEL_NONE;
    else if (t != KEEL_NONE)
      to[i] = e;
  }
  va_end(ap);
  return t;
}

bool keel_is_tuple(keel_term t) {
  return box_is(t, KEEL_BOX_TUPLE);
}

size_t keel_tuple_arity(keel_term t) {
  return keel__hdr_size(keel__box(t)[0]);
}

const keel_term *keel_tuple_elems(keel_term t) {
  return keel__box(t) + 1;
}

/* ---- lists -------------------------------------------------------------- */

keel_term keel_cons(keel_heap *h, keel_term head, keel_term tail) {
  if (head == KEEL_NONE || tail == KEEL_NONE)
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, 2);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = head;
  p[1] = tail;
  return keel__cons_term(p);
}

keel_term keel_list_from_tail(keel_heap *h, size_t n, const keel_term *elems,
                              keel_term tail) {
  if (n == 0 || tail == KEEL_NONE)
    return tail;
  for (size_t i = 0; i < n; i++)
    if (elems[i] == KEEL_NONE)
      return KEEL_NONE;
  if (n > SIZE_MAX / 16)
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, 2 * n);
  if (p == NULL)
    return KEEL_NONE;
  for (size_t i = 0; i < n; i++) {
    p[2 * i] = elems[i];
    p[2 * i + 1] = i + 1 < n ? keel__cons_term(&p[2 * i + 2]) : tail;
  }
  return keel__cons_term(p);
}

keel_term keel_list_from(keel_heap *h, size_t n, const keel_term *elems) {
  return keel_list_from_tail(h, n, elems, KEEL_NIL);
}

int keel_list_length(keel_term t, size_t *len) {
  size_t n = 0;
  while (keel_is_cons(t)) {
    n++;
    t = keel_tl(t);
  }
  if (!keel_is_nil(t))
    return KEEL_EBADARG;
  *len = n;
  return KEEL_OK;
}

/* Decodes one code point of valid UTF-8 (validated by the caller). */
static uint32_t utf8_next(const uint8_t **s) {
  const uint8_t *p = *s;
  uint32_t c = p[0];
  size_t k = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
  if (k > 0)
    c &= 0x3fu >> k;
  for (size_t i = 1; i <= k; i++)
    c = (c << 6) | (p[i] & 0x3f);
  *s = p + k + 1;
  return c;
}

keel_term keel_string_n(keel_heap *h, const char *utf8, size_t len) {
  long n = keel__utf8_count((const uint8_t *)utf8, len);
  if (n < 0)
    return KEEL_NONE;
  if (n == 0)
    return KEEL_NIL;
  uint64_t *p = keel_heap_alloc(h, 2 * (size_t)n);
  if (p == NULL)
    return KEEL_NONE;
  const uint8_t *s = (const uint8_t *)utf8;
  for (size_t i = 0; i < (size_t)n; i++) {
    p[2 * i] = keel_small(utf8_next(&s));
    p[2 * i + 1] =
        i + 1 < (size_t)n ? keel__cons_term(&p[2 * i + 2]) : KEEL_NIL;
  }
  return keel__cons_term(p);
}

keel_term keel_string(keel_heap *h, const char *utf8) {
  return utf8 == NULL ? KEEL_NONE : keel_string_n(h, utf8, strlen(utf8));
}

/* ---- binaries ------------------------------------------------------------ */

/* Live reference-counted binaries: how many, and their bytes. */
static _Atomic size_t binobj_count, binobj_bytes;

keel_binobj *keel__binobj_new(size_t size) {
  if (size > SIZE_MAX - sizeof(keel_binobj))
    return NULL;
  keel_binobj *b = malloc(sizeof *b + size);
  if (b == NULL)
    return NULL;
  atomic_init(&b->refc, 1);
  b->size = size;
  atomic_fetch_add_explicit(&binobj_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&binobj_bytes, size, memory_order_relaxed);
  return b;
}

void keel__binobj_release(keel_binobj *b) {
  /* acq_rel: the last owner must see every other owner's accesses before
   * freeing (release by them, acquire here). */
  if (atomic_fetch_sub_explicit(&b->refc, 1, memory_order_acq_rel) == 1) {
    atomic_fetch_sub_explicit(&binobj_count, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&binobj_bytes, b->size, memory_order_relaxed);
    free(b);
  }
}

size_t keel_binary_memory(size_t *count) {
  if (count != NULL)
    *count = atomic_load_explicit(&binobj_count, memory_order_relaxed);
  return atomic_load_explicit(&binobj_bytes, memory_order_relaxed);
}

/* A REFCBIN box that adopts one reference to obj (the caller's). */
static keel_term refcbin_adopt(keel_heap *h, keel_binobj *obj, size_t off,
                               size_t nbits) {
  uint64_t *p = keel_heap_alloc(h, KEEL_REFCBIN_WORDS);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_REFCBIN, nbits);
  p[1] = (uint64_t)(uintptr_t)(obj->data + off);
  p[2] = (uint64_t)(uintptr_t)obj;
  keel__heap_link_offheap(h, p);
  return keel__boxed(p);
}

keel_term keel__refcbin_make(keel_heap *h, keel_binobj *obj, size_t off,
                             size_t nbits) {
  keel_term t = refcbin_adopt(h, obj, off, nbits);
  if (t != KEEL_NONE) /* relaxed: the caller already holds a reference */
    atomic_fetch_add_explicit(&obj->refc, 1, memory_order_relaxed);
  return t;
}

/* A binary of nbits bits with uninitialised contents. */
static keel_term bits_new(keel_heap *h, size_t nbits, uint8_t **data) {
  size_t bytes = (nbits + 7) / 8;
  if (bytes <= KEEL_HEAP_BIN_MAX) {
    uint64_t *p = keel_heap_alloc(h, 1 + (bytes + 7) / 8);
    if (p == NULL)
      return KEEL_NONE;
    p[0] = keel__hdr(KEEL_BOX_HEAPBIN, nbits);
    if (bytes > 0)
      p[(bytes + 7) / 8] = 0; /* padding bytes stay zero */
    *data = (uint8_t *)(p + 1);
    return keel__boxed(p);
  }
  if (bytes > (SIZE_MAX >> 7))
    return KEEL_NONE;
  keel_binobj *obj = keel__binobj_new(bytes);
  if (obj == NULL)
    return KEEL_NONE;
  keel_term t = refcbin_adopt(h, obj, 0, nbits);
  if (t == KEEL_NONE) {
    keel__binobj_release(obj);
    return KEEL_NONE;
  }
  *data = obj->data;
  return t;
}

keel_term keel_binary_new(keel_heap *h, size_t len, uint8_t **data) {
  if (len > (SIZE_MAX >> 7))
    return KEEL_NONE;
  return bits_new(h, len * 8, data);
}

keel_term keel_binary(keel_heap *h, const void *data, size_t len) {
  uint8_t *to;
  keel_term t = keel_binary_new(h, len, &to);
  if (t != KEEL_NONE && len > 0)
    memcpy(to, data, len);
  return t;
}

keel_term keel_bitstring(keel_heap *h, const void *data, size_t nbits) {
  uint8_t *to;
  keel_term t = bits_new(h, nbits, &to);
  size_t bytes = (nbits + 7) / 8;
  if (t == KEEL_NONE || bytes == 0)
    return t;
  memcpy(to, data, bytes);
  if (nbits % 8 != 0)
    to[bytes - 1] &= (uint8_t)(0xffu << (8 - nbits % 8));
  return t;
}

bool keel_is_bitstring(keel_term t) {
  unsigned ty = keel__box_type(t);
  return ty == KEEL_BOX_HEAPBIN || ty == KEEL_BOX_REFCBIN;
}

bool keel_is_binary(keel_term t) {
  return keel_is_bitstring(t) && keel__hdr_size(keel__box(t)[0]) % 8 == 0;
}

const uint8_t *keel_binary_data(keel_term t, size_t *len) {
  const uint64_t *box = keel__box(t);
  if (len != NULL)
    *len = (keel__hdr_size(box[0]) + 7) / 8;
  return keel__bin_bytes(box);
}

size_t keel_bitstring_bits(keel_term t) {
  return keel__hdr_size(keel__box(t)[0]);
}

keel_term keel_sub_binary(keel_heap *h, keel_term bin, size_t off, size_t len) {
  if (!keel_is_binary(bin))
    return KEEL_NONE;
  const uint64_t *box = keel__box(bin);
  size_t size = keel__hdr_size(box[0]) / 8;
  if (off > size || len > size - off)
    return KEEL_NONE;
  if (len <= KEEL_HEAP_BIN_MAX)
    return keel_binary(h, keel__bin_bytes(box) + off, len);
  keel_binobj *obj = (keel_binobj *)(uintptr_t)box[2];
  size_t base = (size_t)(keel__bin_bytes(box) - obj->data);
  return keel__refcbin_make(h, obj, base + off, len * 8);
}

/* ---- maps --------------------------------------------------------------- */

/* Stable merge sort of idx[0..n) by keys, using tmp as scratch. */
static void sort_idx(size_t *idx, size_t *tmp, size_t n,
                     const keel_term *keys) {
  if (n < 2)
    return;
  size_t mid = n / 2;
  sort_idx(idx, tmp, mid, keys);
  sort_idx(idx + mid, tmp, n - mid, keys);
  size_t i = 0, j = mid, k = 0;
  while (i < mid && j < n)
    tmp[k++] =
        keel__map_key_cmp(keys[idx[j]], keys[idx[i]]) < 0 ? idx[j++] : idx[i++];
  while (i < mid)
    tmp[k++] = idx[i++];
  while (j < n)
    tmp[k++] = idx[j++];
  memcpy(idx, tmp, n * sizeof *idx);
}

keel_term keel_map_new(keel_heap *h) {
  uint64_t *p = keel_heap_alloc(h, 1);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_MAP, 0);
  return keel__boxed(p);
}

keel_term keel_map_from(keel_heap *h, size_t n, const keel_term *keys,
                        const keel_term *values) {
  if (n == 0)
    return keel_map_new(h);
  if (n > SIZE_MAX / (2 * sizeof(size_t)))
    return KEEL_NONE;
  for (size_t i = 0; i < n; i++)
    if (keys[i] == KEEL_NONE || values[i] == KEEL_NONE)
      return KEEL_NONE;
  size_t stack_idx[32];
  size_t *idx = n <= 16 ? stack_idx : malloc(2 * n * sizeof *idx);
  if (idx == NULL)
    return KEEL_NONE;
  for (size_t i = 0; i < n; i++)
    idx[i] = i;
  sort_idx(idx, idx + n, n, keys);
  /* Equal keys are adjacent and in input order: keep the last of each. */
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (i + 1 < n && keel__map_key_cmp(keys[idx[i]], keys[idx[i + 1]]) == 0)
      continue;
    idx[m++] = idx[i];
  }
  uint64_t *p = keel_heap_alloc(h, 1 + 2 * m);
  if (p != NULL) {
    p[0] = keel__hdr(KEEL_BOX_MAP, m);
    for (size_t i = 0; i < m; i++) {
      p[1 + i] = keys[idx[i]];
      p[1 + m + i] = values[idx[i]];
    }
  }
  if (idx != stack_idx)
    free(idx);
  return p != NULL ? keel__boxed(p) : KEEL_NONE;
}

bool keel_is_map(keel_term t) {
  return box_is(t, KEEL_BOX_MAP);
}

size_t keel_map_size(keel_term map) {
  return keel__hdr_size(keel__box(map)[0]);
}

/* Index of key, or of where it would be inserted (*found tells which). */
static size_t map_find(keel_term map, keel_term key, bool *found) {
  const keel_term *keys = keel__map_keys(map);
  size_t lo = 0, hi = keel_map_size(map);
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = keel__map_key_cmp(keys[mid], key);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = false;
  return lo;
}

int keel_map_get(keel_term map, keel_term key, keel_term *value) {
  if (!keel_is_map(map))
    return KEEL_EBADARG;
  bool found;
  size_t i = map_find(map, key, &found);
  if (!found)
    return KEEL_ENOENT;
  *value = keel__map_values(map)[i];
  return KEEL_OK;
}

keel_term keel_map_put(keel_heap *h, keel_term map, keel_term key,
                       keel_term value) {
  if (!keel_is_map(map) || key == KEEL_NONE || value == KEEL_NONE)
    return KEEL_NONE;
  bool found;
  size_t at = map_find(map, key, &found);
  size_t n = keel_map_size(map), m = found ? n : n + 1;
  uint64_t *p = keel_heap_alloc(h, 1 + 2 * m);
  if (p == NULL)
    return KEEL_NONE;
  const keel_term *keys = keel__map_keys(map), *vals = keel__map_values(map);
  p[0] = keel__hdr(KEEL_BOX_MAP, m);
  size_t skip = found ? 1 : 0;
  memcpy(p + 1, keys, at * 8);
  memcpy(p + 1 + m, vals, at * 8);
  p[1 + at] = key;
  p[1 + m + at] = value;
  memcpy(p + 2 + at, keys + at + skip, (n - at - skip) * 8);
  memcpy(p + 2 + m + at, vals + at + skip, (n - at - skip) * 8);
  return keel__boxed(p);
}

void keel_map_at(keel_term map, size_t i, keel_term *key, keel_term *value) {
  if (key != NULL)
    *key = keel__map_keys(map)[i];
  if (value != NULL)
    *value = keel__map_values(map)[i];
}

/* ---- pids, refs, ports, funs --------------------------------------------- */

static bool is_local(keel_term node, uint32_t creation) {
  return node == keel__local_node && creation == keel__local_creation;
}

keel_term keel_pid_make(keel_heap *h, const keel_pid_parts *pp) {
  if (!keel_is_atom(pp->node))
    return KEEL_NONE;
  uint64_t number = pp->id | ((uint64_t)pp->serial << 32);
  if (is_local(pp->node, pp->creation) && number <= KEEL_PID_NUMBER_MAX)
    return keel_pid_local(number);
  uint64_t *p = keel_heap_alloc(h, KEEL_EXTPID_WORDS);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_EXTPID, 0);
  p[1] = pp->node;
  p[2] = number;
  p[3] = pp->creation;
  return keel__boxed(p);
}

bool keel_is_pid(keel_term t) {
  return keel_is_local_pid(t) || box_is(t, KEEL_BOX_EXTPID);
}

int keel_pid_get(keel_term t, keel_pid_parts *pp) {
  uint64_t number;
  if (keel_is_local_pid(t)) {
    number = keel_pid_local_number(t);
    pp->node = keel__local_node;
    pp->creation = keel__local_creation;
  } else if (box_is(t, KEEL_BOX_EXTPID)) {
    const uint64_t *p = keel__box(t);
    number = p[2];
    pp->node = p[1];
    pp->creation = (uint32_t)p[3];
  } else {
    return KEEL_EBADARG;
  }
  pp->id = (uint32_t)number;
  pp->serial = (uint32_t)(number >> 32);
  return KEEL_OK;
}

keel_term keel_ref_make(keel_heap *h, const keel_ref_parts *r) {
  if (!keel_is_atom(r->node) || r->len < 1 || r->len > KEEL_REF_MAX_WORDS)
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, KEEL_REF_WORDS);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_REF, r->len);
  p[1] = r->node;
  p[2] = r->creation;
  p[3] = p[4] = p[5] = 0;
  for (uint32_t i = 0; i < r->len; i++)
    p[3 + i / 2] |= (uint64_t)r->id[i] << (32 * (i % 2));
  return keel__boxed(p);
}

bool keel_is_ref(keel_term t) {
  return box_is(t, KEEL_BOX_REF);
}

int keel_ref_get(keel_term t, keel_ref_parts *r) {
  if (!keel_is_ref(t))
    return KEEL_EBADARG;
  const uint64_t *p = keel__box(t);
  r->len = (uint32_t)keel__hdr_size(p[0]);
  r->node = p[1];
  r->creation = (uint32_t)p[2];
  for (uint32_t i = 0; i < KEEL_REF_MAX_WORDS; i++)
    r->id[i] = i < r->len ? (uint32_t)(p[3 + i / 2] >> (32 * (i % 2))) : 0;
  return KEEL_OK;
}

keel_term keel_port_make(keel_heap *h, const keel_port_parts *pp) {
  if (!keel_is_atom(pp->node))
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, KEEL_PORT_WORDS);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_PORT, 0);
  p[1] = pp->node;
  p[2] = pp->id;
  p[3] = pp->creation;
  return keel__boxed(p);
}

bool keel_is_port(keel_term t) {
  return box_is(t, KEEL_BOX_PORT);
}

int keel_port_get(keel_term t, keel_port_parts *pp) {
  if (!keel_is_port(t))
    return KEEL_EBADARG;
  const uint64_t *p = keel__box(t);
  pp->node = p[1];
  pp->id = p[2];
  pp->creation = (uint32_t)p[3];
  return KEEL_OK;
}

keel_term keel_export_fun(keel_heap *h, keel_term module, keel_term function,
                          uint8_t arity) {
  if (!keel_is_atom(module) || !keel_is_atom(function))
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, KEEL_FUN_WORDS);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_FUN, 0);
  p[1] = module;
  p[2] = function;
  p[3] = arity;
  return keel__boxed(p);
}

bool keel_is_fun(keel_term t) {
  return box_is(t, KEEL_BOX_FUN);
}

int keel_fun_get(keel_term t, keel_term *module, keel_term *function,
                 uint8_t *arity) {
  if (!keel_is_fun(t))
    return KEEL_EBADARG;
  const uint64_t *p = keel__box(t);
  *module = p[1];
  *function = p[2];
  *arity = (uint8_t)p[3];
  return KEEL_OK;
}

/* ---- resources ------------------------------------------------------------
 */

keel_resource *keel_resource_new(size_t size, keel_resource_dtor dtor) {
  if (size > SIZE_MAX - sizeof(keel_resource))
    return NULL;
  keel_resource *r = calloc(1, sizeof *r + size);
  if (r == NULL)
    return NULL;
  atomic_init(&r->refc, 1);
  r->dtor = dtor;
  return r;
}

void *keel_resource_data(keel_resource *r) {
  return r->data;
}

void keel_resource_retain(keel_resource *r) {
  /* relaxed: the caller already holds a reference. */
  atomic_fetch_add_explicit(&r->refc, 1, memory_order_relaxed);
}

void keel_resource_release(keel_resource *r) {
  if (r == NULL)
    return;
  /* acq_rel: see keel__binobj_release. */
  if (atomic_fetch_sub_explicit(&r->refc, 1, memory_order_acq_rel) == 1) {
    if (r->dtor != NULL)
      r->dtor(r->data);
    free(r);
  }
}

keel_term keel_resource_term(keel_heap *h, keel_resource *r) {
  if (r == NULL)
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, KEEL_RESOURCE_WORDS);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(KEEL_BOX_RESOURCE, 0);
  p[1] = (uint64_t)(uintptr_t)r;
  keel_resource_retain(r);
  keel__heap_link_offheap(h, p);
  return keel__boxed(p);
}

bool keel_is_resource(keel_term t) {
  return box_is(t, KEEL_BOX_RESOURCE);
}

keel_resource *keel_resource_get(keel_term t) {
  return keel_is_resource(t) ? (keel_resource *)(uintptr_t)keel__box(t)[1]
                             : NULL;
}
