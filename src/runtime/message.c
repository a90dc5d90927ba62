/*
 * message.c - message allocation, accounting and recycling.
 *
 * A message is one allocation: header (link, term, off-heap chain) and the
 * flat copy of the term. Small messages (copy of at most RT_POOL_WORDS
 * words: immediates, small tuples) all have one size and are recycled:
 *   - each scheduler keeps an owner-only LIFO cache of free ones;
 *   - when the cache holds RT_POOL_BATCH messages it becomes the spare
 *     batch, or, if there is a spare already (the scheduler frees more than
 *     it allocates, e.g. the receiver of a one-way flood), goes to a global
 *     list of batches under a mutex; a scheduler whose cache and spare are
 *     empty takes a batch from that list before calling malloc.
 * Threads that are not schedulers use malloc and free directly; since every
 * pooled message has the pooled size, free() is always valid for it.
 */
#include <stdlib.h>

#include "base/fault.h"
#include "runtime/rt_internal.h"

#define POOLED_BIT ((uintptr_t)1)
#define POOL_BYTES RT_POOL_BYTES
#define POOL_MAX_BATCHES 64u /* beyond this, surplus goes back to malloc */

/* Scheduler threads bump their own counters (owner-only: no RMW needed);
 * other threads share atomic ones. */
static void bump(_Atomic int64_t *own, _Atomic int64_t *foreign) {
  if (own != NULL)
    atomic_store_explicit(own,
                          atomic_load_explicit(own, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  else
    atomic_fetch_add_explicit(foreign, 1, memory_order_relaxed);
}

static rt_msg *next_of(rt_msg *m) {
  return (rt_msg *)atomic_load_explicit(&m->link.next, memory_order_relaxed);
}

static void set_next(rt_msg *m, rt_msg *next) {
  atomic_store_explicit(&m->link.next, next != NULL ? &next->link : NULL,
                        memory_order_relaxed);
}

static rt_msg *pool_get(rt_node *n, rt_sched *s) {
  if (s->pool == NULL) {
    if (s->pool_spare != NULL) {
      s->pool = s->pool_spare;
      s->pool_spare = NULL;
      s->pool_n = RT_POOL_BATCH;
    } else if (atomic_load_explicit(&n->pool_nbatches, memory_order_relaxed) !=
               0) {
      pthread_mutex_lock(&n->pool_lock);
      rt_msg *b = n->pool_batches;
      if (b != NULL) {
        n->pool_batches = (rt_msg *)(uintptr_t)b->term;
        atomic_fetch_sub_explicit(&n->pool_nbatches, 1, memory_order_relaxed);
        s->pool = b;
        s->pool_n = RT_POOL_BATCH;
      }
      pthread_mutex_unlock(&n->pool_lock);
    }
  }
  rt_msg *m = s->pool;
  if (m != NULL) {
    s->pool = next_of(m);
    s->pool_n--;
    return m;
  }
  return keel__fault() ? NULL : malloc(POOL_BYTES);
}

static void pool_put(rt_node *n, rt_sched *s, rt_msg *m) {
  set_next(m, s->pool);
  s->pool = m;
  if (++s->pool_n < RT_POOL_BATCH)
    return;
  /* A full batch: keep it as the spare, or hand it to the global list. */
  rt_msg *batch = s->pool;
  s->pool = NULL;
  s->pool_n = 0;
  if (s->pool_spare == NULL) {
    s->pool_spare = batch;
    return;
  }
  pthread_mutex_lock(&n->pool_lock);
  if (atomic_load_explicit(&n->pool_nbatches, memory_order_relaxed) <
      POOL_MAX_BATCHES) {
    batch->term = (keel_term)(uintptr_t)n->pool_batches;
    n->pool_batches = batch;
    atomic_fetch_add_explicit(&n->pool_nbatches, 1, memory_order_relaxed);
    batch = NULL;
  }
  pthread_mutex_unlock(&n->pool_lock);
  while (batch != NULL) {
    rt_msg *next = next_of(batch);
    free(batch);
    batch = next;
  }
}

rt_msg *keel__rt_msg_new(rt_node *n, rt_sched *s, keel_term t) {
  size_t words = keel_term_copy_words(t);
  bool pooled = words <= RT_POOL_WORDS;
  rt_msg *m;
  if (pooled)
    m = s != NULL ? pool_get(n, s) : keel__fault() ? NULL : malloc(POOL_BYTES);
  else
    m = keel__fault() ? NULL : malloc(sizeof *m + words * sizeof(uint64_t));
  if (m == NULL)
    return NULL;
  m->term = t;
  m->extra = pooled ? POOLED_BIT : 0;
  if (words != 0) {
    keel_heap h;
    keel_heap_init_fixed(&h, m->words, words);
    m->term = keel_term_copy(&h, t);
    /* The off-heap chain is the only part of the fixed heap to keep. */
    keel_offheap *chain = keel_heap_take_offheap(&h);
    if (m->term == KEEL_NONE) {
      keel_offheap_release(chain);
      free(m);
      return NULL;
    }
    m->extra |= (uintptr_t)chain;
  }
  bump(s != NULL ? &s->msg_alloc : NULL, &n->foreign_alloc);
  return m;
}

void keel__rt_free_msg(rt_msg *m) {
  rt_node *n = keel__rt;
  rt_sched *s = keel__rt_tl_sched;
  /* Drops the message's references to shared binaries and resources. */
  keel_offheap_release((keel_offheap *)(m->extra & ~POOLED_BIT));
  if ((m->extra & POOLED_BIT) != 0 && s != NULL)
    pool_put(n, s, m);
  else
    free(m);
  bump(s != NULL ? &s->msg_free : NULL, &n->foreign_free);
}

void *keel__rt_rec_alloc(rt_node *n, rt_sched *s) {
  return s != NULL ? pool_get(n, s) : malloc(POOL_BYTES);
}

rt_msg *keel__rt_rec_to_msg(rt_node *n, rt_sched *s, void *rec, keel_term t) {
  rt_msg *m = rec;
  keel_heap h;
  keel_heap_init_fixed(&h, m->words, RT_POOL_WORDS);
  m->term = keel_term_copy(&h, t); /* immediates only: no off-heap part */
  m->extra = POOLED_BIT;
  bump(s != NULL ? &s->msg_alloc : NULL, &n->foreign_alloc);
  return m;
}

void keel__rt_rec_free(rt_node *n, rt_sched *s, void *rec) {
  if (s != NULL)
    pool_put(n, s, rec);
  else
    free(rec);
}

void keel__rt_pool_drain(rt_node *n) {
  for (unsigned i = 0; i < n->nsched; i++) {
    for (rt_msg *m = n->sched[i].pool; m != NULL;) {
      rt_msg *next = next_of(m);
      free(m);
      m = next;
    }
    for (rt_msg *m = n->sched[i].pool_spare; m != NULL;) {
      rt_msg *next = next_of(m);
      free(m);
      m = next;
    }
    n->sched[i].pool = n->sched[i].pool_spare = NULL;
    n->sched[i].pool_n = 0;
  }
  for (rt_msg *b = n->pool_batches; b != NULL;) {
    rt_msg *nb = (rt_msg *)(uintptr_t)b->term;
    for (rt_msg *m = b; m != NULL;) {
      rt_msg *next = next_of(m);
      free(m);
      m = next;
    }
    b = nb;
  }
  n->pool_batches = NULL;
  atomic_store_explicit(&n->pool_nbatches, 0, memory_order_relaxed);
}
