/*
 * demo.c - random terms and codec round-trips for the demo node.
 */
#include "demo.h"

#include <stdbool.h>
#include <stddef.h>

#include "keel/buf.h"
#include "keel/etf.h"
#include "keel/json.h"
#include "keel/term.h"

#define DEMO_MAX_DEPTH 4
#define DEMO_MAX_LEN 8

/* Atoms are drawn from a fixed set so that the atom table never grows. */
static const char *const demo_atoms[] = {"ok",   "error", "undefined", "node",
                                         "demo", "keel",  "héllo"};

static uint64_t rnd(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static size_t rnd_below(uint64_t *s, size_t n) {
  return (size_t)(rnd(s) % n);
}

/* Random bytes: up to 100, so both heap and shared binaries occur. */
static keel_term rnd_binary(keel_heap *h, uint64_t *s, bool text) {
  uint8_t bytes[100];
  size_t n = rnd_below(s, sizeof bytes + 1);
  for (size_t i = 0; i < n; i++)
    bytes[i] = text ? (uint8_t)('a' + rnd_below(s, 26)) : (uint8_t)rnd(s);
  return keel_binary(h, bytes, n);
}

static keel_term rnd_bigint(keel_heap *h, uint64_t *s) {
  uint64_t limbs[3] = {rnd(s), rnd(s), rnd(s)};
  return keel_bigint(h, rnd(s) & 1, limbs, 1 + rnd_below(s, 3));
}

static keel_term rnd_scalar(keel_heap *h, uint64_t *s) {
  switch (rnd_below(s, 6)) {
  case 0:
    return keel_int(h, (int64_t)rnd(s) >> rnd_below(s, 64));
  case 1:
    return rnd_bigint(h, s);
  case 2:
    return keel_float(h, (double)(int64_t)rnd(s) / 1e6);
  case 3:
    return keel_atom(demo_atoms[rnd_below(s, 7)]);
  case 4:
    return rnd_binary(h, s, false);
  default:
    return keel_string(h, "keel");
  }
}

/* A random term of at most `depth` levels of tuples, lists and maps. */
static keel_term rnd_term(keel_heap *h, uint64_t *s, int depth) {
  size_t kind = depth > 0 ? rnd_below(s, 5) : 0;
  if (kind < 2)
    return rnd_scalar(h, s);
  keel_term a[DEMO_MAX_LEN], b[DEMO_MAX_LEN];
  size_t n = rnd_below(s, DEMO_MAX_LEN + 1);
  for (size_t i = 0; i < n; i++) {
    a[i] = rnd_term(h, s, depth - 1);
    b[i] = rnd_term(h, s, depth - 1);
  }
  if (kind == 2)
    return keel_tuple_from(h, n, a);
  if (kind == 3)
    return keel_list_from(h, n, a);
  return keel_map_from(h, n, a, b);
}

static keel_term rnd_json_scalar(keel_heap *h, uint64_t *s) {
  static const char *const lits[] = {"true", "false", "null"};
  switch (rnd_below(s, 4)) {
  case 0:
    return keel_int(h, (int64_t)rnd(s) >> rnd_below(s, 64));
  case 1: /* a fraction, so the JSON text always reads back as a float */
    return keel_float(h, (double)(int32_t)rnd(s) + 0.5);
  case 2:
    return keel_atom(lits[rnd_below(s, 3)]);
  default:
    return rnd_binary(h, s, true);
  }
}

/* A random term JSON represents exactly: maps with binary keys, lists,
 * integers, floats, UTF-8 binaries and true/false/null. */
static keel_term rnd_json(keel_heap *h, uint64_t *s, int depth) {
  size_t kind = depth > 0 ? rnd_below(s, 4) : 0;
  if (kind < 2)
    return rnd_json_scalar(h, s);
  keel_term a[DEMO_MAX_LEN], b[DEMO_MAX_LEN];
  size_t n = rnd_below(s, DEMO_MAX_LEN + 1);
  for (size_t i = 0; i < n; i++) {
    a[i] = rnd_binary(h, s, true);
    b[i] = rnd_json(h, s, depth - 1);
  }
  return kind == 2 ? keel_list_from(h, n, b) : keel_map_from(h, n, a, b);
}

/* Encodes and decodes t with one codec; checks exact equality. */
static int check_etf(keel_term t) {
  keel_heap h;
  keel_buf b;
  keel_heap_init(&h);
  keel_buf_init(&b);
  keel_term back = KEEL_NONE;
  int rc = keel_etf_encode(&b, t, NULL);
  if (rc == KEEL_OK)
    rc = keel_etf_decode(&h, b.data, b.len, NULL, &back, NULL);
  if (rc == KEEL_OK && !keel_eq_exact(t, back))
    rc = KEEL_ENOMATCH;
  keel_buf_free(&b);
  keel_heap_destroy(&h);
  return rc;
}

static int check_json(keel_term t) {
  keel_heap h;
  keel_buf b;
  keel_heap_init(&h);
  keel_buf_init(&b);
  keel_term back = KEEL_NONE;
  int rc = keel_json_encode(&b, t, NULL);
  if (rc == KEEL_OK)
    rc = keel_json_decode(&h, (const char *)b.data, b.len, &back);
  if (rc == KEEL_OK && !keel_eq_exact(t, back))
    rc = KEEL_ENOMATCH;
  keel_buf_free(&b);
  keel_heap_destroy(&h);
  return rc;
}

int keel_demo_roundtrip(uint64_t *rng, const char **what) {
  keel_heap h;
  keel_heap_init(&h);
  int rc = KEEL_ENOMEM;
  *what = "ETF";
  keel_term t = rnd_term(&h, rng, DEMO_MAX_DEPTH);
  if (t != KEEL_NONE)
    rc = check_etf(t);
  if (rc == KEEL_OK) {
    *what = "JSON";
    t = rnd_json(&h, rng, DEMO_MAX_DEPTH);
    rc = t == KEEL_NONE ? KEEL_ENOMEM : check_json(t);
  }
  keel_heap_destroy(&h);
  return rc;
}
