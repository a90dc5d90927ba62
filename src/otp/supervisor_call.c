/*
 * supervisor_call.c - the callers' side of supervisors: building a
 * supervisor description, starting it and waiting for its start, and the
 * synchronous requests of keel/supervisor.h (from fibers directly, from
 * plain threads through a proxy fiber).
 */
#include <stdlib.h>
#include <string.h>

#include "keel/signals.h"
#include "keel/sim.h"
#include "otp/supervisor_internal.h"

/* ---- descriptions ------------------------------------------------------- */

keel__sup *keel__sup_new(bool dynamic) {
  keel__sup *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->dynamic = dynamic;
  keel_heap_init(&s->xh);
  s->extra = KEEL_NIL;
  s->name = KEEL_NONE;
  s->parent = KEEL_NONE;
  s->ack_alias = KEEL_NONE;
  s->self = KEEL_NONE;
  s->next_key = 1;
  return s;
}

static void child_free(keel__sup_child *c) {
  keel_heap_destroy(&c->idh);
  free(c);
}

void keel__sup_free(keel__sup *s) {
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->n; i++)
    child_free(s->kids[i]);
  free(s->kids);
  free(s->times);
  keel_heap_destroy(&s->xh);
  free(s);
}

int keel__sup_check_child(const keel_sup_child_spec *cs,
                          keel_sup_auto_shutdown auto_shutdown) {
  if (cs == NULL || cs->start == NULL || cs->id == KEEL_NONE)
    return KEEL_EINVAL;
  if ((unsigned)cs->restart > KEEL_SUP_TEMPORARY ||
      (unsigned)cs->type > KEEL_SUP_SUPERVISOR)
    return KEEL_EINVAL;
  if (cs->shutdown < 0 && cs->shutdown != KEEL_INFINITY &&
      cs->shutdown != KEEL_SUP_BRUTAL_KILL)
    return KEEL_EINVAL;
  if (cs->shutdown > (int64_t)KEEL_TIMER_MAX_MS)
    return KEEL_EINVAL;
  if (cs->significant && (cs->restart == KEEL_SUP_PERMANENT ||
                          auto_shutdown == KEEL_SUP_AUTO_NEVER))
    return KEEL_EINVAL;
  return KEEL_OK;
}

int keel__sup_add_spec(keel__sup *s, const keel_sup_child_spec *cs) {
  if (s->n == s->cap) {
    size_t cap = s->cap != 0 ? s->cap * 2 : 8;
    keel__sup_child **k = realloc(s->kids, cap * sizeof(keel__sup_child *));
    if (k == NULL)
      return KEEL_ENOMEM;
    s->kids = k;
    s->cap = cap;
  }
  keel__sup_child *c = calloc(1, sizeof *c);
  if (c == NULL)
    return KEEL_ENOMEM;
  keel_heap_init(&c->idh);
  c->id = keel_term_copy(&c->idh, cs->id);
  if (c->id == KEEL_NONE) {
    child_free(c);
    return KEEL_ENOMEM;
  }
  c->key = s->next_key++;
  c->start = cs->start;
  c->arg = cs->arg;
  c->restart = cs->restart;
  c->type = cs->type;
  c->significant = cs->significant;
  c->shutdown = cs->shutdown;
  if (c->shutdown == KEEL_SUP_SHUTDOWN_DEFAULT)
    c->shutdown = cs->type == KEEL_SUP_SUPERVISOR ? KEEL_INFINITY : 5000;
  c->pid = KEEL_NONE;
  s->kids[s->n++] = c;
  return KEEL_OK;
}

/* ---- child specs as terms ---------------------------------------------- */

keel_term keel__sup_spec_term(keel_heap *h, const keel_sup_child_spec *cs) {
  uint64_t fn = 0;
  memcpy(&fn, &cs->start, sizeof cs->start);
  uint64_t arg = (uint64_t)(uintptr_t)cs->arg;
  return keel_tuple(h, 7, cs->id, keel_uint(h, fn), keel_uint(h, arg),
                    keel_small(cs->restart), keel_int(h, cs->shutdown),
                    keel_small(cs->type),
                    cs->significant ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE));
}

int keel__sup_spec_of(keel_term t, keel_sup_child_spec *cs) {
  if (!keel_is_tuple(t) || keel_tuple_arity(t) != 7)
    return KEEL_EINVAL;
  uint64_t fn, arg;
  int64_t sd;
  if (keel_get_uint64(keel_tuple_get(t, 1), &fn) != KEEL_OK ||
      keel_get_uint64(keel_tuple_get(t, 2), &arg) != KEEL_OK ||
      keel_get_int64(keel_tuple_get(t, 4), &sd) != KEEL_OK)
    return KEEL_EINVAL;
  memset(cs, 0, sizeof *cs);
  cs->id = keel_tuple_get(t, 0);
  memcpy(&cs->start, &fn, sizeof cs->start);
  cs->arg = (void *)(uintptr_t)arg;
  cs->restart = (keel_sup_restart)keel_small_value(keel_tuple_get(t, 3));
  cs->shutdown = sd;
  cs->type = (keel_sup_child_type)keel_small_value(keel_tuple_get(t, 5));
  cs->significant = keel_tuple_get(t, 6) == KEEL_ATOM(TRUE);
  return KEEL_OK;
}

/* ---- waiting from a thread that is not a process ----------------------- */

static void sync_init(keel__sup_sync *y) {
  pthread_mutex_init(&y->mu, NULL);
  pthread_cond_init(&y->cv, NULL);
  y->done = false;
  y->rc = KEEL_ESTATE;
}

static bool sync_done(keel__sup_sync *y) {
  pthread_mutex_lock(&y->mu);
  bool d = y->done;
  pthread_mutex_unlock(&y->mu);
  return d;
}

/* Waits for y: steps the simulation on a simulated node. */
static int sync_wait(keel__sup_sync *y) {
  if (keel_sim_active()) {
    while (!sync_done(y))
      if (keel_sim_step() <= 0)
        return KEEL_ESTATE;
  } else {
    pthread_mutex_lock(&y->mu);
    while (!y->done)
      pthread_cond_wait(&y->cv, &y->mu);
    pthread_mutex_unlock(&y->mu);
  }
  return y->rc;
}

static void sync_destroy(keel__sup_sync *y) {
  pthread_cond_destroy(&y->cv);
  pthread_mutex_destroy(&y->mu);
}

/* ---- start ------------------------------------------------------------- */

typedef struct reply_match {
  keel_term tag; /* alias of the reply */
  keel_term ref; /* monitor of the peer */
} reply_match;

static bool m_reply_or_down(keel_term m, void *arg) {
  const reply_match *r = arg;
  if (!keel_is_tuple(m))
    return false;
  size_t a = keel_tuple_arity(m);
  if (a == 2)
    return keel_eq_exact(keel_tuple_get(m, 0), r->tag);
  return a == 5 && keel_tuple_get(m, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(m, 1), r->ref);
}

static bool is_down(keel_term m) {
  return keel_tuple_arity(m) == 5;
}

static int launch_from_fiber(keel_proc *self, keel__sup *s, keel_term *pid) {
  keel_heap sh;
  keel_heap_init(&sh);
  reply_match r = {KEEL_NONE, KEEL_NONE};
  int rc = keel_alias(self, &s->xh, &s->ack_alias);
  if (rc == KEEL_OK) {
    r.tag = keel_term_copy(&sh, s->ack_alias);
    rc = r.tag == KEEL_NONE ? KEEL_ENOMEM : KEEL_OK;
  }
  if (rc != KEEL_OK) {
    keel_heap_destroy(&sh);
    keel__sup_free(s);
    return rc;
  }
  s->parent = keel_self(self);
  keel_spawn_opts o = {.terminate = keel__sup_terminate,
                       .link = true,
                       .monitor_ref = &r.ref,
                       .monitor_heap = &sh};
  keel_term p;
  rc = keel_spawn_fiber(keel__sup_main, s, &o, &p);
  if (rc != KEEL_OK) {
    keel_unalias(self, r.tag);
    keel_heap_destroy(&sh);
    keel__sup_free(s);
    return rc;
  }
  keel_term m;
  rc = keel_receive(self, m_reply_or_down, &r, KEEL_INFINITY, &m);
  if (rc == KEEL_OK && is_down(m)) {
    rc = KEEL_ENOPROC;
  } else if (rc == KEEL_OK) {
    int64_t code = KEEL_ESTATE;
    (void)keel_get_int64(keel_tuple_get(m, 1), &code);
    rc = (int)code;
    if (rc < 0) /* it is exiting: wait until its name is free */
      (void)keel_receive(self, m_reply_or_down, &r, KEEL_INFINITY, &m);
    else
      keel_demonitor(self, r.ref, KEEL_DEMONITOR_FLUSH);
  }
  keel_unalias(self, r.tag);
  keel_heap_destroy(&sh);
  if (rc == KEEL_OK && pid != NULL)
    *pid = p;
  return rc;
}

static int launch_from_thread(keel__sup *s, keel_term *pid) {
  keel__sup_sync y;
  sync_init(&y);
  /* the supervisor drops it once it has answered, before this returns */
  s->sync = &y; // cppcheck-suppress autoVariables
  keel_spawn_opts o = {.terminate = keel__sup_terminate};
  keel_term p;
  int rc = keel_spawn_fiber(keel__sup_main, s, &o, &p);
  if (rc != KEEL_OK) {
    keel__sup_free(s);
  } else {
    rc = sync_wait(&y);
    if (rc == KEEL_OK && pid != NULL)
      *pid = p;
  }
  sync_destroy(&y);
  return rc;
}

int keel__sup_launch(keel__sup *s, keel_term *pid) {
  keel_proc *cur = keel_current();
  if (cur == NULL)
    return launch_from_thread(s, pid);
  if (!keel_proc_is_fiber(cur)) {
    keel__sup_free(s);
    return KEEL_ESTATE;
  }
  return launch_from_fiber(cur, s, pid);
}

static bool ids_unique(const keel_sup_child_spec *c, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (keel_eq_exact(c[i].id, c[j].id))
        return false;
  return true;
}

static int check_spec(const keel_sup_spec *spec) {
  if (spec == NULL || spec->version != KEEL_SUP_VERSION ||
      (unsigned)spec->strategy > KEEL_SUP_REST_FOR_ONE ||
      (unsigned)spec->auto_shutdown > KEEL_SUP_AUTO_ALL_SIGNIFICANT ||
      spec->period_ms == 0 || (spec->nchildren > 0 && spec->children == NULL))
    return KEEL_EINVAL;
  if (spec->name != KEEL_NONE && !keel_is_atom(spec->name))
    return KEEL_EBADARG;
  for (size_t i = 0; i < spec->nchildren; i++) {
    int rc = keel__sup_check_child(&spec->children[i], spec->auto_shutdown);
    if (rc != KEEL_OK)
      return rc;
  }
  return ids_unique(spec->children, spec->nchildren) ? KEEL_OK : KEEL_EINVAL;
}

int keel_sup_start_link(const keel_sup_spec *spec, keel_term *pid) {
  int rc = check_spec(spec);
  if (rc != KEEL_OK)
    return rc;
  keel__sup *s = keel__sup_new(false);
  if (s == NULL)
    return KEEL_ENOMEM;
  s->strategy = spec->strategy;
  s->intensity = spec->intensity;
  s->period_ms = spec->period_ms;
  s->auto_shutdown = spec->auto_shutdown;
  s->name = spec->name;
  for (size_t i = 0; i < spec->nchildren && rc == KEEL_OK; i++)
    rc = keel__sup_add_spec(s, &spec->children[i]);
  if (rc != KEEL_OK) {
    keel__sup_free(s);
    return rc;
  }
  return keel__sup_launch(s, pid);
}

/* ---- requests ---------------------------------------------------------- */

static int resolve(keel_term sup, keel_term *pid) {
  if (keel_is_atom(sup)) {
    sup = keel_whereis(sup);
    if (sup == KEEL_ATOM(UNDEFINED))
      return KEEL_ENOPROC;
  }
  if (!keel_is_local_pid(sup))
    return KEEL_EBADARG;
  *pid = sup;
  return KEEL_OK;
}

/* The answer {Code, Value} of a reply {Tag, {Code, Value}}. */
static int decode_answer(keel_term ans, keel_heap *h, keel_term *value) {
  int64_t code = KEEL_ESTATE;
  if (!keel_is_tuple(ans) || keel_tuple_arity(ans) != 2 ||
      keel_get_int64(keel_tuple_get(ans, 0), &code) != KEEL_OK)
    return KEEL_ESTATE;
  if (value != NULL) {
    *value = keel_term_copy(h, keel_tuple_get(ans, 1));
    if (*value == KEEL_NONE)
      return KEEL_ENOMEM;
  }
  return (int)code;
}

static int fiber_request(keel_proc *self, keel_term pid, keel_term req,
                         keel_heap *h, keel_term *value, bool until_down) {
  keel_heap sh;
  keel_heap_init(&sh);
  reply_match r;
  unsigned fl = KEEL_MONITOR_ALIAS |
                (until_down ? 0u : (unsigned)KEEL_MONITOR_REPLY_DEMONITOR);
  /* marked first: a 'DOWN' for a dead pid is queued by keel_monitor */
  int rc = keel_receive_mark(self);
  if (rc == KEEL_OK)
    rc = keel_monitor(self, pid, fl, &sh, &r.ref);
  if (rc == KEEL_OK) {
    r.tag = r.ref;
    keel_term msg = keel_tuple(&sh, 3, keel_atom(KEEL__SUP_CALL), r.ref, req);
    rc = msg == KEEL_NONE ? KEEL_ENOMEM : keel_send(pid, msg);
    if (rc != KEEL_OK)
      keel_demonitor(self, r.ref, KEEL_DEMONITOR_FLUSH);
  }
  keel_term m;
  if (rc == KEEL_OK)
    rc = keel_receive(self, m_reply_or_down, &r, KEEL_INFINITY, &m);
  if (rc == KEEL_OK && is_down(m))
    rc = until_down && keel_tuple_get(m, 4) != KEEL_ATOM(NOPROC) ? KEEL_OK
                                                                 : KEEL_ENOPROC;
  else if (rc == KEEL_OK)
    rc = decode_answer(keel_tuple_get(m, 1), h, value);
  keel_heap_destroy(&sh);
  return rc;
}

typedef struct proxy {
  keel__sup_sync y;
  keel_term pid;
  keel_heap qh;
  keel_term req;
  keel_heap *h;
  keel_term *value;
  bool until_down;
} proxy;

static void proxy_main(keel_proc *self, void *arg) {
  proxy *p = arg;
  int rc = fiber_request(self, p->pid, p->req, p->h, p->value, p->until_down);
  pthread_mutex_lock(&p->y.mu);
  p->y.rc = rc;
  p->y.done = true;
  pthread_cond_broadcast(&p->y.cv);
  pthread_mutex_unlock(&p->y.mu);
}

static int thread_request(keel_term pid, keel_term req, keel_heap *h,
                          keel_term *value, bool until_down) {
  proxy p = {.pid = pid, .h = h, .value = value, .until_down = until_down};
  sync_init(&p.y);
  keel_heap_init(&p.qh);
  p.req = keel_term_copy(&p.qh, req);
  int rc = p.req == KEEL_NONE ? KEEL_ENOMEM
                              : keel_spawn_fiber(proxy_main, &p, NULL, NULL);
  if (rc == KEEL_OK)
    rc = sync_wait(&p.y);
  keel_heap_destroy(&p.qh);
  sync_destroy(&p.y);
  return rc;
}

int keel__sup_request(keel_term sup, keel_term req, keel_heap *h,
                      keel_term *value, bool until_down) {
  keel_term pid;
  int rc = resolve(sup, &pid);
  if (rc != KEEL_OK)
    return rc;
  if (req == KEEL_NONE)
    return KEEL_ENOMEM;
  keel_proc *cur = keel_current();
  if (cur == NULL)
    return thread_request(pid, req, h, value, until_down);
  if (!keel_proc_is_fiber(cur))
    return KEEL_ESTATE;
  return fiber_request(cur, pid, req, h, value, until_down);
}

/* ---- the public requests ----------------------------------------------- */

static int pid_request(keel_term sup, keel_term req, keel_heap *h,
                       keel_term *pid) {
  keel_term v = KEEL_NONE;
  int rc = keel__sup_request(sup, req, h, &v, false);
  if (rc == KEEL_OK && pid != NULL)
    *pid = v;
  return rc;
}

int keel_sup_start_child(keel_term sup, const keel_sup_child_spec *spec,
                         keel_term *pid) {
  if (spec == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term req = keel_tuple(&h, 2, keel_atom("start_child"),
                             keel__sup_spec_term(&h, spec));
  int rc = pid_request(sup, req, &h, pid);
  keel_heap_destroy(&h);
  return rc;
}

static int id_request(keel_term sup, const char *what, keel_term id,
                      keel_term *pid) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term req = keel_tuple(&h, 2, keel_atom(what), id);
  int rc = pid_request(sup, req, &h, pid);
  keel_heap_destroy(&h);
  return rc;
}

int keel_sup_terminate_child(keel_term sup, keel_term id) {
  return id_request(sup, "terminate_child", id, NULL);
}

int keel_sup_restart_child(keel_term sup, keel_term id, keel_term *pid) {
  return id_request(sup, "restart_child", id, pid);
}

int keel_sup_delete_child(keel_term sup, keel_term id) {
  return id_request(sup, "delete_child", id, NULL);
}

int keel_sup_which_children(keel_term sup, keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  return keel__sup_request(sup, keel_atom("which_children"), h, out, false);
}

int keel_sup_count_children(keel_term sup, keel_sup_counts *out) {
  if (out == NULL)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term v = KEEL_NONE;
  int rc = keel__sup_request(sup, keel_atom("count_children"), &h, &v, false);
  if (rc == KEEL_OK) {
    out->specs = (size_t)keel_small_value(keel_tuple_get(v, 0));
    out->active = (size_t)keel_small_value(keel_tuple_get(v, 1));
    out->supervisors = (size_t)keel_small_value(keel_tuple_get(v, 2));
    out->workers = (size_t)keel_small_value(keel_tuple_get(v, 3));
  }
  keel_heap_destroy(&h);
  return rc;
}

int keel_sup_get_childspec(keel_term sup, keel_term id, keel_heap *h,
                           keel_sup_child_spec *out) {
  if (h == NULL || out == NULL || id == KEEL_NONE)
    return KEEL_EINVAL;
  keel_heap rh;
  keel_heap_init(&rh);
  keel_term req = keel_tuple(&rh, 2, keel_atom("get_childspec"), id);
  keel_term v = KEEL_NONE;
  int rc = req == KEEL_NONE ? KEEL_ENOMEM
                            : keel__sup_request(sup, req, &rh, &v, false);
  int64_t start = 0, arg = 0, shutdown = 0;
  if (rc == KEEL_OK &&
      (keel_get_int64(keel_tuple_get(v, 1), &start) != KEEL_OK ||
       keel_get_int64(keel_tuple_get(v, 2), &arg) != KEEL_OK ||
       keel_get_int64(keel_tuple_get(v, 4), &shutdown) != KEEL_OK))
    rc = KEEL_ESTATE;
  keel_term cid =
      rc == KEEL_OK ? keel_term_copy(h, keel_tuple_get(v, 0)) : KEEL_NONE;
  if (rc == KEEL_OK && cid == KEEL_NONE)
    rc = KEEL_ENOMEM;
  if (rc == KEEL_OK)
    *out = (keel_sup_child_spec){
        .id = cid,
        .start = (keel_sup_start_fn)(uintptr_t)start,
        .arg = (void *)(uintptr_t)arg,
        .restart = (keel_sup_restart)keel_small_value(keel_tuple_get(v, 3)),
        .shutdown = shutdown,
        .type = (keel_sup_child_type)keel_small_value(keel_tuple_get(v, 5)),
        .significant = keel_tuple_get(v, 6) == KEEL_ATOM(TRUE)};
  keel_heap_destroy(&rh);
  return rc;
}

int keel_sup_check_childspecs(const keel_sup_child_spec *specs, size_t n,
                              keel_sup_auto_shutdown auto_shutdown) {
  if ((n > 0 && specs == NULL) ||
      (unsigned)auto_shutdown > KEEL_SUP_AUTO_ALL_SIGNIFICANT)
    return KEEL_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (keel__sup_check_child(&specs[i], auto_shutdown) != KEEL_OK)
      return KEEL_EINVAL;
  return ids_unique(specs, n) ? KEEL_OK : KEEL_EINVAL;
}

int keel_sup_stop(keel_term sup) {
  return keel__sup_request(sup, keel_atom("stop"), NULL, NULL, true);
}
