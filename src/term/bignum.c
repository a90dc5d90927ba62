/*
 * bignum.c - integers: small immediates and POSBIG/NEGBIG boxes.
 *
 * A big integer is a sign (the box type) and a magnitude of 64-bit limbs,
 * least significant first. The representation is canonical: no leading zero
 * limbs, and a value within [KEEL_SMALL_MIN, KEEL_SMALL_MAX] is always a
 * small immediate. Equality and hashing (compare.c) rely on this, so every
 * constructor here goes through keel_bigint()'s normalisation.
 *
 * Parsing and formatting work on malloc'd scratch limbs and process digits in
 * chunks of base^k (the largest power of the base that fits a limb): one
 * multiply-add per chunk when parsing, one single-limb division per chunk
 * when formatting. Both are quadratic in the number of limbs, which is fine
 * for the sizes terms carry.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "term/term_internal.h"

typedef unsigned __int128 u128;

static const char DIGITS[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

static bool is_big(keel_term t) {
  unsigned ty = keel__box_type(t);
  return ty == KEEL_BOX_POSBIG || ty == KEEL_BOX_NEGBIG;
}

bool keel_is_integer(keel_term t) {
  return keel_is_small(t) || is_big(t);
}

/* Magnitude of a negative or positive int64 without overflow. */
static uint64_t magnitude64(int64_t v) {
  return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

static keel_term big_box(keel_heap *h, bool negative, const uint64_t *limbs,
                         size_t n) {
  if (n > (SIZE_MAX >> 7))
    return KEEL_NONE;
  uint64_t *p = keel_heap_alloc(h, n + 1);
  if (p == NULL)
    return KEEL_NONE;
  p[0] = keel__hdr(negative ? KEEL_BOX_NEGBIG : KEEL_BOX_POSBIG, n);
  memcpy(p + 1, limbs, n * sizeof *limbs);
  return keel__boxed(p);
}

keel_term keel_bigint(keel_heap *h, bool negative, const uint64_t *limbs,
                      size_t nlimbs) {
  while (nlimbs > 0 && limbs[nlimbs - 1] == 0)
    nlimbs--;
  if (nlimbs == 0)
    return keel_small(0);
  if (nlimbs == 1) {
    uint64_t m = limbs[0];
    if (!negative && m <= (uint64_t)KEEL_SMALL_MAX)
      return keel_small((int64_t)m);
    /* -(m - 1) - 1 avoids negating 2^61 as a signed value. */
    if (negative && m <= (uint64_t)KEEL_SMALL_MAX + 1)
      return keel_small(-(int64_t)(m - 1) - 1);
  }
  return big_box(h, negative, limbs, nlimbs);
}

keel_term keel_int(keel_heap *h, int64_t v) {
  if (v >= KEEL_SMALL_MIN && v <= KEEL_SMALL_MAX)
    return keel_small(v);
  uint64_t m = magnitude64(v);
  return big_box(h, v < 0, &m, 1);
}

keel_term keel_uint(keel_heap *h, uint64_t v) {
  if (v <= (uint64_t)KEEL_SMALL_MAX)
    return keel_small((int64_t)v);
  return big_box(h, false, &v, 1);
}

int keel_integer_limbs(keel_term t, bool *negative, const uint64_t **limbs,
                       size_t *nlimbs, uint64_t *scratch) {
  if (keel_is_small(t)) {
    if (scratch == NULL)
      return KEEL_EINVAL;
    int64_t v = keel_small_value(t);
    *scratch = magnitude64(v);
    *negative = v < 0;
    *limbs = scratch;
    *nlimbs = 1;
    return KEEL_OK;
  }
  if (!is_big(t))
    return KEEL_EBADARG;
  const uint64_t *p = keel__box(t);
  *negative = keel__hdr_type(p[0]) == KEEL_BOX_NEGBIG;
  *limbs = p + 1;
  *nlimbs = keel__hdr_size(p[0]);
  return KEEL_OK;
}

int keel_get_int64(keel_term t, int64_t *out) {
  if (keel_is_small(t)) {
    *out = keel_small_value(t);
    return KEEL_OK;
  }
  if (!is_big(t))
    return KEEL_EBADARG;
  const uint64_t *p = keel__box(t);
  if (keel__hdr_size(p[0]) != 1)
    return KEEL_ERANGE;
  uint64_t m = p[1];
  if (keel__hdr_type(p[0]) == KEEL_BOX_POSBIG) {
    if (m > (uint64_t)INT64_MAX)
      return KEEL_ERANGE;
    *out = (int64_t)m;
  } else {
    if (m > (uint64_t)INT64_MAX + 1)
      return KEEL_ERANGE;
    *out = -(int64_t)(m - 1) - 1;
  }
  return KEEL_OK;
}

int keel_get_uint64(keel_term t, uint64_t *out) {
  if (keel_is_small(t)) {
    int64_t v = keel_small_value(t);
    if (v < 0)
      return KEEL_ERANGE;
    *out = (uint64_t)v;
    return KEEL_OK;
  }
  if (!is_big(t))
    return KEEL_EBADARG;
  const uint64_t *p = keel__box(t);
  if (keel__hdr_type(p[0]) == KEEL_BOX_NEGBIG || keel__hdr_size(p[0]) != 1)
    return KEEL_ERANGE;
  *out = p[1];
  return KEEL_OK;
}

/* Number of significant bits of a normalised magnitude (n >= 1). */
static size_t bit_length(const uint64_t *limbs, size_t n) {
  return 64 * (n - 1) + (size_t)(64 - __builtin_clzll(limbs[n - 1]));
}

/*
 * Correctly rounded conversion (round to nearest, ties to even). The top 64
 * bits are converted by the hardware; any lower non-zero bit is folded into
 * the lowest of those 64 bits as a "sticky" bit, which is far below the
 * rounding position (bit 11) and so decides ties without double rounding.
 */
static double big_to_double(const uint64_t *limbs, size_t n) {
  size_t bits = bit_length(limbs, n);
  if (bits <= 64)
    return (double)limbs[0];
  if (bits > DBL_MAX_EXP + 1)
    return HUGE_VAL;
  size_t sh = bits - 64, q = sh / 64;
  unsigned r = (unsigned)(sh % 64);
  uint64_t top = r == 0 ? limbs[q] : limbs[q] >> r | limbs[q + 1] << (64 - r);
  bool sticky = r != 0 && (limbs[q] & ((UINT64_C(1) << r) - 1)) != 0;
  for (size_t i = 0; i < q && !sticky; i++)
    sticky = limbs[i] != 0;
  return ldexp((double)(top | (uint64_t)sticky), (int)sh);
}

int keel_get_number(keel_term t, double *out) {
  if (keel_is_small(t)) {
    *out = (double)keel_small_value(t);
    return KEEL_OK;
  }
  if (keel__box_type(t) == KEEL_BOX_FLOAT) {
    *out = keel__float_value(t);
    return KEEL_OK;
  }
  if (!is_big(t))
    return KEEL_EBADARG;
  const uint64_t *p = keel__box(t);
  double d = big_to_double(p + 1, keel__hdr_size(p[0]));
  if (isinf(d))
    return KEEL_ERANGE;
  *out = keel__hdr_type(p[0]) == KEEL_BOX_NEGBIG ? -d : d;
  return KEEL_OK;
}

/* ---- parsing ------------------------------------------------------------ */

/* The largest k with base^k <= UINT64_MAX; *power receives base^k. */
static unsigned chunk_digits(unsigned base, uint64_t *power) {
  uint64_t p = base;
  unsigned k = 1;
  while (p <= UINT64_MAX / base) {
    p *= base;
    k++;
  }
  *power = p;
  return k;
}

/* limbs[0..*n) = limbs * mul + add; the caller guarantees room for one more
 * limb. */
static void mul_add(uint64_t *limbs, size_t *n, uint64_t mul, uint64_t add) {
  uint64_t carry = add;
  for (size_t i = 0; i < *n; i++) {
    u128 p = (u128)limbs[i] * mul + carry;
    limbs[i] = (uint64_t)p;
    carry = (uint64_t)(p >> 64);
  }
  if (carry != 0)
    limbs[(*n)++] = carry;
}

static uint64_t chunk_value(const char *s, size_t len, unsigned base) {
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++)
    v = v * base + (unsigned)keel__digit_value((unsigned char)s[i]);
  return v;
}

/* Parses the validated digits s[0..len) (len >= 1) into a term. */
static int parse_digits(keel_heap *h, bool neg, const char *s, size_t len,
                        unsigned base, keel_term *out) {
  uint64_t power;
  unsigned k = chunk_digits(base, &power);
  if (k == 0) /* cannot happen (k >= 1); tells the analyser so */
    return KEEL_EINVAL;
  if (len <= k) {
    uint64_t v = chunk_value(s, len, base);
    *out = keel_bigint(h, neg, &v, 1);
    return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  if (len > SIZE_MAX / 8)
    return KEEL_ENOMEM;
  /* base <= 36 < 2^6, so each digit adds at most 6 bits. */
  size_t cap = len * 6 / 64 + 2;
  uint64_t *limbs = malloc(cap * sizeof *limbs);
  if (limbs == NULL)
    return KEEL_ENOMEM;
  size_t first = (len - 1) % k + 1, n = 0; /* 1..k digits, then k each */
  mul_add(limbs, &n, 0, chunk_value(s, first, base));
  for (size_t i = first; i < len; i += k)
    mul_add(limbs, &n, power, chunk_value(s + i, k, base));
  *out = keel_bigint(h, neg, limbs, n);
  free(limbs);
  return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

int keel_integer_parse(keel_heap *h, const char *s, size_t len, int base,
                       keel_term *out) {
  if (base < 2 || base > 36)
    return KEEL_EINVAL;
  if (s == NULL)
    return len == 0 ? KEEL_EPARSE : KEEL_EINVAL;
  bool neg = false;
  size_t i = 0;
  if (len > 0 && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == len)
    return KEEL_EPARSE;
  for (size_t j = i; j < len; j++)
    if (keel__digit_value((unsigned char)s[j]) >= base)
      return KEEL_EPARSE;
  /* Leading zeros would only cost multiply-adds of zero limbs. */
  while (i + 1 < len && s[i] == '0')
    i++;
  return parse_digits(h, neg, s + i, len - i, (unsigned)base, out);
}

/* ---- formatting --------------------------------------------------------- */

/* Divides limbs[0..*n) by d in place (dropping leading zero limbs) and
 * returns the remainder. */
static uint64_t div_small(uint64_t *limbs, size_t *n, uint64_t d) {
  u128 rem = 0;
  for (size_t i = *n; i-- > 0;) {
    u128 cur = rem << 64 | limbs[i];
    limbs[i] = (uint64_t)(cur / d);
    rem = cur % d;
  }
  while (*n > 0 && limbs[*n - 1] == 0)
    (*n)--;
  return (uint64_t)rem;
}

/* Writes the digits of v, least significant first, into out; returns the
 * count. With pad, writes exactly `pad` digits (leading zeros included). */
static size_t digits_rev(char *out, uint64_t v, unsigned base, unsigned pad) {
  size_t k = 0;
  do {
    out[k++] = DIGITS[v % base];
    v /= base;
  } while (v != 0 || k < pad);
  return k;
}

/* Copies the reversed digits (plus sign) into buf like snprintf and returns
 * the full length, or KEEL_ELIMIT if it does not fit an int. */
static int emit(char *buf, size_t size, bool neg, const char *rev,
                size_t ndigits) {
  size_t total = ndigits + (neg ? 1 : 0);
  if (total > INT_MAX)
    return KEEL_ELIMIT;
  if (size > 0) {
    size_t w = 0, lim = size - 1;
    if (neg && w < lim)
      buf[w++] = '-';
    for (size_t i = ndigits; i-- > 0 && w < lim;)
      buf[w++] = rev[i];
    buf[w] = '\0';
  }
  return (int)total;
}

static int format_big(char *buf, size_t size, bool neg, const uint64_t *limbs,
                      size_t n, unsigned base) {
  uint64_t power;
  unsigned k = chunk_digits(base, &power);
  unsigned log2b = 31 - (unsigned)__builtin_clz(base);
  if (n > SIZE_MAX / 64 / sizeof *limbs)
    return KEEL_ENOMEM;
  size_t cap = n * 64 / log2b + 1 + k;
  uint64_t *work = malloc(n * sizeof *work);
  char *rev = malloc(cap);
  if (work == NULL || rev == NULL) {
    free(work);
    free(rev);
    return KEEL_ENOMEM;
  }
  memcpy(work, limbs, n * sizeof *work);
  size_t nd = 0;
  while (n > 0) {
    uint64_t chunk = div_small(work, &n, power);
    nd += digits_rev(rev + nd, chunk, base, n > 0 ? k : 0);
  }
  int rc = emit(buf, size, neg, rev, nd);
  free(work);
  free(rev);
  return rc;
}

int keel_integer_format(char *buf, size_t size, keel_term t, int base) {
  if (base < 2 || base > 36)
    return KEEL_EINVAL;
  bool neg;
  const uint64_t *limbs;
  size_t n;
  uint64_t scratch;
  if (keel_integer_limbs(t, &neg, &limbs, &n, &scratch) != KEEL_OK)
    return KEEL_EBADARG;
  if (buf == NULL)
    size = 0;
  if (n == 1) {
    char rev[64];
    size_t nd = digits_rev(rev, limbs[0], (unsigned)base, 0);
    return emit(buf, size, neg, rev, nd);
  }
  return format_big(buf, size, neg, limbs, n, (unsigned)base);
}
