/*
 * ets_ops.c - the object operations of tables: insert, lookup, delete,
 * take, counters, element updates, traversal, tab2list.
 *
 * Every call pins the table (keel__ets_acquire), checks the caller's
 * access, then works under the lock of the key's stripe (or of the
 * ordered store). Objects are copied in before the lock is taken and
 * copied out while it is held. The exceptions: lookup and member hold a
 * read section (ets_rcu.c) instead of a pin, and for an immediate key in
 * a set read without any lock (read_key: the stripe's seqlock), which is
 * why objects that leave a set's store are retired (keel__ets_retire)
 * rather than freed; single inserts into a set and update_counter's
 * in-place path also hold a read section instead of a pin.
 */
#include <stdlib.h>
#include <string.h>

#include "tables/ets_internal.h"

static int enter(keel_ets_tab tab, bool write, keel__ets_table **t) {
  int rc = keel__ets_acquire(tab, t);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__ets_check(*t, write);
  if (rc != KEEL_OK)
    keel__ets_release(tab);
  return rc;
}

static uint64_t key_hash(const keel__ets_table *t, keel_term key) {
  return keel__ets_hashed(t) ? keel__ets_hash(key) : 0;
}

static bool valid_obj(const keel__ets_table *t, keel_term o) {
  return keel_is_tuple(o) && keel_tuple_arity(o) >= t->keypos;
}

/* ---- growable term arrays for results ---- */

typedef struct tvec {
  keel_term *v;
  size_t n, cap;
} tvec;

static int tvec_push(tvec *tv, keel_term x) {
  if (x == KEEL_NONE)
    return KEEL_ENOMEM;
  if (tv->n == tv->cap) {
    size_t cap = tv->cap ? tv->cap * 2 : 16;
    keel_term *v = realloc(tv->v, cap * sizeof *v);
    if (v == NULL)
      return KEEL_ENOMEM;
    tv->v = v;
    tv->cap = cap;
  }
  tv->v[tv->n++] = x;
  return KEEL_OK;
}

static int tvec_list(tvec *tv, keel_heap *hp, keel_term *out) {
  keel_term l = keel_list_from(hp, tv->n, tv->v);
  free(tv->v);
  tv->v = NULL;
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = l;
  return KEEL_OK;
}

/* ---- insert ---- */

/* Copies every object of objs into out; *mask gets their stripes. */
static int prepare(const keel__ets_table *t, keel_term objs, ets_vec *out,
                   uint64_t *mask) {
  keel_term l = objs;
  bool one = keel_is_tuple(objs);
  *mask = 0;
  if (!one && !keel_is_list(objs))
    return KEEL_EBADARG;
  while (one || keel_is_cons(l)) {
    keel_term o = one ? objs : keel_hd(l);
    if (!valid_obj(t, o))
      return KEEL_EBADARG;
    keel__ets_obj *c = keel__ets_obj_new(o, t->keypos, keel__ets_hashed(t));
    if (c == NULL || keel__ets_vec_push(out, c) != KEEL_OK) {
      keel__ets_obj_free(c);
      return KEEL_ENOMEM;
    }
    *mask |= UINT64_C(1) << keel__ets_stripe_of(c->hash);
    if (one)
      return KEEL_OK;
    l = keel_tl(l);
  }
  return keel_is_nil(l) ? KEEL_OK : KEEL_EBADARG;
}

static void free_objs(ets_vec *v) {
  for (size_t i = 0; i < v->n; i++)
    keel__ets_obj_free(v->v[i]);
  keel__ets_vec_free(v);
}

/* Inserts o (write lock held). Objects that leave the store are freed. */
static int insert_locked(keel__ets_table *t, keel__ets_obj *o) {
  ets_vec g, removed;
  keel__ets_vec_init(&g);
  keel__ets_vec_init(&removed);
  int rc = KEEL_OK;
  if ((t->type == KEEL_ETS_BAG || t->type == KEEL_ETS_DUPLICATE_BAG) &&
      keel__ets_hashed(t)) {
    if (!keel__ets_bag_add(t, o, t->type == KEEL_ETS_BAG))
      keel__ets_obj_free(o); /* already there */
    return KEEL_OK;
  }
  if (t->type == KEEL_ETS_BAG || t->type == KEEL_ETS_DUPLICATE_BAG) {
    rc = keel__ets_group_get(t, o->key, o->hash, &g);
    for (size_t i = 0; rc == KEEL_OK && t->type == KEEL_ETS_BAG && i < g.n; i++)
      if (keel_eq_exact(keel__ets_obj_term(g.v[i]), keel__ets_obj_term(o))) {
        keel__ets_vec_free(&g);
        keel__ets_obj_free(o); /* already there */
        return KEEL_OK;
      }
  }
  if (rc == KEEL_OK)
    rc = keel__ets_vec_push(&g, o);
  if (rc == KEEL_OK)
    rc = keel__ets_group_set(t, o->key, o->hash, g.v, g.n, &removed);
  if (rc != KEEL_OK)
    keel__ets_obj_free(o);
  keel__ets_free_removed(t, &removed, g.v, rc == KEEL_OK ? g.n : 0);
  keel__ets_vec_free(&g);
  return rc;
}

/* true when some object of v[0..n) has a key present in t or shared with
 * another object of v (write locks held). */
static bool any_key_taken(keel__ets_table *t, const ets_vec *v) {
  for (size_t i = 0; i < v->n; i++) {
    ets_vec g;
    keel__ets_vec_init(&g);
    int rc = keel__ets_group_get(t, v->v[i]->key, v->v[i]->hash, &g);
    bool taken = rc != KEEL_OK || g.n > 0;
    keel__ets_vec_free(&g);
    for (size_t j = 0; j < i && !taken; j++)
      taken = keel__ets_key_eq(t, v->v[i]->key, v->v[j]->key);
    if (taken)
      return true;
  }
  return false;
}

/* true when obj is a tuple of immediates only (it holds no pointer). */
static bool flat_tuple(keel_term obj, size_t arity) {
  const keel_term *e = keel_tuple_elems(obj);
  for (size_t i = 0; i < arity; i++)
    if ((e[i] & 2u) == 0) /* boxed or cons */
      return false;
  return true;
}

/* insert/2 of one object into a set, under the stripe's write lock: a
 * tuple of immediates replacing a flat object of the same arity is
 * written over it (no allocation); otherwise the object is copied (under
 * the lock when it is such a small tuple, before it otherwise) and put in
 * place with one chain walk, and the replaced one freed after the lock is
 * released. Out of memory inserts nothing. */
static int insert_set_one(keel__ets_table *t, keel_term obj) {
  if (!valid_obj(t, obj))
    return KEEL_EBADARG;
  size_t arity = keel_tuple_arity(obj);
  keel_term key = keel_tuple_get(obj, t->keypos - 1);
  bool flat = flat_tuple(obj, arity);
  uint64_t h = keel__ets_hash(key);
  keel__ets_obj *o = NULL;
  if (flat) { /* small: copied under the lock if need be */
    keel__ets_wrlock(t, h);
    const keel_term *e = keel_tuple_elems(obj);
    uint64_t *copy;
    size_t nw;
    keel__ets_obj *old = keel__ets_set_head(t, key, h, &copy, &nw);
    if (old != NULL && nw == arity + 1) {  /* known from its line alone */
      for (size_t i = 0; i < arity; i++) { /* (lock-free readers) */
        ETS_ST(&old->data[1 + i], e[i]);
        ETS_ST(&copy[1 + i], e[i]);
      }
      keel__ets_wrunlock(t, h);
      return KEEL_OK;
    }
    if (old == NULL)
      old = keel__ets_hash_find(t, key, h);
    if (old != NULL && old->flat && old->words == arity + 1) {
      for (size_t i = 0; i < arity; i++) /* (lock-free readers) */
        ETS_ST(&old->data[1 + i], e[i]);
      keel__ets_obj_changed(t, old);
      keel__ets_wrunlock(t, h);
      return KEEL_OK;
    }
    o = keel__ets_obj_new_flat(obj, arity, t->keypos);
  } else {
    o = keel__ets_obj_new(obj, t->keypos, true);
    keel__ets_wrlock(t, h);
  }
  if (o == NULL) {
    keel__ets_wrunlock(t, h);
    return KEEL_ENOMEM;
  }
  keel__ets_obj *old = keel__ets_set_put(t, o);
  keel__ets_wrunlock(t, h);
  keel__ets_retire(t, old);
  return KEEL_OK;
}

/* insert/2 of one tuple into a set in a read section instead of a pin
 * (no atomic read-modify-write for it): 1 done (*rc set), 0 to take the
 * general path. */
static int insert_fast(keel_ets_tab tab, keel_term obj, int *rc) {
  keel__ets_reader *r;
  keel__ets_table *t;
  *rc = keel__ets_section_enter(tab, &r, &t);
  if (*rc != KEEL_OK)
    return *rc != KEEL_ENOMEM;
  int done = t->type == KEEL_ETS_SET && keel__ets_check(t, true) == KEEL_OK;
  if (done)
    *rc = insert_set_one(t, obj);
  keel__ets_read_exit(r);
  return done;
}

/* insert_new/2 of one object into a set, under the stripe's write lock:
 * one chain walk to see the key is free, then the object (copied under
 * the lock when it is a small tuple of immediates, before it otherwise)
 * put in place. 1 inserted, 0 key taken. */
static int insert_new_set_one(keel__ets_table *t, keel_term obj) {
  if (!valid_obj(t, obj))
    return KEEL_EBADARG;
  size_t arity = keel_tuple_arity(obj);
  keel_term key = keel_tuple_get(obj, t->keypos - 1);
  bool flat = flat_tuple(obj, arity);
  uint64_t h = keel__ets_hash(key);
  keel__ets_obj *o = NULL;
  if (!flat && (o = keel__ets_obj_new(obj, t->keypos, true)) == NULL)
    return KEEL_ENOMEM;
  keel__ets_wrlock(t, h);
  int rc = 1;
  if (keel__ets_hash_find(t, key, h) != NULL)
    rc = 0;
  else if (flat && (o = keel__ets_obj_new_flat(obj, arity, t->keypos)) == NULL)
    rc = KEEL_ENOMEM;
  else
    (void)keel__ets_set_put(t, o); /* the key is free: replaces nothing */
  keel__ets_wrunlock(t, h);
  if (rc != 1)
    keel__ets_obj_free(o);
  return rc;
}

/* insert/2 of one object into a bag or duplicate_bag (hashed): the copy
 * (one memcpy for a tuple of immediates) made before the lock, added
 * under it with one keel__ets_bag_add. */
static int insert_bag_one(keel__ets_table *t, keel_term obj) {
  if (!valid_obj(t, obj))
    return KEEL_EBADARG;
  size_t arity = keel_tuple_arity(obj);
  keel__ets_obj *o = flat_tuple(obj, arity)
                         ? keel__ets_obj_new_flat(obj, arity, t->keypos)
                         : keel__ets_obj_new(obj, t->keypos, true);
  if (o == NULL)
    return KEEL_ENOMEM;
  keel__ets_wrlock(t, o->hash);
  bool added = keel__ets_bag_add(t, o, t->type == KEEL_ETS_BAG);
  keel__ets_wrunlock(t, o->hash);
  if (!added)
    keel__ets_obj_free(o); /* an equal object is there (bag) */
  return KEEL_OK;
}

static int do_insert(keel_ets_tab tab, keel_term objs, bool only_new) {
  keel__ets_table *t;
  int rc;
  if (!only_new && keel_is_tuple(objs) && insert_fast(tab, objs, &rc))
    return rc;
  rc = enter(tab, true, &t);
  if (rc != KEEL_OK)
    return rc;
  if (t->type == KEEL_ETS_SET && keel_is_tuple(objs)) {
    rc = only_new ? insert_new_set_one(t, objs) : insert_set_one(t, objs);
    keel__ets_release(tab);
    return rc;
  }
  if (!only_new && keel_is_tuple(objs) &&
      (t->type == KEEL_ETS_BAG || t->type == KEEL_ETS_DUPLICATE_BAG)) {
    rc = insert_bag_one(t, objs);
    keel__ets_release(tab);
    return rc;
  }
  ets_vec v;
  keel__ets_vec_init(&v);
  uint64_t mask;
  rc = prepare(t, objs, &v, &mask);
  if (rc != KEEL_OK || v.n == 0) {
    free_objs(&v);
    keel__ets_release(tab);
    return rc != KEEL_OK ? rc : (only_new ? 1 : KEEL_OK);
  }
  keel__ets_lock_mask(t, mask);
  if (only_new && any_key_taken(t, &v)) {
    keel__ets_unlock_mask(t, mask);
    free_objs(&v);
    keel__ets_release(tab);
    return 0;
  }
  size_t i = 0;
  for (; i < v.n && rc == KEEL_OK; i++)
    rc = insert_locked(t, v.v[i]);
  keel__ets_unlock_mask(t, mask);
  for (; i < v.n; i++) /* only after an allocation failure */
    keel__ets_obj_free(v.v[i]);
  keel__ets_vec_free(&v);
  keel__ets_release(tab);
  return rc != KEEL_OK ? rc : (only_new ? 1 : KEEL_OK);
}

int keel_ets_insert(keel_ets_tab tab, keel_term objs) {
  return do_insert(tab, objs, false);
}

int keel_ets_insert_new(keel_ets_tab tab, keel_term objs) {
  return do_insert(tab, objs, true);
}

/* ---- reading one key ---- */

/* Runs fn over the objects with key under the key's read lock. */
typedef int (*group_fn)(keel__ets_table *t, ets_vec *g, void *arg);

/* with_group's work on a pinned table t. */
static int group_locked(keel__ets_table *t, keel_term key, bool write,
                        group_fn fn, void *arg) {
  uint64_t h = key_hash(t, key);
  pthread_rwlock_t *l = keel__ets_key_lock(t, h);
  write ? keel__ets_wrlock(t, h) : (void)pthread_rwlock_rdlock(l);
  ets_vec g;
  keel__ets_vec_init(&g);
  int rc = keel__ets_group_get(t, key, h, &g);
  if (rc == KEEL_OK)
    rc = fn(t, &g, arg);
  write ? keel__ets_wrunlock(t, h) : (void)pthread_rwlock_unlock(l);
  keel__ets_vec_free(&g);
  return rc;
}

static int with_group(keel_ets_tab tab, keel_term key, bool write, group_fn fn,
                      void *arg) {
  keel__ets_table *t;
  if (key == KEEL_NONE)
    return KEEL_EBADARG;
  int rc = enter(tab, write, &t);
  if (rc != KEEL_OK)
    return rc;
  rc = group_locked(t, key, write, fn, arg);
  keel__ets_release(tab);
  return rc;
}

/* lookup/2 on a set: the object (if any) copied straight from its chain
 * under the stripe's read lock, no group vector. */
static int lookup_set(keel__ets_table *t, keel_term key, keel_heap *hp,
                      keel_term *out) {
  uint64_t h = keel__ets_hash(key);
  pthread_rwlock_t *l = keel__ets_key_lock(t, h);
  pthread_rwlock_rdlock(l);
  keel__ets_obj *o = keel__ets_hash_find(t, key, h);
  keel_term r = KEEL_NIL;
  if (o != NULL) {
    keel_term c = keel__ets_obj_copy(o, hp);
    r = c == KEEL_NONE ? KEEL_NONE : keel_cons(hp, c, KEEL_NIL);
  }
  pthread_rwlock_unlock(l);
  if (r == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = r;
  return KEEL_OK;
}

typedef struct copy_arg {
  keel_heap *hp;
  keel_term *out;
  keel_term key;
  size_t pos;
  keel_term dflt;
  bool remove;
} copy_arg;

static int copy_group(keel__ets_table *t, ets_vec *g, void *arg) {
  copy_arg *a = arg;
  keel_term l = KEEL_NIL;
  for (size_t i = g->n; i-- > 0 && l != KEEL_NONE;) {
    keel_term c = keel__ets_obj_copy(g->v[i], a->hp);
    l = c == KEEL_NONE ? KEEL_NONE : keel_cons(a->hp, c, l);
  }
  int rc = l == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  if (rc == KEEL_OK)
    *a->out = l;
  if (rc == KEEL_OK && a->remove && g->n > 0) {
    ets_vec removed;
    keel__ets_vec_init(&removed);
    rc = keel__ets_group_set(t, a->key, g->v[0]->hash, NULL, 0, &removed);
    keel__ets_free_removed(t, &removed, NULL, 0);
  }
  return rc;
}

/* Words of an object a lock-free lookup copies through the stack. */
#define PEEK_WORDS 32

/* Whether key is one word equal only to itself (no pointer to follow). */
static bool immediate_key(keel_term key) {
  return !keel_is_boxed(key) && !keel_is_cons(key);
}

static int member_group(keel__ets_table *t, ets_vec *g, void *arg) {
  (void)t;
  (void)arg;
  return g->n > 0 ? 1 : 0;
}

/* The object a lock-free read copied to buf[0..words) (found: 1), as the
 * list lookup/2 returns, in hp. */
static int finish_peek(int found, const uint64_t *buf, size_t words,
                       keel_heap *hp, keel_term *out) {
  keel_term l = KEEL_NIL;
  if (found) {
    uint64_t *w = keel_heap_alloc(hp, words);
    if (w != NULL)
      memcpy(w, buf, words * sizeof *w);
    /* a flat object is a boxed tuple: its term is its header's address */
    l = w == NULL ? KEEL_NONE : keel_cons(hp, (keel_term)(uintptr_t)w, l);
  }
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = l;
  return KEEL_OK;
}

/* lookup/2 (member/2 when out is NULL) on the table t, which the caller
 * keeps alive (a pin or a read section). A set and an immediate key: the
 * lock-free read, then the locks if it gives up. *peeked: how many words
 * of buf the lock-free read filled (the caller copies them to the heap
 * after leaving its section), or -1 when the result is already in *out. */
static int read_key(keel__ets_table *t, keel_term key, keel_heap *hp,
                    keel_term *out, uint64_t *buf, int *peeked) {
  *peeked = -1;
  int rc = keel__ets_check(t, false);
  if (rc != KEEL_OK)
    return rc;
  bool set = t->type == KEEL_ETS_SET;
  if (set && immediate_key(key)) {
    size_t words = 0;
    int found =
        keel__ets_set_peek(t, key, keel__ets_hash(key),
                           out != NULL ? buf : NULL, PEEK_WORDS, &words);
    if (found >= 0 && out == NULL)
      return found;
    if (found >= 0) {
      *peeked = found ? (int)words : 0;
      return KEEL_OK;
    }
  }
  if (out == NULL && keel__ets_hashed(t)) { /* the first object suffices */
    uint64_t h = keel__ets_hash(key);
    pthread_rwlock_t *l = keel__ets_key_lock(t, h);
    pthread_rwlock_rdlock(l);
    rc = keel__ets_hash_find(t, key, h) != NULL;
    pthread_rwlock_unlock(l);
    return rc;
  }
  if (out == NULL)
    return group_locked(t, key, false, member_group, NULL);
  if (set)
    return lookup_set(t, key, hp, out);
  copy_arg a = {.hp = hp, .out = out, .key = key};
  return group_locked(t, key, false, copy_group, &a);
}

/* lookup/2 and member/2: in a read section rather than pinning the table
 * (no atomic read-modify-write at all for a set's immediate key), or
 * pinned when the thread has no reader record. */
static int lookup_any(keel_ets_tab tab, keel_term key, keel_heap *hp,
                      keel_term *out) {
  keel__ets_reader *r;
  keel__ets_table *t;
  uint64_t buf[PEEK_WORDS];
  int peeked;
  int rc = keel__ets_section_enter(tab, &r, &t);
  if (rc == KEEL_OK) {
    rc = read_key(t, key, hp, out, buf, &peeked);
    keel__ets_read_exit(r);
  } else if (rc == KEEL_ENOMEM) {
    rc = enter(tab, false, &t);
    if (rc != KEEL_OK)
      return rc;
    rc = read_key(t, key, hp, out, buf, &peeked);
    keel__ets_release(tab);
  }
  if (rc == KEEL_OK && peeked >= 0)
    rc = finish_peek(peeked > 0, buf, (size_t)peeked, hp, out);
  return rc;
}

int keel_ets_lookup(keel_ets_tab tab, keel_term key, keel_heap *h,
                    keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  if (key == KEEL_NONE)
    return KEEL_EBADARG;
  return lookup_any(tab, key, h, out);
}

int keel_ets_take(keel_ets_tab tab, keel_term key, keel_heap *h,
                  keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  copy_arg a = {.hp = h, .out = out, .key = key, .remove = true};
  return with_group(tab, key, true, copy_group, &a);
}

static int element_group(keel__ets_table *t, ets_vec *g, void *arg) {
  copy_arg *a = arg;
  if (g->n == 0) {
    if (a->dflt == KEEL_NONE)
      return KEEL_ENOENT;
    *a->out = keel_term_copy(a->hp, a->dflt);
    return *a->out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  tvec tv = {0};
  int rc = KEEL_OK;
  for (size_t i = 0; i < g->n && rc == KEEL_OK; i++) {
    keel_term o = keel__ets_obj_term(g->v[i]);
    if (a->pos > keel_tuple_arity(o))
      rc = KEEL_EBADARG;
    else
      rc = tvec_push(&tv, keel_term_copy(a->hp, keel_tuple_get(o, a->pos - 1)));
  }
  if (rc == KEEL_OK &&
      (t->type == KEEL_ETS_SET || t->type == KEEL_ETS_ORDERED_SET)) {
    *a->out = tv.v[0];
    free(tv.v);
    return KEEL_OK;
  }
  if (rc == KEEL_OK)
    return tvec_list(&tv, a->hp, a->out);
  free(tv.v);
  return rc;
}

int keel_ets_lookup_element(keel_ets_tab tab, keel_term key, size_t pos,
                            keel_term dflt, keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  if (pos == 0)
    return KEEL_EBADARG;
  copy_arg a = {.hp = h, .out = out, .key = key, .pos = pos, .dflt = dflt};
  return with_group(tab, key, false, element_group, &a);
}

int keel_ets_member(keel_ets_tab tab, keel_term key) {
  if (key == KEEL_NONE)
    return KEEL_EBADARG;
  return lookup_any(tab, key, NULL, NULL);
}

/* ---- deleting ---- */

static int delete_group(keel__ets_table *t, ets_vec *g, void *arg) {
  keel_term obj = *(keel_term *)arg;
  if (g->n == 0)
    return KEEL_OK;
  ets_vec keep, removed;
  keel__ets_vec_init(&keep);
  keel__ets_vec_init(&removed);
  int rc = KEEL_OK;
  for (size_t i = 0; i < g->n && rc == KEEL_OK; i++)
    if (obj != KEEL_NONE && !keel_eq_exact(keel__ets_obj_term(g->v[i]), obj))
      rc = keel__ets_vec_push(&keep, g->v[i]);
  if (rc == KEEL_OK && keep.n < g->n)
    rc = keel__ets_group_set(t, g->v[0]->key, g->v[0]->hash, keep.v, keep.n,
                             &removed);
  keel__ets_free_removed(t, &removed, keep.v, keep.n);
  keel__ets_vec_free(&keep);
  return rc;
}

int keel_ets_delete_key(keel_ets_tab tab, keel_term key) {
  keel_term none = KEEL_NONE;
  return with_group(tab, key, true, delete_group, &none);
}

int keel_ets_delete_object(keel_ets_tab tab, keel_term obj) {
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  bool ok = valid_obj(t, obj);
  keel_term key = ok ? keel_tuple_get(obj, t->keypos - 1) : KEEL_NONE;
  keel__ets_release(tab);
  if (!ok)
    return KEEL_EBADARG;
  return with_group(tab, key, true, delete_group, &obj);
}

int keel_ets_delete_all_objects(keel_ets_tab tab) {
  keel__ets_table *t;
  int rc = enter(tab, true, &t);
  if (rc != KEEL_OK)
    return rc;
  keel__ets_clear(t);
  keel__ets_release(tab);
  return KEEL_OK;
}

/* ---- traversal ---- */

static int step(keel_ets_tab tab, keel_term from, int dir, keel_heap *h,
                keel_term *out) {
  keel__ets_table *t;
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  int rc = enter(tab, false, &t);
  if (rc != KEEL_OK)
    return rc;
  if (keel__ets_hashed(t))
    dir = 1; /* no order: last/prev are first/next, as in ETS */
  rc = keel__ets_step(t, from, dir, h, out);
  keel__ets_release(tab);
  return rc;
}

int keel_ets_first(keel_ets_tab tab, keel_heap *h, keel_term *out) {
  return step(tab, KEEL_NONE, 1, h, out);
}

int keel_ets_last(keel_ets_tab tab, keel_heap *h, keel_term *out) {
  return step(tab, KEEL_NONE, -1, h, out);
}

int keel_ets_next(keel_ets_tab tab, keel_term key, keel_heap *h,
                  keel_term *out) {
  return key == KEEL_NONE ? KEEL_EBADARG : step(tab, key, 1, h, out);
}

int keel_ets_prev(keel_ets_tab tab, keel_term key, keel_heap *h,
                  keel_term *out) {
  return key == KEEL_NONE ? KEEL_EBADARG : step(tab, key, -1, h, out);
}

typedef struct list_arg {
  keel_heap *hp;
  tvec tv;
} list_arg;

static int list_visit(keel__ets_obj *o, void *arg) {
  list_arg *a = arg;
  return tvec_push(&a->tv, keel_term_copy(a->hp, keel__ets_obj_term(o)));
}

int keel_ets_tab2list(keel_ets_tab tab, keel_heap *h, keel_term *out) {
  keel__ets_table *t;
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  int rc = enter(tab, false, &t);
  if (rc != KEEL_OK)
    return rc;
  list_arg a = {.hp = h};
  rc = keel__ets_scan(t, false, list_visit, &a);
  if (rc == KEEL_OK)
    rc = tvec_list(&a.tv, h, out);
  free(a.tv.v);
  keel__ets_release(tab);
  return rc;
}
