/*
 * mailbox.c - the per-process intrusive MPSC queue (Vyukov's algorithm, as
 * in Pony's messageq.c).
 *
 * Producers (any thread) push with one atomic exchange of the head and a
 * release store of the previous node's link. The single consumer (the
 * scheduler running the process) pops from the tail without atomics RMW.
 * A stub node inside the PCB keeps the queue non-empty so push never
 * touches the tail.
 *
 * Pop may report "empty" while a producer sits between its exchange and its
 * link store. That is harmless: the producer changes the process's control
 * word only after its push completes (see sched.c), so the consumer either
 * sees NEWMAIL and pops again, or goes idle and is made runnable by that
 * producer.
 */
#include <stddef.h>

#include "runtime/rt_internal.h"

void keel__mbox_init(keel_proc *p) {
  atomic_store_explicit(&p->mb_stub.next, NULL, memory_order_relaxed);
  atomic_store_explicit(&p->mb_head, &p->mb_stub, memory_order_relaxed);
  p->mb_tail = &p->mb_stub;
}

static void push_node(keel_proc *p, rt_mnode *n) {
  atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
  /* acq_rel: release publishes n's contents to the consumer; acquire
   * orders us after the previous producer so our link store extends the
   * chain it started. Pairs with the acquire loads of next in pop. */
  rt_mnode *prev =
      atomic_exchange_explicit(&p->mb_head, n, memory_order_acq_rel);
  /* release: pairs with the acquire load of prev->next in pop. */
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

void keel__mbox_push(keel_proc *p, rt_msg *m) {
  push_node(p, &m->link);
}

rt_msg *keel__mbox_pop(keel_proc *p) {
  rt_mnode *tail = p->mb_tail;
  rt_mnode *next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (tail == &p->mb_stub) {
    if (next == NULL)
      return NULL;
    p->mb_tail = next;
    tail = next;
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
  }
  if (next != NULL) {
    p->mb_tail = next;
    return (rt_msg *)tail;
  }
  rt_mnode *head = atomic_load_explicit(&p->mb_head, memory_order_acquire);
  if (tail != head)
    return NULL; /* a producer is mid-push */
  push_node(p, &p->mb_stub);
  next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (next != NULL) {
    p->mb_tail = next;
    return (rt_msg *)tail;
  }
  return NULL;
}

bool keel__mbox_has_mail(keel_proc *p) {
  return p->mb_tail != &p->mb_stub ||
         atomic_load_explicit(&p->mb_stub.next, memory_order_acquire) != NULL;
}
