/* The 64-byte block allocator of small objects (ets_slab.c): blocks are
 * line-aligned, never handed out twice, reused after a free, and move
 * between threads (a thread frees another's blocks, exiting threads hand
 * theirs back). Then set tables whose objects move between slab blocks
 * (tuples of up to 3 immediates) and malloc'd ones (larger or not flat)
 * while processes on 1, 2 and 8 schedulers write and read their keys.
 * Also run under TSan and ASan. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keel/ets.h"
#include "keel/runtime.h"
#include "runtime/rt_test.h"
#include "tables/ets_internal.h"

#define NBLK 3000

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* Stamps a block's 8 words with (tag, i). */
static void stamp(void *p, uint64_t tag, uint64_t i) {
  uint64_t *w = p;
  for (int k = 0; k < 8; k++)
    w[k] = tag * 1000003u + i * 8 + (uint64_t)k;
}

static bool stamped(const void *p, uint64_t tag, uint64_t i) {
  const uint64_t *w = p;
  for (int k = 0; k < 8; k++)
    if (w[k] != tag * 1000003u + i * 8 + (uint64_t)k)
      return false;
  return true;
}

/* Whether the n blocks of v are pairwise at least a block apart. */
static bool disjoint(void **v, size_t n) {
  uintptr_t *s = malloc(n * sizeof *s);
  cr_assert_not_null(s);
  memcpy(s, v, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_ptr);
  bool ok = true;
  for (size_t i = 1; i < n && ok; i++)
    ok = s[i] - s[i - 1] >= KEEL__ETS_SLAB_BLOCK;
  free(s);
  return ok;
}

Test(ets_slab, blocks_are_aligned_distinct_and_reused) {
  static void *a[NBLK], *b[NBLK];
  for (size_t i = 0; i < NBLK; i++) {
    a[i] = keel__ets_slab_alloc();
    cr_assert_not_null(a[i]);
    cr_assert_eq((uintptr_t)a[i] % 64, 0, "block %zu on a line", i);
    stamp(a[i], 1, i);
  }
  cr_assert(disjoint(a, NBLK));
  for (size_t i = 0; i < NBLK; i++)
    cr_assert(stamped(a[i], 1, i), "block %zu kept its bytes", i);
  for (size_t i = 0; i < NBLK; i++)
    keel__ets_slab_free(a[i]);
  keel__ets_slab_free(NULL); /* a no-op */
  /* The freed blocks come back (from the thread's cache and the pool's
   * batches); only the rest of the thread's carved run (under a batch)
   * may be handed out first. */
  uintptr_t *s = malloc(NBLK * sizeof *s);
  memcpy(s, a, sizeof a);
  qsort(s, NBLK, sizeof *s, cmp_ptr);
  size_t reused = 0;
  for (size_t i = 0; i < NBLK; i++) {
    b[i] = keel__ets_slab_alloc();
    cr_assert_not_null(b[i]);
    uintptr_t p = (uintptr_t)b[i];
    reused += bsearch(&p, s, NBLK, sizeof *s, cmp_ptr) != NULL;
    stamp(b[i], 2, i);
  }
  cr_assert_geq(reused, NBLK - KEEL__ETS_SLAB_BATCH);
  cr_assert(disjoint(b, NBLK));
  for (size_t i = 0; i < NBLK; i++)
    keel__ets_slab_free(b[i]);
  free(s);
}

#define NTH 4
#define PER 1500
#define ROUNDS 4

typedef struct blk_arg {
  void **mine;   /* filled with PER new blocks */
  void **theirs; /* PER blocks of another thread to free first, or NULL */
  uint64_t tag;
  int bad;
} blk_arg;

static void *blk_worker(void *p) {
  blk_arg *a = p;
  if (a->theirs != NULL)
    for (size_t i = 0; i < PER; i++)
      keel__ets_slab_free(a->theirs[i]);
  for (size_t i = 0; i < PER; i++) {
    a->mine[i] = keel__ets_slab_alloc();
    if (a->mine[i] == NULL) {
      a->bad++;
      continue;
    }
    stamp(a->mine[i], a->tag, i);
  }
  for (size_t i = 0; i < PER; i++)
    a->bad += a->mine[i] == NULL || !stamped(a->mine[i], a->tag, i);
  return NULL; /* its cache goes back to the pool */
}

Test(ets_slab, threads_free_each_others_blocks) {
  static void *blk[2][NTH * PER];
  for (int r = 0; r < ROUNDS; r++) {
    void **cur = blk[r % 2], **prev = blk[(r + 1) % 2];
    pthread_t th[NTH];
    blk_arg a[NTH];
    for (int t = 0; t < NTH; t++) {
      a[t] = (blk_arg){.mine = cur + t * PER,
                       .theirs = r > 0 ? prev + ((t + 1) % NTH) * PER : NULL,
                       .tag = (uint64_t)(r * NTH + t + 1)};
      cr_assert_eq(pthread_create(&th[t], NULL, blk_worker, &a[t]), 0);
    }
    for (int t = 0; t < NTH; t++)
      pthread_join(th[t], NULL);
    for (int t = 0; t < NTH; t++)
      cr_assert_eq(a[t].bad, 0, "round %d thread %d", r, t);
    /* No block was handed to two threads at once. */
    cr_assert(disjoint(cur, NTH * PER), "round %d", r);
    for (int t = 0; t < NTH; t++)
      for (size_t i = 0; i < PER; i++)
        cr_assert(stamped(cur[t * PER + i], a[t].tag, i));
  }
  for (size_t i = 0; i < NTH * PER; i++)
    keel__ets_slab_free(blk[(ROUNDS - 1) % 2][i]);
}

/* ---- set tables over slab and malloc'd objects ---- */

#define NPROC 4
#define KEYS 2000 /* per process */
#define TROUNDS 3

typedef struct tab_shared {
  keel_ets_tab tab;
  _Atomic int bad;
  char why[120];
} tab_shared;

static void tab_note(tab_shared *s, const char *what, int64_t k) {
  if (atomic_fetch_add(&s->bad, 1) == 0)
    snprintf(s->why, sizeof s->why, "%s (key %lld)", what, (long long)k);
}

/* The object of key k in round r: a 3-tuple (a slab block) on even keys,
 * a 4-tuple (malloc'd) on odd ones, swapped on odd rounds. */
static keel_term obj_of(keel_heap *h, int64_t k, int r) {
  keel_term key = keel_small(k), v = keel_small(r), w = keel_small(2 * r);
  return (k + r) % 2 == 0 ? keel_tuple(h, 3, key, v, w)
                          : keel_tuple(h, 4, key, v, w, KEEL_ATOM(OK));
}

static bool is_obj(keel_term o, int64_t k, int r) {
  size_t n = (k + r) % 2 == 0 ? 3 : 4;
  return keel_is_tuple(o) && keel_tuple_arity(o) == n &&
         keel_tuple_get(o, 0) == keel_small(k) &&
         keel_tuple_get(o, 1) == keel_small(r) &&
         keel_tuple_get(o, 2) == keel_small(2 * r);
}

typedef struct tab_arg {
  tab_shared *s;
  int id;
} tab_arg;

static void tab_proc(keel_proc *self, void *p) {
  (void)self;
  tab_arg *a = p;
  tab_shared *s = a->s;
  int64_t base = (int64_t)a->id * KEYS;
  keel_heap h;
  keel_heap_init(&h);
  for (int r = 0; r < TROUNDS; r++) {
    /* Insert (new keys in round 0), replacing slab objects by malloc'd
     * ones and back in later rounds. */
    for (int64_t k = base; k < base + KEYS; k++)
      if (keel_ets_insert(s->tab, obj_of(&h, k, r)) != KEEL_OK)
        tab_note(s, "insert", k);
    for (int64_t k = base; k < base + KEYS; k++) {
      keel_term l;
      if (keel_ets_lookup(s->tab, keel_small(k), &h, &l) != KEEL_OK ||
          !keel_is_cons(l) || !is_obj(keel_hd(l), k, r))
        tab_note(s, "lookup", k);
    }
    /* Delete every third key (its block is retired), put it back. */
    for (int64_t k = base; k < base + KEYS; k += 3) {
      if (keel_ets_delete_key(s->tab, keel_small(k)) != KEEL_OK ||
          keel_ets_member(s->tab, keel_small(k)) != 0)
        tab_note(s, "delete", k);
      if (keel_ets_insert_new(s->tab, obj_of(&h, k, r)) != 1)
        tab_note(s, "insert_new", k);
    }
    keel_heap_destroy(&h);
    keel_heap_init(&h);
  }
  keel_heap_destroy(&h);
  signal_event();
}

static void tab_run(unsigned nsched) {
  start_node(nsched, 0);
  static tab_shared s;
  memset(&s, 0, sizeof s);
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  cr_assert_eq(keel_ets_new(&o, &s.tab), KEEL_OK);
  tab_arg a[NPROC];
  keel_term pid;
  for (int i = 0; i < NPROC; i++) {
    a[i] = (tab_arg){&s, i};
    cr_assert_eq(keel_spawn_fiber(tab_proc, &a[i], NULL, &pid), KEEL_OK);
  }
  cr_assert(wait_events(NPROC), "%u schedulers: the processes ended", nsched);
  cr_assert_eq(atomic_load(&s.bad), 0, "%u schedulers: %s", nsched, s.why);
  /* Every key holds its last round's object, read with locks. */
  keel_heap h;
  keel_heap_init(&h);
  keel_term all;
  cr_assert_eq(keel_ets_tab2list(s.tab, &h, &all), KEEL_OK);
  size_t n = 0;
  for (keel_term l = all; keel_is_cons(l); l = keel_tl(l), n++) {
    keel_term obj = keel_hd(l);
    int64_t k = keel_small_value(keel_tuple_get(obj, 0));
    cr_assert(is_obj(obj, k, TROUNDS - 1), "key %lld", (long long)k);
  }
  cr_assert_eq(n, (size_t)NPROC * KEYS);
  keel_ets_info info;
  cr_assert_eq(keel_ets_info_get(s.tab, &info), KEEL_OK);
  cr_assert_eq(info.size, (size_t)NPROC * KEYS);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_ets_delete(s.tab), KEEL_OK);
}

Test(ets_slab, set_objects_move_between_slab_and_heap_1_scheduler) {
  tab_run(1);
}

Test(ets_slab, set_objects_move_between_slab_and_heap_2_schedulers) {
  tab_run(2);
}

Test(ets_slab, set_objects_move_between_slab_and_heap_8_schedulers) {
  tab_run(8);
}
