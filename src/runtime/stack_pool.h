/*
 * stack_pool.h - fiber stacks carved out of slabs, with guard pages
 * (internal).
 *
 * A slab is one anonymous mapping holding `per_slab` stacks, each a guard
 * page followed by `stack_size` usable bytes (stacks grow down, so an
 * overflow faults on its own guard). Guards are installed when a stack is
 * first handed out, by one of two means:
 *
 *   MADVISE   madvise(MADV_GUARD_INSTALL) (Linux 6.13+): the guard lives in
 *             the page tables; the slab stays one mapping (one VMA counted
 *             against vm.max_map_count for all its stacks).
 *   MPROTECT  mprotect(PROT_NONE) on the guard page: splits the slab, two
 *             VMAs per stack, so the map budget caps the number of stacks.
 *
 * AUTO probes the kernel once (a scratch mapping) and uses MADVISE when it
 * works; the environment variable KEEL_STACK_GUARD=mprotect|madvise
 * overrides the probe.
 *
 * Memory: the usable size is address space only; resident memory is the
 * pages a fiber touched. Three tiers hold free stacks:
 *
 *   per-thread caches  owner-only LIFO lists (one per scheduler), no lock,
 *                      at most cache_max stacks each, never trimmed;
 *   the depot          the slabs' own free lists under one mutex; a stack
 *                      entering the depot is trimmed (MADV_DONTNEED below
 *                      its top page) unless the caller says otherwise;
 *   unmapping          a slab whose stacks are all back in the depot is
 *                      unmapped once more than keep_empty such slabs exist.
 *
 * A cache that runs dry takes half a cache's worth from the depot in one
 * lock; a cache that overflows gives its older half back in one lock. A
 * stack may be freed into any cache (the thread that frees it need not be
 * the one that allocated it). Everything else in a pool is thread-safe.
 */
#ifndef KEEL_STACK_POOL_H
#define KEEL_STACK_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* Default usable stack size (64 KiB). */
#define KEEL_STACK_DEFAULT_SIZE ((size_t)64 * 1024)
/* Largest usable stack size a pool accepts (256 MiB). */
#define KEEL_STACK_MAX_SIZE ((size_t)256 * 1024 * 1024)
/* Most stacks in one slab, and the address space a slab aims at. */
#define KEEL_STACK_SLAB_MAX 64u
#define KEEL_STACK_SLAB_BYTES ((size_t)32 * 1024 * 1024)
/* `cache` argument meaning "no per-thread cache: use the depot". */
#define KEEL_STACK_NO_CACHE (~0u)

/* How guard pages are made. */
typedef enum keel__stack_guard {
  KEEL_STACK_GUARD_AUTO = 0, /* probe; see above */
  KEEL_STACK_GUARD_MADVISE,  /* MADV_GUARD_INSTALL: no extra VMA */
  KEEL_STACK_GUARD_MPROTECT  /* PROT_NONE page: two VMAs per stack */
} keel__stack_guard;

/* One stack: usable bytes [lo, lo + size); the guard page lies just below
 * lo. The other fields belong to the pool. */
typedef struct keel__stack {
  void *lo;
  size_t size;
  struct keel__stack *next; /* free list (cache or slab) */
  struct keel__slab *slab;
  bool guarded; /* its guard is installed */
} keel__stack;

/* Memory maps that several pools may charge together: `used` counts the
 * VMAs their slabs may need, `max` bounds it (0: no bound). */
typedef struct keel__stack_budget {
  _Atomic size_t used;
  size_t max;
} keel__stack_budget;

typedef struct keel__stack_pool_opts {
  size_t stack_size;          /* usable bytes; 0: default; rounded to pages */
  unsigned per_slab;          /* 0: KEEL_STACK_SLAB_BYTES / stride in 4..64 */
  unsigned ncaches;           /* per-thread caches (0: none) */
  unsigned cache_max;         /* stacks per cache; 0: 1 MiB / size in 4..64 */
  unsigned keep_empty;        /* fully free slabs kept mapped */
  keel__stack_guard guard;    /* AUTO: probe */
  keel__stack_budget *budget; /* shared map budget, or NULL */
} keel__stack_pool_opts;

typedef struct keel__stack_pool keel__stack_pool;

/* Counters of a pool. Exact when no other thread uses the pool; a
 * snapshot otherwise. */
typedef struct keel__stack_pool_stats {
  size_t live;     /* stacks handed out and not yet freed */
  size_t cached;   /* stacks in per-thread caches */
  size_t free;     /* stacks in the depot (slab free lists, used before) */
  size_t mapped;   /* stacks in mapped slabs, used or not */
  size_t slabs;    /* slabs mapped */
  size_t maps;     /* VMAs charged to the budget for those slabs */
  size_t fresh;    /* allocations of a never-used stack, ever */
  size_t reused;   /* allocations of a stack used before, ever */
  size_t trimmed;  /* stacks trimmed on entering the depot, ever */
  size_t unmapped; /* slabs unmapped because they were free, ever */
  size_t refills;  /* batches moved depot -> cache, ever */
  size_t flushes;  /* batches moved cache -> depot, ever */
} keel__stack_pool_stats;

/* New pool (NULL opts: all defaults). NULL when out of memory, or when
 * stack_size > KEEL_STACK_MAX_SIZE, per_slab > KEEL_STACK_SLAB_MAX or
 * guard is not a keel__stack_guard. Maps nothing until the first
 * allocation. */
keel__stack_pool *keel__stack_pool_new(const keel__stack_pool_opts *opts);

/* Unmap every slab (stacks still live included: their owners must not use
 * them afterwards), release their budget and free the pool. No other
 * thread may use the pool meanwhile. NULL: no-op. */
void keel__stack_pool_destroy(keel__stack_pool *pool);

/* Usable size of the pool's stacks (0 for NULL). */
size_t keel__stack_pool_stack_size(const keel__stack_pool *pool);

/* Guard mechanism the pool uses (never AUTO; AUTO for NULL). */
keel__stack_guard keel__stack_pool_guard(const keel__stack_pool *pool);

/* Size of the guard page below each stack (the system page size). */
size_t keel__stack_guard_size(void);

/* What KEEL_STACK_GUARD_AUTO resolves to on this system now: the
 * KEEL_STACK_GUARD environment variable if it names a mode, else MADVISE
 * when the kernel accepts MADV_GUARD_INSTALL (probed once), else
 * MPROTECT. Thread-safe. */
keel__stack_guard keel__stack_guard_probe(void);

/* A stack with its guard installed, from per-thread cache `cache` (only
 * the thread owning that cache may pass it; KEEL_STACK_NO_CACHE: the
 * depot, any thread). Returns KEEL_OK with *out set; KEEL_EINVAL (NULL
 * pool or out, cache out of range); KEEL_ESYSLIMIT (the map budget, or
 * the kernel's map count, is exhausted); KEEL_ENOMEM (no slab could be
 * mapped). */
int keel__stack_alloc(keel__stack_pool *pool, unsigned cache,
                      keel__stack **out);

/* Give a stack back: into per-thread cache `cache` (owner thread only;
 * its older half goes to the depot when it is full) or, with
 * KEEL_STACK_NO_CACHE, straight to the depot. `trim`: whether stacks
 * entering the depot have their pages below the top one released (false
 * when the pool is about to be destroyed anyway). NULL stack: no-op. */
void keel__stack_free(keel__stack_pool *pool, unsigned cache,
                      keel__stack *stack, bool trim);

/* Current counters of `pool` (all zero for NULL). */
keel__stack_pool_stats keel__stack_pool_get_stats(const keel__stack_pool *pool);

/* Slabs currently mapped by all pools of the process together: each
 * successful mmap of a slab counts one up, each successful munmap one
 * down, so it is 0 once every pool is destroyed. Any thread. */
size_t keel__stack_pool_slabs_mapped(void);

#endif /* KEEL_STACK_POOL_H */
