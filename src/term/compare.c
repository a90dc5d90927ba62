/*
 * compare.c - Erlang's term order, equality and a stable hash.
 *
 * One iterative comparator serves keel_cmp (==-order, numbers by value),
 * keel_eq_exact and the map-key order (=:=-order, all integers before all
 * floats). Compound terms push a frame describing the children still to
 * compare; nothing recurses on the C stack.
 *
 * Orders that are not obvious (checked against OTP 25):
 *   pids   serial, then number, then node name, then creation
 *   ports  node name, then creation, then number
 *   refs   node name, then creation, then the id words from the most
 *          significant one; missing high words count as zero
 *   funs   module, then function name, then arity
 *   maps   size, then keys in map-key order, then values in key order
 * Resources sort among references, after all of them, by address.
 * 0.0 and -0.0 are equal, as in OTP 25 and 26.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "term/term_internal.h"

/* Rank of a type in term order; integers and floats share one rank unless
 * the comparison is exact. */
static int rank(keel_type ty, bool exact) {
  switch (ty) {
  case KEEL_T_INTEGER:
    return 0;
  case KEEL_T_FLOAT:
    return exact ? 1 : 0;
  case KEEL_T_RESOURCE:
    return (int)KEEL_T_REF;
  default:
    return (int)ty;
  }
}

static int cmp_u64(uint64_t a, uint64_t b) {
  return (a > b) - (a < b);
}

/* ---- numbers ----------------------------------------------------------- */

static int cmp_magnitude(const uint64_t *a, size_t na, const uint64_t *b,
                         size_t nb) {
  while (na > 0 && a[na - 1] == 0)
    na--;
  while (nb > 0 && b[nb - 1] == 0)
    nb--;
  if (na != nb)
    return na < nb ? -1 : 1;
  for (size_t i = na; i-- > 0;)
    if (a[i] != b[i])
      return a[i] < b[i] ? -1 : 1;
  return 0;
}

static int cmp_signed(bool na, const uint64_t *a, size_t la, bool nb,
                      const uint64_t *b, size_t lb) {
  int mag = cmp_magnitude(a, la, b, lb);
  if (na != nb && !(mag == 0 && cmp_magnitude(a, la, NULL, 0) == 0))
    return na ? -1 : 1; /* different signs, not both zero */
  return na ? -mag : mag;
}

static int cmp_ints(keel_term a, keel_term b) {
  if (keel_is_small(a) && keel_is_small(b)) {
    int64_t x = keel_small_value(a), y = keel_small_value(b);
    return (x > y) - (x < y);
  }
  bool na, nb;
  const uint64_t *la, *lb;
  size_t ca, cb;
  uint64_t sa, sb;
  keel_integer_limbs(a, &na, &la, &ca, &sa);
  keel_integer_limbs(b, &nb, &lb, &cb, &sb);
  return cmp_signed(na, la, ca, nb, lb, cb);
}

/* floor(f) as sign and magnitude limbs (a double's integer part needs at
 * most 1024 bits). */
static size_t floor_limbs(double f, bool *neg, uint64_t limbs[17]) {
  double fl = floor(f);
  *neg = fl < 0;
  double mag = fabs(fl);
  memset(limbs, 0, 17 * sizeof *limbs);
  if (mag == 0)
    return 0;
  int e;
  double m = frexp(mag, &e); /* mag = m * 2^e, m in [0.5, 1) */
  uint64_t mant = (uint64_t)ldexp(m, 53);
  int shift = e - 53;
  if (shift <= 0) {
    limbs[0] = mant >> -shift;
    return 1;
  }
  size_t w = (size_t)shift / 64, b = (size_t)shift % 64;
  limbs[w] = mant << b;
  if (b != 0)
    limbs[w + 1] = mant >> (64 - b);
  return w + 2;
}

/* Exact comparison of an integer with a float. */
static int cmp_int_float(keel_term i, double f) {
  if (keel_is_small(i)) {
    int64_t v = keel_small_value(i);
    if (v > -(INT64_C(1) << 53) && v < (INT64_C(1) << 53)) {
      double d = (double)v;
      return (d > f) - (d < f);
    }
  }
  bool fneg, ineg;
  uint64_t fl[17], scratch;
  size_t nf = floor_limbs(f, &fneg, fl);
  const uint64_t *il;
  size_t ni;
  keel_integer_limbs(i, &ineg, &il, &ni, &scratch);
  int c = cmp_signed(ineg, il, ni, fneg, fl, nf);
  if (c != 0)
    return c;
  return floor(f) < f ? -1 : 0; /* i == floor(f) <= f */
}

static int cmp_numbers(keel_term a, keel_term b) {
  bool ia = keel_is_integer(a), ib = keel_is_integer(b);
  if (ia && ib)
    return cmp_ints(a, b);
  if (!ia && !ib) {
    double x = keel__float_value(a), y = keel__float_value(b);
    return (x > y) - (x < y);
  }
  return ia ? cmp_int_float(a, keel__float_value(b))
            : -cmp_int_float(b, keel__float_value(a));
}

/* ---- leaves ------------------------------------------------------------ */

static int cmp_atoms(keel_term a, keel_term b) {
  if (a == b)
    return 0;
  size_t la, lb;
  const char *sa = keel_atom_name(a, &la), *sb = keel_atom_name(b, &lb);
  int c = memcmp(sa, sb, la < lb ? la : lb);
  if (c != 0)
    return c < 0 ? -1 : 1;
  return cmp_u64(la, lb);
}

static int cmp_node(keel_term na, uint32_t ca, keel_term nb, uint32_t cb) {
  int c = cmp_atoms(na, nb);
  return c != 0 ? c : cmp_u64(ca, cb);
}

static int cmp_pids(keel_term a, keel_term b) {
  keel_pid_parts x, y;
  keel_pid_get(a, &x);
  keel_pid_get(b, &y);
  int c = cmp_u64(x.serial, y.serial);
  if (c == 0)
    c = cmp_u64(x.id, y.id);
  return c != 0 ? c : cmp_node(x.node, x.creation, y.node, y.creation);
}

static int cmp_ports(keel_term a, keel_term b) {
  keel_port_parts x, y;
  keel_port_get(a, &x);
  keel_port_get(b, &y);
  int c = cmp_node(x.node, x.creation, y.node, y.creation);
  return c != 0 ? c : cmp_u64(x.id, y.id);
}

/* Number of significant id words (trailing zero words dropped). */
static size_t ref_len(const keel_ref_parts *r) {
  size_t n = r->len;
  while (n > 1 && r->id[n - 1] == 0)
    n--;
  return n;
}

static int cmp_refs(keel_term a, keel_term b) {
  bool ra = keel_is_resource(a), rb = keel_is_resource(b);
  if (ra || rb) {
    if (ra && rb)
      return cmp_u64((uintptr_t)keel_resource_get(a),
                     (uintptr_t)keel_resource_get(b));
    return ra ? 1 : -1;
  }
  keel_ref_parts x, y;
  keel_ref_get(a, &x);
  keel_ref_get(b, &y);
  int c = cmp_node(x.node, x.creation, y.node, y.creation);
  if (c != 0)
    return c;
  size_t nx = ref_len(&x), ny = ref_len(&y);
  if (nx != ny)
    return nx < ny ? -1 : 1;
  for (size_t i = nx; i-- > 0;)
    if (x.id[i] != y.id[i])
      return x.id[i] < y.id[i] ? -1 : 1;
  return 0;
}

static int cmp_funs(keel_term a, keel_term b) {
  keel_term ma, fa, mb, fb;
  uint8_t aa, ab;
  keel_fun_get(a, &ma, &fa, &aa);
  keel_fun_get(b, &mb, &fb, &ab);
  int c = cmp_atoms(ma, mb);
  if (c == 0)
    c = cmp_atoms(fa, fb);
  return c != 0 ? c : cmp_u64(aa, ab);
}

static int cmp_bits(keel_term a, keel_term b) {
  size_t la, lb;
  const uint8_t *pa = keel_binary_data(a, &la), *pb = keel_binary_data(b, &lb);
  size_t ba = keel_bitstring_bits(a), bb = keel_bitstring_bits(b);
  size_t common = ba < bb ? ba : bb;
  int c = memcmp(pa, pb, common / 8);
  if (c != 0)
    return c < 0 ? -1 : 1;
  unsigned rest = (unsigned)(common % 8);
  if (rest != 0) {
    unsigned mask = (0xffu << (8 - rest)) & 0xffu;
    unsigned x = pa[common / 8] & mask, y = pb[common / 8] & mask;
    if (x != y)
      return x < y ? -1 : 1;
  }
  return cmp_u64(ba, bb);
}

/* ---- the iterative walk ------------------------------------------------ */

enum { FR_SEQ, FR_LIST };

typedef struct frame {
  const keel_term *a, *b; /* FR_SEQ: remaining elements */
  size_t n;
  keel_term la, lb; /* FR_LIST: remaining list cells */
  uint8_t kind;
  uint8_t exact;
} frame;

typedef struct walk {
  frame *fr;
  size_t len, cap;
  frame inline_fr[32];
  bool oom;
} walk;

static void push(walk *w, frame f) {
  if (w->len == w->cap) {
    size_t cap = w->cap * 2;
    frame *n = w->fr == w->inline_fr ? malloc(cap * sizeof *n)
                                     : realloc(w->fr, cap * sizeof *n);
    if (n == NULL) {
      w->oom = true;
      return;
    }
    if (w->fr == w->inline_fr)
      memcpy(n, w->inline_fr, sizeof w->inline_fr);
    w->fr = n;
    w->cap = cap;
  }
  w->fr[w->len++] = f;
}

static void push_seq(walk *w, const keel_term *a, const keel_term *b, size_t n,
                     bool exact) {
  if (n > 0)
    push(w, (frame){.a = a, .b = b, .n = n, .kind = FR_SEQ, .exact = exact});
}

static int cmp_leaf(keel_type ty, keel_term a, keel_term b, bool exact) {
  switch (ty) {
  case KEEL_T_INTEGER:
  case KEEL_T_FLOAT:
    return exact && keel_is_integer(a) != keel_is_integer(b)
               ? (keel_is_integer(a) ? -1 : 1)
               : cmp_numbers(a, b);
  case KEEL_T_ATOM:
    return cmp_atoms(a, b);
  case KEEL_T_REF:
  case KEEL_T_RESOURCE:
    return cmp_refs(a, b);
  case KEEL_T_FUN:
    return cmp_funs(a, b);
  case KEEL_T_PORT:
    return cmp_ports(a, b);
  case KEEL_T_PID:
    return cmp_pids(a, b);
  case KEEL_T_BINARY:
    return cmp_bits(a, b);
  default:
    return 0; /* nil; KEEL_NONE */
  }
}

/* Compares the top level of a and b; pushes their children when the top
 * levels are equal. */
static int cmp_step(walk *w, keel_term a, keel_term b, bool exact) {
  if (a == b)
    return 0;
  keel_type ta = keel_type_of(a), tb = keel_type_of(b);
  int ra = rank(ta, exact), rb = rank(tb, exact);
  if (ra != rb)
    return ra < rb ? -1 : 1;
  switch (ta) {
  case KEEL_T_TUPLE: {
    size_t na = keel_tuple_arity(a), nb = keel_tuple_arity(b);
    if (na != nb)
      return na < nb ? -1 : 1;
    push_seq(w, keel_tuple_elems(a), keel_tuple_elems(b), na, exact);
    return 0;
  }
  case KEEL_T_MAP: {
    size_t na = keel_map_size(a), nb = keel_map_size(b);
    if (na != nb)
      return na < nb ? -1 : 1;
    push_seq(w, keel__map_values(a), keel__map_values(b), na, exact);
    push_seq(w, keel__map_keys(a), keel__map_keys(b), na, true);
    return 0;
  }
  case KEEL_T_LIST:
    push(w, (frame){.la = a, .lb = b, .kind = FR_LIST, .exact = exact});
    return 0;
  default:
    return cmp_leaf(ta, a, b, exact);
  }
}

/* Next pair to compare from the frame stack; false when none is left. */
static bool next_pair(walk *w, keel_term *a, keel_term *b, bool *exact) {
  while (w->len > 0) {
    frame *f = &w->fr[w->len - 1];
    *exact = f->exact;
    if (f->kind == FR_SEQ) {
      *a = *f->a++;
      *b = *f->b++;
      if (--f->n == 0)
        w->len--;
      return true;
    }
    if (keel_is_cons(f->la) && keel_is_cons(f->lb)) {
      *a = keel_hd(f->la);
      *b = keel_hd(f->lb);
      f->la = keel_tl(f->la);
      f->lb = keel_tl(f->lb);
      if (f->la == f->lb) /* shared tail */
        w->len--;
      return true;
    }
    *a = f->la; /* tails: at least one is not a cons cell */
    *b = f->lb;
    w->len--;
    return true;
  }
  return false;
}

static int compare(keel_term a, keel_term b, bool exact) {
  walk w;
  w.fr = w.inline_fr;
  w.len = 0;
  w.cap = sizeof w.inline_fr / sizeof w.inline_fr[0];
  w.oom = false;
  int c = 0;
  do {
    c = cmp_step(&w, a, b, exact);
  } while (c == 0 && !w.oom && next_pair(&w, &a, &b, &exact));
  if (w.fr != w.inline_fr)
    free(w.fr);
  /* On out-of-memory the frame stack cannot grow; report "greater" so
   * callers at least see inequality rather than a false match. */
  return w.oom && c == 0 ? 1 : c;
}

int keel_cmp(keel_term a, keel_term b) {
  return compare(a, b, false);
}

bool keel_eq(keel_term a, keel_term b) {
  return a == b || compare(a, b, false) == 0;
}

/* Whether a and b are references with the same words (KEEL_REF_WORDS, the
 * unused ids zero): equal then, whatever compare would walk. */
static bool same_ref_words(keel_term a, keel_term b) {
  if (keel__box_type(a) != KEEL_BOX_REF || keel__box_type(b) != KEEL_BOX_REF)
    return false;
  return memcmp(keel__box(a), keel__box(b),
                KEEL_REF_WORDS * sizeof(uint64_t)) == 0;
}

bool keel_eq_exact(keel_term a, keel_term b) {
  return a == b || same_ref_words(a, b) || compare(a, b, true) == 0;
}

int keel__map_key_cmp(keel_term a, keel_term b) {
  if (a == b)
    return 0;
  if (keel_is_atom(a) && keel_is_atom(b)) /* the usual keys */
    return cmp_atoms(a, b);
  return compare(a, b, true);
}

/* ---- hashing ----------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + UINT64_C(0x9e3779b97f4a7c15) + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= UINT64_C(0xbf58476d1ce4e5b9);
  h ^= h >> 29;
  return h;
}

static uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    h = mix(h, v);
  }
  uint64_t tail = 0;
  for (size_t k = 0; i < n; i++, k++)
    tail |= (uint64_t)p[i] << (8 * k);
  return mix(h, tail ^ ((uint64_t)n << 56));
}

static uint64_t hash_integer(uint64_t h, keel_term t) {
  if (keel_is_small(t))
    return mix(mix(h, 1), (uint64_t)keel_small_value(t));
  bool neg;
  const uint64_t *limbs;
  size_t n;
  uint64_t scratch;
  keel_integer_limbs(t, &neg, &limbs, &n, &scratch);
  h = mix(h, neg ? 2 : 3);
  for (size_t i = 0; i < n; i++)
    h = mix(h, limbs[i]);
  return h;
}

static uint64_t hash_leaf(uint64_t h, keel_term t, keel_type ty) {
  switch (ty) {
  case KEEL_T_INTEGER:
    return hash_integer(h, t);
  case KEEL_T_FLOAT: {
    double d = keel__float_value(t);
    uint64_t bits;
    if (d == 0)
      d = 0.0; /* -0.0 == 0.0 */
    memcpy(&bits, &d, sizeof bits);
    return mix(mix(h, 4), bits);
  }
  case KEEL_T_ATOM:
    return mix(mix(h, 5), keel__atom_hash(t));
  case KEEL_T_REF: {
    keel_ref_parts r;
    keel_ref_get(t, &r);
    h = mix(mix(mix(h, 6), keel__atom_hash(r.node)), r.creation);
    for (size_t i = 0, n = ref_len(&r); i < n; i++)
      h = mix(h, r.id[i]);
    return h;
  }
  case KEEL_T_RESOURCE:
    return mix(mix(h, 7), (uintptr_t)keel_resource_get(t));
  case KEEL_T_FUN: {
    keel_term m, f;
    uint8_t arity;
    keel_fun_get(t, &m, &f, &arity);
    return mix(mix(mix(mix(h, 8), keel__atom_hash(m)), keel__atom_hash(f)),
               arity);
  }
  case KEEL_T_PORT: {
    keel_port_parts p;
    keel_port_get(t, &p);
    return mix(mix(mix(mix(h, 9), keel__atom_hash(p.node)), p.creation), p.id);
  }
  case KEEL_T_PID: {
    keel_pid_parts p;
    keel_pid_get(t, &p);
    h = mix(mix(mix(h, 10), keel__atom_hash(p.node)), p.creation);
    return mix(h, (uint64_t)p.serial << 32 | p.id);
  }
  case KEEL_T_BINARY: {
    size_t len;
    const uint8_t *p = keel_binary_data(t, &len);
    return hash_bytes(mix(mix(h, 11), keel_bitstring_bits(t)), p, len);
  }
  case KEEL_T_NIL:
    return mix(h, 12);
  default:
    return mix(h, 0);
  }
}

typedef struct hstack {
  keel_term *t;
  size_t len, cap;
  keel_term inline_t[64];
} hstack;

static bool hpush(hstack *s, keel_term t) {
  if (s->len == s->cap) {
    size_t cap = s->cap * 2;
    keel_term *n = s->t == s->inline_t ? malloc(cap * sizeof *n)
                                       : realloc(s->t, cap * sizeof *n);
    if (n == NULL)
      return false;
    if (s->t == s->inline_t)
      memcpy(n, s->inline_t, sizeof s->inline_t);
    s->t = n;
    s->cap = cap;
  }
  s->t[s->len++] = t;
  return true;
}

/* Pushes elems in reverse so that they are hashed in order. */
static bool hpush_all(hstack *s, const keel_term *elems, size_t n) {
  for (size_t i = n; i-- > 0;)
    if (!hpush(s, elems[i]))
      return false;
  return true;
}

static bool hash_step(hstack *s, uint64_t *h, keel_term t) {
  keel_type ty = keel_type_of(t);
  switch (ty) {
  case KEEL_T_TUPLE:
    *h = mix(mix(*h, 13), keel_tuple_arity(t));
    return hpush_all(s, keel_tuple_elems(t), keel_tuple_arity(t));
  case KEEL_T_MAP: {
    size_t n = keel_map_size(t);
    *h = mix(mix(*h, 14), n);
    return hpush_all(s, keel__map_values(t), n) &&
           hpush_all(s, keel__map_keys(t), n);
  }
  case KEEL_T_LIST:
    *h = mix(*h, 15);
    return hpush(s, keel_tl(t)) && hpush(s, keel_hd(t));
  default:
    *h = hash_leaf(*h, t, ty);
    return true;
  }
}

uint64_t keel_hash(keel_term t) {
  hstack s;
  s.t = s.inline_t;
  s.len = 0;
  s.cap = sizeof s.inline_t / sizeof s.inline_t[0];
  uint64_t h = UINT64_C(0x2545f4914f6cdd1d);
  bool ok = hash_step(&s, &h, t);
  while (ok && s.len > 0)
    ok = hash_step(&s, &h, s.t[--s.len]);
  if (s.t != s.inline_t)
    free(s.t);
  return h;
}
