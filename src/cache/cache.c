/*
 * cache.c - the TTL cache (keel/cache.h) on an ETS-like table.
 *
 * Objects: {Key, Value, ExpiresAt, Stamp}. Reads and writes are table
 * operations (no cache-wide lock). An expired entry is deleted with
 * delete_object on the exact object read, so a newer write of the same key
 * is never lost. Pruning reads every entry, sorts by Stamp and deletes the
 * oldest with delete_object too. The single-flight table of keys whose
 * fallback runs is a short list under one mutex.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/cache.h"
#include "keel/clock.h"
#include "keel/ets.h"
#include "keel/runtime.h"
#include "keel/telemetry.h"

#define KEY_LOCKS 64

typedef struct flight {
  struct flight *next;
  keel_heap heap; /* the key's copy */
  keel_term key;
  bool done;
  int rc;          /* the fallback's result, for waiters */
  keel_term value; /* its value (in heap), KEEL_NONE on error */
  int waiters;     /* besides the runner */
} flight;

struct keel_cache {
  keel_ets_tab tab;
  keel_cache_opts o;
  _Atomic uint64_t stamp;
  _Atomic uint64_t hits, misses, evictions, expirations, writes, fallbacks;
  pthread_mutex_t lock; /* flights and pruning */
  /* Per-key locks of get_and_update and put_many, by key hash. */
  pthread_mutex_t keylocks[KEY_LOCKS];
  pthread_cond_t cv;
  flight *flights;
  /* janitor */
  pthread_t janitor;
  bool has_janitor, stop;
};

enum { EV_HIT, EV_MISS, EV_EVICTION, EV_EXPIRATION, EV_COUNT };
static keel_tel_event *events[EV_COUNT];
static pthread_once_t events_once = PTHREAD_ONCE_INIT;

static void events_init(void) {
  static const char *names[EV_COUNT] = {"keel.cache.hit", "keel.cache.miss",
                                        "keel.cache.eviction",
                                        "keel.cache.expiration"};
  for (int i = 0; i < EV_COUNT; i++)
    (void)keel_tel_event_parse(names[i], &events[i]);
}

static void emit(keel_cache *c, int ev, uint64_t count) {
  if (events[ev] == NULL)
    return;
  keel_tel_measure m = {keel_atom("count"), (double)count};
  keel_tel_meta md = {keel_atom("cache"), c->o.name != KEEL_NONE
                                              ? c->o.name
                                              : KEEL_ATOM(UNDEFINED)};
  keel_tel_execute(events[ev], &m, 1, &md, 1);
}

static void bump(_Atomic uint64_t *ctr, uint64_t by) {
  atomic_fetch_add_explicit(ctr, by, memory_order_relaxed);
}

static uint64_t now_ms(const keel_cache *c) {
  return c->o.clock != NULL ? c->o.clock(c->o.clock_arg)
                            : keel_monotonic_ns() / 1000000u;
}

static uint64_t next_stamp(keel_cache *c) {
  return atomic_fetch_add_explicit(&c->stamp, 1, memory_order_relaxed) + 1;
}

static uint64_t expires_at(const keel_cache *c, int64_t ttl_ms) {
  uint64_t ttl = ttl_ms < 0 ? c->o.default_ttl_ms : (uint64_t)ttl_ms;
  return ttl == 0 ? 0 : now_ms(c) + ttl;
}

/* ---- janitor ----------------------------------------------------------- */

static void *janitor_main(void *arg) {
  keel_cache *c = arg;
  pthread_mutex_lock(&c->lock);
  while (!c->stop) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    uint64_t ns = (uint64_t)dl.tv_nsec + c->o.janitor_ms * 1000000u;
    dl.tv_sec += (time_t)(ns / 1000000000u);
    dl.tv_nsec = (long)(ns % 1000000000u);
    (void)pthread_cond_timedwait(&c->cv, &c->lock, &dl);
    if (c->stop)
      break;
    pthread_mutex_unlock(&c->lock);
    (void)keel_cache_purge(c);
    pthread_mutex_lock(&c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* ---- create / free ----------------------------------------------------- */

int keel_cache_new(const keel_cache_opts *opts, keel_cache **out) {
  keel_cache_opts o = {0};
  if (opts != NULL)
    o = *opts;
  if (out == NULL || o.reclaim < 0 || o.reclaim > 1 ||
      (unsigned)o.policy > KEEL_CACHE_LRU)
    return KEEL_EINVAL;
  if (o.reclaim == 0)
    o.reclaim = 0.1;
  (void)pthread_once(&events_once, events_init);
  keel_cache *c = calloc(1, sizeof *c);
  if (c == NULL)
    return KEEL_ENOMEM;
  c->o = o;
  keel_ets_opts eo = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  int rc = keel_ets_new(&eo, &c->tab);
  if (rc != KEEL_OK) {
    free(c);
    return rc;
  }
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cv, NULL);
  for (int i = 0; i < KEY_LOCKS; i++)
    pthread_mutex_init(&c->keylocks[i], NULL);
  if (o.janitor_ms != 0) {
    if (pthread_create(&c->janitor, NULL, janitor_main, c) != 0) {
      keel_cache_free(c);
      return KEEL_EIO;
    }
    c->has_janitor = true;
  }
  *out = c;
  return KEEL_OK;
}

void keel_cache_free(keel_cache *c) {
  if (c == NULL)
    return;
  if (c->has_janitor) {
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->janitor, NULL);
  }
  (void)keel_ets_delete(c->tab);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->lock);
  for (int i = 0; i < KEY_LOCKS; i++)
    pthread_mutex_destroy(&c->keylocks[i]);
  free(c);
}

/* ---- entries ------------------------------------------------------------ */

/* Reads key's object into h: 1 found (*obj), 0 missing (expired ones are
 * deleted and counted), or an error. */
static int read_obj(keel_cache *c, keel_term key, keel_heap *h,
                    keel_term *obj) {
  keel_term list;
  int rc = keel_ets_lookup(c->tab, key, h, &list);
  if (rc != KEEL_OK)
    return rc;
  if (!keel_is_cons(list))
    return 0;
  *obj = keel_hd(list);
  int64_t exp = keel_small_value(keel_tuple_get(*obj, 2));
  if (exp != 0 && now_ms(c) >= (uint64_t)exp) {
    (void)keel_ets_delete_object(c->tab, *obj); /* not a newer write */
    bump(&c->expirations, 1);
    emit(c, EV_EXPIRATION, 1);
    return 0;
  }
  return 1;
}

typedef struct aged {
  uint64_t stamp;
  keel_term obj;
} aged;

static int by_stamp(const void *a, const void *b) {
  uint64_t x = ((const aged *)a)->stamp, y = ((const aged *)b)->stamp;
  return x < y ? -1 : x > y;
}

/* Prunes the oldest entries when the cache is over max_size. */
static void prune(keel_cache *c) {
  keel_ets_info info;
  if (c->o.max_size == 0 || keel_ets_info_get(c->tab, &info) != KEEL_OK ||
      info.size <= c->o.max_size)
    return;
  pthread_mutex_lock(&c->lock); /* one pruner at a time */
  keel_heap h;
  keel_heap_init(&h);
  keel_term all;
  size_t n = 0;
  if (keel_ets_tab2list(c->tab, &h, &all) == KEEL_OK)
    for (keel_term l = all; keel_is_cons(l); l = keel_tl(l))
      n++;
  size_t target =
      c->o.max_size - (size_t)((double)c->o.max_size * c->o.reclaim + 0.5);
  aged *v = n > target ? malloc(n * sizeof *v) : NULL;
  if (v != NULL) {
    size_t k = 0;
    for (keel_term l = all; keel_is_cons(l); l = keel_tl(l), k++) {
      v[k].obj = keel_hd(l);
      v[k].stamp = (uint64_t)keel_small_value(keel_tuple_get(v[k].obj, 3));
    }
    qsort(v, n, sizeof *v, by_stamp);
    uint64_t evicted = 0;
    for (size_t i = 0; i < n - target; i++)
      if (keel_ets_delete_object(c->tab, v[i].obj) == KEEL_OK)
        evicted++;
    bump(&c->evictions, evicted);
    emit(c, EV_EVICTION, evicted);
    free(v);
  }
  keel_heap_destroy(&h);
  pthread_mutex_unlock(&c->lock);
}

static int put_exp(keel_cache *c, keel_term key, keel_term value,
                   uint64_t exp) {
  uint64_t buf[16];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 16);
  keel_term obj = keel_tuple(&h, 4, key, value, keel_small((int64_t)exp),
                             keel_small((int64_t)next_stamp(c)));
  int rc = obj == KEEL_NONE ? KEEL_ENOMEM : keel_ets_insert(c->tab, obj);
  if (rc == KEEL_OK) {
    bump(&c->writes, 1);
    prune(c);
  }
  return rc;
}

int keel_cache_put(keel_cache *c, keel_term key, keel_term value,
                   int64_t ttl_ms) {
  if (c == NULL || key == KEEL_NONE || value == KEEL_NONE)
    return KEEL_EINVAL;
  return put_exp(c, key, value, expires_at(c, ttl_ms));
}

int keel_cache_get(keel_cache *c, keel_term key, keel_heap *h, keel_term *out) {
  if (c == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_term obj = KEEL_NONE;
  int rc = read_obj(c, key, h, &obj);
  if (rc < 0)
    return rc;
  if (rc == 0) {
    bump(&c->misses, 1);
    emit(c, EV_MISS, 1);
    return KEEL_ENOENT;
  }
  if (c->o.policy == KEEL_CACHE_LRU) {
    uint64_t buf[8];
    keel_heap s;
    keel_heap_init_fixed(&s, buf, 8);
    (void)keel_ets_update_element(
        c->tab, key,
        keel_tuple(&s, 2, keel_small(4), keel_small((int64_t)next_stamp(c))),
        KEEL_NONE);
  }
  bump(&c->hits, 1);
  emit(c, EV_HIT, 1);
  *out = keel_tuple_get(obj, 1);
  return KEEL_OK;
}

int keel_cache_del(keel_cache *c, keel_term key) {
  return c == NULL ? KEEL_EINVAL : keel_ets_delete_key(c->tab, key);
}

int keel_cache_ttl(keel_cache *c, keel_term key, int64_t *ms_left) {
  if (c == NULL || ms_left == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term obj = KEEL_NONE;
  int rc = read_obj(c, key, &h, &obj);
  if (rc == 1) {
    int64_t exp = keel_small_value(keel_tuple_get(obj, 2));
    *ms_left = exp == 0 ? -1 : exp - (int64_t)now_ms(c);
    rc = KEEL_OK;
  } else if (rc == 0) {
    rc = KEEL_ENOENT;
  }
  keel_heap_destroy(&h);
  return rc;
}

/* Sets element pos of key's live object to v. */
static int set_elem(keel_cache *c, keel_term key, int pos, int64_t v) {
  if (c == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term obj = KEEL_NONE;
  int rc = read_obj(c, key, &h, &obj);
  if (rc == 1) {
    uint64_t buf[8];
    keel_heap s;
    keel_heap_init_fixed(&s, buf, 8);
    rc = keel_ets_update_element(
        c->tab, key, keel_tuple(&s, 2, keel_small(pos), keel_small(v)),
        KEEL_NONE);
    rc = rc == 1 ? KEEL_OK : rc == 0 ? KEEL_ENOENT : rc;
  } else if (rc == 0) {
    rc = KEEL_ENOENT;
  }
  keel_heap_destroy(&h);
  return rc;
}

int keel_cache_expire(keel_cache *c, keel_term key, uint64_t ms) {
  return set_elem(c, key, 3, c != NULL ? (int64_t)(now_ms(c) + ms) : 0);
}

int keel_cache_persist(keel_cache *c, keel_term key) {
  return set_elem(c, key, 3, 0);
}

int keel_cache_touch(keel_cache *c, keel_term key) {
  return set_elem(c, key, 4, c != NULL ? (int64_t)next_stamp(c) : 0);
}

int keel_cache_incr(keel_cache *c, keel_term key, int64_t by, int64_t dflt,
                    int64_t *out) {
  if (c == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term obj = KEEL_NONE;
  int rc = read_obj(c, key, &h, &obj); /* drops an expired entry first */
  keel_term def =
      keel_tuple(&h, 4, key, keel_int(&h, dflt),
                 keel_small((int64_t)expires_at(c, KEEL_CACHE_TTL_DEFAULT)),
                 keel_small((int64_t)next_stamp(c)));
  keel_term v;
  if (rc >= 0)
    rc = keel_ets_update_counter(
        c->tab, key, keel_tuple(&h, 2, keel_small(2), keel_int(&h, by)), def,
        &h, &v);
  if (rc == KEEL_OK && keel_get_int64(v, out) != KEEL_OK)
    rc = KEEL_ESYSLIMIT;
  if (rc == KEEL_OK)
    bump(&c->writes, 1);
  keel_heap_destroy(&h);
  return rc;
}

size_t keel_cache_purge(keel_cache *c) {
  if (c == NULL)
    return 0;
  uint64_t buf[64];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 64);
  /* [{{'_', '_', '$1', '_'}, [{'andalso', {'>', '$1', 0},
   *                                        {'=<', '$1', Now}}], [true]}] */
  keel_term v1 = keel_atom("$1"), any = keel_atom("_");
  keel_term head = keel_tuple(&h, 4, any, any, v1, any);
  keel_term guard = keel_tuple(
      &h, 3, keel_atom("andalso"),
      keel_tuple(&h, 3, keel_atom(">"), v1, keel_small(0)),
      keel_tuple(&h, 3, keel_atom("=<"), v1, keel_small((int64_t)now_ms(c))));
  keel_term clause = keel_tuple(&h, 3, head, keel_cons(&h, guard, KEEL_NIL),
                                keel_cons(&h, KEEL_ATOM(TRUE), KEEL_NIL));
  keel_term spec = keel_cons(&h, clause, KEEL_NIL);
  int64_t n = spec == KEEL_NONE ? 0 : keel_ets_select_delete(c->tab, spec);
  if (n > 0) {
    bump(&c->expirations, (uint64_t)n);
    emit(c, EV_EXPIRATION, (uint64_t)n);
  }
  return n > 0 ? (size_t)n : 0;
}

void keel_cache_stats_get(keel_cache *c, keel_cache_stats *out) {
  keel_ets_info info = {0};
  (void)keel_ets_info_get(c->tab, &info);
  out->hits = atomic_load(&c->hits);
  out->misses = atomic_load(&c->misses);
  out->evictions = atomic_load(&c->evictions);
  out->expirations = atomic_load(&c->expirations);
  out->writes = atomic_load(&c->writes);
  out->fallbacks = atomic_load(&c->fallbacks);
  out->size = info.size;
}

/* ---- get_and_update, put_many (per-key locks) -------------------------- */

/* The stripes the calling thread holds in a transaction of cache tx_c. */
static _Thread_local keel_cache *tx_c;
static _Thread_local uint64_t tx_held;

static unsigned stripe_of(keel_term key) {
  return (unsigned)(keel_hash(key) % KEY_LOCKS);
}

/* Locks key's stripe unless this thread's transaction holds it; returns
 * whether it locked (the caller then unlocks with key_unlock). */
static bool key_lock(keel_cache *c, keel_term key) {
  unsigned i = stripe_of(key);
  if (tx_c == c && (tx_held >> i & 1u))
    return false;
  pthread_mutex_lock(&c->keylocks[i]);
  return true;
}

static void key_unlock(keel_cache *c, keel_term key, bool locked) {
  if (locked)
    pthread_mutex_unlock(&c->keylocks[stripe_of(key)]);
}

int keel_cache_transaction(keel_cache *c, const keel_term *keys, size_t nkeys,
                           keel_cache_tx_fn fn, void *arg) {
  if (c == NULL || fn == NULL || (nkeys > 0 && keys == NULL))
    return KEEL_EINVAL;
  if (tx_c != NULL)
    return KEEL_ESTATE; /* no nesting: lock order could not be kept */
  uint64_t mask = 0;
  for (size_t i = 0; i < nkeys; i++)
    mask |= UINT64_C(1) << stripe_of(keys[i]);
  for (unsigned i = 0; i < KEY_LOCKS; i++) /* in stripe order: no cycles */
    if (mask >> i & 1u)
      pthread_mutex_lock(&c->keylocks[i]);
  tx_c = c;
  tx_held = mask;
  int rc = fn(c, arg);
  tx_c = NULL;
  tx_held = 0;
  for (unsigned i = KEY_LOCKS; i-- > 0;)
    if (mask >> i & 1u)
      pthread_mutex_unlock(&c->keylocks[i]);
  return rc;
}

int keel_cache_get_and_update(keel_cache *c, keel_term key,
                              keel_cache_update_fn fn, void *arg, keel_heap *h,
                              keel_term *out) {
  if (c == NULL || key == KEEL_NONE || fn == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  bool locked = key_lock(c, key);
  keel_term obj = KEEL_NONE, value = KEEL_NONE;
  int rc = read_obj(c, key, h, &obj);
  if (rc >= 0) {
    keel_term old = rc == 1 ? keel_tuple_get(obj, 1) : KEEL_NONE;
    rc = fn(key, old, arg, h, &value);
    if ((rc == KEEL_OK || rc == 1) && value == KEEL_NONE)
      rc = KEEL_EINVAL;
  }
  if (rc == KEEL_OK) {
    uint64_t exp = obj != KEEL_NONE
                       ? (uint64_t)keel_small_value(keel_tuple_get(obj, 2))
                       : expires_at(c, KEEL_CACHE_TTL_DEFAULT);
    rc = put_exp(c, key, value, exp);
  } else if (rc == 1) {
    rc = KEEL_OK;
  }
  key_unlock(c, key, locked);
  if (rc == KEEL_OK)
    *out = value;
  return rc;
}

int keel_cache_put_many(keel_cache *c, keel_term pairs, int64_t ttl_ms) {
  if (c == NULL)
    return KEEL_EINVAL;
  keel_term l = pairs;
  for (; keel_is_cons(l); l = keel_tl(l)) {
    keel_term p = keel_hd(l);
    if (!keel_is_tuple(p) || keel_tuple_arity(p) != 2)
      return KEEL_EINVAL;
  }
  if (l != KEEL_NIL)
    return KEEL_EINVAL;
  uint64_t exp = expires_at(c, ttl_ms);
  for (l = pairs; keel_is_cons(l); l = keel_tl(l)) {
    keel_term key = keel_tuple_get(keel_hd(l), 0);
    bool locked = key_lock(c, key);
    int rc = put_exp(c, key, keel_tuple_get(keel_hd(l), 1), exp);
    key_unlock(c, key, locked);
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

/* ---- fetch (single flight) --------------------------------------------- */

static flight *flight_find(keel_cache *c, keel_term key) {
  for (flight *f = c->flights; f != NULL; f = f->next)
    if (keel_eq_exact(f->key, key))
      return f;
  return NULL;
}

static void flight_unlink(keel_cache *c, flight *f) {
  for (flight **pp = &c->flights; *pp != NULL; pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      return;
    }
}

static void flight_release(flight *f) {
  keel_heap_destroy(&f->heap);
  free(f);
}

/* Waits (lock held on entry and exit) until f is done. */
static void flight_wait(keel_cache *c, flight *f) {
  keel_proc *self = keel_current();
  while (!f->done) {
    if (self == NULL) {
      pthread_cond_wait(&c->cv, &c->lock);
    } else { /* a fiber: never block its scheduler thread */
      pthread_mutex_unlock(&c->lock);
      (void)keel_fiber_yield(self);
      pthread_mutex_lock(&c->lock);
    }
  }
}

/* Runs the fallback and stores its value; returns the fetch's result. */
static int run_fallback(keel_cache *c, keel_term key, keel_cache_fallback_fn fn,
                        void *arg, keel_heap *h, keel_term *out) {
  bump(&c->fallbacks, 1);
  keel_term value = KEEL_NONE;
  int64_t ttl = KEEL_CACHE_TTL_DEFAULT;
  int rc = fn(key, arg, h, &value, &ttl);
  if (rc == KEEL_OK || rc == 1) {
    if (value == KEEL_NONE)
      return KEEL_EINVAL;
    *out = value;
    if (rc == KEEL_OK) {
      int prc = keel_cache_put(c, key, value, ttl);
      if (prc != KEEL_OK)
        return prc;
    }
  }
  return rc;
}

int keel_cache_fetch(keel_cache *c, keel_term key, keel_cache_fallback_fn fn,
                     void *arg, keel_heap *h, keel_term *out) {
  if (c == NULL || fn == NULL || h == NULL || out == NULL)
    return KEEL_EINVAL;
  int rc = keel_cache_get(c, key, h, out);
  if (rc != KEEL_ENOENT)
    return rc;
  keel_proc *self = keel_current();
  bool can_wait = self == NULL || keel_proc_is_fiber(self);
  pthread_mutex_lock(&c->lock);
  flight *f = flight_find(c, key);
  if (f != NULL && can_wait) {
    f->waiters++;
    flight_wait(c, f);
    rc = f->rc;
    if (f->value != KEEL_NONE) { /* the runner's result, stored or not */
      *out = keel_term_copy(h, f->value);
      if (*out == KEEL_NONE)
        rc = KEEL_ENOMEM;
    }
    if (--f->waiters == 0)
      flight_release(f);
    pthread_mutex_unlock(&c->lock);
    return rc;
  }
  if (f != NULL) { /* a handler process: run it without waiting */
    pthread_mutex_unlock(&c->lock);
    return run_fallback(c, key, fn, arg, h, out);
  }
  /* No flight: perhaps one just ended (its value is stored before the
   * flight goes, under this lock). Read again before starting one. */
  keel_term v;
  if (keel_ets_lookup_element(c->tab, key, 2, KEEL_NONE, h, &v) == KEEL_OK) {
    pthread_mutex_unlock(&c->lock);
    return keel_cache_get(c, key, h, out) == KEEL_OK
               ? KEEL_OK
               : keel_cache_fetch(c, key, fn, arg, h, out);
  }
  f = calloc(1, sizeof *f);
  if (f != NULL) {
    keel_heap_init(&f->heap);
    f->key = keel_term_copy(&f->heap, key);
    if (f->key == KEEL_NONE) {
      flight_release(f);
      f = NULL;
    } else {
      f->next = c->flights;
      c->flights = f;
    }
  }
  pthread_mutex_unlock(&c->lock);
  rc = run_fallback(c, key, fn, arg, h, out);
  if (f != NULL) {
    pthread_mutex_lock(&c->lock);
    flight_unlink(c, f);
    f->done = true;
    f->rc = rc;
    f->value = KEEL_NONE;
    if ((rc == KEEL_OK || rc == 1) && f->waiters > 0) {
      f->value = keel_term_copy(&f->heap, *out);
      if (f->value == KEEL_NONE)
        f->rc = KEEL_ENOMEM;
    }
    pthread_cond_broadcast(&c->cv);
    if (f->waiters == 0)
      flight_release(f);
    pthread_mutex_unlock(&c->lock);
  }
  return rc;
}
