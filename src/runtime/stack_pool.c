/*
 * stack_pool.c - fiber stacks carved out of slabs (see stack_pool.h).
 *
 * Locking: the depot (every slab's free list, the slab lists and the
 * counters below `lock`) is guarded by the pool's mutex. A per-thread cache
 * is touched only by its owner; its counters are atomics so that stats may
 * read them from elsewhere. System calls (mmap, munmap, guard installs,
 * trims) run outside the mutex.
 */
#include "runtime/stack_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "keel/error.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEL_POOL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(KEEL_POOL_ASAN)
#define KEEL_POOL_ASAN 1
#endif
#ifdef KEEL_POOL_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef MAP_STACK
#define MAP_STACK 0
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
/* Linux 6.13 (uapi asm-generic/mman-common.h); older headers lack it. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define CACHE_BYTES ((size_t)1024 * 1024) /* default cache bound, bytes */

typedef struct keel__slab {
  struct keel__slab *next, *prev;         /* avail list */
  struct keel__slab *all_next, *all_prev; /* every slab */
  char *base;
  keel__stack *free; /* returned stacks (LIFO) */
  unsigned nfree;
  unsigned bump; /* stacks [bump, per_slab) never handed out */
  keel__stack stacks[];
} keel__slab;

/* One per-thread cache, alone on its cache line(s). */
typedef struct stack_cache {
  keel__stack *head;
  _Atomic size_t n;      /* stacks held; owner-written */
  _Atomic size_t allocs; /* allocations served; owner-written */
} __attribute__((aligned(64))) stack_cache;

struct keel__stack_pool {
  size_t stack_size; /* usable bytes, whole pages */
  size_t guard;      /* guard bytes (one page) */
  size_t stride;     /* guard + stack_size */
  unsigned per_slab;
  unsigned ncaches;
  unsigned cache_max;
  unsigned keep_empty;
  keel__stack_guard mode;
  size_t slab_maps; /* VMAs one slab may need */
  keel__stack_budget *budget;
  stack_cache *caches;
  pthread_mutex_t lock;
  /* Under lock. */
  keel__slab *avail_head, *avail_tail; /* slabs with a stack to hand out */
  keel__slab *all;
  size_t nempty; /* slabs whose used stacks are all back */
  size_t nfree;  /* stacks on slab free lists */
  size_t unused; /* stacks never handed out */
  size_t mapped, slabs;
  size_t fresh, depot_allocs, trimmed, unmapped, refills, flushes;
};

/* ---- probe ------------------------------------------------------------- */

static _Atomic int kernel_guard; /* 0: not probed yet, else the mode */

size_t keel__stack_guard_size(void) {
  long pg = sysconf(_SC_PAGESIZE);
  return pg > 0 ? (size_t)pg : 4096;
}

/* Whether madvise(MADV_GUARD_INSTALL) works, tried on a scratch mapping. */
static keel__stack_guard kernel_probe(void) {
  int v = atomic_load_explicit(&kernel_guard, memory_order_relaxed);
  if (v != 0)
    return (keel__stack_guard)v;
  size_t pg = keel__stack_guard_size();
  char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return KEEL_STACK_GUARD_MPROTECT; /* not cached: try again later */
  v = madvise(m, pg, MADV_GUARD_INSTALL) == 0 ? KEEL_STACK_GUARD_MADVISE
                                              : KEEL_STACK_GUARD_MPROTECT;
  munmap(m, 2 * pg);
  atomic_store_explicit(&kernel_guard, v, memory_order_relaxed);
  return (keel__stack_guard)v;
}

keel__stack_guard keel__stack_guard_probe(void) {
  const char *env = getenv("KEEL_STACK_GUARD");
  if (env != NULL && strcmp(env, "mprotect") == 0)
    return KEEL_STACK_GUARD_MPROTECT;
  return kernel_probe();
}

/* ---- pool -------------------------------------------------------------- */

static unsigned clamp_u(size_t v, unsigned lo, unsigned hi) {
  return v < lo ? lo : v > hi ? hi : (unsigned)v;
}

keel__stack_pool *keel__stack_pool_new(const keel__stack_pool_opts *opts) {
  keel__stack_pool_opts o = {0};
  if (opts != NULL)
    o = *opts;
  if (o.stack_size > KEEL_STACK_MAX_SIZE || o.per_slab > KEEL_STACK_SLAB_MAX ||
      o.guard > KEEL_STACK_GUARD_MPROTECT)
    return NULL;
  size_t pg = keel__stack_guard_size();
  size_t size = o.stack_size == 0 ? KEEL_STACK_DEFAULT_SIZE : o.stack_size;
  size = (size + pg - 1) / pg * pg;
  keel__stack_pool *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->stack_size = size;
  p->guard = pg;
  p->stride = pg + size;
  p->per_slab = o.per_slab != 0 ? o.per_slab
                                : clamp_u(KEEL_STACK_SLAB_BYTES / p->stride, 4,
                                          KEEL_STACK_SLAB_MAX);
  p->ncaches = o.ncaches;
  p->cache_max =
      o.cache_max != 0 ? o.cache_max : clamp_u(CACHE_BYTES / size, 4, 64);
  p->keep_empty = o.keep_empty;
  p->mode =
      o.guard != KEEL_STACK_GUARD_AUTO ? o.guard : keel__stack_guard_probe();
  p->slab_maps = p->mode == KEEL_STACK_GUARD_MADVISE ? 1 : 2 * p->per_slab;
  p->budget = o.budget;
  if (p->ncaches > 0) {
    size_t bytes = sizeof(stack_cache) * p->ncaches;
    p->caches = aligned_alloc(64, bytes);
    if (p->caches == NULL) {
      free(p);
      return NULL;
    }
    memset(p->caches, 0, bytes);
  }
  pthread_mutex_init(&p->lock, NULL);
  return p;
}

static void budget_release(keel__stack_pool *p) {
  if (p->budget != NULL)
    atomic_fetch_sub_explicit(&p->budget->used, p->slab_maps,
                              memory_order_relaxed);
}

/* Slabs mapped by every pool of the process, less those unmapped. */
static atomic_size_t slabs_mapped;

size_t keel__stack_pool_slabs_mapped(void) {
  return atomic_load_explicit(&slabs_mapped, memory_order_relaxed);
}

/* Unmaps an unlinked slab and frees its header. */
static void slab_unmap(keel__stack_pool *p, keel__slab *s) {
  if (munmap(s->base, p->stride * p->per_slab) == 0)
    atomic_fetch_sub_explicit(&slabs_mapped, 1, memory_order_relaxed);
  budget_release(p);
  free(s);
}

void keel__stack_pool_destroy(keel__stack_pool *pool) {
  if (pool == NULL)
    return;
  for (keel__slab *s = pool->all, *n; s != NULL; s = n) {
    n = s->all_next;
    slab_unmap(pool, s);
  }
  pthread_mutex_destroy(&pool->lock);
  free(pool->caches);
  free(pool);
}

size_t keel__stack_pool_stack_size(const keel__stack_pool *pool) {
  return pool != NULL ? pool->stack_size : 0;
}

keel__stack_guard keel__stack_pool_guard(const keel__stack_pool *pool) {
  return pool != NULL ? pool->mode : KEEL_STACK_GUARD_AUTO;
}

/* ---- slabs ------------------------------------------------------------- */

/* Maps a new slab (no lock held). KEEL_OK with *out set, or an error. */
static int slab_map(keel__stack_pool *p, keel__slab **out) {
  if (p->budget != NULL) {
    size_t was = atomic_fetch_add_explicit(&p->budget->used, p->slab_maps,
                                           memory_order_relaxed);
    if (p->budget->max != 0 && was + p->slab_maps > p->budget->max) {
      budget_release(p);
      return KEEL_ESYSLIMIT;
    }
  }
  size_t len = p->stride * p->per_slab;
  char *base =
      mmap(NULL, len, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  keel__slab *s = NULL;
  if (base != MAP_FAILED)
    s = calloc(1, sizeof *s + sizeof(keel__stack) * p->per_slab);
  if (s == NULL) {
    if (base != MAP_FAILED)
      munmap(base, len);
    budget_release(p);
    return KEEL_ENOMEM;
  }
#ifdef MADV_NOHUGEPAGE
  (void)madvise(base, len, MADV_NOHUGEPAGE); /* a stack touches 4 KiB */
#endif
  s->base = base;
  atomic_fetch_add_explicit(&slabs_mapped, 1, memory_order_relaxed);
  for (unsigned i = 0; i < p->per_slab; i++) {
    s->stacks[i].lo = base + (size_t)i * p->stride + p->guard;
    s->stacks[i].size = p->stack_size;
    s->stacks[i].slab = s;
  }
  *out = s;
  return KEEL_OK;
}

static void avail_unlink(keel__stack_pool *p, keel__slab *s) {
  if (s->prev != NULL)
    s->prev->next = s->next;
  else
    p->avail_head = s->next;
  if (s->next != NULL)
    s->next->prev = s->prev;
  else
    p->avail_tail = s->prev;
  s->next = s->prev = NULL;
}

static void avail_push_head(keel__stack_pool *p, keel__slab *s) {
  s->prev = NULL;
  s->next = p->avail_head;
  if (p->avail_head != NULL)
    p->avail_head->prev = s;
  else
    p->avail_tail = s;
  p->avail_head = s;
}

static void avail_push_tail(keel__stack_pool *p, keel__slab *s) {
  s->next = NULL;
  s->prev = p->avail_tail;
  if (p->avail_tail != NULL)
    p->avail_tail->next = s;
  else
    p->avail_head = s;
  p->avail_tail = s;
}

/* Whether s has a stack to hand out (then it is on the avail list). */
static bool slab_avail(const keel__stack_pool *p, const keel__slab *s) {
  return s->free != NULL || s->bump < p->per_slab;
}

/* Under lock: adds a freshly mapped slab. */
static void depot_add_slab(keel__stack_pool *p, keel__slab *s) {
  s->all_prev = NULL;
  s->all_next = p->all;
  if (p->all != NULL)
    p->all->all_prev = s;
  p->all = s;
  avail_push_head(p, s);
  p->mapped += p->per_slab;
  p->unused += p->per_slab;
  p->slabs++;
  p->nempty++;
}

/* Under lock: a stack from the depot (a returned one first), or NULL. */
static keel__stack *depot_take(keel__stack_pool *p) {
  keel__slab *s = p->avail_head;
  if (s == NULL)
    return NULL;
  if (s->nfree == s->bump)
    p->nempty--;
  keel__stack *st;
  if (s->free != NULL) {
    st = s->free;
    s->free = st->next;
    s->nfree--;
    p->nfree--;
  } else {
    st = &s->stacks[s->bump++];
    p->unused--;
    p->fresh++;
  }
  if (!slab_avail(p, s))
    avail_unlink(p, s);
  st->next = NULL;
  return st;
}

/* Under lock: returns st to its slab. Returns the slab when it became free
 * and is to be unmapped (already unlinked), else NULL. */
static keel__slab *depot_put(keel__stack_pool *p, keel__stack *st) {
  keel__slab *s = st->slab;
  bool was_avail = slab_avail(p, s);
  st->next = s->free;
  s->free = st;
  s->nfree++;
  p->nfree++;
  if (s->nfree != s->bump) {
    if (!was_avail)
      avail_push_head(p, s); /* partly used slabs are handed out first */
    return NULL;
  }
  if (was_avail)
    avail_unlink(p, s);
  if (p->nempty + 1 <= p->keep_empty) {
    p->nempty++;
    avail_push_tail(p, s); /* free slabs last */
    return NULL;
  }
  if (s->all_prev != NULL)
    s->all_prev->all_next = s->all_next;
  else
    p->all = s->all_next;
  if (s->all_next != NULL)
    s->all_next->all_prev = s->all_prev;
  p->nfree -= s->nfree;
  p->unused -= p->per_slab - s->bump;
  p->mapped -= p->per_slab;
  p->slabs--;
  p->unmapped++;
  return s;
}

/* ---- guards and trimming ----------------------------------------------- */

/* Installs st's guard page. KEEL_OK, KEEL_ESYSLIMIT (mprotect could not
 * split the mapping: map count exhausted) or KEEL_ENOMEM. */
static int guard_install(const keel__stack_pool *p, keel__stack *st) {
  char *g = (char *)st->lo - p->guard;
  for (int tries = 0; tries < 8; tries++) {
    int rc = p->mode == KEEL_STACK_GUARD_MADVISE
                 ? madvise(g, p->guard, MADV_GUARD_INSTALL)
                 : mprotect(g, p->guard, PROT_NONE);
    if (rc == 0) {
      st->guarded = true;
      return KEEL_OK;
    }
    if (errno != EAGAIN && errno != EINTR)
      break;
  }
  return errno == ENOMEM && p->mode == KEEL_STACK_GUARD_MPROTECT
             ? KEEL_ESYSLIMIT
             : KEEL_ENOMEM;
}

/* Releases the resident pages of st below its top page (the one a new
 * fiber touches first). mincore finds them first: most fibers never left
 * their top page, and a needless MADV_DONTNEED still costs a TLB
 * shoot-down on every CPU running the process. Returns whether it
 * released any. */
static bool trim(const keel__stack_pool *p, keel__stack *st) {
  enum { CHUNK = 256 }; /* pages per mincore call */
  unsigned char vec[CHUNK];
  char *lo = st->lo;
  size_t pages = st->size / p->guard - 1;
  bool any = false;
  for (size_t i = 0; i < pages; i += CHUNK) {
    size_t n = pages - i < CHUNK ? pages - i : CHUNK;
    char *at = lo + i * p->guard;
    bool resident = mincore(at, n * p->guard, vec) != 0; /* unsure: trim */
    for (size_t k = 0; k < n && !resident; k++)
      resident = (vec[k] & 1) != 0;
    if (resident && madvise(at, n * p->guard, MADV_DONTNEED) == 0)
      any = true;
  }
  return any;
}

/* Returns a chain of stacks (linked by next) to the depot, trimming each
 * first when asked, and unmaps the slabs that became free. */
static void depot_return(keel__stack_pool *p, keel__stack *chain, bool do_trim,
                         bool is_flush) {
  size_t trimmed = 0;
  if (do_trim)
    for (keel__stack *st = chain; st != NULL; st = st->next)
      trimmed += trim(p, st);
  keel__slab *dead = NULL;
  pthread_mutex_lock(&p->lock);
  p->trimmed += trimmed;
  p->flushes += is_flush;
  while (chain != NULL) {
    keel__stack *next = chain->next;
    keel__slab *s = depot_put(p, chain);
    if (s != NULL) {
      s->next = dead;
      dead = s;
    }
    chain = next;
  }
  pthread_mutex_unlock(&p->lock);
  while (dead != NULL) {
    keel__slab *next = dead->next;
    slab_unmap(p, dead);
    dead = next;
  }
}

/* ---- allocation -------------------------------------------------------- */

/* Takes up to `want` stacks from the depot, mapping a slab when it is
 * empty; `refill`: for a cache (else one stack for a caller without one).
 * Returns KEEL_OK with a non-empty chain in *out and its length in *got,
 * or an error. */
static int depot_get(keel__stack_pool *p, unsigned want, bool refill,
                     keel__stack **out, size_t *got) {
  keel__slab *fresh = NULL;
  for (;;) {
    keel__stack *chain = NULL;
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    if (fresh != NULL)
      depot_add_slab(p, fresh);
    fresh = NULL;
    for (keel__stack *st; n < want && (st = depot_take(p)) != NULL; n++) {
      st->next = chain;
      chain = st;
    }
    if (refill)
      p->refills += n > 0;
    else
      p->depot_allocs += n;
    pthread_mutex_unlock(&p->lock);
    if (n > 0) {
      *out = chain;
      *got = n;
      return KEEL_OK;
    }
    /* Empty (other threads may have taken a slab just added). */
    int rc = slab_map(p, &fresh);
    if (rc != KEEL_OK)
      return rc;
  }
}

/* Pops a stack from cache c, refilling it from the depot when empty. */
static int cache_pop(keel__stack_pool *p, stack_cache *c, keel__stack **out) {
  size_t n = atomic_load_explicit(&c->n, memory_order_relaxed);
  if (c->head == NULL) {
    unsigned want = p->cache_max / 2 > 0 ? p->cache_max / 2 : 1;
    int rc = depot_get(p, want, true, &c->head, &n);
    if (rc != KEEL_OK)
      return rc;
  }
  keel__stack *st = c->head;
  c->head = st->next;
  atomic_store_explicit(&c->n, n - 1, memory_order_relaxed);
  atomic_store_explicit(
      &c->allocs, atomic_load_explicit(&c->allocs, memory_order_relaxed) + 1,
      memory_order_relaxed);
  *out = st;
  return KEEL_OK;
}

int keel__stack_alloc(keel__stack_pool *pool, unsigned cache,
                      keel__stack **out) {
  if (pool == NULL || out == NULL ||
      (cache != KEEL_STACK_NO_CACHE && cache >= pool->ncaches))
    return KEEL_EINVAL;
  keel__stack *st;
  size_t got;
  int rc = cache == KEEL_STACK_NO_CACHE
               ? depot_get(pool, 1, false, &st, &got)
               : cache_pop(pool, &pool->caches[cache], &st);
  if (rc != KEEL_OK)
    return rc;
  st->next = NULL;
  if (!st->guarded) {
    rc = guard_install(pool, st);
    if (rc != KEEL_OK) {
      depot_return(pool, st, false, false);
      return rc;
    }
  }
  *out = st;
  return KEEL_OK;
}

void keel__stack_free(keel__stack_pool *pool, unsigned cache,
                      keel__stack *stack, bool do_trim) {
  if (pool == NULL || stack == NULL)
    return;
#ifdef KEEL_POOL_ASAN
  /* A finished fiber leaves its frames' redzones poisoned. */
  __asan_unpoison_memory_region(stack->lo, stack->size);
#endif
  if (cache == KEEL_STACK_NO_CACHE || cache >= pool->ncaches) {
    stack->next = NULL;
    depot_return(pool, stack, do_trim, false);
    return;
  }
  stack_cache *c = &pool->caches[cache];
  stack->next = c->head;
  c->head = stack;
  size_t n = atomic_load_explicit(&c->n, memory_order_relaxed) + 1;
  if (n > pool->cache_max) {
    /* Keep the warmer (more recently freed) half; return the rest. */
    size_t keep = pool->cache_max / 2;
    keel__stack *cut = c->head;
    for (size_t i = 1; i < keep; i++)
      cut = cut->next;
    keel__stack *cold = keep > 0 ? cut->next : c->head;
    if (keep > 0)
      cut->next = NULL;
    else
      c->head = NULL;
    depot_return(pool, cold, do_trim, true);
    n = keep;
  }
  atomic_store_explicit(&c->n, n, memory_order_relaxed);
}

keel__stack_pool_stats
keel__stack_pool_get_stats(const keel__stack_pool *pool) {
  keel__stack_pool_stats st = {0};
  if (pool == NULL)
    return st;
  size_t cache_allocs = 0;
  for (unsigned i = 0; i < pool->ncaches; i++) {
    st.cached += atomic_load_explicit(&pool->caches[i].n, memory_order_relaxed);
    cache_allocs +=
        atomic_load_explicit(&pool->caches[i].allocs, memory_order_relaxed);
  }
  keel__stack_pool *p = (keel__stack_pool *)pool; /* the lock only */
  pthread_mutex_lock(&p->lock);
  st.free = p->nfree;
  st.mapped = p->mapped;
  st.slabs = p->slabs;
  st.maps = p->slabs * p->slab_maps;
  st.fresh = p->fresh;
  st.trimmed = p->trimmed;
  st.unmapped = p->unmapped;
  st.refills = p->refills;
  st.flushes = p->flushes;
  size_t allocs = p->depot_allocs + cache_allocs;
  size_t idle = p->unused + p->nfree + st.cached;
  pthread_mutex_unlock(&p->lock);
  st.reused = allocs > st.fresh ? allocs - st.fresh : 0;
  st.live = st.mapped > idle ? st.mapped - idle : 0;
  return st;
}
