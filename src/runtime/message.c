/*
 * message.c - message allocation, accounting and recycling.
 *
 * A message is one allocation: header (link, term, off-heap chain) and the
 * flat copy of the term. Small messages (copy of at most RT_POOL_WORDS
 * words: immediates, small tuples) share one size, medium ones (at most
 * RT_POOL_MED_WORDS: a gen_server call with its alias) another, and both
 * are recycled, each class on its own:
 *   - each scheduler keeps an owner-only LIFO cache of free ones;
 *   - when the cache holds RT_POOL_BATCH messages it becomes the spare
 *     batch, or, if there is a spare already (the scheduler frees more than
 *     it allocates, e.g. the receiver of a one-way flood), goes to a global
 *     list of batches under a mutex; a scheduler whose cache and spare are
 *     empty takes a batch from that list before calling malloc.
 * Threads that are not schedulers use malloc and free directly; since every
 * pooled message has its class's size, free() is always valid for it.
 * A boxed term is first copied straight into a medium block (one walk);
 * only when it does not fit is it sized (a second walk) and copied into
 * a block of its size.
 */
#include <stdlib.h>

#include "base/fault.h"
#include "runtime/rt_internal.h"

#define POOLED_BIT ((uintptr_t)1)
#define MEDIUM_BIT ((uintptr_t)2) /* with POOLED_BIT: the medium class */
#define CHAIN_MASK (~(uintptr_t)3)
#define POOL_MAX_BATCHES 64u /* beyond this, surplus goes back to malloc */

static const size_t class_bytes[RT_POOL_CLASSES] = {RT_POOL_BYTES,
                                                    RT_POOL_MED_BYTES};

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

/* Refills s's cache of class c from its spare or the global batches. */
static void pool_refill(rt_node *n, rt_sched *s, unsigned c) {
  if (s->pool_spare[c] != NULL) {
    s->pool[c] = s->pool_spare[c];
    s->pool_spare[c] = NULL;
    s->pool_n[c] = RT_POOL_BATCH;
    return;
  }
  if (atomic_load_explicit(&n->pool_nbatches[c], memory_order_relaxed) == 0)
    return;
  pthread_mutex_lock(&n->pool_lock);
  rt_msg *b = n->pool_batches[c];
  if (b != NULL) {
    n->pool_batches[c] = (rt_msg *)(uintptr_t)b->term;
    atomic_fetch_sub_explicit(&n->pool_nbatches[c], 1, memory_order_relaxed);
    s->pool[c] = b;
    s->pool_n[c] = RT_POOL_BATCH;
  }
  pthread_mutex_unlock(&n->pool_lock);
}

static rt_msg *pool_get(rt_node *n, rt_sched *s, unsigned c) {
  if (s->pool[c] == NULL)
    pool_refill(n, s, c);
  rt_msg *m = s->pool[c];
  if (m != NULL) {
    s->pool[c] = next_of(m);
    s->pool_n[c]--;
    return m;
  }
  return keel__fault() ? NULL : malloc(class_bytes[c]);
}

static void pool_put(rt_node *n, rt_sched *s, unsigned c, rt_msg *m) {
  set_next(m, s->pool[c]);
  s->pool[c] = m;
  if (++s->pool_n[c] < RT_POOL_BATCH)
    return;
  /* A full batch: keep it as the spare, or hand it to the global list. */
  rt_msg *batch = s->pool[c];
  s->pool[c] = NULL;
  s->pool_n[c] = 0;
  if (s->pool_spare[c] == NULL) {
    s->pool_spare[c] = batch;
    return;
  }
  pthread_mutex_lock(&n->pool_lock);
  if (atomic_load_explicit(&n->pool_nbatches[c], memory_order_relaxed) <
      POOL_MAX_BATCHES) {
    batch->term = (keel_term)(uintptr_t)n->pool_batches[c];
    n->pool_batches[c] = batch;
    atomic_fetch_add_explicit(&n->pool_nbatches[c], 1, memory_order_relaxed);
    batch = NULL;
  }
  pthread_mutex_unlock(&n->pool_lock);
  while (batch != NULL) {
    rt_msg *next = next_of(batch);
    free(batch);
    batch = next;
  }
}

/* A block of class c: from s's cache, or malloc outside schedulers. */
static rt_msg *block_get(rt_node *n, rt_sched *s, unsigned c) {
  if (s != NULL)
    return pool_get(n, s, c);
  return keel__fault() ? NULL : malloc(class_bytes[c]);
}

/* Returns block m (its chain already released) to s's cache of its class,
 * or to malloc outside schedulers and for unpooled sizes. */
static void free_block(rt_node *n, rt_sched *s, rt_msg *m) {
  if ((m->extra & POOLED_BIT) != 0 && s != NULL)
    pool_put(n, s, (m->extra & MEDIUM_BIT) != 0 ? 1 : 0, m);
  else
    free(m);
}

/* Copies t into m's words (room for `words`); false when it does not fit
 * (nothing is kept then). */
static bool copy_into(rt_msg *m, keel_term t, size_t words) {
  keel_heap h;
  keel_heap_init_fixed(&h, m->words, words);
  keel_term c = keel_term_copy(&h, t);
  /* The off-heap chain is the only part of the fixed heap to keep. */
  keel_offheap *chain = keel_heap_take_offheap(&h);
  if (c == KEEL_NONE) {
    keel_offheap_release(chain);
    return false;
  }
  m->term = c;
  m->extra |= (uintptr_t)chain;
  return true;
}

/* A message holding boxed term t, tried in a medium block in one pass (no
 * sizing walk); NULL when it does not fit (*fits false) or on
 * out-of-memory (*fits true). */
static rt_msg *msg_medium(rt_node *n, rt_sched *s, keel_term t, bool *fits) {
  rt_msg *m = block_get(n, s, 1);
  *fits = true;
  if (m == NULL)
    return NULL;
  m->extra = POOLED_BIT | MEDIUM_BIT;
  if (copy_into(m, t, RT_POOL_MED_WORDS))
    return m;
  *fits = false;
  if (s != NULL)
    pool_put(n, s, 1, m);
  else
    free(m);
  return NULL;
}

rt_msg *keel__rt_msg_new(rt_node *n, rt_sched *s, keel_term t) {
  rt_msg *m;
  bool small = (t & KEEL_TAG_SMALL) != 0 || t == KEEL_NIL; /* immediate */
  if (keel_is_boxed(t)) { /* a larger top box fails at its first alloc */
    bool fits;
    m = msg_medium(n, s, t, &fits);
    if (m != NULL || fits) /* made, or out of memory */
      goto done;
  }
  size_t words = small ? 0 : keel_term_copy_words(t);
  unsigned c = words <= RT_POOL_WORDS ? 0 : 1;
  if (words <= RT_POOL_MED_WORDS)
    m = block_get(n, s, c);
  else
    m = keel__fault() ? NULL : malloc(sizeof *m + words * sizeof(uint64_t));
  if (m == NULL)
    return NULL;
  m->term = t;
  m->extra = words <= RT_POOL_WORDS       ? POOLED_BIT
             : words <= RT_POOL_MED_WORDS ? POOLED_BIT | MEDIUM_BIT
                                          : 0;
  if (words != 0 && !copy_into(m, t, words)) {
    free_block(n, s, m);
    return NULL;
  }
done:
  if (m == NULL)
    return NULL;
  bump(s != NULL ? &s->msg_alloc : NULL, &n->foreign_alloc);
  return m;
}

void keel__rt_free_msg(rt_msg *m) {
  rt_node *n = keel__rt;
  rt_sched *s = keel__rt_tl_sched;
  /* Drops the message's references to shared binaries and resources. */
  keel_offheap_release((keel_offheap *)(m->extra & CHAIN_MASK));
  free_block(n, s, m);
  bump(s != NULL ? &s->msg_free : NULL, &n->foreign_free);
}

void *keel__rt_rec_alloc(rt_node *n, rt_sched *s) {
  return block_get(n, s, 0);
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
    pool_put(n, s, 0, rec);
  else
    free(rec);
}

static void free_chain(rt_msg *m) {
  while (m != NULL) {
    rt_msg *next = next_of(m);
    free(m);
    m = next;
  }
}

void keel__rt_pool_drain(rt_node *n) {
  for (unsigned c = 0; c < RT_POOL_CLASSES; c++) {
    for (unsigned i = 0; i < n->nsched; i++) {
      rt_sched *s = &n->sched[i];
      free_chain(s->pool[c]);
      free_chain(s->pool_spare[c]);
      s->pool[c] = s->pool_spare[c] = NULL;
      s->pool_n[c] = 0;
    }
    for (rt_msg *b = n->pool_batches[c]; b != NULL;) {
      rt_msg *nb = (rt_msg *)(uintptr_t)b->term;
      free_chain(b);
      b = nb;
    }
    n->pool_batches[c] = NULL;
    atomic_store_explicit(&n->pool_nbatches[c], 0, memory_order_relaxed);
  }
}
