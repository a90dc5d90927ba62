/* Concurrency: many threads reading and writing one table (every type),
 * iteration during writes, counters updated concurrently, a table deleted
 * under its users. Run under TSan as well (scripts/tsan-run.sh). The
 * invariants are computed by the test's own tallies, never read back from
 * the table alone. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "keel/ets.h"

#define NTHREADS 8
#define NKEYS 16

static void teardown(void) {
  keel_ets_delete_all_tables();
}

TestSuite(conc, .fini = teardown);

static keel_ets_tab mk(keel_ets_type type) {
  keel_ets_opts o = {.type = type, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  return t;
}

static void run_threads(void *(*fn)(void *), void *args, size_t argsize,
                        int n) {
  pthread_t th[NTHREADS * 2];
  for (int i = 0; i < n; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, fn, (char *)args + i * argsize),
                 0);
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
}

/* ---- counters ---- */

typedef struct cnt_arg {
  keel_ets_tab t;
  unsigned seed;
  long per_key[NKEYS]; /* this thread's increments of each key */
  int errors;
} cnt_arg;

#define ROUNDS 3000

static void *counter_thread(void *p) {
  cnt_arg *a = p;
  keel_heap h;
  keel_heap_init(&h);
  keel_term ops = keel_build(&h, "[{2, 1}, {3, 2}]");
  for (int i = 0; i < ROUNDS; i++) {
    a->seed = a->seed * 1103515245u + 12345u;
    unsigned k = (a->seed >> 16) % NKEYS;
    keel_term r;
    /* a default object: the first increment of a key creates it */
    keel_term dflt = keel_build(&h, "{x, 0, 0}");
    if (keel_ets_update_counter(a->t, keel_small(k), ops, dflt, &h, &r) !=
        KEEL_OK)
      a->errors++;
    a->per_key[k]++;
    if (i % 256 == 255) { /* keep the heap small */
      keel_heap_destroy(&h);
      keel_heap_init(&h);
      ops = keel_build(&h, "[{2, 1}, {3, 2}]");
    }
  }
  keel_heap_destroy(&h);
  return NULL;
}

static void counters(keel_ets_type type) {
  keel_ets_tab t = mk(type);
  cnt_arg args[NTHREADS];
  memset(args, 0, sizeof args);
  for (int i = 0; i < NTHREADS; i++) {
    args[i].t = t;
    args[i].seed = (unsigned)i * 7919u + 1;
  }
  run_threads(counter_thread, args, sizeof args[0], NTHREADS);
  keel_heap h;
  keel_heap_init(&h);
  long total = 0;
  for (unsigned k = 0; k < NKEYS; k++) {
    long want = 0;
    for (int i = 0; i < NTHREADS; i++)
      want += args[i].per_key[k];
    total += want;
    keel_term l;
    cr_assert_eq(keel_ets_lookup(t, keel_small(k), &h, &l), KEEL_OK);
    if (want == 0) {
      cr_assert(keel_is_nil(l));
      continue;
    }
    keel_term o = keel_hd(l);
    cr_assert_eq(keel_tuple_get(o, 1), keel_small(want), "key %u", k);
    cr_assert_eq(keel_tuple_get(o, 2), keel_small(2 * want), "key %u", k);
  }
  cr_assert_eq(total, (long)NTHREADS * ROUNDS);
  for (int i = 0; i < NTHREADS; i++)
    cr_assert_eq(args[i].errors, 0);
  keel_heap_destroy(&h);
}

Test(conc, update_counter_set) {
  counters(KEEL_ETS_SET);
}

Test(conc, update_counter_ordered_set) {
  counters(KEEL_ETS_ORDERED_SET);
}

/* ---- readers and iterators during writes ---- */

#define DOMAIN 400
#define PERMANENT 1000 /* keys 1000..1049 are never deleted */

typedef struct rw_arg {
  keel_ets_tab t;
  keel_ets_type type;
  int id;
  _Atomic int *stop;
  long torn;        /* objects whose elements disagree */
  long bad_order;   /* ordered_set iteration not increasing */
  long missed_perm; /* ordered_set: a permanent key not visited */
  long bad_list;    /* ordered_set: {a,V},{b,V} inserted together differ */
  long iterations;
  long writes;
} rw_arg;

static void *writer(void *p) {
  rw_arg *a = p;
  keel_heap h;
  keel_heap_init(&h);
  unsigned s = (unsigned)a->id * 31u + 5;
  for (long v = 0; atomic_load(a->stop) < NTHREADS / 2 || v < 2000; v++) {
    s = s * 1103515245u + 12345u;
    int k = (int)((s >> 16) % DOMAIN);
    if (s % 5 == 0)
      keel_ets_delete_key(a->t, keel_small(k));
    else
      keel_ets_insert(a->t, keel_build(&h, "{~i, ~l, ~l}", k, v, 2 * v));
    /* two objects in one atomic insert (bags would keep every pair) */
    if (a->type == KEEL_ETS_SET || a->type == KEEL_ETS_ORDERED_SET)
      keel_ets_insert(a->t,
                      keel_build(&h, "[{pair_a, ~l}, {pair_b, ~l}]", v, v));
    a->writes++;
    if (v % 128 == 0) {
      keel_heap_destroy(&h);
      keel_heap_init(&h);
    }
  }
  keel_heap_destroy(&h);
  return NULL;
}

static void check_object(rw_arg *a, keel_term o) {
  if (!keel_is_small(keel_tuple_get(o, 0)) || keel_tuple_arity(o) != 3)
    return;
  int64_t v1 = keel_small_value(keel_tuple_get(o, 1));
  int64_t v2 = keel_small_value(keel_tuple_get(o, 2));
  if (v2 != 2 * v1)
    a->torn++;
}

static void iterate(rw_arg *a, keel_heap *h) {
  keel_term k, prev = KEEL_NONE;
  int perm = 0;
  long n = 0;
  for (int rc = keel_ets_first(a->t, h, &k); rc == 1 && n < 100000;
       rc = keel_ets_next(a->t, k, h, &k), n++) {
    if (a->type == KEEL_ETS_ORDERED_SET && prev != KEEL_NONE &&
        keel_cmp(prev, k) >= 0)
      a->bad_order++;
    if (keel_is_small(k) && keel_small_value(k) >= PERMANENT)
      perm++;
    prev = k;
  }
  if (a->type == KEEL_ETS_ORDERED_SET && perm != 50)
    a->missed_perm++;
  cr_assert_lt(n, 100000, "iteration must end");
  a->iterations++;
}

static void *reader(void *p) {
  rw_arg *a = p;
  keel_heap h;
  keel_heap_init(&h);
  unsigned s = (unsigned)a->id * 17u + 3;
  for (int i = 0; i < 3000; i++) {
    s = s * 1103515245u + 12345u;
    keel_term l;
    if (keel_ets_lookup(a->t, keel_small((int)((s >> 16) % DOMAIN)), &h, &l) ==
        KEEL_OK)
      for (; keel_is_cons(l); l = keel_tl(l))
        check_object(a, keel_hd(l));
    if (i % 300 == 0)
      iterate(a, &h);
    if (i % 500 == 0 && a->type == KEEL_ETS_ORDERED_SET &&
        keel_ets_tab2list(a->t, &h, &l) == KEEL_OK) {
      keel_term va = KEEL_NONE, vb = KEEL_NONE;
      for (; keel_is_cons(l); l = keel_tl(l)) {
        keel_term o = keel_hd(l);
        check_object(a, o);
        if (keel_tuple_get(o, 0) == keel_atom("pair_a"))
          va = keel_tuple_get(o, 1);
        if (keel_tuple_get(o, 0) == keel_atom("pair_b"))
          vb = keel_tuple_get(o, 1);
      }
      if (va != vb)
        a->bad_list++;
    }
    if (i % 64 == 0) {
      keel_heap_destroy(&h);
      keel_heap_init(&h);
    }
  }
  keel_heap_destroy(&h);
  return NULL;
}

static void *rw_thread(void *p) {
  rw_arg *a = p;
  if (a->id % 2 == 0)
    return writer(p);
  reader(p);
  atomic_fetch_add(a->stop, 1);
  return NULL;
}

static void readers_writers(keel_ets_type type) {
  keel_ets_tab t = mk(type);
  keel_heap h;
  keel_heap_init(&h);
  for (int k = PERMANENT; k < PERMANENT + 50; k++)
    cr_assert_eq(keel_ets_insert(t, keel_build(&h, "{~i, 1, 2}", k)), KEEL_OK);
  keel_heap_destroy(&h);
  _Atomic int stop = 0;
  rw_arg args[NTHREADS];
  memset(args, 0, sizeof args);
  for (int i = 0; i < NTHREADS; i++) {
    args[i].t = t;
    args[i].type = type;
    args[i].id = i;
    args[i].stop = &stop;
  }
  run_threads(rw_thread, args, sizeof args[0], NTHREADS);
  for (int i = 0; i < NTHREADS; i++) {
    cr_assert_eq(args[i].torn, 0, "thread %d saw a torn object", i);
    cr_assert_eq(args[i].bad_order, 0);
    cr_assert_eq(args[i].missed_perm, 0);
    cr_assert_eq(args[i].bad_list, 0);
    cr_assert(i % 2 == 0 ? args[i].writes >= 2000 : args[i].iterations == 10);
  }
  /* every permanent key is still there, size agrees with tab2list */
  keel_heap_init(&h);
  keel_term l;
  cr_assert_eq(keel_ets_tab2list(t, &h, &l), KEEL_OK);
  size_t n;
  cr_assert_eq(keel_list_length(l, &n), KEEL_OK);
  keel_ets_info in;
  cr_assert_eq(keel_ets_info_get(t, &in), KEEL_OK);
  cr_assert_eq(in.size, n);
  for (int k = PERMANENT; k < PERMANENT + 50; k++)
    cr_assert_eq(keel_ets_member(t, keel_small(k)), 1);
  keel_heap_destroy(&h);
}

Test(conc, readers_writers_set) {
  readers_writers(KEEL_ETS_SET);
}
Test(conc, readers_writers_ordered_set) {
  readers_writers(KEEL_ETS_ORDERED_SET);
}
Test(conc, readers_writers_bag) {
  readers_writers(KEEL_ETS_BAG);
}
Test(conc, readers_writers_duplicate_bag) {
  readers_writers(KEEL_ETS_DUPLICATE_BAG);
}

/* ---- a table deleted under its users ---- */

typedef struct del_arg {
  keel_ets_tab t;
  _Atomic int *started;
  long ok_calls;
  int final_rc;
} del_arg;

static void *user_thread(void *p) {
  del_arg *a = p;
  keel_heap h;
  keel_heap_init(&h);
  keel_term obj = keel_build(&h, "{k, 1}");
  atomic_fetch_add(a->started, 1);
  for (;;) {
    int rc = keel_ets_insert(a->t, obj);
    if (rc == KEEL_OK) {
      rc = keel_ets_member(a->t, keel_atom("k"));
      rc = rc == 1 ? KEEL_OK : rc < 0 ? rc : -100;
    }
    if (rc != KEEL_OK) {
      a->final_rc = rc;
      break;
    }
    a->ok_calls++;
  }
  keel_heap_destroy(&h);
  return NULL;
}

Test(conc, delete_under_users) {
  for (int round = 0; round < 20; round++) {
    keel_ets_tab t = mk(round % 2 ? KEEL_ETS_SET : KEEL_ETS_ORDERED_SET);
    _Atomic int started = 0;
    del_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
      args[i] = (del_arg){.t = t, .started = &started};
      cr_assert_eq(pthread_create(&th[i], NULL, user_thread, &args[i]), 0);
    }
    while (atomic_load(&started) < 4)
      sched_yield();
    cr_assert_eq(keel_ets_delete(t), KEEL_OK);
    /* a new table may take the slot at once: the users must not reach it */
    keel_ets_tab u = mk(KEEL_ETS_SET);
    for (int i = 0; i < 4; i++) {
      pthread_join(th[i], NULL);
      cr_assert_eq(args[i].final_rc, KEEL_EBADARG);
    }
    keel_ets_info in;
    cr_assert_eq(keel_ets_info_get(u, &in), KEEL_OK);
    cr_assert_eq(in.size, 0, "a stale id wrote into the new table");
    cr_assert_eq(keel_ets_delete(u), KEEL_OK);
  }
}
