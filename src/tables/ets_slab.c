/*
 * ets_slab.c - 64-byte blocks for small objects (a tuple of up to 3
 * immediates and its 32-byte header), one cache line each.
 *
 * A malloc'd 56-byte object lands at 16 bytes past a line boundary and so
 * straddles two lines, and 100,000s of them spread over as many 4 KiB
 * pages as they fill: a lookup in a large table may pay for two lines and
 * a TLB miss besides the bucket, and each new key pays for a malloc.
 * Blocks here are carved out of 2 MiB regions advised for transparent
 * huge pages, each block on its own line.
 *
 * Each thread keeps a free list and a run of uncarved blocks; a thread
 * with too many free blocks hands a batch of SLAB_BATCH to the global pool
 * (one mutex), a thread with none takes a batch back or carves a new run
 * from the current region, and a thread's blocks (free and uncarved) go
 * to the pool when it exits. Regions are never unmapped (the blocks are
 * reused by later objects of any table). Under AddressSanitizer a free
 * block is poisoned past its first three words (links and count), so a
 * use after free is still reported.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "tables/ets_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* (the three words of a batch's head stay readable) */
#define SLAB_POISON(p)                                                         \
  ASAN_POISON_MEMORY_REGION((char *)(p) + 24, KEEL__ETS_SLAB_BLOCK - 24)
#define SLAB_UNPOISON(p) ASAN_UNPOISON_MEMORY_REGION((p), KEEL__ETS_SLAB_BLOCK)
#else
#define SLAB_POISON(p) ((void)(p))
#define SLAB_UNPOISON(p) ((void)(p))
#endif

#define SLAB_REGION ((size_t)2 << 20)
#define SLAB_BATCH KEEL__ETS_SLAB_BATCH

typedef struct slab_blk {
  struct slab_blk *next;
} slab_blk;

/* A batch in the pool: its first block links the batch's blocks through
 * `next`, the batches through its second word and counts the blocks in
 * its third (so taking a batch does not walk it: a miss per block). */
typedef struct slab_batch {
  slab_blk *next;
  struct slab_batch *next_batch;
  size_t n;
} slab_batch;

static struct {
  pthread_mutex_t lock;
  slab_batch *batches;
  char *cur, *end; /* uncarved part of the current region */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct slab_cache {
  slab_blk *free;
  size_t n;
  char *cur, *end; /* this thread's run of uncarved blocks */
  bool keyed;      /* the exit destructor is armed */
} slab_cache;

static _Thread_local slab_cache cache;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key;
static bool key_ok;

/* Pool lock held: the n blocks linked from head through `next` become a
 * batch. */
static void pool_put(slab_blk *head, size_t n) {
  slab_batch *b = (slab_batch *)head;
  b->n = n;
  b->next_batch = pool.batches;
  pool.batches = b;
}

/* Hands every free block of the exiting thread, and the uncarved rest of
 * its run, to the pool as one batch (a batch may have any size). */
static void cache_gone(void *p) {
  slab_cache *c = p;
  for (; c->cur != c->end; c->cur += KEEL__ETS_SLAB_BLOCK) {
    slab_blk *b = (slab_blk *)(void *)c->cur;
    b->next = c->free;
    SLAB_POISON(b);
    c->free = b;
    c->n++;
  }
  if (c->free == NULL)
    return;
  pthread_mutex_lock(&pool.lock);
  pool_put(c->free, c->n);
  pthread_mutex_unlock(&pool.lock);
  c->free = NULL;
  c->n = 0;
}

static void key_init(void) {
  key_ok = pthread_key_create(&cache_key, cache_gone) == 0;
}

/* Arms the exit destructor that hands the thread's free blocks back. */
static void arm(void) {
  if (cache.keyed)
    return;
  pthread_once(&key_once, key_init);
  if (key_ok && pthread_setspecific(cache_key, &cache) == 0)
    cache.keyed = true;
}

/* A new 2 MiB-aligned region advised for huge pages; NULL on failure. */
static char *region_new(void) {
  size_t len = 2 * SLAB_REGION;
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (m == MAP_FAILED)
    return NULL;
  uintptr_t a =
      ((uintptr_t)m + SLAB_REGION - 1) & ~(uintptr_t)(SLAB_REGION - 1);
  char *r = (char *)a;
  if (r > m)
    munmap(m, (size_t)(r - m));
  if (r + SLAB_REGION < m + len)
    munmap(r + SLAB_REGION, (size_t)(m + len - (r + SLAB_REGION)));
#ifdef MADV_HUGEPAGE
  (void)madvise(r, SLAB_REGION, MADV_HUGEPAGE);
#endif
  return r;
}

/* Refills the thread's cache from the pool: a batch, or a run of blocks
 * carved from the region. false when out of memory. */
static bool refill(void) {
  arm();
  pthread_mutex_lock(&pool.lock);
  slab_batch *b = pool.batches;
  if (b != NULL) {
    pool.batches = b->next_batch;
    pthread_mutex_unlock(&pool.lock);
    cache.free = (slab_blk *)b;
    cache.n = b->n;
    return true;
  }
  size_t run = SLAB_BATCH * KEEL__ETS_SLAB_BLOCK;
  if (pool.cur == NULL || (size_t)(pool.end - pool.cur) < run) {
    char *r = region_new();
    if (r == NULL) {
      pthread_mutex_unlock(&pool.lock);
      return false;
    }
    pool.cur = r;
    pool.end = r + SLAB_REGION;
  }
  cache.cur = pool.cur;
  cache.end = pool.cur + run;
  pool.cur += run;
  pthread_mutex_unlock(&pool.lock);
  return true;
}

void *keel__ets_slab_alloc(void) {
  for (;;) {
    slab_blk *b = cache.free;
    if (b != NULL) {
      SLAB_UNPOISON(b);
      cache.free = b->next;
      cache.n--;
      /* Freed blocks are in any order (a table's objects are freed in
       * hash order): fetch the next one now, so that popping it does not
       * wait for memory. */
      if (cache.free != NULL)
        __builtin_prefetch(cache.free, 1);
      return b;
    }
    if (cache.cur != cache.end) {
      void *p = cache.cur;
      cache.cur += KEEL__ETS_SLAB_BLOCK;
      return p;
    }
    if (!refill())
      return NULL;
  }
}

void keel__ets_slab_free(void *p) {
  if (p == NULL)
    return;
  arm();
  slab_blk *b = p;
  b->next = cache.free;
  SLAB_POISON(b);
  cache.free = b;
  if (++cache.n < 2 * SLAB_BATCH)
    return;
  /* Too many: the first SLAB_BATCH go to the pool as one batch. */
  slab_blk *head = cache.free, *last = head;
  for (size_t i = 1; i < SLAB_BATCH; i++)
    last = last->next;
  cache.free = last->next;
  cache.n -= SLAB_BATCH;
  last->next = NULL;
  pthread_mutex_lock(&pool.lock);
  pool_put(head, SLAB_BATCH);
  pthread_mutex_unlock(&pool.lock);
}
