/* The fiber stack pool (stack_pool.c): slabs and their accounting, guard
 * pages on both guard paths (MADV_GUARD_INSTALL and mprotect), memory map
 * counts from /proc/self/maps, per-thread caches (refill, overflow, a
 * stack freed by another thread), trimming checked with mincore, slab
 * unmapping, the shared map budget and bad arguments. A guard page is
 * probed with write(2) from it into a pipe: the kernel reads the byte and
 * fails with EFAULT on a guard, without a signal. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "keel/error.h"
#include "runtime/stack_pool.h"

static const char *mode_name(keel__stack_guard m) {
  return m == KEEL_STACK_GUARD_MADVISE    ? "madvise"
         : m == KEEL_STACK_GUARD_MPROTECT ? "mprotect"
                                          : "auto";
}

/* Whether the kernel has MADV_GUARD_INSTALL (so the madvise mode can be
 * tested); when it does not, the tests of that mode are skipped. */
static bool have_madvise_guards(void) {
  unsetenv("KEEL_STACK_GUARD");
  return keel__stack_guard_probe() == KEEL_STACK_GUARD_MADVISE;
}

/* -1 when reading the byte at addr faults (EFAULT), else 1. */
static int probe(const void *addr) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  errno = 0;
  ssize_t r = write(fds[1], addr, 1);
  int err = errno;
  close(fds[0]);
  close(fds[1]);
  if (r < 0) {
    cr_assert_eq(err, EFAULT, "write: %s", strerror(err));
    return -1;
  }
  return 1;
}

/* Lines of /proc/self/maps overlapping [lo, hi). */
static size_t maps_in(uintptr_t lo, uintptr_t hi) {
  FILE *f = fopen("/proc/self/maps", "r");
  cr_assert_not_null(f);
  char line[512];
  size_t n = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    uintptr_t a, b;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &a, &b) == 2 && a < hi && b > lo)
      n++;
  }
  fclose(f);
  return n;
}

/* Resident pages of [addr, addr + len) according to mincore. */
static size_t resident(const void *addr, size_t len) {
  size_t pg = keel__stack_guard_size();
  size_t pages = len / pg;
  unsigned char *vec = malloc(pages);
  cr_assert_not_null(vec);
  cr_assert_eq(mincore((void *)addr, len, vec), 0);
  size_t n = 0;
  for (size_t i = 0; i < pages; i++)
    n += vec[i] & 1;
  free(vec);
  return n;
}

static keel__stack_pool *pool_with(keel__stack_guard mode, size_t size,
                                   unsigned per_slab, unsigned ncaches,
                                   unsigned cache_max, unsigned keep_empty) {
  keel__stack_pool_opts o = {.stack_size = size,
                             .per_slab = per_slab,
                             .ncaches = ncaches,
                             .cache_max = cache_max,
                             .keep_empty = keep_empty,
                             .guard = mode};
  keel__stack_pool *p = keel__stack_pool_new(&o);
  cr_assert_not_null(p);
  cr_assert_eq(keel__stack_pool_guard(p), mode);
  return p;
}

static keel__stack *get(keel__stack_pool *p, unsigned cache) {
  keel__stack *st = NULL;
  int rc = keel__stack_alloc(p, cache, &st);
  cr_assert_eq(rc, KEEL_OK, "alloc: %s", keel_strerror(rc));
  cr_assert_not_null(st);
  return st;
}

/* ---- probe ------------------------------------------------------------- */

/* Kernel release "major.minor..." at least 6.13, where MADV_GUARD_INSTALL
 * appeared. */
static bool kernel_has_guards(void) {
  struct utsname u;
  cr_assert_eq(uname(&u), 0);
  int major = 0, minor = 0;
  if (sscanf(u.release, "%d.%d", &major, &minor) != 2)
    return false;
  return major > 6 || (major == 6 && minor >= 13);
}

Test(stack_pool, probe_and_environment_override) {
  unsetenv("KEEL_STACK_GUARD");
  keel__stack_guard g = keel__stack_guard_probe();
  cr_assert(g == KEEL_STACK_GUARD_MADVISE || g == KEEL_STACK_GUARD_MPROTECT);
  printf("stack_pool: guards by %s\n", mode_name(g));
  if (kernel_has_guards())
    cr_assert_eq(g, KEEL_STACK_GUARD_MADVISE, "kernel >= 6.13 but %s",
                 mode_name(g));
  cr_assert_eq(setenv("KEEL_STACK_GUARD", "mprotect", 1), 0);
  cr_assert_eq(keel__stack_guard_probe(), KEEL_STACK_GUARD_MPROTECT);
  keel__stack_pool *p = keel__stack_pool_new(NULL); /* AUTO */
  cr_assert_eq(keel__stack_pool_guard(p), KEEL_STACK_GUARD_MPROTECT);
  keel__stack_pool_destroy(p);
  cr_assert_eq(unsetenv("KEEL_STACK_GUARD"), 0);
  cr_assert_eq(keel__stack_guard_probe(), g);
}

/* ---- slabs and guards -------------------------------------------------- */

#define PER_SLAB 8

/* A slab of PER_SLAB 16 KiB stacks: the stacks are one stride apart in one
 * region, every guard faults and every usable byte reads, the region is one
 * VMA (madvise) or two per stack (mprotect), and the next stack opens a
 * second slab. */
static void slab_layout(keel__stack_guard mode) {
  size_t pg = keel__stack_guard_size();
  keel__stack_pool *p = pool_with(mode, 16 * 1024, PER_SLAB, 0, 0, 0);
  keel__stack *st[PER_SLAB];
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < PER_SLAB; i++) {
    st[i] = get(p, KEEL_STACK_NO_CACHE);
    cr_assert_eq(st[i]->size, 16 * 1024);
    uintptr_t a = (uintptr_t)st[i]->lo - pg,
              b = (uintptr_t)st[i]->lo + st[i]->size;
    lo = a < lo ? a : lo;
    hi = b > hi ? b : hi;
  }
  cr_assert_eq(hi - lo, PER_SLAB * (pg + 16 * 1024), "one contiguous slab");
  for (int i = 0; i < PER_SLAB; i++) {
    const char *s = st[i]->lo;
    cr_assert_eq(probe(s - 1), -1, "%s: guard %d readable", mode_name(mode), i);
    cr_assert_eq(probe(s - pg), -1);
    cr_assert_eq(probe(s), 1);
    cr_assert_eq(probe(s + st[i]->size - 1), 1);
  }
  size_t vmas = maps_in(lo, hi);
  if (mode == KEEL_STACK_GUARD_MADVISE)
    cr_assert_eq(vmas, 1, "madvise guards: %zu maps for one slab", vmas);
  else
    cr_assert_eq(vmas, 2 * PER_SLAB, "mprotect guards: %zu maps", vmas);
  keel__stack_pool_stats s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.slabs, 1);
  cr_assert_eq(s.mapped, PER_SLAB);
  cr_assert_eq(s.live, PER_SLAB);
  cr_assert_eq(s.fresh, PER_SLAB);
  cr_assert_eq(s.maps, mode == KEEL_STACK_GUARD_MADVISE ? 1 : 2 * PER_SLAB);
  keel__stack *extra = get(p, KEEL_STACK_NO_CACHE);
  cr_assert((uintptr_t)extra->lo >= hi || (uintptr_t)extra->lo < lo);
  s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.slabs, 2);
  cr_assert_eq(s.mapped, 2 * PER_SLAB);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, extra, true);
  for (int i = 0; i < PER_SLAB; i++)
    keel__stack_free(p, KEEL_STACK_NO_CACHE, st[i], true);
  s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.live, 0);
  cr_assert_eq(s.slabs, 0, "keep_empty 0: free slabs are unmapped");
  cr_assert_eq(s.unmapped, 2);
  cr_assert_eq(maps_in(lo, hi), 0, "the slab is gone from the maps");
  keel__stack_pool_destroy(p);
}

Test(stack_pool, slab_layout_and_guards_madvise) {
  if (!have_madvise_guards())
    cr_skip_test("no MADV_GUARD_INSTALL on this kernel");
  slab_layout(KEEL_STACK_GUARD_MADVISE);
}

Test(stack_pool, slab_layout_and_guards_mprotect) {
  slab_layout(KEEL_STACK_GUARD_MPROTECT);
}

/* ---- reuse, unmapping, trimming ---------------------------------------- */

/* Freed stacks come back (most recent first), a free slab is kept while
 * keep_empty allows and unmapped beyond, and guards survive reuse and
 * trimming. */
static void reuse_and_unmap(keel__stack_guard mode) {
  keel__stack_pool *p = pool_with(mode, 16 * 1024, PER_SLAB, 0, 0, 1);
  keel__stack *a = get(p, KEEL_STACK_NO_CACHE);
  keel__stack *b = get(p, KEEL_STACK_NO_CACHE);
  void *alo = a->lo;
  keel__stack_free(p, KEEL_STACK_NO_CACHE, a, true);
  keel__stack *c = get(p, KEEL_STACK_NO_CACHE);
  cr_assert_eq(c->lo, alo, "the freed stack is handed out again");
  cr_assert_eq(probe((char *)c->lo - 1), -1, "guard kept on reuse");
  keel__stack_pool_stats s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.fresh, 2);
  cr_assert_eq(s.reused, 1);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, b, true);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, c, true);
  s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.slabs, 1, "one free slab is kept (keep_empty 1)");
  cr_assert_eq(s.free, 2);
  cr_assert_eq(s.live, 0);
  cr_assert_eq(s.unmapped, 0);
  /* Fill two slabs, free everything: one free slab stays, one goes. */
  keel__stack *st[2 * PER_SLAB];
  for (int i = 0; i < 2 * PER_SLAB; i++)
    st[i] = get(p, KEEL_STACK_NO_CACHE);
  s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.slabs, 2);
  cr_assert_eq(s.fresh, 2 * PER_SLAB, "two reused, then fresh ones");
  for (int i = 0; i < 2 * PER_SLAB; i++)
    keel__stack_free(p, KEEL_STACK_NO_CACHE, st[i], true);
  s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.slabs, 1);
  cr_assert_eq(s.unmapped, 1);
  cr_assert_eq(s.live, 0);
  cr_assert_eq(s.mapped, PER_SLAB);
  keel__stack_pool_destroy(p);
}

Test(stack_pool, reuse_and_unmap_madvise) {
  if (!have_madvise_guards())
    cr_skip_test("no MADV_GUARD_INSTALL on this kernel");
  reuse_and_unmap(KEEL_STACK_GUARD_MADVISE);
}

Test(stack_pool, reuse_and_unmap_mprotect) {
  reuse_and_unmap(KEEL_STACK_GUARD_MPROTECT);
}

/* A stack entering the depot keeps only its top page resident (mincore);
 * without trim it keeps everything; a stack that never left its top page
 * is not counted as trimmed. */
Test(stack_pool, trim_releases_pages_below_the_top) {
  size_t pg = keel__stack_guard_size();
  size_t size = 64 * 1024;
  keel__stack_pool *p =
      pool_with(keel__stack_guard_probe(), size, PER_SLAB, 0, 0, 1);
  keel__stack *a = get(p, KEEL_STACK_NO_CACHE);
  keel__stack *b = get(p, KEEL_STACK_NO_CACHE);
  keel__stack *c = get(p, KEEL_STACK_NO_CACHE);
  keel__stack *keep = get(p, KEEL_STACK_NO_CACHE); /* slab stays in use */
  memset(a->lo, 1, size);
  memset(b->lo, 1, size);
  memset((char *)c->lo + size - pg, 1, pg); /* only the top page */
  cr_assert_eq(resident(a->lo, size), size / pg);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, a, true);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, b, false);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, c, true);
  cr_assert_eq(resident(a->lo, size - pg), 0, "trimmed");
  cr_assert_eq(resident((char *)a->lo + size - pg, pg), 1, "top page kept");
  cr_assert_eq(resident(b->lo, size), size / pg, "not trimmed");
  cr_assert_eq(probe((char *)a->lo - 1), -1, "trim keeps the guard");
  keel__stack_pool_stats s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.trimmed, 1, "only a had pages to release");
  /* A trimmed stack reads back as zeros below its top page. */
  keel__stack *again = get(p, KEEL_STACK_NO_CACHE);
  keel__stack *again2 = get(p, KEEL_STACK_NO_CACHE);
  keel__stack *again3 = get(p, KEEL_STACK_NO_CACHE);
  keel__stack *ta = again->lo == a->lo    ? again
                    : again2->lo == a->lo ? again2
                                          : again3;
  cr_assert_eq(ta->lo, a->lo);
  cr_assert_eq(((unsigned char *)ta->lo)[0], 0);
  cr_assert_eq(((unsigned char *)ta->lo)[size - 1], 1);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, again, true);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, again2, true);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, again3, true);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, keep, true);
  keel__stack_pool_destroy(p);
}

/* ---- per-thread caches ------------------------------------------------- */

/* An empty cache takes half a cache from the depot at once; a cache over
 * its bound gives its older half back (trimmed); alloc from the cache is
 * LIFO. */
Test(stack_pool, cache_refill_and_overflow) {
  keel__stack_pool *p =
      pool_with(keel__stack_guard_probe(), 16 * 1024, 64, 2, 8, 1);
  keel__stack *a = get(p, 0);
  keel__stack_pool_stats s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.refills, 1);
  cr_assert_eq(s.cached, 3, "refill of 4, one handed out");
  cr_assert_eq(s.live, 1);
  keel__stack_free(p, 0, a, true);
  keel__stack *b = get(p, 0);
  cr_assert_eq(b->lo, a->lo, "LIFO: the stack just freed comes back");
  keel__stack *st[12];
  for (int i = 0; i < 12; i++)
    st[i] = get(p, 0);
  s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.live, 13);
  cr_assert_eq(s.refills, 4);
  for (int i = 0; i < 12; i++)
    keel__stack_free(p, 0, st[i], true);
  s = keel__stack_pool_get_stats(p);
  cr_assert_leq(s.cached, 8, "cache bound");
  cr_assert_geq(s.flushes, 1);
  cr_assert_eq(s.live, 1);
  /* The 12 freed plus the 3 the last refill left in the cache. */
  cr_assert_eq(s.cached + s.free, 15, "cached %zu, depot %zu", s.cached,
               s.free);
  cr_assert_eq(keel__stack_alloc(p, 2, &a), KEEL_EINVAL, "no cache 2");
  keel__stack_free(p, 1, b, true); /* into the other cache */
  s = keel__stack_pool_get_stats(p);
  cr_assert_eq(s.live, 0);
  keel__stack_pool_destroy(p);
}

/* Two threads, each owning a cache: A allocates, B frees what A allocated
 * (cross-thread return), then B's allocations are served by those stacks
 * without a refill. Then both churn stacks through each other with a
 * token in each stack proving no stack is ever handed out twice. */
#define XFER 32
#define CHURN 20000

typedef struct xfer {
  keel__stack_pool *p;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  keel__stack *box[XFER];
  int n;    /* stacks in box */
  int done; /* producers finished */
  atomic_long errors;
  atomic_long allocs;
} xfer;

static _Atomic uint64_t *token(keel__stack *st) {
  return (_Atomic uint64_t *)((char *)st->lo + st->size - 64);
}

static void take_token(xfer *x, keel__stack *st) {
  if (atomic_exchange(token(st), 1) != 0)
    atomic_fetch_add(&x->errors, 1); /* handed out twice */
  atomic_fetch_add(&x->allocs, 1);
}

static void drop_token(keel__stack *st) {
  atomic_store(token(st), 0);
}

/* Thread body: allocate from its cache, keep a few, hand the rest to the
 * box; take what the other thread put there and free it into its cache. */
typedef struct churner {
  xfer *x;
  unsigned cache;
  unsigned seed;
} churner;

static void *churn(void *arg) {
  churner *c = arg;
  xfer *x = c->x;
  keel__stack *mine[8];
  int nmine = 0;
  for (int i = 0; i < CHURN; i++) {
    c->seed = c->seed * 1103515245u + 12345u;
    keel__stack *st = NULL;
    if (keel__stack_alloc(x->p, c->cache, &st) != KEEL_OK) {
      atomic_fetch_add(&x->errors, 1);
      break;
    }
    take_token(x, st);
    if (nmine < 8 && (c->seed >> 16) % 2 == 0) {
      mine[nmine++] = st;
      continue;
    }
    pthread_mutex_lock(&x->mu);
    if (x->n < XFER) {
      x->box[x->n++] = st;
      st = NULL;
    }
    keel__stack *other =
        x->n > 0 && (c->seed >> 20) % 2 == 0 ? x->box[--x->n] : NULL;
    pthread_mutex_unlock(&x->mu);
    if (st != NULL) {
      drop_token(st);
      keel__stack_free(x->p, c->cache, st, true);
    }
    if (other != NULL) {
      drop_token(other);
      keel__stack_free(x->p, c->cache, other, true);
    }
    if (nmine == 8) {
      while (nmine > 0) {
        drop_token(mine[--nmine]);
        keel__stack_free(x->p, c->cache, mine[nmine], true);
      }
    }
  }
  while (nmine > 0) {
    drop_token(mine[--nmine]);
    keel__stack_free(x->p, c->cache, mine[nmine], true);
  }
  return NULL;
}

Test(stack_pool, cross_thread_return) {
  xfer x = {.p = pool_with(keel__stack_guard_probe(), 16 * 1024, 16, 2, 8, 1)};
  pthread_mutex_init(&x.mu, NULL);
  pthread_cond_init(&x.cv, NULL);
  /* Deterministic part: this thread plays both owners in turn. */
  keel__stack *st[XFER];
  for (int i = 0; i < 4; i++)
    st[i] = get(x.p, 0);
  for (int i = 0; i < 4; i++)
    keel__stack_free(x.p, 1, st[i], true); /* allocated by 0, freed by 1 */
  keel__stack_pool_stats s = keel__stack_pool_get_stats(x.p);
  size_t refills = s.refills;
  for (int i = 3; i >= 0; i--) {
    keel__stack *back = get(x.p, 1);
    cr_assert_eq(back->lo, st[i]->lo, "cache 1 hands back what it got");
    st[i] = back;
  }
  s = keel__stack_pool_get_stats(x.p);
  cr_assert_eq(s.refills, refills, "no refill needed");
  for (int i = 0; i < 4; i++)
    keel__stack_free(x.p, 1, st[i], true);
  /* Concurrent part (checked by TSan in the sanitizer build). */
  churner c0 = {&x, 0, 1}, c1 = {&x, 1, 2};
  pthread_t t0, t1;
  cr_assert_eq(pthread_create(&t0, NULL, churn, &c0), 0);
  cr_assert_eq(pthread_create(&t1, NULL, churn, &c1), 0);
  pthread_join(t0, NULL);
  pthread_join(t1, NULL);
  for (int i = 0; i < x.n; i++) {
    drop_token(x.box[i]);
    keel__stack_free(x.p, KEEL_STACK_NO_CACHE, x.box[i], true);
  }
  cr_assert_eq(atomic_load(&x.errors), 0, "a stack was handed out twice");
  s = keel__stack_pool_get_stats(x.p);
  cr_assert_eq(s.live, 0);
  cr_assert_eq(s.fresh + s.reused, (size_t)atomic_load(&x.allocs) + 8,
               "every allocation accounted for");
  cr_assert_leq(s.fresh, 128, "stacks are reused (%zu fresh)", s.fresh);
  keel__stack_pool_destroy(x.p);
  pthread_mutex_destroy(&x.mu);
  pthread_cond_destroy(&x.cv);
}

/* ---- map budget -------------------------------------------------------- */

/* A budget of two slabs' maps: the third slab is refused with
 * KEEL_ESYSLIMIT; freeing (and unmapping) gives the maps back. */
static void budget(keel__stack_guard mode) {
  unsigned per = 4;
  size_t slab_maps = mode == KEEL_STACK_GUARD_MADVISE ? 1 : 2 * per;
  keel__stack_budget b = {.max = 2 * slab_maps};
  keel__stack_pool_opts o = {
      .stack_size = 16 * 1024, .per_slab = per, .guard = mode, .budget = &b};
  keel__stack_pool *p = keel__stack_pool_new(&o);
  cr_assert_not_null(p);
  keel__stack *st[8], *extra = NULL;
  for (unsigned i = 0; i < 2 * per; i++)
    st[i] = get(p, KEEL_STACK_NO_CACHE);
  cr_assert_eq(atomic_load(&b.used), 2 * slab_maps);
  cr_assert_eq(keel__stack_alloc(p, KEEL_STACK_NO_CACHE, &extra),
               KEEL_ESYSLIMIT);
  cr_assert_eq(atomic_load(&b.used), 2 * slab_maps, "refusal charges nothing");
  for (unsigned i = 0; i < per; i++)
    keel__stack_free(p, KEEL_STACK_NO_CACHE, st[i], true);
  cr_assert_eq(atomic_load(&b.used), slab_maps, "a free slab returns maps");
  cr_assert_eq(keel__stack_alloc(p, KEEL_STACK_NO_CACHE, &extra), KEEL_OK);
  keel__stack_free(p, KEEL_STACK_NO_CACHE, extra, true);
  keel__stack_pool_destroy(p);
  cr_assert_eq(atomic_load(&b.used), 0, "destroy returns every map");
}

Test(stack_pool, map_budget_madvise) {
  if (!have_madvise_guards())
    cr_skip_test("no MADV_GUARD_INSTALL on this kernel");
  budget(KEEL_STACK_GUARD_MADVISE);
}

Test(stack_pool, map_budget_mprotect) {
  budget(KEEL_STACK_GUARD_MPROTECT);
}

/* ---- sizes and bad arguments ------------------------------------------- */

Test(stack_pool, sizes_and_bad_arguments) {
  size_t pg = keel__stack_guard_size();
  keel__stack_pool_opts o = {.stack_size = 10000};
  keel__stack_pool *p = keel__stack_pool_new(&o);
  cr_assert_not_null(p);
  size_t sz = keel__stack_pool_stack_size(p);
  cr_assert_eq(sz % pg, 0);
  cr_assert(sz >= 10000 && sz < 10000 + pg);
  keel__stack_pool_destroy(p);
  p = keel__stack_pool_new(NULL);
  cr_assert_eq(keel__stack_pool_stack_size(p), KEEL_STACK_DEFAULT_SIZE);
  keel__stack_pool_destroy(p);
  o = (keel__stack_pool_opts){.stack_size = KEEL_STACK_MAX_SIZE + 1};
  cr_assert_null(keel__stack_pool_new(&o));
  o = (keel__stack_pool_opts){.per_slab = KEEL_STACK_SLAB_MAX + 1};
  cr_assert_null(keel__stack_pool_new(&o));
  o = (keel__stack_pool_opts){.guard = (keel__stack_guard)7};
  cr_assert_null(keel__stack_pool_new(&o));
  keel__stack *st = NULL;
  cr_assert_eq(keel__stack_alloc(NULL, KEEL_STACK_NO_CACHE, &st), KEEL_EINVAL);
  p = keel__stack_pool_new(NULL);
  cr_assert_eq(keel__stack_alloc(p, KEEL_STACK_NO_CACHE, NULL), KEEL_EINVAL);
  cr_assert_eq(keel__stack_alloc(p, 0, &st), KEEL_EINVAL, "no caches");
  keel__stack_free(p, KEEL_STACK_NO_CACHE, NULL, true);
  keel__stack_free(NULL, 0, NULL, true);
  keel__stack_pool_destroy(p);
  keel__stack_pool_destroy(NULL);
  cr_assert_eq(keel__stack_pool_stack_size(NULL), 0);
  cr_assert_eq(keel__stack_pool_guard(NULL), KEEL_STACK_GUARD_AUTO);
  keel__stack_pool_stats s = keel__stack_pool_get_stats(NULL);
  cr_assert_eq(s.mapped, 0);
}
