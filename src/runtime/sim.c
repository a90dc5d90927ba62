/*
 * sim.c - the deterministic simulation mode (keel/sim.h).
 *
 * The node has its usual scheduler structures but no threads. The driving
 * thread plays every scheduler in turn, as the generator says: it sets the
 * scheduler's thread-locals, makes that scheduler's one decision
 * (keel__rt_sim_run_one in sched.c) and clears them again. Fibers switch
 * to and from the scheduler's context as on a scheduler thread; the
 * contexts are all made on the driving thread. Timers run on a virtual
 * clock (timer.c reads n->vclock_ns) that only this file moves.
 *
 * Delivery is simulated too: a send to a live process may be held back
 * (one in four, while fewer than RT_SIM_MAX_HELD are held) and delivered
 * at a later step. Entries of one sender to one receiver stay in order: a
 * send joins the held list whenever an earlier one of the same pair is
 * still held, and a release always takes the oldest entry of its pair. A
 * receiver that died meanwhile refuses the entry as a dying process would.
 * Receive-timeout records are never held.
 *
 * Half of the entries held when their pair holds nothing else are held in
 * the middle of their push instead: the receiver is pinned and its
 * mailbox head exchanged now, the link is written and the receiver woken
 * at the release. Meanwhile the receiver cannot take that entry, the
 * entries after it, or the node before it, as when a producer thread is
 * preempted in that window. Such a push is completed early when its
 * receiver cannot wait for it (keel__rt_sim_finish_pushes).
 */
#include <stdlib.h>

#include "keel/clock.h"
#include "keel/sim.h"
#include "runtime/rt_internal.h"
#include "runtime/signal.h"
#include "runtime/timer.h"

#define MS_NS UINT64_C(1000000)
#define RT_SIM_MAX_HELD 64u

typedef struct rt_held {
  struct rt_held *next;
  uint64_t from, to;
  rt_msg *m;
  bool count;
  uint64_t flags;
  keel_proc *p;   /* a push in progress: its pinned receiver, else NULL */
  rt_mnode *prev; /* and the node its link goes into */
} rt_held;

typedef struct rt_sim {
  uint64_t seed;
  uint64_t rng;
  uint64_t trace;
  uint64_t steps;
  void *altstack;
  rt_held *held, *held_tail; /* oldest first */
  unsigned nheld;
} rt_sim;

/* splitmix64: seeds and draws. */
static uint64_t next_rand(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static uint64_t draw(rt_sim *S, uint64_t bound) {
  return next_rand(&S->rng) % bound;
}

static void mix(rt_sim *S, uint64_t v) {
  S->trace = (S->trace ^ v) * UINT64_C(0x100000001B3);
}

static uint64_t seed_from_env(void) {
  const char *e = getenv("KEEL_SEED");
  if (e != NULL && *e != '\0') {
    uint64_t v = strtoull(e, NULL, 0);
    if (v != 0)
      return v;
  }
  uint64_t t = keel_monotonic_ns();
  return next_rand(&t) | 1;
}

int keel__rt_sim_init(rt_node *n, uint64_t seed) {
  if (!KEEL_HAVE_FIBERS)
    return KEEL_EUNSUPPORTED;
  rt_sim *S = calloc(1, sizeof *S);
  if (S == NULL)
    return KEEL_ENOMEM;
  S->seed = seed != 0 ? seed : seed_from_env();
  S->rng = S->seed;
  S->trace = UINT64_C(0xCBF29CE484222325);
  for (unsigned i = 0; i < n->nsched; i++) {
    n->sched[i].rng = (uint32_t)next_rand(&S->rng) | 1u;
    (void)keel__ctx_init_current(&n->sched[i].ctx);
  }
  S->altstack = keel__rt_fiber_thread_init();
  atomic_init(&n->vclock_ns, 0);
  n->sim = S;
  return KEEL_OK;
}

void keel__rt_sim_destroy(rt_node *n) {
  if (n->sim == NULL)
    return;
  keel__rt_fiber_thread_fini(n->sim->altstack);
  free(n->sim);
  n->sim = NULL;
}

/* ---- held deliveries --------------------------------------------------- */

bool keel__rt_sim_hold(rt_node *n, uint64_t to, rt_msg *m, bool count,
                       uint64_t flags) {
  rt_sim *S = n->sim;
  if (m->term == KEEL_NONE && m->extra == RT_ENTRY_TIMER)
    return false;
  /* The pair: a signal's own sender (also for the answers given on behalf
   * of a dead receiver), else the process sending. */
  keel_proc *self = keel__rt_tl_proc;
  uint64_t from = rt_entry_is_signal(m) ? ((rt_sig *)m)->from
                  : self != NULL        ? self->pid_number
                                        : RT_NO_PID;
  bool pair_held = false;
  for (rt_held *h = S->held; h != NULL && !pair_held; h = h->next)
    pair_held = h->from == from && h->to == to;
  if (!pair_held && (S->nheld >= RT_SIM_MAX_HELD || draw(S, 4) != 0))
    return false;
  rt_held *h = malloc(sizeof *h);
  if (h == NULL)
    return false; /* deliver now: order is kept either way */
  *h = (rt_held){NULL, from, to, m, count, flags, NULL, NULL};
  /* Only the first of a pair: a push puts the entry in the mailbox now,
   * so none of its pair may be held ahead of it. */
  if (!pair_held && draw(S, 2) == 0) {
    h->p = keel__rt_push_begin(n, to, m, &h->prev);
    if (h->p == NULL) { /* dead, or counting its queue: deliver now */
      free(h);
      return false;
    }
  }
  if (S->held_tail != NULL)
    S->held_tail->next = h;
  else
    S->held = h;
  S->held_tail = h;
  S->nheld++;
  return true;
}

bool keel__rt_sim_held(rt_node *n) {
  return n->sim != NULL && n->sim->held != NULL;
}

/* Unlinks h (prev its predecessor, or NULL). */
static void held_unlink(rt_sim *S, rt_held *prev, rt_held *h) {
  if (prev != NULL)
    prev->next = h->next;
  else
    S->held = h->next;
  if (S->held_tail == h)
    S->held_tail = prev;
  S->nheld--;
}

/* Completes the push in progress of h, and frees h. */
static void finish_push(rt_node *n, rt_held *h) {
  keel__mbox_push_end(h->prev, h->m);
  if (h->count)
    atomic_fetch_add_explicit(&n->foreign_sent, 1, memory_order_relaxed);
  keel__rt_deliver_end(n, h->p, h->m, h->flags & (RT_SIGPEND | RT_LAZY));
  free(h);
}

void keel__rt_sim_finish_pushes(rt_node *n, keel_proc *p) {
  rt_sim *S = n->sim;
  rt_held *prev = NULL;
  for (rt_held *h = S->held; h != NULL;) {
    rt_held *next = h->next;
    if (h->p == p) {
      held_unlink(S, prev, h);
      finish_push(n, h);
    } else {
      prev = h;
    }
    h = next;
  }
}

/* Delivers the oldest held entry of a randomly drawn pair. */
static void release_one(rt_node *n) {
  rt_sim *S = n->sim;
  unsigned k = (unsigned)draw(S, S->nheld);
  rt_held *pick = S->held;
  while (k-- > 0)
    pick = pick->next;
  rt_held *prev = NULL, *h = S->held;
  while (h->from != pick->from || h->to != pick->to) {
    prev = h;
    h = h->next;
  }
  held_unlink(S, prev, h);
  mix(S, h->to ^ UINT64_C(0x5eed));
  if (h->p != NULL) {
    finish_push(n, h);
    return;
  }
  if (!keel__rt_deliver_direct(n, h->to, h->m, h->count,
                               h->flags & (RT_SIGPEND | RT_LAZY))) {
    if (rt_entry_is_signal(h->m))
      keel__rt_sig_refused(n, h->to, (rt_sig *)h->m);
    else
      keel__rt_free_msg(h->m);
  }
  free(h);
}

void keel__rt_sim_drop_held(rt_node *n) {
  rt_sim *S = n->sim;
  while (S->held != NULL) {
    rt_held *h = S->held;
    held_unlink(S, NULL, h);
    if (h->p != NULL) { /* in its receiver's mailbox: freed with it */
      keel__mbox_push_end(h->prev, h->m);
      keel__rt_unpin(h->p);
      free(h);
      continue;
    }
    if (rt_entry_is_signal(h->m))
      keel__rt_sig_free((rt_sig *)h->m);
    else
      keel__rt_free_msg(h->m);
    free(h);
  }
}

int32_t keel__rt_sim_slice(rt_node *n) {
  rt_sim *S = n->sim;
  /* A quarter of the runs get the full slice, the others 1..40 messages'
   * worth (sends cost a tenth of that, so fibers yield mid-way too). */
  if (draw(S, 4) == 0)
    return KEEL_SLICE_BUDGET;
  return (int32_t)(1 + draw(S, KEEL_SLICE_BUDGET / KEEL_COST_MESSAGE)) *
         KEEL_COST_MESSAGE;
}

int keel_sim_start(const keel_node_opts *opts, uint64_t seed) {
  keel_node_opts o = {0};
  if (opts != NULL)
    o = *opts;
  if (o.schedulers == 0)
    o.schedulers = 1;
  return keel__rt_node_start(&o, true, seed);
}

static rt_node *sim_node(void) {
  rt_node *n = keel__rt;
  return n != NULL && n->sim != NULL && keel__rt_tl_sched == NULL ? n : NULL;
}

bool keel_sim_active(void) {
  return keel__rt != NULL && keel__rt->sim != NULL;
}

uint64_t keel_sim_seed(void) {
  return keel_sim_active() ? keel__rt->sim->seed : 0;
}

uint64_t keel_sim_time_ms(void) {
  return keel_sim_active() ? atomic_load(&keel__rt->vclock_ns) / MS_NS : 0;
}

uint64_t keel_sim_trace(void) {
  return keel_sim_active() ? keel__rt->sim->trace : 0;
}

uint64_t keel_sim_steps(void) {
  return keel_sim_active() ? keel__rt->sim->steps : 0;
}

static void advance(rt_node *n, uint64_t ns) {
  uint64_t t = atomic_load_explicit(&n->vclock_ns, memory_order_relaxed) + ns;
  atomic_store_explicit(&n->vclock_ns, t, memory_order_relaxed);
  mix(n->sim, t);
}

/* Nothing is queued: fire what is due, or jump to the next deadline.
 * Returns 1, or 0 when there is no timer at all. */
static int idle_step(rt_node *n) {
  uint64_t best = UINT64_MAX;
  for (unsigned i = 0; i < n->nsched; i++) {
    rt_sched *s = &n->sched[i];
    uint64_t ns = keel__rt_timers_park_ns(n, s);
    if (ns == 0) {
      keel__rt_tl_sched = s;
      (void)keel__rt_timers_run(n, s, 64);
      keel__rt_tl_sched = NULL;
      return 1;
    }
    if (ns < best)
      best = ns;
  }
  if (best == UINT64_MAX)
    return 0;
  advance(n, best);
  return 1;
}

int keel_sim_advance(uint64_t ms) {
  rt_node *n = sim_node();
  if (n == NULL)
    return KEEL_ESTATE;
  advance(n, ms * MS_NS);
  return KEEL_OK;
}

int keel_sim_step(void) {
  rt_node *n = sim_node();
  if (n == NULL)
    return KEEL_ESTATE;
  rt_sim *S = n->sim;
  S->steps++;
  if (draw(S, 16) == 0)
    advance(n, draw(S, 2 * MS_NS));
  if (S->held != NULL && draw(S, 3) == 0) {
    keel__rt_tl_sched = &n->sched[draw(S, n->nsched)];
    release_one(n);
    keel__rt_tl_sched = NULL;
    return 1;
  }
  unsigned i = (unsigned)draw(S, n->nsched);
  uint64_t pid = 0;
  keel__rt_tl_sched = &n->sched[i];
  bool ran = keel__rt_sim_run_one(n, &n->sched[i], &pid);
  keel__rt_tl_sched = NULL;
  if (ran) {
    mix(S, ((uint64_t)i << 58) ^ pid);
    return 1;
  }
  if (S->held != NULL && !keel__rt_sim_any_work_queued(n)) {
    keel__rt_tl_sched = &n->sched[i];
    release_one(n); /* nothing else can happen first */
    keel__rt_tl_sched = NULL;
    return 1;
  }
  if (keel__rt_sim_any_work(n))
    return 1; /* another scheduler will find it, or a release comes */
  return idle_step(n);
}

int keel_sim_run(bool (*done)(void *arg), void *arg, uint64_t max_steps) {
  if (sim_node() == NULL)
    return KEEL_ESTATE;
  for (uint64_t k = 0; k < max_steps; k++) {
    if (done != NULL && done(arg))
      return KEEL_OK;
    int rc = keel_sim_step();
    if (rc <= 0)
      return rc < 0 ? rc : done == NULL || done(arg) ? KEEL_OK : KEEL_ENOENT;
  }
  return done != NULL && done(arg) ? KEEL_OK : KEEL_ETIMEDOUT;
}
