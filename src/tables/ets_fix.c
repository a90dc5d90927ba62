/*
 * ets_fix.c - safe_fixtable: fixations counted per process, released by
 * the process or by its death (the layer's one exit hook, armed for every
 * fixer), and shown by keel_ets_safe_fixed.
 *
 * A fixation changes nothing in how the table works: traversals already
 * resume after their last key in a fixed order of keys (the hashed
 * store's (hash, key) order does not change when a stripe grows), so a
 * traversal that is not fixed has the guarantee ETS gives fixed ones, and
 * deletions need not be deferred. Each table keeps its fixers under its
 * own mutex; a process-wide count of fixer entries lets the exit path
 * skip the table scan when nothing is fixed.
 */
#include <stdlib.h>

#include "keel/clock.h"
#include "tables/ets_internal.h"

/* Fixer entries in all tables (0: the exit hook has nothing to do). */
static _Atomic size_t fixers_total;

int keel__ets_fix_init(ets_fix *f) {
  f->v = NULL;
  f->n = f->cap = 0;
  f->since_ns = 0;
  return pthread_mutex_init(&f->lock, NULL) == 0 ? KEEL_OK : KEEL_ENOMEM;
}

void keel__ets_fix_destroy(ets_fix *f) {
  if (f->n > 0)
    atomic_fetch_sub_explicit(&fixers_total, f->n, memory_order_relaxed);
  free(f->v);
  f->v = NULL;
  f->n = f->cap = 0;
  pthread_mutex_destroy(&f->lock);
}

/* Index of pid's entry, or f->n (lock held). */
static size_t find(const ets_fix *f, keel_term pid) {
  size_t i = 0;
  while (i < f->n && f->v[i].pid != pid)
    i++;
  return i;
}

static void drop(ets_fix *f, size_t i) {
  f->v[i] = f->v[--f->n];
  atomic_fetch_sub_explicit(&fixers_total, 1, memory_order_relaxed);
}

static int fix_add(ets_fix *f, keel_term me) {
  size_t i = find(f, me);
  if (i < f->n) {
    f->v[i].n++;
    return KEEL_OK;
  }
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 4;
    ets_fixer *v = realloc(f->v, cap * sizeof *v);
    if (v == NULL)
      return KEEL_ENOMEM;
    f->v = v;
    f->cap = cap;
  }
  if (f->n == 0)
    f->since_ns = keel_monotonic_ns();
  f->v[f->n++] = (ets_fixer){me, 1};
  atomic_fetch_add_explicit(&fixers_total, 1, memory_order_relaxed);
  return KEEL_OK;
}

int keel_ets_safe_fixtable(keel_ets_tab tab, bool fix) {
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__ets_check(t, false);
  keel_term me = keel__ets_caller();
  if (rc == KEEL_OK && fix && me != KEEL_NONE)
    rc = keel__ets_arm(me); /* its death releases the fixation */
  if (me == KEEL_NONE)
    me = KEEL_ATOM(UNDEFINED);
  if (rc == KEEL_OK) {
    pthread_mutex_lock(&t->fix.lock);
    if (fix) {
      rc = fix_add(&t->fix, me);
    } else {
      size_t i = find(&t->fix, me);
      if (i < t->fix.n && --t->fix.v[i].n == 0)
        drop(&t->fix, i);
    }
    pthread_mutex_unlock(&t->fix.lock);
  }
  keel__ets_release(tab);
  return rc == KEEL_ENOPROC ? KEEL_EBADARG : rc;
}

int keel_ets_safe_fixed(keel_ets_tab tab, keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel__ets_table *t;
  int rc = keel__ets_acquire(tab, &t);
  if (rc != KEEL_OK)
    return rc;
  pthread_mutex_lock(&t->fix.lock);
  keel_term l = KEEL_NIL;
  for (size_t i = t->fix.n; i-- > 0 && l != KEEL_NONE;) {
    keel_term e =
        keel_tuple(h, 2, t->fix.v[i].pid, keel_int(h, (int64_t)t->fix.v[i].n));
    l = e == KEEL_NONE ? KEEL_NONE : keel_cons(h, e, l);
  }
  keel_term r = KEEL_ATOM(FALSE);
  if (t->fix.n > 0 && l != KEEL_NONE)
    r = keel_tuple(h, 2, keel_int(h, (int64_t)t->fix.since_ns), l);
  else if (l == KEEL_NONE)
    r = KEEL_NONE;
  pthread_mutex_unlock(&t->fix.lock);
  keel__ets_release(tab);
  if (r == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = r;
  return KEEL_OK;
}

static void fix_exit_one(keel__ets_table *t, void *arg) {
  keel_term pid = *(keel_term *)arg;
  pthread_mutex_lock(&t->fix.lock);
  size_t i = find(&t->fix, pid);
  if (i < t->fix.n)
    drop(&t->fix, i);
  pthread_mutex_unlock(&t->fix.lock);
}

void keel__ets_fix_exit(keel_term pid) {
  if (pid == KEEL_NONE ||
      atomic_load_explicit(&fixers_total, memory_order_relaxed) == 0)
    return;
  keel__ets_each_table(fix_exit_one, &pid);
}
