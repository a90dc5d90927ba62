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
 * link store. Then not only that producer's entry is out of reach: the last
 * linked node cannot be taken either (the stub cannot be put behind it), so
 * an earlier producer's wake-up may be spent on a pop that finds nothing.
 * That is harmless for a producer that wakes the process: it changes the
 * control word only after its push completes (see proc.c), so the consumer
 * either sees NEWMAIL and pops again, or goes idle and is made runnable by
 * that producer. A lazy producer does not wake an idle process, so pop
 * records the stall (mb_stalled), going idle publishes it (RT_STALLED) and
 * the lazy producer that completes the chain wakes the process after all.
 */
#include <stddef.h>

#include "runtime/rt_internal.h"

void keel__mbox_init(keel_proc *p) {
  atomic_store_explicit(&p->mb_stub.next, NULL, memory_order_relaxed);
  atomic_store_explicit(&p->mb_head, &p->mb_stub, memory_order_relaxed);
  p->mb_tail = &p->mb_stub;
  p->mb_stalled = false;
}

static inline rt_mnode *push_begin(keel_proc *p, rt_mnode *n) {
  atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
  /* acq_rel: release publishes n's contents to the consumer; acquire
   * orders us after the previous producer so our link store extends the
   * chain it started. Pairs with the acquire loads of next in pop. */
  return atomic_exchange_explicit(&p->mb_head, n, memory_order_acq_rel);
}

static inline void push_end(rt_mnode *prev, rt_mnode *n) {
  /* release: pairs with the acquire load of prev->next in pop. */
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

static void push_node(keel_proc *p, rt_mnode *n) {
  push_end(push_begin(p, n), n);
}

void keel__mbox_push(keel_proc *p, rt_msg *m) {
  push_node(p, &m->link);
}

rt_mnode *keel__mbox_push_begin(keel_proc *p, rt_msg *m) {
  return push_begin(p, &m->link);
}

void keel__mbox_push_end(rt_mnode *prev, rt_msg *m) {
  push_end(prev, &m->link);
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
  if (tail != head) {
    p->mb_stalled = true; /* a producer is mid-push: tail is out of reach */
    return NULL;
  }
  push_node(p, &p->mb_stub);
  next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (next != NULL) {
    p->mb_tail = next;
    return (rt_msg *)tail;
  }
  p->mb_stalled = true; /* a producer came between: as above */
  return NULL;
}

bool keel__mbox_has_mail(keel_proc *p) {
  return p->mb_tail != &p->mb_stub ||
         atomic_load_explicit(&p->mb_stub.next, memory_order_acquire) != NULL;
}
