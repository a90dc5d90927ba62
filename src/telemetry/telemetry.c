/*
 * telemetry.c - event descriptors, handler lists, execute and the grace
 * periods that let execute run without locks.
 *
 * Readers (execute) announce themselves in one of 64 striped counter pairs
 * (a thread always uses the same stripe; the pair is indexed by the parity
 * of a global epoch), load the event's handler array and call through it.
 * Writers (attach, detach) build a new array under g_mu, swap it in and
 * retire the old one. Retired memory is freed after a grace period: the
 * epoch is flipped twice and each time the counters of the old parity are
 * waited to zero (userspace RCU's scheme), so every reader that could have
 * loaded a retired pointer has finished. A writer running inside a handler
 * (a read section) cannot wait for itself: it leaves its garbage on a
 * deferred list, freed by the next writer outside a handler.
 */
#include "keel/telemetry.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/clock.h"
#include "telemetry/tel_internal.h"

typedef struct tel_handler {
  keel_heap heap; /* holds the copy of id */
  keel_term id;
  keel_tel_handler_fn fn;
  void *config;
  size_t nev;
  keel_tel_event **evs;
  struct tel_handler *rnext; /* retired chain */
} tel_handler;

/* An event's handler array; immutable once published. */
typedef struct hlist {
  struct hlist *rnext; /* retired chain */
  size_t n;
  tel_handler *h[];
} hlist;

struct keel_tel_event {
  _Atomic(hlist *) list;
  size_t n;
  keel_term atoms[KEEL_TEL_NAME_MAX];
  keel_term name; /* list of atoms, in heap */
  keel_heap heap;
  uint64_t hash;
  struct keel_tel_event *next; /* hash chain */
};

#define EV_BUCKETS 1024
#define NSTRIPE 64

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static keel_tel_event *g_buckets[EV_BUCKETS];
static size_t g_nevents;
static tel_handler **g_handlers;
static size_t g_nh, g_caph;
static hlist *g_dead_lists;    /* deferred garbage, under g_mu */
static tel_handler *g_dead_hs; /* deferred garbage, under g_mu */
static pthread_mutex_t g_sync_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct stripe {
  _Atomic uint64_t n[2];
  char pad[64 - 2 * sizeof(uint64_t)];
} stripe;

static _Alignas(64) stripe g_readers[NSTRIPE];
static _Atomic unsigned g_epoch;
static _Atomic unsigned g_next_stripe;
typedef struct reader_tls {
  unsigned stripe; /* stripe + 1; 0 = unassigned */
  unsigned depth;  /* read sections held */
} reader_tls;
static _Thread_local reader_tls t_reader;

/* ---- atoms and clocks --------------------------------------------------- */

static keel__tel_atoms g_atoms;
static pthread_once_t g_atoms_once = PTHREAD_ONCE_INIT;

static void atoms_init(void) {
  g_atoms.telemetry = keel_atom("telemetry");
  g_atoms.handler = keel_atom("handler");
  g_atoms.failure = keel_atom("failure");
  g_atoms.handler_id = keel_atom("handler_id");
  g_atoms.event_name = keel_atom("event_name");
  g_atoms.kind = keel_atom("kind");
  g_atoms.reason = keel_atom("reason");
  g_atoms.stacktrace = keel_atom("stacktrace");
  g_atoms.error = KEEL_ATOM(ERROR);
  g_atoms.monotonic_time = keel_atom("monotonic_time");
  g_atoms.system_time = keel_atom("system_time");
  g_atoms.duration = keel_atom("duration");
  g_atoms.span_context = keel_atom("telemetry_span_context");
  g_atoms.start = keel_atom("start");
  g_atoms.stop = KEEL_ATOM(STOP);
  g_atoms.exception = keel_atom("exception");
}

const keel__tel_atoms *keel__tel_atoms_get(void) {
  pthread_once(&g_atoms_once, atoms_init);
  return &g_atoms;
}

int64_t keel__tel_system_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * INT64_C(1000000000) + (int64_t)ts.tv_nsec;
}

/* ---- read sections and grace periods ------------------------------------ */

/* The calling thread's state (one TLS address lookup per caller). */
static unsigned read_lock(reader_tls *t) {
  if (t->stripe == 0)
    t->stripe = atomic_fetch_add(&g_next_stripe, 1) % NSTRIPE + 1;
  unsigned s = t->stripe - 1;
  unsigned e = atomic_load(&g_epoch) & 1u;
  atomic_fetch_add(&g_readers[s].n[e], 1);
  t->depth++;
  return s << 1 | e;
}

static void read_unlock(reader_tls *t, unsigned tok) {
  t->depth--;
  atomic_fetch_sub_explicit(&g_readers[tok >> 1].n[tok & 1u], 1,
                            memory_order_release);
}

static void wait_drained(unsigned parity) {
  for (unsigned s = 0; s < NSTRIPE; s++) {
    unsigned spins = 0;
    while (atomic_load(&g_readers[s].n[parity]) != 0) {
      if (++spins > 100)
        sched_yield();
    }
  }
}

/* Returns once every read section begun before the call has ended. */
static void grace_period(void) {
  pthread_mutex_lock(&g_sync_mu);
  for (int k = 0; k < 2; k++) {
    unsigned old = atomic_fetch_xor(&g_epoch, 1u) & 1u;
    wait_drained(old);
  }
  pthread_mutex_unlock(&g_sync_mu);
}

static void handler_free(tel_handler *h) {
  keel_heap_destroy(&h->heap);
  free(h->evs);
  free(h);
}

static void free_chains(hlist *ls, tel_handler *hs) {
  while (ls != NULL) {
    hlist *n = ls->rnext;
    free(ls);
    ls = n;
  }
  while (hs != NULL) {
    tel_handler *n = hs->rnext;
    handler_free(hs);
    hs = n;
  }
}

/* Frees retired memory after a grace period, or defers it when the caller
 * is inside a read section. */
static void reclaim(hlist *ls, tel_handler *hs) {
  pthread_mutex_lock(&g_mu);
  if (t_reader.depth > 0) {
    while (ls != NULL) {
      hlist *n = ls->rnext;
      ls->rnext = g_dead_lists;
      g_dead_lists = ls;
      ls = n;
    }
    while (hs != NULL) {
      tel_handler *n = hs->rnext;
      hs->rnext = g_dead_hs;
      g_dead_hs = hs;
      hs = n;
    }
    pthread_mutex_unlock(&g_mu);
    return;
  }
  hlist *dl = g_dead_lists;
  tel_handler *dh = g_dead_hs;
  g_dead_lists = NULL;
  g_dead_hs = NULL;
  pthread_mutex_unlock(&g_mu);
  grace_period();
  free_chains(ls, hs);
  free_chains(dl, dh);
}

int keel_tel_synchronize(void) {
  if (t_reader.depth > 0)
    return KEEL_ESTATE;
  reclaim(NULL, NULL);
  return KEEL_OK;
}

/* ---- event descriptors -------------------------------------------------- */

static uint64_t name_hash(const keel_term *atoms, size_t n) {
  uint64_t h = UINT64_C(1469598103934665603);
  for (size_t i = 0; i < n; i++) {
    h ^= atoms[i];
    h *= UINT64_C(1099511628211);
  }
  return h ^ (h >> 29);
}

static keel_tel_event *event_new(const keel_term *atoms, size_t n,
                                 uint64_t hash) {
  keel_tel_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL)
    return NULL;
  keel_heap_init(&ev->heap);
  ev->name = keel_list_from(&ev->heap, n, atoms);
  if (ev->name == KEEL_NONE) {
    keel_heap_destroy(&ev->heap);
    free(ev);
    return NULL;
  }
  atomic_init(&ev->list, NULL);
  memcpy(ev->atoms, atoms, n * sizeof *atoms);
  ev->n = n;
  ev->hash = hash;
  return ev;
}

int keel_tel_event_get(const keel_term *atoms, size_t n, keel_tel_event **out) {
  if (out == NULL || atoms == NULL || n == 0 || n > KEEL_TEL_NAME_MAX)
    return KEEL_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!keel_is_atom(atoms[i]))
      return KEEL_EINVAL;
  uint64_t hash = name_hash(atoms, n);
  keel_tel_event **b = &g_buckets[hash % EV_BUCKETS];
  int rc = KEEL_OK;
  pthread_mutex_lock(&g_mu);
  keel_tel_event *ev = *b;
  while (ev != NULL && !(ev->hash == hash && ev->n == n &&
                         memcmp(ev->atoms, atoms, n * sizeof *atoms) == 0))
    ev = ev->next;
  if (ev == NULL) {
    if (g_nevents >= KEEL_TEL_EVENTS_MAX) {
      rc = KEEL_ESYSLIMIT;
    } else if ((ev = event_new(atoms, n, hash)) == NULL) {
      rc = KEEL_ENOMEM;
    } else {
      ev->next = *b;
      *b = ev;
      g_nevents++;
    }
  }
  pthread_mutex_unlock(&g_mu);
  if (rc == KEEL_OK)
    *out = ev;
  return rc;
}

int keel_tel_event_parse(const char *dotted, keel_tel_event **out) {
  if (dotted == NULL)
    return KEEL_EINVAL;
  keel_term atoms[KEEL_TEL_NAME_MAX];
  size_t n = 0;
  const char *p = dotted;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (len == 0 || n == KEEL_TEL_NAME_MAX)
      return KEEL_EINVAL;
    int rc = keel_atom_intern(p, len, &atoms[n++]);
    if (rc != KEEL_OK)
      return rc;
    if (dot == NULL)
      break;
    p = dot + 1;
  }
  return keel_tel_event_get(atoms, n, out);
}

size_t keel_tel_event_atoms(const keel_tel_event *event,
                            const keel_term **atoms) {
  if (atoms != NULL)
    *atoms = event->atoms;
  return event->n;
}

keel_term keel_tel_event_name(const keel_tel_event *event) {
  return event->name;
}

/* ---- attach and detach --------------------------------------------------- */

static size_t find_handler(keel_term id) {
  for (size_t i = 0; i < g_nh; i++)
    if (keel_eq_exact(g_handlers[i]->id, id))
      return i;
  return SIZE_MAX;
}

/* A copy of old (may be NULL) with h added (add) or removed (!add). Sets
 * *out to NULL when the result is empty. */
static int list_edit(const hlist *old, tel_handler *h, bool add, hlist **out) {
  size_t n = old ? old->n : 0;
  size_t nn = add ? n + 1 : n - 1;
  *out = NULL;
  if (nn == 0)
    return KEEL_OK;
  hlist *l = malloc(sizeof *l + nn * sizeof(tel_handler *));
  if (l == NULL)
    return KEEL_ENOMEM;
  l->rnext = NULL;
  l->n = 0;
  for (size_t i = 0; i < n; i++)
    if (add || old->h[i] != h)
      l->h[l->n++] = old->h[i];
  if (add)
    l->h[l->n++] = h;
  *out = l;
  return KEEL_OK;
}

/* Builds the new lists of h's events (add or remove h); on failure frees
 * what it built. */
static int lists_build(tel_handler *h, bool add, hlist **fresh) {
  for (size_t i = 0; i < h->nev; i++) {
    hlist *old = atomic_load_explicit(&h->evs[i]->list, memory_order_relaxed);
    int rc = list_edit(old, h, add, &fresh[i]);
    if (rc != KEEL_OK) {
      for (size_t j = 0; j < i; j++)
        free(fresh[j]);
      return rc;
    }
  }
  return KEEL_OK;
}

/* Publishes the new lists and chains the old ones onto *dead. */
static void lists_swap(tel_handler *h, hlist **fresh, hlist **dead) {
  for (size_t i = 0; i < h->nev; i++) {
    hlist *old = atomic_exchange(&h->evs[i]->list, fresh[i]);
    if (old != NULL) {
      old->rnext = *dead;
      *dead = old;
    }
  }
}

static tel_handler *handler_new(keel_term id, keel_tel_event *const *events,
                                size_t nevents, keel_tel_handler_fn fn,
                                void *config) {
  tel_handler *h = calloc(1, sizeof *h);
  if (h == NULL)
    return NULL;
  keel_heap_init(&h->heap);
  h->id = keel_term_copy(&h->heap, id);
  h->evs = malloc(nevents * sizeof(keel_tel_event *));
  if (h->id == KEEL_NONE || h->evs == NULL) {
    handler_free(h);
    return NULL;
  }
  memcpy(h->evs, events, nevents * sizeof(keel_tel_event *));
  h->nev = nevents;
  h->fn = fn;
  h->config = config;
  return h;
}

static int check_events(keel_tel_event *const *events, size_t nevents) {
  if (events == NULL || nevents == 0 || nevents > KEEL_TEL_EVENTS_MAX)
    return KEEL_EINVAL;
  for (size_t i = 0; i < nevents; i++) {
    if (events[i] == NULL)
      return KEEL_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (events[j] == events[i])
        return KEEL_EINVAL;
  }
  return KEEL_OK;
}

static int handlers_grow(void) {
  if (g_nh < g_caph)
    return KEEL_OK;
  size_t cap = g_caph ? g_caph * 2 : 16;
  tel_handler **a = realloc(g_handlers, cap * sizeof(tel_handler *));
  if (a == NULL)
    return KEEL_ENOMEM;
  g_handlers = a;
  g_caph = cap;
  return KEEL_OK;
}

int keel_tel_attach(keel_term id, keel_tel_event *const *events, size_t nevents,
                    keel_tel_handler_fn fn, void *config) {
  if (fn == NULL || id == KEEL_NONE)
    return KEEL_EINVAL;
  int rc = check_events(events, nevents);
  if (rc != KEEL_OK)
    return rc;
  tel_handler *h = handler_new(id, events, nevents, fn, config);
  hlist **fresh = calloc(nevents, sizeof(hlist *));
  if (h == NULL || fresh == NULL) {
    if (h != NULL)
      handler_free(h);
    free(fresh);
    return KEEL_ENOMEM;
  }
  hlist *dead = NULL;
  pthread_mutex_lock(&g_mu);
  if (find_handler(id) != SIZE_MAX)
    rc = KEEL_EEXIST;
  if (rc == KEEL_OK)
    rc = handlers_grow();
  if (rc == KEEL_OK)
    rc = lists_build(h, true, fresh);
  if (rc == KEEL_OK) {
    g_handlers[g_nh++] = h;
    lists_swap(h, fresh, &dead);
  }
  pthread_mutex_unlock(&g_mu);
  free(fresh);
  if (rc != KEEL_OK) {
    handler_free(h);
    return rc;
  }
  if (dead != NULL)
    reclaim(dead, NULL);
  return KEEL_OK;
}

int keel_tel_detach(keel_term id) {
  if (id == KEEL_NONE)
    return KEEL_ENOENT;
  pthread_mutex_lock(&g_mu);
  size_t i = find_handler(id);
  if (i == SIZE_MAX) {
    pthread_mutex_unlock(&g_mu);
    return KEEL_ENOENT;
  }
  tel_handler *h = g_handlers[i];
  hlist **fresh = calloc(h->nev, sizeof(hlist *));
  int rc = fresh ? lists_build(h, false, fresh) : KEEL_ENOMEM;
  hlist *dead = NULL;
  if (rc == KEEL_OK) {
    lists_swap(h, fresh, &dead);
    memmove(&g_handlers[i], &g_handlers[i + 1],
            (g_nh - i - 1) * sizeof(tel_handler *));
    g_nh--;
  }
  pthread_mutex_unlock(&g_mu);
  free(fresh);
  if (rc == KEEL_OK) {
    h->rnext = NULL;
    reclaim(dead, h);
  }
  return rc;
}

/* ---- execute ------------------------------------------------------------- */

static void handler_failed(const tel_handler *h, keel_tel_event *ev, int code) {
  const keel__tel_atoms *a = keel__tel_atoms_get();
  keel_tel_event *fail;
  keel_term name[3] = {a->telemetry, a->handler, a->failure};
  /* The handler stays readable until this read section ends. */
  keel_term id = h->id;
  (void)keel_tel_detach(id);
  if (keel_tel_event_get(name, 3, &fail) != KEEL_OK)
    return;
  keel_tel_measure m[2] = {{a->monotonic_time, (double)keel_monotonic_ns()},
                           {a->system_time, (double)keel__tel_system_ns()}};
  keel_tel_meta md[5] = {{a->handler_id, id},
                         {a->event_name, ev->name},
                         {a->kind, a->error},
                         {a->reason, keel_small(code)},
                         {a->stacktrace, KEEL_NIL}};
  keel_tel_execute(fail, m, 2, md, 5);
}

static void execute_slow(keel_tel_event *ev, const keel_tel_measure *m,
                         size_t nm, const keel_tel_meta *md, size_t nmd) {
  reader_tls *t = &t_reader;
  unsigned tok = read_lock(t);
  const hlist *l = atomic_load(&ev->list);
  if (l != NULL) {
    for (size_t i = 0; i < l->n; i++) {
      const tel_handler *h = l->h[i];
      int rc = h->fn(ev, m, nm, md, nmd, h->config);
      if (rc < 0)
        handler_failed(h, ev, rc);
    }
  }
  read_unlock(t, tok);
}

void keel_tel_execute(keel_tel_event *event, const keel_tel_measure *m,
                      size_t nm, const keel_tel_meta *md, size_t nmd) {
  if (event == NULL ||
      atomic_load_explicit(&event->list, memory_order_relaxed) == NULL)
    return;
  execute_slow(event, m, nm, md, nmd);
}

/* ---- queries ------------------------------------------------------------- */

static bool has_prefix(const keel_tel_event *ev, const keel_term *prefix,
                       size_t n) {
  return n == 0 ||
         (ev->n >= n && memcmp(ev->atoms, prefix, n * sizeof *prefix) == 0);
}

int keel_tel_list_handlers(const keel_term *prefix, size_t n, keel_heap *h,
                           keel_term *out) {
  if (h == NULL || out == NULL || n > KEEL_TEL_NAME_MAX ||
      (n > 0 && prefix == NULL))
    return KEEL_EINVAL;
  int rc = KEEL_OK;
  keel_term acc = KEEL_NIL;
  pthread_mutex_lock(&g_mu);
  /* Built back to front so the list is in attach order. */
  for (size_t i = g_nh; i-- > 0 && rc == KEEL_OK;) {
    const tel_handler *th = g_handlers[i];
    for (size_t j = th->nev; j-- > 0 && rc == KEEL_OK;) {
      if (!has_prefix(th->evs[j], prefix, n))
        continue;
      keel_term id = keel_term_copy(h, th->id);
      keel_term t = id ? keel_tuple(h, 2, id, th->evs[j]->name) : KEEL_NONE;
      keel_term c = t ? keel_cons(h, t, acc) : KEEL_NONE;
      if (c == KEEL_NONE)
        rc = KEEL_ENOMEM;
      else
        acc = c;
    }
  }
  pthread_mutex_unlock(&g_mu);
  if (rc == KEEL_OK)
    *out = acc;
  return rc;
}

int keel_tel_measure_get(const keel_tel_measure *m, size_t nm, keel_term key,
                         double *value) {
  for (size_t i = 0; i < nm; i++) {
    if (m[i].key == key) {
      if (value != NULL)
        *value = m[i].value;
      return KEEL_OK;
    }
  }
  return KEEL_ENOENT;
}

int keel_tel_meta_get(const keel_tel_meta *md, size_t nmd, keel_term key,
                      keel_term *value) {
  for (size_t i = 0; i < nmd; i++) {
    if (md[i].key == key ||
        (keel__term_boxed(key) && keel_eq_exact(md[i].key, key))) {
      if (value != NULL)
        *value = md[i].value;
      return KEEL_OK;
    }
  }
  return KEEL_ENOENT;
}
