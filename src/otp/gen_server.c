/*
 * gen_server.c - the server's side of gen_server: init and its
 * acknowledgement, dispatch of calls, casts, system requests and other
 * messages to the module's callbacks, the callbacks' results (reply,
 * continue, idle timeout, hibernation, stop), suspension, crash reports
 * and code change. One dispatch serves handler and fiber servers.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "keel/gen_server.h"
#include "keel/registry.h"
#include "keel/signals.h"
#include "keel/telemetry.h"
#include "otp/gen_server_internal.h"

/* Smallest heap (words) that triggers an automatic compaction. */
#define GS_COMPACT_MIN 4096u

/* ---- callback helpers ---------------------------------------------------- */

keel_gs_ret keel_gs_ok(keel_gen_server *gs) {
  (void)gs;
  return KEEL_GS_NOREPLY;
}

keel_gs_ret keel_gs_reply(keel_gen_server *gs, keel_term reply) {
  gs->reply = reply;
  gs->has_reply = true;
  return KEEL_GS_REPLY;
}

keel_gs_ret keel_gs_stop(keel_gen_server *gs, keel_term reason) {
  gs->reason = reason;
  return KEEL_GS_STOP;
}

keel_gs_ret keel_gs_stop_reply(keel_gen_server *gs, keel_term reason,
                               keel_term reply) {
  gs->reply = reply;
  gs->has_reply = true;
  return keel_gs_stop(gs, reason);
}

keel_gs_ret keel_gs_ignore(keel_gen_server *gs) {
  (void)gs;
  return KEEL_GS_IGNORE;
}

keel_gs_ret keel_gs_init_error(keel_gen_server *gs, keel_term reason) {
  gs->reason = reason != KEEL_NONE ? reason : KEEL_ATOM(NORMAL);
  return KEEL_GS_ERROR;
}

void keel_gs_timeout(keel_gen_server *gs, int64_t ms) {
  gs->timeout = ms < 0 ? -1 : ms;
  gs->hibernate = false;
  gs->cont = KEEL_NONE;
}

void keel_gs_hibernate(keel_gen_server *gs) {
  gs->hibernate = true;
  gs->timeout = -1;
  gs->cont = KEEL_NONE;
}

void keel_gs_continue(keel_gen_server *gs, keel_term cont) {
  gs->cont = cont;
  gs->timeout = -1;
  gs->hibernate = false;
}

keel_proc *keel_gs_proc(keel_gen_server *gs) {
  return gs->self;
}
keel_heap *keel_gs_heap(keel_gen_server *gs) {
  return keel_proc_heap(gs->self);
}
keel_term keel_gs_self(const keel_gen_server *gs) {
  return keel_self(gs->self);
}
bool keel_gs_timed_out(const keel_gen_server *gs) {
  return gs->timed_out;
}

static void reset_result(keel_gen_server *gs) {
  gs->has_reply = false;
  gs->hibernate = false;
  gs->timeout = -1;
  gs->cont = KEEL_NONE;
  gs->reason = KEEL_ATOM(NORMAL);
}

/* ---- telemetry ----------------------------------------------------------- */

static _Atomic(keel_tel_event *) ev_crash, ev_trace, ev_unexpected;

static keel_tel_event *event(_Atomic(keel_tel_event *) *slot,
                             const char *last) {
  keel_tel_event *e = atomic_load_explicit(slot, memory_order_acquire);
  if (e == NULL) {
    keel_term a[3] = {keel_atom("keel"), keel_atom("gen_server"),
                      keel_atom(last)};
    if (keel_tel_event_get(a, 3, &e) != KEEL_OK)
      return NULL;
    atomic_store_explicit(slot, e, memory_order_release);
  }
  return e;
}

static keel_term status_of(keel_gen_server *gs) {
  if (gs->mod->format_status == NULL)
    return gs->state;
  keel_term s = gs->mod->format_status(gs, gs->state);
  return s != KEEL_NONE ? s : gs->state;
}

static keel_term module_name(const keel_gen_server *gs) {
  keel_term a =
      gs->mod->name != NULL ? keel_atom(gs->mod->name) : KEEL_ATOM(UNDEFINED);
  return a != KEEL_NONE ? a : KEEL_ATOM(UNDEFINED);
}

static bool is_clean_exit(keel_term r) {
  return r == KEEL_ATOM(NORMAL) || r == KEEL_ATOM(SHUTDOWN) ||
         (keel_is_tuple(r) && keel_tuple_arity(r) == 2 &&
          keel_tuple_get(r, 0) == KEEL_ATOM(SHUTDOWN));
}

static void crash_report(keel_gen_server *gs, keel_term reason,
                         keel_term last) {
  keel_tel_meta md[6] = {{keel_atom("pid"), keel_gs_self(gs)},
                         {keel_atom("name"), gs->name != KEEL_NONE
                                                 ? gs->name
                                                 : KEEL_ATOM(UNDEFINED)},
                         {keel_atom("module"), module_name(gs)},
                         {keel_atom("last_message"),
                          last != KEEL_NONE ? last : KEEL_ATOM(UNDEFINED)},
                         {keel_atom("state"), status_of(gs)},
                         {keel_atom("reason"), reason}};
  keel_tel_measure m = {keel_atom("count"), 1.0};
  keel_tel_execute(event(&ev_crash, "crash"), &m, 1, md, 6);
}

/* A message a server without handle_info dropped (Elixir logs these). */
static void unexpected(keel_gen_server *gs, keel_term msg) {
  keel_tel_meta md[3] = {{keel_atom("pid"), keel_gs_self(gs)},
                         {keel_atom("module"), module_name(gs)},
                         {keel_atom("message"), msg}};
  keel_tel_execute(event(&ev_unexpected, "unexpected_message"), NULL, 0, md, 3);
}

static void trace(keel_gen_server *gs, keel_term msg) {
  keel_tel_meta md[2] = {{keel_atom("pid"), keel_gs_self(gs)},
                         {keel_atom("message"), msg}};
  keel_tel_execute(event(&ev_trace, "trace"), NULL, 0, md, 2);
}

/* ---- ending -------------------------------------------------------------- */

/* terminate(Reason), the crash report, then the exit. */
static keel_handler_status terminate(keel_gen_server *gs, keel_term reason,
                                     keel_term last) {
  if (gs->mod->terminate != NULL)
    gs->mod->terminate(gs, reason, gs->state);
  if (!is_clean_exit(reason))
    crash_report(gs, reason, last);
  return keel_stop(gs->self, reason);
}

static void send_reply(keel_term from, keel_term reply) {
  (void)keel_gen_server_reply(from, reply);
}

/* ---- after a callback ---------------------------------------------------- */

/* Compacts the heap with the state and the held messages as roots. */
static void compact(keel_gen_server *gs) {
  if (gs->replaying) /* the list being replayed lives in the heap too */
    return;
  keel_term roots[3] = {gs->state, gs->deferred, gs->dbg.log};
  if (keel_proc_compact(gs->self, roots, 3) == KEEL_OK) {
    gs->state = roots[0];
    gs->deferred = roots[1];
    gs->dbg.log = roots[2];
  }
  size_t used = keel_heap_used_words(keel_proc_heap(gs->self));
  gs->compact_at = used * 2 > GS_COMPACT_MIN ? used * 2 : GS_COMPACT_MIN;
}

/* Arms what the callback asked for once the message is done: the idle
 * timeout, hibernation or the automatic hibernation timer. */
static void arm_wait(keel_gen_server *gs) {
  int64_t wait = gs->timeout;
  gs->hib_timer = false;
  if (gs->hibernate) {
    compact(gs);
  } else if (wait < 0 && gs->hibernate_after > 0) {
    wait = gs->hibernate_after;
    gs->hib_timer = true;
  }
  if (keel_heap_used_words(keel_proc_heap(gs->self)) > gs->compact_at)
    compact(gs);
  if (gs->fiber)
    gs->next_wait = wait < 0 ? KEEL_INFINITY : wait;
  else
    (void)keel_proc_set_timeout(gs->self, wait);
}

/* Handles what a callback returned for msg (from: its caller or
 * KEEL_NONE), then runs handle_continue for as long as asked. */
static keel_handler_status after(keel_gen_server *gs, keel_gs_ret ret,
                                 keel_term msg, keel_term from) {
  for (;;) {
    if (ret == KEEL_GS_REPLY || (ret == KEEL_GS_STOP && gs->has_reply)) {
      if (from != KEEL_NONE) {
        send_reply(from, gs->reply);
        gs->dbg.out++;
        keel__sysdbg_event(&gs->dbg, keel_gs_heap(gs), "out", gs->reply, from);
      }
    } else if (ret == KEEL_GS_NOREPLY) {
      keel__sysdbg_event(&gs->dbg, keel_gs_heap(gs), "noreply", gs->state,
                         KEEL_NONE);
    } else if (ret != KEEL_GS_NOREPLY && ret != KEEL_GS_STOP) {
      gs->reason =
          keel_tuple(keel_gs_heap(gs), 2, keel_atom("bad_return_value"),
                     keel_small((int64_t)ret));
      ret = KEEL_GS_STOP;
      if (gs->reason == KEEL_NONE)
        gs->reason = keel_atom("bad_return_value");
    }
    if (ret == KEEL_GS_STOP)
      return terminate(gs, gs->reason, msg);
    if (gs->cont == KEEL_NONE || gs->mod->handle_continue == NULL)
      break;
    keel_term c = gs->cont;
    reset_result(gs);
    from = KEEL_NONE;
    msg = c;
    ret = gs->mod->handle_continue(gs, c, &gs->state);
  }
  arm_wait(gs);
  return KEEL_CONTINUE;
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

static keel_handler_status do_init(keel_gen_server *gs, keel_term msg) {
  keel_term to = keel_tuple_get(msg, 1);
  keel_heap *h = keel_gs_heap(gs);
  gs->started = true;
  gs->state = KEEL_ATOM(UNDEFINED);
  gs->deferred = KEEL_NIL;
  keel__sysdbg_init(&gs->dbg);
  gs->compact_at = GS_COMPACT_MIN;
  if (gs->name != KEEL_NONE &&
      keel_name_register(gs->name, keel_gs_self(gs)) != KEEL_OK) {
    keel_term owner = keel_name_whereis(gs->name);
    keel_term as = keel_tuple(h, 2, keel_atom("already_started"), owner);
    gs->name = KEEL_NONE;
    ack(to, keel_tuple(h, 2, KEEL_ATOM(ERROR), as));
    return keel_stop(gs->self, KEEL_ATOM(NORMAL));
  }
  if (gs->trap_exit)
    (void)keel_trap_exit(gs->self, true);
  reset_result(gs);
  keel_gs_ret ret = gs->mod->init(gs, keel_tuple_get(msg, 2), &gs->state);
  if (ret == KEEL_GS_NOREPLY) {
    ack(to, KEEL_ATOM(OK));
    return after(gs, ret, KEEL_NONE, KEEL_NONE);
  }
  keel_term reason = ret == KEEL_GS_IGNORE ? KEEL_ATOM(NORMAL)
                     : ret == KEEL_GS_STOP || ret == KEEL_GS_ERROR
                         ? gs->reason
                         : keel_atom("bad_return_value");
  /* The name goes before the starter hears of the failure. */
  if (gs->name != KEEL_NONE)
    (void)keel_name_unregister(gs->name);
  ack(to, ret == KEEL_GS_IGNORE ? KEEL_ATOM(IGNORE)
                                : keel_tuple(h, 2, KEEL_ATOM(STOP), reason));
  /* {error, R}: the start fails with R, the process ends normally. */
  return keel_stop(gs->self, ret == KEEL_GS_ERROR ? KEEL_ATOM(NORMAL) : reason);
}

/* ---- system requests ----------------------------------------------------- */

static keel_handler_status dispatch(keel_gen_server *gs, keel_term msg);

static keel_term error_term(keel_gen_server *gs, int code) {
  keel_term r =
      keel_tuple(keel_gs_heap(gs), 2, KEEL_ATOM(ERROR), keel_small(code));
  return r != KEEL_NONE ? r : KEEL_ATOM(ERROR);
}

static keel_term change_code(keel_gen_server *gs, keel_term req) {
  keel__gs_fn unused;
  const void *p;
  if (!keel__gs_ptr_get(keel_tuple_get(req, 1), &keel__gs_tag_change_code,
                        &unused, &p))
    return error_term(gs, KEEL_EBADARG);
  const keel_gen_server_module *nm = p;
  int rc = KEEL_OK;
  if (nm->code_change != NULL)
    rc = nm->code_change(gs, gs->mod, keel_tuple_get(req, 2), &gs->state);
  if (rc != KEEL_OK)
    return error_term(gs, rc < 0 ? rc : KEEL_EINVAL);
  gs->mod = nm;
  return KEEL_ATOM(OK);
}

static keel_term replace_state(keel_gen_server *gs, keel_term req) {
  keel__gs_fn fn;
  const void *arg;
  if (!keel__gs_ptr_get(keel_tuple_get(req, 1), &keel__gs_tag_replace_state,
                        &fn, &arg))
    return error_term(gs, KEEL_EBADARG);
  keel_term s = ((keel_gs_state_fn)fn)(keel_gs_heap(gs), gs->state,
                                       (void *)(uintptr_t)arg);
  if (s != KEEL_NONE)
    gs->state = s;
  return KEEL_ATOM(OK);
}

/* Handles the messages held while suspended, oldest first. */
static keel_handler_status resume(keel_gen_server *gs) {
  gs->suspended = false;
  keel_term rev = KEEL_NIL;
  for (keel_term l = gs->deferred; keel_is_cons(l); l = keel_tl(l))
    rev = keel_cons(keel_gs_heap(gs), keel_hd(l), rev);
  gs->deferred = KEEL_NIL;
  keel_handler_status st = KEEL_CONTINUE;
  gs->replaying = true;
  for (; keel_is_cons(rev) && st == KEEL_CONTINUE; rev = keel_tl(rev))
    st = dispatch(gs, keel_hd(rev));
  gs->replaying = false;
  if (st == KEEL_CONTINUE &&
      keel_heap_used_words(keel_proc_heap(gs->self)) > gs->compact_at)
    compact(gs);
  return st;
}

static keel_handler_status sys_request(keel_gen_server *gs, keel_term from,
                                       keel_term req) {
  keel_term r = KEEL_ATOM(OK);
  bool resumed = false;
  if (req == keel_atom("get_state")) {
    r = gs->state;
  } else if (req == keel_atom("get_status")) {
    r = status_of(gs);
  } else if (req == keel_atom("suspend")) {
    gs->suspended = true;
  } else if (req == keel_atom("resume")) {
    resumed = gs->suspended;
  } else if (keel_is_tuple(req) && keel_tuple_arity(req) == 2 &&
             keel_tuple_get(req, 0) == keel_atom("terminate")) {
    return terminate(gs, keel_tuple_get(req, 1), KEEL_NONE);
  } else if (keel_is_tuple(req) && keel_tuple_arity(req) == 2 &&
             keel_tuple_get(req, 0) == keel_atom("trace")) {
    gs->trace = keel_tuple_get(req, 1) == KEEL_ATOM(TRUE);
  } else if (keel_is_tuple(req) && keel_tuple_arity(req) == 2 &&
             keel_tuple_get(req, 0) == keel_atom("statistics")) {
    r = keel__sysdbg_statistics(&gs->dbg, gs->self, keel_gs_heap(gs),
                                keel_tuple_get(req, 1));
  } else if (keel_is_tuple(req) && keel_tuple_arity(req) == 2 &&
             keel_tuple_get(req, 0) == keel_atom("log")) {
    r = keel__sysdbg_log(&gs->dbg, keel_gs_heap(gs), keel_tuple_get(req, 1));
  } else if (keel_is_tuple(req) && keel_tuple_arity(req) == 3 &&
             keel_tuple_get(req, 0) == keel_atom("replace_state")) {
    r = replace_state(gs, req);
  } else if (keel_is_tuple(req) && keel_tuple_arity(req) == 3 &&
             keel_tuple_get(req, 0) == keel_atom("change_code")) {
    r = change_code(gs, req);
  } else {
    r = keel_tuple(keel_gs_heap(gs), 2, KEEL_ATOM(ERROR),
                   keel_atom("unknown_system_msg"));
  }
  send_reply(from, r != KEEL_NONE ? r : KEEL_ATOM(ERROR));
  return resumed ? resume(gs) : KEEL_CONTINUE;
}

/* ---- dispatch ------------------------------------------------------------ */

static bool tagged(keel_term msg, keel_term tag, size_t arity) {
  return keel_is_tuple(msg) && keel_tuple_arity(msg) == arity &&
         keel_tuple_get(msg, 0) == tag;
}

static keel_gs_ret bad_call(keel_gen_server *gs, keel_term req) {
  keel_term r = keel_tuple(keel_gs_heap(gs), 2, keel_atom("bad_call"), req);
  return keel_gs_stop(gs, r != KEEL_NONE ? r : keel_atom("bad_call"));
}

static keel_handler_status dispatch(keel_gen_server *gs, keel_term msg) {
  const keel_gen_server_module *m = gs->mod;
  if (tagged(msg, keel__gs_atom_system(), 3))
    return sys_request(gs, keel_tuple_get(msg, 1), keel_tuple_get(msg, 2));
  if (tagged(msg, KEEL_ATOM(EXIT), 3) && gs->parent != KEEL_NONE &&
      keel_tuple_get(msg, 1) == gs->parent)
    return terminate(gs, keel_tuple_get(msg, 2), msg);
  if (gs->suspended) {
    keel_heap *h = keel_gs_heap(gs);
    keel_term c = keel_term_copy(h, msg);
    if (c != KEEL_NONE)
      gs->deferred = keel_cons(h, c, gs->deferred);
    return KEEL_CONTINUE;
  }
  if (gs->trace)
    trace(gs, msg);
  gs->dbg.in++;
  if (gs->dbg.log_max != 0) {
    bool call = tagged(msg, KEEL_ATOM(CALL), 3);
    keel__sysdbg_event(&gs->dbg, keel_gs_heap(gs), "in",
                       call ? keel_tuple_get(msg, 2) : msg,
                       call ? keel_tuple_get(msg, 1) : KEEL_NONE);
  }
  reset_result(gs);
  keel_gs_ret ret = KEEL_GS_NOREPLY;
  keel_term from = KEEL_NONE;
  if (tagged(msg, KEEL_ATOM(CALL), 3)) {
    from = keel_tuple_get(msg, 1);
    keel_term req = keel_tuple_get(msg, 2);
    ret = m->handle_call != NULL ? m->handle_call(gs, req, from, &gs->state)
                                 : bad_call(gs, req);
  } else if (tagged(msg, KEEL_ATOM(CAST), 2)) {
    if (m->handle_cast != NULL)
      ret = m->handle_cast(gs, keel_tuple_get(msg, 1), &gs->state);
  } else if (m->handle_info != NULL) {
    ret = m->handle_info(gs, msg, &gs->state);
  } else {
    unexpected(gs, msg);
  }
  return after(gs, ret, msg, from);
}

/* One message (or idle timeout) of a started or starting server. */
static keel_handler_status handle(keel_gen_server *gs, keel_term msg,
                                  bool timed_out) {
  if (!gs->started) {
    if (tagged(msg, keel__gs_atom_init(), 3))
      return do_init(gs, msg);
    return KEEL_CONTINUE; /* cannot happen: init is the first message */
  }
  if (timed_out && gs->hib_timer) {
    gs->hib_timer = false;
    compact(gs);
    gs->hibernate = gs->fiber; /* a fiber also gives up its stack */
    return KEEL_CONTINUE;
  }
  gs->timed_out = timed_out;
  keel_handler_status st = dispatch(gs, msg);
  gs->timed_out = false;
  return st;
}

keel_handler_status keel__gs_handler(keel_proc *self, keel_term msg,
                                     void *state) {
  keel_gen_server *gs = state;
  gs->self = self;
  /* Own the message, as an Erlang process does: callbacks may keep any
   * part of it in the state. (Out of memory: the original, valid for the
   * callbacks' duration.) */
  keel_term m = keel_term_copy(keel_proc_heap(self), msg);
  return handle(gs, m != KEEL_NONE ? m : msg, keel_proc_timed_out(self));
}

static bool is_init(keel_term msg, void *arg) {
  (void)arg;
  return tagged(msg, keel__gs_atom_init(), 3);
}

void keel__gs_loop(keel_proc *self, keel_gen_server *gs) {
  keel_term msg;
  for (;;) {
    if (gs->hibernate && !gs->keep_stack) {
      gs->hibernate = false;
      (void)keel_fiber_hibernate(self, keel__gs_fiber_main, gs);
    }
    int rc = keel_receive(self, NULL, NULL, gs->next_wait, &msg);
    bool timed_out = rc == KEEL_ETIMEDOUT;
    if (rc != KEEL_OK && !timed_out)
      return;
    gs->next_wait = KEEL_INFINITY;
    /* Own the message: callbacks may keep parts of it, and may receive
     * again (a nested call), which frees the received one. */
    keel_term m = timed_out ? KEEL_ATOM(TIMEOUT)
                            : keel_term_copy(keel_proc_heap(self), msg);
    if (m == KEEL_NONE || handle(gs, m, timed_out) == KEEL_EXIT)
      return;
  }
}

void keel__gs_fiber_main(keel_proc *self, void *arg) {
  keel_gen_server *gs = arg;
  gs->self = self;
  keel_term msg;
  if (gs->started) {
    keel__gs_loop(self, gs);
    return;
  }
  if (keel_receive(self, is_init, NULL, KEEL_INFINITY, &msg) != KEEL_OK)
    return;
  /* Own the init message: init may receive (e.g. start a supervisor),
   * which frees the received one, and the acknowledgement goes to its
   * reference afterwards. */
  msg = keel_term_copy(keel_proc_heap(self), msg);
  if (msg == KEEL_NONE || do_init(gs, msg) == KEEL_EXIT)
    return;
  keel__gs_loop(self, gs);
}

int keel_gen_server_enter_loop(keel_proc *self,
                               const keel_gen_server_module *mod,
                               keel_term state,
                               const keel_gen_server_opts *opts) {
  if (self == NULL || self != keel_current() || !keel_proc_is_fiber(self))
    return KEEL_ESTATE;
  if (mod == NULL || mod->version != KEEL_GEN_SERVER_MODULE_V1 ||
      state == KEEL_NONE || (opts != NULL && opts->hibernate_after_ms < 0))
    return KEEL_EINVAL;
  keel_gen_server gs = {.mod = mod,
                        .self = self,
                        .parent = KEEL_NONE,
                        .name = KEEL_NONE,
                        .fiber = true,
                        .started = true,
                        .keep_stack = true,
                        .deferred = KEEL_NIL,
                        .dbg = {.log = KEEL_NIL},
                        .compact_at = GS_COMPACT_MIN,
                        .timeout = -1,
                        .next_wait = KEEL_INFINITY};
  if (opts != NULL) {
    gs.hibernate_after = opts->hibernate_after_ms;
    if (opts->trap_exit)
      (void)keel_trap_exit(self, true);
  }
  gs.state = keel_term_copy(keel_proc_heap(self), state);
  if (gs.state == KEEL_NONE)
    return KEEL_ENOMEM;
  arm_wait(&gs);
  keel__gs_loop(self, &gs);
  return KEEL_OK;
}

void keel__gs_free(keel_proc *self, keel_term reason, void *state) {
  (void)self;
  (void)reason;
  keel_gen_server *gs = state;
  keel_heap_destroy(&gs->name_heap);
  free(gs);
}
