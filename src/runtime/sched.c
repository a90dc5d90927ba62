/*
 * sched.c - scheduler threads: run queues, work stealing, parking.
 *
 * Each scheduler owns a bounded ring (Go's runq: owner pushes at the tail
 * and pops at the head, thieves take half with a CAS on the head) and a
 * runnext slot for the process it woke last (message-passing locality; the
 * woken process shares the remainder of its waker's slice, so a ping-pong
 * pair cannot starve the ring). Processes made runnable by non-scheduler
 * threads, and ring overflow, go to one global inject queue (mutex +
 * intrusive list), which every scheduler checks every 61 schedules and
 * whenever its own queues are empty.
 *
 * Idle protocol (Go's spinning rule, see proc.go in the Go runtime):
 *   - whoever makes work stealable (ring or inject push) issues a seq_cst
 *     fence, then wakes one parked scheduler if nobody is spinning;
 *   - a scheduler that runs dry spins (steals) for up to spin_ns, then
 *     stops spinning, fences and re-checks every queue; then it sets its
 *     idle bit, fences, re-checks again, and only then sleeps on its futex.
 * Either the waker sees the idle bit or the parker sees the work, so a
 * wake-up cannot be lost; no periodic tick is needed.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/futex.h"
#include "keel/clock.h"
#include "runtime/io.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"
#include "runtime/timer.h"

rt_node *keel__rt;

_Thread_local rt_sched *keel__rt_tl_sched;
_Thread_local keel_proc *keel__rt_tl_proc;
#define tl_sched keel__rt_tl_sched
#define tl_proc keel__rt_tl_proc

keel_proc *keel_current(void) {
  return tl_proc;
}

unsigned keel_node_schedulers(void) {
  rt_node *n = keel__rt;
  return n == NULL ? 0 : n->nsched;
}

static void wakep(rt_node *n);

/* ---- inject queue ------------------------------------------------------ */

/* Returns true when the inject queue was empty before (see wakep). */
static bool inject_put_list(rt_node *n, keel_proc *head, keel_proc *tail,
                            size_t count) {
  pthread_mutex_lock(&n->inject_lock);
  bool was_empty = n->inject_head == NULL;
  tail->qnext = NULL;
  if (n->inject_tail != NULL)
    n->inject_tail->qnext = head;
  else
    n->inject_head = head;
  n->inject_tail = tail;
  atomic_fetch_add_explicit(&n->inject_len, count, memory_order_relaxed);
  pthread_mutex_unlock(&n->inject_lock);
  return was_empty;
}

static keel_proc *inject_get(rt_node *n) {
  if (atomic_load_explicit(&n->inject_len, memory_order_relaxed) == 0)
    return NULL;
  pthread_mutex_lock(&n->inject_lock);
  keel_proc *p = n->inject_head;
  if (p != NULL) {
    n->inject_head = p->qnext;
    if (n->inject_head == NULL)
      n->inject_tail = NULL;
    atomic_fetch_sub_explicit(&n->inject_len, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&n->inject_lock);
  return p;
}

/* ---- priority queues (low, high, max) ----------------------------------- */

static void prio_put(rt_node *n, keel_proc *p, unsigned prio) {
  rt_pq *q = &n->prioq[prio];
  pthread_mutex_lock(&q->lock);
  p->qnext = NULL;
  if (q->tail != NULL)
    q->tail->qnext = p;
  else
    q->head = p;
  q->tail = p;
  atomic_fetch_add_explicit(&q->len, 1, memory_order_relaxed);
  pthread_mutex_unlock(&q->lock);
}

static keel_proc *prio_get(rt_node *n, unsigned prio) {
  rt_pq *q = &n->prioq[prio];
  if (atomic_load_explicit(&q->len, memory_order_relaxed) == 0)
    return NULL;
  pthread_mutex_lock(&q->lock);
  keel_proc *p = q->head;
  if (p != NULL) {
    q->head = p->qnext;
    if (q->head == NULL)
      q->tail = NULL;
    atomic_fetch_sub_explicit(&q->len, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&q->lock);
  return p;
}

/* Max first, then high; low on one schedule in eight (so normal work
 * cannot starve it). */
static keel_proc *prio_take(rt_node *n, uint32_t tick) {
  keel_proc *p = prio_get(n, KEEL_PRIO_MAX);
  if (p == NULL)
    p = prio_get(n, KEEL_PRIO_HIGH);
  if (p == NULL && tick % 8 == 0)
    p = prio_get(n, KEEL_PRIO_LOW);
  return p;
}

static size_t prio_len(rt_node *n) {
  return atomic_load_explicit(&n->prioq[KEEL_PRIO_LOW].len,
                              memory_order_relaxed) +
         atomic_load_explicit(&n->prioq[KEEL_PRIO_HIGH].len,
                              memory_order_relaxed) +
         atomic_load_explicit(&n->prioq[KEEL_PRIO_MAX].len,
                              memory_order_relaxed);
}

/* Takes a fair share of the inject queue (at most half a ring) when the
 * local ring is empty: returns one process and queues the rest locally. */
static keel_proc *inject_grab(rt_node *n, rt_sched *s) {
  size_t len = atomic_load_explicit(&n->inject_len, memory_order_relaxed);
  if (len == 0)
    return NULL;
  pthread_mutex_lock(&n->inject_lock);
  len = atomic_load_explicit(&n->inject_len, memory_order_relaxed);
  size_t take = len / n->nsched + 1;
  if (take > len)
    take = len;
  if (take > RT_RUNQ_SIZE / 2)
    take = RT_RUNQ_SIZE / 2;
  keel_proc *first = n->inject_head, *last = first;
  for (size_t i = 1; i < take; i++)
    last = last->qnext;
  if (first != NULL) {
    n->inject_head = last->qnext;
    if (n->inject_head == NULL)
      n->inject_tail = NULL;
    atomic_fetch_sub_explicit(&n->inject_len, take, memory_order_relaxed);
  }
  pthread_mutex_unlock(&n->inject_lock);
  if (first == NULL)
    return NULL;
  /* Read the whole chain before publishing any of it: once a process is in
   * the ring it can be stolen, run, exit and have its slot reused, and its
   * qnext is then someone else's. */
  keel_proc *batch[RT_RUNQ_SIZE / 2];
  size_t nb = 0;
  for (keel_proc *q = first; q != last && q->qnext != NULL; q = q->qnext)
    batch[nb++] = q->qnext;
  uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
  for (size_t i = 0; i < nb; i++)
    atomic_store_explicit(&s->rq[(t + i) % RT_RUNQ_SIZE], batch[i],
                          memory_order_relaxed);
  atomic_store_explicit(&s->rq_tail, t + (uint32_t)nb, memory_order_release);
  if (first != last) /* our ring became non-empty: let a parked one help */
    wakep(n);
  return first;
}

/* ---- local run queue --------------------------------------------------- */

static uint32_t runq_len(rt_sched *s) {
  uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
  uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_acquire);
  return t - h;
}

/* Moves half of a full ring plus p to the inject queue. */
static bool runq_put_slow(rt_node *n, rt_sched *s, keel_proc *p, uint32_t h,
                          uint32_t t) {
  keel_proc *batch[RT_RUNQ_SIZE / 2 + 1];
  uint32_t k = (t - h) / 2;
  for (uint32_t i = 0; i < k; i++)
    batch[i] = atomic_load_explicit(&s->rq[(h + i) % RT_RUNQ_SIZE],
                                    memory_order_relaxed);
  if (!atomic_compare_exchange_strong_explicit(
          &s->rq_head, &h, h + k, memory_order_acq_rel, memory_order_relaxed))
    return false; /* a thief made room: retry the fast path */
  batch[k] = p;
  for (uint32_t i = 0; i < k; i++)
    batch[i]->qnext = batch[i + 1];
  inject_put_list(n, batch[0], batch[k], k + 1);
  return true;
}

/* Returns true when the ring was empty before (the caller then wakes a
 * parked scheduler; later pushes rely on that one, see wakep). */
static bool runq_put(rt_node *n, rt_sched *s, keel_proc *p) {
  for (;;) {
    uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
    if (t - h < RT_RUNQ_SIZE) {
      atomic_store_explicit(&s->rq[t % RT_RUNQ_SIZE], p, memory_order_relaxed);
      /* release: publishes the entry to consumers' acquire of tail. */
      atomic_store_explicit(&s->rq_tail, t + 1, memory_order_release);
      return t == h;
    }
    if (runq_put_slow(n, s, p, h, t))
      return true;
  }
}

static keel_proc *runq_get(rt_sched *s) {
  uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
  for (;;) {
    uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
    if (t == h)
      return NULL;
    keel_proc *p =
        atomic_load_explicit(&s->rq[h % RT_RUNQ_SIZE], memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(
            &s->rq_head, &h, h + 1, memory_order_acq_rel, memory_order_acquire))
      return p;
  }
}

/* Steals half of victim's ring into s's ring; returns one process to run. */
static keel_proc *runq_steal(rt_sched *s, rt_sched *v) {
  keel_proc *batch[RT_RUNQ_SIZE / 2];
  uint32_t n;
  for (;;) {
    uint32_t h = atomic_load_explicit(&v->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&v->rq_tail, memory_order_acquire);
    n = t - h;
    n = n - n / 2;
    if (n == 0)
      return NULL;
    if (n > RT_RUNQ_SIZE / 2)
      continue; /* inconsistent snapshot */
    for (uint32_t i = 0; i < n; i++)
      batch[i] = atomic_load_explicit(&v->rq[(h + i) % RT_RUNQ_SIZE],
                                      memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(
            &v->rq_head, &h, h + n, memory_order_acq_rel, memory_order_relaxed))
      break;
  }
  /* Our own ring is empty (we only steal when dry): the batch fits. */
  uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
  for (uint32_t i = 1; i < n; i++)
    atomic_store_explicit(&s->rq[(t + i - 1) % RT_RUNQ_SIZE], batch[i],
                          memory_order_relaxed);
  atomic_store_explicit(&s->rq_tail, t + n - 1, memory_order_release);
  return batch[0];
}

/* ---- waking ------------------------------------------------------------ */

/* Wakes one parked scheduler if work became stealable and nobody spins. */
static void wakep(rt_node *n) {
  /* seq_cst: orders our queue push before the loads below (StoreLoad);
   * pairs with the fences in park(). */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&n->nspinning, memory_order_relaxed) != 0)
    return;
  uint64_t mask = atomic_load_explicit(&n->idle_mask, memory_order_relaxed);
  if (mask == 0)
    return;
  uint32_t zero = 0;
  if (!atomic_compare_exchange_strong_explicit(
          &n->nspinning, &zero, 1, memory_order_acq_rel, memory_order_relaxed))
    return;
  unsigned i;
  do {
    if (mask == 0) {
      atomic_fetch_sub_explicit(&n->nspinning, 1, memory_order_acq_rel);
      return;
    }
    i = (unsigned)__builtin_ctzll(mask);
  } while (!atomic_compare_exchange_weak_explicit(
      &n->idle_mask, &mask, mask & ~(UINT64_C(1) << i), memory_order_acq_rel,
      memory_order_relaxed));
  /* The woken scheduler starts out spinning (counted above). */
  atomic_store_explicit(&n->sched[i].park, 1, memory_order_release);
  keel__futex_wake(&n->sched[i].park, 1);
}

void keel__rt_make_runnable(rt_node *n, keel_proc *p) {
  unsigned prio = atomic_load_explicit(&p->prio, memory_order_relaxed);
  if (prio != KEEL_PRIO_NORMAL) {
    prio_put(n, p, prio);
    wakep(n);
    return;
  }
  rt_sched *s = tl_sched;
  if (s == NULL) {
    if (inject_put_list(n, p, p, 1))
      wakep(n);
    return;
  }
  /* The watchdog may take runnext from a scheduler stuck in one process
   * (keel__rt_handoff). */
  if (!keel__rt_own_begin(s)) {
    runq_put(n, s, p); /* handed off: keep out of runnext */
    wakep(n);
    return;
  }
  keel_proc *old = atomic_load_explicit(&s->runnext, memory_order_relaxed);
  atomic_store_explicit(&s->runnext, p, memory_order_release);
  keel__rt_own_end(s);
  /* Waking a scheduler when the ring becomes non-empty is enough: whoever
   * wakes (or was spinning) steals half, and a spinner that finds work
   * wakes the next one (got()), so later pushes need no fence. */
  if (old != NULL && runq_put(n, s, old))
    wakep(n);
}

/* ---- finding work ------------------------------------------------------ */

static keel_proc *steal_any(rt_node *n, rt_sched *s) {
  s->rng = s->rng * 1103515245u + 12345u;
  unsigned start = (s->rng >> 8) % n->nsched;
  for (unsigned k = 0; k < n->nsched; k++) {
    rt_sched *v = &n->sched[(start + k) % n->nsched];
    if (v == s)
      continue;
    keel_proc *p = runq_steal(s, v);
    if (p != NULL)
      return p;
  }
  return inject_get(n);
}

static bool any_work(rt_node *n) {
  if (atomic_load_explicit(&n->inject_len, memory_order_relaxed) != 0 ||
      prio_len(n) != 0)
    return true;
  for (unsigned i = 0; i < n->nsched; i++)
    if (runq_len(&n->sched[i]) != 0)
      return true;
  return false;
}

static void stop_spinning(rt_node *n, rt_sched *s) {
  if (!s->spinning)
    return;
  s->spinning = false;
  atomic_fetch_sub_explicit(&n->nspinning, 1, memory_order_seq_cst);
}

/* Parks until woken. Returns after a wake-up or when work is visible. */
static void park(rt_node *n, rt_sched *s) {
  uint64_t bit = UINT64_C(1) << s->id;
  atomic_store_explicit(&s->park, 0, memory_order_relaxed);
  atomic_fetch_or_explicit(&n->idle_mask, bit, memory_order_seq_cst);
  /* seq_cst: our idle bit before the re-check (pairs with wakep). */
  atomic_thread_fence(memory_order_seq_cst);
  for (;;) {
    /* A due timer (or one queued by another thread) ends the park too;
     * otherwise the sleep lasts until the next timer deadline. */
    uint64_t sleep_ns = keel__rt_timers_park_ns(n, s);
    if (any_work(n) || sleep_ns == 0 ||
        atomic_load_explicit(&n->stopping, memory_order_acquire)) {
      uint64_t old =
          atomic_fetch_and_explicit(&n->idle_mask, ~bit, memory_order_seq_cst);
      if ((old & bit) == 0)
        s->spinning = true; /* a waker claimed us and counted us */
      keel__rt_watchdog_kick(n);
      return;
    }
    keel__futex_wait(&s->park, 0, sleep_ns == UINT64_MAX ? 0 : sleep_ns);
    if (atomic_load_explicit(&s->park, memory_order_acquire) != 0) {
      /* Woken by wakep (it cleared our bit and counted us as spinning) or
       * by node stop. */
      uint64_t old =
          atomic_fetch_and_explicit(&n->idle_mask, ~bit, memory_order_seq_cst);
      if ((old & bit) == 0)
        s->spinning = true;
      keel__rt_watchdog_kick(n);
      return;
    }
  }
}

/* Utilisation: an idle period starts when the scheduler runs dry and ends
 * when it finds work (owner-only writes; readers use util_seq as a
 * seqlock, see keel_sched_utilisation). */
static void util_mark(rt_sched *s, uint64_t idle_add, uint64_t start) {
  uint32_t seq = atomic_load_explicit(&s->util_seq, memory_order_relaxed);
  atomic_store_explicit(&s->util_seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  if (idle_add != 0)
    atomic_store_explicit(
        &s->idle_ns,
        atomic_load_explicit(&s->idle_ns, memory_order_relaxed) + idle_add,
        memory_order_relaxed);
  atomic_store_explicit(&s->idle_start, start, memory_order_relaxed);
  atomic_store_explicit(&s->util_seq, seq + 2, memory_order_release);
}

static void util_idle_begin(rt_sched *s, uint64_t now) {
  if (atomic_load_explicit(&s->idle_start, memory_order_relaxed) == 0)
    util_mark(s, 0, now);
}

static void util_idle_end(rt_sched *s) {
  uint64_t t0 = atomic_load_explicit(&s->idle_start, memory_order_relaxed);
  if (t0 == 0)
    return;
  uint64_t now = keel_monotonic_ns();
  util_mark(s, now > t0 ? now - t0 : 1, 0);
}

/* Leaves the spinning state on finding work; if we were the last spinner,
 * wakes another scheduler to look for more (Go's resetspinning). */
static keel_proc *got(rt_node *n, rt_sched *s, keel_proc *p) {
  util_idle_end(s);
  if (s->spinning) {
    stop_spinning(n, s);
    if (atomic_load_explicit(&n->nspinning, memory_order_seq_cst) == 0)
      wakep(n);
  }
  return p;
}

/* How many timers may fire in this pass: each fire may make a process
 * runnable, so fill at most half the ring (never the inject queue, where
 * the scheduler's other runnable processes would wait behind a timer
 * storm), and at most 64 between two schedules. */
static unsigned timer_room(rt_sched *s) {
  uint32_t len = runq_len(s);
  uint32_t room = len < RT_RUNQ_SIZE / 2 ? RT_RUNQ_SIZE / 2 - len : 0;
  return room < 64 ? room : 64;
}

static void ho_reopen(rt_sched *s);

/* Starts an iteration of the scheduling loop: before touching runnext or
 * the wheel, the light side of take_over's asymmetric fence (the tick
 * store, then the ho_closed load). */
static inline uint32_t next_tick(rt_sched *s) {
  uint32_t t = atomic_load_explicit(&s->tick, memory_order_relaxed) + 1;
  atomic_store_explicit(&s->tick, t, memory_order_release);
  atomic_signal_fence(memory_order_seq_cst);
  if (__builtin_expect(
          atomic_load_explicit(&s->ho_closed, memory_order_relaxed) != 0, 0))
    ho_reopen(s);
  return t;
}

/* Returns the next process to run, or NULL when the node stops. *inherit
 * tells whether it continues the current slice (runnext). */
static keel_proc *find_runnable(rt_node *n, rt_sched *s, bool *inherit) {
  for (;;) {
    if (atomic_load_explicit(&n->stopping, memory_order_acquire)) {
      stop_spinning(n, s);
      return NULL;
    }
    keel_proc *p;
    *inherit = false;
    uint32_t tick = next_tick(s);
    bool timers_due =
        keel__rt_timers_any(s) && keel__rt_timers_run(n, s, timer_room(s));
    if (tick % 61 == 0 && (p = inject_get(n)) != NULL)
      return got(n, s, p);
    if (prio_len(n) != 0 && (p = prio_take(n, tick)) != NULL)
      return got(n, s, p);
    if ((p = atomic_load_explicit(&s->runnext, memory_order_relaxed)) != NULL) {
      /* Plain: the watchdog takes runnext only while s is inside a run. */
      atomic_store_explicit(&s->runnext, NULL, memory_order_relaxed);
      if (s->slice > 0) {
        *inherit = true;
        return got(n, s, p);
      }
      /* The slice is used up: with nothing else waiting, go on with a fresh
       * slice; otherwise the woken process takes its turn behind the ring,
       * so a busy process cycling through the ring cannot keep it waiting
       * forever. */
      if (runq_len(s) == 0 &&
          atomic_load_explicit(&n->inject_len, memory_order_relaxed) == 0)
        return got(n, s, p);
      if (runq_put(n, s, p))
        wakep(n);
    }
    if ((p = runq_get(s)) != NULL || (p = inject_grab(n, s)) != NULL ||
        (p = prio_get(n, KEEL_PRIO_LOW)) != NULL)
      return got(n, s, p);
    if (timers_due)
      continue; /* fire the next batch */
    uint64_t now = keel_monotonic_ns();
    util_idle_begin(s, now);
    /* Dry: spin (steal) for a while if few others do. */
    if (!s->spinning &&
        2 * atomic_load_explicit(&n->nspinning, memory_order_relaxed) <
            n->nsched) {
      s->spinning = true;
      atomic_fetch_add_explicit(&n->nspinning, 1, memory_order_seq_cst);
    }
    if (s->spinning) {
      uint64_t deadline = now + n->spin_ns;
      unsigned round = 0;
      do {
        if ((p = steal_any(n, s)) != NULL)
          return got(n, s, p);
        for (int k = 0; k < 32; k++)
          keel__cpu_relax();
      } while ((++round & 7) != 0 || keel_monotonic_ns() < deadline);
      stop_spinning(n, s);
      /* seq_cst: spinner count before the re-check (pairs with wakep). */
      atomic_thread_fence(memory_order_seq_cst);
      if (any_work(n))
        continue;
    }
    park(n, s);
  }
}

/* ---- running a process ------------------------------------------------- */

/* Goes idle unless mail arrived meanwhile (then returns false). Everything
 * delivered before has been looked at (lazy signals to a running process
 * set NEWMAIL), so the lazy count starts again from zero; RT_STALLED tells
 * lazy senders whether the last pops met a push in progress. */
bool keel__rt_try_idle(keel_proc *p) {
  uint64_t ctl = atomic_load_explicit(&p->ctl, memory_order_acquire);
  /* Cleared first: from a successful CAS on, p may run elsewhere. A stall
   * that outlives a failed attempt is met, and recorded, again by the
   * pops that follow. */
  uint64_t stalled = p->mb_stalled ? RT_STALLED : 0;
  p->mb_stalled = false;
  for (;;) {
    if (ctl & RT_NEWMAIL) {
      atomic_fetch_and_explicit(&p->ctl, ~RT_NEWMAIL, memory_order_acq_rel);
      return false;
    }
    uint64_t nctl = (ctl & ~(RT_ST_MASK | RT_LAZY_MASK | RT_STALLED)) |
                    RT_ST_IDLE | stalled;
    if (atomic_compare_exchange_weak_explicit(
            &p->ctl, &ctl, nctl, memory_order_acq_rel, memory_order_acquire))
      return true;
  }
}

#define try_idle keel__rt_try_idle

void keel__rt_requeue(rt_node *n, rt_sched *s, keel_proc *p) {
  unsigned prio = atomic_load_explicit(&p->prio, memory_order_relaxed);
  if (prio != KEEL_PRIO_NORMAL) {
    prio_put(n, p, prio);
    wakep(n);
    return;
  }
  runq_put(n, s, p); /* still SCHEDULED */
  if (runq_len(s) > 1 ||
      atomic_load_explicit(&s->runnext, memory_order_relaxed) != NULL)
    wakep(n);
}

/* The next message (or timer record) of handler process p; signals met on
 * the way are handled (*die when one kills p). */
static inline rt_msg *next_msg(rt_node *n, keel_proc *p, bool *die) {
  if (p->inner_head == NULL) {
    rt_msg *m = keel__mbox_pop(p);
    if (m == NULL || !rt_entry_is_signal(m))
      return m; /* the fast path */
    m = keel__rt_sig_handle(n, p, (rt_sig *)m, die);
    if (m != NULL || *die)
      return m;
  }
  return keel__rt_next_entry(n, p, die);
}

static void ho_lock(rt_sched *s) {
  unsigned spins = 0;
  uint32_t zero = 0;
  while (!atomic_compare_exchange_weak_explicit(
      &s->ho_lock, &zero, 1, memory_order_acquire, memory_order_relaxed)) {
    zero = 0;
    if (++spins % 64 == 0)
      sched_yield();
    else
      keel__cpu_relax();
  }
}

static void ho_unlock(rt_sched *s) {
  atomic_store_explicit(&s->ho_lock, 0, memory_order_release);
}

/* Owner, at the start of the loop iteration after a run during which the
 * watchdog closed runnext and the wheel: waits for a handoff in progress,
 * then reopens them. */
static void ho_reopen(rt_sched *s) {
  ho_lock(s);
  atomic_store_explicit(&s->ho_closed, 0, memory_order_relaxed);
  ho_unlock(s);
}

/* Watchdog side of the handoff protocol (a Dekker pair with an asymmetric
 * fence). We store ho_closed, then membarrier() runs a full barrier on
 * every thread, after which every store the owner made before it is
 * visible to us and every load it makes after it sees ho_closed. Then: if
 * run_pid shows a run and tick is still the stuck run's, the owner is in
 * that run, or ended it after the barrier and its next loop iteration
 * (next_tick) sees ho_closed and waits on ho_lock for us; if ho_busy is 0,
 * the owner is not inside keel__rt_own_begin/end and its next one sees
 * ho_closed and takes the foreign path. Only then are runnext and the
 * wheel ours: we take runnext and fire the due timers (a bounded number
 * per call; the watchdog calls again every millisecond while s is stuck;
 * the processes they wake go to the inject queue). */
static keel_proc *take_over(rt_node *n, rt_sched *s, uint32_t tick) {
  keel_proc *p = NULL;
  ho_lock(s);
  atomic_store_explicit(&s->ho_closed, 1, memory_order_relaxed);
  keel__rt_membarrier();
  /* run_pid first: a run whose end is visible cannot pass the test. */
  uint64_t rp = atomic_load_explicit(&s->run_pid, memory_order_acquire);
  if (rp == 0 || atomic_load_explicit(&s->tick, memory_order_acquire) != tick) {
    atomic_store_explicit(&s->ho_closed, 0, memory_order_relaxed);
  } else if (atomic_load_explicit(&s->ho_busy, memory_order_acquire) == 0) {
    p = atomic_load_explicit(&s->runnext, memory_order_acquire);
    if (p != NULL)
      atomic_store_explicit(&s->runnext, NULL, memory_order_relaxed);
    for (int k = 0;
         k < 16 && keel__rt_timers_any(s) && keel__rt_timers_run(n, s, 64); k++)
      ;
  }
  ho_unlock(s);
  return p;
}

bool keel__rt_handoff(rt_node *n, rt_sched *s, uint32_t tick) {
  keel_proc *p = keel__rt_membarrier_ok() ? take_over(n, s, tick) : NULL;
  if (p != NULL)
    (void)inject_put_list(n, p, p, 1);
  if (p == NULL && runq_len(s) == 0)
    return false;
  wakep(n);
  return true;
}

/* Watchdog stamps: run_pid is the running pid + 1, 0 between runs
 * (release: what came before, e.g. the loop's accesses to the wheel,
 * happens before the watchdog's acquire). */
static inline void run_begin(rt_sched *s, const keel_proc *p) {
  atomic_store_explicit(&s->run_pid, p->pid_number + 1, memory_order_release);
}

static inline void run_end(rt_sched *s) {
  atomic_store_explicit(&s->run_pid, 0, memory_order_release);
}

static inline __attribute__((always_inline)) void
run_process(rt_node *n, rt_sched *s, keel_proc *p, bool inherit) {
  if (!inherit)
    s->slice = n->sim == NULL ? KEEL_SLICE_BUDGET : keel__rt_sim_slice(n);
  if (p->fiber != NULL) {
    run_begin(s, p);
    keel__rt_fiber_run(n, s, p);
    run_end(s);
    return;
  }
  /* The state stays SCHEDULED while queued and while running: no CAS to
   * start a run. NEWMAIL may already be set; it only costs one more pop. */
  p->budget = s->slice;
  int32_t start = p->budget;
  run_begin(s, p);
  tl_proc = p;
  int32_t left = 0;
  /* Signals first, ahead of any message backlog (G5). */
  if (keel__rt_sig_pending_take(p) && keel__rt_sig_drain(n, p)) {
    keel__rt_proc_die(n, p);
    tl_proc = NULL;
    return;
  }
  for (;;) {
    /* Once the node stops no more user code runs (see sched_main). */
    if (atomic_load_explicit(&n->stopping, memory_order_acquire)) {
      left = p->budget;
      keel__rt_publish(p, start - left);
      break;
    }
    bool die = false;
    rt_msg *m = next_msg(n, p, &die);
    if (die) {
      left = p->budget;
      keel__rt_proc_die(n, p); /* the slot may be reused from here on */
      break;
    }
    if (m == NULL) {
      left = p->budget;
      keel__rt_publish(p, start - left); /* while p is still ours */
      start = left;
      if (try_idle(p)) /* p may run elsewhere from here on */
        break;
      continue;
    }
    bool timeout = m->term == KEEL_NONE; /* a timer record (timer.h) */
    if (timeout) {
      if (!keel__rt_timeout_popped(n, p, m))
        continue; /* a stale receive timeout: never seen by the handler */
    } else if (p->tmo != NULL) {
      keel__rt_proc_timeout_clear(n, p); /* a message came first */
    }
    keel_handler_status st;
    if (timeout) {
      p->timed_out = true;
      st = p->handler(p, KEEL_ATOM(TIMEOUT), p->state);
      p->timed_out = false;
    } else {
      keel__rt_mq_out(p, 1); /* being handled: out of the queue */
      st = p->handler(p, m->term, p->state);
      keel__rt_free_msg(m);
    }
    p->budget -= KEEL_COST_MESSAGE;
    left = p->budget;
    if (st == KEEL_EXIT) {
      keel__rt_proc_die(n, p); /* the slot may be reused from here on */
      break;
    }
    if (left <= 0) {
      keel__rt_publish(p, start - left);
      /* Out of budget: yield only if there is more to do. */
      if (p->inner_head == NULL && !keel__mbox_has_mail(p) && try_idle(p))
        break;
      keel__rt_requeue(n, s, p);
      break;
    }
  }
  tl_proc = NULL;
  run_end(s);
  s->slice = left > 0 ? left : 0;
}

static void *sched_main(void *arg) {
  rt_sched *s = arg;
  rt_node *n = keel__rt;
  tl_sched = s;
  (void)keel__ctx_init_current(&s->ctx); /* fibers switch back to it */
  void *altstack = keel__rt_fiber_thread_init();
  for (;;) {
    bool inherit;
    keel_proc *p = find_runnable(n, s, &inherit);
    if (p == NULL)
      break;
    /* p may have been made runnable by work that already saw the stop (a
     * dirty job ending because the node stops): once stopping is set no
     * more user code runs here; node stop terminates p with the rest. The
     * acquire pairs with the stopping store through whoever queued p. */
    if (atomic_load_explicit(&n->stopping, memory_order_acquire))
      break;
    run_process(n, s, p, inherit);
  }
  keel__rt_fiber_thread_fini(altstack);
  tl_sched = NULL;
  return NULL;
}

/* ---- simulation ---------------------------------------------------------- */

bool keel__rt_sim_any_work_queued(rt_node *n) {
  if (any_work(n))
    return true;
  for (unsigned i = 0; i < n->nsched; i++)
    if (n->sched[i].runnext != NULL)
      return true;
  return false;
}

bool keel__rt_sim_any_work(rt_node *n) {
  return keel__rt_sim_any_work_queued(n) || keel__rt_sim_held(n);
}

bool keel__rt_sim_run_one(rt_node *n, rt_sched *s, uint64_t *ran_pid) {
  keel_proc *p = NULL;
  bool inherit = false;
  if (keel__rt_timers_any(s))
    (void)keel__rt_timers_run(n, s, timer_room(s));
  uint32_t tick = ++s->tick;
  if (tick % 61 == 0)
    p = inject_get(n);
  if (p == NULL && prio_len(n) != 0)
    p = prio_take(n, tick);
  if (p == NULL && s->runnext != NULL) {
    p = s->runnext;
    s->runnext = NULL;
    inherit = s->slice > 0;
  }
  if (p == NULL && (p = runq_get(s)) == NULL &&
      (p = inject_grab(n, s)) == NULL && (p = steal_any(n, s)) == NULL &&
      (p = prio_get(n, KEEL_PRIO_LOW)) == NULL)
    return false;
  *ran_pid = p->pid_number; /* p may be gone after its run */
  run_process(n, s, p, inherit);
  return true;
}

/* ---- node start and stop ----------------------------------------------- */

static void node_free(rt_node *n) {
  keel__rt_sim_destroy(n);
  keel__rt_names_destroy(n);
  keel__rt_remote_reset();
  keel__rt_fibers_destroy(n);
  keel__rt_timers_destroy(n);
  if (n->sched != NULL)
    keel__rt_pool_drain(n);
  if (n->chunks != NULL) {
    for (size_t i = 0; i < n->nchunks; i++) {
      keel_proc *c = atomic_load_explicit(&n->chunks[i], memory_order_relaxed);
      for (size_t j = 0; c != NULL && j < RT_CHUNK_SIZE; j++)
        keel__rt_ext_free(&c[j]); /* tables kept by the slots */
      free(c);
    }
    free(n->chunks);
  }
  free(n->sched);
  pthread_mutex_destroy(&n->inject_lock);
  for (int i = 0; i < 4; i++)
    pthread_mutex_destroy(&n->prioq[i].lock);
  pthread_mutex_destroy(&n->pool_lock);
  free(n);
}

static int node_alloc(const keel_node_opts *o, rt_node **out) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned ns = o->schedulers;
  if (ns == 0)
    ns = ncpu < 1                     ? 1
         : ncpu > KEEL_MAX_SCHEDULERS ? KEEL_MAX_SCHEDULERS
                                      : (unsigned)ncpu;
  if (ns > KEEL_MAX_SCHEDULERS)
    return KEEL_EINVAL;
  size_t maxp =
      o->max_processes != 0 ? o->max_processes : KEEL_DEFAULT_MAX_PROCESSES;
  if (maxp > KEEL_MAX_PROCESSES)
    return KEEL_EINVAL;
  rt_node *n = calloc(1, sizeof *n);
  if (n == NULL)
    return KEEL_ENOMEM;
  pthread_mutex_init(&n->inject_lock, NULL);
  for (int i = 0; i < 4; i++)
    pthread_mutex_init(&n->prioq[i].lock, NULL);
  pthread_mutex_init(&n->pool_lock, NULL);
  n->nsched = ns;
  n->max_procs = maxp;
  n->spin_ns = (uint64_t)(o->spin_us != 0 ? o->spin_us : 20) * 1000u;
  n->nchunks = (maxp + RT_CHUNK_SIZE - 1) / RT_CHUNK_SIZE;
  n->chunks = calloc(n->nchunks, sizeof *n->chunks);
  n->start_ns = keel_monotonic_ns();
  n->sched = aligned_alloc(64, ((sizeof(rt_sched) * ns + 63) / 64) * 64);
  if (n->sched != NULL)
    memset(n->sched, 0, sizeof(rt_sched) * ns);
  if (n->chunks == NULL || n->sched == NULL) {
    node_free(n);
    return KEEL_ENOMEM;
  }
  atomic_init(&n->free_top, (uint64_t)RT_FREE_NIL);
  atomic_init(&n->ref_next, 1);
  for (unsigned i = 0; i < ns; i++) {
    n->sched[i].id = i;
    n->sched[i].rng = 2654435761u * (i + 1);
  }
  *out = n;
  return KEEL_OK;
}

static void stop_threads(rt_node *n, unsigned started) {
  atomic_store_explicit(&n->stopping, 1, memory_order_seq_cst);
  for (unsigned i = 0; i < started; i++) {
    atomic_store_explicit(&n->sched[i].park, 1, memory_order_release);
    keel__futex_wake(&n->sched[i].park, 1);
  }
  for (unsigned i = 0; i < started; i++)
    pthread_join(n->sched[i].thread, NULL);
}

int keel__rt_node_start(const keel_node_opts *opts, bool sim, uint64_t seed) {
  keel_node_opts def = {0};
  if (keel__rt != NULL)
    return KEEL_ESTATE;
  rt_node *n;
  int rc = node_alloc(opts != NULL ? opts : &def, &n);
  if (rc == KEEL_OK && sim && (rc = keel__rt_sim_init(n, seed)) != KEEL_OK)
    node_free(n);
  if (rc != KEEL_OK)
    return rc;
  if (sim) {
    if ((rc = keel__rt_timers_init(n)) != KEEL_OK ||
        (rc = keel__rt_fibers_init(n)) != KEEL_OK ||
        (rc = keel__rt_names_init(n)) != KEEL_OK) {
      node_free(n);
      return rc;
    }
    keel__rt = n; /* no threads: the caller drives (sim.c) */
    return KEEL_OK;
  }
  if (rc == KEEL_OK && ((rc = keel__rt_timers_init(n)) != KEEL_OK ||
                        (rc = keel__rt_fibers_init(n)) != KEEL_OK ||
                        (rc = keel__rt_names_init(n)) != KEEL_OK))
    node_free(n);
  if (rc != KEEL_OK)
    return rc;
  rc = keel__rt_dirty_start(n, opts != NULL ? opts : &def);
  if (rc != KEEL_OK) {
    node_free(n);
    return rc;
  }
  keel__rt = n;
  unsigned started = 0;
  while (started < n->nsched &&
         pthread_create(&n->sched[started].thread, NULL, sched_main,
                        &n->sched[started]) == 0)
    started++;
  rc = started < n->nsched
           ? KEEL_EIO
           : keel__rt_watchdog_start(n, opts != NULL ? opts : &def);
  if (rc == KEEL_OK && (rc = keel__rt_io_start(n)) != KEEL_OK)
    keel__rt_watchdog_stop(n);
  if (rc != KEEL_OK) {
    stop_threads(n, started);
    keel__rt_dirty_stop(n);
    keel__rt = NULL;
    node_free(n);
  }
  return rc;
}

int keel_node_start(const keel_node_opts *opts) {
  return keel__rt_node_start(opts, false, 0);
}

int keel_node_stop(void) {
  rt_node *n = keel__rt;
  if (n == NULL || tl_sched != NULL || keel__rt_dirty_on_thread())
    return KEEL_ESTATE;
  stop_threads(n, n->sim == NULL ? n->nsched : 0);
  if (n->sim != NULL)
    keel__rt_sim_drop_held(n);
  keel__rt_watchdog_stop(n);
  keel__rt_io_stop(n); /* no more readiness events */
  /* In-flight and queued dirty work runs to its end (it sees
   * keel_dirty_process_alive() false from now on). */
  keel__rt_dirty_stop(n);
  /* Every scheduler has exited: terminate what is left, on this thread. */
  uint32_t hw = atomic_load(&n->high_water);
  for (uint32_t i = 0; i < hw; i++) {
    keel_proc *p = keel__rt_slot(n, i);
    if (p == NULL || (atomic_load_explicit(&p->ctl, memory_order_acquire) &
                      RT_ST_MASK) == RT_ST_FREE)
      continue;
    p->exit_reason = KEEL_ATOM(SHUTDOWN);
    tl_proc = p;
    keel__rt_proc_die(n, p);
    tl_proc = NULL;
  }
  keel__rt_io_destroy(n);     /* descriptors no process closed */
  keel__rt_timers_destroy(n); /* frees pending messages: needs keel__rt */
  keel__rt = NULL;
  node_free(n);
  return KEEL_OK;
}
