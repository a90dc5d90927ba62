/*
 * gsm_test.h - the scripted state machine the gen_statem tests drive.
 *
 * Every event is logged in the data (a list, newest first) as
 * {Type, Content, StateName} ({call, C, S} for calls; {enter, Old, S} for
 * enter calls). An event whose content is {s, Tag, Actions} is logged as
 * Tag and runs Actions, a list of:
 *   {next, S} | repeat | {stop, R} | {stop_reply, R, Reply} | {reply, R}
 *   | postpone | {ins, Type, Content} | hibernate
 *   | {et, Ms, C} | {st, Ms, C} | {gt, Name, Ms, C}   (Ms: int | infinity)
 *   | {aet, At, C} | {ast, At, C} | {agt, Name, At, C} (absolute: At is a
 *     time of keel_gsm_monotonic_ms, or infinity)
 *   | {cancel, Name | state | event} | {update, Name | state | event, C}
 *   | cancel_generic (every generic timeout)
 *   | {in, S, Actions} (Actions only in state S)
 * A state {Name, Actions} runs Actions in its enter calls. init(Arg): Arg
 * is {State, Actions} (ok with those actions), ignore, or {stop, R}.
 * Header-only, included once per test file.
 */
#ifndef KEEL_GSM_TEST_H
#define KEEL_GSM_TEST_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keel/gen_statem.h"
#include "runtime/rt_test.h"

#define TMO 10000

static keel_term A(const char *s) {
  return keel_atom(s);
}

static inline bool is(keel_term t, const char *tag, size_t arity) {
  return keel_is_tuple(t) && keel_tuple_arity(t) == arity &&
         keel_tuple_get(t, 0) == A(tag);
}

static atomic_long terminated;
static _Atomic keel_term last_reason; /* an atom, or 'other' */

static inline keel_term state_name(keel_term s) {
  return keel_is_tuple(s) ? keel_tuple_get(s, 0) : s;
}

static inline int64_t ms_of(keel_term t) {
  int64_t v = 0;
  if (t == KEEL_ATOM(INFINITY))
    return KEEL_INFINITY;
  (void)keel_get_int64(t, &v);
  return v;
}

static inline keel_term tname(keel_term n) {
  return n == A("state") ? KEEL_NONE : n;
}

/* Runs one action; may set *ret. */
static inline void run_action(keel_gen_statem *sm, keel_term a, keel_term from,
                              keel_gsm_ret *ret) {
#define ARG(i) keel_tuple_get(a, i)
  if (is(a, "next", 2))
    *ret = keel_gsm_next_state(sm, ARG(1));
  else if (a == A("repeat"))
    *ret = keel_gsm_repeat_state(sm);
  else if (is(a, "stop", 2))
    *ret = keel_gsm_stop(sm, ARG(1));
  else if (is(a, "stop_reply", 3))
    *ret = keel_gsm_stop_and_reply(sm, ARG(1), from, ARG(2));
  else if (is(a, "reply", 2))
    cr_assert_eq(keel_gsm_reply(sm, from, ARG(1)), KEEL_OK);
  else if (a == A("postpone"))
    cr_assert_eq(keel_gsm_postpone(sm), KEEL_OK);
  else if (is(a, "ins", 3))
    cr_assert_eq(keel_gsm_next_event(sm, ARG(1), ARG(2)), KEEL_OK);
  else if (a == A("hibernate"))
    cr_assert_eq(keel_gsm_hibernate(sm), KEEL_OK);
  else if (is(a, "et", 3))
    cr_assert_eq(keel_gsm_event_timeout(sm, ms_of(ARG(1)), ARG(2)), KEEL_OK);
  else if (is(a, "st", 3))
    cr_assert_eq(keel_gsm_state_timeout(sm, ms_of(ARG(1)), ARG(2)), KEEL_OK);
  else if (is(a, "gt", 4))
    cr_assert_eq(keel_gsm_generic_timeout(sm, ARG(1), ms_of(ARG(2)), ARG(3)),
                 KEEL_OK);
  else if (is(a, "aet", 3))
    cr_assert_eq(keel_gsm_event_timeout_at(sm, ms_of(ARG(1)), ARG(2)), KEEL_OK);
  else if (is(a, "ast", 3))
    cr_assert_eq(keel_gsm_state_timeout_at(sm, ms_of(ARG(1)), ARG(2)), KEEL_OK);
  else if (is(a, "agt", 4))
    cr_assert_eq(keel_gsm_generic_timeout_at(sm, ARG(1), ms_of(ARG(2)), ARG(3)),
                 KEEL_OK);
  else if (is(a, "cancel", 2) && ARG(1) == A("event"))
    cr_assert_eq(keel_gsm_cancel_event_timeout(sm), KEEL_OK);
  else if (is(a, "update", 3) && ARG(1) == A("event"))
    cr_assert_eq(keel_gsm_update_event_timeout(sm, ARG(2)), KEEL_OK);
  else if (a == A("cancel_generic"))
    cr_assert_eq(keel_gsm_cancel_generic_timeouts(sm), KEEL_OK);
  else if (is(a, "cancel", 2))
    cr_assert_eq(keel_gsm_cancel_timeout(sm, tname(ARG(1))), KEEL_OK);
  else if (is(a, "update", 3))
    cr_assert_eq(keel_gsm_update_timeout(sm, tname(ARG(1)), ARG(2)), KEEL_OK);
#undef ARG
}

/* Runs a list of actions; {in, S, L} runs L only in state S. */
static inline void run_list(keel_gen_statem *sm, keel_term l, keel_term from,
                            keel_gsm_ret *ret) {
  for (; keel_is_cons(l); l = keel_tl(l)) {
    keel_term a = keel_hd(l);
    if (is(a, "in", 3)) {
      if (state_name(keel_gsm_state(sm)) == keel_tuple_get(a, 1))
        run_list(sm, keel_tuple_get(a, 2), from, ret);
    } else {
      run_action(sm, a, from, ret);
    }
  }
}

static inline keel_gsm_ret run_actions(keel_gen_statem *sm, keel_term l,
                                       keel_term from) {
  keel_gsm_ret ret = KEEL_GSM_KEEP_STATE;
  run_list(sm, l, from, &ret);
  return ret;
}

static inline void log_event(keel_gen_statem *sm, keel_term kind,
                             keel_term what, keel_term state, keel_term *data) {
  keel_heap *h = keel_gsm_heap(sm);
  keel_term e = keel_tuple(h, 3, kind, what, state_name(state));
  *data = keel_cons(h, e, *data);
}

static inline keel_gsm_ret t_event(keel_gen_statem *sm, keel_term type,
                                   keel_term content, keel_term state,
                                   keel_term *data) {
  keel_term from = KEEL_NONE;
  keel_gsm_kind k = keel_gsm_kind_of(type, &from);
  cr_assert_neq(k, KEEL_GSM_BAD);
  if (k == KEEL_GSM_ENTER) {
    log_event(sm, A("enter"), state_name(content), state, data);
    return keel_is_tuple(state)
               ? run_actions(sm, keel_tuple_get(state, 1), KEEL_NONE)
               : keel_gsm_keep_state(sm);
  }
  keel_term kind = k == KEEL_GSM_CALL ? A("call") : type;
  bool script = is(content, "s", 3);
  log_event(sm, kind, script ? keel_tuple_get(content, 1) : content, state,
            data);
  if (!script)
    return keel_gsm_keep_state(sm);
  return run_actions(sm, keel_tuple_get(content, 2), from);
}

static inline keel_gsm_ret t_init(keel_gen_statem *sm, keel_term arg,
                                  keel_term *state, keel_term *data) {
  if (arg == KEEL_ATOM(IGNORE))
    return keel_gsm_ignore(sm);
  if (is(arg, "stop", 2))
    return keel_gsm_stop(sm, keel_tuple_get(arg, 1));
  if (is(arg, "error", 2))
    return keel_gsm_init_error(sm, keel_tuple_get(arg, 1));
  *state = keel_tuple_get(arg, 0);
  *data = KEEL_NIL;
  (void)run_actions(sm, keel_tuple_get(arg, 1), KEEL_NONE);
  return keel_gsm_ok(sm);
}

static inline void t_terminate(keel_gen_statem *sm, keel_term reason,
                               keel_term state, keel_term data) {
  (void)sm;
  (void)state;
  (void)data;
  atomic_store(&last_reason, keel_is_atom(reason) ? reason : A("other"));
  atomic_fetch_add(&terminated, 1);
  signal_event();
}

static const keel_gen_statem_module plain_mod = {
    .version = KEEL_GEN_STATEM_MODULE_V1,
    .name = "gsm_plain",
    .mode = KEEL_GSM_HANDLE_EVENT_FUNCTION,
    .init = t_init,
    .handle_event = t_event,
    .terminate = t_terminate};

static const keel_gen_statem_module enter_mod = {
    .version = KEEL_GEN_STATEM_MODULE_V1,
    .name = "gsm_enter",
    .mode = KEEL_GSM_HANDLE_EVENT_FUNCTION,
    .state_enter = true,
    .init = t_init,
    .handle_event = t_event,
    .terminate = t_terminate};

static inline void start(unsigned n) {
  start_node(n, 0);
  atomic_store(&terminated, 0);
  atomic_store(&last_reason, KEEL_NONE);
}

/* Starts mod with init argument text (keel_build syntax). */
static inline keel_term start_sm_opts(const keel_gen_statem_module *mod,
                                      const keel_gen_statem_opts *opts,
                                      const char *init) {
  keel_heap h;
  keel_heap_init(&h);
  keel_gen_statem_opts o = *opts;
  keel_term pid = KEEL_NONE;
  keel_term arg = keel_build(&h, init);
  cr_assert_neq(arg, KEEL_NONE, "%s", init);
  cr_assert_eq(keel_gen_statem_start(mod, arg, &o, &pid), KEEL_OK);
  keel_heap_destroy(&h);
  return pid;
}

static inline void cast(keel_term sm, const char *text) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term m = keel_build(&h, text);
  cr_assert_neq(m, KEEL_NONE, "%s", text);
  cr_assert_eq(keel_gen_statem_cast(sm, m), KEEL_OK);
  keel_heap_destroy(&h);
}

/* The log, oldest first, printed; NULL if the machine is gone. Caller
 * frees. */
static inline char *log_of(keel_term sm) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term st;
  char *s = NULL;
  if (keel_gen_statem_get_state(sm, TMO, &h, &st) == KEEL_OK) {
    keel_term rev = KEEL_NIL;
    for (keel_term l = keel_tuple_get(st, 1); keel_is_cons(l); l = keel_tl(l))
      rev = keel_cons(&h, keel_hd(l), rev);
    s = keel_print_alloc(rev, NULL);
  }
  keel_heap_destroy(&h);
  return s;
}

typedef struct log_wait {
  keel_term sm;
  const char *want;
  char *got;
} log_wait;

static inline bool log_is(void *arg) {
  log_wait *w = arg;
  free(w->got);
  w->got = log_of(w->sm);
  return w->got != NULL && strcmp(w->got, w->want) == 0;
}

/* Waits (bounded) until the log is exactly want; under the simulation,
 * runs it until nothing can happen any more, then compares. */
static inline void expect_log(keel_term sm, const char *want) {
  log_wait w = {sm, want, NULL};
  bool ok;
  if (sim_mode) { /* run until quiet (timers due), then look once */
    ok = keel_sim_run(NULL, NULL, SIM_MAX_STEPS) == KEEL_OK && log_is(&w);
  } else {
    ok = wait_until(log_is, &w);
  }
  cr_assert(ok, "log\n got: %s\nwant: %s", w.got ? w.got : "(gone)", want);
  free(w.got);
}

static inline bool proc_gone(void *arg) {
  keel_process_info_t pi;
  return keel_process_info(*(keel_term *)arg, &pi) == KEEL_ENOPROC;
}

static inline void stop_sm(keel_term sm) {
  cr_assert_eq(keel_gen_statem_stop(sm, KEEL_ATOM(NORMAL), TMO), KEEL_OK);
  cr_assert(wait_until(proc_gone, &sm));
}

static inline keel_term call(keel_term sm, const char *req, int expect_rc,
                             keel_heap *h) {
  keel_term r = KEEL_NONE;
  keel_term q = keel_build(h, req);
  cr_assert_neq(q, KEEL_NONE, "%s", req);
  cr_assert_eq(keel_gen_statem_call(sm, q, TMO, h, &r), expect_rc, "%s", req);
  return r;
}

/* Starts mod as a handler or fiber machine, with init argument text. */
static inline keel_term start_sm(const keel_gen_statem_module *mod, bool fiber,
                                 const char *init) {
  keel_gen_statem_opts o = {.fiber = fiber};
  return start_sm_opts(mod, &o, init);
}

#endif /* KEEL_GSM_TEST_H */
