/* Property test: random operation sequences (fixed seeds) on set and
 * ordered_set tables, checked after every step against a reference model:
 * a plain array of objects searched linearly, with keys compared by =:=
 * for set and by keel_cmp == 0 for ordered_set (so 1 and 1.0 collide
 * there). The model keeps ordered_set's array sorted with keel_cmp, so
 * tab2list and first/next/prev/last are checked against it exactly. */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/ets.h"

#define MAXN 4096

typedef struct model {
  keel_term obj[MAXN]; /* {Key, Int} */
  size_t n;
  bool ordered;
} model;

static uint64_t rng;
static unsigned domain = 12; /* distinct key values */
static int check_every = 25;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static keel_term key_of(keel_term o) {
  return keel_tuple_get(o, 0);
}

static bool same_key(const model *m, keel_term a, keel_term b) {
  return m->ordered ? keel_cmp(a, b) == 0 : keel_eq_exact(a, b);
}

static int find(const model *m, keel_term k) {
  for (size_t i = 0; i < m->n; i++)
    if (same_key(m, key_of(m->obj[i]), k))
      return (int)i;
  return -1;
}

static void m_remove(model *m, int i) {
  memmove(m->obj + i, m->obj + i + 1, (m->n - (size_t)i - 1) * sizeof *m->obj);
  m->n--;
}

static void m_insert(model *m, keel_term o) {
  int i = find(m, key_of(o));
  if (i >= 0) {
    m->obj[i] = o;
    return;
  }
  size_t at = m->n;
  if (m->ordered)
    for (at = 0; at < m->n && keel_cmp(key_of(m->obj[at]), key_of(o)) < 0;)
      at++;
  memmove(m->obj + at + 1, m->obj + at, (m->n - at) * sizeof *m->obj);
  m->obj[at] = o;
  m->n++;
}

/* A key from a small domain mixing integers, equal floats and atoms. */
static keel_term rkey(keel_heap *h) {
  uint64_t r = rnd();
  unsigned v = (unsigned)(r >> 8) % domain;
  switch (r % 4) {
  case 0:
  case 1:
    return keel_small(v);
  case 2:
    return keel_float(h, (double)v);
  default: {
    char name[2] = {(char)('a' + v % 26), 0};
    return keel_atom(name);
  }
  }
}

static bool list_is_model_set(keel_term l, const model *m) {
  bool used[MAXN] = {false};
  size_t n = 0;
  for (; keel_is_cons(l); l = keel_tl(l), n++) {
    size_t i = 0;
    while (i < m->n && (used[i] || !keel_eq_exact(m->obj[i], keel_hd(l))))
      i++;
    if (i == m->n)
      return false;
    used[i] = true;
  }
  return n == m->n;
}

static bool list_is_model_seq(keel_term l, const model *m) {
  size_t i = 0;
  for (; keel_is_cons(l); l = keel_tl(l), i++)
    if (i >= m->n || !keel_eq_exact(m->obj[i], keel_hd(l)))
      return false;
  return i == m->n;
}

static void check_all(keel_ets_tab t, const model *m, keel_heap *h) {
  keel_term l;
  cr_assert_eq(keel_ets_tab2list(t, h, &l), KEEL_OK);
  if (m->ordered)
    cr_assert(list_is_model_seq(l, m));
  else
    cr_assert(list_is_model_set(l, m));
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.size, m->n);
  if (!m->ordered)
    return;
  /* walk forward and backward */
  keel_term k;
  size_t i = 0;
  for (int rc = keel_ets_first(t, h, &k); rc == 1;
       rc = keel_ets_next(t, k, h, &k), i++)
    cr_assert(i < m->n && keel_eq_exact(k, key_of(m->obj[i])));
  cr_assert_eq(i, m->n);
  for (int rc = keel_ets_last(t, h, &k); rc == 1;
       rc = keel_ets_prev(t, k, h, &k), i--)
    cr_assert(i > 0 && keel_eq_exact(k, key_of(m->obj[i - 1])));
  cr_assert_eq(i, 0);
}

static void step(keel_ets_tab t, model *m, keel_heap *h) {
  keel_term k = rkey(h), r;
  int64_t v = (int64_t)(rnd() % 100);
  keel_term o = keel_build(h, "{~t, ~L}", k, (long long)v);
  int i = find(m, k);
  switch (rnd() % 8) {
  case 0:
    cr_assert_eq(keel_ets_insert(t, o), KEEL_OK);
    m_insert(m, o);
    break;
  case 1: {
    int rc = keel_ets_insert_new(t, o);
    cr_assert_eq(rc, i < 0 ? 1 : 0);
    if (i < 0)
      m_insert(m, o);
    break;
  }
  case 2:
    cr_assert_eq(keel_ets_delete_key(t, k), KEEL_OK);
    if (i >= 0)
      m_remove(m, i);
    break;
  case 3:
    cr_assert_eq(keel_ets_take(t, k, h, &r), KEEL_OK);
    cr_assert(
        keel_eq_exact(r, i < 0 ? KEEL_NIL : keel_cons(h, m->obj[i], KEEL_NIL)));
    if (i >= 0)
      m_remove(m, i);
    break;
  case 4: {
    int rc = keel_ets_update_counter(t, k, keel_small(v), KEEL_NONE, h, &r);
    if (i < 0) {
      cr_assert_eq(rc, KEEL_ENOENT);
      break;
    }
    cr_assert_eq(rc, KEEL_OK);
    int64_t nv = keel_small_value(keel_tuple_get(m->obj[i], 1)) + v;
    cr_assert_eq(r, keel_small(nv));
    m->obj[i] = keel_build(h, "{~t, ~L}", key_of(m->obj[i]), (long long)nv);
    break;
  }
  case 5:
    /* delete_object with the stored object, or a different value */
    if (i >= 0 && rnd() % 2)
      o = m->obj[i];
    cr_assert_eq(keel_ets_delete_object(t, o), KEEL_OK);
    if (i >= 0 && keel_eq_exact(m->obj[i], o))
      m_remove(m, i);
    break;
  case 6:
    cr_assert_eq(keel_ets_member(t, k), i >= 0 ? 1 : 0);
    break;
  default:
    cr_assert_eq(keel_ets_lookup(t, k, h, &r), KEEL_OK);
    cr_assert(
        keel_eq_exact(r, i < 0 ? KEEL_NIL : keel_cons(h, m->obj[i], KEEL_NIL)));
    break;
  }
}

static void run(keel_ets_type type, int steps) {
  static const uint64_t seeds[] = {1, 2, 3, 42, 4711, 99991};
  for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
    rng = seeds[s] * 0x9E3779B97F4A7C15ull | 1;
    keel_heap h;
    keel_heap_init(&h);
    keel_ets_opts o = {.type = type};
    keel_ets_tab t;
    cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
    model m = {.ordered = type == KEEL_ETS_ORDERED_SET};
    for (int i = 0; i < steps; i++) {
      step(t, &m, &h);
      if (i % check_every == 0)
        check_all(t, &m, &h);
    }
    check_all(t, &m, &h);
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
    keel_heap_destroy(&h);
  }
}

Test(prop, set_matches_model) {
  run(KEEL_ETS_SET, 3000);
}

Test(prop, ordered_set_matches_model) {
  run(KEEL_ETS_ORDERED_SET, 3000);
}

/* Many keys: the ordered store splits and drops chunks, the hashed one
 * grows its stripes. */
Test(prop, large_tables_match_model) {
  domain = 400;
  check_every = 500;
  run(KEEL_ETS_ORDERED_SET, 8000);
  run(KEEL_ETS_SET, 8000);
}
