/*
 * map.c - the intrusive chained hash map and owned term copies the pubsub
 * layer uses (see pubsub_internal.h).
 */
#include <stdlib.h>

#include "pubsub/pubsub_internal.h"

static size_t slot_of(const ps_map *m, uint64_t hash) {
  return (size_t)((hash ^ (hash >> 31)) & (m->nb - 1));
}

ps_hnode *ps_map_chain(const ps_map *m, uint64_t hash) {
  return m->nb == 0 ? NULL : m->b[slot_of(m, hash)];
}

static int grow(ps_map *m) {
  size_t nb = m->nb == 0 ? 16 : m->nb * 2;
  ps_hnode **b = calloc(nb, sizeof(ps_hnode *));
  if (b == NULL)
    return KEEL_ENOMEM;
  ps_map next = {.b = b, .nb = nb, .n = m->n};
  for (size_t i = 0; i < m->nb; i++)
    for (ps_hnode *e = m->b[i], *nx; e != NULL; e = nx) {
      nx = e->next;
      size_t s = slot_of(&next, e->hash);
      e->next = b[s];
      b[s] = e;
    }
  free(m->b);
  *m = next;
  return KEEL_OK;
}

int ps_map_add(ps_map *m, ps_hnode *node) {
  if (m->n >= m->nb && grow(m) != KEEL_OK && m->nb == 0)
    return KEEL_ENOMEM;
  size_t s = slot_of(m, node->hash);
  node->next = m->b[s];
  m->b[s] = node;
  m->n++;
  return KEEL_OK;
}

void ps_map_del(ps_map *m, ps_hnode *node) {
  ps_hnode **pp = &m->b[slot_of(m, node->hash)];
  while (*pp != node)
    pp = &(*pp)->next;
  *pp = node->next;
  m->n--;
}

void ps_map_free(ps_map *m) {
  free(m->b);
  *m = (ps_map){0};
}

keel_term ps_own(ps_owned *o, keel_term t) {
  *o = (ps_owned){0};
  size_t w = keel_term_copy_words(t);
  if (w == 0)
    return t;
  o->words = malloc(w * sizeof *o->words);
  if (o->words == NULL)
    return KEEL_NONE;
  keel_heap h;
  keel_heap_init_fixed(&h, o->words, w);
  keel_term c = keel_term_copy(&h, t);
  o->off = keel_heap_take_offheap(&h);
  if (c == KEEL_NONE)
    ps_disown(o);
  return c;
}

void ps_disown(ps_owned *o) {
  keel_offheap_release(o->off);
  free(o->words);
  *o = (ps_owned){0};
}
