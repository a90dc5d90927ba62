/*
 * timer.h - timers of the runtime: records, per-scheduler wheels and the
 * hooks the scheduler and the process code call.
 *
 * A timer record lives in a node-wide table of slots (chunks never freed
 * while the node runs, like the process table), so a handle or a pointer
 * to a record always reads valid memory and a 30-bit generation in the
 * record's control word tells a stale handle from the current one:
 *
 *   ctl = generation << 2 | state     state: FREE, PENDING, CANCELLED, FIRED
 *
 * The scheduler that owns a timer (the one whose wheel holds it) moves it
 * from PENDING to FIRED with a CAS when it is due; any thread cancels by a
 * CAS from PENDING to CANCELLED. Exactly one of the two wins. A cancelled
 * timer stays in its wheel until its deadline (or is unlinked at once when
 * the canceller is the owner) and is then released.
 *
 * A record starts with an rt_msg header so that a receive timeout can be
 * pushed into its process's mailbox as itself: a mailbox entry whose term
 * is KEEL_NONE is a timer record, never a message (keel_send refuses
 * KEEL_NONE).
 */
#ifndef KEEL_RUNTIME_TIMER_H
#define KEEL_RUNTIME_TIMER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/rt_internal.h"

#define RT_TM_FREE UINT64_C(0)
#define RT_TM_PENDING UINT64_C(1)
#define RT_TM_CANCELLED UINT64_C(2)
#define RT_TM_FIRED UINT64_C(3)
#define RT_TM_ST_MASK UINT64_C(3)
#define RT_TM_GEN_BITS 30
#define RT_TM_GEN_MASK ((UINT64_C(1) << RT_TM_GEN_BITS) - 1)

/* Timer table: at most 2^RT_TM_IDX_BITS records at once. */
#define RT_TM_IDX_BITS 24
#define RT_TM_CHUNK_BITS 12
#define RT_TM_CHUNK (1u << RT_TM_CHUNK_BITS)

/* Hierarchical wheel: RT_WHEEL_LEVELS levels of 64 slots; level k slots
 * span 64^k ms, so the wheel covers 2^36 ms. */
#define RT_WHEEL_LEVELS 6
#define RT_WHEEL_SLOTS 64

typedef struct rt_timer {
  /* Mailbox header: must come first (see above). hdr.term == KEEL_NONE. */
  rt_mnode link;
  keel_term term;
  uintptr_t extra;
  /* Owner-only: wheel list and position. */
  struct rt_timer *prev, *next;
  uint64_t when; /* deadline, in ms since the node's time origin */
  uint8_t level, slot;
  bool in_wheel;
  bool is_timeout;        /* a receive timeout (no msg) */
  _Atomic uint32_t owner; /* scheduler whose wheel holds the timer */
  uint32_t idx;           /* index in the table (fixed per record) */
  _Atomic uint64_t ctl;
  _Atomic uint32_t free_next;
  uint64_t dest; /* pid number of the destination */
  rt_msg *msg;   /* send_after: the copy to deliver */
} rt_timer;

/* A cancellation made off the owner's thread, queued for the owner so it
 * unlinks the record at once instead of at its deadline. */
typedef struct rt_tm_cancel {
  rt_timer *t;
  uint64_t ctl; /* the record's control word after the cancel */
} rt_tm_cancel;

typedef struct rt_wheel {
  /* Read by the owner between every two processes (keel__rt_timers_any):
   * kept together on the first cache line. */
  _Alignas(64) size_t count; /* timers in the slots */
  rt_timer *due, *due_tail;  /* expired, not yet fired (bounded firing) */
  _Atomic uint32_t inbox_len;
  _Atomic uint32_t cq_pending;
  uint64_t elapsed; /* ms: every slot before this has been processed */
  uint64_t next_ms; /* cached next deadline (UINT64_MAX: none) */
  bool cur;         /* a due slot is being processed (cur_level/slot) */
  uint8_t cur_level, cur_slot;
  uint64_t occupied[RT_WHEEL_LEVELS];
  rt_timer *slots[RT_WHEEL_LEVELS][RT_WHEEL_SLOTS];
  /* Timers started by threads other than the owner. */
  pthread_mutex_t inbox_lock;
  rt_timer *inbox;
  /* Off-thread cancellations (under inbox_lock; `cq_spare` is owner-only
   * and swapped with `cq` when drained). */
  rt_tm_cancel *cq, *cq_spare;
  size_t cq_len, cq_cap, cq_spare_cap;
} rt_wheel;

typedef struct rt_timers {
  uint64_t origin_ns; /* time origin of the wheels */
  /* The simulation's virtual clock (NULL: the monotonic clock). */
  const _Atomic uint64_t *vclock;
  _Atomic(rt_timer *) *chunks;
  size_t nchunks;
  _Atomic uint32_t high_water;
  _Atomic uint64_t free_top; /* free stack: tag << 32 | index */
  _Atomic uint64_t live;     /* records in use */
  rt_wheel *wheels;          /* one per scheduler */
} rt_timers;

/* Node start and stop (sched.c). init returns KEEL_OK or KEEL_ENOMEM;
 * destroy frees every record and pending message (threads joined). */
int keel__rt_timers_init(rt_node *n);
void keel__rt_timers_destroy(rt_node *n);

/* Scheduler hooks. run fires at most max_fire due timers (and moves a
 * bounded number down the wheel) and returns true when more are due right
 * away; park_ns is how long the scheduler may sleep (0 = something is due
 * now, UINT64_MAX = no timer). */
bool keel__rt_timers_run(rt_node *n, rt_sched *s, unsigned max_fire);
uint64_t keel__rt_timers_park_ns(rt_node *n, rt_sched *s);
/* Whether the scheduler has timers or timer work at all (cheap: called
 * between every two processes). */
static inline bool keel__rt_timers_any(const rt_sched *s) {
  rt_wheel *w = s->wheel;
  return (w->count | (uintptr_t)w->due |
          atomic_load_explicit(&w->inbox_len, memory_order_relaxed) |
          atomic_load_explicit(&w->cq_pending, memory_order_relaxed)) != 0;
}

/* Process hooks (proc.c, sched.c). */
/* Cancels p's armed receive timeout, if any. */
void keel__rt_proc_timeout_clear(rt_node *n, keel_proc *p);
/* A timer record popped from a mailbox: returns true when it is p's armed
 * receive timeout (the handler is then called with 'timeout'); releases
 * the record either way. */
bool keel__rt_timeout_popped(rt_node *n, keel_proc *p, rt_msg *m);

#endif /* KEEL_RUNTIME_TIMER_H */
