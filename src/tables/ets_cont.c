/*
 * ets_cont.c - chunked selects: select/3, select_reverse/3, match/3,
 * match_object/3 and their continuations (select/1, match/1, ...).
 *
 * A continuation holds its compiled spec, its limit and a copy of the
 * last key it delivered. Each chunk is one keel__ets_walk resuming
 * strictly after that key in the table's fixed order (term order for
 * ordered_set, the hashed store's (hash, key) order otherwise), so a key is
 * never delivered twice and a key that stays in the table is never
 * missed, whatever is inserted or deleted between chunks. The table is
 * named by its generation-counted id: once it is deleted every chunk
 * returns KEEL_EBADARG.
 */
#include <stdlib.h>

#include "tables/ets_ms.h"

struct keel_ets_cont {
  keel_ets_tab tab;
  keel_ets_ms *ms;
  size_t limit;
  int dir;
  bool started; /* the first chunk ran (bound is set) */
  bool done;
  keel_term bound;     /* the spec's bound key (in ms), or KEEL_NONE */
  keel__ets_obj *last; /* copy of the last key delivered, or NULL */
};

/* One chunk in progress. */
typedef struct chunk {
  keel_ets_cont *c;
  keel__ets_table *t;
  keel_heap *hp;
  keel_term *v;
  size_t n, cap;
  bool group;           /* bags: a key's objects come in one chunk */
  keel__ets_obj *cur;   /* last object consumed, valid under the lock */
  keel__ets_obj *saved; /* copy of the last consumed key */
  int err;
} chunk;

static keel_term last_key(const chunk *k) {
  if (k->cur != NULL)
    return k->cur->key;
  return k->saved != NULL ? keel__ets_obj_term(k->saved) : KEEL_NONE;
}

static int push(chunk *k, keel_term x) {
  if (x == KEEL_NONE)
    return KEEL_ENOMEM;
  if (k->n == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 16;
    keel_term *v = realloc(k->v, cap * sizeof *v);
    if (v == NULL)
      return KEEL_ENOMEM;
    k->v = v;
    k->cap = cap;
  }
  k->v[k->n++] = x;
  return KEEL_OK;
}

/* Runs the spec on o and keeps its result, if any. */
static int consume(chunk *k, keel__ets_obj *o) {
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term r = keel__ms_run(k->c->ms, keel__ets_obj_term(o), &tmp);
  int rc = r != KEEL_NONE ? push(k, keel_term_copy(k->hp, r)) : KEEL_OK;
  keel_heap_destroy(&tmp);
  return rc;
}

static int chunk_visit(keel__ets_obj *o, void *arg) {
  chunk *k = arg;
  if (k->err != KEEL_OK)
    return k->err;
  if (k->n >= k->c->limit) {
    keel_term lk = last_key(k);
    if (!k->group || lk == KEEL_NONE || !keel__ets_key_eq(k->t, o->key, lk))
      return 1; /* full; o is left for the next chunk */
  }
  int rc = consume(k, o);
  if (rc != KEEL_OK)
    return rc;
  k->cur = o;
  return 0;
}

/* Before a lock is released: copy the last consumed key out of the
 * table (the object may be freed once the lock is gone). */
static void chunk_unlocking(void *arg) {
  chunk *k = arg;
  if (k->cur == NULL || k->err != KEEL_OK)
    return;
  keel__ets_obj *s = keel__ets_obj_new(k->cur->key, 0, false);
  if (s == NULL) {
    k->err = KEEL_ENOMEM;
    return;
  }
  keel__ets_obj_free(k->saved);
  k->saved = s;
  k->cur = NULL;
}

/* The objects of the spec's bound key, all in one chunk. */
static int chunk_key(chunk *k) {
  keel__ets_table *t = k->t;
  keel_term key = k->c->bound;
  uint64_t h = keel__ets_hashed(t) ? keel__ets_hash(key) : 0;
  pthread_rwlock_t *l = keel__ets_key_lock(t, h);
  pthread_rwlock_rdlock(l);
  ets_vec g;
  keel__ets_vec_init(&g);
  int rc = keel__ets_group_get(t, key, h, &g);
  for (size_t i = 0; i < g.n && rc == KEEL_OK; i++)
    rc = consume(k, g.v[i]);
  pthread_rwlock_unlock(l);
  keel__ets_vec_free(&g);
  return rc;
}

/* Fills k with the next chunk; *end: the table has nothing after it. */
static int chunk_fill(chunk *k, bool *end) {
  keel_ets_cont *c = k->c;
  if (!c->started) {
    c->bound = keel__ets_bound_key(c->ms, k->t->keypos);
    c->started = true;
  }
  if (c->bound != KEEL_NONE) {
    *end = true;
    return chunk_key(k);
  }
  keel_term from = c->last != NULL ? keel__ets_obj_term(c->last) : KEEL_NONE;
  int r = keel__ets_walk(k->t, from, c->dir, chunk_visit, chunk_unlocking, k);
  if (r < 0)
    return r;
  *end = r == 0;
  return k->err;
}

/* The next chunk of c: 1 (a list in *out), 0 (the end) or an error. */
static int chunk_run(keel_ets_cont *c, keel_heap *h, keel_term *out) {
  *out = keel__ets_atom_eot();
  if (c->done)
    return 0;
  keel__ets_table *t;
  int rc = keel__ets_acquire(c->tab, &t);
  if (rc != KEEL_OK)
    return rc;
  chunk k = {.c = c,
             .t = t,
             .hp = h,
             .group =
                 t->type == KEEL_ETS_BAG || t->type == KEEL_ETS_DUPLICATE_BAG};
  bool end = false;
  rc = keel__ets_check(t, false);
  if (rc == KEEL_OK)
    rc = chunk_fill(&k, &end);
  keel__ets_release(c->tab);
  keel_term l = KEEL_NIL;
  if (rc == KEEL_OK && k.n > 0) {
    l = keel_list_from(h, k.n, k.v);
    rc = l == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  free(k.v);
  if (rc != KEEL_OK) {
    keel__ets_obj_free(k.saved);
    return rc;
  }
  if (k.saved != NULL) {
    keel__ets_obj_free(c->last);
    c->last = k.saved;
  }
  c->done = end;
  if (k.n == 0) {
    c->done = true;
    return 0;
  }
  *out = l;
  return 1;
}

static int start(keel_ets_tab tab, keel_ets_ms *ms, size_t limit, int dir,
                 keel_heap *h, keel_term *out, keel_ets_cont **cont) {
  keel_ets_cont *c = calloc(1, sizeof *c);
  if (c == NULL) {
    keel_ets_ms_free(ms);
    return KEEL_ENOMEM;
  }
  c->tab = tab;
  c->ms = ms;
  c->limit = limit;
  c->dir = dir;
  c->bound = KEEL_NONE;
  int rc = chunk_run(c, h, out);
  if (rc == 1)
    *cont = c;
  else
    keel_ets_cont_free(c);
  return rc;
}

static int select_limit(keel_ets_tab tab, keel_term spec, size_t limit, int dir,
                        keel_heap *h, keel_term *out, keel_ets_cont **cont) {
  if (h == NULL || out == NULL || cont == NULL)
    return KEEL_EINVAL;
  *cont = NULL;
  if (limit == 0)
    return KEEL_EBADARG;
  keel_ets_ms *ms;
  int rc = keel_ets_ms_compile(spec, &ms);
  if (rc != KEEL_OK)
    return rc;
  return start(tab, ms, limit, dir, h, out, cont);
}

int keel_ets_select_limit(keel_ets_tab tab, keel_term spec, size_t limit,
                          keel_heap *h, keel_term *out, keel_ets_cont **cont) {
  return select_limit(tab, spec, limit, 1, h, out, cont);
}

int keel_ets_select_reverse_limit(keel_ets_tab tab, keel_term spec,
                                  size_t limit, keel_heap *h, keel_term *out,
                                  keel_ets_cont **cont) {
  return select_limit(tab, spec, limit, -1, h, out, cont);
}

/* [{Pattern, [], [Result]}] */
static int match_limit(keel_ets_tab tab, keel_term pattern, const char *result,
                       size_t limit, keel_heap *h, keel_term *out,
                       keel_ets_cont **cont) {
  if (pattern == KEEL_NONE || h == NULL || out == NULL || cont == NULL)
    return KEEL_EINVAL;
  *cont = NULL;
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term spec = keel_build(&tmp, "[{~t, [], [~a]}]", pattern, result);
  int rc = spec == KEEL_NONE ? KEEL_ENOMEM
                             : select_limit(tab, spec, limit, 1, h, out, cont);
  keel_heap_destroy(&tmp);
  return rc;
}

int keel_ets_match_limit(keel_ets_tab tab, keel_term pattern, size_t limit,
                         keel_heap *h, keel_term *out, keel_ets_cont **cont) {
  return match_limit(tab, pattern, "$$", limit, h, out, cont);
}

int keel_ets_match_object_limit(keel_ets_tab tab, keel_term pattern,
                                size_t limit, keel_heap *h, keel_term *out,
                                keel_ets_cont **cont) {
  return match_limit(tab, pattern, "$_", limit, h, out, cont);
}

int keel_ets_select_next(keel_ets_cont *cont, keel_heap *h, keel_term *out) {
  if (cont == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  return chunk_run(cont, h, out);
}

void keel_ets_cont_free(keel_ets_cont *cont) {
  if (cont == NULL)
    return;
  keel_ets_ms_free(cont->ms);
  keel__ets_obj_free(cont->last);
  free(cont);
}
