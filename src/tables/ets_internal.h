/*
 * ets_internal.h - private layouts of the tables layer: objects, the two
 * stores (striped hash for set/bag/duplicate_bag, rwlock'd sorted array
 * for ordered_set), tables and the registry hooks.
 *
 * Locking: a table's objects are guarded by its store's locks (one rwlock
 * per stripe of the hash, one rwlock for the ordered store), except that
 * sets are also read without locks (a per-stripe seqlock; whatever leaves
 * a set's store is freed after a grace period, ets_rcu.c). Callers pin
 * the table through its registry slot (ets_table.c) for the duration of a
 * call, or hold a read section instead (lookups, member, single set
 * inserts, in-place counters); keel_ets_delete waits for the pins to
 * drain and then for a grace period before freeing it.
 * Owner, heir and name change only under the registry lock.
 */
#ifndef KEEL_TABLES_ETS_INTERNAL_H
#define KEEL_TABLES_ETS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/ets.h"

/* One stored term: a flat copy in one allocation, with a 4-word header
 * (a {K, V} of immediates takes 56 bytes). Objects of up to 64 bytes made
 * by keel__ets_obj_new_flat are slab blocks (ets_slab.c), others malloc'd.
 * The term's root is at data[0] (keel_term_copy allocates the root
 * first), so it is data's address with the root's tag (boxed or cons), or
 * for an immediate the word in data[0]. A copy holding counted references
 * (large binaries, resources) keeps their chain in data[words]. */
typedef struct keel__ets_obj {
  struct keel__ets_obj *next; /* hash chain */
  uint64_t hash;              /* hash of key (hashed stores) */
  keel_term key;              /* element keypos, or KEEL_NONE */
  uint32_t words;             /* copied words */
  uint8_t mark : 1;           /* scratch, under the key's write lock */
  uint8_t slab : 1;           /* a slab block (keel__ets_slab_alloc) */
  uint8_t flat;    /* 1: a tuple of immediates filling data[0..words), no
                      counted refs: copied out with one memcpy */
  uint8_t root;    /* the root's tag bits, or ETS_ROOT_IMM */
  uint8_t has_off; /* data[words] holds a keel_offheap chain */
  uint64_t data[];
} keel__ets_obj;

#define ETS_ROOT_IMM 0xffu

/* The stored term. */
static inline keel_term keel__ets_obj_term(const keel__ets_obj *o) {
  if (o->root == ETS_ROOT_IMM)
    return (keel_term)o->data[0];
  return (keel_term)(uintptr_t)o->data | o->root;
}

#define ETS_STRIPES 64

/* A bucket of a set table's stripe: one cache line holding the chain's
 * head and a copy of the head object, so that a lock-free lookup of a key
 * that heads its chain (most keys: chains are under one object long on
 * average) reads one cache line. `hash` and `second` (the head's hash and
 * link) are valid when head is not NULL; `words` is the copy's length in
 * data[], 0 when the head is not a flat tuple of at most ETS_LINE_WORDS
 * words (then readers follow head). Writers refresh a line whenever its
 * chain or its head object changes (ets_store.c), all under the
 * stripe's write lock with its seq odd, so a reader whose seq check
 * passes read a line that matched its chain. Stripes of bags and
 * duplicate_bags (no lock-free readers) use bare pointers instead. */
#define ETS_LINE_WORDS 4
typedef struct ets_line {
  struct keel__ets_obj *head;   /* the chain: ETS_ST / ETS_LD */
  uint64_t hash;                /* head->hash */
  struct keel__ets_obj *second; /* head->next */
  uint64_t words;               /* copied words, or 0 */
  uint64_t data[ETS_LINE_WORDS];
} ets_line;

/* A stripe of the hashed store. Writers hold `lock` for writing and keep
 * `seq` odd meanwhile (keel__ets_wrlock), so a set table's lock-free
 * reader that sees the same even `seq` before and after its reads read a
 * consistent state (a seqlock). `view` packs the bucket array's address
 * and length in one word, so a lock-free reader loads one word for both.
 * Stripes are cache-line aligned, one or more lines each. Chain links and
 * bucket slots
 * are written with release stores and read by lock-free readers with
 * acquire loads (ETS_LD / ETS_ST). A set's buckets are ets_line (64
 * bytes each), other types' a bare chain pointer: bucket i's head is at
 * buckets + (i << shift) (keel__ets_slot). */
typedef struct ets_stripe {
  /* What a lock-free reader loads, on the stripe's first cache line. */
  _Alignas(64) _Atomic uint64_t seq;
  uintptr_t view;  /* buckets | log2(nbuckets) (arrays are 64-byte aligned);
                      ETS_ST / ETS_LD */
  char *buckets;   /* writers */
  size_t nbuckets; /* power of two; writers */
  size_t count;
  bool defer;     /* a set's stripe: old bucket arrays wait a grace period,
                     buckets are lines */
  unsigned shift; /* log2 of a bucket's size: 6 (lines) or 3 (pointers) */
  pthread_rwlock_t lock;
} ets_stripe;

/* Loads and stores of words a lock-free reader may read concurrently. */
#define ETS_LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ETS_ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Objects per chunk of the ordered store (ets_ordered.c). */
#define ORD_CHUNK 128

typedef struct ets_ord_chunk ets_ord_chunk;

typedef struct ets_ordered {
  pthread_rwlock_t lock;
  ets_ord_chunk **c; /* chunks in key order, none empty */
  size_t nc, capc;
  size_t n; /* objects */
} ets_ordered;

/* safe_fixtable state (ets_fix.c): fixations counted per process. */
typedef struct ets_fixer {
  keel_term pid; /* or the atom undefined: threads that run no process */
  uint64_t n;
} ets_fixer;

typedef struct ets_fix {
  pthread_mutex_t lock;
  ets_fixer *v;
  size_t n, cap;
  uint64_t since_ns; /* keel_monotonic_ns() of the first fixation */
} ets_fix;

typedef struct keel__ets_table {
  keel_ets_type type;
  keel_ets_access access;
  unsigned keypos;
  bool any_order;          /* duplicate_bag: keys' objects in any order */
  keel_term name;          /* atom or KEEL_NONE */
  _Atomic keel_term owner; /* written under the registry lock */
  keel_term heir;          /* under the registry lock */
  keel__ets_obj *heir_data;
  keel_ets_tab id;
  _Atomic size_t size;  /* objects */
  _Atomic size_t words; /* object words */
  ets_fix fix;
  union {
    ets_stripe *stripes; /* ETS_STRIPES of them */
    ets_ordered ord;
  } u;
} keel__ets_table;

/* A small vector of object pointers (the objects of one key). */
typedef struct ets_vec {
  keel__ets_obj **v;
  size_t n, cap;
  keel__ets_obj *inl[4];
} ets_vec;

void keel__ets_vec_init(ets_vec *v);
int keel__ets_vec_push(ets_vec *v, keel__ets_obj *o);
/* Capacity for at least `want` entries; KEEL_OK or KEEL_ENOMEM. */
int keel__ets_vec_reserve(ets_vec *v, size_t want);
void keel__ets_vec_free(ets_vec *v);

/* ---- objects (ets_store.c) ---- */

/* Copies t into a new object; keypos 0: no key. NULL on out-of-memory. */
keel__ets_obj *keel__ets_obj_new(keel_term t, unsigned keypos, bool hashed);
/* keel__ets_obj_new for a tuple t of `arity` immediates and keypos >= 1
 * (hashed stores): one memcpy. NULL on out-of-memory. */
keel__ets_obj *keel__ets_obj_new_flat(keel_term t, size_t arity,
                                      unsigned keypos);
void keel__ets_obj_free(keel__ets_obj *o);
/* Words an object costs in info(memory). */
size_t keel__ets_obj_cost(const keel__ets_obj *o);
/* A copy of o's term in hp (one memcpy for flat objects); KEEL_NONE on
 * out-of-memory. */
keel_term keel__ets_obj_copy(const keel__ets_obj *o, keel_heap *hp);

/* ---- 64-byte blocks for small objects (ets_slab.c) ---- */

#define KEEL__ETS_SLAB_BLOCK 64
/* Blocks moved between a thread's cache and the shared pool at once (and
 * carved from a region at once). */
#define KEEL__ETS_SLAB_BATCH 256
/* A 64-byte, 64-byte aligned block from the calling thread's cache; NULL
 * on out-of-memory. Any thread. */
void *keel__ets_slab_alloc(void);
/* Gives a block back (to the calling thread's cache). NULL: no-op. */
void keel__ets_slab_free(void *p);

/* ---- bucket arrays (ets_arrays.c) ---- */

/* A 64-byte aligned array of size bytes (a power of two, at least 64):
 * from 4 KiB up, on memory advised for huge pages. Not zeroed. NULL on
 * out-of-memory. Any thread. */
void *keel__ets_arr_alloc(size_t size);
/* Frees an array of keel__ets_arr_alloc(size). NULL: no-op. */
void keel__ets_arr_free(void *p, size_t size);
/* p (of keel__ets_arr_alloc(size)) as keel__ets_defer_free takes it: the
 * limbo gives it to keel__ets_arr_free_tagged (bit 1 set, the size in
 * bits 2..7) unless it is a malloc'd one (returned unchanged, freed with
 * free). */
void *keel__ets_arr_tag(void *p, size_t size);
void keel__ets_arr_free_tagged(void *tagged);

/* ---- stores (ets_store.c) ---- */

int keel__ets_store_init(keel__ets_table *t);
/* Frees every object and the store (no locks taken). */
void keel__ets_store_destroy(keel__ets_table *t);

static inline bool keel__ets_hashed(const keel__ets_table *t) {
  return t->type != KEEL_ETS_ORDERED_SET;
}
/* Key equality of the table: =:= for hashed types, == for ordered_set. */
bool keel__ets_key_eq(const keel__ets_table *t, keel_term a, keel_term b);

/* Lock of the store part holding key (hash h for hashed types). Writers
 * take it through keel__ets_wrlock. */
pthread_rwlock_t *keel__ets_key_lock(keel__ets_table *t, uint64_t h);
/* Write-locks the part holding hash h (hashed stores: the stripe, with
 * its seq made odd until keel__ets_wrunlock); the ordered store's lock
 * for ordered_set. */
void keel__ets_wrlock(keel__ets_table *t, uint64_t h);
void keel__ets_wrunlock(keel__ets_table *t, uint64_t h);
/* The hash the stores use: keel_hash with a 64-bit finaliser (splitmix64's)
 * on top, since stripes take the top bits and buckets the next bits and
 * keel_hash's low bits are not uniform for small integers; a small
 * integer key skips keel_hash (its word is canonical; the finaliser is a
 * bijection, so distinct small keys never share a hash). */
static inline uint64_t keel__ets_hash(keel_term key) {
  /* A small integer is one canonical word: the finaliser alone mixes it. */
  uint64_t z = keel_is_small(key) ? (uint64_t)key : keel_hash(key);
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Stripe index of a hash. */
static inline unsigned keel__ets_stripe_of(uint64_t h) {
  return (unsigned)(h >> 58);
}
/* Bucket of a hash in a stripe of nb (a power of two, at most 2^58)
 * buckets: the bits after the stripe's, so that bucket order is hash
 * order and doubling splits bucket b into 2b and 2b + 1. */
static inline size_t keel__ets_bucket_of(uint64_t h, size_t nb) {
  unsigned k = (unsigned)__builtin_ctzll((unsigned long long)nb);
  return k == 0 ? 0 : (size_t)((h << 6) >> (64 - k));
}
/* The hashed store's total order of keys: by hash, then (equal hashes)
 * by term order, then an order that separates == terms that are not =:=.
 * 0 exactly when the keys are =:=. */
int keel__ets_hkey_cmp(uint64_t ha, keel_term a, uint64_t hb, keel_term b);
/* Write-locks the stripes in mask (ascending), or the ordered lock. */
void keel__ets_lock_mask(keel__ets_table *t, uint64_t mask);
void keel__ets_unlock_mask(keel__ets_table *t, uint64_t mask);

/* Hashed store, the key's lock held: the first object with key (hash h)
 * in its chain (the others of a bag follow it through `next`), or NULL. */
keel__ets_obj *keel__ets_hash_find(keel__ets_table *t, keel_term key,
                                   uint64_t h);
/* Set tables, the key's write lock held: the object with key when it
 * heads its chain and its bucket's line holds a copy of it (then *copy is
 * that copy, the same words as its data[0..*words)), else NULL; reads the
 * line only. A caller changing such an object's words in place stores
 * each in both. */
keel__ets_obj *keel__ets_set_head(keel__ets_table *t, keel_term key, uint64_t h,
                                  uint64_t **copy, size_t *words);
/* The key's write lock held: o (in t's store) was changed in place; a
 * set's line that copies it is brought up to date. Every in-place change
 * of a stored object must be followed by this (or go through
 * keel__ets_set_head's copy) before the lock is released. */
void keel__ets_obj_changed(keel__ets_table *t, keel__ets_obj *o);
/* Set tables (hashed), the key's write lock held: puts o in place of the
 * object with o's key, or adds it. Returns the replaced object (the
 * caller frees it, after unlocking if it likes), or NULL. Keeps the size
 * and memory counters. Never fails (a failed growth keeps longer chains). */
keel__ets_obj *keel__ets_set_put(keel__ets_table *t, keel__ets_obj *o);

/* Bag and duplicate_bag tables, the key's write lock held: adds o as the
 * last object of its key (insertion order), unless dedupe (a bag) and an
 * equal object is there already: then returns false and o stays the
 * caller's. One walk of the key's objects, no allocation. A duplicate_bag
 * with any_order (dedupe false) takes o as the first object of its key
 * instead, without walking them (O(1)). Keeps the size and memory
 * counters. */
bool keel__ets_bag_add(keel__ets_table *t, keel__ets_obj *o, bool dedupe);

/* With the key's lock held: the objects with that key, in store order. */
int keel__ets_group_get(keel__ets_table *t, keel_term key, uint64_t h,
                        ets_vec *out);
/* With the key's lock held for writing: replaces the objects with that key
 * by nv[0..n) (in that order; they must all have the key). The removed
 * objects go to *removed (caller frees them). Never fails for the hashed
 * store except on growth (then the bucket array stays as is); may return
 * KEEL_ENOMEM for the ordered store when n > old count (nothing changed). */
int keel__ets_group_set(keel__ets_table *t, keel_term key, uint64_t h,
                        keel__ets_obj *const *nv, size_t n, ets_vec *removed);

/* Visits every object; fn returns 1 to delete the object (write mode
 * only), 0 to keep it, negative to stop with that error. Locks each
 * stripe (or the ordered store) in read or write mode in turn. Deleted
 * objects are freed after the lock is released. */
typedef int (*keel__ets_visit_fn)(keel__ets_obj *o, void *arg);
/* Number of keel__ets_scan calls so far (tests check that a bound key
 * does not scan). */
extern _Atomic uint64_t keel__ets_scans;
int keel__ets_scan(keel__ets_table *t, bool write, keel__ets_visit_fn fn,
                   void *arg);

/* Called by keel__ets_walk just before it releases a lock, while the
 * objects visited under it are still valid. */
typedef void (*keel__ets_unlock_fn)(void *arg);

/* Visits the objects strictly after key `from` (KEEL_NONE: from the
 * start) in table order: term order for ordered_set (dir -1: reverse), the
 * hashed store's order (keel__ets_hkey_cmp; dir ignored) otherwise. fn
 * returns 0 to go on, anything else to stop; that value is returned (0 at
 * the end of the table). Read locks only, one stripe at a time for the
 * hashed types (a key that stays in the table is visited exactly once by
 * a sequence of walks each resuming after the last key visited). */
int keel__ets_walk(keel__ets_table *t, keel_term from, int dir,
                   keel__ets_visit_fn fn, keel__ets_unlock_fn unlocking,
                   void *arg);

/* Removes every object (all locks taken at once, so the table is empty
 * for every observer at one instant) and frees them. */
void keel__ets_clear(keel__ets_table *t);

/* Frees (keel__ets_retire) the objects of removed that are not in
 * keep[0..n) (objects put back into the store) and removed's storage.
 * Call with the write lock still held (it uses the objects' marks). */
void keel__ets_free_removed(const keel__ets_table *t, ets_vec *removed,
                            keel__ets_obj *const *keep, size_t n);

/* ---- lock-free reads of set tables (ets_rcu.c, ets_store.c) ---- */

/* A thread's reader record (one cache line). ctr: 0 outside a read
 * section, else the epoch at entry. */
typedef struct keel__ets_reader {
  _Atomic uint64_t ctr;
  _Atomic bool used;
  struct keel__ets_reader *next;
  char pad[40];
} keel__ets_reader;

extern _Atomic uint64_t keel__ets_epoch;
/* true when grace periods run membarrier(2), so that readers need only a
 * compiler barrier; set once, before the first record is handed out. */
extern bool keel__ets_fast_barrier;

/* The calling thread's record, or NULL (out of memory: read with locks). */
keel__ets_reader *keel__ets_reader_get(void);

/* Enters a read section: until keel__ets_read_exit, nothing retired
 * (keel__ets_retire, keel__ets_defer_free) after this point, nor any
 * table deleted, is freed. Sections do not nest. */
static inline void keel__ets_read_enter(keel__ets_reader *r) {
  uint64_t e = atomic_load_explicit(&keel__ets_epoch, memory_order_acquire);
  atomic_store_explicit(&r->ctr, e, memory_order_release);
  if (keel__ets_fast_barrier)
    atomic_signal_fence(memory_order_seq_cst);
  else
    atomic_thread_fence(memory_order_seq_cst);
}

static inline void keel__ets_read_exit(keel__ets_reader *r) {
  atomic_store_explicit(&r->ctr, 0, memory_order_release);
}

/* Enters a read section and finds the table id names, unpinned (a
 * deleted table is freed only after the section ends). KEEL_OK: in the
 * section, *t set; KEEL_EBADARG (stale id) or KEEL_ENOMEM (no reader
 * record: pin instead): not in a section. Writers may run in a section
 * instead of pinning (it cannot deadlock: nothing waits for the readers
 * while holding a store lock). */
int keel__ets_section_enter(keel_ets_tab id, keel__ets_reader **r,
                            keel__ets_table **t);

/* Waits until every read section entered before the call has ended. Call
 * outside any read section, holding no store lock (table deletion). */
void keel__ets_synchronize(void);
/* Blocks keel__ets_defer_free could not queue (out of memory) and left
 * unfreed. */
extern _Atomic uint64_t keel__ets_leaked;
/* free(p) once the read sections that may see p have ended (batched; does
 * not wait). */
void keel__ets_defer_free(void *p);
/* Frees an object that left t's store: at once unless t is a set (read
 * without locks), else its counted references at once and its memory
 * after a grace period. */
void keel__ets_retire(const keel__ets_table *t, keel__ets_obj *o);

/* Inside a read section, a set table t: looks for key (an immediate, hash
 * h) without locks. 1: found, its words copied into buf[0..*words) when
 * buf is not NULL (cap words of room); 0: absent; -1: read it with the
 * lock instead (a writer kept the stripe busy, the object is not a flat
 * tuple or does not fit). */
int keel__ets_set_peek(keel__ets_table *t, keel_term key, uint64_t h,
                       uint64_t *buf, size_t cap, size_t *words);

/* ---- the ordered store (ets_ordered.c; its lock held) ---- */

int keel__ord_group_get(const ets_ordered *o, keel_term key, ets_vec *out);
/* n must be 0 or 1 (one object per key). */
int keel__ord_group_set(ets_ordered *o, keel_term key, keel__ets_obj *const *nv,
                        size_t n, ets_vec *removed);
int keel__ord_scan(ets_ordered *o, bool write, keel__ets_visit_fn fn, void *arg,
                   ets_vec *dead);
/* The object after `from` (dir 1) or before it (dir -1); from KEEL_NONE:
 * the first / last. NULL at the end. */
keel__ets_obj *keel__ord_step(const ets_ordered *o, keel_term from, int dir);
/* Visits the objects after `from` (KEEL_NONE: from the start) in
 * direction dir, as keel__ets_walk. */
int keel__ord_walk(const ets_ordered *o, keel_term from, int dir,
                   keel__ets_visit_fn fn, void *arg);
/* Unlinks every object into a list through `next`; the store is empty. */
keel__ets_obj *keel__ord_detach_all(ets_ordered *o);
/* Frees every object and the chunks (not the lock). */
void keel__ord_destroy(ets_ordered *o);

/* Traversal: dir 1 = first/next, -1 = last/prev; from KEEL_NONE for
 * first/last. Copies the key into hp; returns 1, or 0 at the end. */
int keel__ets_step(keel__ets_table *t, keel_term from, int dir, keel_heap *hp,
                   keel_term *out);

/* ---- registry (ets_table.c) ---- */

/* Pins the table named by id; KEEL_EBADARG when stale. */
int keel__ets_acquire(keel_ets_tab id, keel__ets_table **out);
/* Inside a read section: the table named by id without pinning it (it
 * stays valid until the section ends); KEEL_EBADARG when stale. */
int keel__ets_peek_table(keel_ets_tab id, keel__ets_table **out);
void keel__ets_release(keel_ets_tab id);

/* The caller's right: KEEL_OK or KEEL_EBADARG. */
int keel__ets_check(const keel__ets_table *t, bool write);

/* Deletes the tables owned by pid, or hands each to its heir (which gets
 * {'ETS-TRANSFER', Tab, Pid, HeirData}). For the runtime's process-exit
 * hook; any thread. A table whose heir is pid itself, or whose transfer
 * message cannot be sent, is deleted. */
void keel__ets_owner_exit(keel_term pid);

/* Arms the layer's exit hook for pid (owner or fixer): its death runs
 * keel__ets_fix_exit and keel__ets_owner_exit. KEEL_OK also when there is
 * nothing to arm (no node, not a local pid); KEEL_ENOPROC (pid is dead),
 * KEEL_ESYSLIMIT (no hook slot). */
int keel__ets_arm(keel_term pid);
/* The calling process's pid, or KEEL_NONE on a thread that runs none. */
keel_term keel__ets_caller(void);
/* Calls fn on every live table, each pinned for the call. */
void keel__ets_each_table(void (*fn)(keel__ets_table *t, void *arg), void *arg);

/* ---- safe_fixtable (ets_fix.c) ---- */

int keel__ets_fix_init(ets_fix *f);
void keel__ets_fix_destroy(ets_fix *f);
/* Releases every fixation pid holds (the exit hook; any thread). */
void keel__ets_fix_exit(keel_term pid);

/* Atoms used by the layer. */
keel_term keel__ets_atom_eot(void);

#endif /* KEEL_TABLES_ETS_INTERNAL_H */
