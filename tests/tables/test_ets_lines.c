/* A set's buckets are cache lines holding a copy of their chain's head
 * object, which lock-free lookups read instead of the object. These tests
 * check that the copies always match the chains:
 *  - model: one thread applies every kind of write (single and list
 *    inserts, insert_new, overwrites in place and by replacement, deletes,
 *    take, delete_object, counters, update_element, select_delete,
 *    match_delete, delete_all_objects) to a small set whose keys share
 *    buckets, growing and shrinking it, and after each one compares the
 *    lock-free lookup, member and lookup_elements of the touched keys,
 *    and every 2,000 writes of all keys, with a model;
 *  - scans: select_delete and match_delete take chain heads out in bulk;
 *  - race: reader processes on 1, 2 and 8 schedulers look keys up while
 *    writer threads make the chains' heads change all the time (keys
 *    inserted before and after the stable ones, deleted singly, by
 *    select_delete, by take, in lists, growth in bulk) and overwrite the
 *    stable keys in every way: a stable key is always found and every
 *    object read is whole.
 * Run under TSan and ASan as well. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/ets.h"
#include "keel/runtime.h"
#include "runtime/rt_test.h"

#define KEYS 3000
#define OPS 20000
#define BIN                                                                    \
  "a binary long enough to be counted by reference rather than copied, "       \
  "80 bytes"

/* The model: per key, absent (-1) or V of {K, V, 2V} in one of 3 shapes. */
typedef struct model {
  int64_t v[KEYS];
  int shape[KEYS]; /* 0 {K,V,2V}; 1 {K,V,2V,ok}; 2 {K,V,2V,Binary} */
} model;

static keel_term obj_of(keel_heap *h, int64_t k, int64_t v, int shape) {
  keel_term key = keel_small(k), a = keel_small(v), b = keel_small(2 * v);
  if (shape == 0)
    return keel_tuple(h, 3, key, a, b);
  if (shape == 1)
    return keel_tuple(h, 4, key, a, b, KEEL_ATOM(OK));
  return keel_tuple(h, 4, key, a, b, keel_build(h, "~b", BIN));
}

/* Compares lookup and member of key k with the model. */
static void check_key(keel_ets_tab t, const model *m, int64_t k) {
  uint64_t buf[256];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 256);
  keel_term r, el;
  cr_assert_eq(keel_ets_lookup(t, keel_small(k), &h, &r), KEEL_OK);
  int mem = keel_ets_member(t, keel_small(k));
  cr_assert_eq(keel_ets_lookup_elements(t, keel_small(k), 2, 2, &h, &el),
               KEEL_OK);
  if (m->v[k] < 0) {
    cr_assert_eq(r, KEEL_NIL, "key %ld should be absent", (long)k);
    cr_assert_eq(mem, 0, "key %ld not a member", (long)k);
    cr_assert_eq(el, KEEL_NIL, "key %ld: no elements", (long)k);
  } else {
    cr_assert(keel_is_cons(el) && keel_tl(el) == KEEL_NIL);
    cr_assert_eq(keel_tuple_arity(keel_hd(el)), 2u);
    cr_assert_eq(keel_tuple_get(keel_hd(el), 0), keel_small(m->v[k]),
                 "key %ld: elements", (long)k);
    cr_assert_eq(keel_tuple_get(keel_hd(el), 1), keel_small(2 * m->v[k]));
    cr_assert(keel_is_cons(r) && keel_tl(r) == KEEL_NIL, "key %ld found",
              (long)k);
    keel_term o = keel_hd(r);
    cr_assert_eq(keel_tuple_arity(o), m->shape[k] == 0 ? 3u : 4u, "key %ld",
                 (long)k);
    cr_assert_eq(keel_tuple_get(o, 0), keel_small(k));
    cr_assert_eq(keel_tuple_get(o, 1), keel_small(m->v[k]), "key %ld value",
                 (long)k);
    cr_assert_eq(keel_tuple_get(o, 2), keel_small(2 * m->v[k]));
    cr_assert_eq(mem, 1, "key %ld a member", (long)k);
  }
  keel_heap_destroy(&h);
}

static keel_term spec_range(keel_heap *h, int64_t lo, int64_t hi) {
  char text[200];
  snprintf(text, sizeof text,
           "[{'$1', [{'>=', {element, 1, '$1'}, %ld}, "
           "{'<', {element, 1, '$1'}, %ld}], [true]}]",
           (long)lo, (long)hi);
  keel_term spec;
  cr_assert_eq(keel_parse(h, text, strlen(text), &spec, NULL), KEEL_OK);
  return spec;
}

/* One random write to t and m; returns the key it touched most. */
static int64_t model_step(keel_ets_tab t, model *m, uint64_t x, keel_heap *h) {
  int64_t k = (int64_t)((x >> 8) % KEYS), v = (int64_t)((x >> 24) & 0xffff);
  int shape = (int)((x >> 40) % 3);
  keel_term key = keel_small(k), r;
  switch (x % 12) {
  case 0:
  case 1: /* insert one (in place or replacing) */
    cr_assert_eq(keel_ets_insert(t, obj_of(h, k, v, shape)), KEEL_OK);
    m->v[k] = v, m->shape[k] = shape;
    break;
  case 2: { /* a list of three, keys k, k + 1, k + 2 */
    keel_term l = KEEL_NIL;
    for (int64_t i = 2; i >= 0; i--) {
      int64_t kk = (k + i) % KEYS;
      l = keel_cons(h, obj_of(h, kk, v + i, shape), l);
      m->v[kk] = v + i, m->shape[kk] = shape;
    }
    cr_assert_eq(keel_ets_insert(t, l), KEEL_OK);
    break;
  }
  case 3: { /* insert_new */
    int rc = keel_ets_insert_new(t, obj_of(h, k, v, shape));
    cr_assert_eq(rc, m->v[k] < 0 ? 1 : 0);
    if (rc == 1)
      m->v[k] = v, m->shape[k] = shape;
    break;
  }
  case 4:
  case 5: /* delete */
    cr_assert_eq(keel_ets_delete_key(t, key), KEEL_OK);
    m->v[k] = -1;
    break;
  case 6: /* take */
    cr_assert_eq(keel_ets_take(t, key, h, &r), KEEL_OK);
    cr_assert_eq(r == KEEL_NIL, m->v[k] < 0);
    m->v[k] = -1;
    break;
  case 7: /* delete_object of the current object */
    if (m->v[k] >= 0) {
      cr_assert_eq(
          keel_ets_delete_object(t, obj_of(h, k, m->v[k], m->shape[k])),
          KEEL_OK);
      m->v[k] = -1;
    }
    break;
  case 8: /* counters, in place for flat objects */
    if (m->v[k] >= 0 && m->v[k] < 1000000) {
      cr_assert_eq(keel_ets_update_counter(t, key,
                                           keel_build(h, "[{2, 1}, {3, 2}]"),
                                           KEEL_NONE, h, &r),
                   KEEL_OK);
      m->v[k]++;
    }
    break;
  case 9: /* update_element */
    cr_assert_eq(keel_ets_update_element(
                     t, key,
                     keel_build(h, "[{2, ~i}, {3, ~i}]", (int)v, (int)(2 * v)),
                     KEEL_NONE),
                 m->v[k] >= 0 ? 1 : 0);
    if (m->v[k] >= 0)
      m->v[k] = v;
    break;
  case 10: { /* select_delete of a range of 4 keys */
    int64_t n = 0;
    for (int64_t i = k; i < k + 4 && i < KEYS; i++)
      n += m->v[i] >= 0;
    cr_assert_eq(keel_ets_select_delete(t, spec_range(h, k, k + 4)), n);
    for (int64_t i = k; i < k + 4 && i < KEYS; i++)
      m->v[i] = -1;
    break;
  }
  default: /* match_delete of the 3-tuples with V = v (rare) */
    if (m->v[k] >= 0 && m->shape[k] == 0) {
      int64_t n = 0;
      for (int64_t i = 0; i < KEYS; i++)
        n += m->v[i] == m->v[k] && m->shape[i] == 0;
      int64_t vk = m->v[k];
      cr_assert_eq(
          keel_ets_match_delete(t, keel_build(h, "{'_', ~i, '_'}", (int)vk)),
          n);
      for (int64_t i = 0; i < KEYS; i++)
        if (m->v[i] == vk && m->shape[i] == 0)
          m->v[i] = -1;
    }
    break;
  }
  return k;
}

Test(ets_lines, lockfree_lookups_agree_with_a_model) {
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  model *m = malloc(sizeof *m);
  for (int64_t k = 0; k < KEYS; k++)
    m->v[k] = -1, m->shape[k] = 0;
  uint64_t x = 0x2545F4914F6CDD1Dull;
  keel_heap h;
  for (int i = 0; i < OPS; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    keel_heap_init(&h);
    int64_t k = model_step(t, m, x, &h);
    keel_heap_destroy(&h);
    for (int64_t d = -2; d <= 9; d++) /* the key and its neighbours */
      check_key(t, m, (k + d + KEYS) % KEYS);
    if (i % 2000 == 1999) {
      for (int64_t kk = 0; kk < KEYS; kk++)
        check_key(t, m, kk);
      keel_ets_info info;
      cr_assert_eq(keel_ets_info_get(t, &info), KEEL_OK);
      size_t n = 0;
      for (int64_t kk = 0; kk < KEYS; kk++)
        n += m->v[kk] >= 0;
      cr_assert_eq(info.size, n);
    }
    if (i % 5000 == 4999) { /* empties it, then refills a part */
      cr_assert_eq(keel_ets_delete_all_objects(t), KEEL_OK);
      for (int64_t kk = 0; kk < KEYS; kk++)
        m->v[kk] = -1;
      for (int64_t kk = 0; kk < KEYS; kk++)
        check_key(t, m, kk);
    }
  }
  free(m);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

/* Deletes by scanning (select_delete, match_delete) take out chains'
 * heads in bulk: the keys left are still found, the deleted ones not. */
Test(ets_lines, scans_that_delete_keep_lines_right) {
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  keel_ets_tab t;
  cr_assert_eq(keel_ets_new(&o, &t), KEEL_OK);
  model *m = malloc(sizeof *m);
  keel_heap h;
  keel_heap_init(&h);
  for (int64_t k = 0; k < KEYS; k++) {
    m->v[k] = k % 3 == 0 ? 7 : k, m->shape[k] = 0;
    cr_assert_eq(keel_ets_insert(t, obj_of(&h, k, m->v[k], 0)), KEEL_OK);
  }
  int64_t odd = 0;
  for (int64_t k = 1; k < KEYS; k += 2)
    odd += 1;
  cr_assert_eq(keel_ets_select_delete(
                   t, keel_build(&h, "[{'$1', [{'=:=', {'rem', {element, 1, "
                                     "'$1'}, 2}, 1}], [true]}]")),
               odd);
  for (int64_t k = 1; k < KEYS; k += 2)
    m->v[k] = -1;
  for (int64_t k = 0; k < KEYS; k++)
    check_key(t, m, k);
  int64_t sevens = 0;
  for (int64_t k = 0; k < KEYS; k++)
    sevens += m->v[k] == 7;
  cr_assert_eq(keel_ets_match_delete(t, keel_build(&h, "{'_', 7, '_'}")),
               sevens);
  for (int64_t k = 0; k < KEYS; k++)
    if (m->v[k] == 7)
      m->v[k] = -1;
  for (int64_t k = 0; k < KEYS; k++)
    check_key(t, m, k);
  keel_heap_destroy(&h);
  free(m);
  cr_assert_eq(keel_ets_delete(t), KEEL_OK);
}

/* ---- readers racing writers that change the chains' heads ---- */

#define STABLE 128 /* keys 0, 4, 8, ...: always present */
#define SPAN (STABLE * 4)
#define NREADERS 4
#define READS 20000

typedef struct shared {
  keel_ets_tab tab;
  _Atomic bool stop;
  _Atomic long writes;
  _Atomic int errors, torn, missing, other;
  char why[160];
} shared;

static void note(shared *s, _Atomic int *ctr, const char *what, long k) {
  if (atomic_fetch_add(ctr, 1) == 0)
    snprintf(s->why, sizeof s->why, "%s (key %ld)", what, k);
}

/* {K, V, 2V | _} with K == key. */
static bool whole(keel_term o, keel_term key) {
  if (!keel_is_tuple(o) || keel_tuple_arity(o) < 3)
    return false;
  keel_term v = keel_tuple_get(o, 1), w = keel_tuple_get(o, 2);
  return keel_tuple_get(o, 0) == key && keel_is_small(v) && keel_is_small(w) &&
         keel_small_value(w) == 2 * keel_small_value(v);
}

static void reader(keel_proc *self, void *arg) {
  (void)self;
  shared *s = arg;
  uint64_t buf[256];
  keel_heap h;
  uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&h;
  for (int i = 0; i < READS; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t k = (int64_t)(x % (SPAN + 64));
    keel_term key = keel_small(k), r;
    keel_heap_init_fixed(&h, buf, 256);
    int rc = keel_ets_lookup(s->tab, key, &h, &r);
    if (rc != KEEL_OK)
      note(s, &s->other, "lookup rc", (long)k);
    else if (r == KEEL_NIL && k % 4 == 0 && k < SPAN)
      note(s, &s->missing, "stable key missing", (long)k);
    else if (r != KEEL_NIL && (!keel_is_cons(r) || keel_tl(r) != KEEL_NIL ||
                               !whole(keel_hd(r), key)))
      note(s, &s->torn, "torn or foreign object", (long)k);
    keel_heap_destroy(&h);
    int m = keel_ets_member(s->tab, key);
    if (m == 0 && k % 4 == 0 && k < SPAN)
      note(s, &s->missing, "stable key not a member", (long)k);
    else if (m != 0 && m != 1)
      note(s, &s->other, "member rc", (long)k);
  }
  signal_event();
}

/* Rewrites stable key k (a multiple of 4) in one of five ways. */
static int write_stable(keel_ets_tab t, int64_t k, uint64_t x, keel_heap *h) {
  int v = (int)((x >> 32) & 0xffff);
  keel_term key = keel_small(k), r;
  switch ((x >> 4) % 5) {
  case 0:
    return keel_ets_insert(t, obj_of(h, k, v, (int)((x >> 50) % 3)));
  case 1:
    return keel_ets_insert(
        t, keel_cons(h, obj_of(h, k, v, 0),
                     keel_cons(h, obj_of(h, k + 1, v, 1), KEEL_NIL)));
  case 2:
    return keel_ets_update_counter(t, key, keel_build(h, "[{2, 1}, {3, 2}]"),
                                   KEEL_NONE, h, &r);
  case 3:
    return keel_ets_update_element(
               t, key, keel_build(h, "[{2, ~i}, {3, ~i}]", v, 2 * v),
               KEEL_NONE) == 1
               ? KEEL_OK
               : KEEL_EINVAL;
  default:
    return keel_ets_insert_new(t, obj_of(h, k, v, 0)) == 0 ? KEEL_OK
                                                           : KEEL_EINVAL;
  }
}

/* Changes volatile keys (not multiples of 4, and a growth range). */
static int write_volatile(shared *s, uint64_t x, long round, keel_heap *h) {
  int64_t k = (int64_t)((x >> 8) % SPAN) | 1;
  int64_t r64;
  keel_term r;
  switch (x % 6) {
  case 0:
  case 1:
    return keel_ets_insert(s->tab, obj_of(h, k, (int)(x >> 40), 0));
  case 2:
    return keel_ets_delete_key(s->tab, keel_small(k));
  case 3:
    return keel_ets_take(s->tab, keel_small(k), h, &r);
  case 4: /* the odd keys of a small range */
    r64 = keel_ets_select_delete(
        s->tab,
        keel_build(h,
                   "[{'$1', [{'>=', {element, 1, '$1'}, ~i}, "
                   "{'<', {element, 1, '$1'}, ~i}, "
                   "{'=:=', {'rem', {element, 1, '$1'}, 2}, 1}], [true]}]",
                   (int)k, (int)k + 16));
    return r64 >= 0 ? KEEL_OK : (int)r64;
  default: { /* growth keys in bulk, then out */
    int64_t g = 100000 + (round % 1024) * 2;
    return round % 2048 < 1024
               ? keel_ets_insert(s->tab, obj_of(h, g, 1, 0))
               : keel_ets_delete_key(s->tab, keel_small(g - 2048));
  }
  }
}

typedef struct warg {
  shared *s;
  int id;
} warg;

static void *writer(void *p) {
  warg *w = p;
  shared *s = w->s;
  uint64_t x = 0xD1B54A32D192ED03ull * (uint64_t)(w->id + 1);
  keel_heap h;
  long round = 0;
  while (!atomic_load(&s->stop)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    keel_heap_init(&h);
    int rc = w->id == 0
                 ? write_stable(s->tab, (int64_t)((x >> 8) % STABLE) * 4, x, &h)
                 : write_volatile(s, x, round, &h);
    keel_heap_destroy(&h);
    if (rc != KEEL_OK)
      atomic_fetch_add(&s->errors, 1);
    atomic_fetch_add(&s->writes, 1);
    round++;
  }
  return NULL;
}

static bool writes_started(void *arg) {
  return atomic_load(&((shared *)arg)->writes) >= 500;
}

static void race(unsigned nsched) {
  start_node(nsched, 0);
  shared *s = calloc(1, sizeof *s);
  keel_ets_opts o = {.type = KEEL_ETS_SET, .access = KEEL_ETS_PUBLIC};
  cr_assert_eq(keel_ets_new(&o, &s->tab), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  for (int64_t k = 0; k < SPAN; k += 4)
    cr_assert_eq(keel_ets_insert(s->tab, obj_of(&h, k, (int)k, 0)), KEEL_OK);
  keel_heap_destroy(&h);
  pthread_t th[2];
  warg wa[2];
  for (int i = 0; i < 2; i++) {
    wa[i] = (warg){s, i};
    cr_assert_eq(pthread_create(&th[i], NULL, writer, &wa[i]), 0);
  }
  cr_assert(wait_until(writes_started, s), "writers ran");
  keel_term pid;
  for (int i = 0; i < NREADERS; i++)
    cr_assert_eq(keel_spawn_fiber(reader, s, NULL, &pid), KEEL_OK);
  bool done = wait_events(NREADERS);
  atomic_store(&s->stop, true);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  cr_assert(done, "%u schedulers: the readers ended", nsched);
  cr_assert_eq(atomic_load(&s->torn), 0, "%u schedulers: %s", nsched, s->why);
  cr_assert_eq(atomic_load(&s->missing), 0, "%u schedulers: %s", nsched,
               s->why);
  cr_assert_eq(atomic_load(&s->other), 0, "%s", s->why);
  cr_assert_eq(atomic_load(&s->errors), 0);
  for (int64_t k = 0; k < SPAN; k += 4) { /* read with the lock as well */
    keel_term e;
    keel_heap_init(&h);
    cr_assert_eq(
        keel_ets_lookup_element(s->tab, keel_small(k), 2, KEEL_NONE, &h, &e),
        KEEL_OK);
    keel_heap_destroy(&h);
  }
  cr_assert_eq(keel_node_stop(), KEEL_OK);
  cr_assert_eq(keel_ets_delete(s->tab), KEEL_OK);
  free(s);
}

Test(ets_lines, readers_race_head_changes_1_scheduler) {
  race(1);
}

Test(ets_lines, readers_race_head_changes_2_schedulers) {
  race(2);
}

Test(ets_lines, readers_race_head_changes_8_schedulers) {
  race(8);
}
