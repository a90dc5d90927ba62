/*
 * ets_arrays.c - bucket arrays of the hashed store, on huge pages.
 *
 * A set's bucket array holds a 64-byte line per bucket (ets_internal.h),
 * so a 100,000-key set has 8 MiB of them in 64 arrays of 128 KiB: from
 * malloc, each on 4 KiB pages, a lookup's one cache miss would come with
 * a TLB miss. Arrays of 4 KiB to 2 MiB (powers of two) are carved here
 * out of 2 MiB regions advised for transparent huge pages, with one free
 * list per size (one mutex: arrays change only when a stripe doubles);
 * larger ones are mapped alone, 2 MiB-aligned and advised likewise, and
 * unmapped when freed. Smaller ones come from aligned_alloc. Region
 * memory is reused by later arrays of any table, never returned to the
 * system. Every array carved here is 4 KiB-aligned, which leaves room in
 * its address for keel__ets_defer_free's tag (see keel__ets_arr_tag).
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
#define ARR_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ARR_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ARR_POISON(p, n) ((void)(p), (void)(n))
#define ARR_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARR_MIN_SHIFT 12 /* 4 KiB */
#define ARR_REGION_SHIFT 21
#define ARR_REGION ((size_t)1 << ARR_REGION_SHIFT)

typedef struct arr_free {
  struct arr_free *next;
} arr_free;

static struct {
  pthread_mutex_t lock;
  arr_free *free[ARR_REGION_SHIFT + 1]; /* by log2 of the size */
  char *cur, *end;                      /* uncarved part of the region */
} arr = {.lock = PTHREAD_MUTEX_INITIALIZER};

static unsigned log2_of(size_t size) {
  return (unsigned)__builtin_ctzll((unsigned long long)size);
}

/* len bytes (a multiple of 2 MiB) mapped at a 2 MiB boundary and advised
 * for huge pages; NULL on failure. */
static char *map_aligned(size_t len) {
  size_t span = len + ARR_REGION;
  char *m = mmap(NULL, span, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return NULL;
  char *r =
      (char *)(((uintptr_t)m + ARR_REGION - 1) & ~(uintptr_t)(ARR_REGION - 1));
  if (r > m)
    munmap(m, (size_t)(r - m));
  if (r + len < m + span)
    munmap(r + len, (size_t)(m + span - (r + len)));
#ifdef MADV_HUGEPAGE
  (void)madvise(r, len, MADV_HUGEPAGE);
#endif
  return r;
}

/* Lock held: frees what is left of the region into the free lists (in
 * the largest power-of-two pieces that fit). */
static void region_retire(void) {
  while (arr.cur != NULL &&
         (size_t)(arr.end - arr.cur) >= (1u << ARR_MIN_SHIFT)) {
    size_t left = (size_t)(arr.end - arr.cur);
    unsigned k = 63 - (unsigned)__builtin_clzll((unsigned long long)left);
    arr_free *f = (arr_free *)(void *)arr.cur;
    f->next = arr.free[k];
    arr.free[k] = f;
    ARR_POISON((char *)f + sizeof *f, ((size_t)1 << k) - sizeof *f);
    arr.cur += (size_t)1 << k;
  }
}

void *keel__ets_arr_alloc(size_t size) {
  if (size < ((size_t)1 << ARR_MIN_SHIFT))
    return aligned_alloc(64, size);
  if (size > ARR_REGION)
    return map_aligned(size);
  unsigned k = log2_of(size);
  pthread_mutex_lock(&arr.lock);
  arr_free *f = arr.free[k];
  if (f != NULL) {
    ARR_UNPOISON(f, size);
    arr.free[k] = f->next;
    pthread_mutex_unlock(&arr.lock);
    return f;
  }
  if (arr.cur == NULL || (size_t)(arr.end - arr.cur) < size) {
    char *r = map_aligned(ARR_REGION);
    if (r == NULL) {
      pthread_mutex_unlock(&arr.lock);
      return NULL;
    }
    region_retire();
    arr.cur = r;
    arr.end = r + ARR_REGION;
  }
  /* (every piece is a multiple of 4 KiB: all stay 4 KiB-aligned) */
  void *p = arr.cur;
  arr.cur += size;
  pthread_mutex_unlock(&arr.lock);
  return p;
}

void keel__ets_arr_free(void *p, size_t size) {
  if (p == NULL)
    return;
  if (size < ((size_t)1 << ARR_MIN_SHIFT)) {
    free(p);
    return;
  }
  if (size > ARR_REGION) {
    munmap(p, size);
    return;
  }
  unsigned k = log2_of(size);
  arr_free *f = p;
  pthread_mutex_lock(&arr.lock);
  f->next = arr.free[k];
  arr.free[k] = f;
  ARR_POISON((char *)f + sizeof *f, size - sizeof *f);
  pthread_mutex_unlock(&arr.lock);
}

void *keel__ets_arr_tag(void *p, size_t size) {
  if (size < ((size_t)1 << ARR_MIN_SHIFT))
    return p; /* (malloc'd: the limbo frees it with free) */
  return (void *)((uintptr_t)p | 2u | ((uintptr_t)log2_of(size) << 2));
}

void keel__ets_arr_free_tagged(void *tagged) {
  uintptr_t v = (uintptr_t)tagged;
  size_t size = (size_t)1 << ((v >> 2) & 63);
  keel__ets_arr_free((void *)(v & ~(uintptr_t)0xfff), size);
}
