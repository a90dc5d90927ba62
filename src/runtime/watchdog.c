/*
 * watchdog.c - the watchdog thread (Go's sysmon, BEAM's long_schedule
 * monitor) and scheduler utilisation.
 *
 * Every scheduler stores the pid it runs + 1 in run_pid at the start of
 * each process run and 0 at its end, and counts the iterations of its
 * loop in tick (it did already, for the inject queue): one plain store at
 * each end of a run, no clock read. A run is named by (tick, run_pid !=
 * 0). The watchdog samples these every 1-10 ms. A run seen by two samples
 * in a row is suspicious: the period drops to 1 ms. A run is bounded by
 * two times: `seen`, the first sample that saw it (it started before),
 * and `after`, the sample before that (it started after). When now -
 * after exceeds long_schedule_ms the scheduler is treated as stuck and
 * its queued work is handed off (keel__rt_handoff: the runnext process
 * goes to the inject queue, its due timers fire, a parked scheduler is
 * woken to steal the ring), again on every sample while it stays stuck.
 * When now - seen exceeded long_schedule_ms the run is also a long
 * schedule, reported once it ends with its duration measured from `seen`
 * (so within one period, rounded down): handing off early costs nothing,
 * reporting a run shorter than the limit would be wrong. The stuck
 * process itself cannot be preempted (see docs/design/runtime.md).
 *
 * Back-off: with no suspicious run the period doubles up to 10 ms; when
 * every scheduler is parked the watchdog sleeps on its futex until a
 * scheduler leaves its park (keel__rt_watchdog_kick), so an idle node
 * stays at no CPU. The parking handshake is a Dekker pair: the watchdog
 * stores wd_parked then re-reads the idle mask; a scheduler clears its
 * idle bit then reads wd_parked (both seq_cst).
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#ifdef __linux__
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "base/futex.h"
#include "keel/clock.h"
#include "keel/telemetry.h"
#include "runtime/rt_internal.h"

#define WD_MIN_NS UINT64_C(1000000)
#define WD_MAX_NS UINT64_C(10000000)
#define MS_NS UINT64_C(1000000)

typedef struct wd_slot {
  uint32_t tick;     /* loop iteration at the last sample */
  bool running;      /* whether a process ran then */
  uint64_t pid;      /* pid number of that run */
  uint64_t seen_ns;  /* first sample that saw the run */
  uint64_t after_ns; /* the sample before: the run started after it */
  bool long_run;     /* reported when it ends */
} wd_slot;

typedef struct rt_watchdog {
  pthread_t thread;
  _Atomic uint32_t word; /* futex: 1 = woken (stop or kick) */
  uint64_t long_ns;
  keel_long_schedule_fn cb;
  void *cb_arg;
  _Atomic uint64_t events;
  uint64_t last_ns; /* time of the last sample (or wake-up) */
  rt_node *node;
  wd_slot *slots;
} rt_watchdog;

/* The telemetry event of a long schedule: [keel, runtime, long_schedule],
 * measurement duration (ns), metadata pid (BEAM's system_monitor
 * long_schedule message, as telemetry). Looked up once. */
static keel_tel_event *long_schedule_event(void) {
  static keel_tel_event *_Atomic ev;
  keel_tel_event *e = atomic_load_explicit(&ev, memory_order_acquire);
  if (e == NULL &&
      keel_tel_event_parse("keel.runtime.long_schedule", &e) == KEEL_OK)
    atomic_store_explicit(&ev, e, memory_order_release);
  return e;
}

static void report(rt_watchdog *w, const wd_slot *x, uint64_t now) {
  atomic_fetch_add_explicit(&w->events, 1, memory_order_relaxed);
  keel_term pid = keel_pid_local(x->pid);
  keel_tel_event *e = long_schedule_event();
  if (e != NULL) {
    keel_tel_measure m = {keel_atom("duration"), (double)(now - x->seen_ns)};
    keel_tel_meta md = {keel_atom("pid"), pid};
    keel_tel_execute(e, &m, 1, &md, 1);
  }
  if (w->cb != NULL)
    w->cb(pid, now - x->seen_ns, w->cb_arg);
}

/* A run not seen before (or none): remember its bounds. */
static void new_run(rt_watchdog *w, wd_slot *x, uint32_t tick, uint64_t rp,
                    uint64_t now) {
  x->tick = tick;
  x->running = rp != 0;
  x->pid = rp - 1;
  x->seen_ns = now;
  x->after_ns = w->last_ns;
  x->long_run = false;
}

/* One sample of every scheduler. A run is named by the scheduler's loop
 * iteration (tick) with run_pid != 0: two runs always have different
 * ticks. Returns whether a run was seen twice (suspicious); *active tells
 * whether any scheduler was running. */
static bool scan(rt_watchdog *w, uint64_t now, bool *active) {
  rt_node *n = w->node;
  bool suspicious = false;
  for (unsigned i = 0; i < n->nsched; i++) {
    rt_sched *s = &n->sched[i];
    wd_slot *x = &w->slots[i];
    uint64_t rp = atomic_load_explicit(&s->run_pid, memory_order_acquire);
    uint32_t tick = atomic_load_explicit(&s->tick, memory_order_acquire);
    if (rp == 0 || !x->running || tick != x->tick) {
      if (x->long_run)
        report(w, x, now);
      new_run(w, x, tick, rp, now);
      *active |= rp != 0;
      continue;
    }
    x->pid = rp - 1; /* the latest read names the run for sure */
    *active = true;
    suspicious = true;
    if (now - x->seen_ns > w->long_ns)
      x->long_run = true;
    if (now - x->after_ns > w->long_ns)
      (void)keel__rt_handoff(n, s, tick);
  }
  return suspicious;
}

static bool all_parked(rt_node *n) {
  uint64_t full =
      n->nsched >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << n->nsched) - 1;
  return (atomic_load_explicit(&n->idle_mask, memory_order_seq_cst) & full) ==
         full;
}

static bool stopping(const rt_node *n) {
  return atomic_load_explicit(&n->stopping, memory_order_acquire) != 0;
}

static void sleep_for(rt_watchdog *w, uint64_t ns) {
  keel__futex_wait(&w->word, 0, ns);
  atomic_store_explicit(&w->word, 0, memory_order_relaxed);
}

/* Sleeps until a scheduler leaves its park (or the node stops). */
static void park(rt_watchdog *w) {
  rt_node *n = w->node;
  atomic_store_explicit(&n->wd_parked, 1, memory_order_seq_cst);
  if (all_parked(n) && !stopping(n))
    sleep_for(w, 0);
  atomic_store_explicit(&n->wd_parked, 0, memory_order_relaxed);
  w->last_ns = keel_monotonic_ns();
}

static void *wd_main(void *arg) {
  rt_watchdog *w = arg;
  rt_node *n = w->node;
  uint64_t period = WD_MIN_NS;
  w->last_ns = keel_monotonic_ns();
  while (!stopping(n)) {
    uint64_t now = keel_monotonic_ns();
    bool active = false;
    bool suspicious = scan(w, now, &active);
    w->last_ns = now;
    if (suspicious) {
      period = WD_MIN_NS;
    } else if (!active && all_parked(n)) {
      park(w);
      period = WD_MIN_NS;
      continue;
    } else {
      period = period * 2 < WD_MAX_NS ? period * 2 : WD_MAX_NS;
    }
    sleep_for(w, period);
  }
  return NULL;
}

void keel__rt_watchdog_wake(rt_node *n) {
  rt_watchdog *w = n->wd;
  if (w == NULL)
    return;
  atomic_store_explicit(&w->word, 1, memory_order_release);
  keel__futex_wake(&w->word, 1);
}

uint64_t keel__rt_watchdog_events(const rt_node *n) {
  return n->wd == NULL
             ? 0
             : atomic_load_explicit(&n->wd->events, memory_order_relaxed);
}

/* ---- asymmetric fence ----------------------------------------------------
 */

/* membarrier command in use: 0 = none (runnext is then never taken). */
static int barrier_cmd = -1;

static void barrier_init(void) {
  if (barrier_cmd >= 0)
    return;
  barrier_cmd = 0;
#ifdef __linux__
  long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (q < 0)
    return;
  if ((q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0,
              0) == 0)
    barrier_cmd = MEMBARRIER_CMD_PRIVATE_EXPEDITED;
  else if ((q & MEMBARRIER_CMD_GLOBAL) != 0)
    barrier_cmd = MEMBARRIER_CMD_GLOBAL;
#endif
}

bool keel__rt_membarrier_ok(void) {
  return barrier_cmd > 0;
}

void keel__rt_membarrier(void) {
  atomic_thread_fence(memory_order_seq_cst);
#ifdef __linux__
  if (barrier_cmd > 0)
    (void)syscall(SYS_membarrier, barrier_cmd, 0, 0);
#endif
  atomic_thread_fence(memory_order_seq_cst);
}

/* ---- start and stop ------------------------------------------------------
 */

int keel__rt_watchdog_start(rt_node *n, const keel_node_opts *o) {
  if (o->long_schedule_ms > KEEL_LONG_SCHEDULE_MAX_MS)
    return KEEL_EINVAL;
  rt_watchdog *w = calloc(1, sizeof *w);
  if (w == NULL)
    return KEEL_ENOMEM;
  w->slots = calloc(n->nsched, sizeof *w->slots);
  if (w->slots == NULL) {
    free(w);
    return KEEL_ENOMEM;
  }
  barrier_init();
  w->node = n;
  w->long_ns =
      (uint64_t)(o->long_schedule_ms != 0 ? o->long_schedule_ms : 10) * MS_NS;
  w->cb = o->on_long_schedule;
  w->cb_arg = o->on_long_schedule_arg;
  n->wd = w;
  if (pthread_create(&w->thread, NULL, wd_main, w) != 0) {
    n->wd = NULL;
    free(w->slots);
    free(w);
    return KEEL_EIO;
  }
  return KEEL_OK;
}

/* After the schedulers are joined (stopping is set). */
void keel__rt_watchdog_stop(rt_node *n) {
  rt_watchdog *w = n->wd;
  if (w == NULL)
    return;
  keel__rt_watchdog_wake(n);
  pthread_join(w->thread, NULL);
  n->wd = NULL;
  free(w->slots);
  free(w);
}

/* ---- utilisation ------------------------------------------------------- */

static void read_util(const rt_node *n, rt_sched *s, keel_sched_time *o) {
  uint64_t idle, start;
  uint32_t a, b;
  unsigned spins = 0;
  for (;;) {
    a = atomic_load_explicit(&s->util_seq, memory_order_acquire);
    idle = atomic_load_explicit(&s->idle_ns, memory_order_relaxed);
    start = atomic_load_explicit(&s->idle_start, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    b = atomic_load_explicit(&s->util_seq, memory_order_relaxed);
    if (a == b && (a & 1) == 0)
      break;
    if (++spins % 64 == 0)
      sched_yield(); /* the owner was preempted mid-update */
  }
  uint64_t now = keel_monotonic_ns();
  if (start != 0 && now > start)
    idle += now - start;
  o->total_ns = now - n->start_ns;
  o->busy_ns = o->total_ns > idle ? o->total_ns - idle : 0;
}

int keel_sched_utilisation(keel_sched_time *out, unsigned cap) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (out == NULL && cap > 0)
    return KEEL_EINVAL;
  unsigned k = cap < n->nsched ? cap : n->nsched;
  for (unsigned i = 0; i < k; i++)
    read_util(n, &n->sched[i], &out[i]);
  return (int)n->nsched;
}

int keel_sched_run_queues(size_t *out, unsigned cap, size_t *shared) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  if (out == NULL && cap > 0)
    return KEEL_EINVAL;
  unsigned k = cap < n->nsched ? cap : n->nsched;
  for (unsigned i = 0; i < k; i++) {
    rt_sched *s = &n->sched[i];
    uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
    uint32_t len = t - h;
    out[i] = (len <= RT_RUNQ_SIZE ? len : 0) +
             (atomic_load_explicit(&s->runnext, memory_order_relaxed) != NULL);
  }
  if (shared != NULL) {
    size_t q = atomic_load_explicit(&n->inject_len, memory_order_relaxed);
    for (int p = KEEL_PRIO_LOW; p <= KEEL_PRIO_MAX; p++)
      if (p != KEEL_PRIO_NORMAL)
        q += atomic_load_explicit(&n->prioq[p].len, memory_order_relaxed);
    *shared = q;
  }
  return (int)n->nsched;
}
