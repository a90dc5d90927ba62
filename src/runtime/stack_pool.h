/*
 * stack_pool.h - mmap'd fiber stacks with guard pages (internal).
 *
 * Each stack is one anonymous mapping: a PROT_NONE guard page at the bottom
 * and `stack_size` usable bytes above it (stacks grow down, so an overflow
 * faults on the guard instead of corrupting a neighbour). Memory cost: the
 * usable size is reserved address space only; resident memory is the pages
 * a fiber has actually touched (typically one or two 4 KiB pages), plus two
 * VMAs (guard and usable part) counted against vm.max_map_count.
 *
 * Freed stacks go to a bounded free list and are handed out again (last
 * freed, first reused); beyond the bound they are unmapped. A pool is not
 * thread-safe: it belongs to one scheduler thread.
 */
#ifndef KEEL_STACK_POOL_H
#define KEEL_STACK_POOL_H

#include <stddef.h>

/* Default usable stack size (64 KiB) and free-list bound. */
#define KEEL_STACK_DEFAULT_SIZE ((size_t)64 * 1024)
#define KEEL_STACK_DEFAULT_CACHE 64
/* Largest usable stack size a pool accepts (256 MiB). */
#define KEEL_STACK_MAX_SIZE ((size_t)256 * 1024 * 1024)

/* One stack: usable bytes [lo, lo + size); the guard page lies just below
 * lo. */
typedef struct keel__stack {
  void *lo;
  size_t size;
  struct keel__stack *next; /* pool internal: live or free list */
  struct keel__stack *prev; /* pool internal: live list */
} keel__stack;

typedef struct keel__stack_pool keel__stack_pool;

/* Counters of a pool. */
typedef struct keel__stack_pool_stats {
  size_t live;     /* stacks handed out and not yet freed */
  size_t cached;   /* stacks on the free list */
  size_t mapped;   /* mappings currently held (live + cached) */
  size_t reused;   /* allocations served from the free list, ever */
  size_t unmapped; /* stacks unmapped because the cache was full, ever */
} keel__stack_pool_stats;

/* New pool of stacks with `stack_size` usable bytes (0: the default; else
 * rounded up to whole pages) keeping at most `max_cached` free stacks.
 * NULL when out of memory or stack_size > KEEL_STACK_MAX_SIZE. */
keel__stack_pool *keel__stack_pool_new(size_t stack_size, size_t max_cached);

/* Unmap every cached stack and free the pool. Stacks still live are
 * unmapped too (their owners must not use them afterwards). NULL: no-op. */
void keel__stack_pool_destroy(keel__stack_pool *pool);

/* Usable size of the pool's stacks (0 for NULL). */
size_t keel__stack_pool_stack_size(const keel__stack_pool *pool);

/* Size of the guard page below each stack (the system page size). */
size_t keel__stack_guard_size(void);

/* A stack, reused from the free list when possible, else freshly mapped.
 * NULL when pool is NULL or the mapping fails (callers report KEEL_ENOMEM;
 * Linux also says ENOMEM when vm.max_map_count is exhausted, so telling
 * KEEL_ESYSLIMIT apart needs the caller's live-stack count). */
keel__stack *keel__stack_alloc(keel__stack_pool *pool);

/* Give a stack back to its pool (cached, or unmapped when the cache is
 * full). NULL stack: no-op. */
void keel__stack_free(keel__stack_pool *pool, keel__stack *stack);

/* Current counters of `pool` (all zero for NULL). */
keel__stack_pool_stats keel__stack_pool_get_stats(const keel__stack_pool *pool);

#endif /* KEEL_STACK_POOL_H */
