/*
 * presence.c - Phoenix.Presence on one node.
 *
 * An instance is a slot of a fixed table (handle: generation << 8 | slot)
 * with one reader-writer lock. Presences are entries linked twice: into
 * their topic's list (list, get_by_key) and into their pid's list (death,
 * untrack_all); topics and pids are found through hash maps. Writers hold
 * the write lock while they change the entries and queue the diff; one
 * drainer at a time broadcasts the queue with no lock held, so diffs
 * leave in the order of the changes. Stale handles are caught by
 * checking the generation under the lock, as pubsub does.
 */
#include <stdlib.h>
#include <string.h>

#include "keel/clock.h"
#include "keel/presence.h"
#include "keel/runtime.h"
#include "pubsub/pubsub_internal.h"

typedef struct pr_entry pr_entry;

typedef struct pr_topic {
  ps_hnode node;
  keel_term topic;
  ps_owned own;
  pr_entry *head;
} pr_topic;

typedef struct pr_proc {
  ps_hnode node;
  keel_term pid;
  pr_entry *head;
} pr_proc;

struct pr_entry {
  pr_topic *topic;
  pr_proc *proc;
  pr_entry *tnext, *tprev, *pnext, *pprev;
  keel_term key, meta; /* in own: the copy of {Key, Meta} */
  ps_owned own;
};

/* A diff waiting to be broadcast, in its own heap. */
typedef struct pr_diff {
  struct pr_diff *next;
  keel_pubsub pubsub;
  keel_term topic, msg;
  keel_heap h;
} pr_diff;

typedef struct pr_inst {
  /* Diffs in the order of the changes, queued under the write lock and
   * broadcast by one drainer at a time with no lock held (a send may
   * switch a fiber out). */
  pr_diff *qhead, **qtail;
  _Atomic size_t nprocs;
  /* Tracks between arming the exit hook and inserting: while it is not
   * 0 the hook must not skip this instance on nprocs == 0. */
  _Atomic size_t arming;
  keel_pubsub pubsub;
  ps_map topics, procs;
  pthread_mutex_t qmu;
  pthread_rwlock_t lock;
  _Atomic uint32_t gen;
  _Atomic bool draining;
  _Atomic bool open;
  bool used; /* under slots_mu */
} pr_inst;

static pr_inst slots[KEEL_PRESENCE_MAX];
static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t ref_counter;

static void slots_init(void) {
  for (unsigned i = 0; i < KEEL_PRESENCE_MAX; i++) {
    pthread_rwlock_init(&slots[i].lock, NULL);
    pthread_mutex_init(&slots[i].qmu, NULL);
    slots[i].qtail = &slots[i].qhead;
  }
  atomic_store(&ref_counter, keel_monotonic_ns() << 8);
}

/* ---- handles ---- */

static bool live(pr_inst *in, uint32_t gen) {
  return atomic_load_explicit(&in->gen, memory_order_acquire) == gen &&
         atomic_load_explicit(&in->open, memory_order_acquire);
}

static pr_inst *enter(keel_presence pr, bool write) {
  uint64_t slot = pr.id & 0xffu;
  uint32_t gen = (uint32_t)(pr.id >> 8);
  if (slot >= KEEL_PRESENCE_MAX || gen == 0)
    return NULL;
  pthread_once(&slots_once, slots_init);
  pr_inst *in = &slots[slot];
  if (write)
    pthread_rwlock_wrlock(&in->lock);
  else
    pthread_rwlock_rdlock(&in->lock);
  if (!live(in, gen)) {
    pthread_rwlock_unlock(&in->lock);
    return NULL;
  }
  return in;
}

static void leave_lock(pr_inst *in) {
  pthread_rwlock_unlock(&in->lock);
}

/* ---- lookups ---- */

static pr_topic *topic_find(pr_inst *in, keel_term topic) {
  uint64_t h = keel_hash(topic);
  for (ps_hnode *e = ps_map_chain(&in->topics, h); e != NULL; e = e->next)
    if (e->hash == h && keel_eq_exact(((pr_topic *)e)->topic, topic))
      return (pr_topic *)e;
  return NULL;
}

static pr_proc *proc_find(pr_inst *in, keel_term pid) {
  uint64_t h = keel_hash(pid);
  for (ps_hnode *e = ps_map_chain(&in->procs, h); e != NULL; e = e->next)
    if (e->hash == h && ((pr_proc *)e)->pid == pid)
      return (pr_proc *)e;
  return NULL;
}

static pr_entry *entry_find(pr_inst *in, keel_term pid, keel_term topic,
                            keel_term key) {
  pr_proc *p = proc_find(in, pid);
  for (pr_entry *e = p != NULL ? p->head : NULL; e != NULL; e = e->pnext)
    if (keel_eq_exact(e->topic->topic, topic) && keel_eq_exact(e->key, key))
      return e;
  return NULL;
}

/* ---- entries ---- */

static pr_topic *topic_get(pr_inst *in, keel_term topic) {
  pr_topic *t = topic_find(in, topic);
  if (t != NULL)
    return t;
  if ((t = calloc(1, sizeof *t)) == NULL)
    return NULL;
  t->topic = ps_own(&t->own, topic);
  t->node.hash = keel_hash(topic);
  if (t->topic == KEEL_NONE || ps_map_add(&in->topics, &t->node) != 0) {
    ps_disown(&t->own);
    free(t);
    return NULL;
  }
  return t;
}

static pr_proc *proc_get(pr_inst *in, keel_term pid) {
  pr_proc *p = proc_find(in, pid);
  if (p != NULL)
    return p;
  if ((p = calloc(1, sizeof *p)) == NULL)
    return NULL;
  p->pid = pid;
  p->node.hash = keel_hash(pid);
  if (ps_map_add(&in->procs, &p->node) != KEEL_OK) {
    free(p);
    return NULL;
  }
  atomic_fetch_add_explicit(&in->nprocs, 1, memory_order_relaxed);
  return p;
}

static void prune(pr_inst *in, pr_topic *t, pr_proc *p) {
  if (t != NULL && t->head == NULL) {
    ps_map_del(&in->topics, &t->node);
    ps_disown(&t->own);
    free(t);
  }
  if (p != NULL && p->head == NULL) {
    ps_map_del(&in->procs, &p->node);
    atomic_fetch_sub_explicit(&in->nprocs, 1, memory_order_relaxed);
    free(p);
  }
}

static void entry_unlink(pr_inst *in, pr_entry *e) {
  if (e->tprev != NULL)
    e->tprev->tnext = e->tnext;
  else
    e->topic->head = e->tnext;
  if (e->tnext != NULL)
    e->tnext->tprev = e->tprev;
  if (e->pprev != NULL)
    e->pprev->pnext = e->pnext;
  else
    e->proc->head = e->pnext;
  if (e->pnext != NULL)
    e->pnext->pprev = e->pprev;
  pr_topic *t = e->topic;
  pr_proc *p = e->proc;
  ps_disown(&e->own);
  free(e);
  prune(in, t, p);
}

/* A new phx_ref: a url-safe base64 text of a process-wide unique number. */
static keel_term new_ref(keel_heap *h) {
  static const char al[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint64_t v = atomic_fetch_add(&ref_counter, 1);
  char s[11];
  for (int i = 10; i >= 0; i--, v >>= 6)
    s[i] = al[v & 63];
  return keel_binary(h, s, sizeof s);
}

/* The stored meta: meta with phx_ref (and phx_ref_prev), built in h. */
static keel_term stamp(keel_heap *h, keel_term meta, keel_term prev,
                       keel_term *ref) {
  *ref = new_ref(h);
  keel_term m = meta == KEEL_NONE ? keel_map_new(h) : meta;
  if (*ref == KEEL_NONE || m == KEEL_NONE)
    return KEEL_NONE;
  m = keel_map_put(h, m, keel_atom("phx_ref"), *ref);
  if (m != KEEL_NONE && prev != KEEL_NONE)
    m = keel_map_put(h, m, keel_atom("phx_ref_prev"), prev);
  return m;
}

static int entry_add(pr_inst *in, keel_term pid, keel_term topic, keel_term key,
                     keel_term meta) {
  pr_entry *e = calloc(1, sizeof *e);
  if (e == NULL)
    return KEEL_ENOMEM;
  keel_heap h;
  keel_heap_init(&h);
  keel_term kv = ps_own(&e->own, keel_tuple(&h, 2, key, meta));
  keel_heap_destroy(&h);
  pr_topic *t = kv != KEEL_NONE ? topic_get(in, topic) : NULL;
  pr_proc *p = t != NULL ? proc_get(in, pid) : NULL;
  if (p == NULL) {
    prune(in, t, NULL);
    ps_disown(&e->own);
    free(e);
    return KEEL_ENOMEM;
  }
  e->key = keel_tuple_get(kv, 0);
  e->meta = keel_tuple_get(kv, 1);
  e->topic = t;
  e->proc = p;
  e->tnext = t->head;
  if (t->head != NULL)
    t->head->tprev = e;
  t->head = e;
  e->pnext = p->head;
  if (p->head != NULL)
    p->head->pprev = e;
  p->head = e;
  return KEEL_OK;
}

/* ---- diffs ---- */

/* Adds meta to the list under key in *map (built in h). */
static void map_push(keel_heap *h, keel_term *map, keel_term key,
                     keel_term meta) {
  keel_term old;
  if (*map == KEEL_NONE)
    return;
  if (keel_map_get(*map, key, &old) != KEEL_OK)
    old = KEEL_NIL;
  keel_term l = keel_cons(h, meta, old);
  *map = l != KEEL_NONE ? keel_map_put(h, *map, key, l) : KEEL_NONE;
}

/* Queues the diff {presence_diff, Topic, Joins, Leaves} (copied). */
static void send_diff(pr_inst *in, keel_heap *h, keel_term topic,
                      keel_term joins, keel_term leaves) {
  if (joins == KEEL_NONE || leaves == KEEL_NONE)
    return;
  keel_term m =
      keel_tuple(h, 4, keel_atom("presence_diff"), topic, joins, leaves);
  pr_diff *d = m != KEEL_NONE ? malloc(sizeof *d) : NULL;
  if (d == NULL)
    return;
  keel_heap_init(&d->h);
  d->msg = keel_term_copy(&d->h, m);
  d->topic = keel_tuple_get(d->msg, 1);
  d->pubsub = in->pubsub;
  d->next = NULL;
  pthread_mutex_lock(&in->qmu);
  *in->qtail = d;
  in->qtail = &d->next;
  pthread_mutex_unlock(&in->qmu);
}

static pr_diff *pop_diff(pr_inst *in) {
  pthread_mutex_lock(&in->qmu);
  pr_diff *d = in->qhead;
  if (d != NULL && (in->qhead = d->next) == NULL)
    in->qtail = &in->qhead;
  pthread_mutex_unlock(&in->qmu);
  return d;
}

/* Broadcasts the queued diffs in order, unless another thread is doing
 * it (it will see ours). Called with no lock held. */
static void drain(pr_inst *in) {
  for (;;) {
    if (atomic_exchange(&in->draining, true))
      return;
    for (pr_diff *d; (d = pop_diff(in)) != NULL;) {
      (void)keel_pubsub_local_broadcast(d->pubsub, d->topic, d->msg, NULL);
      keel_heap_destroy(&d->h);
      free(d);
    }
    atomic_store(&in->draining, false);
    pthread_mutex_lock(&in->qmu);
    bool empty = in->qhead == NULL;
    pthread_mutex_unlock(&in->qmu);
    if (empty)
      return;
  }
}

/* ---- API ---- */

static int check_args(keel_term pid, keel_term topic, keel_term key,
                      keel_term meta) {
  if (topic == KEEL_NONE || key == KEEL_NONE)
    return KEEL_EINVAL;
  if (!keel_is_local_pid(pid) || (meta != KEEL_NONE && !keel_is_map(meta)))
    return KEEL_EBADARG;
  return KEEL_OK;
}

static int put_ref(keel_term ref, keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_OK;
  *out = keel_term_copy(h, ref);
  return *out != KEEL_NONE ? KEEL_OK : KEEL_ENOMEM;
}

int keel_presence_track(keel_presence pr, keel_term pid, keel_term topic,
                        keel_term key, keel_term meta, keel_heap *h,
                        keel_term *ref) {
  int rc = check_args(pid, topic, key, meta);
  if (rc != KEEL_OK)
    return rc;
  pr_inst *in = enter(pr, true);
  if (in == NULL)
    return KEEL_EBADARG;
  keel_heap th;
  keel_heap_init(&th);
  keel_term r = KEEL_NONE;
  keel_term m = stamp(&th, meta, KEEL_NONE, &r);
  if (entry_find(in, pid, topic, key) != NULL)
    rc = KEEL_EEXIST;
  else if (m == KEEL_NONE)
    rc = KEEL_ENOMEM;
  /* Armed under the write lock: the hook of a death after this waits for
   * the lock and so finds the entry. */
  else {
    atomic_fetch_add(&in->arming, 1);
    if ((rc = ps_arm(pid)) == KEEL_OK &&
        (rc = entry_add(in, pid, topic, key, m)) == KEEL_OK) {
      keel_term joins = keel_map_new(&th);
      map_push(&th, &joins, key, m);
      send_diff(in, &th, topic, joins, keel_map_new(&th));
    }
    atomic_fetch_sub(&in->arming, 1);
  }
  leave_lock(in);
  drain(in);
  if (rc == KEEL_OK)
    rc = put_ref(r, h, ref);
  keel_heap_destroy(&th);
  return rc;
}

int keel_presence_update(keel_presence pr, keel_term pid, keel_term topic,
                         keel_term key, keel_term meta, keel_heap *h,
                         keel_term *ref) {
  int rc = check_args(pid, topic, key, meta);
  if (rc != KEEL_OK)
    return rc;
  pr_inst *in = enter(pr, true);
  if (in == NULL)
    return KEEL_EBADARG;
  keel_heap th;
  keel_heap_init(&th);
  keel_term r = KEEL_NONE;
  pr_entry *e = entry_find(in, pid, topic, key);
  if (e == NULL) {
    rc = KEEL_ENOENT;
  } else {
    keel_term prev = KEEL_NONE, old = keel_term_copy(&th, e->meta);
    (void)keel_map_get(e->meta, keel_atom("phx_ref"), &prev);
    keel_term m = stamp(&th, meta, keel_term_copy(&th, prev), &r);
    keel_term joins = keel_map_new(&th), leaves = keel_map_new(&th);
    rc = m != KEEL_NONE && old != KEEL_NONE ? KEEL_OK : KEEL_ENOMEM;
    if (rc == KEEL_OK)
      rc = entry_add(in, pid, topic, key, m);
    if (rc == KEEL_OK) {
      entry_unlink(in, e);
      map_push(&th, &joins, key, m);
      map_push(&th, &leaves, key, old);
      send_diff(in, &th, topic, joins, leaves);
    }
  }
  leave_lock(in);
  drain(in);
  if (rc == KEEL_OK)
    rc = put_ref(r, h, ref);
  keel_heap_destroy(&th);
  return rc;
}

/* Removes pid's entries on the topic of its first entry (or the one
 * matching key when key is not KEEL_NONE), broadcasting one diff. Returns
 * false when pid has none left to remove. */
static bool drop_one_topic(pr_inst *in, pr_proc *p, keel_term key) {
  pr_entry *first = p->head;
  while (first != NULL && key != KEEL_NONE && !keel_eq_exact(first->key, key))
    first = first->pnext;
  if (first == NULL)
    return false;
  keel_heap h;
  keel_heap_init(&h);
  pr_topic *t = first->topic;
  keel_term topic = keel_term_copy(&h, t->topic);
  keel_term leaves = keel_map_new(&h);
  bool last = false;
  for (pr_entry *e = p->head, *nx; e != NULL && !last; e = nx) {
    nx = e->pnext;
    if (e->topic != t || (key != KEEL_NONE && !keel_eq_exact(e->key, key)))
      continue;
    map_push(&h, &leaves, keel_term_copy(&h, e->key),
             keel_term_copy(&h, e->meta));
    last = p->head == e && nx == NULL; /* unlink frees p with it */
    entry_unlink(in, e);
  }
  send_diff(in, &h, topic, keel_map_new(&h), leaves);
  keel_heap_destroy(&h);
  return !last;
}

int keel_presence_untrack(keel_presence pr, keel_term pid, keel_term topic,
                          keel_term key) {
  int rc = check_args(pid, topic, key, KEEL_NONE);
  if (rc != KEEL_OK)
    return rc;
  pr_inst *in = enter(pr, true);
  if (in == NULL)
    return KEEL_EBADARG;
  pr_entry *e = entry_find(in, pid, topic, key);
  if (e != NULL) {
    keel_heap h;
    keel_heap_init(&h);
    keel_term t = keel_term_copy(&h, topic);
    keel_term leaves = keel_map_new(&h);
    map_push(&h, &leaves, keel_term_copy(&h, e->key),
             keel_term_copy(&h, e->meta));
    entry_unlink(in, e);
    send_diff(in, &h, t, keel_map_new(&h), leaves);
    keel_heap_destroy(&h);
  }
  leave_lock(in);
  drain(in);
  return KEEL_OK;
}

static void drop_pid_locked(pr_inst *in, keel_term pid) {
  pr_proc *p;
  while ((p = proc_find(in, pid)) != NULL && drop_one_topic(in, p, KEEL_NONE))
    ;
}

int keel_presence_untrack_all(keel_presence pr, keel_term pid) {
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  pr_inst *in = enter(pr, true);
  if (in == NULL)
    return KEEL_EBADARG;
  drop_pid_locked(in, pid);
  leave_lock(in);
  drain(in);
  return KEEL_OK;
}

void ps_presence_on_death(keel_term pid) {
  pthread_once(&slots_once, slots_init);
  for (unsigned i = 0; i < KEEL_PRESENCE_MAX; i++) {
    pr_inst *in = &slots[i];
    /* A track that armed the hook counts in arming until its entry is in
     * (and in nprocs): arming is read first, so a track this death
     * could miss is seen in one or the other. */
    if (!atomic_load(&in->open) ||
        (atomic_load(&in->arming) == 0 && atomic_load(&in->nprocs) == 0))
      continue;
    pthread_rwlock_wrlock(&in->lock);
    if (atomic_load(&in->open))
      drop_pid_locked(in, pid);
    pthread_rwlock_unlock(&in->lock);
    drain(in);
  }
}

int keel_presence_list(keel_presence pr, keel_term topic, keel_heap *h,
                       keel_term *out) {
  if (topic == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  pr_inst *in = enter(pr, false);
  if (in == NULL)
    return KEEL_EBADARG;
  pr_topic *t = topic_find(in, topic);
  keel_term map = keel_map_new(h);
  for (pr_entry *e = t != NULL ? t->head : NULL; e != NULL; e = e->tnext)
    map_push(h, &map, keel_term_copy(h, e->key), keel_term_copy(h, e->meta));
  leave_lock(in);
  if (map == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = map;
  return KEEL_OK;
}

int keel_presence_get_by_key(keel_presence pr, keel_term topic, keel_term key,
                             keel_heap *h, keel_term *out) {
  if (topic == KEEL_NONE || key == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  pr_inst *in = enter(pr, false);
  if (in == NULL)
    return KEEL_EBADARG;
  pr_topic *t = topic_find(in, topic);
  keel_term l = KEEL_NIL;
  for (pr_entry *e = t != NULL ? t->head : NULL; e != NULL && l != KEEL_NONE;
       e = e->tnext)
    if (keel_eq_exact(e->key, key))
      l = keel_cons(h, keel_term_copy(h, e->meta), l);
  leave_lock(in);
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = l;
  return KEEL_OK;
}

/* ---- instances ---- */

int keel_presence_start(keel_pubsub pubsub, keel_presence *out) {
  if (out == NULL)
    return KEEL_EINVAL;
  if (keel_pubsub_count(pubsub, KEEL_NIL) < 0)
    return KEEL_EBADARG;
  pthread_once(&slots_once, slots_init);
  pthread_mutex_lock(&slots_mu);
  pr_inst *in = NULL;
  for (unsigned i = 0; i < KEEL_PRESENCE_MAX && in == NULL; i++)
    if (!slots[i].used)
      in = &slots[i];
  if (in != NULL) {
    in->used = true;
    pthread_rwlock_wrlock(&in->lock);
    in->pubsub = pubsub;
    uint32_t g = atomic_load(&in->gen) + 1;
    atomic_store(&in->gen, g != 0 ? g : 1);
    atomic_store(&in->open, true);
    out->id = ((uint64_t)atomic_load(&in->gen) << 8) | (uint64_t)(in - slots);
    pthread_rwlock_unlock(&in->lock);
  }
  pthread_mutex_unlock(&slots_mu);
  return in != NULL ? KEEL_OK : KEEL_ESYSLIMIT;
}

int keel_presence_stop(keel_presence pr) {
  pr_inst *in = enter(pr, true);
  if (in == NULL)
    return KEEL_EBADARG;
  atomic_store(&in->open, false);
  for (size_t i = 0; i < in->procs.nb; i++)
    while (in->procs.b[i] != NULL) {
      keel_term pid = ((pr_proc *)in->procs.b[i])->pid;
      for (pr_proc *p; (p = proc_find(in, pid)) != NULL;)
        entry_unlink(in, p->head);
    }
  ps_map_free(&in->procs);
  ps_map_free(&in->topics);
  for (pr_diff *d; (d = pop_diff(in)) != NULL;) {
    keel_heap_destroy(&d->h);
    free(d);
  }
  pthread_rwlock_unlock(&in->lock);
  pthread_mutex_lock(&slots_mu);
  in->used = false;
  pthread_mutex_unlock(&slots_mu);
  return KEEL_OK;
}
