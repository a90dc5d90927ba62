/* The TTL cache: expiry on a test clock, the janitor, size bounds with
 * least-recently-written and least-recently-used eviction, counters,
 * single-flight fetch from threads and from fibers, telemetry events. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "keel/cache.h"
#include "keel/clock.h"
#include "keel/runtime.h"
#include "keel/telemetry.h"

static _Atomic uint64_t clock_ms;

static uint64_t test_clock(void *arg) {
  (void)arg;
  return atomic_load(&clock_ms);
}

static keel_cache *make(keel_cache_opts o) {
  o.clock = test_clock;
  keel_cache *c;
  cr_assert_eq(keel_cache_new(&o, &c), KEEL_OK);
  return c;
}

static keel_term k(int i) {
  return keel_small(i);
}

static bool present(keel_cache *c, int i) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term v;
  bool hit = keel_cache_get(c, k(i), &h, &v) == KEEL_OK;
  keel_heap_destroy(&h);
  return hit;
}

Test(cache, ttl_expiry_on_read_and_ttl_calls) {
  atomic_store(&clock_ms, 1000);
  keel_cache *c = make((keel_cache_opts){.default_ttl_ms = 100});
  keel_heap h;
  keel_heap_init(&h);
  cr_assert_eq(
      keel_cache_put(c, k(1), keel_atom("one"), KEEL_CACHE_TTL_DEFAULT),
      KEEL_OK);
  cr_assert_eq(keel_cache_put(c, k(2), keel_atom("two"), 0), KEEL_OK);
  cr_assert_eq(keel_cache_put(c, k(3), keel_atom("three"), 500), KEEL_OK);
  int64_t left;
  cr_assert_eq(keel_cache_ttl(c, k(1), &left), KEEL_OK);
  cr_assert_eq(left, 100);
  cr_assert_eq(keel_cache_ttl(c, k(2), &left), KEEL_OK);
  cr_assert_eq(left, -1, "never expires");
  atomic_store(&clock_ms, 1099);
  keel_term v;
  cr_assert_eq(keel_cache_get(c, k(1), &h, &v), KEEL_OK);
  cr_assert_eq(v, keel_atom("one"));
  atomic_store(&clock_ms, 1100);
  cr_assert_eq(keel_cache_get(c, k(1), &h, &v), KEEL_ENOENT, "expired");
  cr_assert_eq(keel_cache_ttl(c, k(1), &left), KEEL_ENOENT);
  /* persist, expire, touch */
  cr_assert_eq(keel_cache_persist(c, k(3)), KEEL_OK);
  cr_assert_eq(keel_cache_ttl(c, k(3), &left), KEEL_OK);
  cr_assert_eq(left, -1);
  cr_assert_eq(keel_cache_expire(c, k(2), 10), KEEL_OK);
  atomic_store(&clock_ms, 1110);
  cr_assert(!present(c, 2), "expire(10) took effect");
  cr_assert(present(c, 3));
  cr_assert_eq(keel_cache_touch(c, k(9)), KEEL_ENOENT);
  cr_assert_eq(keel_cache_del(c, k(3)), KEEL_OK);
  cr_assert(!present(c, 3));
  keel_cache_stats st;
  keel_cache_stats_get(c, &st);
  cr_assert_eq(st.hits, 2);
  cr_assert_eq(st.expirations, 2);
  cr_assert_eq(st.size, 0);
  keel_heap_destroy(&h);
  keel_cache_free(c);
}

Test(cache, purge_and_janitor_remove_expired_entries) {
  atomic_store(&clock_ms, 0);
  keel_cache *c = make((keel_cache_opts){.default_ttl_ms = 50});
  for (int i = 0; i < 20; i++)
    cr_assert_eq(keel_cache_put(c, k(i), k(i), i < 10 ? 0 : 50), KEEL_OK);
  cr_assert_eq(keel_cache_purge(c), 0);
  atomic_store(&clock_ms, 50);
  cr_assert_eq(keel_cache_purge(c), 10);
  keel_cache_stats st;
  keel_cache_stats_get(c, &st);
  cr_assert_eq(st.size, 10);
  cr_assert_eq(st.expirations, 10);
  keel_cache_free(c);
  /* The janitor does the same on its own. */
  atomic_store(&clock_ms, 0);
  c = make((keel_cache_opts){.default_ttl_ms = 5, .janitor_ms = 2});
  for (int i = 0; i < 30; i++)
    cr_assert_eq(keel_cache_put(c, k(i), k(i), KEEL_CACHE_TTL_DEFAULT),
                 KEEL_OK);
  atomic_store(&clock_ms, 10);
  uint64_t t0 = keel_monotonic_ns();
  do {
    keel_cache_stats_get(c, &st);
    sched_yield();
    /* size first, the counter right after: wait for both */
  } while ((st.size != 0 || st.expirations != 30) &&
           keel_monotonic_ns() - t0 < UINT64_C(10000000000));
  cr_assert_eq(st.size, 0, "swept without any read");
  cr_assert_eq(st.expirations, 30);
  keel_cache_free(c);
}

Test(cache, size_bound_evicts_least_recently_written_or_used) {
  for (int lru = 0; lru < 2; lru++) {
    atomic_store(&clock_ms, 0);
    keel_cache *c = make(
        (keel_cache_opts){.max_size = 10,
                          .reclaim = 0.3,
                          .policy = lru ? KEEL_CACHE_LRU : KEEL_CACHE_LRW});
    for (int i = 0; i < 10; i++)
      cr_assert_eq(keel_cache_put(c, k(i), k(i), 0), KEEL_OK);
    cr_assert(present(c, 0)); /* a use: with LRU key 0 is now the newest */
    cr_assert_eq(keel_cache_put(c, k(10), k(10), 0), KEEL_OK);
    keel_cache_stats st;
    keel_cache_stats_get(c, &st);
    cr_assert_eq(st.size, 7, "pruned to max - 30%%");
    cr_assert_eq(st.evictions, 4);
    /* LRW: 0..3 go. LRU: 1..4 go and 0 stays. */
    for (int i = 0; i <= 10; i++) {
      bool gone = lru ? (i >= 1 && i <= 4) : i <= 3;
      cr_assert_eq(present(c, i), !gone, "key %d, lru %d", i, lru);
    }
    keel_cache_free(c);
  }
}

Test(cache, incr_and_errors) {
  atomic_store(&clock_ms, 0);
  keel_cache *c = make((keel_cache_opts){0});
  int64_t v;
  cr_assert_eq(keel_cache_incr(c, k(1), 5, 100, &v), KEEL_OK);
  cr_assert_eq(v, 105);
  cr_assert_eq(keel_cache_incr(c, k(1), -10, 0, &v), KEEL_OK);
  cr_assert_eq(v, 95);
  cr_assert_eq(keel_cache_put(c, k(2), keel_atom("x"), 0), KEEL_OK);
  cr_assert_eq(keel_cache_incr(c, k(2), 1, 0, &v), KEEL_EBADARG);
  cr_assert_eq(keel_cache_put(NULL, k(1), k(1), 0), KEEL_EINVAL);
  cr_assert_eq(keel_cache_new(&(keel_cache_opts){.reclaim = 2}, &c),
               KEEL_EINVAL);
  keel_cache_free(c);
  keel_cache_free(NULL);
}

/* ---- fetch ---------------------------------------------------------- */

static atomic_int fallback_runs;
static atomic_int entered;

static int slow_fallback(keel_term key, void *arg, keel_heap *h,
                         keel_term *value, int64_t *ttl) {
  (void)arg, (void)ttl;
  atomic_fetch_add(&fallback_runs, 1);
  /* Let the other callers arrive while this one computes. */
  uint64_t t0 = keel_monotonic_ns();
  while (atomic_load(&entered) < 8 &&
         keel_monotonic_ns() - t0 < UINT64_C(2000000000)) {
    keel_proc *self = keel_current();
    if (self != NULL)
      (void)keel_fiber_yield(self);
    else
      sched_yield();
  }
  *value = keel_tuple(h, 2, keel_atom("computed"), key);
  return KEEL_OK;
}

typedef struct fetcher {
  keel_cache *c;
  keel_term got;
  int rc;
  keel_heap h;
} fetcher;

static void *fetch_thread(void *arg) {
  fetcher *f = arg;
  keel_heap_init(&f->h);
  atomic_fetch_add(&entered, 1);
  f->rc = keel_cache_fetch(f->c, k(42), slow_fallback, NULL, &f->h, &f->got);
  return NULL;
}

static atomic_int fibers_done;

static void fetch_fiber(keel_proc *self, void *arg) {
  (void)self;
  fetch_thread(arg);
  atomic_fetch_add(&fibers_done, 1);
}

static void check_fetchers(fetcher *f, keel_cache *c) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term want = keel_tuple(&h, 2, keel_atom("computed"), k(42));
  for (int i = 0; i < 8; i++) {
    cr_assert_eq(f[i].rc, KEEL_OK, "fetcher %d", i);
    cr_assert(keel_eq_exact(f[i].got, want), "fetcher %d got the value", i);
    keel_heap_destroy(&f[i].h);
  }
  cr_assert_eq(atomic_load(&fallback_runs), 1, "one fallback for 8 misses");
  keel_cache_stats st;
  keel_cache_stats_get(c, &st);
  cr_assert_eq(st.fallbacks, 1);
  keel_heap_destroy(&h);
}

Test(cache, fetch_runs_the_fallback_once_for_concurrent_threads) {
  atomic_store(&clock_ms, 0);
  keel_cache *c = make((keel_cache_opts){0});
  atomic_store(&fallback_runs, 0);
  atomic_store(&entered, 0);
  fetcher f[8];
  pthread_t t[8];
  for (int i = 0; i < 8; i++) {
    f[i].c = c;
    cr_assert_eq(pthread_create(&t[i], NULL, fetch_thread, &f[i]), 0);
  }
  for (int i = 0; i < 8; i++)
    pthread_join(t[i], NULL);
  check_fetchers(f, c);
  keel_cache_free(c);
}

Test(cache, fetch_from_fibers_waits_by_yielding) {
  keel_node_opts o = {.schedulers = 1};
  cr_assert_eq(keel_node_start(&o), KEEL_OK);
  atomic_store(&clock_ms, 0);
  keel_cache *c = make((keel_cache_opts){0});
  atomic_store(&fallback_runs, 0);
  atomic_store(&entered, 0);
  atomic_store(&fibers_done, 0);
  fetcher f[8];
  for (int i = 0; i < 8; i++) {
    f[i].c = c;
    cr_assert_eq(keel_spawn_fiber(fetch_fiber, &f[i], NULL, NULL), KEEL_OK);
  }
  uint64_t t0 = keel_monotonic_ns();
  while (atomic_load(&fibers_done) < 8 &&
         keel_monotonic_ns() - t0 < UINT64_C(30000000000))
    sched_yield();
  cr_assert_eq(atomic_load(&fibers_done), 8);
  check_fetchers(f, c);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  keel_cache_free(c);
}

/* ---- telemetry ------------------------------------------------------ */

static atomic_int hit_events, miss_events;

static int on_event(const keel_tel_event *ev, const keel_tel_measure *m,
                    size_t nm, const keel_tel_meta *md, size_t nmd, void *cfg) {
  (void)m, (void)nm, (void)cfg;
  keel_term name;
  if (keel_tel_meta_get(md, nmd, keel_atom("cache"), &name) != KEEL_OK ||
      name != keel_atom("tele_cache"))
    return 0;
  const keel_term *atoms;
  size_t n = keel_tel_event_atoms(ev, &atoms);
  if (n == 3 && atoms[2] == keel_atom("hit"))
    atomic_fetch_add(&hit_events, 1);
  if (n == 3 && atoms[2] == keel_atom("miss"))
    atomic_fetch_add(&miss_events, 1);
  return 0;
}

Test(cache, hits_and_misses_are_telemetry_events) {
  keel_tel_event *evs[2];
  cr_assert_eq(keel_tel_event_parse("keel.cache.hit", &evs[0]), KEEL_OK);
  cr_assert_eq(keel_tel_event_parse("keel.cache.miss", &evs[1]), KEEL_OK);
  cr_assert_eq(keel_tel_attach(keel_atom("cache_test"), evs, 2, on_event, NULL),
               KEEL_OK);
  keel_cache *c = make((keel_cache_opts){.name = keel_atom("tele_cache")});
  cr_assert_eq(keel_cache_put(c, k(1), k(1), 0), KEEL_OK);
  cr_assert(present(c, 1));
  cr_assert(present(c, 1));
  cr_assert(!present(c, 2));
  cr_assert_eq(atomic_load(&hit_events), 2);
  cr_assert_eq(atomic_load(&miss_events), 1);
  cr_assert_eq(keel_tel_detach(keel_atom("cache_test")), KEEL_OK);
  keel_cache_free(c);
}

/* ---- get_and_update, put_many ------------------------------------------- */

/* Adds 1 to an integer value (a missing one starts at 1). */
static int add_one(keel_term key, keel_term old, void *arg, keel_heap *h,
                   keel_term *value) {
  (void)key;
  (void)h;
  (void)arg;
  int64_t v = 0;
  if (old != KEEL_NONE && keel_get_int64(old, &v) != KEEL_OK)
    return KEEL_EBADARG;
  *value = keel_small(v + 1);
  return KEEL_OK;
}

/* Leaves the entry: returns what it read (or 'none'). */
static int peek(keel_term key, keel_term old, void *arg, keel_heap *h,
                keel_term *value) {
  (void)key;
  (void)h;
  (void)arg;
  *value = old != KEEL_NONE ? old : keel_atom("none");
  return 1;
}

typedef struct upd_run {
  keel_cache *c;
  int n;
  pthread_barrier_t go; /* all start together */
} upd_run;

static void *updater(void *arg) {
  upd_run *r = arg;
  keel_heap h;
  keel_heap_init(&h);
  pthread_barrier_wait(&r->go);
  for (int i = 0; i < r->n; i++) {
    keel_term out;
    cr_assert_eq(keel_cache_get_and_update(r->c, k(1), add_one, NULL, &h, &out),
                 KEEL_OK);
  }
  keel_heap_destroy(&h);
  return NULL;
}

Test(cache, get_and_update_is_atomic_per_key_and_keeps_the_ttl) {
  atomic_store(&clock_ms, 1000);
  keel_cache *c = make((keel_cache_opts){0});
  keel_heap h;
  keel_heap_init(&h);
  keel_term out;
  cr_assert_eq(keel_cache_get_and_update(c, k(9), peek, NULL, &h, &out),
               KEEL_OK);
  cr_assert_eq(out, keel_atom("none"));
  cr_assert(!present(c, 9), "peek stores nothing");
  /* 8 threads x 20000 increments of one key: none lost */
  enum { T = 8, N = 20000 };
  pthread_t th[T];
  static upd_run r;
  r.c = c;
  r.n = N;
  pthread_barrier_init(&r.go, NULL, T);
  for (int i = 0; i < T; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, updater, &r), 0);
  for (int i = 0; i < T; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&r.go);
  cr_assert_eq(keel_cache_get(c, k(1), &h, &out), KEEL_OK);
  cr_assert_eq(out, keel_small(T * N));
  /* the entry's TTL is kept */
  cr_assert_eq(keel_cache_put(c, k(2), keel_small(5), 60000), KEEL_OK);
  atomic_store(&clock_ms, 11000);
  cr_assert_eq(keel_cache_get_and_update(c, k(2), add_one, NULL, &h, &out),
               KEEL_OK);
  cr_assert_eq(out, keel_small(6));
  int64_t left = 0;
  cr_assert_eq(keel_cache_ttl(c, k(2), &left), KEEL_OK);
  cr_assert_eq(left, 50000);
  /* an error stores nothing */
  cr_assert_eq(keel_cache_put(c, k(3), keel_atom("x"), -1), KEEL_OK);
  cr_assert_eq(keel_cache_get_and_update(c, k(3), add_one, NULL, &h, &out),
               KEEL_EBADARG);
  cr_assert_eq(keel_cache_get(c, k(3), &h, &out), KEEL_OK);
  cr_assert_eq(out, keel_atom("x"));
  cr_assert_eq(keel_cache_get_and_update(c, k(3), NULL, NULL, &h, &out),
               KEEL_EINVAL);
  keel_heap_destroy(&h);
  keel_cache_free(c);
}

Test(cache, put_many_stores_every_pair_or_none) {
  keel_cache *c = make((keel_cache_opts){0});
  keel_heap h;
  keel_heap_init(&h);
  keel_term pairs = keel_build(&h, "[{1, a}, {2, b}, {3, c}]"), out;
  cr_assert_eq(keel_cache_put_many(c, pairs, -1), KEEL_OK);
  cr_assert_eq(keel_cache_get(c, k(2), &h, &out), KEEL_OK);
  cr_assert_eq(out, keel_atom("b"));
  cr_assert(present(c, 1) && present(c, 3));
  keel_term bad = keel_build(&h, "[{4, d}, oops]");
  cr_assert_eq(keel_cache_put_many(c, bad, -1), KEEL_EINVAL);
  cr_assert(!present(c, 4), "nothing stored from a bad list");
  cr_assert_eq(keel_cache_put_many(c, keel_small(1), -1), KEEL_EINVAL);
  keel_heap_destroy(&h);
  keel_cache_free(c);
}

/* ---- transaction ----------------------------------------------------------
 */

typedef struct tx_run {
  keel_cache *c;
  pthread_barrier_t go;
  atomic_long bad;
  unsigned seed;
} tx_run;

static int64_t read_int(keel_cache *c, int key) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term v;
  int64_t n = -1;
  if (keel_cache_get(c, k(key), &h, &v) == KEEL_OK)
    (void)keel_get_int64(v, &n);
  keel_heap_destroy(&h);
  return n;
}

/* Moves one unit from key 1 to key 2 (arg non-NULL: the other way). */
static int transfer(keel_cache *c, void *arg) {
  int from = arg != NULL ? 2 : 1, to = arg != NULL ? 1 : 2;
  int64_t a = read_int(c, from), b = read_int(c, to);
  if (a <= 0)
    return 1;
  (void)keel_cache_put(c, k(from), keel_small(a - 1), -1);
  sched_yield(); /* widen the window a missing lock would leave */
  (void)keel_cache_put(c, k(to), keel_small(b + 1), -1);
  return KEEL_OK;
}

static int audit(keel_cache *c, void *arg) {
  tx_run *r = arg;
  if (read_int(c, 1) + read_int(c, 2) != 100)
    atomic_fetch_add(&r->bad, 1);
  return KEEL_OK;
}

static void *mover(void *arg) {
  tx_run *r = arg;
  keel_term keys[2] = {k(1), k(2)};
  pthread_barrier_wait(&r->go);
  for (int i = 0; i < 3000; i++)
    (void)keel_cache_transaction(r->c, keys, 2, transfer,
                                 (i & 1) ? (void *)r : NULL);
  return NULL;
}

static void *auditor(void *arg) {
  tx_run *r = arg;
  keel_term keys[2] = {k(2), k(1)}; /* any order */
  pthread_barrier_wait(&r->go);
  for (int i = 0; i < 3000; i++)
    (void)keel_cache_transaction(r->c, keys, 2, audit, r);
  return NULL;
}

static int nested(keel_cache *c, void *arg) {
  (void)arg;
  keel_heap h;
  keel_heap_init(&h);
  keel_term out, keys[1] = {k(1)};
  int rc = keel_cache_transaction(c, keys, 1, audit, NULL) == KEEL_ESTATE &&
                   keel_cache_get_and_update(c, k(1), add_one, NULL, &h,
                                             &out) == KEEL_OK
               ? 7
               : -1; /* the held key is not locked again */
  keel_heap_destroy(&h);
  return rc;
}

Test(cache, transaction_is_atomic_over_its_keys) {
  keel_cache *c = make((keel_cache_opts){0});
  cr_assert_eq(keel_cache_put(c, k(1), keel_small(60), -1), KEEL_OK);
  cr_assert_eq(keel_cache_put(c, k(2), keel_small(40), -1), KEEL_OK);
  static tx_run r;
  r.c = c;
  atomic_store(&r.bad, 0);
  pthread_barrier_init(&r.go, NULL, 3);
  pthread_t th[3];
  cr_assert_eq(pthread_create(&th[0], NULL, mover, &r), 0);
  cr_assert_eq(pthread_create(&th[1], NULL, mover, &r), 0);
  cr_assert_eq(pthread_create(&th[2], NULL, auditor, &r), 0);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&r.go);
  cr_assert_eq(atomic_load(&r.bad), 0, "an audit saw a transfer half done");
  cr_assert_eq(read_int(c, 1) + read_int(c, 2), 100);
  keel_term keys[1] = {k(1)};
  cr_assert_eq(keel_cache_transaction(c, keys, 1, nested, NULL), 7);
  cr_assert_eq(keel_cache_transaction(c, keys, 1, NULL, NULL), KEEL_EINVAL);
  cr_assert_eq(keel_cache_transaction(c, NULL, 1, audit, NULL), KEEL_EINVAL);
  keel_cache_free(c);
}
