/*
 * signal.c - signal records, their handling by the receiving process, and
 * what a process's death does to its relations (see signal.h).
 */
#include <stdlib.h>

#include "base/fault.h"
#include "keel/signals.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"
#include "runtime/timer.h"

/* ---- records ----------------------------------------------------------- */

rt_sig *keel__rt_sig_new(rt_node *n, unsigned kind, unsigned flags,
                         uint64_t from, uint64_t key, keel_term msg) {
  _Static_assert(sizeof(rt_sig) <= RT_POOL_BYTES, "a signal fits a pool block");
  rt_sig *sig = keel__fault() ? NULL : keel__rt_rec_alloc(n, keel__rt_tl_sched);
  if (sig == NULL)
    return NULL;
  sig->term = KEEL_NONE;
  sig->extra = RT_ENTRY_SIGNAL;
  sig->kind = (uint8_t)kind;
  sig->flags = (uint8_t)flags;
  atomic_store_explicit(&sig->mstate, RT_MON_LIVE, memory_order_relaxed);
  sig->from = from;
  sig->key = key;
  sig->msg = NULL;
  if (msg != KEEL_NONE) {
    sig->msg = keel__rt_msg_new(n, keel__rt_tl_sched, msg);
    if (sig->msg == NULL) {
      keel__rt_rec_free(n, keel__rt_tl_sched, sig);
      return NULL;
    }
  }
  return sig;
}

void keel__rt_sig_free(rt_sig *sig) {
  /* A shared monitor request dropped unseen (node stop): the monitoring
   * process frees it, unless it has let go of it already. */
  if (sig->kind == RT_SIG_MONITOR && (sig->flags & RT_SIGF_SHARED) &&
      atomic_exchange_explicit(&sig->mstate, RT_MON_DONE,
                               memory_order_acq_rel) != RT_MON_CANCELLED)
    return;
  if (sig->kind == RT_SIG_INFO && sig->key != 0) /* unanswered: gone */
    keel__rt_info_answer((rt_info_req *)(uintptr_t)sig->key, 0, true);
  if (sig->msg != NULL)
    keel__rt_free_msg(sig->msg);
  keel__rt_rec_free(keel__rt, keel__rt_tl_sched, sig);
}

bool keel__rt_sig_send(rt_node *n, uint64_t to, rt_sig *sig) {
  if (keel__rt_deliver_signal(n, to, (rt_msg *)sig))
    return true;
  keel__rt_sig_free(sig);
  return false;
}

bool keel__rt_sig_send_lazy(rt_node *n, uint64_t to, rt_sig *sig) {
  if (keel__rt_deliver_lazy(n, to, (rt_msg *)sig))
    return true;
  keel__rt_sig_free(sig);
  return false;
}

/* ---- the messages signals become --------------------------------------- */

/* Words enough for a 5-tuple and a pid ref (the reason is referenced, and
 * copied by the message allocation). */
#define SCRATCH_WORDS 32

static keel_term pid_or_undefined(uint64_t num) {
  return num != RT_NO_PID ? keel_pid_local(num) : KEEL_ATOM(UNDEFINED);
}

static bool is_immediate(keel_term t) {
  return (t & KEEL_TAG_SMALL) != 0; /* a small or another immediate */
}

rt_sig *keel__rt_exit_sig_new(rt_node *n, unsigned flags, uint64_t from,
                              keel_term reason) {
  if (is_immediate(reason)) /* no message unless the receiver traps */
    return keel__rt_sig_new(n, RT_SIG_EXIT, flags | RT_SIGF_IMM, from, reason,
                            KEEL_NONE);
  uint64_t buf[SCRATCH_WORDS];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, SCRATCH_WORDS);
  keel_term t =
      keel_tuple(&h, 3, KEEL_ATOM(EXIT), pid_or_undefined(from), reason);
  return t != KEEL_NONE ? keel__rt_sig_new(n, RT_SIG_EXIT, flags, from, 0, t)
                        : NULL;
}

/* Sends an exit signal {'EXIT', From, Reason} from `from` to `to`. */
static void send_exit(rt_node *n, uint64_t from, uint64_t to, keel_term reason,
                      unsigned flags) {
  if (keel__rt_lookup(n, to) == NULL)
    return; /* dead already: it would be refused (skips the allocation) */
  rt_sig *sig = keel__rt_exit_sig_new(n, flags, from, reason);
  if (sig != NULL)
    (void)keel__rt_sig_send(n, to, sig);
}

/* Sends the 'DOWN' of monitor `ref` (of `origin`) for the process `dead`. */
static void send_down(rt_node *n, uint64_t dead, uint64_t origin, uint64_t ref,
                      bool alias, keel_term reason) {
  if (keel__rt_lookup(n, origin) == NULL)
    return; /* dead already: it would be refused */
  uint64_t buf[SCRATCH_WORDS];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, SCRATCH_WORDS);
  keel_term r = keel__rt_ref_term(&h, ref, alias ? origin : RT_NO_PID);
  keel_term t = r == KEEL_NONE
                    ? KEEL_NONE
                    : keel_tuple(&h, 5, KEEL_ATOM(DOWN), r, KEEL_ATOM(PROCESS),
                                 keel_pid_local(dead), reason);
  rt_sig *sig =
      t != KEEL_NONE ? keel__rt_sig_new(n, RT_SIG_DOWN, 0, dead, ref, t) : NULL;
  if (sig != NULL)
    (void)keel__rt_sig_send(n, origin, sig);
}

void keel__rt_send_down_noproc(rt_node *n, keel_proc *self, uint64_t target,
                               uint64_t ref, bool alias) {
  send_down(n, target, self->pid_number, ref, alias, KEEL_ATOM(NOPROC));
}

void keel__rt_send_exit(rt_node *n, uint64_t from, uint64_t to,
                        keel_term reason, unsigned flags) {
  send_exit(n, from, to, reason, flags);
}

static void send_simple(rt_node *n, unsigned kind, uint64_t from, uint64_t to,
                        uint64_t key) {
  rt_sig *sig = keel__rt_sig_new(n, kind, 0, from, key, KEEL_NONE);
  if (sig != NULL)
    (void)keel__rt_sig_send(n, to, sig);
}

/* ---- handling by a live process ---------------------------------------- */

/* Ends p with `reason` (copied into its heap). */
static void doom(keel_proc *p, keel_term reason, bool *die) {
  keel_term r = keel_term_copy(&p->heap, reason);
  p->exit_reason = r == KEEL_NONE ? KEEL_ATOM(SYSTEM_LIMIT) : r;
  *die = true;
}

/* The message an exit signal turns into, or NULL (ignored, or it killed p:
 * *die). */
static rt_msg *on_exit_sig(keel_proc *p, rt_sig *sig, bool *die) {
  if ((sig->flags & RT_SIGF_REMOTE) &&
      !keel__rt_remote_link_exit(p, keel_tuple_get(sig->msg->term, 1)))
    return NULL; /* no link (any more) to that remote pid: ignored */
  if (sig->flags & RT_SIGF_LINK) {
    rt_ent *e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_LINK, sig->from));
    if (e == NULL)
      return NULL; /* no link (any more): ignored */
    uint32_t st = e->state;
    keel__rt_ent_del(p->ext, e);
    if (st != RT_LINK_ACTIVE)
      return NULL; /* crossed our unlink */
  }
  rt_msg *m = sig->msg; /* NULL: RT_SIGF_IMM, the reason is in key */
  keel_term reason =
      m != NULL ? keel_tuple_get(m->term, 2) : (keel_term)sig->key;
  if (sig->flags & RT_SIGF_KILL) {
    doom(p, KEEL_ATOM(KILLED), die);
    return NULL;
  }
  if (p->trap_exit) {
    sig->msg = NULL;
    if (m != NULL)
      return m;
    /* The record becomes the message: {'EXIT', From, Reason} is 4 words
     * of immediates, the size of a pooled message's term. */
    uint64_t buf[8];
    keel_heap h;
    keel_heap_init_fixed(&h, buf, 8);
    keel_term t =
        keel_tuple(&h, 3, KEEL_ATOM(EXIT), pid_or_undefined(sig->from), reason);
    return keel__rt_rec_to_msg(keel__rt, keel__rt_tl_sched, sig, t);
  }
  if (reason == KEEL_ATOM(NORMAL)) {
    if (!(sig->flags & RT_SIGF_LINK) && sig->from == p->pid_number)
      doom(p, reason, die); /* exit(self(), normal) */
    return NULL;
  }
  doom(p, reason, die);
  return NULL;
}

static void on_link(rt_node *n, keel_proc *p, rt_sig *sig) {
  uint64_t key = RT_EK_KEY(RT_EK_LINK, sig->from);
  rt_ext *x = keel__rt_ext(p);
  if (x != NULL && keel__rt_ent_find(x, key) != NULL)
    return; /* active already, or unlinking: our unlink decides */
  rt_ent *e = x != NULL ? keel__rt_ent_add(x, key) : NULL;
  if (e == NULL) {
    /* Cannot record the link: answer as a process that cannot link. */
    send_exit(n, p->pid_number, sig->from, KEEL_ATOM(SYSTEM_LIMIT),
              RT_SIGF_LINK);
    return;
  }
  e->state = RT_LINK_ACTIVE;
}

static void on_unlink(rt_node *n, keel_proc *p, rt_sig *sig) {
  rt_ent *e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_LINK, sig->from));
  if (e != NULL && e->state == RT_LINK_ACTIVE)
    keel__rt_ent_del(p->ext, e);
  send_simple(n, RT_SIG_UNLINK_ACK, p->pid_number, sig->from, sig->key);
}

static void on_unlink_ack(keel_proc *p, rt_sig *sig) {
  rt_ent *e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_LINK, sig->from));
  if (e != NULL && e->state == RT_LINK_UNLINKING && e->peer == sig->key)
    keel__rt_ent_del(p->ext, e);
}

/* Records in p's table that `from` monitors p under ref number key. */
static void on_monitor(rt_node *n, keel_proc *p, uint64_t from, uint64_t key,
                       bool alias) {
  rt_ext *x = keel__rt_ext(p);
  rt_ent *e =
      x != NULL ? keel__rt_ent_add(x, RT_EK_KEY(RT_EK_MON_BY, key)) : NULL;
  if (e == NULL) {
    send_down(n, p->pid_number, from, key, alias, KEEL_ATOM(SYSTEM_LIMIT));
    return;
  }
  e->peer = from;
  e->flags = alias ? RT_MONF_ALIAS : 0;
}

/* The target's side of a MONITOR record, whose fields the caller has
 * read: true when the request stands (a shared record now belongs to
 * the monitoring process: not to be touched again), false when the
 * monitoring process cancelled it. Frees what is the target's to free. */
static bool monitor_take(rt_sig *sig) {
  if ((sig->flags & RT_SIGF_SHARED) &&
      atomic_exchange_explicit(&sig->mstate, RT_MON_DONE,
                               memory_order_acq_rel) != RT_MON_CANCELLED)
    return true;
  bool cancelled = (sig->flags & RT_SIGF_SHARED) != 0;
  sig->flags &= (uint8_t)~RT_SIGF_SHARED;
  keel__rt_sig_free(sig);
  return !cancelled;
}

/* A MONITOR request met by its target p (alive; or dying, its 'DOWN'
 * then carrying p's reason). Consumes sig. */
static void monitor_arrived(rt_node *n, keel_proc *p, rt_sig *sig) {
  uint64_t from = sig->from, key = sig->key;
  bool alias = (sig->flags & RT_SIGF_ALIAS) != 0;
  if (monitor_take(sig))
    on_monitor(n, p, from, key, alias);
}

void keel__rt_mon_end(rt_node *n, keel_proc *p, rt_ent *e, rt_mon_send send) {
  rt_sig *sig = e->rec;
  e->rec = NULL;
  if (sig != NULL) {
    if (atomic_exchange_explicit(&sig->mstate, RT_MON_CANCELLED,
                                 memory_order_acq_rel) == RT_MON_LIVE)
      return; /* unseen: cancelled; the target frees the record */
    /* Seen: the record is ours; it becomes the DEMONITOR. */
    sig->flags = 0;
    if (!send) {
      keel__rt_sig_free(sig);
      return;
    }
    sig->kind = RT_SIG_DEMONITOR;
    sig->from = p->pid_number;
    sig->key = e->key & RT_EK_VAL_MASK;
    (void)keel__rt_sig_send_lazy(n, e->peer, sig);
    return;
  }
  if (!send)
    return;
  /* Without memory the target keeps a stale entry; its 'DOWN' will be
   * dropped here, so the guarantee holds either way. */
  sig = keel__rt_sig_new(n, RT_SIG_DEMONITOR, 0, p->pid_number,
                         e->key & RT_EK_VAL_MASK, KEEL_NONE);
  if (sig != NULL)
    (void)keel__rt_sig_send_lazy(n, e->peer, sig);
}

static void on_demonitor(keel_proc *p, rt_sig *sig) {
  rt_ent *e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_MON_BY, sig->key));
  if (e != NULL && e->peer == sig->from)
    keel__rt_ent_del(p->ext, e);
}

static rt_msg *take_msg(rt_sig *sig) {
  rt_msg *m = sig->msg;
  sig->msg = NULL;
  return m;
}

static rt_msg *on_down(keel_proc *p, rt_sig *sig) {
  if (sig->flags & RT_SIGF_REMOTE)
    return keel__rt_remote_down(p, sig->key, keel_tuple_get(sig->msg->term, 3))
               ? take_msg(sig)
               : NULL;
  rt_ent *e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_MON, sig->key));
  if (e == NULL || e->peer != sig->from)
    return NULL; /* demonitored: dropped (G17) */
  keel__rt_mon_end(keel__rt, p, e, RT_MON_SEND_NONE);
  keel__rt_ent_del(p->ext, e);
  return take_msg(sig);
}

static rt_msg *on_alias_msg(rt_node *n, keel_proc *p, rt_sig *sig) {
  /* A ref number names one monitor or one plain alias, never both: the
   * monitor first (a call's reply), then the plain alias. */
  rt_ent *e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_MON, sig->key));
  if (e == NULL) {
    e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_ALIAS, sig->key));
    return e != NULL ? take_msg(sig) : NULL; /* dropped if none */
  }
  if (!(e->flags & RT_MONF_ALIAS))
    return NULL; /* a monitor without an alias: dropped */
  if (e->flags & RT_MONF_REPLY_DEMON) {
    keel__rt_mon_end(n, p, e, RT_MON_SEND_LAZY);
    keel__rt_ent_del(p->ext, e);
  }
  return take_msg(sig);
}

rt_msg *keel__rt_sig_handle(rt_node *n, keel_proc *p, rt_sig *sig, bool *die) {
  rt_msg *m = NULL;
  switch (sig->kind) {
  case RT_SIG_EXIT:
    m = on_exit_sig(p, sig, die);
    if (m == (rt_msg *)sig) { /* the record itself became the message */
      keel__rt_mq_out(p, -1);
      return m;
    }
    break;
  case RT_SIG_LINK:
    on_link(n, p, sig);
    break;
  case RT_SIG_UNLINK:
    on_unlink(n, p, sig);
    break;
  case RT_SIG_UNLINK_ACK:
    on_unlink_ack(p, sig);
    break;
  case RT_SIG_MONITOR:
    monitor_arrived(n, p, sig);
    return NULL;
  case RT_SIG_DEMONITOR:
    on_demonitor(p, sig);
    break;
  case RT_SIG_DOWN:
    m = on_down(p, sig);
    break;
  case RT_SIG_ALIAS_MSG:
    m = on_alias_msg(n, p, sig);
    break;
  case RT_SIG_NODEDOWN:
    keel__rt_remote_nodedown(n, p, sig, die);
    break;
  case RT_SIG_INFO: /* the messages before the question are all fetched */
    keel__rt_info_relations((rt_info_req *)(uintptr_t)sig->key, p);
    keel__rt_info_answer((rt_info_req *)(uintptr_t)sig->key,
                         keel__rt_inner_count(p), false);
    sig->key = 0;
    break;
  default:
    break;
  }
  keel__rt_sig_free(sig);
  if (m != NULL)
    keel__rt_mq_out(p, -1); /* a message without a sender's count */
  return m;
}

bool keel__rt_sig_drain(rt_node *n, keel_proc *p) {
  for (rt_msg *m; (m = keel__mbox_pop(p)) != NULL;) {
    if (!rt_entry_is_signal(m) || ((rt_sig *)m)->kind == RT_SIG_MARK) {
      if (rt_entry_is_signal(m))
        ((rt_sig *)m)->key = 1; /* a mark now in the inner queue */
      keel__rt_inner_append(p, m);
      continue;
    }
    bool die = false;
    rt_msg *mm = keel__rt_sig_handle(n, p, (rt_sig *)m, &die);
    if (die)
      return true;
    if (mm != NULL)
      keel__rt_inner_append(p, mm);
  }
  return false;
}

rt_msg *keel__rt_next_entry(rt_node *n, keel_proc *p, bool *die) {
  for (;;) {
    rt_msg *m =
        p->inner_head != NULL ? keel__rt_inner_pop(p) : keel__mbox_pop(p);
    if (m == NULL || !rt_entry_is_signal(m))
      return m;
    rt_msg *mm = keel__rt_sig_handle(n, p, (rt_sig *)m, die);
    if (*die)
      return NULL;
    if (mm != NULL)
      return mm;
  }
}

/* ---- death ------------------------------------------------------------- */

/* A signal found in the queue of a dying process. */
static void on_signal_dying(rt_node *n, keel_proc *p, rt_sig *sig,
                            bool notify) {
  if (notify) {
    switch (sig->kind) {
    case RT_SIG_LINK: {
      rt_ent *e = keel__rt_ent_find(p->ext, RT_EK_KEY(RT_EK_LINK, sig->from));
      if (e == NULL || e->state != RT_LINK_ACTIVE)
        send_exit(n, p->pid_number, sig->from, KEEL_ATOM(NOPROC), RT_SIGF_LINK);
      break;
    }
    case RT_SIG_UNLINK:
      on_unlink(n, p, sig);
      break;
    case RT_SIG_UNLINK_ACK:
      on_unlink_ack(p, sig);
      break;
    case RT_SIG_MONITOR: /* came while p was alive: 'DOWN' with p's reason */
      monitor_arrived(n, p, sig);
      return;
    case RT_SIG_DEMONITOR:
      on_demonitor(p, sig);
      break;
    default:
      break;
    }
  }
  keel__rt_sig_free(sig);
}

void keel__rt_sig_refused(rt_node *n, uint64_t to, rt_sig *sig) {
  switch (sig->kind) {
  case RT_SIG_LINK:
    send_exit(n, to, sig->from, KEEL_ATOM(NOPROC), RT_SIGF_LINK);
    break;
  case RT_SIG_UNLINK:
    send_simple(n, RT_SIG_UNLINK_ACK, to, sig->from, sig->key);
    break;
  case RT_SIG_MONITOR: {
    uint64_t from = sig->from, key = sig->key;
    bool alias = (sig->flags & RT_SIGF_ALIAS) != 0;
    if (monitor_take(sig))
      send_down(n, to, from, key, alias, KEEL_ATOM(NOPROC));
    return;
  }
  default:
    break;
  }
  keel__rt_sig_free(sig);
}

static void free_entry(rt_node *n, keel_proc *p, rt_msg *m) {
  if (m->term != KEEL_NONE)
    keel__rt_free_msg(m);
  else if (m->extra == RT_ENTRY_TIMER)
    (void)keel__rt_timeout_popped(n, p, m);
  else
    keel__rt_sig_free((rt_sig *)m);
}

/* Tells every relation in p's table that p died: links first, then
 * monitors (so a partner that both links and monitors sees the exit
 * signal before the 'DOWN'). */
static void notify_relations(rt_node *n, keel_proc *p) {
  rt_ext *x = p->ext;
  if (x == NULL)
    return;
  keel_term reason = p->exit_reason;
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < x->cap; i++) {
      rt_ent *e = &x->tab[i];
      uint64_t v = e->key & RT_EK_VAL_MASK;
      uint64_t kind = e->key >> RT_EK_SHIFT;
      if (pass == 0 && kind == RT_EK_LINK)
        send_exit(n, p->pid_number, v, reason, RT_SIGF_LINK);
      else if (pass == 1 && kind == RT_EK_MON_BY)
        send_down(n, p->pid_number, e->peer, v, (e->flags & RT_MONF_ALIAS) != 0,
                  reason);
      else if (pass == 1 && kind == RT_EK_MON)
        keel__rt_mon_end(n, p, e, RT_MON_SEND_LAZY);
    }
  }
}

/* Lets go of the shared records of p's monitors (node stop: nothing is
 * sent). */
static void release_monitors(rt_node *n, keel_proc *p) {
  rt_ext *x = p->ext;
  for (uint32_t i = 0; x != NULL && i < x->cap; i++)
    if (x->tab[i].key >> RT_EK_SHIFT == RT_EK_MON && x->tab[i].rec != NULL)
      keel__rt_mon_end(n, p, &x->tab[i], RT_MON_SEND_NONE);
}

/* ---- exit hooks ---------------------------------------------------------- */

static struct {
  _Atomic(keel_exit_hook_fn) fn;
  void *_Atomic arg;
} hooks[KEEL_EXIT_HOOKS_MAX];
static _Atomic int nhooks;

int keel_exit_hook_add(keel_exit_hook_fn fn, void *arg) {
  if (fn == NULL)
    return KEEL_EINVAL;
  int id = atomic_fetch_add(&nhooks, 1);
  if (id >= KEEL_EXIT_HOOKS_MAX) {
    atomic_fetch_sub(&nhooks, 1);
    return KEEL_ESYSLIMIT;
  }
  atomic_store(&hooks[id].arg, arg);
  atomic_store(&hooks[id].fn, fn);
  return id;
}

int keel_exit_hook_arm(keel_term pid, int id) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  if (id < 0 || id >= KEEL_EXIT_HOOKS_MAX || atomic_load(&hooks[id].fn) == NULL)
    return KEEL_EINVAL;
  keel_proc *p = keel__rt_pin(n, keel_pid_local_number(pid));
  if (p == NULL)
    return KEEL_ENOPROC;
  atomic_fetch_or(&p->exit_hooks, (uint16_t)(1u << id));
  keel__rt_unpin(p);
  return KEEL_OK;
}

static void run_exit_hooks(keel_proc *p) {
  unsigned armed = atomic_exchange(&p->exit_hooks, 0);
  for (int i = 0; armed != 0; i++, armed >>= 1)
    if (armed & 1u) {
      keel_exit_hook_fn fn = atomic_load(&hooks[i].fn);
      fn(keel_pid_local(p->pid_number), p->exit_reason,
         atomic_load(&hooks[i].arg));
    }
}

void keel__rt_sig_on_death(rt_node *n, keel_proc *p) {
  bool notify = !atomic_load_explicit(&n->stopping, memory_order_relaxed);
  keel__rt_name_release(n, p);
  run_exit_hooks(p);
  for (rt_msg *m; (m = keel__rt_inner_pop(p)) != NULL;)
    free_entry(n, p, m);
  for (rt_msg *m; (m = keel__mbox_pop(p)) != NULL;) {
    if (rt_entry_is_signal(m))
      on_signal_dying(n, p, (rt_sig *)m, notify);
    else
      free_entry(n, p, m);
  }
  if (notify)
    notify_relations(n, p);
  else
    release_monitors(n, p);
  keel__rt_remote_on_death(p, notify);
  keel__rt_ext_clear(p);
}
