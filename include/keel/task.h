/*
 * keel/task.h - Elixir's Task and Task.Supervisor on Keel processes.
 *
 * A task runs one C function (keel_task_fn) in its own fiber process, so
 * the function may block in keel_receive or make synchronous calls. The
 * function gets an input term (copied into the task's heap) and a heap to
 * build its result in; the result goes back to the owner as the message
 * {Ref, Result}, Ref being the owner's monitor of the task, which is also
 * an alias with reply_demonitor (OTP 24+): the first reply ends the
 * monitor, and a reply arriving after keel_task_ignore / keel_task_shutdown
 * is dropped by the runtime. A task whose function ends with keel_stop
 * (returning KEEL_NONE) sends no reply; its owner sees {'DOWN', Ref,
 * process, Pid, Reason}.
 *
 * Who may wait for a task:
 *   - fiber processes: keel_task_await, keel_task_yield,
 *     keel_task_yield_many, keel_task_shutdown block in keel_receive;
 *   - handler processes cannot block: they start tasks with
 *     keel_task_async and recognise the reply or the 'DOWN' in their
 *     handler with keel_task_reply_match;
 *   - plain threads (main) use keel_task_run (and the Task.Supervisor calls
 *     with self == NULL), which run the work in a hidden proxy fiber and
 *     wait for it on a condition variable. Not in simulation mode.
 * Only the task's owner (the process that called keel_task_async) may
 * await it: the others get KEEL_ESTATE.
 *
 * Deviation from Elixir: awaiting past the timeout does not exit the
 * caller; keel_task_await returns KEEL_ETIMEDOUT and the task keeps
 * running (keel_task_shutdown or keel_task_ignore then decide its fate).
 */
#ifndef KEEL_TASK_H
#define KEEL_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A task's function. Runs in the task's fiber process `self`; `arg` is the
 * pointer given at start (owned by the caller's code, which must keep it
 * valid until the task has ended), `input` the input term (lives in the
 * task's heap until the task ends). Returns the result, built in h (or an
 * immediate); KEEL_NONE sends no reply (end with keel_stop(self, Reason)
 * first to exit with Reason, else the task exits 'normal'). */
typedef keel_term (*keel_task_fn)(keel_proc *self, void *arg, keel_term input,
                                  keel_heap *h);

/* A started task, owned by the process that started it. The terms live in
 * the heap given to keel_task_async (ref) or are immediates (pids). */
typedef struct keel_task {
  keel_term pid;   /* the task process */
  keel_term ref;   /* the owner's monitor of it, also the reply alias */
  keel_term owner; /* the owner's pid */
  bool linked;     /* linked to the owner (async, not async_nolink) */
} keel_task;

/* What became of a task. */
typedef enum keel_task_status {
  KEEL_TASK_PENDING = 0, /* no answer yet (Elixir's nil) */
  KEEL_TASK_REPLY = 1,   /* it replied: value is its result ({ok, V}) */
  KEEL_TASK_EXIT = 2     /* it died first: value is the reason ({exit, R}) */
} keel_task_status;

typedef struct keel_task_result {
  keel_task_status status;
  keel_term value; /* KEEL_NONE when pending */
} keel_task_result;

/* Task.async: starts fn(arg, input) in a new fiber process linked to self
 * and monitored by it (monitor ref = reply alias, built in h and stored in
 * out->ref). self may be a handler or a fiber process. input is copied.
 * Errors: KEEL_EINVAL (NULL self, fn, h or out; input KEEL_NONE),
 * KEEL_ESTATE (self not the running process, no node), KEEL_ESYSLIMIT,
 * KEEL_ENOMEM. On error no task runs. */
int keel_task_async(keel_proc *self, keel_task_fn fn, void *arg,
                    keel_term input, keel_heap *h, keel_task *out);

/* Task.yield: waits up to timeout_ms (KEEL_INFINITY: forever; 0: poll) for
 * t's reply or death. KEEL_OK with out->status REPLY (value: the result,
 * copied into h) or EXIT (value: the exit reason, copied into h), and the
 * task is then done; KEEL_ETIMEDOUT when neither came: the task keeps
 * running and may be waited for again. self must be a fiber process and
 * t's owner. Errors: KEEL_EINVAL (NULL argument, bad timeout), KEEL_ESTATE
 * (self not a running fiber, or not t's owner), KEEL_ENOMEM. */
int keel_task_yield(keel_proc *self, keel_task *t, int64_t timeout_ms,
                    keel_heap *h, keel_task_result *out);

/* Task.await: keel_task_yield that returns KEEL_OK with the result in
 * *value, KEEL_ENOPROC with the task's exit reason in *value when it died
 * without replying, or KEEL_ETIMEDOUT (the task keeps running: a deviation
 * from Elixir, which exits the caller). Other errors as keel_task_yield. */
int keel_task_await(keel_proc *self, keel_task *t, int64_t timeout_ms,
                    keel_heap *h, keel_term *value);

/* Task.yield_many: waits up to timeout_ms for all n tasks (one shared
 * deadline) and fills out[i] for tasks[i]: REPLY / EXIT for those that
 * finished (copied into h), PENDING for those still running, which keep
 * running. Returns the number of finished tasks (>= 0), or the errors of
 * keel_task_yield. */
int keel_task_yield_many(keel_proc *self, keel_task *tasks, size_t n,
                         int64_t timeout_ms, keel_heap *h,
                         keel_task_result *out);

/* Shutdown value for keel_task_shutdown: kill at once. */
#define KEEL_TASK_BRUTAL_KILL ((int64_t)-2)

/* Task.shutdown: unlinks t, sends it the exit signal 'shutdown' (or
 * 'kill' with KEEL_TASK_BRUTAL_KILL), waits up to timeout_ms
 * (KEEL_INFINITY allowed) for it to die, killing it when the wait runs
 * out, and waits for its death. out: REPLY when it replied meanwhile, EXIT
 * when it died of something else first, PENDING when the shutdown ended it
 * (Elixir's nil). A queued {'EXIT', Pid, _} of a trapping self is removed.
 * Fibers only (self: t's owner). Errors as keel_task_yield. */
int keel_task_shutdown(keel_proc *self, keel_task *t, int64_t timeout_ms,
                       keel_heap *h, keel_task_result *out);

/* Task.ignore: unlinks t and drops the monitor and the alias, so the task
 * keeps running and its late reply is discarded. If it had already
 * answered, out is REPLY / EXIT (copied into h), else PENDING. Handler or
 * fiber processes (never blocks). Errors: KEEL_EINVAL, KEEL_ESTATE. */
int keel_task_ignore(keel_proc *self, keel_task *t, keel_heap *h,
                     keel_task_result *out);

/* For handler processes: whether msg is t's reply {Ref, V} (out: REPLY, V)
 * or its {'DOWN', Ref, process, Pid, Reason} (out: EXIT, Reason). out's
 * value points into msg (copy it to keep it). Either way t is done. Pure:
 * any thread. */
bool keel_task_reply_match(const keel_task *t, keel_term msg,
                           keel_task_result *out);

/* The $callers of self (TK6): for a task whose function is running, the
 * list [Owner, Owner's owner, ...] of the processes that started it and
 * its ancestors' starters (the process that called keel_task_async,
 * start_child or async_nolink; for keel_task_run, the hidden proxy; none
 * for a start from a plain thread); [] for any other process. Built in h.
 * Errors: KEEL_EINVAL (NULL argument), KEEL_ESTATE (self is not the
 * calling process), KEEL_ENOMEM. */
int keel_task_callers(keel_proc *self, keel_heap *h, keel_term *list);

/* Task.start / Task.start_link: runs fn(arg, input) in a new fiber process
 * with nobody waiting for its result (fire and forget). link: link it to
 * the calling process (which must be a process: else KEEL_ESTATE). Any
 * thread. *pid may be NULL. Errors as keel_task_async. */
int keel_task_start(keel_task_fn fn, void *arg, keel_term input, bool link,
                    keel_term *pid);

/* For plain threads (not processes): Task.async + Task.yield + (on
 * timeout) Task.shutdown(brutal_kill) through a hidden proxy fiber
 * process; blocks the calling thread on a condition variable until the
 * task has answered or died. KEEL_OK with out REPLY / EXIT (copied into
 * h), KEEL_ETIMEDOUT (the task was killed). Errors: KEEL_EINVAL,
 * KEEL_ESTATE (called from a process, or in simulation mode, or no node;
 * also when the node stopped meanwhile), KEEL_ENOMEM, KEEL_ESYSLIMIT. */
int keel_task_run(keel_task_fn fn, void *arg, keel_term input,
                  int64_t timeout_ms, keel_heap *h, keel_task_result *out);

/* ------------------------------------------------------------------------ */
/* async_stream                                                             */
/* ------------------------------------------------------------------------ */

typedef enum keel_task_on_timeout {
  KEEL_TASK_TIMEOUT_EXIT = 0, /* kill every task, return KEEL_ETIMEDOUT */
  KEEL_TASK_TIMEOUT_KILL = 1  /* kill that task, its result: {exit, timeout} */
} keel_task_on_timeout;

/* Options of keel_task_async_stream. Zero-initialise. */
typedef struct keel_task_stream_opts {
  unsigned max_concurrency; /* 0: keel_node_schedulers() */
  bool unordered;           /* results in completion order, not input order */
  int64_t timeout_ms;       /* per task from its start; 0: 5000 */
  keel_task_on_timeout on_timeout;
  bool zip_input_on_exit; /* {exit, {Input, Reason}} instead */
  /* Not KEEL_NONE: a Task.Supervisor whose tasks are not linked to the
   * caller (async_stream_nolink). */
  keel_term supervisor;
} keel_task_stream_opts;

/* Task.async_stream over inputs[0..n): runs fn(arg, inputs[i]) with at most
 * max_concurrency tasks at once and stores results[k] = {ok, V} or
 * {exit, Reason} (built in h): results[i] for inputs[i] when ordered, else
 * in completion order. self must be a fiber process (a plain thread runs
 * it inside a fiber, e.g. through its own keel_task_run).
 * Returns KEEL_OK, or KEEL_ETIMEDOUT (on_timeout exit: a task overran; all
 * tasks are killed and results are not meaningful), KEEL_EINVAL (NULL
 * argument with n > 0), KEEL_ESTATE, KEEL_ENOMEM, KEEL_ESYSLIMIT (a task
 * could not start: the started ones are killed), KEEL_ENOPROC (the
 * supervisor is gone), KEEL_ELIMIT (the supervisor's max_children). */
int keel_task_async_stream(keel_proc *self, const keel_term *inputs, size_t n,
                           keel_task_fn fn, void *arg,
                           const keel_task_stream_opts *opts, keel_heap *h,
                           keel_term *results);

/* ------------------------------------------------------------------------ */
/* Task.Supervisor                                                          */
/* ------------------------------------------------------------------------ */

/* Options of keel_task_sup_start. Zero-initialise. */
typedef struct keel_task_sup_opts {
  size_t max_children; /* 0: unlimited */
  bool link;           /* link to the calling process (must be one) */
} keel_task_sup_opts;

/* Starts a Task.Supervisor: a handler process trapping exits whose
 * children are temporary tasks (never restarted). When it gets an exit
 * signal from its parent (the process that started it with link) it ends
 * its children (exit 'shutdown': tasks do not trap exits) and exits with
 * that reason; exit signals from other processes are ignored, as OTP's
 * supervisors do ('kill' still kills it). opts may be NULL. Any thread.
 * Errors: as keel_spawn, KEEL_ESTATE for link from a non-process. */
int keel_task_sup_start(const keel_task_sup_opts *opts, keel_term *pid);

/* Stops the supervisor sup (a pid or registered name): it ends its
 * children and exits with reason 'shutdown'. Asynchronous: monitor it to
 * know when it is gone. Any thread. Errors as keel_send. */
int keel_task_sup_stop(keel_term sup);

/* Task.Supervisor.start_child: a fire-and-forget task under sup. self: a
 * fiber process, or NULL on a plain thread (a proxy fiber makes the call).
 * *pid may be NULL. Errors: KEEL_ELIMIT (max_children reached),
 * KEEL_ENOPROC (sup is not alive), KEEL_EINVAL, KEEL_ESTATE, KEEL_ENOMEM. */
int keel_task_sup_start_child(keel_proc *self, keel_term sup, keel_task_fn fn,
                              void *arg, keel_term input, keel_term *pid);

/* Task.Supervisor.async_nolink: a task under sup, monitored by self (a
 * fiber process) but not linked: its crash arrives as {'DOWN', ...} and
 * keel_task_yield reports it as EXIT. The task starts running only once
 * self has monitored it; if self dies first it ends without running fn.
 * Errors as keel_task_sup_start_child, and KEEL_ESTATE for a NULL self. */
int keel_task_sup_async_nolink(keel_proc *self, keel_term sup, keel_task_fn fn,
                               void *arg, keel_term input, keel_heap *h,
                               keel_task *out);

/* Task.Supervisor.children: the list of sup's live children (pids), built
 * in h. self: fiber or NULL (plain thread). Errors as start_child. */
int keel_task_sup_children(keel_proc *self, keel_term sup, keel_heap *h,
                           keel_term *list);

/* Task.Supervisor.terminate_child: ends the child pid (exit 'shutdown')
 * and returns once the supervisor has seen it die. KEEL_OK, KEEL_ENOENT
 * (not a child of sup), KEEL_EBADARG (pid not a local pid), other errors
 * as start_child (KEEL_ENOPROC also when sup stops meanwhile). */
int keel_task_sup_terminate_child(keel_proc *self, keel_term sup,
                                  keel_term pid);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_TASK_H */
