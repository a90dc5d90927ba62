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

#include "keel/signals.h"
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

static const char *symbol_of(const void *fn) {
  Dl_info info;
  if (fn == NULL || dladdr(fn, &info) == 0 || info.dli_saddr != fn)
    return NULL;
  return info.dli_sname;
}

int keel_process_info(keel_term pid, keel_process_info_t *out) {
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
  /* Pinned: p cannot finish dying (nor be reused) until we unpin. */
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
  out->message_queue_len =
      atomic_load_explicit(&p->mq_in, memory_order_relaxed) -
      atomic_load_explicit(&p->mq_out, memory_order_relaxed);
  out->reductions = atomic_load_explicit(&p->reductions, memory_order_relaxed);
  out->links = (size_t)(pub & PUB_CNT_MAX);
  out->monitors = (size_t)((pub >> 12) & PUB_CNT_MAX);
  out->monitored_by = (size_t)((pub >> 24) & PUB_CNT_MAX);
  out->heap_bytes = (size_t)(pub >> 36) * 1024;
  out->memory = sizeof(keel_proc) + out->heap_bytes;
  out->entry = out->fiber ? keel__rt_fiber_entry(p) : (const void *)p->handler;
  keel__rt_unpin(p);
  out->entry_name = symbol_of(out->entry);
  return KEEL_OK;
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
