/*
 * keel/cache.h - a TTL cache on an ETS-like table (Cachex-like; see
 * docs/cache.md).
 *
 * Entries live in a public set table as {Key, Value, ExpiresAt, Stamp}:
 * ExpiresAt is the cache clock's millisecond when the entry expires (0:
 * never) and Stamp orders writes (least-recently-written eviction) or,
 * with KEEL_CACHE_LRU, accesses too. Expired entries read as misses and
 * are deleted on the way (lazy expiry); an optional janitor thread sweeps
 * them every janitor_ms. With max_size, a write that makes the cache
 * larger prunes the oldest entries (reclaim, default 10% of max_size).
 * keel_cache_fetch runs a fallback for a missing key once however many
 * callers miss it at the same time (single flight).
 *
 * Every function is thread-safe and callable from processes. Events
 * [keel, cache, hit | miss | eviction | expiration] (measurement count,
 * metadata cache = the cache's name) are emitted through keel/telemetry.h.
 */
#ifndef KEEL_CACHE_H
#define KEEL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_cache keel_cache;

typedef enum keel_cache_policy {
  KEEL_CACHE_LRW = 0, /* evict the least recently written */
  KEEL_CACHE_LRU = 1  /* reads count as uses too */
} keel_cache_policy;

/* The cache's clock in milliseconds (tests pass a clock they move). */
typedef uint64_t (*keel_cache_clock_fn)(void *arg);

typedef struct keel_cache_opts {
  keel_term name;          /* an atom naming it in events; may be 0 */
  uint64_t default_ttl_ms; /* 0: entries never expire by default */
  size_t max_size;         /* 0: unbounded */
  double reclaim;          /* fraction of max_size pruned (0: 0.1) */
  keel_cache_policy policy;
  uint64_t janitor_ms; /* 0: no janitor (lazy expiry only) */
  keel_cache_clock_fn clock;
  void *clock_arg;
} keel_cache_opts;

/* Creates a cache (opts may be NULL). Its table belongs to the calling
 * process, if any, and goes with it. Errors: KEEL_EINVAL (reclaim outside
 * [0, 1], bad policy), KEEL_ENOMEM, KEEL_EIO (janitor thread). */
int keel_cache_new(const keel_cache_opts *opts, keel_cache **out);

/* Stops the janitor, deletes the table, frees the cache. NULL is fine.
 * No other call may be running or come after. */
void keel_cache_free(keel_cache *c);

/* TTL argument of put: the cache's default. */
#define KEEL_CACHE_TTL_DEFAULT ((int64_t)-1)

/* Stores value under key (copies both). ttl_ms: milliseconds, 0 = never
 * expires, KEEL_CACHE_TTL_DEFAULT = the default. May prune. */
int keel_cache_put(keel_cache *c, keel_term key, keel_term value,
                   int64_t ttl_ms);

/* The value under key, built in h. KEEL_ENOENT when missing or expired
 * (the expired entry is deleted). */
int keel_cache_get(keel_cache *c, keel_term key, keel_heap *h, keel_term *out);

/* Deletes key (KEEL_OK also when absent). */
int keel_cache_del(keel_cache *c, keel_term key);

/* Milliseconds left before key expires in *ms_left (-1: never). */
int keel_cache_ttl(keel_cache *c, keel_term key, int64_t *ms_left);

/* Sets key to expire ms from now (expire), never (persist); or counts it
 * as written now, for eviction (touch). KEEL_ENOENT when missing. */
int keel_cache_expire(keel_cache *c, keel_term key, uint64_t ms);
int keel_cache_persist(keel_cache *c, keel_term key);
int keel_cache_touch(keel_cache *c, keel_term key);

/* Adds by to the integer under key (missing: starts from dflt, with the
 * default TTL) and stores the result in *out. KEEL_EBADARG when the value
 * is not an integer. */
int keel_cache_incr(keel_cache *c, keel_term key, int64_t by, int64_t dflt,
                    int64_t *out);

/* Computes the value of a missing key: returns KEEL_OK with *value built
 * in h (and *ttl_ms, preset to KEEL_CACHE_TTL_DEFAULT) to store it, 1 to
 * return it without storing, or an error (nothing stored, the caller gets
 * the error). */
typedef int (*keel_cache_fallback_fn)(keel_term key, void *arg, keel_heap *h,
                                      keel_term *value, int64_t *ttl_ms);

/* get, and on a miss the fallback: concurrent fetches of one key run it
 * once, the others wait for its result (plain threads block; fibers yield
 * until it is there). A handler process cannot wait: it runs the fallback
 * itself if another fetch of the key is in flight. Returns KEEL_OK (a hit
 * or the stored value), 1 (the fallback's unstored value), or the
 * fallback's error. */
int keel_cache_fetch(keel_cache *c, keel_term key, keel_cache_fallback_fn fn,
                     void *arg, keel_heap *h, keel_term *out);

/* Computes key's new value from its current one (old: KEEL_NONE when
 * missing or expired): returns KEEL_OK with *value built in h to store
 * it, 1 to leave the entry as it is (*value is still what the call
 * returns), or an error (nothing stored). It must not block. */
typedef int (*keel_cache_update_fn)(keel_term key, keel_term old, void *arg,
                                    keel_heap *h, keel_term *value);

/* get_and_update (Cachex): reads key, runs fn and stores its value,
 * atomically with respect to the other get_and_update and put_many calls
 * of the key (a per-key lock; plain puts do not take it, as Cachex's
 * writes outside a transaction). A stored value keeps the entry's TTL (a
 * new entry gets the default). *out = fn's value. Returns KEEL_OK (stored
 * or left: fn's 0 or 1), fn's error, or KEEL_EINVAL. Thread-safe. */
int keel_cache_get_and_update(keel_cache *c, keel_term key,
                              keel_cache_update_fn fn, void *arg, keel_heap *h,
                              keel_term *out);

/* Runs fn(c, arg) holding the locks of keys (nkeys of them), so that it
 * is atomic with respect to the other transactions, get_and_update and
 * put_many calls of those keys (Cachex's transaction; plain reads and
 * writes do not wait for it). Inside fn use the cache's calls freely
 * (get_and_update and put_many of a locked key do not lock again); fn
 * must not block or yield (the locks are held by the thread). Returns
 * fn's result; KEEL_ESTATE when called inside a transaction of another
 * cache or an nested one, KEEL_EINVAL for bad arguments. */
typedef int (*keel_cache_tx_fn)(keel_cache *c, void *arg);
int keel_cache_transaction(keel_cache *c, const keel_term *keys, size_t nkeys,
                           keel_cache_tx_fn fn, void *arg);

/* put_many: stores each {Key, Value} of the list pairs with ttl_ms (as
 * keel_cache_put), each under its key's lock. KEEL_EINVAL for a list that
 * is not one of 2-tuples (nothing stored); else the first store error. */
int keel_cache_put_many(keel_cache *c, keel_term pairs, int64_t ttl_ms);

/* Deletes every expired entry now (what the janitor does); returns how
 * many. */
size_t keel_cache_purge(keel_cache *c);

typedef struct keel_cache_stats {
  uint64_t hits, misses, evictions, expirations, writes, fallbacks;
  size_t size;
} keel_cache_stats;

/* Counters since creation, and the current number of entries. */
void keel_cache_stats_get(keel_cache *c, keel_cache_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_CACHE_H */
