/*
 * ets_store.c - object copies and the two stores of a table.
 *
 * Hashed types (set, bag, duplicate_bag): ETS_STRIPES independent chained
 * hash tables, each under its own rwlock; a key's stripe is the top 6 bits
 * of keel__ets_hash(key), its bucket the next log2(nbuckets) bits. Chains
 * are sorted by (hash, key) (keel__ets_hkey_cmp), so the whole table is
 * kept in one fixed total order of its keys: stripe by stripe, bucket by
 * bucket, chain by chain is ascending hash. Doubling a stripe splits
 * bucket b into 2b and 2b + 1 and keeps that order, so a traversal that
 * resumes "after key K" never misses or repeats a key that stays in the
 * table, however the table grows meanwhile. Objects with one key are
 * adjacent in their chain (bags keep insertion order; a duplicate_bag made
 * with any_order takes each new object first, O(1)). A stripe doubles
 * its buckets when it holds more than GROW_LOAD objects per bucket.
 *
 * Set tables are also read without locks (keel__ets_set_peek): a
 * stripe's seq is odd while a writer holds its lock, chain links and
 * bucket slots are stored with release semantics, and whatever leaves a
 * set's store (objects, old bucket arrays) is freed only after a grace
 * period (ets_rcu.c). Every link a reader can follow points to an object
 * that is not yet freed, and along a chain the (hash, key) order only
 * grows, so a walk racing with a writer ends; the seq check then sends
 * it round again. A set's buckets are lines (ets_line) that also hold the
 * head's hash and link and a copy of a small flat head, so that most
 * lookups and head writes read one cache line; every change that can
 * make a line differ from its chain refreshes it before the lock goes.
 *
 * ordered_set: a two-level sorted array under one rwlock (ets_ordered.c).
 */
#include <stdlib.h>
#include <string.h>

#include "keel/buf.h"
#include "keel/etf.h"
#include "tables/ets_internal.h"

#define ETS_INIT_BUCKETS 8
/* A stripe doubles its buckets above this many objects per bucket: 1
 * keeps the expected chain walk before a key under half an object (a
 * cache miss each in a large table) for 8 bytes per object. */
#define GROW_LOAD 1
/* Chains ahead whose heads stripe_grow prefetches. */
#define GROW_AHEAD 8

/* ---- vectors ---- */

void keel__ets_vec_init(ets_vec *v) {
  v->v = v->inl;
  v->n = 0;
  v->cap = sizeof v->inl / sizeof v->inl[0];
}

int keel__ets_vec_reserve(ets_vec *v, size_t want) {
  if (want <= v->cap)
    return KEEL_OK;
  size_t cap = v->cap;
  while (cap < want)
    cap *= 2;
  keel__ets_obj **nv = malloc(cap * sizeof(keel__ets_obj *));
  if (nv == NULL)
    return KEEL_ENOMEM;
  memcpy(nv, v->v, v->n * sizeof(keel__ets_obj *));
  if (v->v != v->inl)
    free(v->v);
  v->v = nv;
  v->cap = cap;
  return KEEL_OK;
}

int keel__ets_vec_push(ets_vec *v, keel__ets_obj *o) {
  if (v->n == v->cap && keel__ets_vec_reserve(v, v->n + 1) != KEEL_OK)
    return KEEL_ENOMEM;
  v->v[v->n++] = o;
  return KEEL_OK;
}

void keel__ets_vec_free(ets_vec *v) {
  if (v->v != v->inl)
    free(v->v);
  keel__ets_vec_init(v);
}

/* ---- objects ---- */

/* A tuple of immediates (small integers, atoms, local pids, ...: tag bit
 * 1 set) whose header and elements are the whole of data[], with no
 * counted reference: it holds no pointer, so a memcpy is a copy. */
static uint8_t is_flat(const keel__ets_obj *o) {
  keel_term t = keel__ets_obj_term(o);
  if (o->has_off || o->root != 0 || !keel_is_tuple(t))
    return 0;
  size_t n = keel_tuple_arity(t);
  if (o->words != n + 1)
    return 0;
  const keel_term *e = keel_tuple_elems(t);
  for (size_t i = 0; i < n; i++)
    if ((e[i] & 2u) == 0) /* boxed or cons */
      return 0;
  return 1;
}

keel__ets_obj *keel__ets_obj_new(keel_term t, unsigned keypos, bool hashed) {
  size_t words = keel_term_copy_words(t);
  if (words > UINT32_MAX - 1)
    return NULL;
  /* Room for an immediate, and for the counted-reference chain. */
  size_t room = words > 0 ? words + 1 : 1;
  keel__ets_obj *o = malloc(sizeof *o + room * sizeof(uint64_t));
  if (o == NULL)
    return NULL;
  keel_heap hp;
  keel_heap_init_fixed(&hp, o->data, words);
  keel_term c = words > 0 ? keel_term_copy(&hp, t) : t;
  uint64_t base = (uint64_t)(uintptr_t)o->data;
  if (c == KEEL_NONE || (words > 0 && (c & ~(uint64_t)KEEL_TAG_MASK) != base)) {
    keel_heap_destroy(&hp); /* (a root not at data[0] cannot happen) */
    free(o);
    return NULL;
  }
  keel_offheap *off = keel_heap_take_offheap(&hp);
  o->has_off = off != NULL;
  if (off != NULL)
    o->data[words] = (uint64_t)(uintptr_t)off;
  if (words == 0) {
    o->root = ETS_ROOT_IMM;
    o->data[0] = c;
  } else {
    o->root = (uint8_t)(c & KEEL_TAG_MASK);
  }
  o->words = (uint32_t)words;
  o->next = NULL;
  o->mark = 0;
  o->slab = 0;
  o->flat = is_flat(o);
  o->key = keypos > 0 ? keel_tuple_get(c, keypos - 1) : KEEL_NONE;
  o->hash = hashed && keypos > 0 ? keel__ets_hash(o->key) : 0;
  return o;
}

keel__ets_obj *keel__ets_obj_new_flat(keel_term t, size_t arity,
                                      unsigned keypos) {
  size_t words = arity + 1;
  if (words > UINT32_MAX - 1)
    return NULL;
  size_t size = sizeof(keel__ets_obj) + words * sizeof(uint64_t);
  bool slab = size <= KEEL__ETS_SLAB_BLOCK;
  keel__ets_obj *o = slab ? keel__ets_slab_alloc() : malloc(size);
  if (o == NULL)
    return NULL;
  /* A boxed term is its header's address: header and elements in a row. */
  memcpy(o->data, (const void *)(uintptr_t)t, words * sizeof(uint64_t));
  o->next = NULL;
  o->words = (uint32_t)words;
  o->mark = 0;
  o->slab = slab;
  o->flat = 1;
  o->root = 0;
  o->has_off = 0;
  o->key = o->data[keypos]; /* element keypos - 1 */
  o->hash = keel__ets_hash(o->key);
  return o;
}

keel_term keel__ets_obj_copy(const keel__ets_obj *o, keel_heap *hp) {
  if (!o->flat)
    return keel_term_copy(hp, keel__ets_obj_term(o));
  uint64_t *w = keel_heap_alloc(hp, o->words);
  if (w == NULL)
    return KEEL_NONE;
  memcpy(w, o->data, o->words * sizeof(uint64_t));
  return (keel_term)(uintptr_t)w; /* a boxed term is its header's address */
}

void keel__ets_obj_free(keel__ets_obj *o) {
  if (o == NULL)
    return;
  if (o->has_off)
    keel_offheap_release((keel_offheap *)(uintptr_t)o->data[o->words]);
  if (o->slab)
    keel__ets_slab_free(o);
  else
    free(o);
}

size_t keel__ets_obj_cost(const keel__ets_obj *o) {
  return o->words + sizeof *o / sizeof(uint64_t);
}

bool keel__ets_key_eq(const keel__ets_table *t, keel_term a, keel_term b) {
  return keel__ets_hashed(t) ? keel_eq_exact(a, b) : keel_cmp(a, b) == 0;
}

/* ---- the hashed store's key order ---- */

/* Order of two terms that are == but not =:= (an integer and a float
 * somewhere in them, or 0.0 and -0.0): integers first, then structure by
 * structure; anything else by its external encoding. Consistent with =:=:
 * 0 only for =:= terms. */
static int exact_tiebreak(keel_term a, keel_term b) {
  for (;;) {
    if (keel_eq_exact(a, b))
      return 0;
    if (keel_is_number(a) && keel_is_number(b) &&
        keel_is_float(a) != keel_is_float(b))
      return keel_is_float(a) ? 1 : -1;
    if (keel_is_tuple(a) && keel_is_tuple(b) &&
        keel_tuple_arity(a) == keel_tuple_arity(b)) {
      size_t i = 0;
      while (keel_eq_exact(keel_tuple_get(a, i), keel_tuple_get(b, i)))
        i++; /* a and b differ, so some element does */
      a = keel_tuple_get(a, i);
      b = keel_tuple_get(b, i);
      continue;
    }
    if (keel_is_cons(a) && keel_is_cons(b)) {
      if (keel_eq_exact(keel_hd(a), keel_hd(b))) {
        a = keel_tl(a), b = keel_tl(b);
      } else {
        a = keel_hd(a), b = keel_hd(b);
      }
      continue;
    }
    break;
  }
  keel_buf ea, eb;
  keel_buf_init(&ea);
  keel_buf_init(&eb);
  int rc = keel_etf_encode(&ea, a, NULL) | keel_etf_encode(&eb, b, NULL);
  int c = 0;
  if (rc == 0) {
    size_t n = ea.len < eb.len ? ea.len : eb.len;
    c = n ? memcmp(ea.data, eb.data, n) : 0;
    if (c == 0)
      c = ea.len < eb.len ? -1 : ea.len > eb.len;
  }
  keel_buf_free(&ea);
  keel_buf_free(&eb);
  return c != 0 ? (c < 0 ? -1 : 1) : (a < b ? -1 : 1);
}

int keel__ets_hkey_cmp(uint64_t ha, keel_term a, uint64_t hb, keel_term b) {
  if (ha != hb)
    return ha < hb ? -1 : 1;
  if (keel_eq_exact(a, b))
    return 0;
  int c = keel_cmp(a, b);
  return c != 0 ? c : exact_tiebreak(a, b);
}

/* ---- store set-up ---- */

/* A 64-byte aligned array of nb (>= 8, a power of two) empty buckets of
 * 1 << shift bytes; NULL on out-of-memory. */
static char *barr_new(size_t nb, unsigned shift) {
  char *b = keel__ets_arr_alloc(nb << shift);
  if (b != NULL)
    memset(b, 0, nb << shift);
  return b;
}

/* Bucket i's chain head in array b of buckets of 1 << shift bytes. */
static inline keel__ets_obj **barr_slot(char *b, unsigned shift, size_t i) {
  return (keel__ets_obj **)(void *)(b + (i << shift));
}

/* Bucket i's chain head. */
static inline keel__ets_obj **slot(const ets_stripe *s, size_t i) {
  return barr_slot(s->buckets, s->shift, i);
}

/* Makes a set's line l match its chain (head, its hash and link, and a
 * copy of a small flat head). Under the stripe's write lock, seq odd; a
 * no-op for the pointer buckets of other types. */
static void line_fill(ets_line *l) {
  keel__ets_obj *o = l->head;
  if (o == NULL)
    return; /* (readers test head first) */
  size_t n = o->flat && o->words <= ETS_LINE_WORDS ? o->words : 0;
  ETS_ST(&l->hash, o->hash);
  ETS_ST(&l->second, o->next);
  ETS_ST(&l->words, (uint64_t)n);
  for (size_t i = 0; i < n; i++)
    ETS_ST(&l->data[i], o->data[i]);
}

static void line_sync(ets_stripe *s, size_t b) {
  if (s->defer)
    line_fill((ets_line *)(void *)slot(s, b));
}

/* The stripe's view of array b of nb buckets. */
static uintptr_t barr_view(char *b, size_t nb) {
  return (uintptr_t)b | (uintptr_t)__builtin_ctzll((unsigned long long)nb);
}

int keel__ets_store_init(keel__ets_table *t) {
  if (!keel__ets_hashed(t)) {
    memset(&t->u.ord, 0, sizeof t->u.ord);
    return pthread_rwlock_init(&t->u.ord.lock, NULL) == 0 ? KEEL_OK
                                                          : KEEL_ENOMEM;
  }
  ets_stripe *s = aligned_alloc(64, ETS_STRIPES * sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  memset(s, 0, ETS_STRIPES * sizeof *s);
  for (unsigned i = 0; i < ETS_STRIPES; i++) {
    s[i].defer = t->type == KEEL_ETS_SET;
    s[i].shift = s[i].defer ? 6 : 3;
    s[i].buckets = barr_new(ETS_INIT_BUCKETS, s[i].shift);
    s[i].nbuckets = ETS_INIT_BUCKETS;
    s[i].view = barr_view(s[i].buckets, ETS_INIT_BUCKETS);
    atomic_init(&s[i].seq, 0);
    if (s[i].buckets == NULL || pthread_rwlock_init(&s[i].lock, NULL) != 0) {
      for (unsigned j = 0; j <= i; j++)
        keel__ets_arr_free(s[j].buckets, ETS_INIT_BUCKETS << s[j].shift);
      for (unsigned j = 0; j < i; j++)
        pthread_rwlock_destroy(&s[j].lock);
      free(s);
      return KEEL_ENOMEM;
    }
  }
  t->u.stripes = s;
  return KEEL_OK;
}

void keel__ets_store_destroy(keel__ets_table *t) {
  if (!keel__ets_hashed(t)) {
    keel__ord_destroy(&t->u.ord);
    pthread_rwlock_destroy(&t->u.ord.lock);
    return;
  }
  ets_stripe *s = t->u.stripes;
  for (unsigned i = 0; i < ETS_STRIPES; i++) {
    for (size_t b = 0; b < s[i].nbuckets; b++) {
      keel__ets_obj *o = *slot(&s[i], b);
      while (o != NULL) {
        keel__ets_obj *next = o->next;
        keel__ets_obj_free(o);
        o = next;
      }
    }
    keel__ets_arr_free(s[i].buckets, s[i].nbuckets << s[i].shift);
    pthread_rwlock_destroy(&s[i].lock);
  }
  free(s);
}

pthread_rwlock_t *keel__ets_key_lock(keel__ets_table *t, uint64_t h) {
  if (!keel__ets_hashed(t))
    return &t->u.ord.lock;
  return &t->u.stripes[keel__ets_stripe_of(h)].lock;
}

/* A stripe's write lock, its seq odd while held. */
static void stripe_wrlock(ets_stripe *s) {
  pthread_rwlock_wrlock(&s->lock);
  uint64_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
  atomic_store_explicit(&s->seq, v + 1, memory_order_relaxed);
  /* (every store a lock-free reader may see is a release store after
   * this one, so a reader that sees one of them sees the odd seq) */
}

static void stripe_wrunlock(ets_stripe *s) {
  uint64_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
  atomic_store_explicit(&s->seq, v + 1, memory_order_release);
  pthread_rwlock_unlock(&s->lock);
}

void keel__ets_wrlock(keel__ets_table *t, uint64_t h) {
  if (!keel__ets_hashed(t))
    pthread_rwlock_wrlock(&t->u.ord.lock);
  else
    stripe_wrlock(&t->u.stripes[keel__ets_stripe_of(h)]);
}

void keel__ets_wrunlock(keel__ets_table *t, uint64_t h) {
  if (!keel__ets_hashed(t)) {
    pthread_rwlock_unlock(&t->u.ord.lock);
    return;
  }
  stripe_wrunlock(&t->u.stripes[keel__ets_stripe_of(h)]);
}

void keel__ets_lock_mask(keel__ets_table *t, uint64_t mask) {
  if (!keel__ets_hashed(t)) {
    pthread_rwlock_wrlock(&t->u.ord.lock);
    return;
  }
  for (uint64_t m = mask; m != 0; m &= m - 1) /* ascending: no deadlock */
    stripe_wrlock(&t->u.stripes[__builtin_ctzll(m)]);
}

void keel__ets_unlock_mask(keel__ets_table *t, uint64_t mask) {
  if (!keel__ets_hashed(t)) {
    pthread_rwlock_unlock(&t->u.ord.lock);
    return;
  }
  for (uint64_t m = mask; m != 0; m &= m - 1)
    stripe_wrunlock(&t->u.stripes[__builtin_ctzll(m)]);
}

/* ---- hashed store ---- */

static void stripe_grow(ets_stripe *s) {
  size_t nb = s->nbuckets * 2;
  /* Not zeroed: every bucket's head is stored below (its chain or NULL),
   * and a line's other words are read only under a head. */
  char *b = keel__ets_arr_alloc(nb << s->shift);
  if (b == NULL)
    return; /* keep the longer chains */
  for (size_t i = 0; i < s->nbuckets; i++) {
    /* Each object is a cache miss in a large table and chains are about
     * one object long: ask for the heads a few chains ahead so that the
     * misses overlap instead of coming one after the other. */
    if (i + GROW_AHEAD < s->nbuckets && *slot(s, i + GROW_AHEAD) != NULL)
      __builtin_prefetch(*slot(s, i + GROW_AHEAD), 1);
    /* Split chain i in order into chains 2i and 2i + 1 (appending at
     * their tails), which keeps both sorted. */
    keel__ets_obj **tail[2] = {barr_slot(b, s->shift, 2 * i),
                               barr_slot(b, s->shift, 2 * i + 1)};
    for (keel__ets_obj *o = *slot(s, i); o != NULL; o = o->next) {
      /* Its new bucket is 2i or 2i + 1: the low bit tells which. */
      size_t k = keel__ets_bucket_of(o->hash, nb) & 1;
      ETS_ST(tail[k], o);
      tail[k] = &o->next;
    }
    ETS_ST(tail[0], NULL);
    ETS_ST(tail[1], NULL);
    if (s->defer) { /* (the new array is not published yet) */
      line_fill((ets_line *)(void *)barr_slot(b, s->shift, 2 * i));
      line_fill((ets_line *)(void *)barr_slot(b, s->shift, 2 * i + 1));
    }
  }
  char *old = s->buckets;
  size_t old_size = s->nbuckets << s->shift;
  s->buckets = b;
  s->nbuckets = nb;
  ETS_ST(&s->view, barr_view(b, nb));
  if (s->defer) /* a lock-free reader may be in the old array */
    keel__ets_defer_free(keel__ets_arr_tag(old, old_size));
  else
    keel__ets_arr_free(old, old_size);
}

static int hash_group_set(keel__ets_table *t, keel_term key, uint64_t h,
                          keel__ets_obj *const *nv, size_t n,
                          ets_vec *removed) {
  ets_stripe *s = &t->u.stripes[keel__ets_stripe_of(h)];
  size_t bi = keel__ets_bucket_of(h, s->nbuckets);
  keel__ets_obj **pp = slot(s, bi);
  while (*pp != NULL && keel__ets_hkey_cmp((*pp)->hash, (*pp)->key, h, key) < 0)
    pp = &(*pp)->next;
  /* Room in removed for the whole group first, so that the unlinking
   * below cannot fail half-way. */
  size_t old = 0;
  for (keel__ets_obj *o = *pp;
       o != NULL && o->hash == h && keel_eq_exact(o->key, key); o = o->next)
    old++;
  if (keel__ets_vec_reserve(removed, removed->n + old) != KEEL_OK)
    return KEEL_ENOMEM;
  /* Unlink the group (adjacent objects with the key). */
  for (size_t k = 0; k < old; k++) {
    keel__ets_obj *o = *pp;
    removed->v[removed->n++] = o;
    ETS_ST(pp, o->next);
  }
  keel__ets_obj *rest = *pp;
  /* Link the new group's tail first, then its head: a lock-free reader
   * never finds a link to an unfinished group. */
  for (size_t k = n; k-- > 0;)
    ETS_ST(&nv[k]->next, k + 1 < n ? nv[k + 1] : rest);
  if (n > 0)
    ETS_ST(pp, nv[0]);
  line_sync(s, bi);
  s->count = s->count + n - old;
  while (s->count > GROW_LOAD * s->nbuckets) {
    size_t nb = s->nbuckets;
    stripe_grow(s);
    if (s->nbuckets == nb)
      break; /* out of memory: keep the longer chains */
  }
  return KEEL_OK;
}

/* The link in key's chain where key is or would be inserted; *at is the
 * object there (or NULL) and *hit whether it has the key. A set's line
 * answers for its head without reading the head object: before the head,
 * at the head (a copied head's key word), or after it (its link). */
static keel__ets_obj **chain_at(ets_stripe *s, keel_term key, uint64_t h,
                                unsigned keypos, keel__ets_obj **at,
                                bool *hit) {
  keel__ets_obj **pp = slot(s, keel__ets_bucket_of(h, s->nbuckets));
  keel__ets_obj *o = *pp;
  *hit = false;
  if (s->defer && o != NULL) {
    ets_line *l = (ets_line *)(void *)pp;
    if (h < l->hash) {
      *at = o;
      return pp;
    }
    /* (an immediate key word equals only itself; a copy holds immediates
     * only, so no other key matches one of its words) */
    if (h == l->hash && l->words > keypos && l->data[keypos] == key) {
      *at = o;
      *hit = true;
      return pp;
    }
    if (h > l->hash) {
      pp = &o->next;
      o = l->second;
    }
  }
  for (; o != NULL; pp = &o->next, o = *pp) {
    if (o->hash > h)
      break;
    if (o->hash == h) {
      if (o->key == key) { /* the same word is the same key */
        *hit = true;
        break;
      }
      int c = keel__ets_hkey_cmp(h, o->key, h, key);
      if (c >= 0) {
        *hit = c == 0;
        break;
      }
    }
  }
  *at = o;
  return pp;
}

/* A set's line after o was linked at pp (in key's bucket b): refilled
 * when o is the new head, its link when o follows the head; nothing else
 * in a line depends on the rest of the chain. */
static void line_linked(ets_stripe *s, size_t b, keel__ets_obj **pp,
                        keel__ets_obj *o) {
  if (!s->defer)
    return;
  ets_line *l = (ets_line *)(void *)slot(s, b);
  if (pp == &l->head)
    line_fill(l);
  else if (pp == &l->head->next) /* (an address: the head is not read) */
    ETS_ST(&l->second, o);
}

static void stripe_added(ets_stripe *s) {
  s->count++;
  while (s->count > GROW_LOAD * s->nbuckets) {
    size_t nb = s->nbuckets;
    stripe_grow(s);
    if (s->nbuckets == nb)
      break; /* out of memory: keep the longer chains */
  }
}

keel__ets_obj *keel__ets_hash_find(keel__ets_table *t, keel_term key,
                                   uint64_t h) {
  keel__ets_obj *o;
  bool hit;
  (void)chain_at(&t->u.stripes[keel__ets_stripe_of(h)], key, h, t->keypos, &o,
                 &hit);
  return hit ? o : NULL;
}

keel__ets_obj *keel__ets_set_head(keel__ets_table *t, keel_term key, uint64_t h,
                                  uint64_t **copy, size_t *words) {
  ets_stripe *s = &t->u.stripes[keel__ets_stripe_of(h)];
  if (!s->defer)
    return NULL;
  ets_line *l =
      (ets_line *)(void *)slot(s, keel__ets_bucket_of(h, s->nbuckets));
  if (l->head == NULL || l->hash != h || l->words <= t->keypos ||
      l->data[t->keypos] != key)
    return NULL;
  *copy = l->data;
  *words = l->words;
  return l->head;
}

void keel__ets_obj_changed(keel__ets_table *t, keel__ets_obj *o) {
  if (t->type != KEEL_ETS_SET)
    return;
  ets_stripe *s = &t->u.stripes[keel__ets_stripe_of(o->hash)];
  ets_line *l =
      (ets_line *)(void *)slot(s, keel__ets_bucket_of(o->hash, s->nbuckets));
  if (l->head == o)
    line_fill(l);
}

/* Lock-free tries before keel__ets_set_peek gives up; steps along one
 * chain before a try counts as failed (a walk racing with writers). */
#define PEEK_TRIES 16
#define PEEK_STEPS 4096

/* One optimistic read of the stripe at seq v1 (even): 1 found, 0 absent,
 * -1 not readable without the lock. A key that heads its chain is read
 * from the bucket's line alone; a key below the head's hash is absent
 * without reading an object. */
static int peek_once(ets_stripe *s, keel_term key, uint64_t h, unsigned keypos,
                     uint64_t *buf, size_t cap, size_t *words) {
  uintptr_t v = ETS_LD(&s->view);
  unsigned k = (unsigned)(v & 63); /* log2 of the bucket count */
  ets_line *l = (ets_line *)(v & ~(uintptr_t)63) +
                (k == 0 ? 0 : (size_t)((h << 6) >> (64 - k)));
  keel__ets_obj *o = ETS_LD(&l->head);
  if (o == NULL)
    return 0;
  uint64_t hh = ETS_LD(&l->hash);
  if (h < hh)
    return 0; /* the chain is in ascending hash order */
  if (h == hh) {
    size_t n = ETS_LD(&l->words);
    /* (an immediate key is one word, equal only to itself) */
    if (n > keypos && ETS_LD(&l->data[keypos]) == key) {
      if (buf == NULL)
        return 1;
      if (n > cap)
        return -1;
      for (size_t i = 0; i < n; i++)
        buf[i] = ETS_LD(&l->data[i]);
      *words = n;
      return 1;
    }
  } else {
    o = ETS_LD(&l->second); /* the head is not it */
  }
  /* hash and key are set before an object is published, never after. */
  for (unsigned n = 0; o != NULL && o->hash < h; n++) {
    if (n == PEEK_STEPS)
      return -2;
    o = ETS_LD(&o->next);
  }
  while (o != NULL && o->hash == h && o->key != key)
    o = ETS_LD(&o->next); /* (colliding hashes: an immediate key is one
                             word, equal only to itself) */
  if (o == NULL || o->hash != h)
    return 0;
  if (buf == NULL)
    return 1;
  size_t n = o->words;
  if (!o->flat || n > cap)
    return -1;
  for (size_t i = 0; i < n; i++)
    buf[i] = ETS_LD(&o->data[i]);
  *words = n;
  return 1;
}

int keel__ets_set_peek(keel__ets_table *t, keel_term key, uint64_t h,
                       uint64_t *buf, size_t cap, size_t *words) {
  ets_stripe *s = &t->u.stripes[keel__ets_stripe_of(h)];
  for (unsigned i = 0; i < PEEK_TRIES; i++) {
    uint64_t v1 = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (v1 & 1)
      continue; /* a writer holds the stripe: look again, then lock */
    int r = peek_once(s, key, h, t->keypos, buf, cap, words);
    /* The reads above are acquire loads: this load comes after them. */
    uint64_t v2 = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (v1 == v2)
      return r < -1 ? -1 : r;
  }
  return -1;
}

keel__ets_obj *keel__ets_set_put(keel__ets_table *t, keel__ets_obj *o) {
  ets_stripe *s = &t->u.stripes[keel__ets_stripe_of(o->hash)];
  keel__ets_obj *old;
  bool hit;
  keel__ets_obj **pp = chain_at(s, o->key, o->hash, t->keypos, &old, &hit);
  size_t b = keel__ets_bucket_of(o->hash, s->nbuckets);
  size_t add = keel__ets_obj_cost(o);
  if (hit) {
    ETS_ST(&o->next, old->next);
    ETS_ST(pp, o);
    line_linked(s, b, pp, o);
    size_t sub = keel__ets_obj_cost(old);
    if (add != sub)
      atomic_fetch_add_explicit(&t->words, add - sub, memory_order_relaxed);
    return old;
  }
  ETS_ST(&o->next, old);
  ETS_ST(pp, o);
  line_linked(s, b, pp, o);
  atomic_fetch_add_explicit(&t->size, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&t->words, add, memory_order_relaxed);
  stripe_added(s);
  return NULL;
}

/* Whether a and b (the objects of one key) certainly differ without a
 * full comparison: tuples of one arity with a pair of unequal immediate
 * elements (a registry's {Pid, Key} rows, say). */
static bool quick_differs(keel_term a, keel_term b) {
  size_t n = keel_tuple_arity(a);
  if (n != keel_tuple_arity(b))
    return true;
  for (size_t i = 0; i < n; i++) {
    keel_term x = keel_tuple_get(a, i), y = keel_tuple_get(b, i);
    if (x != y && !keel_is_boxed(x) && !keel_is_cons(x) && !keel_is_boxed(y) &&
        !keel_is_cons(y))
      return true; /* immediates are equal only as the same word */
  }
  return false;
}

bool keel__ets_bag_add(keel__ets_table *t, keel__ets_obj *o, bool dedupe) {
  ets_stripe *s = &t->u.stripes[keel__ets_stripe_of(o->hash)];
  keel__ets_obj *at;
  bool hit;
  keel__ets_obj **pp = chain_at(s, o->key, o->hash, t->keypos, &at, &hit);
  /* Past the key's group, comparing (a bag keeps one of equal objects);
   * a duplicate_bag in any order takes o first (pp is at its group). */
  for (keel__ets_obj *g;
       (dedupe || !t->any_order) && (g = *pp) != NULL && g->hash == o->hash &&
       (g->key == o->key || keel_eq_exact(g->key, o->key));
       pp = &g->next)
    if (dedupe &&
        !quick_differs(keel__ets_obj_term(g), keel__ets_obj_term(o)) &&
        keel_eq_exact(keel__ets_obj_term(g), keel__ets_obj_term(o)))
      return false;
  o->next = *pp;
  *pp = o; /* last of its group (insertion order), or first in any order */
  atomic_fetch_add_explicit(&t->size, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&t->words, keel__ets_obj_cost(o),
                            memory_order_relaxed);
  stripe_added(s);
  return true;
}

int keel__ets_group_get(keel__ets_table *t, keel_term key, uint64_t h,
                        ets_vec *out) {
  if (!keel__ets_hashed(t)) {
    return keel__ord_group_get(&t->u.ord, key, out);
  }
  ets_stripe *s = &t->u.stripes[keel__ets_stripe_of(h)];
  keel__ets_obj *o = *slot(s, keel__ets_bucket_of(h, s->nbuckets));
  while (o != NULL && keel__ets_hkey_cmp(o->hash, o->key, h, key) < 0)
    o = o->next;
  for (; o != NULL && o->hash == h && keel_eq_exact(o->key, key); o = o->next)
    if (keel__ets_vec_push(out, o) != KEEL_OK)
      return KEEL_ENOMEM;
  return KEEL_OK;
}

int keel__ets_group_set(keel__ets_table *t, keel_term key, uint64_t h,
                        keel__ets_obj *const *nv, size_t n, ets_vec *removed) {
  size_t before = removed->n;
  int rc = keel__ets_hashed(t)
               ? hash_group_set(t, key, h, nv, n, removed)
               : keel__ord_group_set(&t->u.ord, key, nv, n, removed);
  if (rc != KEEL_OK)
    return rc;
  size_t add = 0, sub = 0;
  for (size_t k = 0; k < n; k++)
    add += keel__ets_obj_cost(nv[k]);
  for (size_t k = before; k < removed->n; k++)
    sub += keel__ets_obj_cost(removed->v[k]);
  /* Net changes only (unsigned wrap-around adds a negative delta); a
   * replacement of equal size touches neither shared counter. */
  if (n != removed->n - before)
    atomic_fetch_add_explicit(&t->size, n - (removed->n - before),
                              memory_order_relaxed);
  if (add != sub)
    atomic_fetch_add_explicit(&t->words, add - sub, memory_order_relaxed);
  return KEEL_OK;
}

/* ---- scans ---- */

static void account_removed(keel__ets_table *t, ets_vec *dead) {
  size_t sub = 0;
  for (size_t k = 0; k < dead->n; k++)
    sub += keel__ets_obj_cost(dead->v[k]);
  atomic_fetch_sub_explicit(&t->size, dead->n, memory_order_relaxed);
  atomic_fetch_sub_explicit(&t->words, sub, memory_order_relaxed);
}

static void free_all(const keel__ets_table *t, ets_vec *dead) {
  for (size_t k = 0; k < dead->n; k++)
    keel__ets_retire(t, dead->v[k]);
  keel__ets_vec_free(dead);
}

static int scan_stripe(ets_stripe *s, bool write, keel__ets_visit_fn fn,
                       void *arg, ets_vec *dead) {
  for (size_t b = 0; b < s->nbuckets; b++) {
    keel__ets_obj **pp = slot(s, b);
    bool changed = false;
    int r = 0;
    while (*pp != NULL) {
      keel__ets_obj *o = *pp;
      r = fn(o, arg);
      if (r < 0)
        break;
      if (r == 1 && write && keel__ets_vec_push(dead, o) == KEEL_OK) {
        ETS_ST(pp, o->next);
        s->count--;
        changed = true;
        continue;
      }
      pp = &o->next;
    }
    if (changed)
      line_sync(s, b);
    if (r < 0)
      return r;
  }
  return KEEL_OK;
}

_Atomic uint64_t keel__ets_scans;

int keel__ets_scan(keel__ets_table *t, bool write, keel__ets_visit_fn fn,
                   void *arg) {
  atomic_fetch_add_explicit(&keel__ets_scans, 1, memory_order_relaxed);
  ets_vec dead;
  keel__ets_vec_init(&dead);
  int rc;
  if (!keel__ets_hashed(t)) {
    pthread_rwlock_t *l = &t->u.ord.lock;
    write ? pthread_rwlock_wrlock(l) : pthread_rwlock_rdlock(l);
    rc = keel__ord_scan(&t->u.ord, write, fn, arg, &dead);
    account_removed(t, &dead);
    pthread_rwlock_unlock(l);
    free_all(t, &dead);
    return rc;
  }
  rc = KEEL_OK;
  for (unsigned i = 0; i < ETS_STRIPES && rc >= 0; i++) {
    ets_stripe *s = &t->u.stripes[i];
    write ? stripe_wrlock(s) : (void)pthread_rwlock_rdlock(&s->lock);
    rc = scan_stripe(s, write, fn, arg, &dead);
    account_removed(t, &dead);
    write ? stripe_wrunlock(s) : (void)pthread_rwlock_unlock(&s->lock);
    free_all(t, &dead);
  }
  return rc;
}

/* ---- traversal ---- */

static int copy_key(keel_heap *hp, keel_term key, keel_term *out) {
  keel_term k = keel_term_copy(hp, key);
  if (k == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = k;
  return 1;
}

static int step_ordered(keel__ets_table *t, keel_term from, int dir,
                        keel_heap *hp, keel_term *out) {
  pthread_rwlock_rdlock(&t->u.ord.lock);
  keel__ets_obj *o = keel__ord_step(&t->u.ord, from, dir);
  int rc = o == NULL ? 0 : copy_key(hp, o->key, out);
  pthread_rwlock_unlock(&t->u.ord.lock);
  return rc;
}

/* Visits, stripe by stripe under its read lock, the objects after
 * (fh, fk) in the store's order (every object when fk is KEEL_NONE). */
static int hash_walk(keel__ets_table *t, uint64_t fh, keel_term fk,
                     keel__ets_visit_fn fn, keel__ets_unlock_fn unlocking,
                     void *arg) {
  bool from = fk != KEEL_NONE;
  for (unsigned si = from ? keel__ets_stripe_of(fh) : 0; si < ETS_STRIPES;
       si++) {
    ets_stripe *s = &t->u.stripes[si];
    pthread_rwlock_rdlock(&s->lock);
    size_t b = from ? keel__ets_bucket_of(fh, s->nbuckets) : 0;
    int r = 0;
    for (; b < s->nbuckets && r == 0; b++) {
      keel__ets_obj *o = *slot(s, b);
      if (from) /* only the first bucket holds objects at or before it */
        while (o != NULL && keel__ets_hkey_cmp(o->hash, o->key, fh, fk) <= 0)
          o = o->next;
      from = false;
      for (; o != NULL && r == 0; o = o->next)
        r = fn(o, arg);
    }
    if (unlocking != NULL)
      unlocking(arg);
    pthread_rwlock_unlock(&s->lock);
    if (r != 0)
      return r;
  }
  return 0;
}

int keel__ets_walk(keel__ets_table *t, keel_term from, int dir,
                   keel__ets_visit_fn fn, keel__ets_unlock_fn unlocking,
                   void *arg) {
  if (keel__ets_hashed(t))
    return hash_walk(t, from == KEEL_NONE ? 0 : keel__ets_hash(from), from, fn,
                     unlocking, arg);
  pthread_rwlock_rdlock(&t->u.ord.lock);
  int r = keel__ord_walk(&t->u.ord, from, dir, fn, arg);
  if (unlocking != NULL)
    unlocking(arg);
  pthread_rwlock_unlock(&t->u.ord.lock);
  return r;
}

typedef struct step_arg {
  keel_heap *hp;
  keel_term *out;
} step_arg;

static int step_visit(keel__ets_obj *o, void *arg) {
  step_arg *a = arg;
  return copy_key(a->hp, o->key, a->out);
}

int keel__ets_step(keel__ets_table *t, keel_term from, int dir, keel_heap *hp,
                   keel_term *out) {
  *out = keel__ets_atom_eot();
  if (!keel__ets_hashed(t))
    return step_ordered(t, from, dir, hp, out);
  step_arg a = {hp, out};
  return keel__ets_walk(t, from, 1, step_visit, NULL, &a);
}

void keel__ets_free_removed(const keel__ets_table *t, ets_vec *removed,
                            keel__ets_obj *const *keep, size_t n) {
  for (size_t k = 0; k < n; k++)
    keep[k]->mark = 1;
  for (size_t k = 0; k < removed->n; k++)
    if (!removed->v[k]->mark)
      keel__ets_retire(t, removed->v[k]);
  for (size_t k = 0; k < n; k++)
    keep[k]->mark = 0;
  keel__ets_vec_free(removed);
}

void keel__ets_clear(keel__ets_table *t) {
  keel__ets_obj *all = NULL;
  keel__ets_lock_mask(t, ~UINT64_C(0));
  if (!keel__ets_hashed(t)) {
    all = keel__ord_detach_all(&t->u.ord);
  } else {
    for (unsigned i = 0; i < ETS_STRIPES; i++) {
      ets_stripe *s = &t->u.stripes[i];
      for (size_t b = 0; b < s->nbuckets; b++) {
        keel__ets_obj *o = *slot(s, b);
        while (o != NULL) {
          keel__ets_obj *next = o->next;
          ETS_ST(&o->next, all);
          all = o;
          o = next;
        }
        ETS_ST(slot(s, b), NULL);
      }
      s->count = 0;
    }
  }
  atomic_store_explicit(&t->size, 0, memory_order_relaxed);
  atomic_store_explicit(&t->words, 0, memory_order_relaxed);
  keel__ets_unlock_mask(t, ~UINT64_C(0));
  while (all != NULL) {
    keel__ets_obj *next = all->next;
    keel__ets_retire(t, all);
    all = next;
  }
}
