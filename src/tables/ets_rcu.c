/*
 * ets_rcu.c - read sections for the lock-free reads of set tables, and
 * the deferred freeing of what such a reader may still be looking at
 * (objects unlinked from a set, a stripe's old bucket array, a deleted
 * table).
 *
 * Each thread that reads without locks owns a reader record (allocated on
 * its first read, handed back at thread exit, reused by later threads;
 * records are never freed). Entering a read section stores the global
 * epoch into the record, leaving stores 0. A grace period for everything
 * retired so far: advance the epoch to E, then wait until every record is
 * 0 or at least E. A reader that entered before the advance may hold
 * anything retired before it; one that entered after sees the unlinks.
 *
 * The store that announces a reader must be ordered before the reader's
 * loads of table memory (store-load). With membarrier(2)'s private
 * expedited command the reader pays only a compiler barrier and the
 * grace period runs the system call (which makes every running thread of
 * the process execute a full barrier); without it, the reader issues a
 * full fence. Freeing is batched: retired memory waits in a limbo list
 * and is freed once a later grace period finds the readers gone, without
 * blocking the writer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "tables/ets_internal.h"

/* Retired blocks waiting in the limbo before a grace period is tried. */
#define LIMBO_BATCH 64

_Atomic uint64_t keel__ets_epoch = 1;
_Atomic uint64_t keel__ets_leaked;
bool keel__ets_fast_barrier;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t reader_key;
static keel__ets_reader *_Atomic readers; /* push-only list */
static _Thread_local keel__ets_reader *mine;

typedef struct limbo_vec {
  void **v;
  size_t n, cap;
} limbo_vec;

static struct {
  pthread_mutex_t lock;
  limbo_vec cur; /* retired since the last epoch advance */
  limbo_vec old; /* retired before the advance to old_epoch */
  uint64_t old_epoch;
} limbo = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void reader_gone(void *p) {
  keel__ets_reader *r = p;
  atomic_store_explicit(&r->ctr, 0, memory_order_release);
  atomic_store_explicit(&r->used, false, memory_order_release);
}

static void init_once(void) {
  (void)pthread_key_create(&reader_key, reader_gone);
#if defined(__linux__) && defined(MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&         \
    !defined(__SANITIZE_THREAD__)
  /* (ThreadSanitizer builds keep the reader's fence: it models no
   * membarrier.) */
  long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0,
              0) == 0)
    keel__ets_fast_barrier = true;
#endif
}

static keel__ets_reader *reader_slow(void) {
  pthread_once(&once, init_once);
  keel__ets_reader *r = atomic_load_explicit(&readers, memory_order_acquire);
  for (; r != NULL; r = r->next) {
    bool f = false;
    if (!atomic_load_explicit(&r->used, memory_order_relaxed) &&
        atomic_compare_exchange_strong_explicit(
            &r->used, &f, true, memory_order_acq_rel, memory_order_relaxed))
      break;
  }
  if (r == NULL) {
    r = aligned_alloc(64, sizeof *r);
    if (r == NULL)
      return NULL;
    memset(r, 0, sizeof *r);
    atomic_init(&r->ctr, 0);
    atomic_init(&r->used, true);
    keel__ets_reader *head =
        atomic_load_explicit(&readers, memory_order_relaxed);
    do
      r->next = head;
    while (!atomic_compare_exchange_weak_explicit(
        &readers, &head, r, memory_order_release, memory_order_relaxed));
  }
  if (pthread_setspecific(reader_key, r) != 0) {
    atomic_store_explicit(&r->used, false, memory_order_release);
    return NULL;
  }
  mine = r;
  return r;
}

keel__ets_reader *keel__ets_reader_get(void) {
  return mine != NULL ? mine : reader_slow();
}

static void barrier(void) {
  atomic_thread_fence(memory_order_seq_cst);
#ifdef __linux__
  if (keel__ets_fast_barrier)
    (void)syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#endif
  atomic_thread_fence(memory_order_seq_cst);
}

/* Advances the epoch; returns the new value. Readers that entered before
 * hold a smaller one. */
static uint64_t advance(void) {
  pthread_once(&once, init_once);
  uint64_t e =
      atomic_fetch_add_explicit(&keel__ets_epoch, 1, memory_order_seq_cst) + 1;
  barrier();
  return e;
}

/* Whether no reader is still in a section entered before epoch e. */
static bool readers_past(uint64_t e) {
  for (keel__ets_reader *r =
           atomic_load_explicit(&readers, memory_order_acquire);
       r != NULL; r = r->next) {
    uint64_t c = atomic_load_explicit(&r->ctr, memory_order_acquire);
    if (c != 0 && c < e)
      return false;
  }
  return true;
}

void keel__ets_synchronize(void) {
  uint64_t e = advance();
  while (!readers_past(e))
    sched_yield();
}

static void free_vec(limbo_vec *v) {
  for (size_t i = 0; i < v->n; i++) {
    uintptr_t p = (uintptr_t)v->v[i];
    if (p & 1) /* a slab block (keel__ets_retire) */
      keel__ets_slab_free((void *)(p & ~(uintptr_t)1));
    else if (p & 2) /* a bucket array (keel__ets_arr_tag) */
      keel__ets_arr_free_tagged(v->v[i]);
    else
      free(v->v[i]);
  }
  v->n = 0;
}

/* Limbo lock held: frees the old batch once its readers are gone, then
 * starts a grace period for the current one. */
static void reclaim(void) {
  if (limbo.old.n > 0) {
    if (!readers_past(limbo.old_epoch))
      return;
    free_vec(&limbo.old);
  }
  if (limbo.cur.n == 0)
    return;
  limbo_vec v = limbo.old;
  limbo.old = limbo.cur;
  limbo.cur = v;
  limbo.old_epoch = advance();
  if (readers_past(limbo.old_epoch))
    free_vec(&limbo.old);
}

static int push(limbo_vec *v, void *p) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : LIMBO_BATCH * 2;
    void **nv = realloc(v->v, cap * sizeof *nv);
    if (nv == NULL)
      return KEEL_ENOMEM;
    v->v = nv;
    v->cap = cap;
  }
  v->v[v->n++] = p;
  return KEEL_OK;
}

void keel__ets_defer_free(void *p) {
  if (p == NULL)
    return;
  pthread_mutex_lock(&limbo.lock);
  int rc = push(&limbo.cur, p);
  if (rc == KEEL_OK && limbo.cur.n >= LIMBO_BATCH)
    reclaim();
  pthread_mutex_unlock(&limbo.lock);
  /* No room in the limbo (out of memory): p is leaked, since waiting for
   * the readers here could wait on the caller's own read section or on a
   * writer blocked behind a lock the caller holds. */
  if (rc != KEEL_OK)
    atomic_fetch_add_explicit(&keel__ets_leaked, 1, memory_order_relaxed);
}

int keel__ets_section_enter(keel_ets_tab id, keel__ets_reader **r,
                            keel__ets_table **t) {
  *r = keel__ets_reader_get();
  if (*r == NULL)
    return KEEL_ENOMEM;
  keel__ets_read_enter(*r);
  int rc = keel__ets_peek_table(id, t);
  if (rc != KEEL_OK)
    keel__ets_read_exit(*r);
  return rc;
}

void keel__ets_retire(const keel__ets_table *t, keel__ets_obj *o) {
  if (o == NULL)
    return;
  if (t->type != KEEL_ETS_SET) {
    keel__ets_obj_free(o);
    return;
  }
  /* Counted references go now (readers never follow them); the memory
   * waits for the readers that may be walking past it. */
  if (o->has_off) {
    keel_offheap_release((keel_offheap *)(uintptr_t)o->data[o->words]);
    o->has_off = 0;
  }
  /* (blocks are 8-byte aligned: bit 0 tells the limbo a slab block) */
  keel__ets_defer_free(o->slab ? (void *)((uintptr_t)o | 1) : (void *)o);
}
