/*
 * stack_pool.c - mmap'd fiber stacks with guard pages (see stack_pool.h).
 */
#include "runtime/stack_pool.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

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

struct keel__stack_pool {
  size_t stack_size; /* usable bytes, whole pages */
  size_t guard;      /* guard bytes (one page) */
  size_t max_cached; /* free-list bound */
  keel__stack *free; /* cached stacks (singly linked) */
  keel__stack *live; /* handed-out stacks (doubly linked) */
  keel__stack_pool_stats st;
};

size_t keel__stack_guard_size(void) {
  long pg = sysconf(_SC_PAGESIZE);
  return pg > 0 ? (size_t)pg : 4096;
}

keel__stack_pool *keel__stack_pool_new(size_t stack_size, size_t max_cached) {
  if (stack_size > KEEL_STACK_MAX_SIZE)
    return NULL;
  size_t pg = keel__stack_guard_size();
  if (stack_size == 0)
    stack_size = KEEL_STACK_DEFAULT_SIZE;
  stack_size = (stack_size + pg - 1) / pg * pg;
  keel__stack_pool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->stack_size = stack_size;
  p->guard = pg;
  p->max_cached = max_cached;
  return p;
}

/* Unmap a stack's mapping (guard included) and free its descriptor. */
static void stack_unmap(const keel__stack_pool *p, keel__stack *s) {
  char *base = (char *)s->lo - p->guard;
  munmap(base, p->guard + p->stack_size);
  free(s);
}

void keel__stack_pool_destroy(keel__stack_pool *pool) {
  if (!pool)
    return;
  for (keel__stack *s = pool->free, *n; s; s = n) {
    n = s->next;
    stack_unmap(pool, s);
  }
  for (keel__stack *s = pool->live, *n; s; s = n) {
    n = s->next;
    stack_unmap(pool, s);
  }
  free(pool);
}

size_t keel__stack_pool_stack_size(const keel__stack_pool *pool) {
  return pool ? pool->stack_size : 0;
}

/* Map a new stack: whole region read-write, then the lowest page
 * PROT_NONE. NULL on failure. */
static keel__stack *stack_map(const keel__stack_pool *p) {
  keel__stack *s = malloc(sizeof *s);
  if (!s)
    return NULL;
  size_t total = p->guard + p->stack_size;
  char *base =
      mmap(NULL, total, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    free(s);
    return NULL;
  }
  if (mprotect(base, p->guard, PROT_NONE) != 0) {
    munmap(base, total);
    free(s);
    return NULL;
  }
  s->lo = base + p->guard;
  s->size = p->stack_size;
  s->next = s->prev = NULL;
  return s;
}

keel__stack *keel__stack_alloc(keel__stack_pool *pool) {
  if (!pool)
    return NULL;
  keel__stack *s = pool->free;
  if (s) {
    pool->free = s->next;
    pool->st.cached--;
    pool->st.reused++;
  } else {
    s = stack_map(pool);
    if (!s)
      return NULL;
    pool->st.mapped++;
  }
  s->prev = NULL;
  s->next = pool->live;
  if (pool->live)
    pool->live->prev = s;
  pool->live = s;
  pool->st.live++;
  return s;
}

void keel__stack_free(keel__stack_pool *pool, keel__stack *stack) {
  if (!pool || !stack)
    return;
  if (stack->prev)
    stack->prev->next = stack->next;
  else
    pool->live = stack->next;
  if (stack->next)
    stack->next->prev = stack->prev;
  pool->st.live--;
#ifdef KEEL_POOL_ASAN
  /* A finished fiber leaves its frames' redzones poisoned. */
  __asan_unpoison_memory_region(stack->lo, stack->size);
#endif
  if (pool->st.cached >= pool->max_cached) {
    stack_unmap(pool, stack);
    pool->st.mapped--;
    pool->st.unmapped++;
    return;
  }
  stack->prev = NULL;
  stack->next = pool->free;
  pool->free = stack;
  pool->st.cached++;
}

keel__stack_pool_stats
keel__stack_pool_get_stats(const keel__stack_pool *pool) {
  keel__stack_pool_stats z = {0};
  return pool ? pool->st : z;
}
