/*
 * introspect.c - keel_process_info and the process list.
 *
 * Nothing here stops or signals a process: each process publishes a few
 * figures in its (type-stable) control block at the end of every run
 * (reductions, table counts, heap size), senders count the messages they
 * push and the owner the ones it takes, and readers take a snapshot with
 * relaxed loads, checking the generation before and after. Cheap enough to
 * leave on: a run adds two relaxed stores, a send one relaxed increment on
 * a cache line it writes anyway.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>

#include <stdlib.h>

#include "base/futex.h"
#include "keel/clock.h"
#include "keel/signals.h"
#include "keel/sim.h"
#include "keel/telemetry.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"

#define PUB_CNT_MAX 0xfffu
#define PUB_KIB_MAX 0xfffffffu

static uint64_t sat(uint64_t v, uint64_t max) {
  return v > max ? max : v;
}

uint64_t keel__rt_pub_ext(const keel_proc *p) {
  const rt_ext *x = p->ext;
  return sat(x->nlinks, PUB_CNT_MAX) | sat(x->nmons, PUB_CNT_MAX) << 12 |
         sat(x->nmon_by, PUB_CNT_MAX) << 24;
}

/* ---- long message queues ---------------------------------------------------
 */

static keel_tel_event *long_queue_ev(void) {
  static keel_tel_event *_Atomic ev;
  keel_tel_event *e = atomic_load_explicit(&ev, memory_order_acquire);
  if (e == NULL &&
      keel_tel_event_parse("keel.runtime.long_message_queue", &e) == KEEL_OK)
    atomic_store_explicit(&ev, e, memory_order_release);
  return e;
}

void keel__rt_long_queue_event(const keel_proc *p, uint32_t len, bool on) {
  keel_tel_event *e = long_queue_ev();
  if (e == NULL)
    return;
  keel_tel_measure m = {keel_atom("length"), (double)len};
  keel_tel_meta md[2] = {
      {keel_atom("pid"), keel_pid_local(p->pid_number)},
      {keel_atom("long"), on ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE)}};
  keel_tel_execute(e, &m, 1, md, 2);
}

void keel__rt_long_queue_off(keel_proc *p, uint32_t len) {
  if (len <= p->long_off &&
      atomic_exchange_explicit(&p->long_q, false, memory_order_relaxed))
    keel__rt_long_queue_event(p, len, false);
}

/* ---- the queue length question ------------------------------------------ */

void keel__rt_info_release(rt_info_req *req) {
  if (atomic_fetch_sub_explicit(&req->refs, 1, memory_order_acq_rel) == 1)
    free(req);
}

void keel__rt_info_answer(rt_info_req *req, uint64_t qlen, bool dead) {
  req->qlen = qlen;
  atomic_store_explicit(&req->state, dead ? 2u : 1u, memory_order_release);
  keel__futex_wake(&req->state, 1);
  keel__rt_info_release(req);
}

uint64_t keel__rt_inner_count(const keel_proc *p) {
  uint64_t k = 0;
  for (const rt_msg *m = p->inner_head; m != NULL; m = rt_msg_next(m))
    k += m->term != KEEL_NONE;
  return k;
}

void keel__rt_info_relations(rt_info_req *req, const keel_proc *p) {
  const rt_ext *x = p->ext;
  if (req->cap == 0 || x == NULL)
    return;
  for (uint32_t i = 0; i < x->cap; i++) {
    const rt_ent *e = &x->tab[i];
    uint64_t kind = e->key >> RT_EK_SHIFT, pid;
    int k;
    if (e->key == 0 || kind == RT_EK_ALIAS)
      continue;
    if (kind == RT_EK_LINK) {
      if (e->state != RT_LINK_ACTIVE)
        continue;
      k = 0;
      pid = e->key & RT_EK_VAL_MASK;
    } else {
      k = kind == RT_EK_MON ? 1 : 2;
      pid = e->peer;
    }
    if (req->count[k] < req->cap)
      req->rel[(size_t)k * req->cap + req->count[k]] = pid;
    req->count[k]++;
  }
}

/* The caller's own queue: the inner queue and what the mailbox holds (the
 * owner may walk its mailbox; a push still in progress is missed). */
static uint64_t own_queue_len(keel_proc *p) {
  uint64_t k = keel__rt_inner_count(p);
  for (rt_mnode *nd = p->mb_tail; nd != NULL;
       nd = atomic_load_explicit(&nd->next, memory_order_acquire))
    if (nd != &p->mb_stub && ((rt_msg *)nd)->term != KEEL_NONE)
      k++;
  return k;
}

uint16_t keel__rt_queue_scan(keel_proc *p) {
  /* Only when asked (a walk of a long backlog at every run's end cost a
   * process with a flooded mailbox more than its own work did). */
  if (!atomic_load_explicit(&p->qlen_want, memory_order_relaxed))
    return p->qscan_mbox;
  atomic_store_explicit(&p->qlen_want, false, memory_order_relaxed);
  uint16_t now = (uint16_t)((keel_monotonic_ns() >> 20) | 1u); /* never 0 */
  if (p->qscan_at != 0 && (uint16_t)(now - p->qscan_at) < RT_QLEN_SCAN_UNITS)
    return p->qscan_mbox;
  uint32_t k = 0;
  for (rt_mnode *nd = p->mb_tail; nd != NULL && k < RT_QLEN_SCAN;
       nd = atomic_load_explicit(&nd->next, memory_order_acquire))
    if (nd != &p->mb_stub && ((rt_msg *)nd)->term != KEEL_NONE)
      k++;
  p->qscan_at = now;
  p->qscan_mbox = (uint16_t)k;
  return (uint16_t)k;
}

int keel_process_queue_len(keel_term pid, size_t *out) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  if (out == NULL)
    return KEEL_EINVAL;
  keel_proc *p = keel__rt_pin(n, keel_pid_local_number(pid));
  if (p == NULL)
    return KEEL_ENOPROC; /* dead, or a stale pid of a reused slot */
  if (keel__rt_tl_proc == p)
    *out = (size_t)own_queue_len(p);
  else if (p->counted)
    *out = (size_t)(atomic_load_explicit(&p->mq_in, memory_order_relaxed) -
                    atomic_load_explicit(&p->mq_out, memory_order_relaxed));
  else {
    /* The length published at its last run's end; asking makes the next
     * run's end count a backlog still in the mailbox. */
    if (!atomic_load_explicit(&p->qlen_want, memory_order_relaxed))
      atomic_store_explicit(&p->qlen_want, true, memory_order_relaxed);
    *out = atomic_load_explicit(&p->pub_qlen, memory_order_relaxed);
  }
  keel__rt_unpin(p);
  return KEEL_OK;
}

/* Waits (bounded) for the answer to req, in whatever way the caller may
 * wait. Returns true when answered or the process is gone. */
static bool await_answer(rt_info_req *req) {
  keel_proc *self = keel__rt_tl_proc;
  uint64_t limit = keel_monotonic_ns() + UINT64_C(5000000000);
  while (atomic_load_explicit(&req->state, memory_order_acquire) == 0) {
    if (keel_monotonic_ns() > limit)
      return false;
    if (self != NULL)
      (void)keel_fiber_yield(self); /* a fiber: let the others run */
    else if (keel_sim_active())
      (void)keel_sim_step(); /* the driving thread of a simulation */
    else
      keel__futex_wait(&req->state, 0, 1000000);
  }
  return true;
}

/* Asks the process numbered num the question req (made with refs 2 and
 * cap set) through an INFO signal (OTP's process_info is a signal too): it
 * answers when it next handles its signals. On KEEL_OK the caller reads
 * req, then lets go of it with keel__rt_info_release; on any error req is
 * already let go of. KEEL_ENOPROC, KEEL_ETIMEDOUT (5 s), KEEL_ENOMEM. */
static int ask(rt_node *n, uint64_t num, rt_info_req *req) {
  keel_proc *self = keel__rt_tl_proc;
  rt_sig *sig = keel__rt_sig_new(n, RT_SIG_INFO, 0,
                                 self != NULL ? self->pid_number : RT_NO_PID,
                                 (uint64_t)(uintptr_t)req, KEEL_NONE);
  if (sig == NULL) {
    free(req);
    return KEEL_ENOMEM;
  }
  (void)keel__rt_sig_send(n, num, sig); /* refused: answered "gone" */
  int rc = KEEL_ETIMEDOUT;
  if (await_answer(req))
    rc = atomic_load_explicit(&req->state, memory_order_acquire) == 1
             ? KEEL_OK
             : KEEL_ENOPROC;
  if (rc != KEEL_OK)
    keel__rt_info_release(req);
  return rc;
}

/* A question with room for cap relations of each kind. */
static rt_info_req *req_new(size_t cap) {
  rt_info_req *req = calloc(1, sizeof *req + 3 * cap * sizeof(uint64_t));
  if (req != NULL) {
    atomic_init(&req->state, 0);
    atomic_init(&req->refs, 2);
    req->cap = (uint32_t)cap;
  }
  return req;
}

/* The queue length of a process that is not the caller. */
static int ask_queue_len(rt_node *n, uint64_t num, uint64_t *out) {
  rt_info_req *req = req_new(0);
  if (req == NULL)
    return KEEL_ENOMEM;
  int rc = ask(n, num, req);
  if (rc == KEEL_OK) {
    *out = req->qlen;
    keel__rt_info_release(req);
  }
  return rc;
}

/* The list of the first n pid numbers of nums, built in h. */
static keel_term pid_list(keel_heap *h, const uint64_t *nums, uint32_t n) {
  keel_term l = KEEL_NIL;
  for (uint32_t i = n; i-- > 0 && l != KEEL_NONE;)
    l = keel_cons(h, keel_pid_local(nums[i]), l);
  return l;
}

int keel_process_relations(keel_term pid, size_t max, keel_heap *h,
                           keel_process_relations_t *out) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  if (h == NULL || out == NULL || max == 0 || max > UINT32_MAX / 4)
    return KEEL_EINVAL;
  keel_proc *self = keel__rt_tl_proc;
  if (self != NULL && self->fiber == NULL)
    return KEEL_ESTATE; /* a handler cannot wait for the answer */
  rt_info_req *req = req_new(max);
  if (req == NULL)
    return KEEL_ENOMEM;
  int rc = ask(n, keel_pid_local_number(pid), req);
  if (rc == KEEL_OK) {
    keel_term l[3];
    for (int k = 0; k < 3; k++) {
      uint32_t c = req->count[k] < req->cap ? req->count[k] : req->cap;
      l[k] = pid_list(h, req->rel + (size_t)k * req->cap, c);
      if (l[k] == KEEL_NONE)
        rc = KEEL_ENOMEM;
    }
    *out = (keel_process_relations_t){
        req->count[0], req->count[1], req->count[2], l[0], l[1], l[2]};
    keel__rt_info_release(req);
  }
  return rc;
}

static const char *symbol_of(const void *fn) {
  Dl_info info;
  if (fn == NULL || dladdr(fn, &info) == 0 || info.dli_saddr != fn)
    return NULL;
  return info.dli_sname;
}

int keel_process_info(keel_term pid, keel_process_info_t *out) {
  return keel_process_info_ex(pid, 0, out);
}

int keel_process_info_ex(keel_term pid, unsigned skip,
                         keel_process_info_t *out) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (!keel_is_local_pid(pid))
    return KEEL_EBADARG;
  if (out == NULL)
    return KEEL_EINVAL;
  uint64_t num = keel_pid_local_number(pid);
  keel_proc *p = keel__rt_pin(n, num);
  if (p == NULL)
    return KEEL_ENOPROC;
  /* Pinned: p cannot finish dying (nor be reused) until we unpin. Lazy
   * monitor signals it holds are handled soon after: the figures below
   * may predate them, a later call sees them (as OTP's, which is itself a
   * signal queued behind them). */
  keel__rt_nudge(n, p);
  uint64_t ctl = atomic_load_explicit(&p->ctl, memory_order_acquire);
  uint64_t pub = atomic_load_explicit(&p->pub, memory_order_relaxed);
  *out = (keel_process_info_t){0};
  out->pid = pid;
  out->status =
      (ctl & RT_ST_MASK) == RT_ST_IDLE ? KEEL_PROC_WAITING : KEEL_PROC_RUNNABLE;
  out->fiber = p->fiber != NULL;
  uint32_t name = atomic_load_explicit(&p->name, memory_order_relaxed);
  out->registered_name =
      name != 0 ? keel_atom_from_index(name - 1) : KEEL_ATOM(UNDEFINED);
  bool counted = p->counted;
  out->message_queue_len =
      counted ? (size_t)(atomic_load_explicit(&p->mq_in, memory_order_relaxed) -
                         atomic_load_explicit(&p->mq_out, memory_order_relaxed))
              : 0;
  out->reductions = atomic_load_explicit(&p->reductions, memory_order_relaxed);
  out->links = (size_t)(pub & PUB_CNT_MAX);
  out->monitors = (size_t)((pub >> 12) & PUB_CNT_MAX);
  out->monitored_by = (size_t)((pub >> 24) & PUB_CNT_MAX);
  out->heap_bytes = (size_t)(pub >> 36) * 1024;
  out->memory = sizeof(keel_proc) + out->heap_bytes;
  out->entry = out->fiber ? keel__rt_fiber_entry(p) : (const void *)p->handler;
  keel_proc *self = keel__rt_tl_proc;
  bool own = self == p;
  if (own)
    out->message_queue_len = (size_t)own_queue_len(p);
  keel__rt_unpin(p);
  if (!(skip & KEEL_PINFO_NO_SYMBOL))
    out->entry_name = symbol_of(out->entry);
  if (counted || own)
    return KEEL_OK;
  if (skip & KEEL_PINFO_NO_QUEUE) {
    out->message_queue_len = SIZE_MAX;
    return KEEL_OK;
  }
  if (self != NULL && self->fiber == NULL) { /* a handler cannot wait */
    out->message_queue_len = SIZE_MAX;
    return KEEL_OK;
  }
  uint64_t q = 0;
  int rc = ask_queue_len(n, num, &q);
  out->message_queue_len = rc == KEEL_OK ? (size_t)q : SIZE_MAX;
  return rc == KEEL_ETIMEDOUT ? KEEL_OK : rc; /* busy: length unknown */
}

size_t keel_processes(keel_term *out, size_t max) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return 0;
  size_t count = 0;
  uint32_t hw = atomic_load_explicit(&n->high_water, memory_order_acquire);
  for (uint32_t i = 0; i < hw; i++) {
    keel_proc *p = keel__rt_slot(n, i);
    if (p == NULL)
      continue;
    uint64_t ctl = atomic_load_explicit(&p->ctl, memory_order_acquire);
    if ((ctl & RT_ST_MASK) == RT_ST_FREE || (ctl & RT_EXITING))
      continue;
    if (count < max && out != NULL)
      out[count] = keel_pid_local(rt_gen(ctl) << RT_IDX_BITS | i);
    count++;
  }
  return count;
}
