/*
 * supervisor.c - the supervisor process: starts its children in order,
 * restarts them by its strategy within its restart intensity, shuts them
 * down (OTP's protocol: unlink, monitor, exit shutdown, kill after the
 * timeout) and answers the requests of keel/supervisor.h and
 * keel/dynamic_supervisor.h.
 */
#include <stdlib.h>
#include <string.h>

#include "keel/clock.h"
#include "keel/signals.h"
#include "keel/sim.h"
#include "otp/supervisor_internal.h"

enum {
  TEL_TERMINATED,
  TEL_RESTART,
  TEL_START_ERROR,
  TEL_SHUTDOWN_ERROR,
  TEL_SHUTDOWN
};

static const char *const tel_names[KEEL__SUP_TEL_N] = {
    "keel.supervisor.child_terminated", "keel.supervisor.child_restart",
    "keel.supervisor.start_error", "keel.supervisor.shutdown_error",
    "keel.supervisor.shutdown"};

typedef keel__sup sup;
typedef keel__sup_child child;

static uint64_t now_ms(void) {
  if (keel_sim_active())
    return keel_sim_time_ms();
  return keel_monotonic_ns() / 1000000u;
}

static void report(sup *s, int ev, const child *c, keel_term pid,
                   keel_term reason) {
  keel_tel_meta md[4] = {
      {keel_atom("supervisor"), s->self},
      {keel_atom("id"),
       c != NULL && !s->dynamic ? c->id : KEEL_ATOM(UNDEFINED)},
      {keel_atom("pid"), pid != KEEL_NONE ? pid : KEEL_ATOM(UNDEFINED)},
      {keel_atom("reason"), reason}};
  keel_tel_measure m = {keel_atom("count"), 1.0};
  keel_tel_execute(s->ev[ev], &m, 1, md, 4);
}

static bool is_normalish(keel_term r) {
  if (r == KEEL_ATOM(NORMAL) || r == KEEL_ATOM(SHUTDOWN))
    return true;
  return keel_is_tuple(r) && keel_tuple_arity(r) == 2 &&
         keel_tuple_get(r, 0) == KEEL_ATOM(SHUTDOWN);
}

/* ---- children ------------------------------------------------------------ */

static size_t index_of(const sup *s, const child *c) {
  for (size_t i = 0; i < s->n; i++)
    if (s->kids[i] == c)
      return i;
  return s->n;
}

static child *by_pid(const sup *s, keel_term pid) {
  for (size_t i = 0; i < s->n; i++)
    if (s->kids[i]->pid == pid)
      return s->kids[i];
  return NULL;
}

static child *by_id(const sup *s, keel_term id) {
  if (s->dynamic)
    return keel_is_local_pid(id) ? by_pid(s, id) : NULL;
  for (size_t i = 0; i < s->n; i++)
    if (keel_eq_exact(s->kids[i]->id, id))
      return s->kids[i];
  return NULL;
}

static child *by_key(const sup *s, uint64_t key) {
  for (size_t i = 0; i < s->n; i++)
    if (s->kids[i]->key == key)
      return s->kids[i];
  return NULL;
}

static void remove_at(sup *s, size_t i) {
  keel_heap_destroy(&s->kids[i]->idh);
  free(s->kids[i]);
  memmove(&s->kids[i], &s->kids[i + 1],
          (s->n - i - 1) * sizeof(keel__sup_child *));
  s->n--;
}

static void remove_child(sup *s, child *c) {
  size_t i = index_of(s, c);
  if (i < s->n)
    remove_at(s, i);
}

/* Removes the children a group restart stopped for good. */
static void remove_doomed(sup *s) {
  for (size_t i = s->n; i-- > 0;)
    if (s->kids[i]->doomed)
      remove_at(s, i);
}

/* Runs c's start function. KEEL_OK, KEEL_SUP_IGNORE or a negative code. */
static int start_one(keel_proc *self, sup *s, child *c) {
  keel_term pid = KEEL_NONE;
  int rc = c->start(self, c->arg, s->extra, &pid);
  if (rc == KEEL_OK && !keel_is_local_pid(pid))
    rc = KEEL_EBADARG;
  else if (rc > 0 && rc != KEEL_SUP_IGNORE)
    rc = KEEL_EINVAL;
  c->pid = rc == KEEL_OK ? pid : KEEL_NONE;
  c->restarting = false;
  if (rc < 0)
    report(s, TEL_START_ERROR, c, KEEL_NONE, keel_atom(keel_err_name(rc)));
  return rc;
}

/* ---- shutdown ------------------------------------------------------------ */

typedef struct pend {
  child *c;
  keel_term pid, ref;
  keel_term early;   /* the reason of an 'EXIT' already queued, or NONE */
  uint64_t deadline; /* 0: none */
  bool killed, done;
} pend;

typedef struct pend_set {
  pend *p;
  size_t n;
} pend_set;

static bool m_exit_from(keel_term m, void *arg) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 3 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(EXIT) &&
         keel_tuple_get(m, 1) == *(keel_term *)arg;
}

static pend *down_of(const pend_set *ps, keel_term m) {
  if (!keel_is_tuple(m) || keel_tuple_arity(m) != 5 ||
      keel_tuple_get(m, 0) != KEEL_ATOM(DOWN))
    return NULL;
  for (size_t i = 0; i < ps->n; i++)
    if (!ps->p[i].done && keel_eq_exact(ps->p[i].ref, keel_tuple_get(m, 1)))
      return &ps->p[i];
  return NULL;
}

static bool m_down_any(keel_term m, void *arg) {
  return down_of(arg, m) != NULL;
}

/* Monitors, unlinks and signals one child (the first half of OTP's
 * shutdown/2). */
static void shutdown_begin(keel_proc *self, keel_heap *h, pend *p) {
  keel_term pid = p->pid;
  if (keel_monitor(self, pid, 0, h, &p->ref) != KEEL_OK) {
    p->done = true;
    return;
  }
  keel_unlink(self, pid);
  keel_term m;
  if (keel_receive(self, m_exit_from, &pid, 0, &m) == KEEL_OK) {
    p->early = keel_term_copy(h, keel_tuple_get(m, 2));
    return;
  }
  if (p->c->shutdown == KEEL_SUP_BRUTAL_KILL) {
    keel_exit(pid, KEEL_ATOM(KILL));
    p->killed = true;
    return;
  }
  keel_exit(pid, KEEL_ATOM(SHUTDOWN));
  if (p->c->shutdown != KEEL_INFINITY)
    p->deadline = now_ms() + (uint64_t)p->c->shutdown;
}

static void shutdown_end(sup *s, pend *p, keel_term reason) {
  p->done = true;
  keel_term expect = p->c->shutdown == KEEL_SUP_BRUTAL_KILL
                         ? KEEL_ATOM(KILLED)
                         : KEEL_ATOM(SHUTDOWN);
  if (p->early != KEEL_NONE) {
    reason = p->early;
    if (reason == KEEL_ATOM(NORMAL) && p->c->restart != KEEL_SUP_PERMANENT)
      return;
  } else if (reason == expect) {
    return;
  }
  report(s, TEL_SHUTDOWN_ERROR, p->c, p->pid, reason);
}

static int64_t next_timeout(const pend_set *ps) {
  uint64_t best = 0, now = now_ms();
  for (size_t i = 0; i < ps->n; i++) {
    const pend *p = &ps->p[i];
    if (!p->done && !p->killed && p->deadline != 0 &&
        (best == 0 || p->deadline < best))
      best = p->deadline;
  }
  if (best == 0)
    return KEEL_INFINITY;
  return best > now ? (int64_t)(best - now) : 0;
}

static void kill_late(pend_set *ps) {
  uint64_t now = now_ms();
  for (size_t i = 0; i < ps->n; i++) {
    pend *p = &ps->p[i];
    if (!p->done && !p->killed && p->deadline != 0 && p->deadline <= now) {
      keel_exit(p->pid, KEEL_ATOM(KILL));
      p->killed = true;
    }
  }
}

static bool all_done(const pend_set *ps) {
  for (size_t i = 0; i < ps->n; i++)
    if (!ps->p[i].done)
      return false;
  return true;
}

/* Shuts down the running children of set[0..k) all at once and waits for
 * each (one at a time is k == 1). */
static void shutdown_set(keel_proc *self, sup *s, child **set, size_t k) {
  pend one;
  memset(&one, 0, sizeof one);
  pend *p = k == 1 ? &one : calloc(k, sizeof *p);
  if (p == NULL) { /* no room to wait for them together: one by one */
    for (size_t i = 0; i < k; i++)
      shutdown_set(self, s, &set[i], 1);
    return;
  }
  memset(p, 0, k * sizeof *p);
  keel_heap h;
  keel_heap_init(&h);
  pend_set ps = {p, k};
  for (size_t i = 0; i < k; i++) {
    p[i].c = set[i];
    p[i].pid = set[i]->pid;
    p[i].early = KEEL_NONE;
    p[i].done = set[i]->pid == KEEL_NONE;
    if (!p[i].done)
      shutdown_begin(self, &h, &p[i]);
  }
  while (!all_done(&ps)) {
    keel_term m;
    int rc = keel_receive(self, m_down_any, &ps, next_timeout(&ps), &m);
    if (rc == KEEL_OK)
      shutdown_end(s, down_of(&ps, m), keel_tuple_get(m, 4));
    else
      kill_late(&ps);
  }
  for (size_t i = 0; i < k; i++) {
    set[i]->pid = KEEL_NONE;
    set[i]->restarting = false;
  }
  keel_heap_destroy(&h);
  if (p != &one)
    free(p);
}

static void shutdown_child(keel_proc *self, sup *s, child *c) {
  if (c->pid != KEEL_NONE)
    shutdown_set(self, s, &c, 1);
  c->restarting = false;
}

/* Stops every child: in reverse start order, or all at once (dynamic). */
static void terminate_all(keel_proc *self, sup *s) {
  if (s->dynamic) {
    shutdown_set(self, s, s->kids, s->n);
    return;
  }
  for (size_t i = s->n; i-- > 0;)
    shutdown_child(self, s, s->kids[i]);
}

/* ---- restarts ------------------------------------------------------------ */

/* Records a restart; false when it exceeds the intensity. The times are
 * a ring, oldest at thead: the clock never goes back, so the restarts
 * that left the period are the oldest ones, each dropped once (a restart
 * costs O(1), not a scan of the period's restarts). */
static bool add_restart(sup *s) {
  uint64_t now = now_ms();
  size_t cap = (size_t)s->intensity + 1;
  while (s->ntimes > 0 && now - s->times[s->thead] >= s->period_ms) {
    s->thead = (s->thead + 1) % cap;
    s->ntimes--;
  }
  if (s->ntimes >= s->intensity)
    return false;
  s->times[(s->thead + s->ntimes) % cap] = now;
  s->ntimes++;
  return true;
}

static void try_again_later(keel_proc *self, child *c) {
  c->restarting = true;
  keel_heap h;
  keel_heap_init(&h);
  keel_term m =
      keel_tuple(&h, 2, keel_atom(KEEL__SUP_RETRY), keel_uint(&h, c->key));
  if (m != KEEL_NONE)
    keel_send(keel_self(self), m);
  keel_heap_destroy(&h);
}

/* Starts kids[from..] in order; the first failure is retried later. */
static void start_from(keel_proc *self, sup *s, size_t from) {
  for (size_t i = from; i < s->n; i++) {
    child *c = s->kids[i];
    if (c->pid != KEEL_NONE)
      continue;
    int rc = start_one(self, s, c);
    if (rc < 0) {
      try_again_later(self, c);
      return;
    }
  }
}

/* Stops kids[from..] except c, in reverse order; temporary ones are
 * removed afterwards. */
static void stop_from(keel_proc *self, sup *s, size_t from, const child *c) {
  for (size_t i = s->n; i-- > from;) {
    child *k = s->kids[i];
    if (k == c)
      continue;
    if (k->restart == KEEL_SUP_TEMPORARY)
      k->doomed = true;
    shutdown_child(self, s, k);
  }
  remove_doomed(s);
}

/* Restarts c (and its group) by the strategy. Returns true when the
 * intensity is exceeded: the caller must stop the supervisor. */
static bool restart(keel_proc *self, sup *s, child *c) {
  keel_term old = c->pid;
  c->pid = KEEL_NONE; /* dead already */
  if (!add_restart(s)) {
    report(s, TEL_SHUTDOWN, c, old, keel_atom("reached_max_restart_intensity"));
    return true;
  }
  report(s, TEL_RESTART, c, old, KEEL_ATOM(UNDEFINED));
  if (s->dynamic || s->strategy == KEEL_SUP_ONE_FOR_ONE) {
    int rc = start_one(self, s, c);
    if (rc < 0)
      try_again_later(self, c);
    else if (rc == KEEL_SUP_IGNORE && s->dynamic)
      remove_child(s, c);
    return false;
  }
  size_t from = s->strategy == KEEL_SUP_ONE_FOR_ALL ? 0 : index_of(s, c);
  uint64_t key = c->key; /* c is kept; temporary ones after it are not */
  stop_from(self, s, from, c);
  if (s->strategy == KEEL_SUP_REST_FOR_ONE)
    for (from = 0; from < s->n && s->kids[from]->key != key; from++)
      ;
  start_from(self, s, from);
  return false;
}

/* Whether a significant child's own exit ends the supervisor. */
static bool auto_shutdown(const sup *s) {
  if (s->auto_shutdown == KEEL_SUP_AUTO_ANY_SIGNIFICANT)
    return true;
  if (s->auto_shutdown == KEEL_SUP_AUTO_NEVER)
    return false;
  for (size_t i = 0; i < s->n; i++)
    if (s->kids[i]->significant && s->kids[i]->pid != KEEL_NONE)
      return false;
  return true;
}

/* A child exited by itself. Returns true when the supervisor must stop
 * (with reason shutdown). */
static bool child_exited(keel_proc *self, sup *s, child *c, keel_term reason) {
  bool abnormal = !is_normalish(reason);
  keel_term pid = c->pid;
  if (abnormal)
    report(s, TEL_TERMINATED, c, pid, reason);
  bool again = c->restart == KEEL_SUP_PERMANENT ||
               (c->restart == KEEL_SUP_TRANSIENT && abnormal);
  if (again) {
    c->pid = pid; /* restart reports it */
    bool stop = restart(self, s, c);
    return stop;
  }
  c->pid = KEEL_NONE;
  bool significant = c->significant;
  if (c->restart == KEEL_SUP_TEMPORARY || s->dynamic)
    remove_child(s, c);
  if (significant && auto_shutdown(s)) {
    report(s, TEL_SHUTDOWN, NULL, KEEL_NONE, keel_atom("auto_shutdown"));
    return true;
  }
  return false;
}

/* ---- requests ------------------------------------------------------------ */

typedef struct answer {
  int code;
  keel_term value;
} answer;

static answer ans(int code, keel_term value) {
  answer a = {code, value};
  return a;
}

static answer do_start_child(keel_proc *self, sup *s, keel_term arg) {
  keel_sup_child_spec cs;
  if (keel__sup_spec_of(arg, &cs) != KEEL_OK ||
      keel__sup_check_child(&cs, s->auto_shutdown) != KEEL_OK)
    return ans(KEEL_EINVAL, KEEL_ATOM(UNDEFINED));
  if (s->dynamic) {
    cs.id = KEEL_ATOM(UNDEFINED);
    if (s->max_children != 0 && s->n >= s->max_children)
      return ans(KEEL_ELIMIT, KEEL_ATOM(UNDEFINED));
  } else if (by_id(s, cs.id) != NULL) {
    return ans(KEEL_EEXIST, KEEL_ATOM(UNDEFINED));
  }
  int rc = keel__sup_add_spec(s, &cs);
  if (rc != KEEL_OK)
    return ans(rc, KEEL_ATOM(UNDEFINED));
  child *c = s->kids[s->n - 1];
  rc = start_one(self, s, c);
  if (rc < 0 || (rc == KEEL_SUP_IGNORE && s->dynamic))
    remove_child(s, c);
  return ans(rc, rc == KEEL_OK ? c->pid : KEEL_ATOM(UNDEFINED));
}

static answer do_terminate_child(keel_proc *self, sup *s, keel_term id) {
  child *c = by_id(s, id);
  if (c == NULL)
    return ans(KEEL_ENOENT, KEEL_ATOM(UNDEFINED));
  shutdown_child(self, s, c);
  if (s->dynamic || c->restart == KEEL_SUP_TEMPORARY)
    remove_child(s, c);
  return ans(KEEL_OK, KEEL_ATOM(OK));
}

/* The stopped child `id` of a static supervisor (restart_child and
 * delete_child need one), or NULL with *err the answer why not. */
static child *stopped_child(sup *s, keel_term id, answer *err) {
  child *c = s->dynamic ? NULL : by_id(s, id);
  int rc = s->dynamic                             ? KEEL_ESTATE
           : c == NULL                            ? KEEL_ENOENT
           : c->pid != KEEL_NONE || c->restarting ? KEEL_ESTATE
                                                  : KEEL_OK;
  if (rc == KEEL_OK)
    return c;
  *err = ans(rc, KEEL_ATOM(UNDEFINED));
  return NULL;
}

static answer do_restart_child(keel_proc *self, sup *s, keel_term id) {
  answer err;
  child *c = stopped_child(s, id, &err);
  if (c == NULL)
    return err;
  int rc = start_one(self, s, c);
  return ans(rc, rc == KEEL_OK ? c->pid : KEEL_ATOM(UNDEFINED));
}

static answer do_delete_child(sup *s, keel_term id) {
  answer err;
  child *c = stopped_child(s, id, &err);
  if (c == NULL)
    return err;
  remove_child(s, c);
  return ans(KEEL_OK, KEEL_ATOM(OK));
}

static keel_term type_atom(const child *c) {
  return keel_atom(c->type == KEEL_SUP_SUPERVISOR ? "supervisor" : "worker");
}

static answer do_which_children(sup *s, keel_heap *h) {
  keel_term list = KEEL_NIL;
  for (size_t i = s->n; i-- > 0;) {
    const child *c = s->kids[i];
    keel_term st = c->pid != KEEL_NONE ? c->pid
                   : c->restarting     ? keel_atom("restarting")
                                       : KEEL_ATOM(UNDEFINED);
    keel_term id = s->dynamic ? KEEL_ATOM(UNDEFINED) : c->id;
    list = keel_cons(h, keel_tuple(h, 3, id, st, type_atom(c)), list);
  }
  return ans(KEEL_OK, list);
}

/* {Id, Start, Arg, Restart, Shutdown, Type, Significant}, the two C
 * pointers as integers (the answer goes to keel_sup_get_childspec in this
 * OS process only). */
static answer do_get_childspec(sup *s, keel_term id, keel_heap *h) {
  const child *c = by_id(s, id);
  if (c == NULL)
    return ans(KEEL_ENOENT, KEEL_ATOM(UNDEFINED));
  keel_term t = keel_tuple(
      h, 7, c->id, keel_int(h, (int64_t)(uintptr_t)c->start),
      keel_int(h, (int64_t)(uintptr_t)c->arg), keel_small(c->restart),
      keel_int(h, c->shutdown), keel_small(c->type),
      c->significant ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE));
  return t != KEEL_NONE ? ans(KEEL_OK, t)
                        : ans(KEEL_ENOMEM, KEEL_ATOM(UNDEFINED));
}

static answer do_count_children(sup *s, keel_heap *h) {
  size_t active = 0, sups = 0;
  for (size_t i = 0; i < s->n; i++) {
    active += s->kids[i]->pid != KEEL_NONE;
    sups += s->kids[i]->type == KEEL_SUP_SUPERVISOR;
  }
  return ans(KEEL_OK,
             keel_tuple(h, 4, keel_small((int64_t)s->n),
                        keel_small((int64_t)active), keel_small((int64_t)sups),
                        keel_small((int64_t)(s->n - sups))));
}

static answer dispatch(keel_proc *self, sup *s, keel_term req, keel_heap *h) {
  keel_term op = req, arg = KEEL_NONE;
  if (keel_is_tuple(req) && keel_tuple_arity(req) == 2) {
    op = keel_tuple_get(req, 0);
    arg = keel_tuple_get(req, 1);
  }
  if (op == keel_atom("start_child") && arg != KEEL_NONE)
    return do_start_child(self, s, arg);
  if (op == keel_atom("terminate_child") && arg != KEEL_NONE)
    return do_terminate_child(self, s, arg);
  if (op == keel_atom("restart_child") && arg != KEEL_NONE)
    return do_restart_child(self, s, arg);
  if (op == keel_atom("delete_child") && arg != KEEL_NONE)
    return do_delete_child(s, arg);
  if (op == keel_atom("which_children"))
    return do_which_children(s, h);
  if (op == keel_atom("get_childspec") && arg != KEEL_NONE)
    return do_get_childspec(s, arg, h);
  if (op == keel_atom("count_children"))
    return do_count_children(s, h);
  return ans(KEEL_EINVAL, KEEL_ATOM(UNDEFINED));
}

/* Handles {'$sup_call', Alias, Req}. Requests run one after the other;
 * the request term is copied first (a start may receive). */
static bool handle_call(keel_proc *self, sup *s, keel_term m) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term alias = keel_term_copy(&h, keel_tuple_get(m, 1));
  keel_term req = keel_term_copy(&h, keel_tuple_get(m, 2));
  if (req == keel_atom("stop")) {
    keel_heap_destroy(&h);
    return true;
  }
  answer a = dispatch(self, s, req, &h);
  keel_term v = a.value != KEEL_NONE ? a.value : KEEL_ATOM(UNDEFINED);
  keel_term r =
      keel_tuple(&h, 2, alias, keel_tuple(&h, 2, keel_small(a.code), v));
  if (r != KEEL_NONE)
    keel_send(alias, r);
  keel_heap_destroy(&h);
  return false;
}

/* ---- the process --------------------------------------------------------- */

static void ack(sup *s, int rc) {
  if (s->sync != NULL) {
    keel__sup_sync *y = s->sync;
    s->sync = NULL;
    pthread_mutex_lock(&y->mu);
    y->rc = rc;
    y->done = true;
    pthread_cond_broadcast(&y->cv);
    pthread_mutex_unlock(&y->mu);
  } else if (s->ack_alias != KEEL_NONE) {
    keel_heap h;
    keel_heap_init(&h);
    keel_term m = keel_tuple(&h, 2, s->ack_alias, keel_small(rc));
    if (m != KEEL_NONE)
      keel_send(s->ack_alias, m);
    keel_heap_destroy(&h);
    s->ack_alias = KEEL_NONE;
  }
}

static int start_all(keel_proc *self, sup *s, keel_term *reason) {
  for (size_t i = 0; i < s->n; i++) {
    child *c = s->kids[i];
    int rc = start_one(self, s, c);
    if (rc >= 0)
      continue;
    for (size_t j = i; j-- > 0;)
      shutdown_child(self, s, s->kids[j]);
    keel_heap *h = keel_proc_heap(self);
    *reason = keel_tuple(h, 2, KEEL_ATOM(SHUTDOWN),
                         keel_tuple(h, 3, keel_atom("failed_to_start_child"),
                                    c->id, keel_atom(keel_err_name(rc))));
    return rc;
  }
  return KEEL_OK;
}

static void fail_start(keel_proc *self, sup *s, int rc, keel_term reason) {
  /* free the name before the starter hears, so it can start again */
  if (s->name != KEEL_NONE && keel_whereis(s->name) == s->self)
    keel_unregister(s->name);
  if (s->parent != KEEL_NONE) {
    keel_unlink(self, s->parent);
    keel_flush_exit(self, s->parent);
  }
  ack(s, rc);
  keel_stop(self, reason != KEEL_NONE ? reason : KEEL_ATOM(SHUTDOWN));
}

/* An 'EXIT' message. Returns true (and the reason) when the supervisor
 * must stop. */
static bool handle_exit(keel_proc *self, sup *s, keel_term m,
                        keel_term *reason) {
  keel_term from = keel_tuple_get(m, 1);
  keel_term r = keel_tuple_get(m, 2);
  bool from_parent =
      s->parent != KEEL_NONE ? from == s->parent : from == KEEL_ATOM(UNDEFINED);
  if (from_parent) {
    *reason = keel_term_copy(keel_proc_heap(self), r);
    return true;
  }
  child *c = keel_is_local_pid(from) ? by_pid(s, from) : NULL;
  if (c == NULL)
    return false;
  *reason = KEEL_ATOM(SHUTDOWN);
  return child_exited(self, s, c, r);
}

static bool handle_retry(keel_proc *self, sup *s, keel_term m) {
  uint64_t key = 0;
  (void)keel_get_uint64(keel_tuple_get(m, 1), &key);
  child *c = by_key(s, key);
  if (c == NULL || !c->restarting)
    return false;
  return restart(self, s, c);
}

static bool is_tagged(keel_term m, size_t arity, keel_term tag) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == arity &&
         keel_tuple_get(m, 0) == tag;
}

static void serve(keel_proc *self, sup *s) {
  keel_term call = keel_atom(KEEL__SUP_CALL);
  keel_term retry = keel_atom(KEEL__SUP_RETRY);
  for (;;) {
    keel_term m, reason = KEEL_ATOM(NORMAL);
    if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) != KEEL_OK)
      continue;
    bool stop = false;
    if (is_tagged(m, 3, KEEL_ATOM(EXIT)))
      stop = handle_exit(self, s, m, &reason);
    else if (is_tagged(m, 3, call))
      stop = handle_call(self, s, m);
    else if (is_tagged(m, 2, retry))
      stop = handle_retry(self, s, m);
    if (stop) {
      terminate_all(self, s);
      keel_stop(self, reason);
      return;
    }
  }
}

void keel__sup_main(keel_proc *self, void *arg) {
  sup *s = arg;
  s->self = keel_self(self);
  keel_trap_exit(self, true);
  for (int i = 0; i < KEEL__SUP_TEL_N; i++)
    (void)keel_tel_event_parse(tel_names[i], &s->ev[i]);
  s->times = calloc((size_t)s->intensity + 1, sizeof *s->times);
  if (s->times == NULL) {
    fail_start(self, s, KEEL_ENOMEM, KEEL_NONE);
    return;
  }
  if (s->name != KEEL_NONE) {
    int rc = keel_register(s->name, s->self);
    if (rc != KEEL_OK) {
      fail_start(self, s, rc, KEEL_ATOM(NORMAL));
      return;
    }
  }
  keel_term reason = KEEL_NONE;
  int rc = start_all(self, s, &reason);
  if (rc < 0) {
    fail_start(self, s, rc, reason);
    return;
  }
  ack(s, KEEL_OK);
  serve(self, s);
}

void keel__sup_terminate(keel_proc *self, keel_term reason, void *arg) {
  (void)self;
  (void)reason;
  sup *s = arg;
  ack(s, KEEL_ENOPROC); /* killed before its start ended */
  keel__sup_free(s);
}
