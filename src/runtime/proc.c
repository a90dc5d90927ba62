/*
 * proc.c - the process table, spawn, send, exit and process death.
 *
 * Slots are handed out from a lock-free stack of free indices (tagged
 * against ABA) and, when it is empty, from a high-water mark bounded by the
 * process limit. PCBs live in chunks that are only freed at node stop, so a
 * stale pid can always be checked against its slot's generation.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "base/futex.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"
#include "runtime/timer.h"

keel_proc *keel__rt_slot(rt_node *n, uint32_t idx) {
  if ((size_t)(idx >> RT_CHUNK_BITS) >= n->nchunks)
    return NULL;
  /* acquire: pairs with the release CAS that installs a chunk. */
  keel_proc *c = atomic_load_explicit(&n->chunks[idx >> RT_CHUNK_BITS],
                                      memory_order_acquire);
  return c == NULL ? NULL : &c[idx & (RT_CHUNK_SIZE - 1)];
}

static keel_proc *chunk_ensure(rt_node *n, uint32_t idx) {
  keel_proc *p = keel__rt_slot(n, idx);
  if (p != NULL)
    return p;
  size_t bytes = sizeof(keel_proc) * RT_CHUNK_SIZE;
  keel_proc *c = keel__fault() ? NULL : aligned_alloc(64, bytes);
  if (c == NULL)
    return NULL;
  memset(c, 0, bytes);
  keel_proc *expected = NULL;
  /* release: publishes the zeroed chunk to keel__rt_slot's acquire. */
  if (!atomic_compare_exchange_strong_explicit(
          &n->chunks[idx >> RT_CHUNK_BITS], &expected, c, memory_order_acq_rel,
          memory_order_acquire))
    free(c);
  return keel__rt_slot(n, idx);
}

static int slot_alloc(rt_node *n, uint32_t *out) {
  uint64_t top = atomic_load_explicit(&n->free_top, memory_order_acquire);
  while ((uint32_t)top != RT_FREE_NIL) {
    keel_proc *p = keel__rt_slot(n, (uint32_t)top);
    uint32_t next = atomic_load_explicit(&p->free_next, memory_order_relaxed);
    uint64_t ntop = (((top >> 32) + 1) << 32) | next;
    if (atomic_compare_exchange_weak_explicit(&n->free_top, &top, ntop,
                                              memory_order_acq_rel,
                                              memory_order_acquire)) {
      *out = (uint32_t)top;
      return KEEL_OK;
    }
  }
  uint32_t hw = atomic_load_explicit(&n->high_water, memory_order_relaxed);
  do {
    if (hw >= n->max_procs)
      return KEEL_ESYSLIMIT;
  } while (!atomic_compare_exchange_weak_explicit(
      &n->high_water, &hw, hw + 1, memory_order_relaxed, memory_order_relaxed));
  if (chunk_ensure(n, hw) == NULL)
    return KEEL_ENOMEM; /* the index is lost; harmless */
  *out = hw;
  return KEEL_OK;
}

static void slot_release(rt_node *n, keel_proc *p, uint32_t idx) {
  uint64_t top = atomic_load_explicit(&n->free_top, memory_order_relaxed);
  uint64_t ntop;
  do {
    atomic_store_explicit(&p->free_next, (uint32_t)top, memory_order_relaxed);
    ntop = (((top >> 32) + 1) << 32) | idx;
    /* release: publishes free_next to slot_alloc's acquire. */
  } while (!atomic_compare_exchange_weak_explicit(
      &n->free_top, &top, ntop, memory_order_release, memory_order_relaxed));
}

/* ---- spawn ------------------------------------------------------------- */

/* spawn_link / spawn_monitor: relates parent and the new process p before
 * anyone else knows p's pid, so p's table may be written from here. */
static int relate_spawned(rt_node *n, keel_proc *parent, keel_proc *p,
                          const keel_spawn_opts *opts) {
  rt_ext *px = keel__rt_ext(parent);
  rt_ext *cx = keel__rt_ext(p);
  if (px == NULL || cx == NULL)
    return KEEL_ENOMEM;
  rt_ent *pl = NULL;
  if (opts->link) {
    uint64_t key = RT_EK_KEY(RT_EK_LINK, p->pid_number);
    rt_ent *cl =
        keel__rt_ent_add(cx, RT_EK_KEY(RT_EK_LINK, parent->pid_number));
    if (cl == NULL || (pl = keel__rt_ent_add(px, key)) == NULL)
      return KEEL_ENOMEM;
    cl->state = pl->state = RT_LINK_ACTIVE;
  }
  if (opts->monitor_ref == NULL)
    return KEEL_OK;
  uint64_t num = keel__rt_ref_next(n);
  keel_term ref = keel__rt_ref_term(opts->monitor_heap, num, RT_NO_PID);
  rt_ent *cm = keel__rt_ent_add(cx, RT_EK_KEY(RT_EK_MON_BY, num));
  rt_ent *pm = NULL;
  if (ref == KEEL_NONE || cm == NULL ||
      (pm = keel__rt_ent_add(px, RT_EK_KEY(RT_EK_MON, num))) == NULL) {
    if (opts->link) /* undo the parent's half; p's table is freed */
      keel__rt_ent_del(
          px, keel__rt_ent_find(px, RT_EK_KEY(RT_EK_LINK, p->pid_number)));
    return KEEL_ENOMEM;
  }
  cm->peer = parent->pid_number;
  pm->peer = p->pid_number;
  *opts->monitor_ref = ref;
  return KEEL_OK;
}

int keel__rt_spawn_common(rt_node *n, keel_handler_fn handler, void *state,
                          const keel_spawn_opts *opts, struct rt_fiber *f,
                          keel_proc **out) {
  if (opts != NULL && ((unsigned)opts->priority > KEEL_PRIO_MAX ||
                       opts->max_queue > UINT32_MAX ||
                       (unsigned)opts->queue_policy > KEEL_QUEUE_KILL ||
                       opts->long_queue_on > UINT32_MAX ||
                       (opts->long_queue_on != 0 &&
                        opts->long_queue_off >= opts->long_queue_on)))
    return KEEL_EINVAL;
  keel_proc *parent = NULL;
  bool relate = opts != NULL && (opts->link || opts->monitor_ref != NULL);
  if (relate) {
    if ((parent = keel__rt_tl_proc) == NULL)
      return KEEL_ESTATE;
    if (opts->monitor_ref != NULL && opts->monitor_heap == NULL)
      return KEEL_EINVAL;
  }
  uint32_t idx;
  int rc = slot_alloc(n, &idx);
  if (rc != KEEL_OK)
    return rc;
  keel_proc *p = keel__rt_slot(n, idx);
  p->handler = handler;
  p->state = state;
  p->terminate = opts != NULL ? opts->terminate : NULL;
  p->exit_reason = KEEL_ATOM(NORMAL);
  p->qnext = NULL;
  p->budget = 0;
  p->tmo = NULL;
  p->timed_out = false;
  p->trap_exit = false;
  atomic_store_explicit(&p->exit_hooks, 0, memory_order_relaxed);
  /* p->ext: NULL, or the emptied table the slot's last process left. */
  atomic_store_explicit(&p->name, 0, memory_order_relaxed);
  p->fiber = f;
  p->inner_head = p->inner_tail = NULL;
  p->inner_msgs = p->qscan_mbox = 0;
  p->qscan_at = 0;
  atomic_store_explicit(&p->qlen_want, false, memory_order_relaxed);
  atomic_store_explicit(&p->prio,
                        opts != NULL ? (uint8_t)opts->priority
                                     : (uint8_t)KEEL_PRIO_NORMAL,
                        memory_order_relaxed);
  p->mq_limit = opts != NULL ? (uint32_t)opts->max_queue : 0;
  p->long_on = opts != NULL ? (uint32_t)opts->long_queue_on : 0;
  p->long_off = opts != NULL ? (uint32_t)opts->long_queue_off : 0;
  p->counted = p->mq_limit != 0 || p->long_on != 0;
  atomic_store_explicit(&p->long_q, false, memory_order_relaxed);
  p->queue_kill = opts != NULL && opts->queue_policy == KEEL_QUEUE_KILL;
  atomic_store_explicit(&p->mq_in, 0, memory_order_relaxed);
  atomic_store_explicit(&p->mq_out, 0, memory_order_relaxed);
  atomic_store_explicit(&p->reductions, 0, memory_order_relaxed);
  atomic_store_explicit(&p->pub, 0, memory_order_relaxed);
  atomic_store_explicit(&p->pub_qlen, 0, memory_order_relaxed);
  keel_heap_init_sized(&p->heap, opts != NULL ? opts->min_heap_words : 0);
  keel__mbox_init(p);
  /* A fiber starts runnable; a handler process waits for mail. */
  uint64_t st = f != NULL ? RT_ST_SCHEDULED : RT_ST_IDLE;
  uint64_t ctl = atomic_load_explicit(&p->ctl, memory_order_relaxed);
  /* Only pins change a free slot's control word: the generation holds. */
  uint64_t gen = rt_gen(ctl), nctl;
  p->pid_number = (gen << RT_IDX_BITS) | idx;
  if (relate && (rc = relate_spawned(n, parent, p, opts)) != KEEL_OK) {
    keel__rt_ext_free(p);
    slot_release(n, p, idx);
    return rc;
  }
  do {
    nctl = (ctl & RT_PIN_MASK) | (gen << RT_GEN_SHIFT) | st;
    /* release: publishes the initialised PCB to senders' acquire. */
  } while (!atomic_compare_exchange_weak_explicit(
      &p->ctl, &ctl, nctl, memory_order_release, memory_order_relaxed));
  atomic_fetch_add_explicit(&n->live, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&n->spawned, 1, memory_order_relaxed);
  *out = p;
  return KEEL_OK;
}

int keel_spawn(keel_handler_fn handler, void *state,
               const keel_spawn_opts *opts, keel_term *pid) {
  rt_node *n = keel__rt;
  if (n == NULL || atomic_load_explicit(&n->stopping, memory_order_relaxed))
    return KEEL_ESTATE; /* no node, or it is stopping */
  if (handler == NULL)
    return KEEL_EINVAL;
  keel_proc *p;
  int rc = keel__rt_spawn_common(n, handler, state, opts, NULL, &p);
  if (rc != KEEL_OK)
    return rc;
  if (pid != NULL)
    *pid = keel_pid_local(p->pid_number);
  return KEEL_OK;
}

/* ---- send -------------------------------------------------------------- */

static bool alive_as(uint64_t ctl, uint64_t gen) {
  return rt_gen(ctl) == gen && (ctl & RT_ST_MASK) != RT_ST_FREE &&
         (ctl & RT_EXITING) == 0;
}

/* The control word after a lazy delivery to ctl: one more in the lazy
 * count, or, at the RT_LAZY_WAKE-th, the count cleared and RT_SIGPEND set
 * (*lazy false: wake as for any signal). */
static inline uint64_t lazy_count(uint64_t ctl, bool *lazy) {
  uint64_t k = (ctl & RT_LAZY_MASK) / RT_LAZY_ONE + 1;
  *lazy = k < RT_LAZY_WAKE;
  return *lazy ? ctl + RT_LAZY_ONE : (ctl & ~RT_LAZY_MASK) | RT_SIGPEND;
}

/* Drops our pin and, if the process was idle, makes it runnable (returns
 * true: the caller must queue it). flags: RT_SIGPEND for a signal,
 * RT_LAZY for a lazy one. */
static bool unpin_and_wake(keel_proc *p, const rt_msg *m, uint64_t flags) {
  uint64_t ctl = atomic_load_explicit(&p->ctl, memory_order_relaxed);
  uint64_t nctl;
  bool wake;
  do {
    wake = false;
    bool lazy = false; /* queued, nobody woken */
    if (flags & RT_LAZY)
      nctl = lazy_count(ctl - RT_PIN_ONE, &lazy);
    else
      nctl = (ctl - RT_PIN_ONE) | flags;
    /* Entries pushed after m while m's link was not yet published were
     * invisible to p: a wake-up of theirs may have found the queue
     * "empty" (mid-push) and let p go idle. Then only m's delivery can
     * make them seen, so it wakes p instead of being counted. (Their
     * head exchange happened before their ctl update, which a failed
     * CAS below acquires, so the retry sees it.) */
    /* And entries before m: a receiver that went idle after a pop met
     * m's push in progress (RT_STALLED) could not take the node m now
     * follows, though that node's wake-up was spent on it. */
    if (lazy && ((ctl & RT_STALLED) ||
                 atomic_load_explicit(&p->mb_head, memory_order_acquire) !=
                     (const rt_mnode *)m)) {
      lazy = false;
      nctl = ((ctl - RT_PIN_ONE) & ~RT_LAZY_MASK) | RT_SIGPEND;
    }
    /* A queued or running receiver of a lazy signal gets NEWMAIL as for a
     * message, so it cannot go idle without having looked at it: going
     * idle (keel__rt_try_idle) then clears the count, which holds only
     * what the process has not looked at since. */
    if (lazy && (ctl & (RT_ST_MASK | RT_EXITING)) == RT_ST_SCHEDULED)
      nctl |= RT_NEWMAIL;
    if (!lazy && (ctl & RT_EXITING) == 0) {
      uint64_t st = ctl & RT_ST_MASK;
      if (st == RT_ST_IDLE) {
        nctl = (nctl & ~RT_ST_MASK) | RT_ST_SCHEDULED;
        wake = true;
      } else if (st == RT_ST_SCHEDULED) {
        nctl |= RT_NEWMAIL;
      }
    }
    /* release: our push happens-before whoever reads the new state;
     * acquire (on success) orders the queueing after it. */
  } while (!atomic_compare_exchange_weak_explicit(
      &p->ctl, &ctl, nctl, memory_order_acq_rel, memory_order_acquire));
  return wake;
}

/* The exit signal that kills a process whose queue overflowed (reason
 * 'killed'), or NULL without memory (the message is then just dropped). */
static rt_msg *queue_full_kill(rt_node *n, keel_proc *p) {
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term t = keel_tuple(&h, 3, KEEL_ATOM(EXIT),
                           keel_pid_local(p->pid_number), KEEL_ATOM(KILL));
  rt_sig *sig = keel__rt_sig_new(n, RT_SIG_EXIT, RT_SIGF_KILL, RT_NO_PID, 0, t);
  return (rt_msg *)sig;
}

/* Pushes m into p's mailbox if p is alive as generation gen (see
 * keel__rt_deliver). */
static inline bool deliver_to(rt_node *n, rt_sched *s, keel_proc *p,
                              uint64_t gen, rt_msg *m, bool count,
                              uint64_t flags) {
  /* A simulation may hold the entry back and deliver it later (sim.c);
   * a dead receiver still refuses it at once. */
  if (n->sim != NULL && (flags & RT_DIRECT) == 0 &&
      alive_as(atomic_load_explicit(&p->ctl, memory_order_relaxed), gen) &&
      keel__rt_sim_hold(n, (gen << RT_IDX_BITS) | (p->pid_number & RT_IDX_MASK),
                        m, count, flags))
    return true;
  flags &= ~RT_DIRECT;
  /* acq_rel: acquire sees the PCB initialised by spawn; the pin keeps the
   * process from finishing its death until our push is complete. */
  uint64_t ctl =
      atomic_fetch_add_explicit(&p->ctl, RT_PIN_ONE, memory_order_acq_rel);
  if (!alive_as(ctl, gen)) {
    atomic_fetch_sub_explicit(&p->ctl, RT_PIN_ONE, memory_order_release);
    return false;
  }
  if (p->counted && m->term != KEEL_NONE) {
    uint32_t in = atomic_fetch_add_explicit(&p->mq_in, 1, memory_order_relaxed);
    uint32_t len = in - atomic_load_explicit(&p->mq_out, memory_order_relaxed);
    if (p->long_on != 0 && len + 1 >= p->long_on &&
        !atomic_exchange_explicit(&p->long_q, true, memory_order_relaxed))
      keel__rt_long_queue_event(p, len + 1, true);
    if (p->mq_limit != 0 && len >= p->mq_limit) {
      atomic_fetch_sub_explicit(&p->mq_in, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&n->dropped, 1, memory_order_relaxed);
      rt_msg *kill = p->queue_kill ? queue_full_kill(n, p) : NULL;
      if (kill != NULL) { /* the kill instead of the message */
        keel__rt_free_msg(m);
        m = kill;
      } else {
        atomic_fetch_sub_explicit(&p->ctl, RT_PIN_ONE, memory_order_release);
        return false; /* the caller frees the message it still owns */
      }
      flags |= RT_SIGPEND;
    }
  }
  keel__mbox_push(p, m);
  bool wake = unpin_and_wake(p, m, flags);
  if (count && s != NULL)
    atomic_store_explicit(
        &s->msg_sent,
        atomic_load_explicit(&s->msg_sent, memory_order_relaxed) + 1,
        memory_order_relaxed);
  else if (count)
    atomic_fetch_add_explicit(&n->foreign_sent, 1, memory_order_relaxed);
  if (wake)
    keel__rt_make_runnable(n, p);
  return true;
}

keel_proc *keel__rt_push_begin(rt_node *n, uint64_t num, rt_msg *m,
                               rt_mnode **prev) {
  keel_proc *p = keel__rt_pin(n, num);
  if (p != NULL && p->counted) { /* the counting stays with deliver_to */
    keel__rt_unpin(p);
    p = NULL;
  }
  if (p != NULL)
    *prev = keel__mbox_push_begin(p, m);
  return p;
}

void keel__rt_deliver_end(rt_node *n, keel_proc *p, const rt_msg *m,
                          uint64_t flags) {
  if (unpin_and_wake(p, m, flags))
    keel__rt_make_runnable(n, p);
}

bool keel__rt_deliver(rt_node *n, rt_sched *s, uint64_t num, rt_msg *m,
                      bool count) {
  uint64_t gen = num >> RT_IDX_BITS;
  keel_proc *p = keel__rt_slot(n, (uint32_t)(num & RT_IDX_MASK));
  if (p == NULL || gen > RT_GEN_MASK)
    return false;
  return deliver_to(n, s, p, gen, m, count, 0);
}

bool keel__rt_deliver_direct(rt_node *n, uint64_t num, rt_msg *m, bool count,
                             uint64_t flags) {
  uint64_t gen = num >> RT_IDX_BITS;
  keel_proc *p = keel__rt_slot(n, (uint32_t)(num & RT_IDX_MASK));
  if (p == NULL || gen > RT_GEN_MASK)
    return false;
  return deliver_to(n, keel__rt_tl_sched, p, gen, m, count, flags | RT_DIRECT);
}

bool keel__rt_deliver_signal(rt_node *n, uint64_t num, rt_msg *m) {
  uint64_t gen = num >> RT_IDX_BITS;
  keel_proc *p = keel__rt_slot(n, (uint32_t)(num & RT_IDX_MASK));
  if (p == NULL || gen > RT_GEN_MASK)
    return false;
  return deliver_to(n, keel__rt_tl_sched, p, gen, m, false, RT_SIGPEND);
}

bool keel__rt_deliver_lazy(rt_node *n, uint64_t num, rt_msg *m) {
  uint64_t gen = num >> RT_IDX_BITS;
  keel_proc *p = keel__rt_slot(n, (uint32_t)(num & RT_IDX_MASK));
  if (p == NULL || gen > RT_GEN_MASK)
    return false;
  return deliver_to(n, keel__rt_tl_sched, p, gen, m, false, RT_LAZY);
}

void keel__rt_nudge(rt_node *n, keel_proc *p) {
  uint64_t ctl = atomic_load_explicit(&p->ctl, memory_order_relaxed);
  uint64_t nctl;
  bool wake;
  do {
    if ((ctl & RT_LAZY_MASK) == 0 || (ctl & RT_EXITING))
      return;
    nctl = (ctl & ~RT_LAZY_MASK) | RT_SIGPEND;
    wake = (ctl & RT_ST_MASK) == RT_ST_IDLE;
    if (wake)
      nctl = (nctl & ~RT_ST_MASK) | RT_ST_SCHEDULED;
    else if ((ctl & RT_ST_MASK) == RT_ST_SCHEDULED)
      nctl |= RT_NEWMAIL;
  } while (!atomic_compare_exchange_weak_explicit(
      &p->ctl, &ctl, nctl, memory_order_acq_rel, memory_order_relaxed));
  if (wake)
    keel__rt_make_runnable(n, p);
}

keel_proc *keel__rt_pin(rt_node *n, uint64_t num) {
  uint64_t gen = num >> RT_IDX_BITS;
  keel_proc *p = keel__rt_slot(n, (uint32_t)(num & RT_IDX_MASK));
  if (p == NULL || gen > RT_GEN_MASK)
    return NULL;
  uint64_t ctl =
      atomic_fetch_add_explicit(&p->ctl, RT_PIN_ONE, memory_order_acq_rel);
  if (!alive_as(ctl, gen)) {
    atomic_fetch_sub_explicit(&p->ctl, RT_PIN_ONE, memory_order_release);
    return NULL;
  }
  return p;
}

void keel__rt_unpin(keel_proc *p) {
  atomic_fetch_sub_explicit(&p->ctl, RT_PIN_ONE, memory_order_release);
}

keel_proc *keel__rt_lookup(rt_node *n, uint64_t num) {
  uint64_t gen = num >> RT_IDX_BITS;
  keel_proc *p = keel__rt_slot(n, (uint32_t)(num & RT_IDX_MASK));
  if (p == NULL || gen > RT_GEN_MASK ||
      !alive_as(atomic_load_explicit(&p->ctl, memory_order_acquire), gen))
    return NULL;
  return p;
}

/* keel_send after the argument checks; self (may be NULL) is already
 * charged for the send. */
static int send_checked(rt_node *n, rt_sched *s, keel_term pid, keel_term msg) {
  uint64_t num = keel_pid_local_number(pid);
  uint64_t gen = num >> RT_IDX_BITS;
  keel_proc *p = keel__rt_slot(n, (uint32_t)(num & RT_IDX_MASK));
  if (p == NULL || gen > RT_GEN_MASK)
    return KEEL_OK;
  if (!alive_as(atomic_load_explicit(&p->ctl, memory_order_relaxed), gen))
    return KEEL_OK; /* dead or stale: a silent no-op */
  rt_msg *m = keel__rt_msg_new(n, s, msg);
  if (m == NULL)
    return KEEL_ENOMEM;
  if (!deliver_to(n, s, p, gen, m, true, 0))
    keel__rt_free_msg(m);
  return KEEL_OK;
}

int keel_send(keel_term pid, keel_term msg) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (msg == KEEL_NONE)
    return KEEL_EINVAL;
  if (!keel_is_local_pid(pid)) {
    int rc = keel__rt_send_other(n, &pid, msg);
    if (rc != 1)
      return rc; /* an alias (sent), or an error */
  }
  keel_proc *self = keel__rt_tl_proc;
  rt_sched *s = keel__rt_tl_sched;
  /* A fiber gives way when its slice is used up (also when sending to
   * dead pids), as a handler does by returning: at its next send, so that
   * a send followed by a receive that blocks (a call) does not first put
   * the sender behind the process it just woke into runnext. */
  if (self != NULL && self->fiber != NULL && self->budget <= 0)
    s = keel__rt_fiber_budget_yield(self);
  if (self != NULL)
    self->budget -= KEEL_COST_SEND;
  return send_checked(n, s, pid, msg);
}

/* ---- death ------------------------------------------------------------- */

void keel__rt_proc_die(rt_node *n, keel_proc *p) {
  /* Before EXITING: until then a fired timeout of p still reaches p's
   * mailbox, so p->tmo cannot have been released by its owner. */
  keel__rt_proc_timeout_clear(n, p);
  atomic_fetch_or_explicit(&p->ctl, RT_EXITING, memory_order_acq_rel);
  if (n->sim != NULL) /* its held pushes in progress: no thread ends them */
    keel__rt_sim_finish_pushes(n, p);
  /* acquire: pairs with the senders' release of their pins, so every
   * message pushed by a pinned sender is visible below. */
  unsigned spins = 0;
  while (atomic_load_explicit(&p->ctl, memory_order_acquire) & RT_PIN_MASK) {
    if (++spins < 64)
      keel__cpu_relax();
    else
      sched_yield();
  }
  if (p->terminate != NULL)
    p->terminate(p, p->exit_reason, p->state);
  /* Name, queued signals and messages, links and monitors. */
  keel__rt_sig_on_death(n, p);
  if (p->fiber != NULL)
    keel__rt_fiber_release(n, p);
  keel_heap_destroy(&p->heap);
  p->state = NULL;
  uint64_t ctl = atomic_load_explicit(&p->ctl, memory_order_relaxed);
  uint64_t nctl;
  do {
    uint64_t gen = (rt_gen(ctl) + 1) & RT_GEN_MASK;
    nctl = (ctl & RT_PIN_MASK) | (gen << RT_GEN_SHIFT) | RT_ST_FREE;
  } while (!atomic_compare_exchange_weak_explicit(
      &p->ctl, &ctl, nctl, memory_order_acq_rel, memory_order_relaxed));
  slot_release(n, p, (uint32_t)(p->pid_number & RT_IDX_MASK));
  /* release: the dead process's writes before a stats reader sees it gone. */
  atomic_fetch_sub_explicit(&n->live, 1, memory_order_release);
}

/* ---- accessors --------------------------------------------------------- */

keel_term keel_self(const keel_proc *self) {
  return keel_pid_local(self->pid_number);
}

keel_heap *keel_proc_heap(keel_proc *self) {
  return &self->heap;
}

void *keel_proc_state(const keel_proc *self) {
  return self->state;
}

void keel_proc_set_state(keel_proc *self, void *state) {
  self->state = state;
}

keel_priority keel_set_priority(keel_proc *self, keel_priority prio) {
  if ((unsigned)prio > KEEL_PRIO_MAX)
    return (keel_priority)atomic_load_explicit(&self->prio,
                                               memory_order_relaxed);
  return (keel_priority)atomic_exchange_explicit(&self->prio, (uint8_t)prio,
                                                 memory_order_relaxed);
}

int keel_yield(keel_proc *self) {
  if (self == NULL || self != keel__rt_tl_proc)
    return KEEL_ESTATE;
  if (self->fiber != NULL)
    return keel_fiber_yield(self);
  self->budget = 0; /* the handler's run ends when it returns */
  return KEEL_OK;
}

int keel_proc_compact(keel_proc *self, keel_term *roots, size_t n) {
  if (roots == NULL && n > 0)
    return KEEL_EINVAL;
  if (self == NULL || self != keel__rt_tl_proc)
    return KEEL_ESTATE;
  keel_term *copies =
      n > 0 && !keel__fault() ? malloc(n * sizeof *copies) : NULL;
  keel_heap fresh;
  keel_heap_init(&fresh);
  keel_term reason = keel_term_copy(&fresh, self->exit_reason);
  bool ok = (n == 0 || copies != NULL) && reason != KEEL_NONE;
  for (size_t i = 0; ok && i < n; i++) {
    copies[i] =
        roots[i] == KEEL_NONE ? KEEL_NONE : keel_term_copy(&fresh, roots[i]);
    ok = roots[i] == KEEL_NONE || copies[i] != KEEL_NONE;
  }
  if (!ok) { /* nothing changed */
    keel_heap_destroy(&fresh);
    free(copies);
    return KEEL_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    roots[i] = copies[i];
  free(copies);
  self->exit_reason = reason;
  keel_heap_destroy(&self->heap);
  self->heap = fresh;
  return KEEL_OK;
}

keel_handler_status keel_stop(keel_proc *self, keel_term reason) {
  keel_term r = keel_term_copy(&self->heap, reason);
  self->exit_reason = r == KEEL_NONE ? KEEL_ATOM(SYSTEM_LIMIT) : r;
  return KEEL_EXIT;
}

int keel_node_stats_get(keel_node_stats *out) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  int64_t alloc = atomic_load(&n->foreign_alloc);
  int64_t freed = atomic_load(&n->foreign_free);
  uint64_t sent = atomic_load(&n->foreign_sent);
  for (unsigned i = 0; i < n->nsched; i++) {
    alloc += atomic_load(&n->sched[i].msg_alloc);
    freed += atomic_load(&n->sched[i].msg_free);
    sent += atomic_load(&n->sched[i].msg_sent);
  }
  out->processes = atomic_load(&n->live);
  out->spawned = atomic_load(&n->spawned);
  out->messages_live = alloc - freed;
  out->messages_sent = sent;
  out->timers = (size_t)atomic_load(&n->timers->live);
  out->messages_dropped = atomic_load(&n->dropped);
  out->long_schedules = keel__rt_watchdog_events(n);
  out->dirty_jobs = keel__rt_dirty_jobs(n);
  return KEEL_OK;
}
