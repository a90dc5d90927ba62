/*
 * rt_internal.h - data structures shared by the runtime's files.
 *
 * Process control word (keel_proc.ctl, 64 bits), the one place where every
 * cross-thread decision about a process is made with a CAS:
 *
 *   bits  0..2   state: FREE, IDLE, SCHEDULED (queued or running)
 *   bit   3      NEWMAIL: a sender delivered while the process was
 *                SCHEDULED (checked before the process goes idle)
 *   bit   4      EXITING: the process is dying; senders drop their message
 *   bit   5      SIGPEND: a non-message signal was delivered (signal.h)
 *   bit   6      STALLED: the process went idle after its mailbox showed a
 *                push in progress (keel__mbox_pop), so entries before that
 *                push may be unseen: a lazy signal then wakes it
 *   bits  8..23  pins: senders currently between their generation check and
 *                the end of their mailbox push
 *   bits 24..31  lazy count: signals queued without waking the process
 *                (monitor and demonitor, see keel__rt_deliver_lazy)
 *   bits 32..61  generation of the slot (30 bits, part of the pid)
 *
 * A sender adds a pin (fetch_add), checks generation and state, pushes its
 * message, then removes the pin and makes the process runnable in one CAS.
 * A dying process sets EXITING, waits for the pins to drain, frees its
 * mailbox and bumps the generation. Process control blocks are never freed
 * while the node runs (they live in chunks indexed by slot), so a sender
 * holding a stale pid always reads valid memory and simply sees a different
 * generation.
 */
#ifndef KEEL_RT_INTERNAL_H
#define KEEL_RT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/runtime.h"
#include "runtime/fiber_ctx.h"

/* ---- control word ------------------------------------------------------ */

#define RT_ST_MASK UINT64_C(0x7)
#define RT_ST_FREE UINT64_C(0)
#define RT_ST_IDLE UINT64_C(1)
#define RT_ST_SCHEDULED UINT64_C(2)
#define RT_NEWMAIL UINT64_C(0x8)
#define RT_EXITING UINT64_C(0x10)
#define RT_SIGPEND UINT64_C(0x20)
#define RT_STALLED UINT64_C(0x40)
/* Not a control-word bit: a delivery flag asking the simulation not to
 * hold the entry back (sim.c). */
#define RT_DIRECT (UINT64_C(1) << 63)
/* Not a control-word bit: a delivery flag for a signal that need not wake
 * its receiver (keel__rt_deliver_lazy). */
#define RT_LAZY (UINT64_C(1) << 62)
#define RT_PIN_ONE (UINT64_C(1) << 8)
#define RT_PIN_MASK (UINT64_C(0xffff) << 8)
#define RT_LAZY_ONE (UINT64_C(1) << 24)
#define RT_LAZY_MASK (UINT64_C(0xff) << 24)
/* Every RT_LAZY_WAKE-th lazy signal wakes its receiver, which bounds how
 * many an idle process holds unhandled. */
#define RT_LAZY_WAKE 32
#define RT_GEN_SHIFT 32
#define RT_GEN_BITS 30
#define RT_GEN_MASK ((UINT64_C(1) << RT_GEN_BITS) - 1)

/* Pid number = generation << RT_IDX_BITS | slot index (58 bits in all). */
#define RT_IDX_BITS 28
#define RT_IDX_MASK ((UINT64_C(1) << RT_IDX_BITS) - 1)

static inline uint64_t rt_gen(uint64_t ctl) {
  return (ctl >> RT_GEN_SHIFT) & RT_GEN_MASK;
}

/* ---- messages and mailbox ---------------------------------------------- */

/* Link of the intrusive MPSC queue (Vyukov). */
typedef struct rt_mnode {
  _Atomic(struct rt_mnode *) next;
} rt_mnode;

/* One message: one allocation holding the link, the term and its flat copy.
 * `extra` is the chain of counted references of the copy (large binaries,
 * resources), released when the message is freed; its low bit marks a
 * message of the pooled size class (see message.c). */
typedef struct rt_msg {
  rt_mnode link;
  keel_term term;
  uintptr_t extra;
  uint64_t words[];
} rt_msg;

/* Messages whose copy needs at most RT_POOL_WORDS words share the small
 * size class, and those needing at most RT_POOL_MED_WORDS the medium one;
 * both are recycled through per-scheduler caches (a 3-tuple such as
 * {'EXIT', From, Reason} and signal records (signal.h) are small; a
 * gen_server call {'$gen_call', {Pid, Alias}, Req} or its reply {Alias,
 * Reply} is medium). */
#define RT_POOL_WORDS 4
#define RT_POOL_MED_WORDS 16
#define RT_POOL_CLASSES 2
#define RT_POOL_BATCH 256u
#define RT_POOL_BYTES (sizeof(rt_msg) + RT_POOL_WORDS * sizeof(uint64_t))
#define RT_POOL_MED_BYTES                                                      \
  (sizeof(rt_msg) + RT_POOL_MED_WORDS * sizeof(uint64_t))

/* ---- process control block --------------------------------------------- */

struct keel_proc {
  /* Written by other threads: the control word and the mailbox head. */
  _Atomic uint64_t ctl;
  _Atomic(rt_mnode *) mb_head;
  /* Processes with a bounded queue (max_queue) only: messages pushed,
   * ever (senders; wraps). With mq_out below, the queue length. Other
   * processes pay no counting on the send path; introspection asks them
   * (an INFO signal). */
  _Atomic uint32_t mq_in;
  /* Owner-only (the scheduler running the process), or owner-written and
   * read by introspection: kept off the senders' cache line. */
  /* Messages taken or dropped by the owner, net of those that signals
   * turned into (wraps). */
  _Atomic uint32_t mq_out;
  rt_mnode *mb_tail;
  rt_mnode mb_stub;
  /* Owner-only: a pop met a push in progress since the process last went
   * idle (keel__mbox_pop; turned into RT_STALLED by keel__rt_try_idle). */
  bool mb_stalled;
  /* Set by keel_process_queue_len: someone reads the queue length, so the
   * owner may count its mailbox at the end of a run (keel__rt_queue_scan);
   * nobody asking, nobody counts. */
  _Atomic bool qlen_want;
  /* In the padding here: the messages queued and not handled at the end
   * of the last run, up to RT_QLEN_SCAN (keel_process_queue_len; written
   * by the owner only when it changes), and, owner-only, the mailbox's
   * messages at its last count (qscan_at). */
  _Atomic uint16_t pub_qlen;
  uint16_t qscan_mbox;
  struct keel_proc *qnext; /* link in the inject queue */
  keel_handler_fn handler;
  void *state;
  keel_terminate_fn terminate;
  keel_term exit_reason;
  uint64_t pid_number;
  int32_t budget;
  _Atomic uint32_t free_next; /* link in the free-slot stack */
  _Atomic uint32_t name;      /* registered name: atom index + 1, 0 = none */
  uint32_t mq_limit;          /* max_queue (0: none); fixed from spawn */
  /* long_message_queue thresholds (0: off), fixed from spawn; with
   * mq_limit, whether the queue is counted (mq_in, mq_out). */
  uint32_t long_on, long_off;
  _Atomic bool long_q; /* a long-queue "on" event is out, "off" not yet */
  bool counted;
  /* Owner-only: messages (not timer records) in the inner queue below. */
  uint32_t inner_msgs;
  /* Owner-only: the armed receive timeout (timer.c), and whether the
   * current handler call is its firing. */
  struct rt_timer *tmo;
  bool timed_out;
  bool trap_exit;              /* owner-only: exit signals become messages */
  _Atomic uint16_t exit_hooks; /* armed exit hooks (signal.c), a bit each */
  _Atomic uint8_t prio;        /* keel_priority; queue_kill: the policy */
  bool queue_kill;
  /* Owner-only: when the mailbox was last counted at a run's end
   * (keel__rt_queue_scan), in units of 2^20 ns (wraps). */
  uint16_t qscan_at;

  struct rt_fiber *fiber; /* fiber processes only (fiber.c) */
  struct rt_ext *ext;     /* links, monitors, aliases (signal.h); lazy */
  /* Owner-only inner message queue: messages (and timer records) fetched
   * from the mailbox but not yet handled or taken, in arrival order; for
   * fibers also the messages receive skipped (signal.h). */
  rt_msg *inner_head, *inner_tail;
  /* Published at the end of each run, for keel_process_info. */
  _Atomic uint64_t reductions;
  _Atomic uint64_t pub; /* links, monitors, monitored-by (12 bits each),
                           heap KiB (28 bits) */
  keel_heap heap;
};

/* ---- schedulers -------------------------------------------------------- */

#define RT_RUNQ_SIZE 256u

typedef struct rt_sched {
  /* Local run queue (Go's runq): the owner pushes at tail and pops at head;
   * thieves take half with a CAS on head. */
  _Atomic uint32_t rq_head;
  _Atomic uint32_t rq_tail;
  _Atomic(keel_proc *) rq[RT_RUNQ_SIZE];
  /* The process woken last by this scheduler, run next; it shares the
   * remaining slice of its waker. Other schedulers never steal it; only
   * the watchdog takes it from a scheduler stuck in one process, and fires
   * the due timers of its wheel (keel__rt_handoff in sched.c). ho_busy is
   * 1 while the owner touches runnext or its wheel during a run
   * (keel__rt_own_begin), ho_closed is 1 while the watchdog keeps the
   * owner out of both (the owner then uses the paths of other threads),
   * ho_lock is held by the watchdog while it works on them. */
  _Atomic(keel_proc *) runnext;
  _Atomic uint32_t ho_busy;
  _Atomic uint32_t ho_closed;
  _Atomic uint32_t ho_lock;
  int32_t slice; /* budget left in the current slice */
  /* Owner-written: iterations of the scheduling loop (the inject-queue
   * check every 61; the watchdog tells runs apart by it). */
  _Atomic uint32_t tick;
  uint32_t rng;  /* victim selection */
  bool spinning; /* counted in node.nspinning */
  unsigned id;
  /* Futex word: 0 = parked or about to park, 1 = woken. */
  _Atomic uint32_t park;
  /* Owner-written, read by the watchdog: the pid number + 1 of the process
   * running, 0 between runs. A run is named by (tick, run_pid != 0). */
  _Atomic uint64_t run_pid;
  /* Owner-written, read by keel_sched_utilisation: idle time (looking for
   * work or parked) so far, the start of the current idle period (0 when
   * busy), and a sequence count (odd while the two are being updated). */
  _Atomic uint32_t util_seq;
  _Atomic uint64_t idle_ns;
  _Atomic uint64_t idle_start;
  /* Owner-written, read by stats. */
  _Atomic int64_t msg_alloc;
  _Atomic int64_t msg_free;
  _Atomic uint64_t msg_sent;
  /* Owner-only cache of free pooled messages. */
  rt_msg *pool[RT_POOL_CLASSES], *pool_spare[RT_POOL_CLASSES];
  uint32_t pool_n[RT_POOL_CLASSES];
  struct rt_wheel *wheel; /* its timer wheel (timer.h) */
  /* Owner-only block of reference numbers (ref.c). */
  uint64_t ref_cur, ref_end;
  pthread_t thread;
  keel__ctx ctx; /* the scheduler thread's own context (fiber.c) */
} rt_sched;

/* ---- the node ---------------------------------------------------------- */

#define RT_CHUNK_BITS 12
#define RT_CHUNK_SIZE (1u << RT_CHUNK_BITS)
#define RT_FREE_NIL UINT32_MAX

/* A queue of runnable processes of one priority other than normal (node
 * wide: such processes are few). */
typedef struct rt_pq {
  pthread_mutex_t lock;
  keel_proc *head, *tail; /* linked through qnext */
  _Atomic size_t len;
} rt_pq;

typedef struct rt_node {
  unsigned nsched;
  uint64_t spin_ns;
  size_t max_procs;
  rt_sched *sched;
  /* Process table: chunks of RT_CHUNK_SIZE PCBs, allocated on demand. */
  _Atomic(keel_proc *) *chunks;
  size_t nchunks;
  _Atomic uint32_t high_water; /* slots ever used */
  _Atomic uint64_t free_top;   /* free-slot stack: tag << 32 | index */
  _Atomic size_t live;         /* processes alive */
  _Atomic uint64_t spawned;
  /* Global inject queue (processes made runnable off the schedulers, and
   * run-queue overflow). */
  pthread_mutex_t inject_lock;
  /* Runnable processes of priority low, high and max (indexed by
   * keel_priority; [KEEL_PRIO_NORMAL] unused: normal ones use the rings). */
  rt_pq prioq[4];
  keel_proc *inject_head, *inject_tail;
  _Atomic size_t inject_len;
  /* Parking: idle schedulers (one bit each) and spinning ones. */
  _Atomic uint64_t idle_mask;
  _Atomic uint32_t nspinning;
  _Atomic uint32_t stopping;
  /* Messages allocated and freed outside scheduler threads. */
  _Atomic int64_t foreign_alloc;
  _Atomic int64_t foreign_free;
  _Atomic uint64_t foreign_sent;
  _Atomic uint64_t dropped; /* messages refused by a full queue */
  /* Batches of RT_POOL_BATCH free pooled messages handed from schedulers
   * that free more than they allocate to those that allocate more. */
  pthread_mutex_t pool_lock;
  rt_msg *pool_batches[RT_POOL_CLASSES];
  _Atomic size_t pool_nbatches[RT_POOL_CLASSES];
  /* Timer table and per-scheduler wheels (timer.c). */
  struct rt_timers *timers;
  /* Stack pools of fiber processes (fiber.c). */
  struct rt_fibers *fibers;
  /* Reference numbers handed out in blocks (ref.c). */
  _Atomic uint64_t ref_next;
  /* Registered names (names.c). */
  struct rt_names *names;
  /* Deterministic simulation (sim.c): NULL on a threaded node. */
  struct rt_sim *sim;
  _Atomic uint64_t vclock_ns; /* its virtual clock */
  /* Dirty pools (dirty.c), the watchdog (watchdog.c) and the node's start
   * time (utilisation). wd_parked: the watchdog sleeps until a scheduler
   * leaves its park (keel__rt_watchdog_kick). */
  struct rt_dirty *dirty;
  struct rt_watchdog *wd;
  /* The I/O poller (io.c): NULL on a simulated node. */
  struct rt_io *io;
  _Atomic uint32_t wd_parked;
  uint64_t start_ns;
} rt_node;

/* The running node (NULL when none runs). */
extern rt_node *keel__rt;

/* Thread-local: scheduler of this thread and process being run (NULL on
 * other threads). Handler processes never migrate in the middle of a
 * handler call, so caching these within one call is safe. */
extern _Thread_local rt_sched *keel__rt_tl_sched;
extern _Thread_local keel_proc *keel__rt_tl_proc;

/* Process table (proc.c). */
keel_proc *keel__rt_slot(rt_node *n, uint32_t idx);
void keel__rt_proc_die(rt_node *n, keel_proc *p);
/* Pushes m (a message, or a timer record posing as one) into the mailbox
 * of the process numbered num if it is alive, and makes it runnable.
 * Returns false (m untouched, still the caller's) when it is dead or
 * stale. count: whether it counts in the node's messages_sent. */
bool keel__rt_deliver(rt_node *n, rt_sched *s, uint64_t num, rt_msg *m,
                      bool count);
/* Delivers now, bypassing a simulation's hold (flags: 0 or RT_SIGPEND). */
bool keel__rt_deliver_direct(rt_node *n, uint64_t num, rt_msg *m, bool count,
                             uint64_t flags);
/* keel__rt_deliver for a signal record: also sets RT_SIGPEND. */
bool keel__rt_deliver_signal(rt_node *n, uint64_t num, rt_msg *m);
/* keel__rt_deliver_signal for a signal whose handling nobody waits for
 * (a monitor or demonitor: only the receiver's death, or introspection,
 * reads what it changes). An idle receiver is not woken; the signal waits
 * in its mailbox, in order, until the process runs for another reason,
 * until every RT_LAZY_WAKE-th lazy signal, or until keel__rt_nudge. A
 * dying process handles the ones left as if they had come while it was
 * alive (signal.c). Saves the receiver a wake-up (and its cache lines a
 * round trip between cores) per signal. */
bool keel__rt_deliver_lazy(rt_node *n, uint64_t num, rt_msg *m);
/* The end of a delivery to p, which the caller has pinned (keel__rt_pin)
 * and whose push of m it has completed: drops the pin and wakes p as
 * flags say (RT_SIGPEND, RT_LAZY). For tests that take a delivery apart
 * (keel__mbox_push_begin). */
void keel__rt_deliver_end(rt_node *n, keel_proc *p, const rt_msg *m,
                          uint64_t flags);
/* The start of a delivery of m to the process numbered num that
 * keel__rt_deliver_end completes: pins the receiver and exchanges its
 * mailbox head (*prev: the node to link m into with
 * keel__mbox_push_end). NULL, with nothing done, when the receiver is
 * dead or counts its queue. For the simulation (sim.c) and tests. */
keel_proc *keel__rt_push_begin(rt_node *n, uint64_t num, rt_msg *m,
                               rt_mnode **prev);
/* Makes pinned process p handle the lazy signals it holds: if any, sets
 * RT_SIGPEND and wakes it when idle. Any thread. */
void keel__rt_nudge(rt_node *n, keel_proc *p);
/* The process numbered num if it is alive (not exiting), else NULL. A
 * snapshot: it may start dying right after. */
keel_proc *keel__rt_lookup(rt_node *n, uint64_t num);

/* Messages (message.c). s is the calling thread's scheduler or NULL. */
rt_msg *keel__rt_msg_new(rt_node *n, rt_sched *s, keel_term t);
void keel__rt_free_msg(rt_msg *m);
/* A block of the pooled message size (RT_POOL_BYTES) for a runtime
 * record (a signal), from the calling scheduler's cache (s NULL: malloc);
 * not counted as a message. NULL on out-of-memory. */
void *keel__rt_rec_alloc(rt_node *n, rt_sched *s);
/* Turns a block from keel__rt_rec_alloc into a message holding a copy of
 * t, a term of immediates needing at most RT_POOL_WORDS words (copied
 * into the block itself); counted as a message from then on. */
rt_msg *keel__rt_rec_to_msg(rt_node *n, rt_sched *s, void *rec, keel_term t);
/* Gives back a block from keel__rt_rec_alloc, from any thread. */
void keel__rt_rec_free(rt_node *n, rt_sched *s, void *rec);
/* Frees every cached message (node stop, after the threads are joined). */
void keel__rt_pool_drain(rt_node *n);

/* Mailbox (mailbox.c). */
void keel__mbox_init(keel_proc *p);
void keel__mbox_push(keel_proc *p, rt_msg *m);
/* keel__mbox_push in its two steps, for tests that hold a push in
 * progress: begin exchanges the head and returns the previous node, end
 * links it to m. */
rt_mnode *keel__mbox_push_begin(keel_proc *p, rt_msg *m);
void keel__mbox_push_end(rt_mnode *prev, rt_msg *m);
/* Owner-only: the next entry, or NULL when the mailbox is empty or a push
 * ahead is still in progress (then sets p->mb_stalled). */
rt_msg *keel__mbox_pop(keel_proc *p);
/* Owner-only: whether a message is ready to pop (a push still in progress
 * may be missed; its producer then wakes the process). */
bool keel__mbox_has_mail(keel_proc *p);

/* Owner side of the handoff protocol (see rt_sched.runnext), around an
 * access to s's runnext or wheel during a run: false when the watchdog has
 * closed them (the caller then takes the path of a foreign thread); after
 * true, the caller calls keel__rt_own_end(s). Two plain stores and a load:
 * the watchdog's membarrier is the heavy side of the fence. */
static inline bool keel__rt_own_begin(rt_sched *s) {
  atomic_store_explicit(&s->ho_busy, 1, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  if (__builtin_expect(
          atomic_load_explicit(&s->ho_closed, memory_order_relaxed) != 0, 0)) {
    atomic_store_explicit(&s->ho_busy, 0, memory_order_release);
    return false;
  }
  return true;
}

static inline void keel__rt_own_end(rt_sched *s) {
  atomic_signal_fence(memory_order_seq_cst);
  /* release: our accesses before the watchdog's acquire of ho_busy. */
  atomic_store_explicit(&s->ho_busy, 0, memory_order_release);
}

/* Scheduling (sched.c). */
void keel__rt_make_runnable(rt_node *n, keel_proc *p);
/* Goes idle unless mail arrived meanwhile (then returns false). */
bool keel__rt_try_idle(keel_proc *p);
/* Puts p (still SCHEDULED) back at the tail of s's run queue. */
void keel__rt_requeue(rt_node *n, rt_sched *s, keel_proc *p);

/* Deterministic simulation (sim.c, sched.c). */
/* Slice budget of a run that does not inherit one (randomised in a
 * simulation, to vary preemption points). */
int32_t keel__rt_sim_slice(rt_node *n);
/* One scheduling decision of scheduler s on the calling (simulation)
 * thread: fires its due timers, picks a process (runnext, ring, inject
 * queue, or a steal) and runs it. Returns false when s found nothing. */
bool keel__rt_sim_run_one(rt_node *n, rt_sched *s, uint64_t *ran_pid);
/* Whether entries are held back (sim.c). */
bool keel__rt_sim_held(rt_node *n);
/* Whether any process is queued anywhere, or entries are held back. */
bool keel__rt_sim_any_work(rt_node *n);
/* Whether any process is queued anywhere. */
bool keel__rt_sim_any_work_queued(rt_node *n);
int keel__rt_sim_init(rt_node *n, uint64_t seed);
/* Whether the simulation holds back entry m to the process numbered to
 * (it then owns m and delivers it later, in order per sender and
 * receiver). Some entries are held in the middle of their push: the
 * receiver pinned, the mailbox head exchanged, the link not yet written,
 * the window a preempted producer leaves a real receiver. */
bool keel__rt_sim_hold(rt_node *n, uint64_t to, rt_msg *m, bool count,
                       uint64_t flags);
/* Frees the entries still held (node stop, before processes die); a
 * push held in progress is completed instead (its receiver frees it). */
void keel__rt_sim_drop_held(rt_node *n);
/* Completes the pushes to p that the simulation holds in progress
 * (keel__rt_sim_hold): for a receiver that must not wait for them, as a
 * dying one waiting for its pins, or a receive waiting for a mark. */
void keel__rt_sim_finish_pushes(rt_node *n, keel_proc *p);
/* keel_node_start, threaded or simulated. */
int keel__rt_node_start(const keel_node_opts *opts, bool sim, uint64_t seed);
void keel__rt_sim_destroy(rt_node *n);

/* Introspection (introspect.c): publishes p's figures (owner, end of a
 * run that used `used` budget units). Inline: it runs once per run, the
 * table counts only for the processes that have a table. */
uint64_t keel__rt_pub_ext(const keel_proc *p);
/* Most mailbox messages the end of a run counts (keel_process_queue_len
 * saturates there), and how often at most (ns): a process that ends its
 * runs with a backlog walks at most RT_QLEN_SCAN of its mailbox's nodes
 * per RT_QLEN_SCAN_UNITS. */
#define RT_QLEN_SCAN 4096u
#define RT_QLEN_SCAN_UNITS 10u /* of 2^20 ns: about 10 ms */
/* The owner's count of the messages in its mailbox (not the inner queue),
 * at most RT_QLEN_SCAN; the last count when it is recent. */
uint16_t keel__rt_queue_scan(keel_proc *p);
static inline void keel__rt_publish(keel_proc *p, int32_t used) {
  if (used > 0)
    atomic_store_explicit(
        &p->reductions,
        atomic_load_explicit(&p->reductions, memory_order_relaxed) +
            (uint64_t)used,
        memory_order_relaxed);
  uint64_t kib = (p->heap.used_words + 127) / 128; /* 8-byte words */
  uint64_t v = (kib < 0xfffffffu ? kib : 0xfffffffu) << 36;
  if (p->ext != NULL)
    v |= keel__rt_pub_ext(p);
  atomic_store_explicit(&p->pub, v, memory_order_relaxed);
  /* The inner queue is counted as it changes; an empty mailbox (the
   * usual end of a run: a handler drained it, a fiber's receive moved it
   * to the inner queue) costs two loads. */
  uint32_t q = p->inner_msgs;
  if (p->mb_tail != &p->mb_stub ||
      atomic_load_explicit(&p->mb_stub.next, memory_order_relaxed) != NULL)
    q += keel__rt_queue_scan(p);
  q = q < RT_QLEN_SCAN ? q : RT_QLEN_SCAN; /* fits 16 bits */
  if (atomic_load_explicit(&p->pub_qlen, memory_order_relaxed) != q)
    atomic_store_explicit(&p->pub_qlen, (uint16_t)q, memory_order_relaxed);
}
/* Owner-side queue accounting: n messages left the queue (taken, dropped)
 * or, negative, joined it without a sender (signals turned into them). */
void keel__rt_long_queue_off(keel_proc *p, uint32_t len);
/* Emits [keel, runtime, long_message_queue] (introspect.c). */
void keel__rt_long_queue_event(const keel_proc *p, uint32_t len, bool on);
static inline void keel__rt_mq_out(keel_proc *p, int32_t k) {
  if (!p->counted)
    return; /* counted only for bounded or watched queues (proc.c) */
  uint32_t out =
      atomic_load_explicit(&p->mq_out, memory_order_relaxed) + (uint32_t)k;
  atomic_store_explicit(&p->mq_out, out, memory_order_relaxed);
  if (atomic_load_explicit(&p->long_q, memory_order_relaxed))
    keel__rt_long_queue_off(
        p, atomic_load_explicit(&p->mq_in, memory_order_relaxed) - out);
}

/* Fiber processes (fiber.c). */
int keel__rt_fibers_init(rt_node *n);
void keel__rt_fibers_destroy(rt_node *n);
/* Stacks still handed out when the last node's pools were destroyed (0
 * unless a fiber leaked its stack); for tests. */
extern size_t keel__rt_fiber_stacks_left;
/* Counters of the running node's stack pools summed over size classes,
 * and their guard mechanism (a keel__stack_guard) in *guard unless NULL;
 * for tests. KEEL_ESTATE when no node runs. */
struct keel__stack_pool_stats;
int keel__rt_fiber_stack_stats(struct keel__stack_pool_stats *out, int *guard);
/* Scheduler threads: an alternate signal stack for the overflow report
 * (returns it, or NULL when the thread has one already), and its
 * release. */
void *keel__rt_fiber_thread_init(void);
void keel__rt_fiber_thread_fini(void *altstack);
/* Runs fiber process p on scheduler s until it blocks, yields or ends. */
void keel__rt_fiber_run(rt_node *n, rt_sched *s, keel_proc *p);
/* Frees p's fiber (context, stack, held and skipped messages) without
 * resuming it; p must not be running. */
void keel__rt_fiber_release(rt_node *n, keel_proc *p);
/* The body function of fiber process p (for introspection). */
const void *keel__rt_fiber_entry(const keel_proc *p);
/* Called by keel_send (and the signal calls) when a fiber's budget is
 * used up: gives way. Returns the scheduler the fiber runs on afterwards
 * (a thread-local read before the switch may name another thread's). */
rt_sched *keel__rt_fiber_budget_yield(keel_proc *p);
/* Suspends the running fiber process p: switches to its scheduler, which
 * calls after(arg) on its own stack once the fiber's registers are saved.
 * p stays SCHEDULED and queued nowhere; whoever later calls
 * keel__rt_make_runnable(p) (exactly once) resumes it. Returns KEEL_OK
 * after the resume, or KEEL_ESTATE when p is not a fiber running on the
 * calling thread. */
int keel__rt_fiber_suspend(keel_proc *p, void (*after)(void *), void *arg);
/* Initialises a spawned process slot; shared by both spawn kinds
 * (proc.c). Returns KEEL_OK with *out set, or an error. */
int keel__rt_spawn_common(rt_node *n, keel_handler_fn handler, void *state,
                          const keel_spawn_opts *opts, struct rt_fiber *f,
                          keel_proc **out);

/* Dirty pools (dirty.c): start (KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM,
 * KEEL_EIO) and stop, which runs every submitted job to its end and joins
 * the threads (after the schedulers are joined). */
int keel__rt_dirty_start(rt_node *n, const keel_node_opts *o);
void keel__rt_dirty_stop(rt_node *n);
uint64_t keel__rt_dirty_jobs(const rt_node *n);
/* Whether the calling thread is a dirty pool thread running a job. */
bool keel__rt_dirty_on_thread(void);

/* Watchdog (watchdog.c): start, stop (after the schedulers are joined),
 * long schedules seen, and the wake-up of a parked watchdog by a
 * scheduler leaving its park. */
int keel__rt_watchdog_start(rt_node *n, const keel_node_opts *o);
void keel__rt_watchdog_stop(rt_node *n);
uint64_t keel__rt_watchdog_events(const rt_node *n);
void keel__rt_watchdog_wake(rt_node *n);
static inline void keel__rt_watchdog_kick(rt_node *n) {
  /* seq_cst: pairs with the watchdog's store of wd_parked and its re-check
   * of the idle mask (our idle bit was cleared by a seq_cst RMW before). */
  if (atomic_load_explicit(&n->wd_parked, memory_order_seq_cst) != 0)
    keel__rt_watchdog_wake(n);
}
/* Makes the queued work of s, stuck in the run of its loop iteration
 * `tick`, takeable by the other schedulers: its runnext process goes to
 * the inject queue and its due timers fire (both only with a working
 * membarrier), and a parked scheduler is woken when s has anything queued
 * (sched.c). Returns whether anything was queued. Called by the watchdog
 * only. */
bool keel__rt_handoff(rt_node *n, rt_sched *s, uint32_t tick);
/* A full memory barrier on every thread of the process (membarrier(2),
 * registered at node start), and whether it is available (watchdog.c). */
void keel__rt_membarrier(void);
bool keel__rt_membarrier_ok(void);

#endif /* KEEL_RT_INTERNAL_H */
