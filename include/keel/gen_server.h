/*
 * keel/gen_server.h - OTP's gen_server: a process holding a state term and
 * serving synchronous calls, asynchronous casts and other messages through
 * the callbacks of a module descriptor.
 *
 * A server is a handler process by default (tiny, no stack of its own), or
 * a fiber process (opts.fiber) whose callbacks may block, e.g. to call
 * another server. Its state is one term living in the process heap; the
 * callbacks receive a pointer to it and may replace it. Each message is
 * copied into that heap before dispatch, so callbacks may keep parts of
 * requests and messages in the state. Every term the server keeps must be
 * reachable from the state: the heap is compacted with the state as the
 * only root (hibernation, and automatically when it has doubled since the
 * last compaction), which invalidates every other term built in it.
 *
 * Protocol (as OTP's): calls are {'$gen_call', {Pid, Tag}, Request} and
 * are answered with {Tag, Reply} sent to Tag, an alias of a monitor the
 * caller holds (KEEL_MONITOR_ALIAS | KEEL_MONITOR_REPLY_DEMONITOR), so a
 * reply arriving after the caller gave up is dropped; casts are
 * {'$gen_cast', Msg}; system requests are {'$gen_system', From, Req}.
 *
 * Callers. Blocking functions (start, call, stop and the sys functions)
 * work from fiber processes (they wait in keel_receive) and from threads
 * that are not processes (a temporary proxy fiber does the work while the
 * thread waits on a condition variable; under the simulation of keel/sim.h
 * the driving thread drives the simulation while it waits). From a handler
 * process they return KEEL_ESTATE, except keel_gen_server_start, which then
 * returns at once without waiting for init; handlers use
 * keel_gen_server_send_request and keel_gen_server_check_response instead
 * of call.
 */
#ifndef KEEL_GEN_SERVER_H
#define KEEL_GEN_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/runtime.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A running server, as seen by its own callbacks. Valid only during a
 * callback, on the calling thread. */
typedef struct keel_gen_server keel_gen_server;

/* What a callback returns; build it with the keel_gs_* helpers below. */
typedef enum keel_gs_ret {
  KEEL_GS_NOREPLY = 0, /* init: {ok, S}; others: {noreply, S} */
  KEEL_GS_REPLY = 1,   /* handle_call: {reply, R, S} */
  KEEL_GS_STOP = 2,    /* {stop, Reason, S} or {stop, Reason, Reply, S} */
  KEEL_GS_IGNORE = 3,  /* init only: ignore */
  KEEL_GS_ERROR = 4    /* init only: {error, Reason} */
} keel_gs_ret;

/* Layout version of keel_gen_server_module. */
#define KEEL_GEN_SERVER_MODULE_V1 1u

/* The callbacks of a server: a const descriptor that
 * keel_gen_server_change_code can swap for another. Every callback but
 * init may be NULL: a NULL handle_call stops the server with
 * {bad_call, Request}; casts and other messages are then dropped (see
 * unexpected messages below). `state`
 * points to the state term: assign it to change the state. Terms the
 * callbacks build go in keel_gs_heap(gs). Callbacks run in the server
 * process; those of a handler server must not block. */
typedef struct keel_gen_server_module {
  unsigned version; /* KEEL_GEN_SERVER_MODULE_V1 */
  const char *name; /* for reports; may be NULL */
  /* Runs in the new process while the starter waits. arg is the start
   * argument. Return keel_gs_ok (possibly after keel_gs_continue,
   * keel_gs_timeout or keel_gs_hibernate), keel_gs_ignore or
   * keel_gs_stop. */
  keel_gs_ret (*init)(keel_gen_server *gs, keel_term arg, keel_term *state);
  /* from identifies the caller (for keel_gen_server_reply). */
  keel_gs_ret (*handle_call)(keel_gen_server *gs, keel_term request,
                             keel_term from, keel_term *state);
  keel_gs_ret (*handle_cast)(keel_gen_server *gs, keel_term msg,
                             keel_term *state);
  /* Every other message, and the atom 'timeout' for an idle timeout
   * (keel_gs_timed_out tells it from a real 'timeout' message). */
  keel_gs_ret (*handle_info)(keel_gen_server *gs, keel_term msg,
                             keel_term *state);
  keel_gs_ret (*handle_continue)(keel_gen_server *gs, keel_term cont,
                                 keel_term *state);
  /* Called on stop (a callback returned keel_gs_stop, keel_gen_server_stop,
   * or an exit signal from the parent while trapping exits); not on
   * 'kill' nor on untrapped exit signals. */
  void (*terminate)(keel_gen_server *gs, keel_term reason, keel_term state);
  /* Called on the NEW module by keel_gen_server_change_code: returns
   * KEEL_OK (the swap happens) or a negative code (nothing changes). */
  int (*code_change)(keel_gen_server *gs,
                     const struct keel_gen_server_module *old, keel_term extra,
                     keel_term *state);
  /* The state as shown in crash reports and keel_gen_server_get_status
   * (hide secrets here); NULL: the state itself. */
  keel_term (*format_status)(keel_gen_server *gs, keel_term state);
} keel_gen_server_module;

/* ---- callback helpers: set the callback's result, return its tag ------ */

/* {ok, S} from init, {noreply, S} elsewhere. */
keel_gs_ret keel_gs_ok(keel_gen_server *gs);
/* {reply, Reply, S} (handle_call only; reply is sent when the callback
 * returns). */
keel_gs_ret keel_gs_reply(keel_gen_server *gs, keel_term reply);
/* {stop, Reason, S}: terminate(Reason) runs, then the process exits with
 * Reason. From init: the start fails with Reason. */
keel_gs_ret keel_gs_stop(keel_gen_server *gs, keel_term reason);
/* {stop, Reason, Reply, S}: the reply is sent before terminate. */
keel_gs_ret keel_gs_stop_reply(keel_gen_server *gs, keel_term reason,
                               keel_term reply);
/* init only: ignore (the start returns KEEL_GEN_SERVER_IGNORED). */
keel_gs_ret keel_gs_ignore(keel_gen_server *gs);
/* init only: {error, Reason} (OTP 26): the start fails with Reason, as for
 * keel_gs_stop, but the server exits with reason normal: no terminate, no
 * crash report, and a linked starter gets no exit signal. */
keel_gs_ret keel_gs_init_error(keel_gen_server *gs, keel_term reason);
/* Options of the current return: an idle timeout of ms milliseconds
 * (handle_info gets 'timeout' if no message arrives first), hibernation
 * (the heap is compacted, a fiber server also gives up its stack), or
 * {continue, Cont} (handle_continue runs before any other message). The
 * last one set wins. */
void keel_gs_timeout(keel_gen_server *gs, int64_t ms);
void keel_gs_hibernate(keel_gen_server *gs);
void keel_gs_continue(keel_gen_server *gs, keel_term cont);

/* The server's process, its heap (for terms of the state and replies) and
 * its pid; whether the running handle_info is an idle timeout. */
keel_proc *keel_gs_proc(keel_gen_server *gs);
keel_heap *keel_gs_heap(keel_gen_server *gs);
keel_term keel_gs_self(const keel_gen_server *gs);
bool keel_gs_timed_out(const keel_gen_server *gs);

/* ---- starting ----------------------------------------------------------- */

/* keel_gen_server_start's success codes besides KEEL_OK. */
#define KEEL_GEN_SERVER_IGNORED 1 /* init returned ignore */

/* Options of keel_gen_server_start. Zero-initialise, then set. */
typedef struct keel_gen_server_opts {
  /* Register the server before init under this name; KEEL_NONE for none.
   * An atom registers it locally ({local, Name}); a tuple
   * {via, Module, Name} through the via module installed as Module with
   * keel_via_add (keel/registry.h), e.g. {via, registry, {Reg, Key}} for a
   * unique Registry (copied; the server's own process registers, so a
   * Registry entry goes when it dies); {global, Name} as a node-local
   * global name (keel_global_register_name, keel/registry.h). A name
   * taken gives KEEL_EEXIST. */
  keel_term name;
  /* start_link: link the server to the calling process, its parent (a
   * process caller only; ignored from plain threads, which have none). */
  bool link;
  /* Longest wait for init, in ms; 0 = 5000; KEEL_INFINITY = no limit. A
   * slow init is killed and the start returns KEEL_ETIMEDOUT. */
  int64_t timeout_ms;
  /* Hibernate after this many idle ms ({hibernate_after, Ms}); 0 = never. */
  int64_t hibernate_after_ms;
  /* Run the server as a fiber process (its callbacks may block, e.g. call
   * other servers), with this stack (0: the default). */
  bool fiber;
  size_t stack_size;
  /* Trap exits before init, so that terminate also runs when the parent
   * (e.g. a supervisor shutting the server down) exits. */
  bool trap_exit;
  /* start_monitor: when monitor_ref is not NULL, the calling process (a
   * process caller only, else KEEL_ESTATE) monitors the server from its
   * spawn on; the ref is built in monitor_heap. A failed start then also
   * delivers the monitor's 'DOWN'. */
  keel_term *monitor_ref;
  keel_heap *monitor_heap;
  /* Where a failed start's reason is stored (may be NULL): the init's stop
   * reason, 'timeout', or the reason the process died with. Built in
   * reason_heap. */
  keel_heap *reason_heap;
  keel_term *reason;
} keel_gen_server_opts;

/* Starts a server running mod (gen_server:start/start_link): spawns it,
 * runs mod->init(arg) in it and returns when init has returned.
 * Returns KEEL_OK (*pid set), KEEL_GEN_SERVER_IGNORED, KEEL_EEXIST (the
 * name is taken; *pid = its owner), KEEL_ENOPROC (init returned stop, or
 * the process died: the reason is stored as opts->reason says; with link,
 * an abnormal reason also reaches the caller as an exit signal, as in
 * OTP), KEEL_ETIMEDOUT (the server was killed), KEEL_EINVAL (mod NULL,
 * init NULL, unknown version, name neither an atom, {global, _} nor
 * {via, Atom, _}),
 * or a spawn error.
 * From a handler process it returns KEEL_OK as soon as the server is
 * spawned (init runs later; link to learn of its failure). arg is copied.
 * Thread-safe. */
int keel_gen_server_start(const keel_gen_server_module *mod, keel_term arg,
                          const keel_gen_server_opts *opts, keel_term *pid);

/* gen_server:enter_loop: turns the calling fiber process into a server
 * running mod with the given state (copied into the process heap), as if
 * init had returned it; returns only when the server stops (its exit
 * reason is then recorded: the fiber should return). Only hibernate_after_ms
 * and trap_exit of opts are used (opts may be NULL); the server has no
 * parent, and hibernation compacts the heap but keeps the fiber's stack.
 * Errors: KEEL_ESTATE (not called from a fiber process), KEEL_EINVAL (bad
 * module or state). */
int keel_gen_server_enter_loop(keel_proc *self,
                               const keel_gen_server_module *mod,
                               keel_term state,
                               const keel_gen_server_opts *opts);

/* ---- client API ------------------------------------------------------- */

/* Default call timeout (gen_server's 5000 ms). */
#define KEEL_GEN_SERVER_CALL_TIMEOUT 5000

/* Every function below that takes a server accepts a local pid, a
 * registered atom, {global, Name} or {via, Module, Name} (resolved with
 * keel_name_whereis at each use; a cast to a via or global name goes
 * through keel_name_send). */

/* gen_server:call: sends request to server (a pid or a name)
 * and waits at most timeout_ms (KEEL_INFINITY: forever) for the reply,
 * which is copied into h and stored in *reply. Returns KEEL_OK;
 * KEEL_ENOPROC when the server is not alive or dies first (*reply = the
 * exit reason, 'noproc' when there was no server); KEEL_ETIMEDOUT (*reply
 * = 'timeout'; a late reply is dropped); KEEL_ESTATE (called from a
 * handler process, or a server calling itself: *reply = calling_self);
 * KEEL_EINVAL (h or reply NULL, bad timeout); KEEL_ENOMEM. Thread-safe. */
int keel_gen_server_call(keel_term server, keel_term request,
                         int64_t timeout_ms, keel_heap *h, keel_term *reply);

/* Opt-in call latency events (off by default): while on, every
 * keel_gen_server_call emits [keel, gen_server, call, stop] on the
 * caller's thread when it returns, with measurements duration (ns, from
 * the call's start to its return, waits included) and monotonic_time
 * (keel_monotonic_ns at the end), and metadata server (as given: a pid or
 * a name), result (ok | error) and error (the *reply of a failed call:
 * timeout, noproc, the server's exit reason...; undefined on success).
 * Off, a call pays one relaxed atomic load. Thread-safe; takes effect for
 * calls that start after it. */
void keel_gen_server_call_telemetry(bool on);

/* gen_server:cast: sends {'$gen_cast', msg}. Always KEEL_OK when the
 * server is a pid or a name (even a dead or unknown one, also a via
 * name whose module is not installed), else
 * KEEL_EBADARG / KEEL_EINVAL / KEEL_ENOMEM / KEEL_ESTATE. Thread-safe. */
int keel_gen_server_cast(keel_term server, keel_term msg);

/* gen_server:reply: answers a call whose `from` handle_call received
 * (deferred reply), from any process or thread. Replies to a caller that
 * gave up are dropped. Errors: KEEL_EBADARG (from is not a from). */
int keel_gen_server_reply(keel_term from, keel_term reply);

/* gen_server:stop: asks the server to terminate with reason (terminate
 * runs) and waits at most timeout_ms for it to die. KEEL_OK, KEEL_ENOPROC
 * (not alive), KEEL_ETIMEDOUT, KEEL_ESTATE (from a handler process).
 * Thread-safe. */
int keel_gen_server_stop(keel_term server, keel_term reason,
                         int64_t timeout_ms);

/* gen_server:send_request: sends a call without waiting; *req_id (built
 * in h) identifies it for receive/check_response. Callable from any
 * process (handlers included), not from plain threads (KEEL_ESTATE).
 * Errors: KEEL_ENOPROC (a name that is not registered), KEEL_EINVAL,
 * KEEL_ENOMEM. */
int keel_gen_server_send_request(keel_term server, keel_term request,
                                 keel_heap *h, keel_term *req_id);

/* gen_server:receive_response (fibers): waits at most timeout_ms for the
 * answer of req_id. KEEL_OK (*reply in h), KEEL_ENOPROC (*reply = the
 * server's exit reason), KEEL_ETIMEDOUT (the request is abandoned: a late
 * reply is dropped), KEEL_ESTATE (not a fiber). */
int keel_gen_server_receive_response(keel_term req_id, int64_t timeout_ms,
                                     keel_heap *h, keel_term *reply);

/* gen_server:wait_response (fibers): as receive_response, but on
 * KEEL_ETIMEDOUT the request stays pending (wait again, or check it in a
 * handler). */
int keel_gen_server_wait_response(keel_term req_id, int64_t timeout_ms,
                                  keel_heap *h, keel_term *reply);

/* ---- request-id collections (OTP 25's reqids_*) -----------------------
 * A collection of pending send_request ids, each with a label, waited for
 * together. Owned by its creator (one process; not thread-safe), freed
 * with keel_gen_server_reqids_free, which abandons nothing: free a
 * collection once its requests are answered or abandoned. It keeps its
 * ids and labels in its own heap, which is reset whenever it empties. */
typedef struct keel_gen_server_reqids keel_gen_server_reqids;

/* reqids_new: an empty collection, or NULL without memory. */
keel_gen_server_reqids *keel_gen_server_reqids_new(void);
void keel_gen_server_reqids_free(keel_gen_server_reqids *c);
/* reqids_add: adds req_id (from keel_gen_server_send_request) with label
 * (both copied). KEEL_EINVAL (c NULL, req_id not a ref, label KEEL_NONE),
 * KEEL_EEXIST (req_id already in c), KEEL_ENOMEM. */
int keel_gen_server_reqids_add(keel_gen_server_reqids *c, keel_term req_id,
                               keel_term label);
/* reqids_size. */
size_t keel_gen_server_reqids_size(const keel_gen_server_reqids *c);
/* reqids_to_list: [{ReqId, Label}] in h, in the order they were added. */
int keel_gen_server_reqids_to_list(const keel_gen_server_reqids *c,
                                   keel_heap *h, keel_term *out);
/* send_request/4: sends request to server as keel_gen_server_send_request
 * does and adds its id to c with label. Same errors, and KEEL_EINVAL for a
 * NULL c or KEEL_NONE label. */
int keel_gen_server_send_request_to(keel_term server, keel_term request,
                                    keel_term label, keel_gen_server_reqids *c);
/* receive_response/3 (fibers): waits at most timeout_ms for the answer to
 * any request of c. KEEL_OK (*reply = the reply) or KEEL_ENOPROC (*reply =
 * the server's exit reason), both in h with *label (in h) the request's
 * label, and the request removed from c when del; KEEL_ENOENT when c is
 * empty (no_request); KEEL_ETIMEDOUT: every request of c is abandoned
 * (late replies are dropped) and c is emptied. KEEL_ESTATE (not a fiber),
 * KEEL_EINVAL. */
int keel_gen_server_receive_response_in(keel_gen_server_reqids *c,
                                        int64_t timeout_ms, bool del,
                                        keel_heap *h, keel_term *reply,
                                        keel_term *label);
/* wait_response/3 (fibers): as receive_response_in, but on KEEL_ETIMEDOUT
 * the requests stay pending and c is unchanged. */
int keel_gen_server_wait_response_in(keel_gen_server_reqids *c,
                                     int64_t timeout_ms, bool del, keel_heap *h,
                                     keel_term *reply, keel_term *label);
/* check_response/3 (any process): whether msg answers a request of c.
 * KEEL_OK / KEEL_ENOPROC as receive_response_in; KEEL_ENOMATCH (no_reply:
 * msg is something else), KEEL_ENOENT (c is empty: no_request). */
int keel_gen_server_check_response_in(keel_term msg, keel_gen_server_reqids *c,
                                      bool del, keel_heap *h, keel_term *reply,
                                      keel_term *label);

/* gen_server:check_response (any process, e.g. a handler): whether msg
 * answers req_id. KEEL_OK (*reply = the reply, in h), KEEL_ENOPROC (msg is
 * the server's 'DOWN'; *reply = its reason), KEEL_ENOMATCH (msg is
 * something else). */
int keel_gen_server_check_response(keel_term msg, keel_term req_id,
                                   keel_heap *h, keel_term *reply);

/* ---- sys-like functions (blocking: fibers and plain threads) ----------
 * Each returns KEEL_OK, or the errors of keel_gen_server_call. They are
 * served even while the server is suspended. */

/* sys:get_state: a copy of the state in h. */
int keel_gen_server_get_state(keel_term server, int64_t timeout_ms,
                              keel_heap *h, keel_term *state);
/* The state as format_status shows it (sys:get_status's part). */
int keel_gen_server_get_status(keel_term server, int64_t timeout_ms,
                               keel_heap *h, keel_term *status);

/* Replaces the state with fn(h, state, arg), run inside the server (h is
 * the server's heap) (sys:replace_state). arg must stay valid until this
 * returns. */
typedef keel_term (*keel_gs_state_fn)(keel_heap *h, keel_term state, void *arg);
int keel_gen_server_replace_state(keel_term server, keel_gs_state_fn fn,
                                  void *arg, int64_t timeout_ms);

/* sys:suspend / sys:resume: a suspended server handles only system
 * requests (and its parent's exit); other messages wait, in order, and
 * are handled on resume. */
int keel_gen_server_suspend(keel_term server, int64_t timeout_ms);
int keel_gen_server_resume(keel_term server, int64_t timeout_ms);

/* Trace on/off (sys:trace): when on, the server emits the telemetry event
 * [keel, gen_server, trace] (metadata: pid, message) for each message it
 * handles. */
int keel_gen_server_trace(keel_term server, bool on, int64_t timeout_ms);

/* sys:statistics(Server, true | false): counting on (restarted from zero)
 * or off. Same callers and errors as keel_gen_server_suspend. */
int keel_gen_server_statistics(keel_term server, bool on, int64_t timeout_ms);
/* sys:statistics(Server, get): *out (in h) =
 * [{start_time, Ms}, {current_time, Ms}, {reductions, R},
 *  {messages_in, N}, {messages_out, N}] since counting was turned on,
 * times in Unix milliseconds (OTP gives calendar tuples); messages_in
 * counts the messages handled (system requests apart), messages_out the
 * replies sent. KEEL_ENOENT when counting is off. */
int keel_gen_server_get_statistics(keel_term server, int64_t timeout_ms,
                                   keel_heap *h, keel_term *out);
/* sys:log(Server, {true, Max} | false): keeps the last max (1..64; 0 =
 * off, which also forgets them) events: {in, Msg} (a cast as
 * {'$gen_cast', Msg}), {in, Request, From}, {out, Reply, To},
 * {noreply, State}. KEEL_EINVAL for max > 64. */
int keel_gen_server_log(keel_term server, unsigned max, int64_t timeout_ms);
/* sys:log(Server, get): *out (in h) = the kept events, oldest first.
 * KEEL_ENOENT when logging is off. */
int keel_gen_server_get_log(keel_term server, int64_t timeout_ms, keel_heap *h,
                            keel_term *out);

/* Swaps the server's module for new_mod (sys:change_code): calls
 * new_mod->code_change(gs, old, extra, &state) inside the server (when
 * set); on KEEL_OK the new module serves every later message. Returns
 * that code, KEEL_EINVAL (bad module), or the errors of call. new_mod
 * must outlive the server. */
int keel_gen_server_change_code(keel_term server,
                                const keel_gen_server_module *new_mod,
                                keel_term extra, int64_t timeout_ms);

/* Unexpected messages: a server whose module has no handle_info drops the
 * messages that are neither calls nor casts and emits the telemetry event
 * [keel, gen_server, unexpected_message] (metadata pid, module, message)
 * for each, as Elixir's default handle_info logs them. */

/* Crash reports: when a server stops with a reason other than normal,
 * shutdown or {shutdown, _}, it emits the telemetry event
 * [keel, gen_server, crash] after terminate, with metadata pid, name,
 * module, last_message, state (format_status's) and reason. */

#ifdef __cplusplus
}
#endif

#endif /* KEEL_GEN_SERVER_H */
