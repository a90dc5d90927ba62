/*
 * link.c - the process-side API of exit signals, links, monitors and
 * aliases (keel/signals.h). Each call updates the caller's own table and
 * sends one signal; the other side updates its table when it handles the
 * signal (signal.c).
 */
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"

/* Whether self is the process running on this thread. */
static bool is_caller(const keel_proc *self) {
  return self != NULL && self == keel__rt_tl_proc && keel__rt != NULL;
}

/* Charges self (may be NULL) for a signal it sent, as keel_send charges
 * a message: a fiber whose slice was used up before gives way (a process
 * looping on monitor/demonitor or link/unlink is preempted as BEAM's
 * would be). Called last: nothing after it reads the thread's scheduler. */
static void charge(keel_proc *self) {
  if (self == NULL)
    return;
  if (self->fiber != NULL && self->budget <= 0)
    (void)keel__rt_fiber_budget_yield(self);
  self->budget -= KEEL_COST_SEND;
}

/* ---- exit signals ------------------------------------------------------ */

int keel_exit(keel_term pid, keel_term reason) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid) && !keel_is_pid(pid))
    return KEEL_EBADARG;
  if (reason == KEEL_NONE)
    return KEEL_EINVAL;
  keel_proc *self = keel__rt_tl_proc;
  if (!keel_is_local_pid(pid))
    return keel__rt_remote_exit(self, pid, reason);
  uint64_t from = self != NULL ? self->pid_number : RT_NO_PID;
  uint64_t to = keel_pid_local_number(pid);
  if (keel__rt_lookup(n, to) == NULL)
    return KEEL_OK; /* dead: nothing happens */
  unsigned flags = reason == KEEL_ATOM(KILL) ? RT_SIGF_KILL : 0;
  rt_sig *sig = keel__rt_exit_sig_new(n, flags, from, reason);
  if (sig == NULL)
    return KEEL_ENOMEM;
  (void)keel__rt_sig_send(n, to, sig);
  charge(self);
  return KEEL_OK;
}

bool keel_trap_exit(keel_proc *self, bool on) {
  bool old = self->trap_exit;
  self->trap_exit = on;
  return old;
}

bool keel_trapping_exits(const keel_proc *self) {
  return self->trap_exit;
}

/* ---- links ------------------------------------------------------------- */

/* The exit message a dead link target leaves to a trapping linker. */
static int link_noproc(keel_proc *self, uint64_t target) {
  if (!self->trap_exit)
    return KEEL_ENOPROC;
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term t = keel_tuple(&h, 3, KEEL_ATOM(EXIT), keel_pid_local(target),
                           KEEL_ATOM(NOPROC));
  rt_msg *m = keel__rt_msg_new(keel__rt, keel__rt_tl_sched, t);
  if (m == NULL)
    return KEEL_ENOMEM;
  keel__rt_inner_append(self, m);
  keel__rt_mq_out(self, -1);
  return KEEL_OK;
}

int keel_link(keel_proc *self, keel_term pid) {
  if (!keel_is_local_pid(pid) && !keel_is_pid(pid))
    return KEEL_EBADARG;
  if (!is_caller(self))
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid))
    return keel__rt_remote_link(self, pid);
  rt_node *n = keel__rt;
  uint64_t to = keel_pid_local_number(pid);
  if (to == self->pid_number)
    return KEEL_OK;
  rt_ext *x = keel__rt_ext(self);
  if (x == NULL)
    return KEEL_ENOMEM;
  uint64_t key = RT_EK_KEY(RT_EK_LINK, to);
  rt_ent *e = keel__rt_ent_find(x, key);
  if (e != NULL && e->state == RT_LINK_ACTIVE)
    return KEEL_OK; /* idempotent (G12) */
  rt_sig *sig =
      keel__rt_sig_new(n, RT_SIG_LINK, 0, self->pid_number, 0, KEEL_NONE);
  if (sig == NULL)
    return KEEL_ENOMEM;
  bool was_unlinking = e != NULL; /* (an active one returned above) */
  if (e == NULL && (e = keel__rt_ent_add(x, key)) == NULL) {
    keel__rt_sig_free(sig);
    return KEEL_ENOMEM;
  }
  e->state = RT_LINK_ACTIVE;
  if (keel__rt_sig_send(n, to, sig)) {
    charge(self);
    return KEEL_OK;
  }
  /* A dead pid (G11). An unlink of ours still in flight keeps its state:
   * signals the peer sent before dying (its acknowledgement, an old link
   * request) may still arrive, and must find us unlinking, not unlinked,
   * or they would leave a link to a dead process. */
  if (was_unlinking)
    e->state = RT_LINK_UNLINKING;
  else
    keel__rt_ent_del(x, e);
  return link_noproc(self, to);
}

int keel_unlink(keel_proc *self, keel_term pid) {
  if (!keel_is_local_pid(pid) && !keel_is_pid(pid))
    return KEEL_EBADARG;
  if (!is_caller(self))
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid))
    return keel__rt_remote_unlink(self, pid);
  rt_node *n = keel__rt;
  uint64_t to = keel_pid_local_number(pid);
  rt_ent *e = keel__rt_ent_find(self->ext, RT_EK_KEY(RT_EK_LINK, to));
  if (e == NULL || e->state != RT_LINK_ACTIVE)
    return KEEL_OK;
  uint64_t id = ++self->ext->unlink_seq;
  rt_sig *sig =
      keel__rt_sig_new(n, RT_SIG_UNLINK, 0, self->pid_number, id, KEEL_NONE);
  if (sig == NULL)
    return KEEL_ENOMEM;
  e->state = RT_LINK_UNLINKING;
  e->peer = id;
  /* If the peer is dead the request is refused and no acknowledgement
   * will come, but the entry stays UNLINKING: a link request or an exit
   * signal it sent before dying may still be on its way, and must not act
   * (G13) nor re-create the link. It goes with the exit signal, or with
   * this process. */
  (void)keel__rt_sig_send(n, to, sig);
  charge(self);
  return KEEL_OK;
}

/* Removes from self's inner queue the messages for which pred is true;
 * returns how many. */
static size_t inner_remove(keel_proc *self, bool (*pred)(keel_term, keel_term),
                           keel_term arg) {
  size_t removed = 0;
  rt_msg *prev = NULL;
  for (rt_msg *m = self->inner_head; m != NULL;) {
    rt_msg *next = rt_msg_next(m);
    if (m->term != KEEL_NONE && pred(m->term, arg)) {
      keel__rt_inner_unlink(self, prev, m);
      keel__rt_free_msg(m);
      keel__rt_mq_out(self, 1);
      removed++;
    } else {
      prev = m;
    }
    m = next;
  }
  return removed;
}

static bool is_exit_from(keel_term t, keel_term pid) {
  return keel_is_tuple(t) && keel_tuple_arity(t) == 3 &&
         keel_tuple_get(t, 0) == KEEL_ATOM(EXIT) &&
         keel_eq_exact(keel_tuple_get(t, 1), pid);
}

size_t keel_flush_exit(keel_proc *self, keel_term pid) {
  if (!is_caller(self))
    return 0;
  return inner_remove(self, is_exit_from, pid);
}

/* ---- monitors ---------------------------------------------------------- */

/* keel_monitor of a pid of another node. */
static int monitor_remote(keel_proc *self, keel_term pid, unsigned flags,
                          keel_heap *h, keel_term *ref) {
  if (flags != 0)
    return KEEL_EUNSUPPORTED;
  uint64_t num = keel__rt_ref_next(keel__rt);
  keel_term r = keel__rt_ref_term(h, num, RT_NO_PID);
  if (r == KEEL_NONE)
    return KEEL_ENOMEM;
  int rc = keel__rt_remote_monitor(self, pid, num);
  if (rc == KEEL_OK)
    *ref = r;
  return rc;
}

int keel_monitor(keel_proc *self, keel_term pid, unsigned flags, keel_heap *h,
                 keel_term *ref) {
  if (!keel_is_local_pid(pid) && !keel_is_pid(pid))
    return KEEL_EBADARG;
  if (h == NULL || ref == NULL ||
      (flags & ~(unsigned)(KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR)))
    return KEEL_EINVAL;
  if (!is_caller(self))
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid))
    return monitor_remote(self, pid, flags, h, ref);
  rt_node *n = keel__rt;
  bool alias = (flags & KEEL_MONITOR_ALIAS) != 0;
  uint64_t target = keel_pid_local_number(pid);
  uint64_t num = keel__rt_ref_next(n);
  keel_term r = keel__rt_ref_term(h, num, alias ? self->pid_number : RT_NO_PID);
  rt_ext *x = keel__rt_ext(self);
  /* The record is shared with the target (see RT_MON_LIVE): a demonitor
   * before the target has seen it cancels both, with no second signal. */
  rt_sig *sig = keel__rt_sig_new(n, RT_SIG_MONITOR,
                                 RT_SIGF_SHARED | (alias ? RT_SIGF_ALIAS : 0),
                                 self->pid_number, num, KEEL_NONE);
  rt_ent *e = r != KEEL_NONE && x != NULL && sig != NULL
                  ? keel__rt_ent_add(x, RT_EK_KEY(RT_EK_MON, num))
                  : NULL;
  if (e == NULL) {
    if (sig != NULL) {
      sig->flags = 0; /* never sent: not shared */
      keel__rt_sig_free(sig);
    }
    return KEEL_ENOMEM;
  }
  e->peer = target;
  e->flags =
      (alias ? RT_MONF_ALIAS : 0) |
      ((flags & KEEL_MONITOR_REPLY_DEMONITOR) && alias ? RT_MONF_REPLY_DEMON
                                                       : 0);
  if (keel__rt_deliver_lazy(n, target, (rt_msg *)sig)) {
    e->rec = sig; /* ours until we let go of it (keel__rt_mon_end) */
  } else {
    sig->flags = 0; /* refused: never shared */
    keel__rt_sig_free(sig);
    keel__rt_send_down_noproc(n, self, target, num, alias); /* G16 */
  }
  *ref = r;
  charge(self);
  return KEEL_OK;
}

static bool is_down_of(keel_term t, keel_term ref) {
  return keel_is_tuple(t) && keel_tuple_arity(t) == 5 &&
         keel_tuple_get(t, 0) == KEEL_ATOM(DOWN) &&
         keel_eq_exact(keel_tuple_get(t, 1), ref);
}

int keel_demonitor(keel_proc *self, keel_term ref, unsigned flags) {
  if (!is_caller(self))
    return KEEL_ESTATE;
  uint64_t num, owner;
  if (!keel__rt_ref_decode(ref, &num, &owner))
    return 0;
  int active = 0;
  rt_ent *e = keel__rt_ent_find(self->ext, RT_EK_KEY(RT_EK_MON, num));
  if (e != NULL) {
    keel__rt_mon_end(keel__rt, self, e, RT_MON_SEND_LAZY);
    keel__rt_ent_del(self->ext, e);
    active = 1;
  } else if (keel__rt_remote_demonitor(self, num)) {
    active = 1;
  }
  if (flags & KEEL_DEMONITOR_FLUSH)
    (void)inner_remove(self, is_down_of, ref);
  charge(self);
  return active;
}

/* ---- aliases ----------------------------------------------------------- */

int keel_alias(keel_proc *self, keel_heap *h, keel_term *alias) {
  if (h == NULL || alias == NULL)
    return KEEL_EINVAL;
  if (!is_caller(self))
    return KEEL_ESTATE;
  uint64_t num = keel__rt_ref_next(keel__rt);
  keel_term r = keel__rt_ref_term(h, num, self->pid_number);
  rt_ext *x = keel__rt_ext(self);
  if (r == KEEL_NONE || x == NULL ||
      keel__rt_ent_add(x, RT_EK_KEY(RT_EK_ALIAS, num)) == NULL)
    return KEEL_ENOMEM;
  *alias = r;
  return KEEL_OK;
}

int keel_unalias(keel_proc *self, keel_term alias) {
  if (!is_caller(self))
    return KEEL_ESTATE;
  uint64_t num, owner;
  if (!keel__rt_ref_decode(alias, &num, &owner) || owner != self->pid_number)
    return 0;
  rt_ent *e = keel__rt_ent_find(self->ext, RT_EK_KEY(RT_EK_ALIAS, num));
  if (e != NULL) {
    keel__rt_ent_del(self->ext, e);
    return 1;
  }
  e = keel__rt_ent_find(self->ext, RT_EK_KEY(RT_EK_MON, num));
  if (e != NULL && (e->flags & RT_MONF_ALIAS)) {
    e->flags &= ~(uint32_t)(RT_MONF_ALIAS | RT_MONF_REPLY_DEMON);
    return 1;
  }
  return 0;
}

static _Atomic(keel_remote_send_fn) remote_fn;
static void *_Atomic remote_arg;

void keel_set_remote_router(keel_remote_send_fn fn, void *arg) {
  atomic_store(&remote_arg, arg);
  atomic_store(&remote_fn, fn);
}

int keel__rt_send_other(rt_node *n, keel_term *dest, keel_term msg) {
  if (keel_is_pid(*dest)) { /* boxed: a pid of another node */
    keel_remote_send_fn fn = atomic_load(&remote_fn);
    return fn != NULL ? fn(*dest, msg, atomic_load(&remote_arg)) : KEEL_OK;
  }
  if (keel_is_atom(*dest)) {
    keel_term pid = keel_whereis(*dest);
    if (!keel_is_local_pid(pid))
      return KEEL_ENOPROC;
    *dest = pid;
    return 1;
  }
  uint64_t num, owner;
  if (!keel__rt_ref_decode(*dest, &num, &owner) || owner == RT_NO_PID)
    return KEEL_EBADARG;
  keel_proc *self = keel__rt_tl_proc;
  if (self != NULL)
    self->budget -= KEEL_COST_SEND;
  rt_sig *sig =
      keel__rt_sig_new(n, RT_SIG_ALIAS_MSG, 0,
                       self != NULL ? self->pid_number : RT_NO_PID, num, msg);
  if (sig == NULL)
    return KEEL_ENOMEM;
  (void)keel__rt_sig_send(n, owner, sig);
  return KEEL_OK;
}
