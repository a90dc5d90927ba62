/*
 * keel/gen_statem.h - OTP's gen_statem: a process holding a state and its
 * data (two terms), driven by events (calls, casts, other messages,
 * timeouts, internal events) through the callbacks of a module
 * descriptor.
 *
 * It is gen_server's sibling (keel/gen_server.h): same start options (the
 * options struct is gen_server's), handler process by default or a fiber
 * process (opts.fiber), registered names, start_link / start_monitor, the
 * same call protocol (calls through monitor aliases, a reply arriving after
 * the caller gave up is dropped), the same sys requests (stop, get_state,
 * get_status, change_code, replace_state, suspend/resume, trace), an
 * enter_loop for fiber processes, and crash reports as telemetry. State and
 * data live in the process heap; every term the machine keeps must be reachable
 * from them (the heap is compacted with the state, the data, the queued
 * and postponed events and the timer contents as roots).
 *
 * Callback modes (callback_mode/0):
 *  - KEEL_GSM_STATE_FUNCTIONS: the state is an atom; `states` maps state
 *    atoms (by name) to one function each (Module:StateName/3). An event in
 *    a state the table lacks stops the machine with
 *    {undef_state_function, State}.
 *  - KEEL_GSM_HANDLE_EVENT_FUNCTION: any term is a state; handle_event/4
 *    gets every event.
 * With state_enter set, the machine calls the state callback with event
 * type 'enter' and the old state as content initially and on every state
 * change (and on repeat_state). An enter call may not change the state
 * (stop reason {bad_state_enter_return, NewState}), postpone or insert
 * events (stop reason {bad_action_from_state_function, Action}).
 *
 * Event types (terms, as OTP's): {call, From}, cast, info, timeout,
 * {timeout, Name}, state_timeout, internal, and enter for enter calls.
 * keel_gsm_kind() classifies them for a C switch.
 *
 * A callback returns one of keel_gsm_next_state, keel_gsm_keep_state,
 * keel_gsm_repeat_state, keel_gsm_stop (and keel_gsm_ok from init),
 * after adding transition actions with the keel_gsm_* action functions;
 * actions run in the order they were added, as OTP's action list.
 */
#ifndef KEEL_GEN_STATEM_H
#define KEEL_GEN_STATEM_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/gen_server.h"
#include "keel/runtime.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A running state machine, as seen by its own callbacks. Valid only during
 * a callback, on the calling thread. */
typedef struct keel_gen_statem keel_gen_statem;

/* What a callback returns; build it with the result functions below. */
typedef enum keel_gsm_ret {
  KEEL_GSM_NEXT_STATE = 0,   /* init: {ok, S, D}; else {next_state, S, D} */
  KEEL_GSM_KEEP_STATE = 1,   /* keep_state / keep_state_and_data */
  KEEL_GSM_REPEAT_STATE = 2, /* repeat_state / repeat_state_and_data */
  KEEL_GSM_STOP = 3,         /* stop / stop_and_reply */
  KEEL_GSM_IGNORE = 4,       /* init only: ignore */
  KEEL_GSM_ERROR = 5         /* init only: {error, Reason} */
} keel_gsm_ret;

typedef enum keel_gsm_mode {
  KEEL_GSM_STATE_FUNCTIONS = 0,
  KEEL_GSM_HANDLE_EVENT_FUNCTION = 1
} keel_gsm_mode;

/* Kind of an event type term (keel_gsm_kind). */
typedef enum keel_gsm_kind {
  KEEL_GSM_CALL,          /* {call, From} */
  KEEL_GSM_CAST,          /* cast */
  KEEL_GSM_INFO,          /* info */
  KEEL_GSM_TIMEOUT,       /* timeout: the event timeout */
  KEEL_GSM_GENERIC,       /* {timeout, Name} */
  KEEL_GSM_STATE_TIMEOUT, /* state_timeout */
  KEEL_GSM_INTERNAL,      /* internal */
  KEEL_GSM_ENTER,         /* enter (content: the old state) */
  KEEL_GSM_BAD            /* not an event type */
} keel_gsm_kind;

/* Callback of one state (state_functions mode). The state is the table
 * entry's; data points to the data term: assign it to change the data
 * (keep_state and keep_state_and_data are the same in C). */
typedef keel_gsm_ret (*keel_gsm_state_fn)(keel_gen_statem *sm, keel_term type,
                                          keel_term content, keel_term *data);

/* One entry of a state table: the state atom's name and its function. A
 * table ends with {NULL, NULL}. */
typedef struct keel_gsm_state_entry {
  const char *name;
  keel_gsm_state_fn fn;
} keel_gsm_state_entry;

/* Layout version of keel_gen_statem_module. */
#define KEEL_GEN_STATEM_MODULE_V1 1u

/* The callbacks of a machine: a const descriptor that
 * keel_gen_statem_change_code can swap. init and, per mode, states or
 * handle_event are required; the rest may be NULL. Terms the callbacks
 * build go in keel_gsm_heap(sm). Callbacks of a handler machine must not
 * block. */
typedef struct keel_gen_statem_module {
  unsigned version; /* KEEL_GEN_STATEM_MODULE_V1 */
  const char *name; /* for reports; may be NULL */
  keel_gsm_mode mode;
  bool state_enter; /* callback_mode's state_enter */
  /* Runs in the new process while the starter waits: set *state and
   * *data, add actions, return keel_gsm_ok, keel_gsm_ignore or
   * keel_gsm_stop. */
  keel_gsm_ret (*init)(keel_gen_statem *sm, keel_term arg, keel_term *state,
                       keel_term *data);
  const keel_gsm_state_entry *states; /* KEEL_GSM_STATE_FUNCTIONS */
  keel_gsm_ret (*handle_event)(keel_gen_statem *sm, keel_term type,
                               keel_term content, keel_term state,
                               keel_term *data); /* HANDLE_EVENT_FUNCTION */
  /* On stop (a callback's stop, keel_gen_statem_stop, the parent's exit
   * signal while trapping exits); not on 'kill' nor untrapped exits. */
  void (*terminate)(keel_gen_statem *sm, keel_term reason, keel_term state,
                    keel_term data);
  /* Called on the NEW module by keel_gen_statem_change_code: KEEL_OK (the
   * swap happens, with the state and data it may have changed) or a
   * negative code (nothing changes). */
  int (*code_change)(keel_gen_statem *sm,
                     const struct keel_gen_statem_module *old, keel_term extra,
                     keel_term *state, keel_term *data);
  /* What crash reports and keel_gen_statem_get_status show; NULL: the
   * tuple {State, Data}. */
  keel_term (*format_status)(keel_gen_statem *sm, keel_term state,
                             keel_term data);
} keel_gen_statem_module;

/* ---- results: set the callback's result, return its tag --------------- */

/* init: {ok, State, Data} (state and data set through the pointers). */
keel_gsm_ret keel_gsm_ok(keel_gen_statem *sm);
/* {next_state, State, Data}: a state different from the current one
 * (keel_eq_exact) is a state change: postponed events are retried, the
 * state timeout is cancelled, the enter call runs. */
keel_gsm_ret keel_gsm_next_state(keel_gen_statem *sm, keel_term state);
/* keep_state / keep_state_and_data. */
keel_gsm_ret keel_gsm_keep_state(keel_gen_statem *sm);
/* repeat_state / repeat_state_and_data: as keep_state, but the enter call
 * runs again (postponed events are not retried: the state is the same). */
keel_gsm_ret keel_gsm_repeat_state(keel_gen_statem *sm);
/* {stop, Reason}: replies added as actions are sent, terminate(Reason)
 * runs, the process exits with Reason. From init: the start fails. */
keel_gsm_ret keel_gsm_stop(keel_gen_statem *sm, keel_term reason);
/* {stop_and_reply, Reason, [{reply, From, Reply}]}. */
keel_gsm_ret keel_gsm_stop_and_reply(keel_gen_statem *sm, keel_term reason,
                                     keel_term from, keel_term reply);
/* init only: ignore. */
keel_gsm_ret keel_gsm_ignore(keel_gen_statem *sm);
/* init only: {error, Reason} (OTP 26): the start fails with Reason, as for
 * keel_gsm_stop, but the process exits with reason normal (no terminate,
 * no exit signal to a linked starter). */
keel_gsm_ret keel_gsm_init_error(keel_gen_statem *sm, keel_term reason);

/* ---- transition actions (in order; each may fail with KEEL_ENOMEM) ----
 * Timeouts take ms >= 0 or KEEL_INFINITY; 'infinity' starts no timer and
 * cancels a running one of the same type. ms 0: no timer, the timeout
 * event is queued after the events already queued in the machine
 * (inserted and retried ones) and before any message not yet received;
 * an event timeout of 0 is delivered only if no other event comes first. */

/* {reply, From, Reply}: sent when the action list is processed. */
int keel_gsm_reply(keel_gen_statem *sm, keel_term from, keel_term reply);
/* postpone: the current event is retried after the next state change, in
 * the order postponed events arrived. Not in enter calls. */
int keel_gsm_postpone(keel_gen_statem *sm);
/* {next_event, Type, Content}: inserted events are handled before any
 * other, in the order they were added. Not in enter calls. */
int keel_gsm_next_event(keel_gen_statem *sm, keel_term type, keel_term content);
/* hibernate: the heap is compacted (a fiber machine keeps its stack for
 * now: see docs/behaviours/gen_statem.md). */
int keel_gsm_hibernate(keel_gen_statem *sm);
/* {timeout, Ms, Content}: an event 'timeout' unless an event (any event,
 * even an inserted or retried one) comes first. */
int keel_gsm_event_timeout(keel_gen_statem *sm, int64_t ms, keel_term content);
/* {state_timeout, Ms, Content}: restarts the state timeout; a state change
 * cancels it (unless this transition sets it again). */
int keel_gsm_state_timeout(keel_gen_statem *sm, int64_t ms, keel_term content);
/* {{timeout, Name}, Ms, Content}: restarts the generic timeout Name; only
 * a cancel, 'infinity' or its expiry ends it. */
int keel_gsm_generic_timeout(keel_gen_statem *sm, keel_term name, int64_t ms,
                             keel_term content);
/* The same three timeouts with {abs, true}: at_ms is an absolute time of
 * keel_gsm_monotonic_ms's clock. A time already reached starts a timer of
 * 0, whose event comes through the mailbox (after the messages already
 * there), never the queue of zero timeouts. KEEL_INFINITY cancels as the
 * relative forms; KEEL_EINVAL for a negative time or one further than
 * KEEL_TIMER_MAX_MS away. Under keel/sim.h the delay is taken against the
 * real monotonic clock when the action runs (then measured in virtual
 * time). */
int keel_gsm_event_timeout_at(keel_gen_statem *sm, int64_t at_ms,
                              keel_term content);
int keel_gsm_state_timeout_at(keel_gen_statem *sm, int64_t at_ms,
                              keel_term content);
int keel_gsm_generic_timeout_at(keel_gen_statem *sm, keel_term name,
                                int64_t at_ms, keel_term content);
/* The clock of the *_at timeouts (erlang:monotonic_time(millisecond)):
 * keel_monotonic_ns() in milliseconds. Thread-safe. */
int64_t keel_gsm_monotonic_ms(void);
/* {state_timeout | {timeout, Name}, cancel}: name KEEL_NONE for the state
 * timeout. */
int keel_gsm_cancel_timeout(keel_gen_statem *sm, keel_term name);
/* {state_timeout | {timeout, Name}, update, Content}: a running timer keeps
 * its expiry time with the new content; when none runs, it behaves as a
 * timeout of 0 with that content. name KEEL_NONE for the state timeout. */
int keel_gsm_update_timeout(keel_gen_statem *sm, keel_term name,
                            keel_term content);
/* {timeout, cancel}: cancels the event timeout set earlier in the same
 * transition (any event already cancels a running one). */
int keel_gsm_cancel_event_timeout(keel_gen_statem *sm);
/* {timeout, update, Content}: the event timeout set earlier in the same
 * transition keeps its time with the new content; without one, an event
 * timeout of 0 with that content is set. */
int keel_gsm_update_event_timeout(keel_gen_statem *sm, keel_term content);
/* Cancels every generic timeout {timeout, Name} at once, running or set
 * earlier in the same transition (a Keel extension: OTP cancels them one
 * name at a time). Later actions of the list may start new ones. */
int keel_gsm_cancel_generic_timeouts(keel_gen_statem *sm);

/* ---- inside callbacks ---------------------------------------------------- */

keel_proc *keel_gsm_proc(keel_gen_statem *sm);
keel_heap *keel_gsm_heap(keel_gen_statem *sm);
keel_term keel_gsm_self(const keel_gen_statem *sm);
/* The current state (in an enter call: the new state). */
keel_term keel_gsm_state(const keel_gen_statem *sm);
/* The kind of an event type; for {call, From} also *from (may be NULL),
 * for {timeout, Name} *from = Name. */
keel_gsm_kind keel_gsm_kind_of(keel_term type, keel_term *from);

/* ---- starting and the client API ---------------------------------------
 * Options: keel_gen_server_opts (name, link, timeout_ms,
 * hibernate_after_ms, fiber, stack_size, trap_exit, monitor_ref/heap,
 * reason_heap/reason), with gen_server's meaning. */
typedef keel_gen_server_opts keel_gen_statem_opts;

/* gen_statem:start / start_link / start_monitor: as keel_gen_server_start
 * (same results, KEEL_GEN_SERVER_IGNORED for ignore); KEEL_EINVAL also for
 * a module without init, a state_functions module without states or a
 * handle_event_function module without handle_event. Thread-safe. */
int keel_gen_statem_start(const keel_gen_statem_module *mod, keel_term arg,
                          const keel_gen_statem_opts *opts, keel_term *pid);

/* gen_statem:enter_loop: turns the calling fiber process into a machine
 * running mod in state `state` with `data` (both copied into the process
 * heap), as if init had returned them without actions: the initial
 * transition runs (the enter call with state_enter, which may set
 * timeouts), then the machine serves events; returns only when it stops
 * (its exit reason is then recorded: the fiber should return). Of opts
 * (may be NULL) only name, hibernate_after_ms and trap_exit are used: a
 * name must already be registered to the caller (KEEL_ENOENT otherwise,
 * OTP's process_not_registered), and serves in reports. The machine has no
 * parent; hibernation compacts the heap but keeps the fiber's stack.
 * Returns KEEL_OK once it stopped; KEEL_ESTATE (not called from the
 * running fiber process self), KEEL_EINVAL (bad module, state, data or
 * options), KEEL_ENOMEM. */
int keel_gen_statem_enter_loop(keel_proc *self,
                               const keel_gen_statem_module *mod,
                               keel_term state, keel_term data,
                               const keel_gen_statem_opts *opts);

/* Adds the initial actions of keel_gen_statem_enter_actions with the
 * transition-action verbs above (keel_gsm_reply, keel_gsm_next_event,
 * timeouts, hibernate; postpone is refused as from init). */
typedef void (*keel_gsm_actions_fn)(keel_gen_statem *sm, void *arg);

/* gen_statem:enter_loop/6: as keel_gen_statem_enter_loop, and actions (may
 * be NULL) runs once in the new machine before its initial transition to
 * add that transition's actions, as init's would be: inserted events are
 * handled first, timeouts start, then the enter call runs with its own
 * actions. A refused action stops the machine with
 * {bad_action_from_state_function, Action}. Same results as
 * keel_gen_statem_enter_loop. */
int keel_gen_statem_enter_actions(keel_proc *self,
                                  const keel_gen_statem_module *mod,
                                  keel_term state, keel_term data,
                                  const keel_gen_statem_opts *opts,
                                  keel_gsm_actions_fn actions, void *arg);

/* gen_statem:call: the event {call, From} with content request; as
 * keel_gen_server_call (timeout, late replies dropped, errors). */
int keel_gen_statem_call(keel_term server, keel_term request,
                         int64_t timeout_ms, keel_heap *h, keel_term *reply);
/* gen_statem:cast: the event cast. As keel_gen_server_cast. */
int keel_gen_statem_cast(keel_term server, keel_term msg);
/* gen_statem:reply: answers {call, From} later, from anywhere. */
int keel_gen_statem_reply(keel_term from, keel_term reply);
/* gen_statem:stop: terminate(reason) runs; waits at most timeout_ms. As
 * keel_gen_server_stop. */
int keel_gen_statem_stop(keel_term server, keel_term reason,
                         int64_t timeout_ms);
/* gen_statem:send_request / receive_response / check_response: as
 * gen_server's (same protocol). */
int keel_gen_statem_send_request(keel_term server, keel_term request,
                                 keel_heap *h, keel_term *req_id);
int keel_gen_statem_receive_response(keel_term req_id, int64_t timeout_ms,
                                     keel_heap *h, keel_term *reply);
int keel_gen_statem_check_response(keel_term msg, keel_term req_id,
                                   keel_heap *h, keel_term *reply);

/* sys:get_state: {State, Data}, copied into h. */
int keel_gen_statem_get_state(keel_term server, int64_t timeout_ms,
                              keel_heap *h, keel_term *state);
/* format_status's view (default {State, Data}), copied into h. */
int keel_gen_statem_get_status(keel_term server, int64_t timeout_ms,
                               keel_heap *h, keel_term *status);
/* sys:change_code: new_mod->code_change(sm, old, extra, &state, &data)
 * runs inside the machine; on KEEL_OK new_mod serves every later event.
 * Returns that code, KEEL_EINVAL (bad module) or the errors of call.
 * new_mod must outlive the machine. */
int keel_gen_statem_change_code(keel_term server,
                                const keel_gen_statem_module *new_mod,
                                keel_term extra, int64_t timeout_ms);

/* ---- sys-like debugging (blocking: fibers and plain threads) -----------
 * As gen_server's, with the same errors (those of keel_gen_server_call);
 * served even while the machine is suspended. */

/* sys:replace_state: fn(h, {State, Data}, arg) runs inside the machine (h
 * is its heap) and returns the new {State, Data}. Only the pair changes:
 * a new state is no state change (no enter call, postponed events stay,
 * the state timeout runs on). fn returning KEEL_NONE keeps the pair (ok);
 * a term that is not a 2-tuple keeps it and gives KEEL_EINVAL. arg must
 * stay valid until this returns. */
int keel_gen_statem_replace_state(keel_term server, keel_gs_state_fn fn,
                                  void *arg, int64_t timeout_ms);
/* sys:suspend / sys:resume: a suspended machine handles only system
 * requests (and its parent's exit); every other message (calls, casts,
 * infos, the messages of its own timeouts) waits, in order, and is handled
 * on resume, as if it had just arrived. Timers keep running meanwhile: a
 * timeout that expires while suspended is delivered after resume, in
 * arrival order. Suspending twice is one suspension; resume of a running
 * machine does nothing. */
int keel_gen_statem_suspend(keel_term server, int64_t timeout_ms);
int keel_gen_statem_resume(keel_term server, int64_t timeout_ms);
/* sys:trace on/off: when on, the machine emits [keel, gen_statem, trace]
 * for each event it handles (inserted, retried and timeout events too),
 * before the callback, with metadata pid, type (the event type term),
 * content and state (the state it is handled in). */
int keel_gen_statem_trace(keel_term server, bool on, int64_t timeout_ms);

/* sys:statistics and sys:log, as for gen_server (keel/gen_server.h):
 * messages_in counts the messages the machine took (calls, casts, infos,
 * its timeouts' messages; system requests apart), messages_out the
 * replies sent; the log's events are {in, Msg}, {in, Request, From} and
 * {out, Reply, To}. */
int keel_gen_statem_statistics(keel_term server, bool on, int64_t timeout_ms);
int keel_gen_statem_get_statistics(keel_term server, int64_t timeout_ms,
                                   keel_heap *h, keel_term *out);
int keel_gen_statem_log(keel_term server, unsigned max, int64_t timeout_ms);
int keel_gen_statem_get_log(keel_term server, int64_t timeout_ms, keel_heap *h,
                            keel_term *out);

/* Crash reports: a machine stopping with a reason other than normal,
 * shutdown or {shutdown, _} emits [keel, gen_statem, crash] after
 * terminate, with metadata pid, name, module, last_message (the event
 * content), state (format_status's view) and reason. Messages a machine
 * cannot classify do not exist: everything not a call, cast, system
 * request or timer is an 'info' event. */

#ifdef __cplusplus
}
#endif

#endif /* KEEL_GEN_STATEM_H */
