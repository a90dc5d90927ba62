/*
 * task_sup.c - Task.Supervisor: a handler process trapping exits whose
 * children are temporary task fibers, and the synchronous calls to it
 * (from fibers directly, from plain threads through a proxy fiber).
 *
 * Requests are {'$task_sup', ReplyTo, Body}, answered {ReplyTo, Answer}
 * (ReplyTo: the caller's monitor alias). The bodies and their answers:
 *   - {start, Owner or undefined, Spec, Input, Callers}: {ok, Pid}, or
 *     {error, max_children | badarg | system_limit};
 *   - children: the list of live children;
 *   - {terminate, Pid}: ok once Pid is gone, or {error, not_found};
 *   - stop: no answer, the supervisor exits 'shutdown'.
 */
#include <stdint.h>
#include <stdlib.h>

#include "keel/signals.h"
#include "keel/task.h"
#include "otp/task_internal.h"

typedef struct sup_state {
  size_t max_children; /* 0: unlimited */
  size_t n, cap;
  keel_term *kids; /* live children (local pids: immediates) */
  bool trapping;
  keel_term parent; /* the linked starter, or KEEL_NONE */
  /* terminate_child calls answered once the child's 'EXIT' is in. */
  size_t npend, cappend;
  keel_term *pend; /* pairs: pid, reply alias (in the process heap) */
} sup_state;

static keel_term sup_atom(void) {
  return keel_atom("$task_sup");
}

static bool sup_has(const sup_state *s, keel_term pid, size_t *at) {
  for (size_t i = 0; i < s->n; i++)
    if (s->kids[i] == pid) {
      if (at != NULL)
        *at = i;
      return true;
    }
  return false;
}

static int sup_add(sup_state *s, keel_term pid) {
  if (s->n == s->cap) {
    size_t cap = s->cap != 0 ? s->cap * 2 : 16;
    keel_term *k = realloc(s->kids, cap * sizeof *k);
    if (k == NULL)
      return KEEL_ENOMEM;
    s->kids = k;
    s->cap = cap;
  }
  s->kids[s->n++] = pid;
  return KEEL_OK;
}

static keel_term error_tuple(keel_heap *h, const char *what) {
  return keel_tuple(h, 2, KEEL_ATOM(ERROR), keel_atom(what));
}

/* {start, Owner, Spec, Input, Callers}: spawns the child; the caller lets it
 * run. */
static keel_term sup_start(sup_state *s, keel_term body, keel_heap *h) {
  if (s->max_children != 0 && s->n >= s->max_children)
    return error_tuple(h, "max_children");
  keel_term owner = keel_tuple_get(body, 1);
  keel_task_fn fn;
  void *arg;
  if (!keel__task_spec_get(keel_tuple_get(body, 2), &fn, &arg) ||
      (owner != KEEL_ATOM(UNDEFINED) && !keel_is_local_pid(owner)))
    return error_tuple(h, "badarg");
  bool fire = owner == KEEL_ATOM(UNDEFINED);
  keel_term pid;
  if (keel__task_spawn(fire ? KEEL_NONE : owner, true, &pid) != KEEL_OK)
    return error_tuple(h, "system_limit");
  if (sup_add(s, pid) != KEEL_OK) {
    (void)keel_exit(pid, KEEL_ATOM(KILL));
    return error_tuple(h, "system_limit");
  }
  if (fire) { /* start_child: the supervisor sends go itself */
    keel_term go = keel_tuple(h, 5, keel_atom("$task_go"), KEEL_ATOM(UNDEFINED),
                              keel_tuple_get(body, 2), keel_tuple_get(body, 3),
                              keel_tuple_get(body, 4));
    if (go != KEEL_NONE)
      (void)keel_send(pid, go);
  }
  return keel_tuple(h, 2, KEEL_ATOM(OK), pid);
}

/* Remembers that `alias` waits for pid's end; false when out of memory. */
static bool pend_add(keel_proc *self, sup_state *s, keel_term pid,
                     keel_term alias) {
  if (s->npend == s->cappend) {
    size_t cap = s->cappend != 0 ? s->cappend * 2 : 4;
    keel_term *p = realloc(s->pend, 2 * cap * sizeof *p);
    if (p == NULL)
      return false;
    s->pend = p;
    s->cappend = cap;
  }
  keel_term a = keel_term_copy(keel_proc_heap(self), alias);
  if (a == KEEL_NONE)
    return false;
  s->pend[2 * s->npend] = pid;
  s->pend[2 * s->npend + 1] = a;
  s->npend++;
  return true;
}

/* Answers 'ok' to the terminate_child calls waiting for pid. */
static void pend_done(sup_state *s, keel_term pid) {
  for (size_t i = 0; i < s->npend;) {
    if (s->pend[2 * i] != pid) {
      i++;
      continue;
    }
    uint64_t buf[16];
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 16);
    keel_term r = keel_tuple(&h, 2, s->pend[2 * i + 1], KEEL_ATOM(OK));
    if (r != KEEL_NONE)
      (void)keel_send(s->pend[2 * i + 1], r);
    keel_heap_destroy(&h);
    s->npend--;
    s->pend[2 * i] = s->pend[2 * s->npend];
    s->pend[2 * i + 1] = s->pend[2 * s->npend + 1];
  }
}

static keel_term sup_answer(keel_proc *self, sup_state *s, keel_term body,
                            keel_term alias, keel_heap *h) {
  if (body == keel_atom("children"))
    return keel_list_from(h, s->n, s->kids);
  if (!keel_is_tuple(body))
    return error_tuple(h, "badarg");
  keel_term tag = keel_tuple_get(body, 0);
  if (tag == keel_atom("start") && keel_tuple_arity(body) == 5 &&
      keel_is_list(keel_tuple_get(body, 4)))
    return sup_start(s, body, h);
  if (tag == keel_atom("terminate") && keel_tuple_arity(body) == 2) {
    keel_term pid = keel_tuple_get(body, 1);
    if (!sup_has(s, pid, NULL))
      return error_tuple(h, "not_found");
    if (!pend_add(self, s, pid, alias))
      return error_tuple(h, "system_limit");
    (void)keel_exit(pid, KEEL_ATOM(SHUTDOWN));
    return KEEL_NONE; /* answered when its 'EXIT' arrives */
  }
  return error_tuple(h, "badarg");
}

/* Ends every child (exit 'shutdown': tasks do not trap exits), then self. */
static keel_handler_status sup_shutdown(keel_proc *self, sup_state *s,
                                        keel_term reason) {
  for (size_t i = 0; i < s->n; i++)
    (void)keel_exit(s->kids[i], KEEL_ATOM(SHUTDOWN));
  s->n = 0;
  return keel_stop(self, reason);
}

static keel_handler_status sup_exit(keel_proc *self, sup_state *s,
                                    keel_term msg) {
  keel_term from = keel_tuple_get(msg, 1);
  size_t at;
  if (sup_has(s, from, &at)) {
    s->kids[at] = s->kids[--s->n];
    pend_done(s, from);
    return KEEL_CONTINUE;
  }
  if (from != s->parent) /* as OTP's supervisors: not our business */
    return KEEL_CONTINUE;
  return sup_shutdown(self, s, keel_tuple_get(msg, 2));
}

static keel_handler_status sup_handle(keel_proc *self, keel_term msg,
                                      void *state) {
  sup_state *s = state;
  if (!s->trapping) { /* the first message (keel_task_sup_start's) */
    (void)keel_trap_exit(self, true);
    s->trapping = true;
  }
  if (!keel_is_tuple(msg) || keel_tuple_arity(msg) != 3)
    return KEEL_CONTINUE;
  keel_term tag = keel_tuple_get(msg, 0);
  if (tag == KEEL_ATOM(EXIT))
    return sup_exit(self, s, msg);
  if (tag != sup_atom())
    return KEEL_CONTINUE;
  if (keel_tuple_get(msg, 2) == KEEL_ATOM(STOP))
    return sup_shutdown(self, s, KEEL_ATOM(SHUTDOWN));
  keel_heap h;
  keel_heap_init(&h);
  keel_term ans =
      sup_answer(self, s, keel_tuple_get(msg, 2), keel_tuple_get(msg, 1), &h);
  keel_term reply = ans == KEEL_NONE
                        ? KEEL_NONE
                        : keel_tuple(&h, 2, keel_tuple_get(msg, 1), ans);
  if (reply != KEEL_NONE)
    (void)keel_send(keel_tuple_get(msg, 1), reply);
  keel_heap_destroy(&h);
  return KEEL_CONTINUE;
}

static void sup_terminate(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  sup_state *s = state;
  for (size_t i = 0; i < s->n; i++)
    (void)keel_exit(s->kids[i], KEEL_ATOM(SHUTDOWN));
  free(s->kids);
  free(s->pend);
  free(s);
}

int keel_task_sup_start(const keel_task_sup_opts *opts, keel_term *pid) {
  keel_task_sup_opts o = opts != NULL ? *opts : (keel_task_sup_opts){0};
  if (o.link && keel_current() == NULL)
    return KEEL_ESTATE;
  sup_state *s = calloc(1, sizeof *s);
  if (s == NULL)
    return KEEL_ENOMEM;
  s->max_children = o.max_children;
  s->parent = o.link ? keel_self(keel_current()) : KEEL_NONE;
  keel_spawn_opts so = {.terminate = sup_terminate, .link = o.link};
  keel_term p;
  int rc = keel_spawn(sup_handle, s, &so, &p);
  if (rc != KEEL_OK) {
    free(s);
    return rc;
  }
  /* Trap exits before any other signal: the init message is the first
   * thing the new process handles (the spawner's stream is ordered). */
  rc = keel_send(p, keel_atom("$task_sup_init"));
  if (rc != KEEL_OK) {
    (void)keel_exit(p, KEEL_ATOM(KILL));
    return rc;
  }
  if (pid != NULL)
    *pid = p;
  return KEEL_OK;
}

int keel_task_sup_stop(keel_term sup) {
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term req =
      keel_tuple(&h, 3, sup_atom(), KEEL_ATOM(UNDEFINED), KEEL_ATOM(STOP));
  int rc = keel_send(sup, req);
  keel_heap_destroy(&h);
  return rc;
}

/* ---- calls ------------------------------------------------------------------
 */

static bool call_match(keel_term msg, void *arg) {
  return keel__task_msg_for(*(const keel_term *)arg, msg);
}

/* Sends body to sup and waits for the answer (copied into h). */
static int fiber_call(keel_proc *self, keel_term sup, keel_term body,
                      keel_heap *h, keel_term *ans) {
  keel_heap tmp;
  keel_heap_init(&tmp);
  keel_term ref = KEEL_NONE;
  /* Mark first: a dead sup's 'DOWN' is queued by keel_monitor itself. */
  int rc = keel_receive_mark(self);
  if (rc == KEEL_OK)
    rc = keel_monitor(self, sup,
                      KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR, &tmp,
                      &ref);
  keel_term req =
      rc == KEEL_OK ? keel_tuple(&tmp, 3, sup_atom(), ref, body) : KEEL_NONE;
  if (rc == KEEL_OK && req == KEEL_NONE)
    rc = KEEL_ENOMEM;
  if (rc == KEEL_OK)
    rc = keel_send(sup, req);
  keel_term m = KEEL_NONE;
  if (rc == KEEL_OK)
    rc = keel_receive(self, call_match, &ref, KEEL_INFINITY, &m);
  if (rc == KEEL_OK && keel_tuple_arity(m) == 5)
    rc = KEEL_ENOPROC;
  if (rc == KEEL_OK &&
      (*ans = keel_term_copy(h, keel_tuple_get(m, 1))) == KEEL_NONE)
    rc = KEEL_ENOMEM;
  if (rc != KEEL_OK && rc != KEEL_ENOPROC && ref != KEEL_NONE)
    (void)keel_demonitor(self, ref, KEEL_DEMONITOR_FLUSH);
  keel_heap_destroy(&tmp);
  return rc;
}

typedef struct call_ctx {
  keel_term sup, body, ans;
  keel_heap *h;
  int rc;
} call_ctx;

static void call_body(keel_proc *self, void *arg) {
  call_ctx *c = arg;
  c->rc = fiber_call(self, c->sup, c->body, c->h, &c->ans);
}

/* fiber_call from a fiber (self) or a plain thread (self NULL). */
static int sup_call(keel_proc *self, keel_term sup, keel_term body,
                    keel_heap *h, keel_term *ans) {
  if (keel_is_atom(sup)) { /* a registered supervisor */
    sup = keel_whereis(sup);
    if (!keel_is_local_pid(sup))
      return KEEL_ENOPROC;
  }
  if (!keel_is_local_pid(sup))
    return KEEL_EBADARG;
  if (self != NULL) {
    if (keel_current() != self || !keel_proc_is_fiber(self))
      return KEEL_ESTATE;
    return fiber_call(self, sup, body, h, ans);
  }
  call_ctx c = {sup, body, KEEL_NONE, h, KEEL_ESTATE};
  int rc = keel__task_proxy(call_body, &c);
  if (rc == KEEL_OK && (rc = c.rc) == KEEL_OK)
    *ans = c.ans;
  return rc;
}

/* Asks sup to start a child for owner (KEEL_ATOM(UNDEFINED): none). */
static int sup_start_call(keel_proc *self, keel_term sup, keel_term owner,
                          keel_task_fn fn, void *arg, keel_term input,
                          keel_term *pid) {
  if (fn == NULL || input == KEEL_NONE)
    return KEEL_EINVAL;
  keel_heap h;
  keel_heap_init(&h);
  keel_term sb = keel__task_spec_term(&h, fn, arg);
  keel_term callers = keel__task_child_callers(&h);
  keel_term body =
      sb == KEEL_NONE || callers == KEEL_NONE
          ? KEEL_NONE
          : keel_tuple(&h, 5, keel_atom("start"), owner, sb, input, callers);
  keel_term ans = KEEL_NONE;
  int rc =
      body == KEEL_NONE ? KEEL_ENOMEM : sup_call(self, sup, body, &h, &ans);
  if (rc == KEEL_OK) {
    if (keel_tuple_get(ans, 0) == KEEL_ATOM(OK))
      *pid = keel_tuple_get(ans, 1);
    else
      rc = keel_tuple_get(ans, 1) == keel_atom("max_children") ? KEEL_ELIMIT
                                                               : KEEL_ESYSLIMIT;
  }
  keel_heap_destroy(&h);
  return rc;
}

int keel_task_sup_start_child(keel_proc *self, keel_term sup, keel_task_fn fn,
                              void *arg, keel_term input, keel_term *pid) {
  keel_term p;
  int rc = sup_start_call(self, sup, KEEL_ATOM(UNDEFINED), fn, arg, input, &p);
  if (rc == KEEL_OK && pid != NULL)
    *pid = p;
  return rc;
}

int keel_task_sup_async_nolink(keel_proc *self, keel_term sup, keel_task_fn fn,
                               void *arg, keel_term input, keel_heap *h,
                               keel_task *out) {
  if (self == NULL)
    return KEEL_ESTATE;
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_term pid, ref;
  int rc = sup_start_call(self, sup, keel_self(self), fn, arg, input, &pid);
  if (rc != KEEL_OK)
    return rc;
  rc = keel_monitor(self, pid,
                    KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR, h, &ref);
  if (rc == KEEL_OK)
    rc = keel__task_go(pid, ref, fn, arg, input);
  if (rc != KEEL_OK) {
    (void)keel_exit(pid, KEEL_ATOM(KILL));
    return rc;
  }
  *out = (keel_task){
      .pid = pid, .ref = ref, .owner = keel_self(self), .linked = false};
  return KEEL_OK;
}

int keel_task_sup_children(keel_proc *self, keel_term sup, keel_heap *h,
                           keel_term *list) {
  if (h == NULL || list == NULL)
    return KEEL_EINVAL;
  return sup_call(self, sup, keel_atom("children"), h, list);
}

int keel_task_sup_terminate_child(keel_proc *self, keel_term sup,
                                  keel_term pid) {
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  keel_heap h;
  keel_heap_init(&h);
  keel_term body = keel_tuple(&h, 2, keel_atom("terminate"), pid), ans;
  int rc =
      body == KEEL_NONE ? KEEL_ENOMEM : sup_call(self, sup, body, &h, &ans);
  if (rc == KEEL_OK && ans != KEEL_ATOM(OK))
    rc = KEEL_ENOENT;
  keel_heap_destroy(&h);
  return rc;
}
