/*
 * gen_statem_internal.h - the machine's control block, shared by the
 * event loop (gen_statem.c), the transition logic (gen_statem_trans.c)
 * and the starter (gen_statem_client.c).
 */
#ifndef KEEL_GEN_STATEM_INTERNAL_H
#define KEEL_GEN_STATEM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/gen_statem.h"
#include "otp/sys_debug.h"

/* A running timeout: the event type it delivers ('timeout',
 * 'state_timeout' or {timeout, Name}), its content, the generation its
 * timer message {'$gen_timeout', Gen} carries, and the runtime timer. */
typedef struct gsm_timer {
  keel_term type, content;
  uint64_t gen;
  keel_timer_ref tref;
} gsm_timer;

typedef enum gsm_act_kind {
  GSM_A_REPLY,
  GSM_A_POSTPONE,
  GSM_A_NEXT_EVENT,
  GSM_A_HIBERNATE,
  GSM_A_TIMEOUT,   /* a: the event type ('timeout', 'state_timeout',
                      {timeout, Name}); b: content; ms */
  GSM_A_CANCEL,    /* a: the event type */
  GSM_A_UPDATE,    /* a: the event type; b: content */
  GSM_A_CANCEL_ALL /* every generic timeout */
} gsm_act_kind;

typedef struct gsm_action {
  gsm_act_kind kind;
  keel_term a, b;
  int64_t ms; /* relative, or absolute monotonic ms when abs */
  bool abs;
} gsm_action;

struct keel_gen_statem {
  const keel_gen_statem_module *mod;
  keel_proc *self;
  keel_term state, data;
  keel_term queue; /* events {Type, Content} to handle first, oldest first */
  keel_term postponed; /* postponed events, newest first */
  keel_term parent;    /* the linked starter's pid, or KEEL_NONE */
  keel_term name;      /* registered name, or KEEL_NONE */
  keel_term last;      /* content of the event being handled (reports) */
  keel_term deferred;  /* messages held while suspended, newest first */
  keel_term replay;    /* held messages being handled on resume, in order */
  gsm_timer *timers;
  size_t ntimers, tcap;
  uint64_t gen; /* last timer generation used */
  /* Actions and result of the running callback. */
  gsm_action *acts;
  size_t nacts, acap;
  bool act_oom, in_enter;
  keel_term next, reason;
  /* state_functions: the state whose function is cached. */
  keel_term fn_state;
  keel_gsm_state_fn fn;
  int64_t hibernate_after;
  size_t compact_at;
  bool fiber, started, trap_exit, hib_timer, hibernate;
  bool suspended, trace;
  keel__sysdbg dbg;  /* sys:statistics and sys:log */
  bool keep_stack;   /* enter_loop: the block lives on the fiber's stack */
  int64_t next_wait; /* fiber: timeout of the next receive */
};

/* Event type atoms. */
typedef struct gsm_atoms {
  keel_term call, cast, info, timeout, state_timeout, internal, enter,
      gen_timeout;
} gsm_atoms;
const gsm_atoms *keel__gsm_atoms(void);

/* Body of a fiber machine, handler of a handler machine, their terminate
 * callback (frees the block). */
void keel__gsm_fiber_main(keel_proc *self, void *arg);
keel_handler_status keel__gsm_handler(keel_proc *self, keel_term msg,
                                      void *state);
void keel__gsm_free(keel_proc *self, keel_term reason, void *state);

/* gen_statem_trans.c: handles the event (type, content) and everything it
 * queues; KEEL_EXIT when the machine stopped. */
keel_handler_status keel__gsm_event(keel_gen_statem *sm, keel_term type,
                                    keel_term content);
/* The initial transition after init returned (actions, enter call). */
keel_handler_status keel__gsm_initial(keel_gen_statem *sm);
/* terminate(Reason), crash report, exit. */
keel_handler_status keel__gsm_terminate(keel_gen_statem *sm, keel_term reason);
/* Compacts the heap with every term the machine keeps as roots. */
void keel__gsm_compact(keel_gen_statem *sm);
/* The timer whose message carries gen, removed from the table (false if
 * stale). */
bool keel__gsm_take_timer(keel_gen_statem *sm, uint64_t gen, keel_term *type,
                          keel_term *content);
/* format_status's view. */
keel_term keel__gsm_status(keel_gen_statem *sm);

/* sys trace: emits [keel, gen_statem, trace] for the event when on. */
void keel__gsm_trace(keel_gen_statem *sm, keel_term type, keel_term content);

/* Tags of the change_code and replace_state requests' pointers. */
extern const char keel__gsm_tag_change_code;
extern const char keel__gsm_tag_replace_state;

#endif /* KEEL_GEN_STATEM_INTERNAL_H */
