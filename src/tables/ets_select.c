/*
 * ets_select.c - select, select_count, select_delete, match and
 * match_object: run a compiled match spec over a table.
 *
 * A spec of one clause whose head binds the key completely (no variable in
 * element keypos) reads only that key's objects under its lock; anything
 * else scans the table stripe by stripe (no snapshot across stripes, as a
 * non-fixed ETS traversal).
 */
#include <stdlib.h>

#include "tables/ets_ms.h"

enum { SEL_LIST, SEL_COUNT, SEL_DELETE };

typedef struct sel {
  const keel_ets_ms *ms;
  int mode;
  keel_heap *hp;
  keel_term *v;
  size_t n, cap;
  int64_t count;
} sel;

static int push(sel *s, keel_term x) {
  if (x == KEEL_NONE)
    return KEEL_ENOMEM;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    keel_term *v = realloc(s->v, cap * sizeof *v);
    if (v == NULL)
      return KEEL_ENOMEM;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = x;
  return KEEL_OK;
}

static int visit(keel__ets_obj *o, void *arg) {
  sel *s = arg;
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term r = keel__ms_run(s->ms, keel__ets_obj_term(o), &tmp);
  int rc = 0;
  if (r != KEEL_NONE && s->mode == SEL_LIST) {
    rc = push(s, keel_term_copy(s->hp, r));
  } else if (r == KEEL_ATOM(TRUE)) {
    s->count++;
    rc = s->mode == SEL_DELETE ? 1 : 0;
  }
  keel_heap_destroy(&tmp);
  return rc;
}

keel_term keel__ets_bound_key(const keel_ets_ms *ms, unsigned keypos) {
  if (ms->n != 1 || !keel_is_tuple(ms->c[0].head) ||
      keel_tuple_arity(ms->c[0].head) < keypos)
    return KEEL_NONE;
  keel_term k = keel_tuple_get(ms->c[0].head, keypos - 1);
  return keel__ms_ground(k) ? k : KEEL_NONE;
}

static int visit_key(keel__ets_table *t, keel_term key, sel *s) {
  uint64_t h = keel__ets_hashed(t) ? keel__ets_hash(key) : 0;
  pthread_rwlock_t *l = keel__ets_key_lock(t, h);
  pthread_rwlock_rdlock(l);
  ets_vec g;
  keel__ets_vec_init(&g);
  int rc = keel__ets_group_get(t, key, h, &g);
  for (size_t i = 0; i < g.n && rc >= 0; i++)
    rc = visit(g.v[i], s);
  pthread_rwlock_unlock(l);
  keel__ets_vec_free(&g);
  return rc < 0 ? rc : KEEL_OK;
}

static int run(keel_ets_tab tab, const keel_ets_ms *ms, sel *s) {
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__ets_check(t, s->mode == SEL_DELETE);
  if (rc == KEEL_OK) {
    s->ms = ms;
    keel_term key =
        s->mode == SEL_DELETE ? KEEL_NONE : keel__ets_bound_key(ms, t->keypos);
    if (key != KEEL_NONE)
      rc = visit_key(t, key, s);
    else
      rc = keel__ets_scan(t, s->mode == SEL_DELETE, visit, s);
  }
  keel__ets_release(tab);
  return rc;
}

int keel_ets_select_ms(keel_ets_tab tab, const keel_ets_ms *ms, keel_heap *h,
                       keel_term *out) {
  if (ms == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  sel s = {.mode = SEL_LIST, .hp = h};
  int rc = run(tab, ms, &s);
  if (rc == KEEL_OK) {
    *out = keel_list_from(h, s.n, s.v);
    rc = *out == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  free(s.v);
  return rc;
}

int keel_ets_select(keel_ets_tab tab, keel_term spec, keel_heap *h,
                    keel_term *out) {
  keel_ets_ms *ms;
  int rc = keel_ets_ms_compile(spec, &ms);
  if (rc != KEEL_OK)
    return rc;
  rc = keel_ets_select_ms(tab, ms, h, out);
  keel_ets_ms_free(ms);
  return rc;
}

static int64_t count_or_delete(keel_ets_tab tab, keel_term spec, int mode) {
  keel_ets_ms *ms;
  int rc = keel_ets_ms_compile(spec, &ms);
  if (rc != KEEL_OK)
    return rc;
  sel s = {.mode = mode};
  rc = run(tab, ms, &s);
  keel_ets_ms_free(ms);
  return rc != KEEL_OK ? rc : s.count;
}

int64_t keel_ets_select_count(keel_ets_tab tab, keel_term spec) {
  return count_or_delete(tab, spec, SEL_COUNT);
}

int64_t keel_ets_select_delete(keel_ets_tab tab, keel_term spec) {
  return count_or_delete(tab, spec, SEL_DELETE);
}

/* [{Pattern, [], [Result]}] */
static int match_as_select(keel_ets_tab tab, keel_term pattern,
                           const char *result, keel_heap *h, keel_term *out) {
  if (pattern == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term spec = keel_build(&tmp, "[{~t, [], [~a]}]", pattern, result);
  int rc = spec == KEEL_NONE ? KEEL_ENOMEM : keel_ets_select(tab, spec, h, out);
  keel_heap_destroy(&tmp);
  return rc;
}

int keel_ets_match(keel_ets_tab tab, keel_term pattern, keel_heap *h,
                   keel_term *out) {
  return match_as_select(tab, pattern, "$$", h, out);
}

int keel_ets_match_object(keel_ets_tab tab, keel_term pattern, keel_heap *h,
                          keel_term *out) {
  return match_as_select(tab, pattern, "$_", h, out);
}

int keel_ets_select_reverse(keel_ets_tab tab, keel_term spec, keel_heap *h,
                            keel_term *out) {
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  bool ordered = !keel__ets_hashed(t);
  keel__ets_release(tab);
  keel_term l;
  rc = keel_ets_select(tab, spec, h, &l);
  if (rc != KEEL_OK || !ordered) {
    if (rc == KEEL_OK)
      *out = l;
    return rc;
  }
  keel_term r = KEEL_NIL;
  for (; keel_is_cons(l) && r != KEEL_NONE; l = keel_tl(l))
    r = keel_cons(h, keel_hd(l), r);
  if (r == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = r;
  return KEEL_OK;
}

int64_t keel_ets_match_delete(keel_ets_tab tab, keel_term pattern) {
  if (pattern == KEEL_NONE)
    return KEEL_EINVAL;
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term spec = keel_build(&tmp, "[{~t, [], [true]}]", pattern);
  int64_t rc =
      spec == KEEL_NONE ? KEEL_ENOMEM : keel_ets_select_delete(tab, spec);
  keel_heap_destroy(&tmp);
  return rc;
}
