/*
 * ets_update.c - update_counter and update_element: read, modify and
 * replace one object under its key's write lock, so concurrent updates
 * never lose an increment.
 *
 * Counters are int64: an element or increment outside int64, or a result
 * that overflows, gives KEEL_ESYSLIMIT and leaves the object unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "tables/ets_internal.h"

/* One parsed counter op. */
typedef struct cop {
  size_t pos; /* 1-based */
  int64_t incr;
  bool thr;
  int64_t threshold, setval;
} cop;

static int get_i64(keel_term t, int64_t *v) {
  int rc = keel_get_int64(t, v);
  return rc == KEEL_ERANGE ? KEEL_ESYSLIMIT : rc;
}

static int parse_op(keel_term op, unsigned keypos, cop *c) {
  memset(c, 0, sizeof *c);
  if (keel_is_integer(op)) {
    c->pos = keypos + 1;
    return get_i64(op, &c->incr);
  }
  if (!keel_is_tuple(op))
    return KEEL_EBADARG;
  size_t n = keel_tuple_arity(op);
  if (n != 2 && n != 4)
    return KEEL_EBADARG;
  keel_term p = keel_tuple_get(op, 0);
  if (!keel_is_small(p) || keel_small_value(p) < 1)
    return KEEL_EBADARG;
  c->pos = (size_t)keel_small_value(p);
  int rc = get_i64(keel_tuple_get(op, 1), &c->incr);
  if (rc == KEEL_OK && n == 4) {
    c->thr = true;
    rc = get_i64(keel_tuple_get(op, 2), &c->threshold);
    if (rc == KEEL_OK)
      rc = get_i64(keel_tuple_get(op, 3), &c->setval);
  }
  return rc;
}

/* Parses ops into *cv: stack[0..cap) when they fit, else a malloc'd
 * array; *many: ops was a list. */
static int parse_ops(keel_term ops, unsigned keypos, cop *stack, size_t cap,
                     cop **cv, size_t *n, bool *many) {
  *many = keel_is_list(ops);
  size_t len = 1;
  if (*many && keel_list_length(ops, &len) != KEEL_OK)
    return KEEL_EBADARG;
  *cv = len <= cap ? stack : malloc(len * sizeof **cv);
  if (*cv == NULL)
    return KEEL_ENOMEM;
  *n = len;
  keel_term l = ops;
  for (size_t i = 0; i < len; i++) {
    keel_term op = *many ? keel_hd(l) : ops;
    if (*many && keel_is_integer(op))
      return KEEL_EBADARG; /* lists hold tuples only */
    int rc = parse_op(op, keypos, &(*cv)[i]);
    if (rc != KEEL_OK)
      return rc;
    if (*many)
      l = keel_tl(l);
  }
  return KEEL_OK;
}

/* The object to update: the stored one, or dflt with its key set to key
 * (built in tmp). */
static int base_object(const keel__ets_table *t, const ets_vec *g,
                       keel_term key, keel_term dflt, keel_heap *tmp,
                       keel_term *out) {
  if (g->n > 0) {
    *out = keel__ets_obj_term(g->v[0]);
    return KEEL_OK;
  }
  if (dflt == KEEL_NONE)
    return KEEL_ENOENT;
  if (!keel_is_tuple(dflt) || keel_tuple_arity(dflt) < t->keypos)
    return KEEL_EBADARG;
  keel_term *el;
  size_t n = keel_tuple_arity(dflt);
  keel_term c = keel_tuple_new(tmp, n, &el);
  if (c == KEEL_NONE)
    return KEEL_ENOMEM;
  memcpy(el, keel_tuple_elems(dflt), n * sizeof *el);
  el[t->keypos - 1] = key;
  *out = c;
  return KEEL_OK;
}

/* A mutable copy of tuple o's element array in tmp. */
static keel_term dup_tuple(keel_heap *tmp, keel_term o, keel_term **el) {
  size_t n = keel_tuple_arity(o);
  keel_term c = keel_tuple_new(tmp, n, el);
  if (c != KEEL_NONE)
    memcpy(*el, keel_tuple_elems(o), n * sizeof **el);
  return c;
}

/* Stores nt (built in tmp) as the only object of its key. */
static int replace(keel__ets_table *t, keel_term key, uint64_t h,
                   keel_term nt) {
  keel__ets_obj *o = keel__ets_obj_new(nt, t->keypos, keel__ets_hashed(t));
  if (o == NULL)
    return KEEL_ENOMEM;
  o->hash = h;
  ets_vec removed;
  keel__ets_vec_init(&removed);
  int rc = keel__ets_group_set(t, key, h, &o, 1, &removed);
  if (rc != KEEL_OK)
    keel__ets_obj_free(o);
  keel__ets_free_removed(t, &removed, NULL, 0);
  return rc;
}

static int apply_op(const cop *c, keel_term *el, size_t arity, unsigned keypos,
                    keel_heap *tmp, int64_t *res) {
  if (c->pos > arity || c->pos == keypos)
    return KEEL_EBADARG;
  int64_t v;
  int rc = keel_get_int64(el[c->pos - 1], &v);
  if (rc != KEEL_OK)
    return rc == KEEL_ERANGE ? KEEL_ESYSLIMIT : KEEL_EBADARG;
  int64_t r;
  if (__builtin_add_overflow(v, c->incr, &r))
    return KEEL_ESYSLIMIT;
  if (c->thr &&
      ((c->incr >= 0 && r > c->threshold) || (c->incr < 0 && r < c->threshold)))
    r = c->setval;
  keel_term rt = keel_int(tmp, r);
  if (rt == KEEL_NONE)
    return KEEL_ENOMEM;
  el[c->pos - 1] = rt;
  *res = r;
  return KEEL_OK;
}

typedef struct upd {
  keel_term key, dflt;
  const cop *ops;
  size_t nops;
  int64_t *res;
  keel_term spec; /* update_element */
} upd;

#define ELEMS_STACK 16

/* Stores the counters: in place when the object exists and every new
 * value is an immediate (no allocation, no size change; readers are kept
 * out by the write lock), else as a new object. */
static int counter_store(keel__ets_table *t, uint64_t h, upd *u,
                         const ets_vec *g, keel_term *el, size_t n,
                         keel_heap *tmp) {
  bool inplace = g->n > 0;
  for (size_t i = 0; i < u->nops && inplace; i++)
    inplace = keel_is_small(el[u->ops[i].pos - 1]);
  if (inplace) {
    keel_term *dst =
        (keel_term *)(uintptr_t)keel_tuple_elems(keel__ets_obj_term(g->v[0]));
    for (size_t i = 0; i < u->nops; i++) /* (lock-free readers) */
      ETS_ST(&dst[u->ops[i].pos - 1], el[u->ops[i].pos - 1]);
    if (keel__ets_hashed(t))
      keel__ets_obj_changed(t, g->v[0]);
    return KEEL_OK;
  }
  keel_term nt = keel_tuple_from(tmp, n, el);
  return nt == KEEL_NONE ? KEEL_ENOMEM : replace(t, u->key, h, nt);
}

static int counter_locked(keel__ets_table *t, uint64_t h, upd *u) {
  ets_vec g;
  keel__ets_vec_init(&g);
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term base, sbuf[ELEMS_STACK], *el = sbuf;
  size_t n = 0;
  int rc = keel__ets_group_get(t, u->key, h, &g);
  if (rc == KEEL_OK)
    rc = base_object(t, &g, u->key, u->dflt, &tmp, &base);
  if (rc == KEEL_OK) {
    n = keel_tuple_arity(base);
    el = n <= ELEMS_STACK ? sbuf : malloc(n * sizeof *el);
    rc = el == NULL ? KEEL_ENOMEM : KEEL_OK;
  }
  if (rc == KEEL_OK)
    memcpy(el, keel_tuple_elems(base), n * sizeof *el);
  for (size_t i = 0; i < u->nops && rc == KEEL_OK; i++)
    rc = apply_op(&u->ops[i], el, n, t->keypos, &tmp, &u->res[i]);
  if (rc == KEEL_OK)
    rc = counter_store(t, h, u, &g, el, n, &tmp);
  if (el != sbuf)
    free(el);
  keel_heap_destroy(&tmp);
  keel__ets_vec_free(&g);
  return rc;
}

/* Pins tab, checks write access and the type, runs fn under the key's
 * write lock. */
static int locked_update(keel_ets_tab tab, keel_term key,
                         int (*fn)(keel__ets_table *, uint64_t, upd *),
                         upd *u) {
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__ets_check(t, true);
  if (rc == KEEL_OK && t->type != KEEL_ETS_SET &&
      t->type != KEEL_ETS_ORDERED_SET)
    rc = KEEL_EBADARG;
  if (rc == KEEL_OK) {
    uint64_t h = keel__ets_hashed(t) ? keel__ets_hash(key) : 0;
    keel__ets_wrlock(t, h);
    rc = fn(t, h, u);
    keel__ets_wrunlock(t, h);
  }
  keel__ets_release(tab);
  return rc;
}

static int build_results(const int64_t *res, size_t n, bool many, keel_heap *hp,
                         keel_term *out) {
  if (!many) {
    *out = keel_int(hp, res[0]);
    return *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  keel_term l = KEEL_NIL;
  for (size_t i = n; i-- > 0 && l != KEEL_NONE;) {
    keel_term v = keel_int(hp, res[i]);
    l = v == KEEL_NONE ? KEEL_NONE : keel_cons(hp, v, l);
  }
  *out = l;
  return l == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
}

#define OPS_STACK 8

/* update_counter(Key, Incr) on a set whose object is a flat tuple with a
 * small integer after the key and a small result: added in place under
 * the stripe's write lock. 1 when done (*out set), 0 to take the general
 * path (nothing changed). */
static int counter_fast(keel__ets_table *t, keel_term key, keel_term incr,
                        keel_term *out) {
  uint64_t h = keel__ets_hash(key);
  keel__ets_wrlock(t, h);
  uint64_t *copy;
  size_t nw, pos = t->keypos + 1; /* data[] index of element keypos + 1 */
  keel__ets_obj *o = keel__ets_set_head(t, key, h, &copy, &nw);
  if (o != NULL) { /* known from its line alone */
    int64_t v;
    int done = 0;
    if (pos < nw && keel_is_small(copy[pos]) &&
        !__builtin_add_overflow(keel_small_value(copy[pos]),
                                keel_small_value(incr), &v) &&
        v >= KEEL_SMALL_MIN && v <= KEEL_SMALL_MAX) {
      ETS_ST(&o->data[pos], keel_small(v)); /* (lock-free readers) */
      ETS_ST(&copy[pos], keel_small(v));
      *out = keel_small(v);
      done = 1;
    }
    keel__ets_wrunlock(t, h);
    return done;
  }
  o = keel__ets_hash_find(t, key, h);
  int done = 0;
  if (o != NULL && o->flat) {
    keel_term obj = keel__ets_obj_term(o);
    keel_term *el = (keel_term *)(uintptr_t)keel_tuple_elems(obj);
    size_t ep = t->keypos; /* 0-based index of element keypos + 1 */
    int64_t v;
    if (ep < keel_tuple_arity(obj) && keel_is_small(el[ep]) &&
        !__builtin_add_overflow(keel_small_value(el[ep]),
                                keel_small_value(incr), &v) &&
        v >= KEEL_SMALL_MIN && v <= KEEL_SMALL_MAX) {
      ETS_ST(&el[ep], keel_small(v)); /* (lock-free readers) */
      keel__ets_obj_changed(t, o);
      *out = keel_small(v);
      done = 1;
    }
  }
  keel__ets_wrunlock(t, h);
  return done;
}

int keel_ets_update_counter(keel_ets_tab tab, keel_term key, keel_term ops,
                            keel_term dflt, keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  if (key == KEEL_NONE || ops == KEEL_NONE)
    return KEEL_EBADARG;
  keel__ets_table *t;
  keel__ets_reader *r;
  int rc;
  /* The in-place fast path runs in a read section instead of a pin. */
  if (keel_is_small(ops) &&
      (rc = keel__ets_section_enter(tab, &r, &t)) != KEEL_ENOMEM) {
    if (rc != KEEL_OK)
      return rc;
    bool done = t->type == KEEL_ETS_SET &&
                keel__ets_check(t, true) == KEEL_OK &&
                counter_fast(t, key, ops, out);
    keel__ets_read_exit(r);
    if (done)
      return KEEL_OK;
  }
  rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__ets_check(t, true);
  if (rc == KEEL_OK && t->type != KEEL_ETS_SET &&
      t->type != KEEL_ETS_ORDERED_SET)
    rc = KEEL_EBADARG;
  cop stack[OPS_STACK], *cv = stack;
  int64_t rstack[OPS_STACK], *res = rstack;
  size_t n = 0;
  bool many = false;
  if (rc == KEEL_OK)
    rc = parse_ops(ops, t->keypos, stack, OPS_STACK, &cv, &n, &many);
  if (rc == KEEL_OK && n > OPS_STACK) {
    res = calloc(n, sizeof *res);
    rc = res == NULL ? KEEL_ENOMEM : KEEL_OK;
  }
  if (rc == KEEL_OK) {
    upd u = {.key = key, .dflt = dflt, .ops = cv, .nops = n, .res = res};
    uint64_t hh = keel__ets_hashed(t) ? keel__ets_hash(key) : 0;
    keel__ets_wrlock(t, hh);
    rc = counter_locked(t, hh, &u);
    keel__ets_wrunlock(t, hh);
  }
  keel__ets_release(tab);
  if (rc == KEEL_OK)
    rc = build_results(res, n, many, h, out);
  if (cv != stack)
    free(cv);
  if (res != rstack)
    free(res);
  return rc;
}

/* ---- update_element ---- */

static int elem_apply(keel_term spec, keel_term *el, size_t arity,
                      unsigned keypos) {
  if (!keel_is_tuple(spec) || keel_tuple_arity(spec) != 2)
    return KEEL_EBADARG;
  keel_term p = keel_tuple_get(spec, 0);
  if (!keel_is_small(p) || keel_small_value(p) < 1 ||
      (uint64_t)keel_small_value(p) > arity ||
      (uint64_t)keel_small_value(p) == keypos)
    return KEEL_EBADARG;
  el[keel_small_value(p) - 1] = keel_tuple_get(spec, 1);
  return KEEL_OK;
}

static int element_locked(keel__ets_table *t, uint64_t h, upd *u) {
  ets_vec g;
  keel__ets_vec_init(&g);
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term base, *el = NULL, nt = KEEL_NONE;
  int rc = keel__ets_group_get(t, u->key, h, &g);
  if (rc == KEEL_OK && g.n == 0 && u->dflt == KEEL_NONE)
    rc = 1; /* missing: nothing to do, result 0 */
  if (rc == KEEL_OK)
    rc = base_object(t, &g, u->key, u->dflt, &tmp, &base);
  if (rc == KEEL_OK) {
    nt = dup_tuple(&tmp, base, &el);
    rc = nt == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  size_t arity = rc == KEEL_OK ? keel_tuple_arity(nt) : 0;
  if (rc == KEEL_OK && keel_is_list(u->spec)) {
    for (keel_term l = u->spec; rc == KEEL_OK && keel_is_cons(l);
         l = keel_tl(l))
      rc = elem_apply(keel_hd(l), el, arity, t->keypos);
  } else if (rc == KEEL_OK) {
    rc = elem_apply(u->spec, el, arity, t->keypos);
  }
  if (rc == KEEL_OK)
    rc = replace(t, u->key, h, nt);
  keel_heap_destroy(&tmp);
  keel__ets_vec_free(&g);
  return rc;
}

int keel_ets_update_element(keel_ets_tab tab, keel_term key, keel_term spec,
                            keel_term dflt) {
  size_t len;
  if (key == KEEL_NONE || spec == KEEL_NONE)
    return KEEL_EBADARG;
  if (keel_is_list(spec) && keel_list_length(spec, &len) != KEEL_OK)
    return KEEL_EBADARG;
  upd u = {.key = key, .dflt = dflt, .spec = spec};
  int rc = locked_update(tab, key, element_locked, &u);
  if (rc == 1)
    return 0;
  return rc == KEEL_OK ? 1 : rc;
}
