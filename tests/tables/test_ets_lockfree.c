/* Lock-free reads of set tables: lookup and member of immediate keys run
 * without locks while writer threads overwrite objects in place, replace
 * them by objects of other sizes (flat and not), update counters in place,
 * insert and delete keys and make the stripes grow. Reader processes on 1,
 * 2 and 8 schedulers check that every object they get is whole (element 3
 * is twice element 2: no read sees half a write), that keys present
 * throughout are always found, and that a table deleted under them gives
 * badarg and nothing else. Run under TSan and ASan as well. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keel/ets.h"
#include "keel/runtime.h"
#include "runtime/rt_test.h"

#define STABLE 256   /* keys 0..STABLE-1: always present */
#define VOLATILE 256 /* keys STABLE..: inserted and deleted */
#define GROWTH 4096  /* keys 100000..: inserted in bulk, then deleted */
#define HOT 8        /* stable keys rewritten most */
#define NREADERS 4
#define READS 20000
#define NWRITERS 2

typedef struct shared {
  keel_ets_tab tab;
  _Atomic bool stop;
  _Atomic long reads;   /* lookups done by all readers */
  _Atomic long writes;  /* writer operations done */
  _Atomic int errors;   /* writer calls that failed */
  _Atomic int torn;     /* objects that broke the invariant */
  _Atomic int missing;  /* stable keys not found */
  _Atomic int badarg;   /* readers that saw the table go */
  _Atomic int other_rc; /* any other return code */
  bool with_writes;     /* reader_until_gone writes too (sets) */
  char why[160];
} shared;

static void note(shared *s, _Atomic int *ctr, const char *what, long k) {
  if (atomic_fetch_add(ctr, 1) == 0)
    snprintf(s->why, sizeof s->why, "%s (key %ld)", what, k);
}

/* Whether o is {K, V, 2V | _} with K == key. */
static bool whole(keel_term o, keel_term key) {
  if (!keel_is_tuple(o) || keel_tuple_arity(o) < 3)
    return false;
  keel_term v = keel_tuple_get(o, 1), w = keel_tuple_get(o, 2);
  return keel_tuple_get(o, 0) == key && keel_is_small(v) && keel_is_small(w) &&
         keel_small_value(w) == 2 * keel_small_value(v);
}

/* One lookup of key k: checks the result. Returns the return code. */
static int check_lookup(shared *s, int64_t k, keel_heap *h) {
  keel_term key = keel_small(k), r;
  int rc = keel_ets_lookup(s->tab, key, h, &r);
  if (rc == KEEL_EBADARG)
    return rc;
  if (rc != KEEL_OK) {
    note(s, &s->other_rc, "lookup rc", k);
    return rc;
  }
  if (r == KEEL_NIL) {
    if (k < STABLE)
      note(s, &s->missing, "stable key missing", k);
  } else if (!keel_is_cons(r) || keel_tl(r) != KEEL_NIL ||
             !whole(keel_hd(r), key)) {
    note(s, &s->torn, "torn or foreign object", k);
  }
  int m = keel_ets_member(s->tab, key);
  if (m == KEEL_EBADARG)
    return m;
  if (m != 0 && m != 1)
    note(s, &s->other_rc, "member rc", k);
  else if (m == 0 && k < STABLE)
    note(s, &s->missing, "stable key not a member", k);
  return KEEL_OK;
}

static void reader(keel_proc *self, void *arg) {
  (void)self;
  shared *s = arg;
  uint64_t buf[512];
  keel_heap h;
  uint64_t x = 0x2545F4914F6CDD1Dull ^ (uint64_t)(uintptr_t)&h;
  for (int i = 0; i < READS; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    keel_heap_init_fixed(&h, buf, 512);
    /* half the reads on the few keys writer 0 rewrites most */
    int64_t k = (int64_t)(x & 1 ? (x >> 1) % HOT : x % (STABLE + VOLATILE));
    int rc = check_lookup(s, k, &h);
    keel_heap_destroy(&h);
    atomic_fetch_add(&s->reads, 1);
    if (rc == KEEL_EBADARG) {
      atomic_fetch_add(&s->badarg, 1);
      break;
    }
  }
  signal_event();
}

/* Writes {K, V, 2V} in one of four shapes: a 3-tuple (in place over a
 * 3-tuple), a 4-tuple of immediates, a 4-tuple with a binary (not flat:
 * readers take the locked path) or a counter update (in place). */
static int write_stable(keel_ets_tab t, int64_t k, uint64_t x, keel_heap *h) {
  int64_t v = (int64_t)(x >> 40);
  keel_term key = keel_small(k);
  switch (x % 4) {
  case 0:
    return keel_ets_insert(
        t, keel_tuple(h, 3, key, keel_small(v), keel_small(2 * v)));
  case 1:
    return keel_ets_insert(t, keel_tuple(h, 4, key, keel_small(v),
                                         keel_small(2 * v), KEEL_ATOM(OK)));
  case 2:
    return keel_ets_insert(
        t, keel_tuple(h, 4, key, keel_small(v), keel_small(2 * v),
                      keel_build(h, "~b",
                                 "a binary long enough to be counted by "
                                 "reference rather than copied, 80 bytes")));
  default: {
    keel_term r;
    keel_term dflt = keel_tuple(h, 3, key, keel_small(0), keel_small(0));
    return keel_ets_update_counter(t, key, keel_build(h, "[{2, 1}, {3, 2}]"),
                                   dflt, h, &r);
  }
  }
}

typedef struct writer_arg {
  shared *s;
  int id;
} writer_arg;

static void *writer(void *p) {
  writer_arg *w = p;
  shared *s = w->s;
  uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
  keel_heap h;
  keel_heap_init(&h);
  long round = 0;
  while (!atomic_load(&s->stop)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int rc;
    if (w->id == 0) {
      int64_t k = (int64_t)((x >> 3) & 3 ? (x >> 5) % HOT : x % STABLE);
      rc = write_stable(s->tab, k, x, &h);
    } else if (round % 4096 < 2048) { /* volatile keys come and go */
      int64_t k = STABLE + (int64_t)(x % VOLATILE);
      rc = x & 1 ? keel_ets_delete_key(s->tab, keel_small(k))
                 : write_stable(s->tab, k, x >> 1, &h);
    } else { /* growth keys: in bulk (stripes double), then out */
      int64_t k = 100000 + (round % 2048) * 2;
      rc = round % 4096 < 3072
               ? keel_ets_insert(s->tab,
                                 keel_tuple(&h, 3, keel_small(k), keel_small(1),
                                            keel_small(2)))
               : keel_ets_delete_key(s->tab, keel_small(k - 2048));
    }
    if (rc != KEEL_OK)
      atomic_fetch_add(&s->errors, 1);
    atomic_fetch_add(&s->writes, 1);
    round++;
    keel_heap_destroy(&h);
    keel_heap_init(&h);
  }
  keel_heap_destroy(&h);
  return NULL;
}

static bool writes_started(void *arg) {
  return atomic_load(&((shared *)arg)->writes) >= 500;
}

static shared *setup_type(keel_ets_type type) {
  shared *s = calloc(1, sizeof *s);
  keel_ets_opts o = {.type = type, .access = KEEL_ETS_PUBLIC};
  cr_assert_eq(keel_ets_new(&o, &s->tab), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  for (int64_t k = 0; k < STABLE; k++)
    cr_assert_eq(
        keel_ets_insert(s->tab, keel_tuple(&h, 3, keel_small(k), keel_small(k),
                                           keel_small(2 * k))),
        KEEL_OK);
  keel_heap_destroy(&h);
  return s;
}

static shared *setup(void) {
  return setup_type(KEEL_ETS_SET);
}

static void race(unsigned nsched) {
  start_node(nsched, 0);
  shared *s = setup();
  pthread_t th[NWRITERS];
  writer_arg wa[NWRITERS];
  for (int i = 0; i < NWRITERS; i++) {
    wa[i] = (writer_arg){s, i};
    cr_assert_eq(pthread_create(&th[i], NULL, writer, &wa[i]), 0);
  }
  cr_assert(wait_until(writes_started, s), "writers ran");
  keel_term p;
  for (int i = 0; i < NREADERS; i++)
    cr_assert_eq(keel_spawn_fiber(reader, s, NULL, &p), KEEL_OK);
  bool done = wait_events(NREADERS);
  atomic_store(&s->stop, true);
  for (int i = 0; i < NWRITERS; i++)
    pthread_join(th[i], NULL);
  cr_assert(done, "%u schedulers: the readers ended", nsched);
  cr_assert_eq(atomic_load(&s->reads), (long)NREADERS * READS);
  cr_assert_eq(atomic_load(&s->torn), 0, "%u schedulers: %s", nsched, s->why);
  cr_assert_eq(atomic_load(&s->missing), 0, "%u schedulers: %s", nsched,
               s->why);
  cr_assert_eq(atomic_load(&s->other_rc), 0, "%s", s->why);
  cr_assert_eq(atomic_load(&s->badarg), 0);
  cr_assert_eq(atomic_load(&s->errors), 0);
  /* Every stable key is still there and whole, read with locks (tab2list)
   * and without (lookup). */
  keel_heap h;
  keel_heap_init(&h);
  keel_term all;
  cr_assert_eq(keel_ets_tab2list(s->tab, &h, &all), KEEL_OK);
  size_t stable = 0;
  for (keel_term l = all; keel_is_cons(l); l = keel_tl(l)) {
    keel_term k = keel_tuple_get(keel_hd(l), 0);
    cr_assert(whole(keel_hd(l), k));
    stable += keel_small_value(k) < STABLE;
  }
  cr_assert_eq(stable, STABLE);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_ets_delete(s->tab), KEEL_OK);
  free(s);
}

Test(ets_lockfree, readers_race_writers_1_scheduler) {
  race(1);
}

Test(ets_lockfree, readers_race_writers_2_schedulers) {
  race(2);
}

Test(ets_lockfree, readers_race_writers_8_schedulers) {
  race(8);
}

/* Readers (and writers) that loop until the table goes. */
static void reader_until_gone(keel_proc *self, void *arg) {
  (void)self;
  shared *s = arg;
  uint64_t buf[256];
  keel_heap h;
  for (long i = 0; i < 100000000L; i++) {
    keel_heap_init_fixed(&h, buf, 256);
    int rc = check_lookup(s, i % STABLE, &h);
    /* on a set, writes race the delete too */
    if (rc == KEEL_OK && s->with_writes && i % 3 == 0) {
      rc = write_stable(s->tab, i % STABLE, (uint64_t)i * 0x9E3779B97F4A7C15ull,
                        &h);
      if (rc != KEEL_OK && rc != KEEL_EBADARG)
        note(s, &s->other_rc, "write rc", i % STABLE);
    }
    keel_heap_destroy(&h);
    atomic_fetch_add(&s->reads, 1);
    if (rc == KEEL_EBADARG) {
      atomic_fetch_add(&s->badarg, 1);
      break;
    }
  }
  signal_event();
}

static bool reads_started(void *arg) {
  return atomic_load(&((shared *)arg)->reads) >= 2000;
}

/* Readers (lock-free on a set, with locks but no pin on the others) and,
 * on a set, writers, while the table is deleted. */
static void delete_under_readers_of(unsigned nsched, keel_ets_type type) {
  start_node(nsched, 0);
  shared *s = setup_type(type);
  s->with_writes = type == KEEL_ETS_SET;
  keel_term p;
  for (int i = 0; i < NREADERS; i++)
    cr_assert_eq(keel_spawn_fiber(reader_until_gone, s, NULL, &p), KEEL_OK);
  cr_assert(wait_until(reads_started, s), "readers ran");
  cr_assert_eq(keel_ets_delete(s->tab), KEEL_OK);
  cr_assert(wait_events(NREADERS), "%u schedulers: the readers ended", nsched);
  cr_assert_eq(atomic_load(&s->badarg), NREADERS, "type %d: each saw badarg",
               (int)type);
  cr_assert_eq(atomic_load(&s->torn), 0, "%s", s->why);
  cr_assert_eq(atomic_load(&s->missing), 0, "%s", s->why);
  cr_assert_eq(atomic_load(&s->other_rc), 0, "%s", s->why);
  /* The id stays stale after the slot is reused. */
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab t2;
  cr_assert_eq(keel_ets_new(&o, &t2), KEEL_OK);
  uint64_t buf[16];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 16);
  keel_term r;
  cr_assert_eq(keel_ets_lookup(s->tab, keel_small(1), &h, &r), KEEL_EBADARG);
  cr_assert_eq(keel_ets_member(s->tab, keel_small(1)), KEEL_EBADARG);
  cr_assert_eq(keel_ets_lookup(t2, keel_small(1), &h, &r), KEEL_OK);
  cr_assert_eq(r, KEEL_NIL);
  keel_heap_destroy(&h);
  cr_assert_eq(keel_ets_delete(t2), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  free(s);
}

static void delete_under_readers(unsigned nsched) {
  delete_under_readers_of(nsched, KEEL_ETS_SET);
  delete_under_readers_of(nsched, KEEL_ETS_BAG);
  delete_under_readers_of(nsched, KEEL_ETS_ORDERED_SET);
}

Test(ets_lockfree, delete_under_readers_1_scheduler) {
  delete_under_readers(1);
}

Test(ets_lockfree, delete_under_readers_2_schedulers) {
  delete_under_readers(2);
}

Test(ets_lockfree, delete_under_readers_8_schedulers) {
  delete_under_readers(8);
}

/* A private table: other processes get badarg from the lock-free path as
 * from the locked one; a bag is read with locks and still answers. */
static void private_reader(keel_proc *self, void *arg) {
  (void)self;
  shared *s = arg;
  uint64_t buf[16];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 16);
  keel_term r;
  if (keel_ets_lookup(s->tab, keel_small(1), &h, &r) != KEEL_EBADARG ||
      keel_ets_member(s->tab, keel_small(1)) != KEEL_EBADARG)
    atomic_fetch_add(&s->other_rc, 1);
  keel_heap_destroy(&h);
  signal_event();
}

static void owner_proc(keel_proc *self, void *arg) {
  shared *s = arg;
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PRIVATE};
  uint64_t buf[16];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 16);
  keel_term r;
  if (keel_ets_new(&o, &s->tab) != KEEL_OK ||
      keel_ets_insert(
          s->tab, keel_tuple(&h, 2, keel_small(1), keel_small(2))) != KEEL_OK ||
      keel_ets_lookup(s->tab, keel_small(1), &h, &r) != KEEL_OK ||
      !keel_is_cons(r) || keel_ets_member(s->tab, keel_small(1)) != 1)
    atomic_fetch_add(&s->other_rc, 1);
  keel_heap_destroy(&h);
  signal_event();
  keel_term m; /* alive (and owning the table) until the node stops */
  (void)keel_receive(self, NULL, NULL, 30000, &m);
}

Test(ets_lockfree, private_table_refuses_other_readers) {
  start_node(2, 0);
  shared *s = calloc(1, sizeof *s);
  keel_term p;
  cr_assert_eq(keel_spawn_fiber(owner_proc, s, NULL, &p), KEEL_OK);
  cr_assert(wait_events(1));
  cr_assert_eq(keel_spawn_fiber(private_reader, s, NULL, &p), KEEL_OK);
  cr_assert(wait_events(2));
  cr_assert_eq(atomic_load(&s->other_rc), 0);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  free(s);
}
