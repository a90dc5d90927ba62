/*
 * ets_elems.c - by element: keel_ets_lookup_elements (some elements of a
 * key's objects, copied straight from the store into the caller's heap
 * under the key's read lock: no copy of whole objects, no scratch heap;
 * a set's immediate key is read without locks, as lookup/2 reads it) and
 * keel_ets_delete_by_element (one pass over the key's objects).
 */
#include "tables/ets_internal.h"

/* Words of a flat object the lock-free path copies at most. */
#define ELEMS_PEEK 32

/* {E_pos, ..., E_pos+n-1} of the object o, built in hp; KEEL_NONE on
 * out-of-memory, KEEL_NIL (never a tuple) when o is too short. */
static keel_term project(const keel__ets_obj *o, size_t pos, size_t n,
                         keel_heap *hp) {
  keel_term ot = keel__ets_obj_term(o);
  if (!keel_is_tuple(ot) || keel_tuple_arity(ot) < pos - 1 + n)
    return KEEL_NIL;
  keel_term *e;
  keel_term r = keel_tuple_new(hp, n, &e);
  if (r == KEEL_NONE)
    return KEEL_NONE;
  const keel_term *src = keel_tuple_elems(ot) + (pos - 1);
  for (size_t i = 0; i < n; i++) /* immediates as they are */
    e[i] = keel_is_boxed(src[i]) || keel_is_cons(src[i]) ? KEEL_NIL : src[i];
  for (size_t i = 0; i < n; i++)
    if (e[i] != src[i] && (e[i] = keel_term_copy(hp, src[i])) == KEEL_NONE)
      return KEEL_NONE;
  return r;
}

/* Conses the projection of o onto *l; KEEL_OK or a negative error. */
static int cons_projection(const keel__ets_obj *o, size_t pos, size_t n,
                           keel_heap *hp, keel_term *l) {
  keel_term p = project(o, pos, n, hp);
  if (p == KEEL_NIL)
    return KEEL_EBADARG;
  keel_term c = p == KEEL_NONE ? KEEL_NONE : keel_cons(hp, p, *l);
  if (c == KEEL_NONE)
    return KEEL_ENOMEM;
  *l = c;
  return KEEL_OK;
}

/* The key's lock held for reading. */
static int elements_locked(keel__ets_table *t, keel_term key, uint64_t h,
                           size_t pos, size_t n, keel_heap *hp,
                           keel_term *out) {
  keel_term l = KEEL_NIL;
  int rc = KEEL_OK;
  if (t->type == KEEL_ETS_SET) {
    keel__ets_obj *o = keel__ets_hash_find(t, key, h);
    if (o != NULL)
      rc = cons_projection(o, pos, n, hp, &l);
  } else {
    ets_vec g;
    keel__ets_vec_init(&g);
    rc = keel__ets_group_get(t, key, h, &g);
    for (size_t i = g.n; rc == KEEL_OK && i-- > 0;)
      rc = cons_projection(g.v[i], pos, n, hp, &l);
    keel__ets_vec_free(&g);
  }
  if (rc == KEEL_OK)
    *out = l;
  return rc;
}

/* The projection, as a one-element list in hp, of the flat tuple a
 * lock-free read copied to buf[0..words) (header and immediates). */
static int project_words(const uint64_t *buf, size_t words, size_t pos,
                         size_t n, keel_heap *hp, keel_term *out) {
  if (words - 1 < pos - 1 + n) /* its arity */
    return KEEL_EBADARG;
  keel_term *e;
  keel_term r = keel_tuple_new(hp, n, &e);
  if (r == KEEL_NONE)
    return KEEL_ENOMEM;
  for (size_t i = 0; i < n; i++)
    e[i] = (keel_term)buf[pos + i]; /* element pos + i is buf[pos + i] */
  keel_term l = keel_cons(hp, r, KEEL_NIL);
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = l;
  return KEEL_OK;
}

/* A set's immediate key without locks (in a read section, as lookup/2):
 * KEEL_OK or an error with *out set or final, 1 to take the locked path
 * (no reader record, a busy stripe, an object that is not flat). */
static int elements_peek(keel_ets_tab tab, keel_term key, size_t pos, size_t n,
                         keel_heap *h, keel_term *out) {
  if (keel_is_boxed(key) || keel_is_cons(key))
    return 1;
  keel__ets_reader *r;
  keel__ets_table *t;
  int rc = keel__ets_section_enter(tab, &r, &t);
  if (rc == KEEL_ENOMEM)
    return 1;
  if (rc != KEEL_OK)
    return rc;
  uint64_t buf[ELEMS_PEEK];
  size_t words = 0;
  int found = 1;
  rc = t->type != KEEL_ETS_SET ? 1 : keel__ets_check(t, false);
  if (rc == KEEL_OK)
    found = keel__ets_set_peek(t, key, keel__ets_hash(key), buf, ELEMS_PEEK,
                               &words);
  keel__ets_read_exit(r);
  if (rc != KEEL_OK || found < 0)
    return rc != KEEL_OK ? rc : 1;
  if (found == 0) {
    *out = KEEL_NIL;
    return KEEL_OK;
  }
  return project_words(buf, words, pos, n, h, out);
}

int keel_ets_lookup_elements(keel_ets_tab tab, keel_term key, size_t pos,
                             size_t n, keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  if (key == KEEL_NONE || pos == 0 || n == 0 || pos > SIZE_MAX - n)
    return KEEL_EBADARG;
  int rc = elements_peek(tab, key, pos, n, h, out);
  if (rc != 1)
    return rc;
  keel__ets_table *t;
  rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__ets_check(t, false);
  if (rc == KEEL_OK) {
    uint64_t hash = keel__ets_hashed(t) ? keel__ets_hash(key) : 0;
    pthread_rwlock_t *l = keel__ets_key_lock(t, hash);
    pthread_rwlock_rdlock(l);
    rc = elements_locked(t, key, hash, pos, n, h, out);
    pthread_rwlock_unlock(l);
  }
  keel__ets_release(tab);
  return rc;
}

/* The key's lock held for writing: deletes the objects whose element pos
 * is value; returns how many. */
static int64_t delete_locked(keel__ets_table *t, keel_term key, uint64_t h,
                             size_t pos, keel_term value) {
  ets_vec g, keep, removed;
  keel__ets_vec_init(&g);
  keel__ets_vec_init(&keep);
  keel__ets_vec_init(&removed);
  int rc = keel__ets_group_get(t, key, h, &g);
  for (size_t i = 0; i < g.n && rc == KEEL_OK; i++) {
    keel_term ot = keel__ets_obj_term(g.v[i]);
    keel_term e = keel_is_tuple(ot) && keel_tuple_arity(ot) >= pos
                      ? keel_tuple_get(ot, pos - 1)
                      : KEEL_NONE;
    if (e == KEEL_NONE || (e != value && !keel_eq_exact(e, value)))
      rc = keel__ets_vec_push(&keep, g.v[i]);
  }
  int64_t n = (int64_t)(g.n - keep.n);
  if (rc == KEEL_OK && n > 0)
    rc = keel__ets_group_set(t, key, h, keep.v, keep.n, &removed);
  keel__ets_free_removed(t, &removed, keep.v, keep.n);
  keel__ets_vec_free(&keep);
  keel__ets_vec_free(&g);
  return rc == KEEL_OK ? n : rc;
}

int64_t keel_ets_delete_by_element(keel_ets_tab tab, keel_term key, size_t pos,
                                   keel_term value) {
  if (value == KEEL_NONE)
    return KEEL_EINVAL;
  if (key == KEEL_NONE || pos == 0)
    return KEEL_EBADARG;
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  int64_t n = keel__ets_check(t, true);
  if (n == KEEL_OK) {
    uint64_t hash = keel__ets_hashed(t) ? keel__ets_hash(key) : 0;
    keel__ets_wrlock(t, hash);
    n = delete_locked(t, key, hash, pos, value);
    keel__ets_wrunlock(t, hash);
  }
  keel__ets_release(tab);
  return n;
}
