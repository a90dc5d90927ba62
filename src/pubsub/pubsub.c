/*
 * pubsub.c - pubsub instances, subscriptions and their removal at death.
 *
 * Instances live in a fixed table of KEEL_PUBSUB_MAX slots; a handle is
 * (generation << 8 | slot). A slot's partitions are allocated once and
 * kept, so a stale handle always reaches valid memory: every operation
 * locks its partition and then checks the generation and the open flag
 * under that lock, and stop changes them before it takes (one by one) the
 * write locks to empty the partitions. A slot is reused only once its
 * stop has emptied every partition.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "keel/runtime.h"
#include "keel/signals.h"
#include "pubsub/pubsub_internal.h"

static ps_inst insts[KEEL_PUBSUB_MAX];
static pthread_mutex_t insts_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
static int hook_id = -1;

static keel_term nil_atom(void) {
  return keel_atom("nil");
}

/* ---- handles and partitions ---- */

static ps_inst *inst_of(keel_pubsub ps, uint32_t *gen) {
  uint64_t slot = ps.id & 0xffu;
  *gen = (uint32_t)(ps.id >> 8);
  return slot < KEEL_PUBSUB_MAX && *gen != 0 ? &insts[slot] : NULL;
}

static bool live(ps_inst *in, uint32_t gen) {
  return atomic_load_explicit(&in->gen, memory_order_acquire) == gen &&
         atomic_load_explicit(&in->open, memory_order_acquire);
}

static unsigned part_index(ps_inst *in, uint64_t hash) {
  unsigned n = atomic_load_explicit(&in->nparts, memory_order_relaxed);
  if (n == 0 || n > KEEL_PUBSUB_MAX_PARTITIONS)
    n = 1;
  return (unsigned)((hash >> 40) % n);
}

int ps_enter(keel_pubsub ps, keel_term topic, bool write, ps_ctx *c) {
  uint32_t gen;
  ps_inst *in = inst_of(ps, &gen);
  if (in == NULL || !live(in, gen))
    return KEEL_EBADARG;
  c->inst = in;
  c->hash = keel_hash(topic);
  c->part = &in->parts[part_index(in, c->hash)];
  if (write)
    pthread_rwlock_wrlock(&c->part->lock);
  else
    pthread_rwlock_rdlock(&c->part->lock);
  if (!live(in, gen)) {
    pthread_rwlock_unlock(&c->part->lock);
    return KEEL_EBADARG;
  }
  return KEEL_OK;
}

void ps_exit(ps_ctx *c) {
  pthread_rwlock_unlock(&c->part->lock);
}

ps_topic *ps_topic_find(ps_ctx *c, keel_term topic) {
  for (ps_hnode *e = ps_map_chain(&c->part->topics, c->hash); e != NULL;
       e = e->next) {
    ps_topic *t = (ps_topic *)e;
    if (e->hash == c->hash && keel_eq_exact(t->topic, topic))
      return t;
  }
  return NULL;
}

static ps_proc *proc_find(ps_part *p, keel_term pid) {
  uint64_t h = keel_hash(pid);
  for (ps_hnode *e = ps_map_chain(&p->procs, h); e != NULL; e = e->next)
    if (e->hash == h && ((ps_proc *)e)->pid == pid)
      return (ps_proc *)e;
  return NULL;
}

/* ---- adding and removing subscriptions ---- */

static ps_topic *topic_add(ps_ctx *c, keel_term topic) {
  ps_topic *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->topic = ps_own(&t->own, topic);
  t->node.hash = c->hash;
  if (t->topic == KEEL_NONE || ps_map_add(&c->part->topics, &t->node) != 0) {
    ps_disown(&t->own);
    free(t);
    return NULL;
  }
  return t;
}

static void topic_free(ps_topic *t) {
  ps_disown(&t->own);
  free(t->subs);
  free(t->back);
  free(t);
}

static ps_proc *proc_add(ps_part *p, keel_term pid) {
  ps_proc *r = calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  r->pid = pid;
  r->node.hash = keel_hash(pid);
  if (ps_map_add(&p->procs, &r->node) != KEEL_OK) {
    free(r);
    return NULL;
  }
  atomic_fetch_add_explicit(&p->nprocs, 1, memory_order_relaxed);
  return r;
}

static int topic_reserve(ps_topic *t) {
  if (t->n < t->cap)
    return KEEL_OK;
  size_t cap = t->cap == 0 ? 4 : t->cap * 2;
  keel_pubsub_entry *s = realloc(t->subs, cap * sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  t->subs = s;
  ps_sub **b = realloc(t->back, cap * sizeof(ps_sub *));
  if (b == NULL)
    return KEEL_ENOMEM;
  t->back = b;
  t->cap = cap;
  return KEEL_OK;
}

/* Removes one subscription; frees its topic and process records when
 * they become empty. */
static void sub_remove(ps_part *p, ps_sub *s) {
  ps_topic *t = s->topic;
  size_t last = t->n - 1;
  t->nboxed -= s->val.words != NULL;
  t->nlanes -= s->lane_cls != NULL;
  if (s->lane_cls != NULL)
    s->lane_cls->lane_unref(s->lane);
  t->subs[s->idx] = t->subs[last];
  t->back[s->idx] = t->back[last];
  t->back[s->idx]->idx = s->idx;
  t->n = last;
  ps_proc *r = s->proc;
  if (s->pprev != NULL)
    s->pprev->pnext = s->pnext;
  else
    r->subs = s->pnext;
  if (s->pnext != NULL)
    s->pnext->pprev = s->pprev;
  ps_disown(&s->val);
  free(s);
  if (t->n == 0) {
    ps_map_del(&p->topics, &t->node);
    topic_free(t);
  }
  if (r->subs == NULL) {
    ps_map_del(&p->procs, &r->node);
    atomic_fetch_sub_explicit(&p->nprocs, 1, memory_order_relaxed);
    free(r);
  }
}

static int sub_add(ps_ctx *c, keel_term pid, keel_term topic, keel_term v,
                   ps_sub *s) {
  ps_topic *t = ps_topic_find(c, topic);
  if (t == NULL && (t = topic_add(c, topic)) == NULL)
    return KEEL_ENOMEM;
  ps_proc *r = proc_find(c->part, pid);
  if ((r == NULL && (r = proc_add(c->part, pid)) == NULL) ||
      topic_reserve(t) != KEEL_OK) {
    if (t->n == 0) {
      ps_map_del(&c->part->topics, &t->node);
      topic_free(t);
    }
    return KEEL_ENOMEM;
  }
  s->topic = t;
  s->proc = r;
  s->idx = t->n;
  s->pprev = NULL;
  s->pnext = r->subs;
  if (r->subs != NULL)
    r->subs->pprev = s;
  r->subs = s;
  t->subs[t->n] = (keel_pubsub_entry){.pid = pid, .value = v};
  t->back[t->n++] = s;
  t->nboxed += s->val.words != NULL;
  t->nlanes += s->lane_cls != NULL;
  return KEEL_OK;
}

static int subscribe(keel_pubsub ps, keel_term topic, keel_term value,
                     const keel_pubsub_lane_class *cls, void *lane) {
  keel_proc *self = keel_current();
  if (self == NULL)
    return KEEL_ESTATE;
  if (topic == KEEL_NONE)
    return KEEL_EINVAL;
  keel_term pid = keel_self(self);
  int rc = ps_arm(pid);
  if (rc != KEEL_OK)
    return rc;
  ps_sub *s = calloc(1, sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  keel_term v = ps_own(&s->val, value == KEEL_NONE ? nil_atom() : value);
  if (v == KEEL_NONE) {
    free(s);
    return KEEL_ENOMEM;
  }
  s->lane_cls = cls;
  s->lane = lane;
  if (cls != NULL)
    cls->lane_ref(lane); /* dropped by sub_remove, or below */
  ps_ctx c;
  if ((rc = ps_enter(ps, topic, true, &c)) == KEEL_OK) {
    rc = sub_add(&c, pid, topic, v, s);
    ps_exit(&c);
  }
  if (rc != KEEL_OK) {
    if (cls != NULL)
      cls->lane_unref(lane);
    ps_disown(&s->val);
    free(s);
  }
  return rc;
}

int keel_pubsub_subscribe(keel_pubsub ps, keel_term topic, keel_term value) {
  return subscribe(ps, topic, value, NULL, NULL);
}

int keel_pubsub_subscribe_lane(keel_pubsub ps, keel_term topic,
                               const keel_pubsub_lane_class *cls, void *lane) {
  if (cls == NULL || lane == NULL || cls->encode == NULL ||
      cls->deliver == NULL || cls->payload_free == NULL ||
      cls->lane_ref == NULL || cls->lane_unref == NULL)
    return KEEL_EINVAL;
  return subscribe(ps, topic, keel_atom("lane"), cls, lane);
}

int keel_pubsub_unsubscribe(keel_pubsub ps, keel_term topic) {
  keel_proc *self = keel_current();
  if (self == NULL)
    return KEEL_ESTATE;
  if (topic == KEEL_NONE)
    return KEEL_EINVAL;
  keel_term pid = keel_self(self);
  ps_ctx c;
  int rc = ps_enter(ps, topic, true, &c);
  if (rc != KEEL_OK)
    return rc;
  ps_topic *t = ps_topic_find(&c, topic);
  ps_proc *r = t != NULL ? proc_find(c.part, pid) : NULL;
  /* sub_remove frees r with its last subscription, which is the last
   * one visited; it frees t with t's last, and no later s points to t. */
  for (ps_sub *s = r != NULL ? r->subs : NULL, *nx; s != NULL; s = nx) {
    nx = s->pnext;
    if (s->topic == t)
      sub_remove(c.part, s);
  }
  ps_exit(&c);
  return KEEL_OK;
}

/* ---- reads ---- */

int64_t keel_pubsub_count(keel_pubsub ps, keel_term topic) {
  if (topic == KEEL_NONE)
    return KEEL_EINVAL;
  ps_ctx c;
  int rc = ps_enter(ps, topic, false, &c);
  if (rc != KEEL_OK)
    return rc;
  ps_topic *t = ps_topic_find(&c, topic);
  int64_t n = t != NULL ? (int64_t)t->n : 0;
  ps_exit(&c);
  return n;
}

int keel_pubsub_subscribers(keel_pubsub ps, keel_term topic, keel_heap *h,
                            keel_term *out) {
  if (topic == KEEL_NONE || h == NULL || out == NULL)
    return KEEL_EINVAL;
  ps_ctx c;
  int rc = ps_enter(ps, topic, false, &c);
  if (rc != KEEL_OK)
    return rc;
  ps_topic *t = ps_topic_find(&c, topic);
  keel_term l = KEEL_NIL;
  for (size_t i = 0; t != NULL && i < t->n && l != KEEL_NONE; i++) {
    keel_term v = keel_term_copy(h, t->subs[i].value);
    keel_term e =
        v != KEEL_NONE ? keel_tuple(h, 2, t->subs[i].pid, v) : KEEL_NONE;
    l = e != KEEL_NONE ? keel_cons(h, e, l) : KEEL_NONE;
  }
  ps_exit(&c);
  if (l == KEEL_NONE)
    return KEEL_ENOMEM;
  *out = l;
  return KEEL_OK;
}

/* ---- death ---- */

static void part_drop_pid(ps_part *p, keel_term pid) {
  for (ps_proc *r; (r = proc_find(p, pid)) != NULL;)
    sub_remove(p, r->subs);
}

static void on_exit_hook(keel_term pid, keel_term reason, void *arg) {
  (void)reason;
  (void)arg;
  for (unsigned i = 0; i < KEEL_PUBSUB_MAX; i++) {
    ps_inst *in = &insts[i];
    if (!atomic_load_explicit(&in->open, memory_order_acquire))
      continue;
    uint32_t gen = atomic_load_explicit(&in->gen, memory_order_acquire);
    unsigned n = atomic_load_explicit(&in->nparts, memory_order_relaxed);
    for (unsigned k = 0; k < n && k < KEEL_PUBSUB_MAX_PARTITIONS; k++) {
      ps_part *p = &in->parts[k];
      if (atomic_load_explicit(&p->nprocs, memory_order_relaxed) == 0)
        continue;
      pthread_rwlock_wrlock(&p->lock);
      if (live(in, gen))
        part_drop_pid(p, pid);
      pthread_rwlock_unlock(&p->lock);
    }
  }
  ps_presence_on_death(pid);
}

static void hook_init(void) {
  hook_id = keel_exit_hook_add(on_exit_hook, NULL);
}

int ps_arm(keel_term pid) {
  pthread_once(&hook_once, hook_init);
  if (hook_id < 0)
    return KEEL_ESYSLIMIT;
  return keel_exit_hook_arm(pid, hook_id);
}

/* ---- instances ---- */

static int parts_init(ps_inst *in) {
  if (in->parts != NULL)
    return KEEL_OK;
  ps_part *p = aligned_alloc(64, KEEL_PUBSUB_MAX_PARTITIONS * sizeof *p);
  if (p == NULL)
    return KEEL_ENOMEM;
  memset(p, 0, KEEL_PUBSUB_MAX_PARTITIONS * sizeof *p);
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  pthread_rwlockattr_setkind_np(&a,
                                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  for (unsigned i = 0; i < KEEL_PUBSUB_MAX_PARTITIONS; i++)
    pthread_rwlock_init(&p[i].lock, &a);
  pthread_rwlockattr_destroy(&a);
  in->parts = p;
  return KEEL_OK;
}

static ps_inst *by_name_locked(keel_term name) {
  for (unsigned i = 0; i < KEEL_PUBSUB_MAX; i++)
    if (insts[i].used && insts[i].name == name && atomic_load(&insts[i].open))
      return &insts[i];
  return NULL;
}

static keel_pubsub handle_of(ps_inst *in) {
  return (keel_pubsub){((uint64_t)atomic_load(&in->gen) << 8) |
                       (uint64_t)(in - insts)};
}

static int check_opts(const keel_pubsub_opts *o) {
  if (o->partitions > KEEL_PUBSUB_MAX_PARTITIONS ||
      o->lane_writers > KEEL_PUBSUB_MAX_LANE_WRITERS ||
      (o->name != KEEL_NONE && !keel_is_atom(o->name)))
    return KEEL_EINVAL;
  return KEEL_OK;
}

static ps_inst *slot_take_locked(const keel_pubsub_opts *o, int *rc) {
  if (o->name != KEEL_NONE && by_name_locked(o->name) != NULL) {
    *rc = KEEL_EEXIST;
    return NULL;
  }
  for (unsigned i = 0; i < KEEL_PUBSUB_MAX; i++) {
    ps_inst *in = &insts[i];
    if (in->used)
      continue;
    if ((*rc = parts_init(in)) != KEEL_OK)
      return NULL;
    in->used = true;
    return in;
  }
  *rc = KEEL_ESYSLIMIT;
  return NULL;
}

int keel_pubsub_start(const keel_pubsub_opts *opts, keel_pubsub *out) {
  static const keel_pubsub_opts dflt = {.name = KEEL_NONE};
  const keel_pubsub_opts *o = opts != NULL ? opts : &dflt;
  if (out == NULL || check_opts(o) != KEEL_OK)
    return KEEL_EINVAL;
  pthread_once(&hook_once, hook_init);
  if (hook_id < 0)
    return KEEL_ESYSLIMIT;
  ps_writers *w = NULL;
  int rc = ps_writers_start(o->lane_writers, &w);
  if (rc != KEEL_OK)
    return rc;
  pthread_mutex_lock(&insts_mu);
  ps_inst *in = slot_take_locked(o, &rc);
  if (in != NULL) {
    in->writers = w;
    in->name = o->name;
    in->has_adapter = o->adapter != NULL;
    in->adapter = o->adapter != NULL ? *o->adapter : (keel_pubsub_adapter){0};
    atomic_store(&in->nparts, o->partitions != 0
                                  ? o->partitions
                                  : KEEL_PUBSUB_DEFAULT_PARTITIONS);
    uint32_t g = atomic_load(&in->gen) + 1;
    atomic_store(&in->gen, g != 0 ? g : 1);
    atomic_store_explicit(&in->open, true, memory_order_release);
    *out = handle_of(in);
  }
  pthread_mutex_unlock(&insts_mu);
  if (in == NULL)
    ps_writers_stop(w);
  return rc;
}

static void part_clear(ps_part *p) {
  for (size_t i = 0; i < p->procs.nb; i++)
    while (p->procs.b[i] != NULL)
      part_drop_pid(p, ((ps_proc *)p->procs.b[i])->pid);
  ps_map_free(&p->procs);
  ps_map_free(&p->topics);
}

int keel_pubsub_stop(keel_pubsub ps) {
  uint32_t gen;
  ps_inst *in = inst_of(ps, &gen);
  if (in == NULL)
    return KEEL_EBADARG;
  pthread_mutex_lock(&insts_mu);
  if (!live(in, gen)) {
    pthread_mutex_unlock(&insts_mu);
    return KEEL_EBADARG;
  }
  atomic_store_explicit(&in->open, false, memory_order_release);
  pthread_mutex_unlock(&insts_mu);
  unsigned n = atomic_load(&in->nparts);
  for (unsigned k = 0; k < n; k++) {
    pthread_rwlock_wrlock(&in->parts[k].lock);
    part_clear(&in->parts[k]);
    pthread_rwlock_unlock(&in->parts[k].lock);
  }
  /* No new broadcast gets the writers now; wait for those using them. */
  while (atomic_load_explicit(&in->busy, memory_order_acquire) > 0)
    sched_yield();
  ps_writers_stop(in->writers);
  in->writers = NULL;
  pthread_mutex_lock(&insts_mu);
  in->used = false;
  in->name = KEEL_NONE;
  pthread_mutex_unlock(&insts_mu);
  return KEEL_OK;
}

int keel_pubsub_whereis(keel_term name, keel_pubsub *out) {
  if (out == NULL || !keel_is_atom(name))
    return KEEL_EINVAL;
  pthread_mutex_lock(&insts_mu);
  ps_inst *in = by_name_locked(name);
  if (in != NULL)
    *out = handle_of(in);
  pthread_mutex_unlock(&insts_mu);
  return in != NULL ? KEEL_OK : KEEL_ENOENT;
}

ps_writers *ps_writers_get(const ps_ctx *c) {
  ps_writers *w = c->inst->writers;
  if (w != NULL)
    atomic_fetch_add_explicit(&c->inst->busy, 1, memory_order_acquire);
  return w;
}

void ps_writers_put(keel_pubsub ps, ps_writers *w) {
  uint32_t gen;
  ps_inst *in = inst_of(ps, &gen);
  if (w != NULL && in != NULL)
    atomic_fetch_sub_explicit(&in->busy, 1, memory_order_release);
}

/* Copies the adapter of c's live instance (the caller holds c's lock, so
 * no restart can rewrite it meanwhile). */
bool ps_adapter(const ps_ctx *c, keel_pubsub_adapter *out) {
  *out = c->inst->adapter;
  return c->inst->has_adapter;
}
