/*
 * timer.c - send_after, cancel_timer and receive timeouts on per-scheduler
 * hierarchical timer wheels.
 *
 * Wheel (the layout of tokio's and Linux's wheels): RT_WHEEL_LEVELS levels
 * of 64 slots; a slot of level k spans 64^k ms. A timer due at `when` goes
 * to the level of the highest 6-bit group in which `when` differs from the
 * wheel's `elapsed`, so insert and unlink are O(1) (circular doubly linked
 * slot lists) and the next deadline is found with one 64-bit occupancy
 * word per level. Processing a slot of level k > 0 moves its timers to
 * lower levels (each timer moves at most RT_WHEEL_LEVELS - 1 times).
 *
 * Each scheduler owns one wheel and touches it alone; only the owner fires
 * or unlinks. Other threads cancel with a CAS on the record's control word
 * (timer.h) and queue the record for the owner, which unlinks and releases
 * it on its next pass. A receive timeout goes to the wheel of the scheduler
 * running its process; a send_after timer to the wheel chosen by its
 * destination (so timers to one process fire in deadline order). A thread
 * that is not that wheel's owner starts a timer by queueing it on the
 * owner's inbox (mutex) and waking the owner.
 *
 * No periodic tick: a scheduler checks its wheel between processes and a
 * parked scheduler sleeps on its futex until its next deadline. Firing is
 * bounded per pass (the scheduler passes how many processes it can take) so a
 * burst of expiries cannot keep the scheduler's runnable processes waiting for
 * long.
 *
 * Time: deadlines are whole milliseconds since the node's origin, rounded
 * up; a timer fires when the wheel's clock, rounded down, reaches it, so it
 * never fires before its deadline on the monotonic clock.
 */
#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "base/futex.h"
#include "keel/clock.h"
#include "runtime/timer.h"

#define RT_TM_FIRE_COST 8 /* budget units of a fire; a move costs 1 */
#define RT_TM_FREE_NIL UINT32_MAX
#define MS_NS UINT64_C(1000000)
#define WHEEL_SPAN (UINT64_C(1) << (6 * RT_WHEEL_LEVELS))

static inline uint64_t tm_gen(uint64_t ctl) {
  return (ctl >> 2) & RT_TM_GEN_MASK;
}

/* ---- record table ------------------------------------------------------ */

static rt_timer *tm_slot(rt_timers *T, uint32_t idx) {
  if ((size_t)(idx >> RT_TM_CHUNK_BITS) >= T->nchunks)
    return NULL;
  /* acquire: pairs with the release CAS that installs a chunk. */
  rt_timer *c = atomic_load_explicit(&T->chunks[idx >> RT_TM_CHUNK_BITS],
                                     memory_order_acquire);
  return c == NULL ? NULL : &c[idx & (RT_TM_CHUNK - 1)];
}

static rt_timer *tm_chunk_ensure(rt_timers *T, uint32_t idx) {
  rt_timer *t = tm_slot(T, idx);
  if (t != NULL)
    return t;
  rt_timer *c = keel__fault() ? NULL : calloc(RT_TM_CHUNK, sizeof *c);
  if (c == NULL)
    return NULL;
  rt_timer *expected = NULL;
  if (!atomic_compare_exchange_strong_explicit(
          &T->chunks[idx >> RT_TM_CHUNK_BITS], &expected, c,
          memory_order_acq_rel, memory_order_acquire))
    free(c);
  return tm_slot(T, idx);
}

static int tm_alloc(rt_timers *T, rt_timer **out) {
  uint64_t top = atomic_load_explicit(&T->free_top, memory_order_acquire);
  while ((uint32_t)top != RT_TM_FREE_NIL) {
    rt_timer *t = tm_slot(T, (uint32_t)top);
    uint32_t next = atomic_load_explicit(&t->free_next, memory_order_relaxed);
    uint64_t ntop = (((top >> 32) + 1) << 32) | next;
    if (atomic_compare_exchange_weak_explicit(&T->free_top, &top, ntop,
                                              memory_order_acq_rel,
                                              memory_order_acquire)) {
      *out = t;
      atomic_fetch_add_explicit(&T->live, 1, memory_order_relaxed);
      return KEEL_OK;
    }
  }
  uint32_t hw = atomic_load_explicit(&T->high_water, memory_order_relaxed);
  do {
    if (hw >= (UINT32_C(1) << RT_TM_IDX_BITS))
      return KEEL_ESYSLIMIT;
  } while (!atomic_compare_exchange_weak_explicit(
      &T->high_water, &hw, hw + 1, memory_order_relaxed, memory_order_relaxed));
  rt_timer *t = tm_chunk_ensure(T, hw);
  if (t == NULL)
    return KEEL_ENOMEM; /* the index is lost; harmless */
  t->idx = hw;
  *out = t;
  atomic_fetch_add_explicit(&T->live, 1, memory_order_relaxed);
  return KEEL_OK;
}

/* Frees the record's message (if any), bumps its generation and returns
 * it to the free stack. Called once per use, by whoever holds it last. */
static void tm_release(rt_timers *T, rt_timer *t) {
  uint32_t idx = t->idx;
  if (t->msg != NULL) {
    keel__rt_free_msg(t->msg);
    t->msg = NULL;
  }
  uint64_t ctl = atomic_load_explicit(&t->ctl, memory_order_relaxed);
  uint64_t gen = (tm_gen(ctl) + 1) & RT_TM_GEN_MASK;
  atomic_store_explicit(&t->ctl, (gen << 2) | RT_TM_FREE, memory_order_release);
  uint64_t top = atomic_load_explicit(&T->free_top, memory_order_relaxed);
  uint64_t ntop;
  do {
    atomic_store_explicit(&t->free_next, (uint32_t)top, memory_order_relaxed);
    ntop = (((top >> 32) + 1) << 32) | idx;
    /* release: publishes free_next and the reset record to tm_alloc. */
  } while (!atomic_compare_exchange_weak_explicit(
      &T->free_top, &top, ntop, memory_order_release, memory_order_relaxed));
  atomic_fetch_sub_explicit(&T->live, 1, memory_order_relaxed);
}

/* ---- wheel ------------------------------------------------------------- */

static unsigned level_for(uint64_t elapsed, uint64_t when) {
  uint64_t masked = (elapsed ^ when) | (RT_WHEEL_SLOTS - 1);
  if (masked >= WHEEL_SPAN)
    masked = WHEEL_SPAN - 1;
  unsigned significant = 63u - (unsigned)__builtin_clzll(masked);
  return significant / 6u;
}

static unsigned slot_for(uint64_t when, unsigned level) {
  return (unsigned)((when >> (6u * level)) & (RT_WHEEL_SLOTS - 1));
}

static void due_append(rt_wheel *w, rt_timer *t) {
  t->next = NULL;
  if (w->due == NULL)
    w->due = t;
  else
    w->due_tail->next = t;
  w->due_tail = t;
}

/* Inserts t (owner-only) in its slot, or in the due list when its deadline
 * has passed already. */
static void wheel_insert(rt_wheel *w, rt_timer *t) {
  if (t->when <= w->elapsed) {
    t->in_wheel = false;
    due_append(w, t);
    return;
  }
  unsigned lv = level_for(w->elapsed, t->when);
  unsigned sl = slot_for(t->when, lv);
  t->level = (uint8_t)lv;
  t->slot = (uint8_t)sl;
  rt_timer *head = w->slots[lv][sl];
  if (head == NULL) {
    t->next = t->prev = t;
    w->slots[lv][sl] = t;
    w->occupied[lv] |= UINT64_C(1) << sl;
  } else { /* append at the tail: equal deadlines fire in start order */
    t->prev = head->prev;
    t->next = head;
    head->prev->next = t;
    head->prev = t;
  }
  t->in_wheel = true;
  w->count++;
  if (t->when < w->next_ms)
    w->next_ms = t->when;
}

static void wheel_unlink(rt_wheel *w, rt_timer *t) {
  rt_timer **head = &w->slots[t->level][t->slot];
  if (t->next == t) {
    *head = NULL;
    w->occupied[t->level] &= ~(UINT64_C(1) << t->slot);
  } else {
    t->prev->next = t->next;
    t->next->prev = t->prev;
    if (*head == t)
      *head = t->next;
  }
  t->in_wheel = false;
  w->count--;
}

/* Earliest slot deadline in the wheel; false when the wheel is empty. */
static bool next_expiration(const rt_wheel *w, uint64_t *deadline,
                            unsigned *level, unsigned *slot) {
  for (unsigned lv = 0; lv < RT_WHEEL_LEVELS; lv++) {
    uint64_t occ = w->occupied[lv];
    if (occ == 0)
      continue;
    unsigned shift = 6u * lv;
    unsigned now_slot = slot_for(w->elapsed, lv);
    uint64_t rot = now_slot == 0 ? occ
                                 : (occ >> now_slot) |
                                       (occ << (RT_WHEEL_SLOTS - now_slot));
    unsigned sl = ((unsigned)__builtin_ctzll(rot) + now_slot) % RT_WHEEL_SLOTS;
    uint64_t slot_range = UINT64_C(1) << shift;
    uint64_t level_range = slot_range << 6;
    uint64_t dl = (w->elapsed & ~(level_range - 1)) + sl * slot_range;
    if (dl < w->elapsed)
      dl += level_range;
    *deadline = dl;
    *level = lv;
    *slot = sl;
    return true;
  }
  return false;
}

/* ---- firing ------------------------------------------------------------ */

static void fire(rt_node *n, rt_sched *s, rt_timer *t) {
  rt_timers *T = n->timers;
  /* The watchdog fires for a stuck owner: it must not touch the owner's
   * counters. */
  if (s != keel__rt_tl_sched)
    s = NULL;
  uint64_t ctl = atomic_load_explicit(&t->ctl, memory_order_acquire);
  if ((ctl & RT_TM_ST_MASK) == RT_TM_PENDING &&
      atomic_compare_exchange_strong_explicit(
          &t->ctl, &ctl, (ctl & ~RT_TM_ST_MASK) | RT_TM_FIRED,
          memory_order_acq_rel, memory_order_acquire)) {
    if (t->is_timeout) {
      /* The record itself goes to the mailbox; the process releases it. */
      if (keel__rt_deliver(n, s, t->dest, (rt_msg *)(void *)t, false))
        return;
    } else {
      rt_msg *m = t->msg;
      t->msg = NULL;
      if (!keel__rt_deliver(n, s, t->dest, m, true))
        keel__rt_free_msg(m); /* dead destination: dropped */
    }
  }
  tm_release(T, t);
}

/* Fires or moves down the timers of every slot due at or before now_ms,
 * spending at most *budget (a fire costs RT_TM_FIRE_COST, a move or a
 * cancelled record 1). A slot is finished before any other is looked at,
 * as if taken whole: timers moved down from it are due after it, and
 * `elapsed` stays at its deadline meanwhile. */
static void wheel_process(rt_node *n, rt_sched *s, rt_wheel *w, uint64_t now,
                          int *budget) {
  uint64_t dl;
  unsigned lv, sl;
  while (*budget > 0) {
    if (!w->cur) {
      if (!next_expiration(w, &dl, &lv, &sl) || dl > now)
        break;
      w->cur = true;
      w->cur_level = (uint8_t)lv;
      w->cur_slot = (uint8_t)sl;
      w->elapsed = dl;
    }
    lv = w->cur_level;
    sl = w->cur_slot;
    dl = w->elapsed;
    rt_timer *t;
    while (*budget > 0 && (t = w->slots[lv][sl]) != NULL) {
      wheel_unlink(w, t);
      uint64_t ctl = atomic_load_explicit(&t->ctl, memory_order_acquire);
      if ((ctl & RT_TM_ST_MASK) == RT_TM_CANCELLED) {
        tm_release(n->timers, t);
        *budget -= 1;
      } else if (t->when <= dl) {
        fire(n, s, t);
        *budget -= RT_TM_FIRE_COST;
      } else {
        wheel_insert(w, t); /* to a lower level */
        *budget -= 1;
      }
    }
    if (w->slots[lv][sl] == NULL)
      w->cur = false;
  }
  if (w->cur) {
    w->next_ms = w->elapsed; /* resume the slot on the next pass */
  } else if (next_expiration(w, &dl, &lv, &sl)) {
    if (dl > now && now > w->elapsed)
      w->elapsed = now; /* nothing due up to now: skip ahead */
    w->next_ms = dl;
  } else {
    if (now > w->elapsed)
      w->elapsed = now;
    w->next_ms = UINT64_MAX;
  }
}

static void drain_inbox(rt_timers *T, rt_wheel *w) {
  pthread_mutex_lock(&w->inbox_lock);
  rt_timer *t = w->inbox;
  w->inbox = NULL;
  atomic_store_explicit(&w->inbox_len, 0, memory_order_relaxed);
  pthread_mutex_unlock(&w->inbox_lock);
  rt_timer *fifo = NULL; /* the inbox is LIFO: restore start order */
  while (t != NULL) {
    rt_timer *next = t->next;
    t->next = fifo;
    fifo = t;
    t = next;
  }
  for (t = fifo; t != NULL;) {
    rt_timer *next = t->next;
    uint64_t ctl = atomic_load_explicit(&t->ctl, memory_order_acquire);
    if ((ctl & RT_TM_ST_MASK) == RT_TM_CANCELLED)
      tm_release(T, t);
    else
      wheel_insert(w, t);
    t = next;
  }
}

/* Owner: unlinks and releases the records cancelled by other threads that
 * still sit in a slot. Records in the due list or the inbox are released
 * where they are; a record released and reused since its cancel has a new
 * control word and is left alone. Runs before drain_inbox. */
static void drain_cancels(rt_timers *T, rt_wheel *w) {
  pthread_mutex_lock(&w->inbox_lock);
  rt_tm_cancel *q = w->cq;
  size_t len = w->cq_len, cap = w->cq_cap;
  w->cq = w->cq_spare;
  w->cq_cap = w->cq_spare_cap;
  w->cq_len = 0;
  atomic_store_explicit(&w->cq_pending, 0, memory_order_relaxed);
  pthread_mutex_unlock(&w->inbox_lock);
  for (size_t i = 0; i < len; i++) {
    rt_timer *t = q[i].t;
    /* ctl first: only while it is unchanged is t unreleased (only we
     * release a cancelled record), and only then is in_wheel ours. */
    if (atomic_load_explicit(&t->ctl, memory_order_relaxed) == q[i].ctl &&
        t->in_wheel) {
      wheel_unlink(w, t);
      tm_release(T, t);
    }
  }
  w->cq_spare = q;
  w->cq_spare_cap = cap;
}

/* Canceller (not the owner): queues the cancelled record for its owner and
 * wakes the owner on the first entry. Without memory the record is simply
 * reclaimed at its deadline. */
static void queue_cancel(rt_node *n, rt_timer *t, uint64_t ctl,
                         uint32_t owner) {
  rt_wheel *w = &n->timers->wheels[owner];
  bool first = false;
  pthread_mutex_lock(&w->inbox_lock);
  if (w->cq_len == w->cq_cap) {
    size_t cap = w->cq_cap != 0 ? 2 * w->cq_cap : 64;
    rt_tm_cancel *q = realloc(w->cq, cap * sizeof *q);
    if (q != NULL) {
      w->cq = q;
      w->cq_cap = cap;
    }
  }
  if (w->cq_len < w->cq_cap) {
    w->cq[w->cq_len++] = (rt_tm_cancel){t, ctl};
    first =
        atomic_fetch_add_explicit(&w->cq_pending, 1, memory_order_release) == 0;
  }
  pthread_mutex_unlock(&w->inbox_lock);
  if (first) {
    atomic_thread_fence(memory_order_seq_cst);
    atomic_store_explicit(&n->sched[owner].park, 1, memory_order_release);
    keel__futex_wake(&n->sched[owner].park, 1);
  }
}

/* The node's clock: monotonic, or the simulation's virtual clock. */
static uint64_t clock_ns(const rt_timers *T) {
  return T->vclock != NULL
             ? atomic_load_explicit(T->vclock, memory_order_relaxed)
             : keel_monotonic_ns();
}

static uint64_t now_ms(const rt_timers *T) {
  return (clock_ns(T) - T->origin_ns) / MS_NS;
}

bool keel__rt_timers_run(rt_node *n, rt_sched *s, unsigned max_fire) {
  rt_timers *T = n->timers;
  rt_wheel *w = &T->wheels[s->id];
  if (atomic_load_explicit(&w->cq_pending, memory_order_acquire) != 0)
    drain_cancels(T, w);
  if (atomic_load_explicit(&w->inbox_len, memory_order_acquire) != 0)
    drain_inbox(T, w);
  int budget = (int)max_fire * RT_TM_FIRE_COST;
  while (budget > 0 && w->due != NULL) {
    rt_timer *t = w->due;
    w->due = t->next;
    fire(n, s, t);
    budget -= RT_TM_FIRE_COST;
  }
  if (w->count == 0)
    return w->due != NULL;
  uint64_t now = now_ms(T);
  if (budget > 0 && now >= w->next_ms)
    wheel_process(n, s, w, now, &budget);
  return w->due != NULL || (w->count != 0 && w->next_ms <= now);
}

uint64_t keel__rt_timers_park_ns(rt_node *n, rt_sched *s) {
  rt_timers *T = n->timers;
  rt_wheel *w = &T->wheels[s->id];
  if (w->due != NULL ||
      atomic_load_explicit(&w->inbox_len, memory_order_acquire) != 0 ||
      atomic_load_explicit(&w->cq_pending, memory_order_acquire) != 0)
    return 0;
  if (w->count == 0)
    return UINT64_MAX;
  uint64_t target = T->origin_ns + w->next_ms * MS_NS;
  uint64_t now = clock_ns(T);
  return target > now ? target - now : 0;
}

/* ---- starting and cancelling ------------------------------------------- */

/* Deadline in wheel milliseconds of a timer of `ms` from now, rounded up. */
static uint64_t deadline_of(const rt_timers *T, uint64_t ms) {
  uint64_t now = clock_ns(T) - T->origin_ns;
  return (now + MS_NS - 1) / MS_NS + ms;
}

/* Wheel of a send_after timer: chosen by destination, so that all timers
 * to one process share one wheel and fire in deadline order. */
static uint32_t owner_of(const rt_node *n, uint64_t dest) {
  uint64_t h = dest * UINT64_C(0x9E3779B97F4A7C15);
  return (uint32_t)((h >> 32) % n->nsched);
}

/* Publishes a filled-in record as PENDING and hands it to its wheel:
 * directly on the owner's thread (after the owner's inbox, to keep start
 * order), else through the owner's inbox, waking the owner when the inbox
 * was empty. */
static void tm_start(rt_node *n, rt_timer *t, uint64_t ms, uint32_t owner) {
  rt_timers *T = n->timers;
  rt_sched *s = keel__rt_tl_sched;
  atomic_store_explicit(&t->owner, owner, memory_order_relaxed);
  t->when = deadline_of(T, ms);
  t->in_wheel = false;
  uint64_t ctl = atomic_load_explicit(&t->ctl, memory_order_relaxed);
  /* release: the record's fields before any canceller's acquire. */
  atomic_store_explicit(&t->ctl, (ctl & ~RT_TM_ST_MASK) | RT_TM_PENDING,
                        memory_order_release);
  rt_wheel *w = &T->wheels[owner];
  /* The owner's wheel may be in the watchdog's hands (keel__rt_handoff):
   * then the owner goes through its inbox like any other thread. */
  if (s != NULL && s->id == owner && keel__rt_own_begin(s)) {
    if (atomic_load_explicit(&w->inbox_len, memory_order_acquire) != 0)
      drain_inbox(T, w);
    wheel_insert(w, t);
    keel__rt_own_end(s);
    return;
  }
  pthread_mutex_lock(&w->inbox_lock);
  t->next = w->inbox;
  w->inbox = t;
  bool first =
      atomic_fetch_add_explicit(&w->inbox_len, 1, memory_order_release) == 0;
  pthread_mutex_unlock(&w->inbox_lock);
  if (!first)
    return; /* the owner has been woken for the first entry */
  /* seq_cst: the inbox push before the wake word (pairs with park()). */
  atomic_thread_fence(memory_order_seq_cst);
  atomic_store_explicit(&n->sched[owner].park, 1, memory_order_release);
  keel__futex_wake(&n->sched[owner].park, 1);
}

/* CAS from PENDING (with the expected generation) to CANCELLED; on the
 * owner's thread the record is unlinked and released at once. */
static bool tm_cancel(rt_node *n, rt_timer *t, uint64_t ctl) {
  if ((ctl & RT_TM_ST_MASK) != RT_TM_PENDING ||
      !atomic_compare_exchange_strong_explicit(
          &t->ctl, &ctl, (ctl & ~RT_TM_ST_MASK) | RT_TM_CANCELLED,
          memory_order_acq_rel, memory_order_relaxed))
    return false;
  rt_sched *s = keel__rt_tl_sched;
  /* Only the owner releases a cancelled record, so after our CAS owner
   * and in_wheel are stable when we are the owner. */
  uint32_t owner = atomic_load_explicit(&t->owner, memory_order_relaxed);
  if (s != NULL && s->id == owner && keel__rt_own_begin(s)) {
    if (t->in_wheel) {
      wheel_unlink(&n->timers->wheels[owner], t);
      tm_release(n->timers, t);
    }
    keel__rt_own_end(s);
  } else if (!atomic_load_explicit(&n->stopping, memory_order_relaxed)) {
    queue_cancel(n, t, (ctl & ~RT_TM_ST_MASK) | RT_TM_CANCELLED, owner);
  }
  return true;
}

/* ---- public API -------------------------------------------------------- */

#define REF_IDX_MASK ((UINT64_C(1) << 32) - 1)

/* Timer ref terms: 4-word local refs whose last word is this tag. */
#define TIMER_REF_TAG UINT32_C(0x7fffffff)

keel_term keel_timer_ref_term(keel_heap *h, keel_timer_ref ref) {
  keel_ref_parts r;
  r.node = keel_term_local_node(&r.creation);
  r.len = 4;
  r.id[0] = (uint32_t)(ref & 0x3ffffu);
  r.id[1] = (uint32_t)(ref >> 18);
  r.id[2] = (uint32_t)(ref >> 50);
  r.id[3] = TIMER_REF_TAG;
  return h != NULL && ref != 0 ? keel_ref_make(h, &r) : KEEL_NONE;
}

int keel_timer_ref_of(keel_term t, keel_timer_ref *ref) {
  keel_ref_parts r;
  uint32_t creation;
  keel_term node = keel_term_local_node(&creation);
  if (keel_ref_get(t, &r) != KEEL_OK || r.len != 4 ||
      r.id[3] != TIMER_REF_TAG || r.node != node || r.creation != creation ||
      r.id[0] > 0x3ffffu || r.id[2] >= (1u << 14))
    return KEEL_EBADARG;
  *ref = (uint64_t)r.id[0] | (uint64_t)r.id[1] << 18 | (uint64_t)r.id[2] << 50;
  return KEEL_OK;
}

/* send_after and start_timer: a timer that delivers msg, or {timeout, Ref,
 * msg} when ref_heap is not NULL (its Ref built there too). */
static int timer_start(keel_term dest, keel_term msg, uint64_t ms,
                       keel_timer_ref *ref, keel_heap *ref_heap,
                       keel_term *ref_term) {
  rt_node *n = keel__rt;
  if (n == NULL || atomic_load_explicit(&n->stopping, memory_order_relaxed))
    return KEEL_ESTATE;
  if (!keel_is_local_pid(dest))
    return KEEL_EBADARG;
  if (msg == KEEL_NONE || ms > KEEL_TIMER_MAX_MS)
    return KEEL_EINVAL;
  rt_timer *t;
  int rc = tm_alloc(n->timers, &t);
  if (rc != KEEL_OK)
    return rc;
  uint64_t gen = tm_gen(atomic_load_explicit(&t->ctl, memory_order_relaxed));
  keel_timer_ref handle = (gen << 32) | ((uint64_t)t->idx + 1);
  keel_term body = msg;
  uint64_t buf[16];
  keel_heap scratch;
  keel_heap_init_fixed(&scratch, buf, 16);
  if (ref_heap != NULL) {
    keel_term r = keel_timer_ref_term(&scratch, handle);
    *ref_term = keel_term_copy(ref_heap, r);
    body = keel_tuple(&scratch, 3, KEEL_ATOM(TIMEOUT), r, msg);
  }
  rt_msg *m = body != KEEL_NONE && (ref_heap == NULL || *ref_term != KEEL_NONE)
                  ? keel__rt_msg_new(n, keel__rt_tl_sched, body)
                  : NULL;
  if (m == NULL) {
    tm_release(n->timers, t);
    return KEEL_ENOMEM;
  }
  t->term = KEEL_NONE;
  t->extra = 0;
  t->is_timeout = false;
  t->dest = keel_pid_local_number(dest);
  t->msg = m;
  if (ref != NULL)
    *ref = handle;
  tm_start(n, t, ms, owner_of(n, t->dest));
  return KEEL_OK;
}

int keel_send_after(keel_term dest, keel_term msg, uint64_t ms,
                    keel_timer_ref *ref) {
  return timer_start(dest, msg, ms, ref, NULL, NULL);
}

int keel_start_timer(keel_term dest, keel_term msg, uint64_t ms, keel_heap *h,
                     keel_term *ref) {
  if (h == NULL || ref == NULL)
    return KEEL_EINVAL;
  return timer_start(dest, msg, ms, NULL, h, ref);
}

/* The record a handle names, with its control word, or NULL. */
static rt_timer *tm_lookup(rt_node *n, keel_timer_ref ref, uint64_t *ctl) {
  uint64_t idx1 = ref & ((UINT64_C(1) << 32) - 1), gen = ref >> 32;
  rt_timer *t = tm_slot(n->timers, (uint32_t)(idx1 - 1));
  if (t == NULL)
    return NULL;
  *ctl = atomic_load_explicit(&t->ctl, memory_order_acquire);
  return tm_gen(*ctl) == gen ? t : NULL;
}

int64_t keel_read_timer(keel_timer_ref ref) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  uint64_t idx1 = ref & ((UINT64_C(1) << 32) - 1);
  if (idx1 == 0 || idx1 > (UINT64_C(1) << RT_TM_IDX_BITS) ||
      (ref >> 32) > RT_TM_GEN_MASK)
    return KEEL_EBADARG;
  uint64_t ctl, again;
  rt_timer *t = tm_lookup(n, ref, &ctl);
  if (t == NULL || (ctl & RT_TM_ST_MASK) != RT_TM_PENDING)
    return KEEL_ENOENT;
  uint64_t when = t->when;
  /* acquire: `when` was read while the record was still this timer. */
  again = atomic_load_explicit(&t->ctl, memory_order_acquire);
  if (again != ctl)
    return KEEL_ENOENT;
  uint64_t now = now_ms(n->timers);
  return when > now ? (int64_t)(when - now) : 0;
}

int keel_cancel_timer(keel_timer_ref ref) {
  rt_node *n = keel__rt;
  if (n == NULL)
    return KEEL_ESTATE;
  uint64_t idx1 = ref & REF_IDX_MASK, gen = ref >> 32;
  if (idx1 == 0 || idx1 > (UINT64_C(1) << RT_TM_IDX_BITS) ||
      gen > RT_TM_GEN_MASK)
    return KEEL_EBADARG;
  rt_timer *t = tm_slot(n->timers, (uint32_t)(idx1 - 1));
  if (t == NULL)
    return 0;
  uint64_t ctl = atomic_load_explicit(&t->ctl, memory_order_acquire);
  if (tm_gen(ctl) != gen)
    return 0; /* fired and released, or never this record's */
  return tm_cancel(n, t, ctl) ? 1 : 0;
}

int keel_proc_set_timeout(keel_proc *self, int64_t ms) {
  rt_node *n = keel__rt;
  rt_sched *s = keel__rt_tl_sched;
  if (n == NULL || s == NULL || self == NULL || keel__rt_tl_proc != self ||
      (atomic_load_explicit(&self->ctl, memory_order_relaxed) & RT_EXITING))
    return KEEL_ESTATE;
  if (ms >= 0 && (uint64_t)ms > KEEL_TIMER_MAX_MS)
    return KEEL_EINVAL;
  keel__rt_proc_timeout_clear(n, self);
  if (ms < 0)
    return KEEL_OK;
  rt_timer *t;
  int rc = tm_alloc(n->timers, &t);
  if (rc != KEEL_OK)
    return rc;
  t->term = KEEL_NONE;
  t->extra = 0;
  t->is_timeout = true;
  t->dest = self->pid_number;
  t->msg = NULL;
  self->tmo = t;
  tm_start(n, t, (uint64_t)ms, s->id);
  return KEEL_OK;
}

bool keel_proc_timed_out(const keel_proc *self) {
  return self->timed_out;
}

/* ---- process hooks ----------------------------------------------------- */

void keel__rt_proc_timeout_clear(rt_node *n, keel_proc *p) {
  rt_timer *t = p->tmo;
  if (t == NULL)
    return;
  p->tmo = NULL;
  /* While p lives and has not popped it, only a cancel by p (below) lets
   * anyone release t, so t's generation is still the armed one. If the
   * CAS fails, t has fired and is on its way to p's mailbox, where it will
   * be recognised as stale (p->tmo no longer names it). */
  (void)tm_cancel(n, t, atomic_load_explicit(&t->ctl, memory_order_acquire));
}

bool keel__rt_timeout_popped(rt_node *n, keel_proc *p, rt_msg *m) {
  rt_timer *t = (rt_timer *)(void *)m;
  bool armed = t == p->tmo;
  if (armed)
    p->tmo = NULL;
  tm_release(n->timers, t);
  return armed;
}

/* ---- node start and stop ----------------------------------------------- */

int keel__rt_timers_init(rt_node *n) {
  rt_timers *T = calloc(1, sizeof *T);
  if (T == NULL)
    return KEEL_ENOMEM;
  n->timers = T;
  T->vclock = n->sim != NULL ? &n->vclock_ns : NULL;
  T->origin_ns = clock_ns(T);
  T->nchunks = (UINT32_C(1) << RT_TM_IDX_BITS) / RT_TM_CHUNK;
  T->chunks = calloc(T->nchunks, sizeof *T->chunks);
  T->wheels = aligned_alloc(64, n->nsched * sizeof *T->wheels);
  if (T->wheels != NULL)
    memset(T->wheels, 0, n->nsched * sizeof *T->wheels);
  if (T->chunks == NULL || T->wheels == NULL) {
    free(T->chunks);
    free(T->wheels);
    free(T);
    n->timers = NULL;
    return KEEL_ENOMEM;
  }
  atomic_init(&T->free_top, (uint64_t)RT_TM_FREE_NIL);
  for (unsigned i = 0; i < n->nsched; i++) {
    pthread_mutex_init(&T->wheels[i].inbox_lock, NULL);
    T->wheels[i].next_ms = UINT64_MAX;
    n->sched[i].wheel = &T->wheels[i];
  }
  return KEEL_OK;
}

void keel__rt_timers_destroy(rt_node *n) {
  rt_timers *T = n->timers;
  if (T == NULL)
    return;
  {
    for (size_t c = 0; c < T->nchunks; c++) {
      rt_timer *base = atomic_load(&T->chunks[c]);
      if (base == NULL)
        continue;
      for (size_t i = 0; i < RT_TM_CHUNK; i++)
        if (base[i].msg != NULL) /* pending or cancelled send_after */
          keel__rt_free_msg(base[i].msg);
      free(base);
    }
    free(T->chunks);
  }
  for (unsigned i = 0; i < n->nsched; i++) {
    pthread_mutex_destroy(&T->wheels[i].inbox_lock);
    free(T->wheels[i].cq);
    free(T->wheels[i].cq_spare);
  }
  free(T->wheels);
  free(T);
  n->timers = NULL;
}
