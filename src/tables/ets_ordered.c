/*
 * ets_ordered.c - the ordered_set store: a two-level sorted array.
 *
 * Objects are kept in key order (keel_cmp) in chunks of at most
 * ORD_CHUNK pointers; a top array lists the chunks in order. A search is a
 * binary search over the chunks' last keys, then one inside the chunk, so
 * lookups are O(log n). An insert moves at most one chunk's tail; a full
 * chunk splits in two (moving the top array's tail, n / ORD_CHUNK
 * pointers); an emptied chunk is removed. This keeps inserts and deletes
 * cheap up to millions of objects without the pointer chasing of a tree.
 * The caller holds the store's rwlock (ets_store.c).
 */
#include <stdlib.h>
#include <string.h>

#include "tables/ets_internal.h"

struct ets_ord_chunk {
  size_t n;
  keel__ets_obj *v[ORD_CHUNK];
};

typedef struct pos {
  size_t c, i; /* chunk, index; c == nc: the end */
} pos;

static keel_term last_key(const ets_ord_chunk *c) {
  return c->v[c->n - 1]->key;
}

/* First position whose key is >= key (strict: > key). */
static pos bound(const ets_ordered *o, keel_term key, bool strict) {
  size_t lo = 0, hi = o->nc;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = keel_cmp(last_key(o->c[mid]), key);
    if (c < 0 || (strict && c == 0))
      lo = mid + 1;
    else
      hi = mid;
  }
  pos p = {lo, 0};
  if (lo == o->nc)
    return p;
  const ets_ord_chunk *ch = o->c[lo];
  size_t a = 0, b = ch->n;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    int c = keel_cmp(ch->v[mid]->key, key);
    if (c < 0 || (strict && c == 0))
      a = mid + 1;
    else
      b = mid;
  }
  p.i = a;
  return p;
}

static keel__ets_obj *at(const ets_ordered *o, pos p) {
  return p.c < o->nc ? o->c[p.c]->v[p.i] : NULL;
}

/* Opens a gap at top index j (nothing stored there yet). */
static int top_insert(ets_ordered *o, size_t j, ets_ord_chunk *ch) {
  if (o->nc == o->capc) {
    size_t cap = o->capc ? o->capc * 2 : 8;
    ets_ord_chunk **c = realloc(o->c, cap * sizeof(ets_ord_chunk *));
    if (c == NULL)
      return KEEL_ENOMEM;
    o->c = c;
    o->capc = cap;
  }
  memmove(o->c + j + 1, o->c + j, (o->nc - j) * sizeof(ets_ord_chunk *));
  o->c[j] = ch;
  o->nc++;
  return KEEL_OK;
}

static void top_remove(ets_ordered *o, size_t j) {
  free(o->c[j]);
  memmove(o->c + j, o->c + j + 1, (o->nc - j - 1) * sizeof(ets_ord_chunk *));
  o->nc--;
}

static int insert_at(ets_ordered *o, pos p, keel__ets_obj *x) {
  if (o->nc == 0) {
    ets_ord_chunk *ch = calloc(1, sizeof *ch);
    if (ch == NULL || top_insert(o, 0, ch) != KEEL_OK) {
      free(ch);
      return KEEL_ENOMEM;
    }
    p = (pos){0, 0};
  } else if (p.c == o->nc) { /* beyond every key: append to the last */
    p.c = o->nc - 1;
    p.i = o->c[p.c]->n;
  }
  ets_ord_chunk *ch = o->c[p.c];
  if (ch->n == ORD_CHUNK) { /* split, then insert into the right half */
    ets_ord_chunk *nw = calloc(1, sizeof *nw);
    if (nw == NULL || top_insert(o, p.c + 1, nw) != KEEL_OK) {
      free(nw);
      return KEEL_ENOMEM;
    }
    size_t half = ORD_CHUNK / 2;
    memcpy(nw->v, ch->v + half, (ORD_CHUNK - half) * sizeof(keel__ets_obj *));
    nw->n = ORD_CHUNK - half;
    ch->n = half;
    if (p.i > half) {
      ch = nw;
      p.i -= half;
    }
  }
  memmove(ch->v + p.i + 1, ch->v + p.i,
          (ch->n - p.i) * sizeof(keel__ets_obj *));
  ch->v[p.i] = x;
  ch->n++;
  o->n++;
  return KEEL_OK;
}

static void remove_at(ets_ordered *o, pos p) {
  ets_ord_chunk *ch = o->c[p.c];
  memmove(ch->v + p.i, ch->v + p.i + 1,
          (ch->n - p.i - 1) * sizeof(keel__ets_obj *));
  ch->n--;
  o->n--;
  if (ch->n == 0)
    top_remove(o, p.c);
}

int keel__ord_group_get(const ets_ordered *o, keel_term key, ets_vec *out) {
  keel__ets_obj *x = at(o, bound(o, key, false));
  if (x != NULL && keel_cmp(x->key, key) == 0)
    return keel__ets_vec_push(out, x);
  return KEEL_OK;
}

int keel__ord_group_set(ets_ordered *o, keel_term key, keel__ets_obj *const *nv,
                        size_t n, ets_vec *removed) {
  if (n > 1)
    return KEEL_EINVAL; /* one object per key */
  pos p = bound(o, key, false);
  keel__ets_obj *x = at(o, p);
  bool old = x != NULL && keel_cmp(x->key, key) == 0;
  if (old && keel__ets_vec_push(removed, x) != KEEL_OK)
    return KEEL_ENOMEM;
  if (old && n == 1) {
    o->c[p.c]->v[p.i] = nv[0];
    return KEEL_OK;
  }
  if (old) {
    remove_at(o, p);
    return KEEL_OK;
  }
  if (n == 0)
    return KEEL_OK;
  return insert_at(o, p, nv[0]);
}

int keel__ord_scan(ets_ordered *o, bool write, keel__ets_visit_fn fn, void *arg,
                   ets_vec *dead) {
  int rc = KEEL_OK;
  for (size_t c = 0; c < o->nc && rc >= 0; c++) {
    ets_ord_chunk *ch = o->c[c];
    size_t w = 0;
    for (size_t i = 0; i < ch->n; i++) {
      int r = rc < 0 ? 0 : fn(ch->v[i], arg);
      if (r < 0)
        rc = r;
      if (!write)
        continue;
      if (r == 1 && keel__ets_vec_push(dead, ch->v[i]) == KEEL_OK)
        continue;
      ch->v[w++] = ch->v[i];
    }
    if (write) {
      o->n -= ch->n - w;
      ch->n = w;
    }
  }
  if (write) /* drop emptied chunks */
    for (size_t c = o->nc; c-- > 0;)
      if (o->c[c]->n == 0)
        top_remove(o, c);
  return rc;
}

keel__ets_obj *keel__ord_step(const ets_ordered *o, keel_term from, int dir) {
  if (o->nc == 0)
    return NULL;
  if (dir > 0)
    return from == KEEL_NONE ? o->c[0]->v[0] : at(o, bound(o, from, true));
  pos p = from == KEEL_NONE ? (pos){o->nc, 0} : bound(o, from, false);
  if (p.i > 0)
    return o->c[p.c]->v[p.i - 1];
  if (p.c == 0)
    return NULL;
  const ets_ord_chunk *ch = o->c[p.c - 1];
  return ch->v[ch->n - 1];
}

int keel__ord_walk(const ets_ordered *o, keel_term from, int dir,
                   keel__ets_visit_fn fn, void *arg) {
  if (o->nc == 0)
    return 0;
  if (dir > 0) {
    pos p = from == KEEL_NONE ? (pos){0, 0} : bound(o, from, true);
    for (size_t c = p.c, i = p.i; c < o->nc; c++, i = 0)
      for (; i < o->c[c]->n; i++) {
        int r = fn(o->c[c]->v[i], arg);
        if (r != 0)
          return r;
      }
    return 0;
  }
  /* Backwards from the last position before `from`. */
  pos p = from == KEEL_NONE ? (pos){o->nc, 0} : bound(o, from, false);
  size_t c = p.c, i = p.i;
  for (;;) {
    if (i == 0) {
      if (c == 0)
        return 0;
      c--;
      i = o->c[c]->n;
    }
    int r = fn(o->c[c]->v[--i], arg);
    if (r != 0)
      return r;
  }
}

keel__ets_obj *keel__ord_detach_all(ets_ordered *o) {
  keel__ets_obj *all = NULL;
  for (size_t c = 0; c < o->nc; c++) {
    for (size_t i = 0; i < o->c[c]->n; i++) {
      o->c[c]->v[i]->next = all;
      all = o->c[c]->v[i];
    }
    free(o->c[c]);
  }
  o->nc = 0;
  o->n = 0;
  return all;
}

void keel__ord_destroy(ets_ordered *o) {
  keel__ets_obj *all = keel__ord_detach_all(o);
  while (all != NULL) {
    keel__ets_obj *next = all->next;
    keel__ets_obj_free(all);
    all = next;
  }
  free(o->c);
  o->c = NULL;
  o->capc = 0;
}
