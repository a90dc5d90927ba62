/*
 * gen_statem.c - the machine's process (handler or fiber): init and its
 * acknowledgement, the classification of messages into events (calls,
 * casts, infos, timer messages), system requests, hibernation; and the
 * client API, which is gen_server's protocol.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "keel/gen_server.h"
#include "keel/gen_statem.h"
#include "keel/signals.h"
#include "otp/gen_server_internal.h"
#include "otp/gen_statem_internal.h"

const char keel__gsm_tag_change_code = 's';
const char keel__gsm_tag_replace_state = 'R';

static gsm_atoms atoms;
static atomic_bool atoms_ready;

const gsm_atoms *keel__gsm_atoms(void) {
  if (!atomic_load_explicit(&atoms_ready, memory_order_acquire)) {
    /* Racing initialisations store the same values. */
    gsm_atoms a = {keel_atom("call"),          keel_atom("cast"),
                   keel_atom("info"),          KEEL_ATOM(TIMEOUT),
                   keel_atom("state_timeout"), keel_atom("internal"),
                   keel_atom("enter"),         keel_atom("$gen_timeout")};
    static atomic_flag lock = ATOMIC_FLAG_INIT;
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire))
      ;
    if (!atomic_load_explicit(&atoms_ready, memory_order_relaxed)) {
      atoms = a;
      atomic_store_explicit(&atoms_ready, true, memory_order_release);
    }
    atomic_flag_clear_explicit(&lock, memory_order_release);
  }
  return &atoms;
}

static bool tagged(keel_term msg, keel_term tag, size_t arity) {
  return keel_is_tuple(msg) && keel_tuple_arity(msg) == arity &&
         keel_tuple_get(msg, 0) == tag;
}

/* ---- init ---------------------------------------------------------------- */

static void ack(keel_term to, keel_term result) {
  if (to == KEEL_ATOM(UNDEFINED))
    return;
  uint64_t buf[8];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 8);
  keel_term m = keel_tuple(&h, 2, to, result);
  if (m != KEEL_NONE)
    (void)keel_send(to, m);
  keel_heap_destroy(&h);
}

static keel_handler_status do_init(keel_gen_statem *sm, keel_term msg) {
  keel_term to = keel_tuple_get(msg, 1);
  keel_heap *h = keel_gsm_heap(sm);
  sm->started = true;
  sm->state = sm->data = KEEL_ATOM(UNDEFINED);
  sm->queue = sm->postponed = sm->deferred = sm->replay = KEEL_NIL;
  sm->fn_state = KEEL_NONE;
  if (sm->name != KEEL_NONE &&
      keel_register(sm->name, keel_gsm_self(sm)) != KEEL_OK) {
    keel_term as =
        keel_tuple(h, 2, keel_atom("already_started"), keel_whereis(sm->name));
    sm->name = KEEL_NONE;
    ack(to, keel_tuple(h, 2, KEEL_ATOM(ERROR), as));
    return keel_stop(sm->self, KEEL_ATOM(NORMAL));
  }
  if (sm->trap_exit)
    (void)keel_trap_exit(sm->self, true);
  sm->nacts = 0;
  sm->act_oom = false;
  sm->next = KEEL_NONE;
  sm->reason = KEEL_ATOM(NORMAL);
  keel_gsm_ret r =
      sm->mod->init(sm, keel_tuple_get(msg, 2), &sm->state, &sm->data);
  if (r == KEEL_GSM_NEXT_STATE) {
    if (sm->next != KEEL_NONE)
      sm->state = sm->next;
    ack(to, KEEL_ATOM(OK));
    return keel__gsm_initial(sm);
  }
  keel_term reason = r == KEEL_GSM_IGNORE ? KEEL_ATOM(NORMAL)
                     : r == KEEL_GSM_STOP || r == KEEL_GSM_ERROR
                         ? sm->reason
                         : keel_atom("bad_return_from_init");
  if (sm->name != KEEL_NONE)
    (void)keel_unregister(sm->name);
  ack(to, r == KEEL_GSM_IGNORE ? KEEL_ATOM(IGNORE)
                               : keel_tuple(h, 2, KEEL_ATOM(STOP), reason));
  /* {error, R}: the start fails with R, the process ends normally. */
  return keel_stop(sm->self, r == KEEL_GSM_ERROR ? KEEL_ATOM(NORMAL) : reason);
}

/* ---- system requests ----------------------------------------------------- */

static keel_term error_term(keel_gen_statem *sm, int code) {
  keel_term r =
      keel_tuple(keel_gsm_heap(sm), 2, KEEL_ATOM(ERROR), keel_small(code));
  return r != KEEL_NONE ? r : KEEL_ATOM(ERROR);
}

static keel_term change_code(keel_gen_statem *sm, keel_term req) {
  keel__gs_fn unused;
  const void *p;
  if (!keel__gs_ptr_get(keel_tuple_get(req, 1), &keel__gsm_tag_change_code,
                        &unused, &p))
    return error_term(sm, KEEL_EBADARG);
  const keel_gen_statem_module *nm = p;
  keel_term st = sm->state, d = sm->data;
  int rc = KEEL_OK;
  if (nm->code_change != NULL)
    rc = nm->code_change(sm, sm->mod, keel_tuple_get(req, 2), &st, &d);
  if (rc != KEEL_OK)
    return error_term(sm, rc < 0 ? rc : KEEL_EINVAL);
  sm->mod = nm;
  sm->state = st;
  sm->data = d;
  sm->fn_state = KEEL_NONE;
  sm->fn = NULL;
  return KEEL_ATOM(OK);
}

/* sys:replace_state: fn(h, {State, Data}, arg) gives the new pair. */
static keel_term replace_state(keel_gen_statem *sm, keel_term req) {
  keel__gs_fn fn;
  const void *arg;
  if (!keel__gs_ptr_get(keel_tuple_get(req, 1), &keel__gsm_tag_replace_state,
                        &fn, &arg))
    return error_term(sm, KEEL_EBADARG);
  keel_heap *h = keel_gsm_heap(sm);
  keel_term sd = keel_tuple(h, 2, sm->state, sm->data);
  if (sd == KEEL_NONE)
    return error_term(sm, KEEL_ENOMEM);
  keel_term n = ((keel_gs_state_fn)fn)(h, sd, (void *)(uintptr_t)arg);
  if (n == KEEL_NONE)
    return KEEL_ATOM(OK);
  if (!keel_is_tuple(n) || keel_tuple_arity(n) != 2)
    return error_term(sm, KEEL_EINVAL);
  sm->state = keel_tuple_get(n, 0);
  sm->data = keel_tuple_get(n, 1);
  return KEEL_ATOM(OK);
}

static keel_handler_status dispatch(keel_gen_statem *sm, keel_term msg);

/* Handles the messages held while suspended, oldest first. The list being
 * handled is a compaction root (sm->replay). */
static keel_handler_status resume(keel_gen_statem *sm) {
  sm->suspended = false;
  keel_term rev = KEEL_NIL;
  for (keel_term l = sm->deferred; keel_is_cons(l); l = keel_tl(l))
    rev = keel_cons(keel_gsm_heap(sm), keel_hd(l), rev);
  if (rev == KEEL_NONE)
    return keel__gsm_terminate(sm, KEEL_ATOM(SYSTEM_LIMIT));
  sm->deferred = KEEL_NIL;
  sm->replay = rev;
  while (keel_is_cons(sm->replay)) {
    keel_term m = keel_hd(sm->replay);
    sm->replay = keel_tl(sm->replay);
    if (dispatch(sm, m) == KEEL_EXIT)
      return KEEL_EXIT;
  }
  return KEEL_CONTINUE;
}

static bool is_req(keel_term req, const char *tag, size_t arity) {
  return tagged(req, keel_atom(tag), arity);
}

static keel_handler_status sys_request(keel_gen_statem *sm, keel_term from,
                                       keel_term req) {
  keel_term r = KEEL_ATOM(OK);
  bool resumed = false;
  if (req == keel_atom("get_state")) {
    r = keel_tuple(keel_gsm_heap(sm), 2, sm->state, sm->data);
  } else if (req == keel_atom("get_status")) {
    r = keel__gsm_status(sm);
  } else if (req == keel_atom("suspend")) {
    sm->suspended = true;
  } else if (req == keel_atom("resume")) {
    resumed = sm->suspended;
  } else if (is_req(req, "trace", 2)) {
    sm->trace = keel_tuple_get(req, 1) == KEEL_ATOM(TRUE);
  } else if (is_req(req, "statistics", 2)) {
    r = keel__sysdbg_statistics(&sm->dbg, sm->self, keel_gsm_heap(sm),
                                keel_tuple_get(req, 1));
  } else if (is_req(req, "log", 2)) {
    r = keel__sysdbg_log(&sm->dbg, keel_gsm_heap(sm), keel_tuple_get(req, 1));
  } else if (is_req(req, "replace_state", 3)) {
    r = replace_state(sm, req);
  } else if (tagged(req, keel_atom("terminate"), 2)) {
    sm->last = KEEL_NONE;
    return keel__gsm_terminate(sm, keel_tuple_get(req, 1));
  } else if (tagged(req, keel_atom("change_code"), 3)) {
    r = change_code(sm, req);
  } else {
    r = keel_tuple(keel_gsm_heap(sm), 2, KEEL_ATOM(ERROR),
                   keel_atom("unknown_system_msg"));
  }
  (void)keel_gen_server_reply(from, r != KEEL_NONE ? r : KEEL_ATOM(ERROR));
  return resumed ? resume(sm) : KEEL_CONTINUE;
}

/* ---- dispatch ------------------------------------------------------------ */

static keel_handler_status dispatch(keel_gen_statem *sm, keel_term msg) {
  const gsm_atoms *a = keel__gsm_atoms();
  keel_heap *h = keel_gsm_heap(sm);
  if (tagged(msg, keel__gs_atom_system(), 3))
    return sys_request(sm, keel_tuple_get(msg, 1), keel_tuple_get(msg, 2));
  if (tagged(msg, KEEL_ATOM(EXIT), 3) && sm->parent != KEEL_NONE &&
      keel_tuple_get(msg, 1) == sm->parent) {
    sm->last = msg;
    return keel__gsm_terminate(sm, keel_tuple_get(msg, 2));
  }
  if (sm->suspended) { /* held, timer messages too, until resume */
    keel_term c = keel_term_copy(h, msg);
    keel_term l = c == KEEL_NONE ? KEEL_NONE : keel_cons(h, c, sm->deferred);
    if (l == KEEL_NONE)
      return keel__gsm_terminate(sm, KEEL_ATOM(SYSTEM_LIMIT));
    sm->deferred = l;
    return KEEL_CONTINUE;
  }
  sm->dbg.in++;
  if (sm->dbg.log_max != 0) {
    bool call = tagged(msg, KEEL_ATOM(CALL), 3);
    keel__sysdbg_event(&sm->dbg, h, "in", call ? keel_tuple_get(msg, 2) : msg,
                       call ? keel_tuple_get(msg, 1) : KEEL_NONE);
  }
  if (tagged(msg, a->gen_timeout, 2)) {
    int64_t gen = 0;
    keel_term type, content;
    if (keel_get_int64(keel_tuple_get(msg, 1), &gen) == KEEL_OK &&
        keel__gsm_take_timer(sm, (uint64_t)gen, &type, &content))
      return keel__gsm_event(sm, type, content);
    return KEEL_CONTINUE; /* a cancelled timer's message */
  }
  if (tagged(msg, KEEL_ATOM(CALL), 3)) {
    keel_term type = keel_tuple(h, 2, a->call, keel_tuple_get(msg, 1));
    if (type == KEEL_NONE)
      return keel__gsm_terminate(sm, KEEL_ATOM(SYSTEM_LIMIT));
    return keel__gsm_event(sm, type, keel_tuple_get(msg, 2));
  }
  if (tagged(msg, KEEL_ATOM(CAST), 2))
    return keel__gsm_event(sm, a->cast, keel_tuple_get(msg, 1));
  return keel__gsm_event(sm, a->info, msg);
}

/* Arms the hibernate_after wait. */
static void arm_wait(keel_gen_statem *sm) {
  int64_t wait = -1;
  sm->hib_timer = false;
  if (!sm->hibernate && sm->hibernate_after > 0) {
    wait = sm->hibernate_after;
    sm->hib_timer = true;
  }
  if (sm->fiber)
    sm->next_wait = wait < 0 ? KEEL_INFINITY : wait;
  else
    (void)keel_proc_set_timeout(sm->self, wait);
}

static keel_handler_status handle(keel_gen_statem *sm, keel_term msg,
                                  bool timed_out) {
  keel_handler_status st;
  if (!sm->started) {
    if (!tagged(msg, keel__gs_atom_init(), 3))
      return KEEL_CONTINUE; /* cannot happen: init is the first message */
    st = do_init(sm, msg);
  } else if (timed_out) { /* hibernate_after */
    if (!sm->hib_timer)
      return KEEL_CONTINUE;
    keel__gsm_compact(sm);
    sm->hib_timer = false;
    sm->hibernate = sm->fiber;
    return KEEL_CONTINUE;
  } else {
    sm->hibernate = false;
    st = dispatch(sm, msg);
  }
  if (st == KEEL_CONTINUE)
    arm_wait(sm);
  return st;
}

keel_handler_status keel__gsm_handler(keel_proc *self, keel_term msg,
                                      void *state) {
  keel_gen_statem *sm = state;
  sm->self = self;
  bool tmo = keel_proc_timed_out(self);
  keel_term m = tmo ? msg : keel_term_copy(keel_proc_heap(self), msg);
  return handle(sm, m != KEEL_NONE ? m : msg, tmo);
}

static bool is_init(keel_term msg, void *arg) {
  (void)arg;
  return tagged(msg, keel__gs_atom_init(), 3);
}

static void fiber_loop(keel_proc *self, keel_gen_statem *sm) {
  keel_term msg;
  for (;;) {
    /* Hibernation: the transition compacted the heap; the fiber also
     * gives up its stack and resumes in keel__gsm_fiber_main. */
    if (sm->hibernate) {
      sm->hibernate = false;
      if (!sm->keep_stack)
        (void)keel_fiber_hibernate(self, keel__gsm_fiber_main, sm);
    }
    int rc = keel_receive(self, NULL, NULL, sm->next_wait, &msg);
    bool timed_out = rc == KEEL_ETIMEDOUT;
    if (rc != KEEL_OK && !timed_out)
      return;
    sm->next_wait = KEEL_INFINITY;
    keel_term m = timed_out ? KEEL_ATOM(TIMEOUT)
                            : keel_term_copy(keel_proc_heap(self), msg);
    if (m == KEEL_NONE || handle(sm, m, timed_out) == KEEL_EXIT)
      return;
  }
}

void keel__gsm_fiber_main(keel_proc *self, void *arg) {
  keel_gen_statem *sm = arg;
  sm->self = self;
  keel_term msg;
  if (!sm->started) {
    if (keel_receive(self, is_init, NULL, KEEL_INFINITY, &msg) != KEEL_OK)
      return;
    /* Own it: init's terms may be kept past the next receive. */
    keel_term m = keel_term_copy(keel_proc_heap(self), msg);
    if (m == KEEL_NONE || handle(sm, m, false) == KEEL_EXIT)
      return;
  }
  fiber_loop(self, sm);
}

static bool bad_module(const keel_gen_statem_module *mod);

int keel_gen_statem_enter_loop(keel_proc *self,
                               const keel_gen_statem_module *mod,
                               keel_term state, keel_term data,
                               const keel_gen_statem_opts *opts) {
  return keel_gen_statem_enter_actions(self, mod, state, data, opts, NULL,
                                       NULL);
}

int keel_gen_statem_enter_actions(keel_proc *self,
                                  const keel_gen_statem_module *mod,
                                  keel_term state, keel_term data,
                                  const keel_gen_statem_opts *opts,
                                  keel_gsm_actions_fn actions, void *arg) {
  if (self == NULL || self != keel_current() || !keel_proc_is_fiber(self))
    return KEEL_ESTATE;
  if (bad_module(mod) || state == KEEL_NONE || data == KEEL_NONE ||
      (opts != NULL && opts->hibernate_after_ms < 0))
    return KEEL_EINVAL;
  keel_term name = opts != NULL ? opts->name : KEEL_NONE;
  if (name != KEEL_NONE &&
      (!keel_is_atom(name) || keel_whereis(name) != keel_self(self)))
    return KEEL_ENOENT; /* OTP's process_not_registered */
  keel_gen_statem sm = {.mod = mod,
                        .self = self,
                        .parent = KEEL_NONE,
                        .name = name,
                        .last = KEEL_NONE,
                        .fiber = true,
                        .started = true,
                        .keep_stack = true,
                        .queue = KEEL_NIL,
                        .postponed = KEEL_NIL,
                        .deferred = KEEL_NIL,
                        .dbg = {.log = KEEL_NIL},
                        .replay = KEEL_NIL,
                        .fn_state = KEEL_NONE,
                        .next_wait = KEEL_INFINITY};
  if (opts != NULL) {
    sm.hibernate_after = opts->hibernate_after_ms;
    if (opts->trap_exit)
      (void)keel_trap_exit(self, true);
  }
  keel_heap *h = keel_proc_heap(self);
  sm.state = keel_term_copy(h, state);
  sm.data = sm.state == KEEL_NONE ? KEEL_NONE : keel_term_copy(h, data);
  int rc = KEEL_ENOMEM;
  if (sm.data != KEEL_NONE) {
    rc = KEEL_OK;
    sm.next = KEEL_NONE;
    sm.reason = KEEL_ATOM(NORMAL);
    if (actions != NULL)
      actions(&sm, arg);
    if (keel__gsm_initial(&sm) == KEEL_CONTINUE) {
      arm_wait(&sm);
      fiber_loop(self, &sm);
    }
  }
  free(sm.timers);
  free(sm.acts);
  return rc;
}

void keel__gsm_free(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  keel_gen_statem *sm = state;
  free(sm->timers);
  free(sm->acts);
  free(sm);
}

/* ---- start --------------------------------------------------------------- */

static int spawn_sm(const void *mod, const keel_gen_server_opts *o, bool link,
                    keel_term parent, keel_term *pid) {
  keel_gen_statem *sm = calloc(1, sizeof *sm);
  if (sm == NULL)
    return KEEL_ENOMEM;
  sm->mod = mod;
  sm->name = o->name;
  sm->hibernate_after = o->hibernate_after_ms;
  sm->fiber = o->fiber;
  sm->trap_exit = o->trap_exit;
  sm->parent = parent;
  sm->last = KEEL_NONE;
  sm->next_wait = KEEL_INFINITY;
  keel__sysdbg_init(&sm->dbg);
  keel_spawn_opts so = {.terminate = keel__gsm_free,
                        .link = link,
                        .stack_size = o->stack_size,
                        .monitor_ref = o->monitor_ref,
                        .monitor_heap = o->monitor_heap};
  int rc = sm->fiber ? keel_spawn_fiber(keel__gsm_fiber_main, sm, &so, pid)
                     : keel_spawn(keel__gsm_handler, sm, &so, pid);
  if (rc != KEEL_OK)
    free(sm);
  return rc;
}

static bool bad_timeout(int64_t tmo) {
  return tmo < KEEL_INFINITY || (tmo > 0 && (uint64_t)tmo > KEEL_TIMER_MAX_MS);
}

static bool bad_module(const keel_gen_statem_module *mod) {
  return mod == NULL || mod->init == NULL ||
         mod->version != KEEL_GEN_STATEM_MODULE_V1 ||
         (mod->mode == KEEL_GSM_STATE_FUNCTIONS && mod->states == NULL) ||
         (mod->mode == KEEL_GSM_HANDLE_EVENT_FUNCTION &&
          mod->handle_event == NULL) ||
         (mod->mode != KEEL_GSM_STATE_FUNCTIONS &&
          mod->mode != KEEL_GSM_HANDLE_EVENT_FUNCTION);
}

int keel_gen_statem_start(const keel_gen_statem_module *mod, keel_term arg,
                          const keel_gen_statem_opts *opts, keel_term *pid) {
  static const keel_gen_statem_opts none = {0};
  const keel_gen_statem_opts *o = opts != NULL ? opts : &none;
  if (bad_module(mod) || arg == KEEL_NONE ||
      (o->name != KEEL_NONE &&
       (!keel_is_atom(o->name) || o->name == KEEL_ATOM(UNDEFINED))) ||
      bad_timeout(o->timeout_ms) || o->hibernate_after_ms < 0)
    return KEEL_EINVAL;
  return keel__gs_start(spawn_sm, mod, arg, o, pid);
}

/* ---- client API: gen_server's protocol ---------------------------------- */

int keel_gen_statem_call(keel_term server, keel_term request,
                         int64_t timeout_ms, keel_heap *h, keel_term *reply) {
  return keel_gen_server_call(server, request, timeout_ms, h, reply);
}

int keel_gen_statem_cast(keel_term server, keel_term msg) {
  return keel_gen_server_cast(server, msg);
}

int keel_gen_statem_reply(keel_term from, keel_term reply) {
  return keel_gen_server_reply(from, reply);
}

int keel_gen_statem_stop(keel_term server, keel_term reason,
                         int64_t timeout_ms) {
  return keel_gen_server_stop(server, reason, timeout_ms);
}

int keel_gen_statem_send_request(keel_term server, keel_term request,
                                 keel_heap *h, keel_term *req_id) {
  return keel_gen_server_send_request(server, request, h, req_id);
}

int keel_gen_statem_receive_response(keel_term req_id, int64_t timeout_ms,
                                     keel_heap *h, keel_term *reply) {
  return keel_gen_server_receive_response(req_id, timeout_ms, h, reply);
}

int keel_gen_statem_check_response(keel_term msg, keel_term req_id,
                                   keel_heap *h, keel_term *reply) {
  return keel_gen_server_check_response(msg, req_id, h, reply);
}

int keel_gen_statem_get_state(keel_term server, int64_t timeout_ms,
                              keel_heap *h, keel_term *state) {
  return keel__gs_call(keel__gs_atom_system(), server, keel_atom("get_state"),
                       timeout_ms, h, state);
}

int keel_gen_statem_get_status(keel_term server, int64_t timeout_ms,
                               keel_heap *h, keel_term *status) {
  return keel__gs_call(keel__gs_atom_system(), server, keel_atom("get_status"),
                       timeout_ms, h, status);
}

int keel_gen_statem_change_code(keel_term server,
                                const keel_gen_statem_module *new_mod,
                                keel_term extra, int64_t timeout_ms) {
  if (bad_module(new_mod) || extra == KEEL_NONE)
    return KEEL_EINVAL;
  return keel__gs_sys_ptr(server, "change_code", &keel__gsm_tag_change_code,
                          NULL, new_mod, extra, timeout_ms);
}

int keel_gen_statem_replace_state(keel_term server, keel_gs_state_fn fn,
                                  void *arg, int64_t timeout_ms) {
  if (fn == NULL)
    return KEEL_EINVAL;
  return keel__gs_sys_ptr(server, "replace_state", &keel__gsm_tag_replace_state,
                          (keel__gs_fn)fn, arg, KEEL_NIL, timeout_ms);
}

int keel_gen_statem_suspend(keel_term server, int64_t timeout_ms) {
  return keel_gen_server_suspend(server, timeout_ms);
}

int keel_gen_statem_resume(keel_term server, int64_t timeout_ms) {
  return keel_gen_server_resume(server, timeout_ms);
}

int keel_gen_statem_trace(keel_term server, bool on, int64_t timeout_ms) {
  return keel_gen_server_trace(server, on, timeout_ms);
}

int keel_gen_statem_statistics(keel_term server, bool on, int64_t timeout_ms) {
  return keel_gen_server_statistics(server, on, timeout_ms);
}

int keel_gen_statem_get_statistics(keel_term server, int64_t timeout_ms,
                                   keel_heap *h, keel_term *out) {
  return keel_gen_server_get_statistics(server, timeout_ms, h, out);
}

int keel_gen_statem_log(keel_term server, unsigned max, int64_t timeout_ms) {
  return keel_gen_server_log(server, max, timeout_ms);
}

int keel_gen_statem_get_log(keel_term server, int64_t timeout_ms, keel_heap *h,
                            keel_term *out) {
  return keel_gen_server_get_log(server, timeout_ms, h, out);
}
