/*
 * ext.c - the per-process table of links, monitors and aliases, and the
 * inner message queue (see signal.h). Owner-only: no atomics RMW, no
 * locks.
 *
 * The table is open addressing with linear probing over a power-of-two
 * array, kept at most 3/4 full; deletion shifts the following entries
 * back (no tombstones), so lookups stay short however much a long-lived
 * process links and unlinks.
 */
#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "runtime/signal.h"

#define EXT_MIN_CAP 8u

/* The first table lives in the same allocation as rt_ext (one malloc per
 * process with relations, not two). */
static rt_ent *inline_tab(rt_ext *x) {
  return (rt_ent *)(void *)(x + 1);
}

rt_ext *keel__rt_ext(keel_proc *p) {
  if (p->ext == NULL) {
    rt_ext *x = keel__fault()
                    ? NULL
                    : calloc(1, sizeof *x + EXT_MIN_CAP * sizeof(rt_ent));
    if (x != NULL) {
      x->tab = inline_tab(x);
      x->cap = EXT_MIN_CAP;
    }
    p->ext = x;
  }
  return p->ext;
}

void keel__rt_ext_free(keel_proc *p) {
  rt_ext *x = p->ext;
  if (x == NULL)
    return;
  if (x->tab != inline_tab(x))
    free(x->tab);
  free(x);
  p->ext = NULL;
}

void keel__rt_ext_clear(keel_proc *p) {
  rt_ext *x = p->ext;
  if (x == NULL)
    return;
  if (x->tab != inline_tab(x)) { /* a grown table is not kept */
    keel__rt_ext_free(p);
    return;
  }
  memset(x, 0, sizeof *x + EXT_MIN_CAP * sizeof(rt_ent));
  x->tab = inline_tab(x);
  x->cap = EXT_MIN_CAP;
}

static uint32_t slot_of(uint64_t key, uint32_t cap) {
  key ^= key >> 33;
  key *= UINT64_C(0xff51afd7ed558ccd);
  key ^= key >> 33;
  return (uint32_t)key & (cap - 1);
}

rt_ent *keel__rt_ent_find(rt_ext *x, uint64_t key) {
  if (x == NULL || x->n == 0)
    return NULL;
  for (uint32_t i = slot_of(key, x->cap);; i = (i + 1) & (x->cap - 1)) {
    if (x->tab[i].key == key)
      return &x->tab[i];
    if (x->tab[i].key == 0)
      return NULL;
  }
}

static rt_ent *place(rt_ent *tab, uint32_t cap, uint64_t key) {
  uint32_t i = slot_of(key, cap);
  while (tab[i].key != 0)
    i = (i + 1) & (cap - 1);
  return &tab[i];
}

static bool grow(rt_ext *x) {
  uint32_t cap = x->cap == 0 ? EXT_MIN_CAP : x->cap * 2;
  if (cap == 0)
    return false;
  rt_ent *tab = keel__fault() ? NULL : calloc(cap, sizeof *tab);
  if (tab == NULL)
    return false;
  for (uint32_t i = 0; i < x->cap; i++)
    if (x->tab[i].key != 0)
      *place(tab, cap, x->tab[i].key) = x->tab[i];
  if (x->tab != inline_tab(x))
    free(x->tab);
  x->tab = tab;
  x->cap = cap;
  return true;
}

static uint32_t *counter_of(rt_ext *x, uint64_t key) {
  switch (key >> RT_EK_SHIFT) {
  case RT_EK_LINK:
    return &x->nlinks;
  case RT_EK_MON:
    return &x->nmons;
  case RT_EK_MON_BY:
    return &x->nmon_by;
  default:
    return &x->naliases;
  }
}

rt_ent *keel__rt_ent_add(rt_ext *x, uint64_t key) {
  if ((x->n + 1) * 4 > x->cap * 3 && !grow(x))
    return NULL;
  rt_ent *e = place(x->tab, x->cap, key);
  e->key = key;
  e->peer = 0;
  e->state = 0;
  e->flags = 0;
  e->rec = NULL;
  x->n++;
  (*counter_of(x, key))++;
  return e;
}

void keel__rt_ent_del(rt_ext *x, rt_ent *e) {
  (*counter_of(x, e->key))--;
  x->n--;
  uint32_t mask = x->cap - 1;
  uint32_t i = (uint32_t)(e - x->tab);
  /* Backward shift: move later entries of the probe run into the hole
   * when their home slot does not lie strictly after it. */
  for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (x->tab[j].key == 0)
      break;
    uint32_t home = slot_of(x->tab[j].key, x->cap);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      x->tab[i] = x->tab[j];
      i = j;
    }
  }
  x->tab[i].key = 0;
}

void keel__rt_inner_append(keel_proc *p, rt_msg *m) {
  p->inner_msgs += m->term != KEEL_NONE;
  rt_msg_set_next(m, NULL);
  if (p->inner_tail != NULL)
    rt_msg_set_next(p->inner_tail, m);
  else
    p->inner_head = m;
  p->inner_tail = m;
}

rt_msg *keel__rt_inner_pop(keel_proc *p) {
  rt_msg *m = p->inner_head;
  if (m == NULL)
    return NULL;
  p->inner_msgs -= m->term != KEEL_NONE;
  p->inner_head = rt_msg_next(m);
  if (p->inner_head == NULL)
    p->inner_tail = NULL;
  return m;
}

void keel__rt_inner_unlink(keel_proc *p, rt_msg *prev, rt_msg *m) {
  p->inner_msgs -= m->term != KEEL_NONE;
  rt_msg *next = rt_msg_next(m);
  if (prev != NULL)
    rt_msg_set_next(prev, next);
  else
    p->inner_head = next;
  if (p->inner_tail == m)
    p->inner_tail = prev;
}
