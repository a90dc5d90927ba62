/*
 * gen_statem_trans.c - what happens when a gen_statem callback returns:
 * the action list (replies, postpone, inserted events, hibernation,
 * timeouts), the state change (retried postponed events, cancelled state
 * timeout, enter calls), the machine's event queue, its timers, stop with
 * terminate and the crash report, and heap compaction.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "keel/clock.h"
#include "keel/gen_server.h"
#include "keel/gen_statem.h"
#include "keel/telemetry.h"
#include "otp/gen_statem_internal.h"

/* Smallest heap (words) that triggers an automatic compaction. */
#define GSM_COMPACT_MIN 4096u

/* ---- results ------------------------------------------------------------- */

keel_gsm_ret keel_gsm_ok(keel_gen_statem *sm) {
  (void)sm;
  return KEEL_GSM_NEXT_STATE;
}

keel_gsm_ret keel_gsm_next_state(keel_gen_statem *sm, keel_term state) {
  sm->next = state;
  return KEEL_GSM_NEXT_STATE;
}

keel_gsm_ret keel_gsm_keep_state(keel_gen_statem *sm) {
  (void)sm;
  return KEEL_GSM_KEEP_STATE;
}

keel_gsm_ret keel_gsm_repeat_state(keel_gen_statem *sm) {
  (void)sm;
  return KEEL_GSM_REPEAT_STATE;
}

keel_gsm_ret keel_gsm_stop(keel_gen_statem *sm, keel_term reason) {
  sm->reason = reason != KEEL_NONE ? reason : KEEL_ATOM(NORMAL);
  return KEEL_GSM_STOP;
}

keel_gsm_ret keel_gsm_stop_and_reply(keel_gen_statem *sm, keel_term reason,
                                     keel_term from, keel_term reply) {
  (void)keel_gsm_reply(sm, from, reply);
  return keel_gsm_stop(sm, reason);
}

keel_gsm_ret keel_gsm_ignore(keel_gen_statem *sm) {
  (void)sm;
  return KEEL_GSM_IGNORE;
}

keel_gsm_ret keel_gsm_init_error(keel_gen_statem *sm, keel_term reason) {
  sm->reason = reason != KEEL_NONE ? reason : KEEL_ATOM(NORMAL);
  return KEEL_GSM_ERROR;
}

/* ---- actions ------------------------------------------------------------- */

static int add(keel_gen_statem *sm, gsm_act_kind k, keel_term a, keel_term b,
               int64_t ms) {
  if (sm->nacts == sm->acap) {
    size_t cap = sm->acap ? sm->acap * 2 : 8;
    gsm_action *n = realloc(sm->acts, cap * sizeof *n);
    if (n == NULL) {
      sm->act_oom = true;
      return KEEL_ENOMEM;
    }
    sm->acts = n;
    sm->acap = cap;
  }
  sm->acts[sm->nacts++] = (gsm_action){k, a, b, ms, false};
  return KEEL_OK;
}

int keel_gsm_reply(keel_gen_statem *sm, keel_term from, keel_term reply) {
  return add(sm, GSM_A_REPLY, from, reply, 0);
}
int keel_gsm_postpone(keel_gen_statem *sm) {
  return add(sm, GSM_A_POSTPONE, KEEL_NONE, KEEL_NONE, 0);
}
int keel_gsm_next_event(keel_gen_statem *sm, keel_term type,
                        keel_term content) {
  return add(sm, GSM_A_NEXT_EVENT, type, content, 0);
}
int keel_gsm_hibernate(keel_gen_statem *sm) {
  return add(sm, GSM_A_HIBERNATE, KEEL_NONE, KEEL_NONE, 0);
}

static int add_timeout(keel_gen_statem *sm, keel_term type, int64_t ms,
                       keel_term content) {
  if (ms == KEEL_INFINITY)
    return add(sm, GSM_A_CANCEL, type, KEEL_NONE, 0);
  if (ms < 0 || (uint64_t)ms > KEEL_TIMER_MAX_MS)
    return KEEL_EINVAL;
  return add(sm, GSM_A_TIMEOUT, type, content, ms);
}

int keel_gsm_event_timeout(keel_gen_statem *sm, int64_t ms, keel_term content) {
  return add_timeout(sm, KEEL_ATOM(TIMEOUT), ms, content);
}
int keel_gsm_state_timeout(keel_gen_statem *sm, int64_t ms, keel_term content) {
  return add_timeout(sm, keel__gsm_atoms()->state_timeout, ms, content);
}

int64_t keel_gsm_monotonic_ms(void) {
  return (int64_t)(keel_monotonic_ns() / 1000000u);
}

/* {abs, true}: at is a time of keel_gsm_monotonic_ms. */
static int add_timeout_at(keel_gen_statem *sm, keel_term type, int64_t at,
                          keel_term content) {
  if (at == KEEL_INFINITY)
    return add(sm, GSM_A_CANCEL, type, KEEL_NONE, 0);
  if (at < 0 || at - keel_gsm_monotonic_ms() > (int64_t)KEEL_TIMER_MAX_MS)
    return KEEL_EINVAL;
  int rc = add(sm, GSM_A_TIMEOUT, type, content, at);
  if (rc == KEEL_OK)
    sm->acts[sm->nacts - 1].abs = true;
  return rc;
}

int keel_gsm_event_timeout_at(keel_gen_statem *sm, int64_t at_ms,
                              keel_term content) {
  return add_timeout_at(sm, KEEL_ATOM(TIMEOUT), at_ms, content);
}
int keel_gsm_state_timeout_at(keel_gen_statem *sm, int64_t at_ms,
                              keel_term content) {
  return add_timeout_at(sm, keel__gsm_atoms()->state_timeout, at_ms, content);
}

/* The event type of a generic timeout Name, or of the state timeout. */
static keel_term timer_type(keel_gen_statem *sm, keel_term name) {
  if (name == KEEL_NONE)
    return keel__gsm_atoms()->state_timeout;
  return keel_tuple(keel_gsm_heap(sm), 2, KEEL_ATOM(TIMEOUT), name);
}

int keel_gsm_generic_timeout(keel_gen_statem *sm, keel_term name, int64_t ms,
                             keel_term content) {
  keel_term t = name == KEEL_NONE ? KEEL_NONE : timer_type(sm, name);
  return t == KEEL_NONE ? KEEL_EINVAL : add_timeout(sm, t, ms, content);
}
int keel_gsm_generic_timeout_at(keel_gen_statem *sm, keel_term name,
                                int64_t at_ms, keel_term content) {
  keel_term t = name == KEEL_NONE ? KEEL_NONE : timer_type(sm, name);
  return t == KEEL_NONE ? KEEL_EINVAL : add_timeout_at(sm, t, at_ms, content);
}
int keel_gsm_cancel_timeout(keel_gen_statem *sm, keel_term name) {
  keel_term t = timer_type(sm, name);
  return t == KEEL_NONE ? KEEL_ENOMEM : add(sm, GSM_A_CANCEL, t, KEEL_NONE, 0);
}
int keel_gsm_update_timeout(keel_gen_statem *sm, keel_term name,
                            keel_term content) {
  keel_term t = timer_type(sm, name);
  return t == KEEL_NONE ? KEEL_ENOMEM : add(sm, GSM_A_UPDATE, t, content, 0);
}
int keel_gsm_cancel_event_timeout(keel_gen_statem *sm) {
  return add(sm, GSM_A_CANCEL, KEEL_ATOM(TIMEOUT), KEEL_NONE, 0);
}
int keel_gsm_update_event_timeout(keel_gen_statem *sm, keel_term content) {
  return add(sm, GSM_A_UPDATE, KEEL_ATOM(TIMEOUT), content, 0);
}
int keel_gsm_cancel_generic_timeouts(keel_gen_statem *sm) {
  return add(sm, GSM_A_CANCEL_ALL, KEEL_NONE, KEEL_NONE, 0);
}

/* ---- accessors ----------------------------------------------------------- */

keel_proc *keel_gsm_proc(keel_gen_statem *sm) {
  return sm->self;
}
keel_heap *keel_gsm_heap(keel_gen_statem *sm) {
  return keel_proc_heap(sm->self);
}
keel_term keel_gsm_self(const keel_gen_statem *sm) {
  return keel_self(sm->self);
}
keel_term keel_gsm_state(const keel_gen_statem *sm) {
  return sm->state;
}

keel_gsm_kind keel_gsm_kind_of(keel_term type, keel_term *from) {
  const gsm_atoms *a = keel__gsm_atoms();
  if (keel_is_tuple(type) && keel_tuple_arity(type) == 2) {
    keel_term t0 = keel_tuple_get(type, 0);
    if (t0 != a->call && t0 != KEEL_ATOM(TIMEOUT))
      return KEEL_GSM_BAD;
    if (from != NULL)
      *from = keel_tuple_get(type, 1);
    return t0 == a->call ? KEEL_GSM_CALL : KEEL_GSM_GENERIC;
  }
  return type == a->cast              ? KEEL_GSM_CAST
         : type == a->info            ? KEEL_GSM_INFO
         : type == KEEL_ATOM(TIMEOUT) ? KEEL_GSM_TIMEOUT
         : type == a->state_timeout   ? KEEL_GSM_STATE_TIMEOUT
         : type == a->internal        ? KEEL_GSM_INTERNAL
         : type == a->enter           ? KEEL_GSM_ENTER
                                      : KEEL_GSM_BAD;
}

/* ---- reports and the end ------------------------------------------------- */

static _Atomic(keel_tel_event *) ev_crash, ev_trace;

static keel_tel_event *event(_Atomic(keel_tel_event *) *slot,
                             const char *last) {
  keel_tel_event *e = atomic_load_explicit(slot, memory_order_acquire);
  if (e == NULL) {
    keel_term a[3] = {keel_atom("keel"), keel_atom("gen_statem"),
                      keel_atom(last)};
    if (keel_tel_event_get(a, 3, &e) != KEEL_OK)
      return NULL;
    atomic_store_explicit(slot, e, memory_order_release);
  }
  return e;
}

void keel__gsm_trace(keel_gen_statem *sm, keel_term type, keel_term content) {
  keel_tel_meta md[4] = {{keel_atom("pid"), keel_gsm_self(sm)},
                         {keel_atom("type"), type},
                         {keel_atom("content"), content},
                         {keel_atom("state"), sm->state}};
  keel_tel_execute(event(&ev_trace, "trace"), NULL, 0, md, 4);
}

keel_term keel__gsm_status(keel_gen_statem *sm) {
  keel_term s = KEEL_NONE;
  if (sm->mod->format_status != NULL)
    s = sm->mod->format_status(sm, sm->state, sm->data);
  if (s == KEEL_NONE)
    s = keel_tuple(keel_gsm_heap(sm), 2, sm->state, sm->data);
  return s != KEEL_NONE ? s : sm->state;
}

static bool is_clean_exit(keel_term r) {
  return r == KEEL_ATOM(NORMAL) || r == KEEL_ATOM(SHUTDOWN) ||
         (keel_is_tuple(r) && keel_tuple_arity(r) == 2 &&
          keel_tuple_get(r, 0) == KEEL_ATOM(SHUTDOWN));
}

static void crash_report(keel_gen_statem *sm, keel_term reason) {
  keel_term mod =
      sm->mod->name != NULL ? keel_atom(sm->mod->name) : KEEL_ATOM(UNDEFINED);
  keel_tel_meta md[6] = {
      {keel_atom("pid"), keel_gsm_self(sm)},
      {keel_atom("name"),
       sm->name != KEEL_NONE ? sm->name : KEEL_ATOM(UNDEFINED)},
      {keel_atom("module"), mod != KEEL_NONE ? mod : KEEL_ATOM(UNDEFINED)},
      {keel_atom("last_message"),
       sm->last != KEEL_NONE ? sm->last : KEEL_ATOM(UNDEFINED)},
      {keel_atom("state"), keel__gsm_status(sm)},
      {keel_atom("reason"), reason}};
  keel_tel_measure m = {keel_atom("count"), 1.0};
  keel_tel_execute(event(&ev_crash, "crash"), &m, 1, md, 6);
}

static void cancel_all_timers(keel_gen_statem *sm) {
  for (size_t i = 0; i < sm->ntimers; i++)
    if (sm->timers[i].tref != 0)
      (void)keel_cancel_timer(sm->timers[i].tref);
  sm->ntimers = 0;
}

keel_handler_status keel__gsm_terminate(keel_gen_statem *sm, keel_term reason) {
  cancel_all_timers(sm);
  if (sm->mod->terminate != NULL)
    sm->mod->terminate(sm, reason, sm->state, sm->data);
  if (!is_clean_exit(reason))
    crash_report(sm, reason);
  return keel_stop(sm->self, reason);
}

static keel_handler_status stop_with(keel_gen_statem *sm, const char *tag,
                                     keel_term what) {
  keel_term r = keel_tuple(keel_gsm_heap(sm), 2, keel_atom(tag), what);
  return keel__gsm_terminate(sm, r != KEEL_NONE ? r : keel_atom(tag));
}

/* ---- compaction ------------------------------------------------------------
 */

/* Terms of the control block kept across compaction, besides the timers'. */
#define GSM_ROOTS 7

void keel__gsm_compact(keel_gen_statem *sm) {
  size_t n = GSM_ROOTS + 2 * sm->ntimers;
  keel_term *roots = malloc(n * sizeof *roots);
  if (roots != NULL) {
    keel_term *fixed[GSM_ROOTS] = {&sm->state,     &sm->data,     &sm->queue,
                                   &sm->postponed, &sm->deferred, &sm->replay,
                                   &sm->dbg.log};
    for (size_t i = 0; i < GSM_ROOTS; i++)
      roots[i] = *fixed[i];
    for (size_t i = 0; i < sm->ntimers; i++) {
      roots[GSM_ROOTS + 2 * i] = sm->timers[i].type;
      roots[GSM_ROOTS + 1 + 2 * i] = sm->timers[i].content;
    }
    if (keel_proc_compact(sm->self, roots, n) == KEEL_OK) {
      for (size_t i = 0; i < GSM_ROOTS; i++)
        *fixed[i] = roots[i];
      for (size_t i = 0; i < sm->ntimers; i++) {
        sm->timers[i].type = roots[GSM_ROOTS + 2 * i];
        sm->timers[i].content = roots[GSM_ROOTS + 1 + 2 * i];
      }
      sm->fn_state = KEEL_NONE;
    }
    free(roots);
  }
  size_t used = keel_heap_used_words(keel_proc_heap(sm->self));
  sm->compact_at = used * 2 > GSM_COMPACT_MIN ? used * 2 : GSM_COMPACT_MIN;
}

/* ---- timers -------------------------------------------------------------- */

static gsm_timer *find_timer(keel_gen_statem *sm, keel_term type) {
  for (size_t i = 0; i < sm->ntimers; i++)
    if (keel_eq_exact(sm->timers[i].type, type))
      return &sm->timers[i];
  return NULL;
}

static void drop_timer(keel_gen_statem *sm, gsm_timer *t) {
  if (t->tref != 0)
    (void)keel_cancel_timer(t->tref);
  *t = sm->timers[--sm->ntimers];
}

static void cancel_timer_of(keel_gen_statem *sm, keel_term type) {
  gsm_timer *t = find_timer(sm, type);
  if (t != NULL)
    drop_timer(sm, t);
}

bool keel__gsm_take_timer(keel_gen_statem *sm, uint64_t gen, keel_term *type,
                          keel_term *content) {
  for (size_t i = 0; i < sm->ntimers; i++) {
    if (sm->timers[i].gen == gen) {
      *type = sm->timers[i].type;
      *content = sm->timers[i].content;
      sm->timers[i].tref = 0; /* fired */
      drop_timer(sm, &sm->timers[i]);
      return true;
    }
  }
  return false;
}

/* Starts a timer of ms delivering {'$gen_timeout', Gen}; the old one of
 * the same type is cancelled. */
static int start_timer(keel_gen_statem *sm, keel_term type, int64_t ms,
                       keel_term content) {
  cancel_timer_of(sm, type);
  if (sm->ntimers == sm->tcap) {
    size_t cap = sm->tcap ? sm->tcap * 2 : 4;
    gsm_timer *n = realloc(sm->timers, cap * sizeof *n);
    if (n == NULL)
      return KEEL_ENOMEM;
    sm->timers = n;
    sm->tcap = cap;
  }
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  uint64_t gen = ++sm->gen;
  keel_term msg = keel_tuple(&h, 2, keel__gsm_atoms()->gen_timeout,
                             keel_int(&h, (int64_t)gen));
  keel_timer_ref tref = 0;
  int rc = msg == KEEL_NONE
               ? KEEL_ENOMEM
               : keel_send_after(keel_gsm_self(sm), msg, (uint64_t)ms, &tref);
  keel_heap_destroy(&h);
  if (rc == KEEL_OK)
    sm->timers[sm->ntimers++] = (gsm_timer){type, content, gen, tref};
  return rc;
}

/* ---- the event queue ------------------------------------------------------
 */

static keel_term event_term(keel_gen_statem *sm, keel_term type,
                            keel_term content) {
  return keel_tuple(keel_gsm_heap(sm), 2, type, content);
}

/* rev(front) ++ tail, or KEEL_NONE when out of memory. */
static keel_term rev_append(keel_gen_statem *sm, keel_term front,
                            keel_term tail) {
  for (; keel_is_cons(front) && tail != KEEL_NONE; front = keel_tl(front))
    tail = keel_cons(keel_gsm_heap(sm), keel_hd(front), tail);
  return tail;
}

/* ---- callbacks ------------------------------------------------------------
 */

static keel_gsm_state_fn state_fn(keel_gen_statem *sm) {
  if (sm->fn != NULL && sm->fn_state == sm->state)
    return sm->fn;
  sm->fn = NULL;
  sm->fn_state = sm->state;
  if (!keel_is_atom(sm->state) || sm->mod->states == NULL)
    return NULL;
  for (const keel_gsm_state_entry *s = sm->mod->states; s->name != NULL; s++)
    if (keel_atom(s->name) == sm->state)
      return sm->fn = s->fn;
  return NULL;
}

static void reset_result(keel_gen_statem *sm) {
  sm->nacts = 0;
  sm->act_oom = false;
  sm->next = KEEL_NONE;
  sm->reason = KEEL_ATOM(NORMAL);
}

/* Calls the state callback; *undef set when the state has no function. */
static keel_gsm_ret call_state(keel_gen_statem *sm, keel_term type,
                               keel_term content, bool *undef) {
  reset_result(sm);
  *undef = false;
  if (sm->mod->mode == KEEL_GSM_HANDLE_EVENT_FUNCTION)
    return sm->mod->handle_event(sm, type, content, sm->state, &sm->data);
  keel_gsm_state_fn fn = state_fn(sm);
  if (fn == NULL) {
    *undef = true;
    return KEEL_GSM_STOP;
  }
  return fn(sm, type, content, &sm->data);
}

/* ---- transitions ------------------------------------------------------- */

/* What a transition collects from its action lists. */
typedef struct trans {
  keel_term inserted; /* next_events, newest first */
  bool postpone, hibernate;
  gsm_action tmo[16]; /* timeout actions, in order */
  size_t ntmo;
  bool tmo_oom;
} trans;

/* Sends the replies and collects the rest; the name of a forbidden action
 * (postpone or next_event in an enter call or init) in *bad. */
static void collect(keel_gen_statem *sm, trans *t, bool enter, bool init,
                    const char **bad) {
  for (size_t i = 0; i < sm->nacts; i++) {
    gsm_action *a = &sm->acts[i];
    switch (a->kind) {
    case GSM_A_REPLY:
      (void)keel_gen_server_reply(a->a, a->b);
      sm->dbg.out++;
      keel__sysdbg_event(&sm->dbg, keel_gsm_heap(sm), "out", a->b, a->a);
      break;
    case GSM_A_POSTPONE:
      if (enter || init)
        *bad = "postpone";
      t->postpone = true;
      break;
    case GSM_A_NEXT_EVENT:
      if (enter)
        *bad = "next_event";
      else if (keel_gsm_kind_of(a->a, NULL) == KEEL_GSM_BAD ||
               keel_gsm_kind_of(a->a, NULL) == KEEL_GSM_ENTER)
        *bad = "next_event";
      else {
        keel_term e = event_term(sm, a->a, a->b);
        t->inserted = e == KEEL_NONE
                          ? KEEL_NONE
                          : keel_cons(keel_gsm_heap(sm), e, t->inserted);
      }
      break;
    case GSM_A_HIBERNATE:
      t->hibernate = true;
      break;
    default:
      if (t->ntmo < sizeof t->tmo / sizeof t->tmo[0])
        t->tmo[t->ntmo++] = *a;
      else
        t->tmo_oom = true;
    }
  }
}

/* A zero timeout of this transition, in the order the actions set it. */
typedef struct gsm_zero {
  keel_term type, content;
} gsm_zero;

typedef struct gsm_zeros {
  gsm_zero z[16]; /* at most one per timeout action (trans.tmo) */
  size_t n;
} gsm_zeros;

static gsm_zero *zero_find(gsm_zeros *zs, keel_term type) {
  for (size_t i = 0; i < zs->n; i++)
    if (keel_eq_exact(zs->z[i].type, type))
      return &zs->z[i];
  return NULL;
}

/* Drops the zero timeouts of type (every generic one for KEEL_NONE),
 * keeping the order of the others. */
static void zero_drop(gsm_zeros *zs, keel_term type) {
  size_t k = 0;
  for (size_t i = 0; i < zs->n; i++) {
    bool drop = type == KEEL_NONE
                    ? keel_gsm_kind_of(zs->z[i].type, NULL) == KEEL_GSM_GENERIC
                    : keel_eq_exact(zs->z[i].type, type);
    if (!drop)
      zs->z[k++] = zs->z[i];
  }
  zs->n = k;
}

static void cancel_generic_timers(keel_gen_statem *sm) {
  for (size_t i = sm->ntimers; i-- > 0;)
    if (keel_gsm_kind_of(sm->timers[i].type, NULL) == KEEL_GSM_GENERIC)
      drop_timer(sm, &sm->timers[i]);
}

/* The event timeout's actions: the last one set wins; an update changes
 * the content of the one set earlier in the list, or sets one of 0. */
static void event_action(gsm_action *ev, bool *have, const gsm_action *a) {
  if (a->kind == GSM_A_TIMEOUT) {
    *ev = *a;
    *have = true;
  } else if (a->kind == GSM_A_UPDATE && *have) {
    ev->b = a->b;
  } else if (a->kind == GSM_A_UPDATE) {
    *ev = (gsm_action){GSM_A_TIMEOUT, a->a, a->b, 0, false};
    *have = true;
  } else {
    *have = false; /* cancel */
  }
}

/* queue ++ the zero timeouts' events; KEEL_ENOMEM. */
static int queue_zeros(keel_gen_statem *sm, const gsm_zeros *zs) {
  keel_term z = KEEL_NIL;
  for (size_t i = zs->n; i-- > 0 && z != KEEL_NONE;) {
    keel_term e = event_term(sm, zs->z[i].type, zs->z[i].content);
    z = e == KEEL_NONE ? KEEL_NONE : keel_cons(keel_gsm_heap(sm), e, z);
  }
  keel_term rq = rev_append(sm, sm->queue, KEEL_NIL);
  keel_term q =
      rq == KEEL_NONE || z == KEEL_NONE ? KEEL_NONE : rev_append(sm, rq, z);
  if (q == KEEL_NONE)
    return KEEL_ENOMEM;
  sm->queue = q;
  return KEEL_OK;
}

/* One state or generic timeout action (not the event timeout's). */
static int timer_action(keel_gen_statem *sm, gsm_zeros *zs,
                        const gsm_action *a) {
  if (a->kind == GSM_A_CANCEL_ALL) {
    cancel_generic_timers(sm);
    zero_drop(zs, KEEL_NONE);
    return KEEL_OK;
  }
  if (a->kind == GSM_A_UPDATE) {
    gsm_timer *run = find_timer(sm, a->a);
    gsm_zero *z = run == NULL ? zero_find(zs, a->a) : NULL;
    if (run != NULL || z != NULL) {
      *(run != NULL ? &run->content : &z->content) = a->b;
      return KEEL_OK;
    }
  }
  cancel_timer_of(sm, a->a);
  zero_drop(zs, a->a);
  if (a->kind == GSM_A_CANCEL)
    return KEEL_OK;
  if (a->kind == GSM_A_UPDATE || a->ms == 0) {
    zs->z[zs->n++] = (gsm_zero){a->a, a->b};
    return KEEL_OK;
  }
  return start_timer(sm, a->a, a->ms, a->b);
}

/* Applies the timeout actions in order; zero timeouts are queued after
 * the machine's events (a later cancel, restart or update in the same
 * transition reaches them too). The event timeout (the last one set)
 * starts only if no event is queued; 0 goes through the mailbox so that a
 * message already there comes first and cancels it. */
static int apply_timeouts(keel_gen_statem *sm, trans *t) {
  gsm_action ev = {0};
  bool have_ev = false;
  gsm_zeros zs = {.n = 0};
  int64_t now = keel_gsm_monotonic_ms();
  for (size_t i = 0; i < t->ntmo; i++) {
    gsm_action *a = &t->tmo[i];
    if (a->abs) { /* a timer even when due: it fires through the mailbox */
      a->ms = a->ms > now ? a->ms - now : 0;
      a->abs = false;
      if (a->ms == 0 && a->a != KEEL_ATOM(TIMEOUT)) {
        zero_drop(&zs, a->a);
        if (start_timer(sm, a->a, 0, a->b) != KEEL_OK)
          return KEEL_ENOMEM;
        continue;
      }
    }
    if (a->a == KEEL_ATOM(TIMEOUT))
      event_action(&ev, &have_ev, a);
    else if (timer_action(sm, &zs, a) != KEEL_OK)
      return KEEL_ENOMEM;
  }
  if (zs.n > 0 && queue_zeros(sm, &zs) != KEEL_OK)
    return KEEL_ENOMEM;
  if (have_ev && sm->queue == KEEL_NIL &&
      start_timer(sm, KEEL_ATOM(TIMEOUT), ev.ms, ev.b) != KEEL_OK)
    return KEEL_ENOMEM;
  return KEEL_OK;
}

/* The enter call(s) of the state just entered from old: its actions join
 * t. KEEL_EXIT when the machine stopped. */
static keel_handler_status enter(keel_gen_statem *sm, keel_term old, trans *t) {
  for (;;) {
    bool undef;
    keel_term entered = sm->state;
    keel_gsm_ret r = call_state(sm, keel__gsm_atoms()->enter, old, &undef);
    if (undef)
      return stop_with(sm, "undef_state_function", sm->state);
    const char *bad = NULL;
    if (r == KEEL_GSM_STOP) {
      collect(sm, t, true, false, &bad); /* the replies */
      return keel__gsm_terminate(sm, sm->reason);
    }
    collect(sm, t, true, false, &bad);
    if (bad != NULL)
      return stop_with(sm, "bad_action_from_state_function", keel_atom(bad));
    if (r == KEEL_GSM_NEXT_STATE && !keel_eq_exact(sm->next, entered))
      return stop_with(sm, "bad_state_enter_return", sm->next);
    if (r == KEEL_GSM_REPEAT_STATE)
      continue;
    if (r != KEEL_GSM_NEXT_STATE && r != KEEL_GSM_KEEP_STATE)
      return stop_with(sm, "bad_return_from_state_function",
                       keel_small((int64_t)r));
    return KEEL_CONTINUE;
  }
}

/* Everything after a callback (or init: initial) returned r for the event
 * ev ({Type, Content}, KEEL_NONE for init). */
static keel_handler_status transition(keel_gen_statem *sm, keel_gsm_ret r,
                                      keel_term ev, bool initial) {
  trans t = {.inserted = KEEL_NIL};
  const char *bad = NULL;
  if (r == KEEL_GSM_STOP) {
    collect(sm, &t, false, initial, &bad);
    return keel__gsm_terminate(sm, sm->reason);
  }
  if (r != KEEL_GSM_NEXT_STATE && r != KEEL_GSM_KEEP_STATE &&
      r != KEEL_GSM_REPEAT_STATE)
    return stop_with(sm, "bad_return_from_state_function",
                     keel_small((int64_t)r));
  keel_term old = sm->state;
  keel_term next =
      r == KEEL_GSM_NEXT_STATE && sm->next != KEEL_NONE ? sm->next : old;
  collect(sm, &t, false, initial, &bad);
  if (bad != NULL)
    return stop_with(sm, "bad_action_from_state_function", keel_atom(bad));
  if (sm->act_oom || t.tmo_oom || t.inserted == KEEL_NONE)
    return keel__gsm_terminate(sm, KEEL_ATOM(SYSTEM_LIMIT));
  if (t.postpone && ev != KEEL_NONE)
    sm->postponed = keel_cons(keel_gsm_heap(sm), ev, sm->postponed);
  bool changed = !initial && !keel_eq_exact(next, old);
  if (changed) {
    sm->queue = rev_append(sm, sm->postponed, sm->queue);
    sm->postponed = KEEL_NIL;
    cancel_timer_of(sm, keel__gsm_atoms()->state_timeout);
  }
  sm->queue = rev_append(sm, t.inserted, sm->queue);
  if (sm->queue == KEEL_NONE || sm->postponed == KEEL_NONE)
    return keel__gsm_terminate(sm, KEEL_ATOM(SYSTEM_LIMIT));
  sm->state = next;
  if (sm->mod->state_enter &&
      (initial || changed || r == KEEL_GSM_REPEAT_STATE) &&
      enter(sm, initial ? next : old, &t) == KEEL_EXIT)
    return KEEL_EXIT;
  if (apply_timeouts(sm, &t) != KEEL_OK)
    return keel__gsm_terminate(sm, KEEL_ATOM(SYSTEM_LIMIT));
  sm->hibernate = t.hibernate;
  if (t.hibernate ||
      keel_heap_used_words(keel_proc_heap(sm->self)) > sm->compact_at)
    keel__gsm_compact(sm);
  return KEEL_CONTINUE;
}

/* One event: any event cancels the event timeout. */
static keel_handler_status one_event(keel_gen_statem *sm, keel_term type,
                                     keel_term content) {
  cancel_timer_of(sm, KEEL_ATOM(TIMEOUT));
  sm->last = content;
  if (sm->trace)
    keel__gsm_trace(sm, type, content);
  bool undef;
  keel_gsm_ret r = call_state(sm, type, content, &undef);
  if (undef)
    return stop_with(sm, "undef_state_function", sm->state);
  keel_term ev = event_term(sm, type, content);
  if (ev == KEEL_NONE)
    return keel__gsm_terminate(sm, KEEL_ATOM(SYSTEM_LIMIT));
  return transition(sm, r, ev, false);
}

/* Handles the machine's queued events until none is left. */
static keel_handler_status drain(keel_gen_statem *sm) {
  while (keel_is_cons(sm->queue)) {
    keel_term e = keel_hd(sm->queue);
    sm->queue = keel_tl(sm->queue);
    if (one_event(sm, keel_tuple_get(e, 0), keel_tuple_get(e, 1)) == KEEL_EXIT)
      return KEEL_EXIT;
  }
  return KEEL_CONTINUE;
}

keel_handler_status keel__gsm_event(keel_gen_statem *sm, keel_term type,
                                    keel_term content) {
  if (one_event(sm, type, content) == KEEL_EXIT)
    return KEEL_EXIT;
  return drain(sm);
}

keel_handler_status keel__gsm_initial(keel_gen_statem *sm) {
  sm->compact_at = GSM_COMPACT_MIN;
  if (transition(sm, KEEL_GSM_NEXT_STATE, KEEL_NONE, true) == KEEL_EXIT)
    return KEEL_EXIT;
  return drain(sm);
}
