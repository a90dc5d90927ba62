/*
 * fuse.c - circuit breakers (Erlang's fuse): a lock-free ask on an atomic
 * state word, melts and administration under a per-fuse lock.
 *
 * Names live in an open-addressed table of atomic pointers that only grows
 * (a removed fuse keeps its slot, marked REMOVED, and a reinstall of the
 * same name reuses it), so ask probes without a lock and every fuse stays
 * readable until the set is destroyed.
 *
 * The melt history is a ring of the last max_melts + 1 melt times. Times
 * only grow, so the fuse blows exactly when the ring is full and its oldest
 * entry is still inside the window: then more than max_melts melts lie in
 * the window (fuse_server's add_restart: entries with Now - T < Period).
 */
#include "keel/fuse.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "keel/clock.h"
#include "keel/telemetry.h"

enum {
  ST_BLOWN = 1u,    /* answers blown */
  ST_DISABLED = 2u, /* circuit_disable; implies ST_BLOWN */
  ST_GRADUAL = 4u,  /* fault injection when not blown */
  ST_REMOVED = 8u,  /* not found */
  ST_TIMER = 16u    /* blown by melts; heals at heal_at */
};

#define MS_MAX UINT64_C(4294967295)
#define NS_PER_MS UINT64_C(1000000)

typedef struct fuse {
  /* generation << 32 | ST_* bits; the generation counts removes, so a
   * handle taken before a remove never answers for a reinstall. */
  _Atomic uint64_t state;
  _Atomic uint64_t heal_at;   /* ns; meaningful with ST_TIMER */
  _Atomic uint64_t threshold; /* fault injection: blown if r53 < this */
  uint64_t hash;
  keel_term name;
  keel_heap heap;
  pthread_mutex_t mu;
  /* Under mu: */
  uint32_t max_melts;
  uint64_t window_ns, reset_ns;
  uint64_t *hist; /* ring of max_melts + 1 melt times */
  size_t hcap, hlen, hhead;
  /* Under the set's mon_mu: */
  int alarm_hist; /* rounds of ok left before the alarm clears */
  _Atomic bool alarm;
} fuse;

struct keel_fuses {
  keel_fuse_clock_fn clock;
  void *clock_arg;
  _Atomic uint64_t rng;
  pthread_mutex_t mu; /* inserts into slots */
  size_t cap, n, max;
  _Atomic(fuse *) *slots;
  keel_tel_event *ev_blown, *ev_recovered, *ev_alarm_set, *ev_alarm_clr;
  keel_term a_name;
  pthread_mutex_t mon_mu; /* monitor rounds */
};

/* What an operation changed, reported after the lock is released. */
typedef enum change { NONE, BLEW, RECOVERED } change;

static uint64_t default_clock(void *arg) {
  (void)arg;
  return keel_monotonic_ns();
}

static uint64_t now_ns(const keel_fuses *fs) {
  return fs->clock(fs->clock_arg);
}

int keel_fuses_create(const keel_fuses_opts *opts, keel_fuses **out) {
  keel_fuses_opts o = {0};
  if (opts != NULL)
    o = *opts;
  if (out == NULL || o.max_fuses > KEEL_FUSES_MAX)
    return KEEL_EINVAL;
  size_t max = o.max_fuses ? o.max_fuses : KEEL_FUSES_DEFAULT_MAX;
  size_t cap = 16;
  while (cap < 2 * max)
    cap *= 2;
  keel_fuses *fs = calloc(1, sizeof *fs);
  _Atomic(fuse *) *slots = calloc(cap, sizeof *slots);
  keel_tel_event *blown = NULL, *recovered = NULL, *aset = NULL, *aclr = NULL;
  if (fs == NULL || slots == NULL ||
      keel_tel_event_parse("keel.fuse.blown", &blown) != KEEL_OK ||
      keel_tel_event_parse("keel.fuse.recovered", &recovered) != KEEL_OK ||
      keel_tel_event_parse("keel.fuse.alarm_set", &aset) != KEEL_OK ||
      keel_tel_event_parse("keel.fuse.alarm_cleared", &aclr) != KEEL_OK) {
    free(fs);
    free(slots);
    return KEEL_ENOMEM;
  }
  fs->clock = o.clock ? o.clock : default_clock;
  fs->clock_arg = o.clock_arg;
  atomic_init(&fs->rng, o.seed);
  pthread_mutex_init(&fs->mu, NULL);
  fs->cap = cap;
  fs->max = max;
  fs->slots = slots;
  fs->ev_blown = blown;
  fs->ev_recovered = recovered;
  fs->ev_alarm_set = aset;
  fs->ev_alarm_clr = aclr;
  fs->a_name = keel_atom("name");
  pthread_mutex_init(&fs->mon_mu, NULL);
  *out = fs;
  return KEEL_OK;
}

void keel_fuses_destroy(keel_fuses *fs) {
  if (fs == NULL)
    return;
  for (size_t i = 0; i < fs->cap; i++) {
    fuse *f = atomic_load_explicit(&fs->slots[i], memory_order_relaxed);
    if (f == NULL)
      continue;
    pthread_mutex_destroy(&f->mu);
    keel_heap_destroy(&f->heap);
    free(f->hist);
    free(f);
  }
  pthread_mutex_destroy(&fs->mu);
  pthread_mutex_destroy(&fs->mon_mu);
  free(fs->slots);
  free(fs);
}

/* ---- lookup ----------------------------------------------------------------
 */

/* keel_eq_exact, without the call when a is an immediate. */
static bool same_term(keel_term a, keel_term b) {
  return a == b ||
         ((keel_is_boxed(a) || keel_is_cons(a)) && keel_eq_exact(a, b));
}

/* The hash of a name in the slot table: an immediate (an atom, a small
 * integer: one canonical word) is mixed by splitmix64's finaliser alone,
 * anything else goes through keel_hash. */
static uint64_t name_hash(keel_term name) {
  if (keel_is_boxed(name) || keel_is_cons(name))
    return keel_hash(name);
  uint64_t z = name;
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* The slot of name (a fuse, possibly REMOVED), or NULL. Lock-free. */
static fuse *lookup(const keel_fuses *fs, keel_term name, uint64_t hash) {
  size_t mask = fs->cap - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    fuse *f = atomic_load_explicit(&fs->slots[i], memory_order_acquire);
    if (f == NULL)
      return NULL;
    if (f->hash == hash && same_term(name, f->name))
      return f;
  }
}

static fuse *fuse_new(keel_term name, uint64_t hash) {
  fuse *f = calloc(1, sizeof *f);
  if (f == NULL)
    return NULL;
  keel_heap_init(&f->heap);
  f->name = keel_term_copy(&f->heap, name);
  if (f->name == KEEL_NONE) {
    keel_heap_destroy(&f->heap);
    free(f);
    return NULL;
  }
  f->hash = hash;
  atomic_init(&f->state, ST_REMOVED);
  pthread_mutex_init(&f->mu, NULL);
  return f;
}

/* Finds or inserts the slot of name. */
static int slot_get(keel_fuses *fs, keel_term name, fuse **out) {
  uint64_t hash = name_hash(name);
  int rc = KEEL_OK;
  pthread_mutex_lock(&fs->mu);
  fuse *f = lookup(fs, name, hash);
  if (f == NULL) {
    if (fs->n >= fs->max) {
      rc = KEEL_ESYSLIMIT;
    } else if ((f = fuse_new(name, hash)) == NULL) {
      rc = KEEL_ENOMEM;
    } else {
      size_t mask = fs->cap - 1, i = hash & mask;
      while (atomic_load_explicit(&fs->slots[i], memory_order_relaxed))
        i = (i + 1) & mask;
      atomic_store_explicit(&fs->slots[i], f, memory_order_release);
      fs->n++;
    }
  }
  pthread_mutex_unlock(&fs->mu);
  *out = f;
  return rc;
}

/* ---- state changes (under f->mu) -------------------------------------------
 */

static uint32_t st(const fuse *f) {
  return (uint32_t)atomic_load_explicit(&f->state, memory_order_relaxed);
}

/* Sets the ST_* bits, keeping the generation. */
static void st_set(fuse *f, uint32_t s) {
  uint64_t gen = atomic_load_explicit(&f->state, memory_order_relaxed) >> 32;
  atomic_store_explicit(&f->state, gen << 32 | s, memory_order_release);
}

/* fuse_server's fix: back to the strategy's ok state, no melts, no timer;
 * a disabled fuse stays blown. */
static change fix(fuse *f) {
  uint32_t s = st(f);
  f->hlen = 0;
  f->hhead = 0;
  if (s & ST_DISABLED) {
    st_set(f, s & ~ST_TIMER);
    return NONE;
  }
  uint32_t ns = s & ST_GRADUAL;
  st_set(f, ns);
  return (s & ST_BLOWN) ? RECOVERED : NONE;
}

/* Applies the heal of a blown fuse whose reset time has passed. */
static change heal_if_due(fuse *f, uint64_t now) {
  uint32_t s = st(f);
  if (!(s & ST_TIMER) || now < atomic_load(&f->heal_at))
    return NONE;
  return fix(f);
}

static change add_melt(fuse *f, uint64_t now) {
  f->hist[f->hhead] = now;
  f->hhead = (f->hhead + 1) % f->hcap;
  if (f->hlen < f->hcap)
    f->hlen++;
  /* The oldest kept melt; all newer ones are in the window if it is. */
  uint64_t oldest = f->hist[f->hlen < f->hcap ? 0 : f->hhead];
  if (f->hlen < f->hcap || now - oldest >= f->window_ns)
    return NONE;
  uint32_t s = st(f);
  if (s & (ST_DISABLED | ST_TIMER))
    return NONE; /* disabled: no blow; blown: the first timer stands */
  atomic_store(&f->heal_at, now + f->reset_ns);
  st_set(f, (s | ST_BLOWN | ST_TIMER));
  return (s & ST_BLOWN) ? NONE : BLEW;
}

static void report(const keel_fuses *fs, const fuse *f, change c) {
  if (c == NONE)
    return;
  keel_tel_meta md[1] = {{fs->a_name, f->name}};
  keel_tel_execute(c == BLEW ? fs->ev_blown : fs->ev_recovered, NULL, 0, md, 1);
}

/* ---- install
 * ----------------------------------------------------------------- */

static int check_opts(const keel_fuse_opts *o) {
  if (o == NULL || o->max_melts > KEEL_FUSE_MAX_MELTS ||
      o->window_ms > MS_MAX || o->reset_ms > MS_MAX)
    return KEEL_EINVAL;
  if (o->strategy == KEEL_FUSE_STANDARD)
    return KEEL_OK;
  if (o->strategy == KEEL_FUSE_FAULT_INJECTION && o->rate > 0 && o->rate <= 1)
    return KEEL_OK;
  return KEEL_EINVAL;
}

static uint64_t rate_threshold(const keel_fuse_opts *o) {
  if (o->strategy != KEEL_FUSE_FAULT_INJECTION)
    return 0;
  return (uint64_t)(o->rate * 9007199254740992.0); /* rate * 2^53 */
}

int keel_fuse_install(keel_fuses *fs, keel_term name, const keel_fuse_opts *o) {
  if (fs == NULL || name == KEEL_NONE || check_opts(o) != KEEL_OK)
    return KEEL_EINVAL;
  size_t hcap = (size_t)o->max_melts + 1;
  uint64_t *hist = malloc(hcap * sizeof *hist);
  if (hist == NULL)
    return KEEL_ENOMEM;
  fuse *f;
  int rc = slot_get(fs, name, &f);
  if (rc != KEEL_OK) {
    free(hist);
    return rc;
  }
  pthread_mutex_lock(&f->mu);
  uint32_t s = st(f);
  bool was_blown = !(s & ST_REMOVED) && (s & ST_BLOWN);
  free(f->hist);
  f->hist = hist;
  f->hcap = hcap;
  f->hlen = 0;
  f->hhead = 0;
  f->max_melts = o->max_melts;
  f->window_ns = o->window_ms * NS_PER_MS;
  f->reset_ns = o->reset_ms * NS_PER_MS;
  atomic_store(&f->threshold, rate_threshold(o));
  uint32_t gradual = o->strategy == KEEL_FUSE_FAULT_INJECTION ? ST_GRADUAL : 0;
  /* The enabled state is transplanted from the old fuse. */
  bool disabled = !(s & ST_REMOVED) && (s & ST_DISABLED);
  st_set(f, disabled ? (ST_DISABLED | ST_BLOWN | gradual) : gradual);
  pthread_mutex_unlock(&f->mu);
  report(fs, f, was_blown && !disabled ? RECOVERED : NONE);
  return KEEL_OK;
}

/* ---- operations -------------------------------------------------------------
 */

static fuse *find(const keel_fuses *fs, keel_term name) {
  if (fs == NULL || name == KEEL_NONE)
    return NULL;
  fuse *f = lookup(fs, name, name_hash(name));
  if (f == NULL ||
      ((uint32_t)atomic_load_explicit(&f->state, memory_order_acquire) &
       ST_REMOVED))
    return NULL;
  return f;
}

/* Runs op on the fuse under its lock, after applying a due heal. */
typedef change (*fuse_op)(fuse *f, uint64_t now);

static int locked(keel_fuses *fs, fuse *f, fuse_op op) {
  pthread_mutex_lock(&f->mu);
  if (st(f) & ST_REMOVED) {
    pthread_mutex_unlock(&f->mu);
    return KEEL_ENOENT;
  }
  uint64_t now = now_ns(fs);
  change c1 = heal_if_due(f, now);
  change c2 = op ? op(f, now) : NONE;
  pthread_mutex_unlock(&f->mu);
  report(fs, f, c1);
  report(fs, f, c2);
  return KEEL_OK;
}

static bool injected(keel_fuses *fs, const fuse *f) {
  uint64_t x = atomic_fetch_add_explicit(&fs->rng, UINT64_C(0x9E3779B97F4A7C15),
                                         memory_order_relaxed);
  /* splitmix64 */
  x += UINT64_C(0x9E3779B97F4A7C15);
  x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
  x ^= x >> 31;
  return (x >> 11) < atomic_load_explicit(&f->threshold, memory_order_relaxed);
}

/* ask on a fuse whose state word was w (generation and ST_* bits). A
 * fuse removed by then, or removed while a due heal is applied (its
 * generation moved on), answers not found. */
static int ask_fuse(keel_fuses *fs, fuse *f, uint64_t w) {
  uint32_t s = (uint32_t)w;
  if (s & ST_REMOVED)
    return KEEL_ENOENT;
  if (s & ST_BLOWN) {
    if (!(s & ST_TIMER) || now_ns(fs) < atomic_load(&f->heal_at))
      return KEEL_FUSE_BLOWN;
    if (locked(fs, f, NULL) != KEEL_OK)
      return KEEL_ENOENT;
    uint64_t w2 = atomic_load_explicit(&f->state, memory_order_acquire);
    if ((w2 >> 32) != (w >> 32) || ((uint32_t)w2 & ST_REMOVED))
      return KEEL_ENOENT;
    s = (uint32_t)w2;
    if (s & ST_BLOWN)
      return KEEL_FUSE_BLOWN;
  }
  if ((s & ST_GRADUAL) && injected(fs, f))
    return KEEL_FUSE_BLOWN;
  return KEEL_FUSE_OK;
}

int keel_fuse_ask(keel_fuses *fs, keel_term name) {
  fuse *f = find(fs, name);
  if (f == NULL)
    return KEEL_ENOENT;
  return ask_fuse(fs, f, atomic_load_explicit(&f->state, memory_order_acquire));
}

int keel_fuse_handle_get(keel_fuses *fs, keel_term name,
                         keel_fuse_handle *out) {
  if (out == NULL)
    return KEEL_EINVAL;
  fuse *f = find(fs, name);
  if (f == NULL)
    return KEEL_ENOENT;
  uint64_t w = atomic_load_explicit(&f->state, memory_order_acquire);
  if ((uint32_t)w & ST_REMOVED)
    return KEEL_ENOENT;
  *out = (keel_fuse_handle){.fuse = f, .gen = (uint32_t)(w >> 32)};
  return KEEL_OK;
}

int keel_fuse_ask_h(keel_fuses *fs, keel_fuse_handle h) {
  fuse *f = h.fuse;
  if (fs == NULL || f == NULL)
    return KEEL_ENOENT;
  uint64_t w = atomic_load_explicit(&f->state, memory_order_acquire);
  if ((uint32_t)(w >> 32) != h.gen)
    return KEEL_ENOENT;
  return ask_fuse(fs, f, w);
}

int keel_fuse_melt(keel_fuses *fs, keel_term name) {
  if (fs == NULL)
    return KEEL_EINVAL;
  fuse *f = find(fs, name);
  if (f != NULL)
    (void)locked(fs, f, add_melt);
  return KEEL_OK;
}

int keel_fuse_run(keel_fuses *fs, keel_term name, keel_fuse_fn fn, void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  int rc = keel_fuse_ask(fs, name);
  if (rc != KEEL_FUSE_OK)
    return rc;
  if (fn(arg) != KEEL_FUSE_OK)
    (void)keel_fuse_melt(fs, name);
  return KEEL_FUSE_OK;
}

static change op_reset(fuse *f, uint64_t now) {
  (void)now;
  return fix(f);
}

static change op_disable(fuse *f, uint64_t now) {
  (void)now;
  uint32_t s = st(f);
  if (s & ST_DISABLED)
    return NONE;
  st_set(f, (s & ST_GRADUAL) | ST_DISABLED | ST_BLOWN);
  return (s & ST_BLOWN) ? NONE : BLEW;
}

static change op_enable(fuse *f, uint64_t now) {
  (void)now;
  uint32_t s = st(f);
  if (!(s & ST_DISABLED))
    return NONE;
  st_set(f, s & ~ST_DISABLED);
  return fix(f);
}

static change op_remove(fuse *f, uint64_t now) {
  (void)now;
  uint64_t gen = atomic_load_explicit(&f->state, memory_order_relaxed) >> 32;
  /* A new generation: handles taken so far are stale for good. */
  atomic_store_explicit(&f->state,
                        (uint64_t)(uint32_t)(gen + 1) << 32 | ST_REMOVED,
                        memory_order_release);
  f->hlen = 0;
  f->hhead = 0;
  return NONE;
}

static int admin(keel_fuses *fs, keel_term name, fuse_op op) {
  fuse *f = find(fs, name);
  return f ? locked(fs, f, op) : KEEL_ENOENT;
}

int keel_fuse_reset(keel_fuses *fs, keel_term name) {
  return admin(fs, name, op_reset);
}

int keel_fuse_remove(keel_fuses *fs, keel_term name) {
  return admin(fs, name, op_remove);
}

int keel_fuse_circuit_disable(keel_fuses *fs, keel_term name) {
  return admin(fs, name, op_disable);
}

int keel_fuse_circuit_enable(keel_fuses *fs, keel_term name) {
  return admin(fs, name, op_enable);
}

/* ---- alarm monitor (fuse_monitor) ------------------------------------------
 */

/* Updates f's alarm from one observation; returns the event to emit. */
static keel_tel_event *monitor_one(keel_fuses *fs, fuse *f, bool blown) {
  if (blown) {
    f->alarm_hist = 3;
    if (atomic_load(&f->alarm))
      return NULL;
    atomic_store(&f->alarm, true);
    return fs->ev_alarm_set;
  }
  if (f->alarm_hist > 0)
    f->alarm_hist--;
  if (f->alarm_hist > 0 || !atomic_load(&f->alarm))
    return NULL;
  atomic_store(&f->alarm, false);
  return fs->ev_alarm_clr;
}

int keel_fuses_monitor(keel_fuses *fs) {
  if (fs == NULL)
    return KEEL_EINVAL;
  int raised = 0;
  pthread_mutex_lock(&fs->mon_mu);
  for (size_t i = 0; i < fs->cap; i++) {
    fuse *f = atomic_load_explicit(&fs->slots[i], memory_order_acquire);
    if (f == NULL || locked(fs, f, NULL) != KEEL_OK)
      continue; /* empty or removed; a due heal is applied first */
    bool blown = (uint32_t)atomic_load(&f->state) & ST_BLOWN;
    keel_tel_event *ev = monitor_one(fs, f, blown);
    if (ev != NULL) {
      keel_tel_meta md[1] = {{fs->a_name, f->name}};
      keel_tel_execute(ev, NULL, 0, md, 1);
    }
    raised += atomic_load(&f->alarm);
  }
  pthread_mutex_unlock(&fs->mon_mu);
  return raised;
}

int keel_fuse_alarm(keel_fuses *fs, keel_term name) {
  fuse *f = find(fs, name);
  return f ? (int)atomic_load(&f->alarm) : KEEL_ENOENT;
}
