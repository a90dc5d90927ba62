/*
 * keel/runtime.h - the process runtime: a node of scheduler threads running
 * lightweight processes that exchange messages.
 *
 * A node is started once per OS process (keel_node_start) and stopped with
 * keel_node_stop. It runs N scheduler threads; each owns a run queue, steals
 * work from the others when it runs dry and parks on a futex when there is
 * nothing to do (no periodic wake-ups).
 *
 * Processes are of two kinds sharing one control block, mailbox and
 * scheduler: *handler* processes, a C callback invoked once per message
 * with the process's state, and *fiber* processes (keel_spawn_fiber),
 * sequential C on their own stack that blocks in keel_receive. A process has a
 * pid (a local pid term, see keel_pid_local in keel/term.h), a mailbox and a
 * private term heap for its state. Pids carry a generation: once a process is
 * dead its pid never names another process, and a send to it is a silent no-op.
 *
 * Ordering: messages from one sender to one receiver are handled in the
 * order they were sent. Nothing is promised across different senders.
 *
 * Scheduling is cooperative: each handled message costs
 * KEEL_COST_MESSAGE units and each send KEEL_COST_SEND of a slice of
 * KEEL_SLICE_BUDGET units; a process whose slice is used up goes to the back
 * of its run queue so the other processes of its scheduler run. A handler
 * that loops forever without returning blocks its scheduler.
 */
#ifndef KEEL_RUNTIME_H
#define KEEL_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Budget of one scheduling slice, and what handling a message and sending
 * one cost out of it (BEAM's 4000 reductions; 40 messages per slice). */
#define KEEL_SLICE_BUDGET 4000
#define KEEL_COST_MESSAGE 100
#define KEEL_COST_SEND 10

/* Most scheduler threads a node runs. */
#define KEEL_MAX_SCHEDULERS 64

/* Default and largest process limits. */
#define KEEL_DEFAULT_MAX_PROCESSES (UINT32_C(1) << 22)
#define KEEL_MAX_PROCESSES (UINT32_C(1) << 28)

/* Called by the watchdog once per long schedule (a process that ran for
 * more than long_schedule_ms without returning to its scheduler, BEAM's
 * long_schedule), when it ends: pid of the process and how long it ran, in
 * ns, as measured by the watchdog (within one watchdog period, at most a
 * few ms). Runs on the watchdog thread: it must return quickly and must
 * not block; it may call keel_send. */
typedef void (*keel_long_schedule_fn)(keel_term pid, uint64_t duration_ns,
                                      void *arg);

/* Largest dirty pool and long_schedule_ms accepted by keel_node_start. */
#define KEEL_DIRTY_MAX_THREADS 1024u
#define KEEL_LONG_SCHEDULE_MAX_MS 3600000u

/* Options of keel_node_start. Zero-initialise, then set what you need. */
typedef struct keel_node_opts {
  /* Scheduler threads; 0 = number of online CPUs (capped at
   * KEEL_MAX_SCHEDULERS). */
  unsigned schedulers;
  /* Most processes alive at once; 0 = KEEL_DEFAULT_MAX_PROCESSES. At most
   * KEEL_MAX_PROCESSES. Spawning beyond it fails with KEEL_ESYSLIMIT. */
  size_t max_processes;
  /* How long an idle scheduler looks for work before parking on its futex,
   * in microseconds; 0 = the default (20 us). */
  unsigned spin_us;
  /* Most threads of the dirty CPU pool; 0 = as many as schedulers. And of
   * the dirty I/O pool; 0 = 10. At most KEEL_DIRTY_MAX_THREADS each; they
   * are started on demand (see keel/dirty.h). */
  unsigned dirty_cpu;
  unsigned dirty_io;
  /* A process running longer than this without returning to its scheduler
   * is a long schedule: counted in keel_node_stats.long_schedules, reported
   * to on_long_schedule (may be NULL, with on_long_schedule_arg), and the
   * other processes queued on its scheduler are handed to the other
   * schedulers. In ms; 0 = 10; at most KEEL_LONG_SCHEDULE_MAX_MS. */
  unsigned long_schedule_ms;
  keel_long_schedule_fn on_long_schedule;
  void *on_long_schedule_arg;
} keel_node_opts;

/* Starts the node: its schedulers, its dirty pools and its watchdog (one
 * thread that checks every 1-10 ms for a scheduler stuck in one process,
 * and sleeps while every scheduler is parked). opts may be NULL (all
 * defaults).
 * Errors: KEEL_ESTATE (a node is already running), KEEL_EINVAL (an option
 * out of range), KEEL_ENOMEM, KEEL_EIO (a thread could not be created).
 * Not thread-safe with respect to keel_node_stop: call both from one
 * controlling thread. */
int keel_node_start(const keel_node_opts *opts);

/* Stops the node: stops the schedulers and the watchdog, waits for every
 * dirty job already submitted to end (keel/dirty.h), then terminates every
 * process still alive (its terminate callback runs with reason 'shutdown' on
 * the calling thread), frees every queued message and all runtime memory. Must
 * not be called from a process, nor while other non-node threads still send or
 * spawn. Returns KEEL_OK, or KEEL_ESTATE when no node runs or when called
 * from a scheduler thread or from dirty work. */
int keel_node_stop(void);

/* Number of scheduler threads of the running node (0 when none runs).
 * Thread-safe. */
unsigned keel_node_schedulers(void);

/* Counters of the running node, for tests and monitoring. */
typedef struct keel_node_stats {
  size_t processes;          /* processes alive */
  uint64_t spawned;          /* processes spawned since start */
  int64_t messages_live;     /* messages allocated and not yet freed */
  uint64_t messages_sent;    /* messages delivered into a mailbox */
  size_t timers;             /* timer records in use (pending, cancelled but
                                not yet reclaimed, or firing) */
  uint64_t messages_dropped; /* refused by a full queue (max_queue) */
  /* Long schedules ended (see keel_node_opts.long_schedule_ms). */
  uint64_t long_schedules;
  /* Dirty jobs finished (keel/dirty.h). */
  uint64_t dirty_jobs;
} keel_node_stats;

/* Fills *out with the node's counters. The figures are a snapshot read
 * without stopping the node; messages_live is exact once the node is
 * quiescent. KEEL_ESTATE when no node runs. Thread-safe. */
int keel_node_stats_get(keel_node_stats *out);

/* Wall time of one scheduler since the node started (as Erlang's
 * statistics(scheduler_wall_time)): busy_ns is the time it was not idle
 * (running processes, timers and its own bookkeeping), total_ns the time
 * since the node started. Idle is the time spent looking for work after
 * running dry (spinning, then parked). Utilisation over an interval is
 * (busy1 - busy0) / (total1 - total0) of two snapshots. */
typedef struct keel_sched_time {
  uint64_t busy_ns;
  uint64_t total_ns;
} keel_sched_time;

/* Fills out[i] for the first min(cap, schedulers) schedulers and returns
 * the number of schedulers (so cap = 0, out = NULL asks for the count).
 * Each entry is consistent on its own; entries are read one after the
 * other without stopping the node. Errors: KEEL_ESTATE (no node runs),
 * KEEL_EINVAL (out NULL with cap > 0). Thread-safe. */
int keel_sched_utilisation(keel_sched_time *out, unsigned cap);

/* Run-queue lengths (erlang:statistics(run_queue_lengths)): out[i] gets
 * the processes queued on scheduler i (its local queue and its run-next
 * slot) for the first min(cap, schedulers) schedulers, and *shared (may
 * be NULL) those in the node-wide queues (the inject queue and the low,
 * high and max priority queues). Returns the number of schedulers. The
 * figures are read without stopping anything and may be off by the
 * processes moving at that moment. Errors: KEEL_ESTATE (no node runs),
 * KEEL_EINVAL (out NULL with cap > 0). Thread-safe. */
int keel_sched_run_queues(size_t *out, unsigned cap, size_t *shared);

/* ------------------------------------------------------------------------ */
/* Processes                                                                */
/* ------------------------------------------------------------------------ */

/* A process, as seen by its own handler. Valid only inside a call of that
 * process's handler or terminate callback, on the calling thread. */
typedef struct keel_proc keel_proc;

/* What a handler returns. */
typedef enum keel_handler_status {
  KEEL_CONTINUE = 0, /* wait for the next message */
  KEEL_EXIT = 1      /* terminate the process (reason: keel_stop's, or
                        'normal') */
} keel_handler_status;

/* Called once per message. msg lives only until the handler returns: copy
 * what must be kept into keel_proc_heap(self) with keel_term_copy. state is
 * the process's state pointer (keel_proc_state). */
typedef keel_handler_status (*keel_handler_fn)(keel_proc *self, keel_term msg,
                                               void *state);

/* Called once when a process terminates (after its last handler call, or at
 * node stop), before its heap and mailbox are freed: the place to free what
 * state points to. reason lives until the callback returns. */
typedef void (*keel_terminate_fn)(keel_proc *self, keel_term reason,
                                  void *state);

/* Scheduling priorities (erlang:process_flag(priority, P)). Runnable max
 * processes run before high ones, high before normal; low ones share the
 * normal queue's turns but get one in eight, so they are never starved. */
typedef enum keel_priority {
  KEEL_PRIO_NORMAL = 0,
  KEEL_PRIO_LOW = 1,
  KEEL_PRIO_HIGH = 2,
  KEEL_PRIO_MAX = 3
} keel_priority;

/* What happens to a message that finds its receiver's queue full (see
 * keel_spawn_opts.max_queue). Signals (exit, link, monitor...) are never
 * refused. */
typedef enum keel_queue_policy {
  KEEL_QUEUE_DROP_NEW = 0, /* the new message is dropped (counted in
                              keel_node_stats.messages_dropped) */
  KEEL_QUEUE_KILL = 1      /* the receiver is killed (reason 'killed'), as
                              by BEAM's max_heap_size */
} keel_queue_policy;

/* Options of keel_spawn. Zero-initialise, then set what you need. */
typedef struct keel_spawn_opts {
  keel_terminate_fn terminate; /* may be NULL */
  /* Fiber processes only (keel_spawn_fiber): usable stack bytes; 0 = the
   * default (KEEL_FIBER_STACK_DEFAULT). Rounded up to a power of two of at
   * least KEEL_FIBER_STACK_MIN; at most KEEL_FIBER_STACK_MAX. Ignored by
   * keel_spawn. */
  size_t stack_size;
  /* Link the new process to the calling process before it runs
   * (spawn_link). The caller must be a process (else KEEL_ESTATE). */
  bool link;
  /* When not NULL: the calling process (else KEEL_ESTATE) monitors the new
   * one before it runs (spawn_monitor); the monitor's ref is built in
   * monitor_heap and stored here. */
  keel_term *monitor_ref;
  keel_heap *monitor_heap;
  /* Scheduling priority (default normal). */
  keel_priority priority;
  /* Most messages queued at once (0: unbounded, Erlang's default; at most
   * UINT32_MAX), and what a message beyond it does. */
  size_t max_queue;
  keel_queue_policy queue_policy;
  /* Words the process heap starts with (min_heap_size; 0: the default). */
  size_t min_heap_words;
  /* OTP 27's long_message_queue monitor for this process: when its queue
   * reaches long_queue_on messages the telemetry event
   * [keel, runtime, long_message_queue] is emitted (measurement length,
   * metadata pid and long = true), and once it is back to long_queue_off
   * or fewer, again with long = false. 0: off; off must be below on.
   * Watching a queue counts its messages on the send path (as max_queue
   * does), one atomic add per message. */
  size_t long_queue_on, long_queue_off;
} keel_spawn_opts;

/* Spawns a handler process whose state pointer is `state` (owned by the
 * caller's code; typically freed in opts->terminate). The new process is
 * idle until it gets a message. opts may be NULL. On success stores the new
 * pid in *pid (may be NULL).
 * Errors: KEEL_EINVAL (handler NULL), KEEL_ESTATE (no node running, or
 * the node is stopping, e.g. when called from a terminate callback during
 * keel_node_stop), KEEL_ESYSLIMIT (the process limit is reached),
 * KEEL_ENOMEM.
 * Thread-safe: callable from processes and from any other thread. */
int keel_spawn(keel_handler_fn handler, void *state,
               const keel_spawn_opts *opts, keel_term *pid);

/* Sends a copy of msg to `pid`: a local pid, a registered name (an atom),
 * an alias (keel/signals.h), or a pid of another node (handed to the
 * remote router, see keel_set_remote_router). The copy is made on the
 * calling thread (large binaries and resources are shared by reference
 * count, not copied), so msg's heap may be freed as soon as this returns.
 * Sending to a dead or stale pid silently succeeds and delivers nothing.
 * Messages from one sender to one receiver arrive in the order sent.
 * Errors: KEEL_EBADARG (pid is none of those: a plain ref, a number...),
 * KEEL_ENOPROC (no process is registered under that name), KEEL_EINVAL
 * (msg is KEEL_NONE), KEEL_ESTATE (no node running), KEEL_ENOMEM (the
 * message could not be allocated; nothing was delivered).
 * Thread-safe: callable from processes and from any other thread. */
int keel_send(keel_term pid, keel_term msg);

/* Sends to a pid of another node (the distribution layer installs one):
 * returns what keel_send should return. */
typedef int (*keel_remote_send_fn)(keel_term pid, keel_term msg, void *arg);

/* Installs (or, with NULL, removes) the router keel_send uses for pids
 * that name another node. Without one such sends are dropped silently,
 * as a send to an unreachable node is in Erlang. Thread-safe. */
void keel_set_remote_router(keel_remote_send_fn fn, void *arg);

/* Changes self's priority (erlang:process_flag(priority, P)) and returns
 * the previous one; an out-of-range prio changes nothing. Takes effect the
 * next time self becomes runnable. Call from self. */
keel_priority keel_set_priority(keel_proc *self, keel_priority prio);

/* Gives up the rest of the slice (erlang:yield): a fiber switches out at
 * once (as keel_fiber_yield); a handler process finishes its current
 * message and then goes behind the other runnable processes of its
 * scheduler before handling the next one. Returns KEEL_OK, or KEEL_ESTATE
 * when self is not the process running on this thread. */
int keel_yield(keel_proc *self);

/* Pid of the process. */
keel_term keel_self(const keel_proc *self);

/* The process's private heap: terms of the process's state live here and
 * stay valid until the process terminates. Only the process's own handler
 * and terminate callback may use it. */
keel_heap *keel_proc_heap(keel_proc *self);

/* The process's state pointer, and replacing it (e.g. in the first
 * handler call). */
void *keel_proc_state(const keel_proc *self);
void keel_proc_set_state(keel_proc *self, void *state);

/* Records `reason` as the exit reason of the calling process and returns
 * KEEL_EXIT, so a handler ends with `return keel_stop(self, reason);`
 * (erlang:exit/1). reason is copied into the process's heap; if the copy
 * fails for lack of memory the reason becomes 'system_limit'. Linked
 * processes and monitors see this reason. (To send an exit signal to
 * another process, see keel_exit in keel/signals.h.) */
keel_handler_status keel_stop(keel_proc *self, keel_term reason);

/* The process whose handler is running on the calling thread, or NULL on a
 * thread that is not running a process. */
keel_proc *keel_current(void);

/* ------------------------------------------------------------------------ */
/* Introspection                                                            */
/* ------------------------------------------------------------------------ */

typedef enum keel_process_status {
  KEEL_PROC_WAITING = 1, /* idle: waiting for a message */
  KEEL_PROC_RUNNABLE = 2 /* queued to run, or running */
} keel_process_status;

/* A snapshot of a process (erlang:process_info). The counts are those the
 * process published at the end of its last run; the queue length is
 * exact at the moment it is read. */
typedef struct keel_process_info_t {
  keel_term pid;
  keel_process_status status;
  bool fiber;
  keel_term registered_name; /* an atom, or 'undefined' */
  size_t message_queue_len;  /* messages queued, not yet handled/taken */
  uint64_t reductions;       /* budget units used so far */
  size_t links, monitors, monitored_by; /* saturate at 4095 */
  size_t heap_bytes;      /* words in the process heap, rounded to KiB */
  size_t memory;          /* control block + heap (fiber stacks apart) */
  const void *entry;      /* the handler, or the fiber's body function */
  const char *entry_name; /* its symbol name when the dynamic symbol
                             table has it (link with -rdynamic), or
                             NULL; lives as long as the program */
} keel_process_info_t;

/* Fills *out with a snapshot of the process pid, without stopping it. Its
 * links/monitors/monitored_by counts are those of the signals it has
 * handled; an idle process handles monitor and demonitor signals lazily
 * (docs/semantics.md), and this call makes it handle those it holds, so a
 * later call sees every monitor made before this one. Errors: KEEL_ENOPROC
 * (dead), KEEL_EBADARG (not a local pid), KEEL_EINVAL (out NULL), KEEL_ESTATE
 * (no node). Thread-safe. */
int keel_process_info(keel_term pid, keel_process_info_t *out);

/* What keel_process_info_ex may skip, for callers that read many
 * processes often (monitoring): KEEL_PINFO_NO_QUEUE leaves
 * message_queue_len SIZE_MAX (unknown) unless the process counts its
 * queue (max_queue or long_queue_on set), instead of asking the process
 * (a signal round trip); KEEL_PINFO_NO_SYMBOL leaves entry_name NULL
 * instead of looking the entry up in the dynamic symbol table. */
#define KEEL_PINFO_NO_QUEUE 1u
#define KEEL_PINFO_NO_SYMBOL 2u

/* keel_process_info without the parts named in skip (KEEL_PINFO_* bits;
 * 0 is keel_process_info). Same errors. Thread-safe. */
int keel_process_info_ex(keel_term pid, unsigned skip,
                         keel_process_info_t *out);

/* Most messages keel_process_queue_len counts for another process. */
#define KEEL_QUEUE_LEN_SCAN 4096u

/* The message queue length of the local process pid read without asking
 * it (no signal round trip, no wait: handler processes may call it, as
 * may monitoring code reading many processes). Exact for the caller
 * itself and for a process whose queue is counted (max_queue or
 * long_queue_on set). For any other process it is approximate: the
 * messages it held at the end of its last run, as the process published
 * them. The messages a selective receive skipped are counted as they
 * come and go; those still in its mailbox (a process that ran out of
 * budget with a backlog) are counted by the process at the end of a run
 * that follows a call of this function on it, at most every 10 ms,
 * up to KEEL_QUEUE_LEN_SCAN (a longer queue reads as that). Messages that
 * arrived since its last run are not included: an idle process's figure
 * is current, a running or runnable one's may lag by a run (or 10 ms).
 * keel_process_info asks the process for the exact figure. Errors:
 * KEEL_ENOPROC (dead, or a stale pid whose slot now holds another
 * process), KEEL_EBADARG (not a local pid), KEEL_EINVAL (out NULL),
 * KEEL_ESTATE (no node). Thread-safe, lock-free. */
int keel_process_queue_len(keel_term pid, size_t *out);

/* The relations of a process (its links and monitors, by pid). */
typedef struct keel_process_relations_t {
  size_t nlinks, nmonitors, nmonitored_by; /* how many there are */
  keel_term links;        /* the pids it is linked to (at most max) */
  keel_term monitors;     /* the pids it monitors, one per monitor */
  keel_term monitored_by; /* the pids monitoring it, one per monitor */
} keel_process_relations_t;

/* Lists the links and monitors of the local process pid (OTP's
 * process_info(Pid, [links, monitors, monitored_by])), at most max pids
 * per list (the counts are complete), built in h. Asked through a signal
 * the process answers when it next handles its signals, so the answer
 * includes every link and monitor made before the call. Relations with
 * pids of other nodes are not listed. The caller waits (at most 5 s): a
 * fiber process or a thread that is not a process.
 * Errors: KEEL_ENOPROC (dead), KEEL_EBADARG (not a local pid), KEEL_EINVAL
 * (h or out NULL, max 0 or huge), KEEL_ESTATE (no node, or called from a
 * handler process), KEEL_ETIMEDOUT (no answer in 5 s), KEEL_ENOMEM.
 * Thread-safe. */
int keel_process_relations(keel_term pid, size_t max, keel_heap *h,
                           keel_process_relations_t *out);

/* The pids of the live processes (erlang:processes): stores up to max of
 * them in out (may be NULL when max is 0) and returns how many are alive
 * (so a caller can size its array and call again). A snapshot taken
 * without stopping anything. Thread-safe. */
size_t keel_processes(keel_term *out, size_t max);

/* ------------------------------------------------------------------------ */
/* Timers                                                                   */
/* ------------------------------------------------------------------------ */

/* Longest timer, in milliseconds (as erlang:send_after's limit). */
#define KEEL_TIMER_MAX_MS UINT64_C(4294967295)

/* Handle of a timer started by keel_send_after: a generation-counted
 * index into the node's timer table (never 0). Once the timer has fired
 * or been cancelled its handle names nothing (a later timer reusing the
 * record has another generation), so a stale handle is harmless. Handles
 * are local to the running node. */
typedef uint64_t keel_timer_ref;

/* Starts a timer that delivers a copy of msg to the process `dest` after
 * `ms` milliseconds (0 = as soon as possible), measured on the monotonic
 * clock from this call; it is never delivered earlier. The copy is made
 * now, on the calling thread. If dest is dead when the timer fires, the
 * message is dropped silently. On success stores the timer's handle in
 * *ref (may be NULL).
 * Timers to one destination fire in deadline order (equal deadlines in
 * start order, for starts from one thread): they share the wheel of one
 * scheduler, chosen by the destination. Delivery counts as a send from the
 * runtime: it is not ordered with the messages of any process.
 * Errors: KEEL_ESTATE (no node running, or it is stopping), KEEL_EBADARG
 * (dest is not a local pid), KEEL_EINVAL (msg is KEEL_NONE, or ms >
 * KEEL_TIMER_MAX_MS), KEEL_ENOMEM, KEEL_ESYSLIMIT (2^24 timers exist).
 * Thread-safe: callable from processes and from any other thread. */
int keel_send_after(keel_term dest, keel_term msg, uint64_t ms,
                    keel_timer_ref *ref);

/* Cancels a timer of keel_send_after. Returns 1 when the timer was pending
 * and is now cancelled: its message will never be delivered. Returns 0
 * when it had already fired (its message is delivered or on its way and
 * will arrive unless the destination dies), was cancelled before, or the
 * handle names no timer (erlang:cancel_timer's false). Exactly one of
 * "fired" and "cancelled" happens to each timer, whatever the threads.
 * A cancelled timer's record (and message) is freed at once on the
 * thread of the scheduler that owns it, else by that scheduler on its next
 * pass. Errors: KEEL_ESTATE (no node running),
 * KEEL_EBADARG (ref cannot be a handle). Thread-safe. */
int keel_cancel_timer(keel_timer_ref ref);

/* erlang:start_timer: like keel_send_after, but the message delivered is
 * {timeout, Ref, msg}, Ref being a reference term naming the timer (built
 * in h and stored in *ref). keel_timer_ref_of turns Ref back into a handle
 * for keel_cancel_timer / keel_read_timer.
 * Errors: as keel_send_after, and KEEL_EINVAL for a NULL h or ref. */
int keel_start_timer(keel_term dest, keel_term msg, uint64_t ms, keel_heap *h,
                     keel_term *ref);

/* The reference term of a timer handle (as in start_timer's messages),
 * built in h; KEEL_NONE when h is NULL, ref is 0 or h is full. */
keel_term keel_timer_ref_term(keel_heap *h, keel_timer_ref ref);

/* The handle a timer reference term names: KEEL_OK, or KEEL_EBADARG when
 * t is not a timer reference of this node. */
int keel_timer_ref_of(keel_term t, keel_timer_ref *ref);

/* erlang:read_timer: milliseconds left before the timer fires (0 when it
 * is due), or KEEL_ENOENT when it is not pending (fired, cancelled, or
 * never this handle's), KEEL_EBADARG, KEEL_ESTATE. The answer is a
 * snapshot. Thread-safe. */
int64_t keel_read_timer(keel_timer_ref ref);

/* Receive timeout of a handler process (gen_server's timeout): asks that
 * the process's handler be called with msg = the atom 'timeout' and
 * keel_proc_timed_out(self) true if no message is handled within `ms`
 * milliseconds from this call (never earlier, on the monotonic clock).
 * The timeout is cancelled by the next message the process handles (a
 * message that reaches the mailbox before the timeout fires is always
 * handled first, and the timeout is then dropped), and replaced by the
 * next call; ms < 0 just cancels it. It is never a message: it does not
 * appear in the mailbox as a term, is not counted in messages_sent, and a
 * real 'timeout' message is told apart by keel_proc_timed_out() == false.
 * Call only from self's handler, on its thread.
 * Errors: KEEL_ESTATE (not called from self's handler, or self is
 * terminating), KEEL_EINVAL (ms > KEEL_TIMER_MAX_MS), KEEL_ENOMEM,
 * KEEL_ESYSLIMIT. */
int keel_proc_set_timeout(keel_proc *self, int64_t ms);

/* Whether the running handler call of self is a receive timeout (see
 * keel_proc_set_timeout) rather than a message. */
bool keel_proc_timed_out(const keel_proc *self);

/* ------------------------------------------------------------------------ */
/* Fiber processes                                                          */
/* ------------------------------------------------------------------------ */

/* Stack sizes of fiber processes: default, smallest and largest class. */
#define KEEL_FIBER_STACK_DEFAULT ((size_t)64 * 1024)
#define KEEL_FIBER_STACK_MIN ((size_t)16 * 1024)
#define KEEL_FIBER_STACK_MAX ((size_t)2 * 1024 * 1024)

/* Timeout of keel_receive that never expires. */
#define KEEL_INFINITY ((int64_t)-1)

/* Body of a fiber process: plain sequential code that may block in
 * keel_receive anywhere in its call chain. Returning ends the process with
 * reason 'normal' (or the reason recorded earlier with keel_stop). */
typedef void (*keel_fiber_fn)(keel_proc *self, void *arg);

/* Spawns a fiber process: fn(self, arg) runs on the process's own stack
 * (taken from the node's stack pool, opts->stack_size or the default; a
 * guard page below it). It shares the process control block, mailbox,
 * scheduling and pid rules of handler processes and is runnable at once;
 * it may resume on another scheduler thread after any keel_receive,
 * keel_send or keel_fiber_yield, so it must not keep thread_local
 * addresses across those calls. arg is owned by the caller's code
 * (keel_proc_state(self) is arg too, so opts->terminate can free it).
 * When the process ends, or is terminated while suspended (node stop),
 * the fiber is never resumed: terminate runs, then its stack goes back to
 * the pool. Anything the fiber allocated must be reachable from its state
 * for terminate to free it. opts may be NULL. On success stores the pid in
 * *pid (may be NULL).
 * Errors: KEEL_EINVAL (fn NULL, stack_size above KEEL_FIBER_STACK_MAX),
 * KEEL_ESTATE (no node running, or it is stopping), KEEL_ESYSLIMIT (the
 * process limit, or the stack budget below vm.max_map_count, is reached),
 * KEEL_ENOMEM (no stack could be mapped), KEEL_EUNSUPPORTED (no context
 * switch for this architecture).
 * Thread-safe: callable from processes and from any other thread. */
int keel_spawn_fiber(keel_fiber_fn fn, void *arg, const keel_spawn_opts *opts,
                     keel_term *pid);

/* Decides whether keel_receive takes msg (true) or leaves it queued. Runs
 * on the fiber's stack; must not call keel_receive. */
typedef bool (*keel_receive_match_fn)(keel_term msg, void *arg);

/* Selective receive of a fiber process: returns the oldest message for
 * which match(msg, match_arg) is true (NULL match: any message). Messages
 * that do not match stay queued in their order for later receives. While
 * no message matches, only the fiber blocks; its scheduler runs other
 * processes. A wake-up examines only messages that arrived since the last
 * scan (a save pointer); each call first re-examines the messages earlier
 * calls skipped.
 * timeout_ms: 0 = poll (never blocks), KEEL_INFINITY = wait forever,
 * otherwise at most KEEL_TIMER_MAX_MS milliseconds (never earlier, on the
 * monotonic clock); a message that reaches the mailbox before the
 * deadline is always taken first. A receive timeout set with
 * keel_proc_set_timeout is replaced by this call's.
 * *msg_out stays valid until the fiber's next keel_receive or its end (the
 * process owns it): copy what must outlive that into keel_proc_heap(self).
 * Returns KEEL_OK, KEEL_ETIMEDOUT (nothing matched in time; the mailbox is
 * unchanged), KEEL_EINVAL (self or msg_out NULL, timeout_ms < -1 or too
 * large), KEEL_ESTATE (self is not a fiber process running on the calling
 * thread), KEEL_ENOMEM / KEEL_ESYSLIMIT (the timeout could not be armed).
 * The process's slice budget is charged KEEL_COST_MESSAGE per message
 * received; when it is used up the fiber yields first. */
int keel_receive(keel_proc *self, keel_receive_match_fn match, void *match_arg,
                 int64_t timeout_ms, keel_term *msg_out);

/* The receive mark (BEAM's recv_mark, what the compiler does before a
 * gen_server call): the next keel_receive or keel_receive_pattern of self
 * does not examine any message queued before this call, however many
 * there are, so a call made with a 1M-message backlog costs the same as
 * with none. Use it right after creating the fresh ref or alias that the
 * awaited reply must contain (messages older than the ref cannot hold it).
 * The skipped messages stay queued in order for later receives. A second
 * mark before that receive replaces the first. Fibers only.
 * Errors: KEEL_ESTATE (self is not the fiber running here), KEEL_ENOMEM. */
int keel_receive_mark(keel_proc *self);

/* keel_receive with a compiled pattern (keel_match of keel/term.h): takes
 * the oldest message matching p and stores its captures in caps (an array
 * of keel_pattern_nvars(p) terms, may be NULL when there are none), which
 * point into *msg_out and share its lifetime. Errors as keel_receive, and
 * KEEL_EINVAL for a NULL p. */
int keel_receive_pattern(keel_proc *self, const keel_pattern *p,
                         int64_t timeout_ms, keel_term *msg_out,
                         keel_term *caps);

/* Gives the scheduler to the other runnable processes; the fiber resumes
 * later (possibly on another scheduler thread). Returns KEEL_OK, or
 * KEEL_ESTATE when self is not a fiber process running on the calling
 * thread. */
int keel_fiber_yield(keel_proc *self);

/* Hibernation (erlang:hibernate/3): the fiber gives up its stack and
 * everything on it, and the process waits for a message with no stack at
 * all; when one arrives (or is already queued) it starts afresh, on a new
 * stack, with fn(self, arg). Its mailbox, heap, state pointer, links,
 * monitors and name are kept; the last received message and any armed
 * receive timeout are dropped. Never returns on success (the code after
 * the call never runs); returns KEEL_EINVAL (fn NULL) or KEEL_ESTATE (self
 * is not the fiber running here). */
int keel_fiber_hibernate(keel_proc *self, keel_fiber_fn fn, void *arg);

/* Compacts the process heap (the memory side of hibernation, for handler
 * processes too): copies the n terms of roots into a fresh heap, frees the
 * old one and stores the copies back into roots. Every other term in the
 * old heap becomes invalid, so roots must name every term the process
 * still needs. Call only from self's handler, terminate callback or fiber.
 * Errors: KEEL_ENOMEM (nothing changed), KEEL_EINVAL (roots NULL with n >
 * 0), KEEL_ESTATE. */
int keel_proc_compact(keel_proc *self, keel_term *roots, size_t n);

/* Whether self is a fiber process. */
bool keel_proc_is_fiber(const keel_proc *self);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_RUNTIME_H */
