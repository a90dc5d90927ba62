/*
 * keel/signals.h - exit signals, links, monitors, aliases, references and
 * registered names: OTP's process relationships (see docs/semantics.md).
 *
 * Every signal between two processes (messages, exit, link, unlink,
 * monitor, demonitor and 'DOWN') travels in one ordered stream per sender
 * and receiver: if A sends s1 then s2 to B, B handles s1 first, whatever
 * their kinds. Signals are handled at the receiver's next run even if it
 * never receives (handler processes: before their next message; fibers: at
 * their next keel_receive or keel_fiber_yield), ahead of any message
 * backlog.
 *
 * Functions taking `self` must be called by that process (from its handler,
 * terminate callback or fiber) on its own thread; the others are
 * thread-safe and may also be called from threads that are not processes.
 */
#ifndef KEEL_SIGNALS_H
#define KEEL_SIGNALS_H

#include <stdbool.h>

#include "keel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* References                                                               */
/* ------------------------------------------------------------------------ */

/* A new reference, unique on this node while it runs (erlang:make_ref),
 * built in h. KEEL_NONE when no node runs, h is NULL or h is out of memory.
 * Thread-safe. */
keel_term keel_make_ref(keel_heap *h);

/* ------------------------------------------------------------------------ */
/* Exit signals and links                                                   */
/* ------------------------------------------------------------------------ */

/* Sends an exit signal with `reason` to the process `pid` (erlang:exit/2).
 * The receiver, when it handles it:
 *   - reason 'kill': dies with reason 'killed', even when trapping exits;
 *   - trapping exits: gets the message {'EXIT', From, Reason};
 *   - otherwise reason 'normal' is ignored (unless the receiver is the
 *     sender: exit(self(), normal) ends it with 'normal'), and any other
 *     reason ends it with that reason.
 * From is the calling process's pid, or the atom 'undefined' when called
 * from a thread that is not a process. A dead pid: nothing happens. A pid
 * of another node: see "Pids of other nodes" below.
 * Errors: KEEL_ESTATE (no node), KEEL_EBADARG (pid is not a pid),
 * KEEL_EINVAL (reason is KEEL_NONE), KEEL_ENOMEM (nothing was sent). */
int keel_exit(keel_term pid, keel_term reason);

/* Sets whether self traps exits (process_flag(trap_exit, on)) and returns
 * the previous setting. */
bool keel_trap_exit(keel_proc *self, bool on);

/* Whether self traps exits. */
bool keel_trapping_exits(const keel_proc *self);

/* Links self and pid (erlang:link/1): when either dies, the other gets an
 * exit signal with the dead one's reason. Idempotent: linking twice makes
 * one link. Linking to self does nothing.
 * If pid is dead: when self traps exits, returns KEEL_OK and the message
 * {'EXIT', Pid, noproc} arrives; otherwise returns KEEL_ENOPROC. A pid that
 * dies before it handles the link request answers with an exit signal
 * whose reason is 'noproc'. A pid of another node: see "Pids of other
 * nodes" below.
 * Errors: KEEL_EBADARG (pid is not a pid), KEEL_ESTATE (self is not the
 * calling process), KEEL_ENOMEM. */
int keel_link(keel_proc *self, keel_term pid);

/* Removes the link between self and pid, if any (erlang:unlink/1). Once
 * this returns the link has no further effect on self: no exit signal
 * through it will act on self or arrive as an 'EXIT' message after this
 * call, except one {'EXIT', Pid, _} that was already queued as a message
 * (trapping processes; remove it with keel_flush_exit).
 * Errors: KEEL_EBADARG, KEEL_ESTATE, KEEL_ENOMEM (the link is then kept).
 * A pid of another node: the link is dropped here and the distribution
 * layer is told. */
int keel_unlink(keel_proc *self, keel_term pid);

/* Removes from self's queue the {'EXIT', Pid, _} messages already there
 * (the `receive {'EXIT', Pid, _} -> true after 0 -> true end` after an
 * unlink). Returns how many were removed. */
size_t keel_flush_exit(keel_proc *self, keel_term pid);

/* ------------------------------------------------------------------------ */
/* Monitors and aliases                                                     */
/* ------------------------------------------------------------------------ */

/* Options of keel_monitor. */
enum keel_monitor_flags {
  /* The monitor ref is also an alias of self (monitor/3's {alias, ...}):
   * messages sent to it (keel_send) reach self while the monitor lasts. */
  KEEL_MONITOR_ALIAS = 1,
  /* With KEEL_MONITOR_ALIAS: the first message received through the alias
   * also ends the monitor and the alias ({alias, reply_demonitor}). */
  KEEL_MONITOR_REPLY_DEMONITOR = 2
};

/* Monitors pid (erlang:monitor(process, Pid)): when it dies, self gets
 * exactly one message {'DOWN', Ref, process, Pid, Reason}; Reason is
 * 'noproc' when pid is already dead. Each call makes an independent
 * monitor. The ref is built in h and stored in *ref. A pid of another
 * node: see "Pids of other nodes" below ('DOWN' with 'noconnection'; the
 * alias flags are not supported there: KEEL_EUNSUPPORTED).
 * Errors: KEEL_EBADARG (pid not a pid), KEEL_EINVAL (h or ref NULL,
 * unknown flags), KEEL_ESTATE, KEEL_ENOMEM. */
int keel_monitor(keel_proc *self, keel_term pid, unsigned flags, keel_heap *h,
                 keel_term *ref);

/* Flags of keel_demonitor. */
#define KEEL_DEMONITOR_FLUSH 1u

/* Ends the monitor ref of self (erlang:demonitor/2). After it returns no
 * {'DOWN', Ref, ...} message will be added to self's queue; with
 * KEEL_DEMONITOR_FLUSH one already there is removed too. A monitor's alias
 * ends with it. Returns 1 when the monitor was active, 0 when it was not
 * (already fired, ended, or not self's), or KEEL_ESTATE. */
int keel_demonitor(keel_proc *self, keel_term ref, unsigned flags);

/* A new alias of self (erlang:alias/0): a reference that keel_send
 * accepts as a destination; messages sent to it reach self until
 * keel_unalias. Built in h.
 * Errors: KEEL_EINVAL, KEEL_ESTATE, KEEL_ENOMEM. */
int keel_alias(keel_proc *self, keel_heap *h, keel_term *alias);

/* Deactivates an alias of self (also a monitor's): messages sent to it
 * later are dropped, and so are ones still in flight. Returns 1 when it
 * was active, 0 otherwise, or KEEL_ESTATE. */
int keel_unalias(keel_proc *self, keel_term alias);

/* ------------------------------------------------------------------------ */
/* Registered names                                                         */
/* ------------------------------------------------------------------------ */

/* Registers pid under the atom name (erlang:register/2). keel_send then
 * accepts the name as a destination. The name is released when the process
 * dies, before its links and monitors hear of the death.
 * Errors: KEEL_EBADARG (name not an atom, or 'undefined'; pid not a local
 * pid), KEEL_EEXIST (name taken, or pid already has a name), KEEL_ENOPROC
 * (pid is dead), KEEL_ESTATE (no node). Thread-safe. */
int keel_register(keel_term name, keel_term pid);

/* Removes a registration (erlang:unregister/1). KEEL_ENOENT when name is
 * not registered, KEEL_EBADARG, KEEL_ESTATE. Thread-safe. */
int keel_unregister(keel_term name);

/* The pid registered under name, or the atom 'undefined'. Lock-free. */
keel_term keel_whereis(keel_term name);

/* The name self is registered under, or 'undefined'. Thread-safe. */
keel_term keel_registered_name(keel_term pid);

/* ------------------------------------------------------------------------ */
/* Exit hooks (for higher layers: tables, registries)                       */
/* ------------------------------------------------------------------------ */

/* Called when an armed process dies, on the dying process's thread, after
 * its name is released and before its links and monitors are told (so a
 * partner that sees the death also sees what the hook cleaned up). reason
 * lives until the call returns. The hook must not block; it may send. */
typedef void (*keel_exit_hook_fn)(keel_term pid, keel_term reason, void *arg);

#define KEEL_EXIT_HOOKS_MAX 16

/* Registers a hook for the life of the program; returns its id (0 ..
 * KEEL_EXIT_HOOKS_MAX - 1), or KEEL_ESYSLIMIT when all are taken,
 * KEEL_EINVAL for a NULL fn. Thread-safe; meant for start-up. */
int keel_exit_hook_add(keel_exit_hook_fn fn, void *arg);

/* Arms hook `id` for the process pid: it runs once when pid dies (arming
 * twice is arming once). Errors: KEEL_ENOPROC (pid is dead),
 * KEEL_EBADARG (pid not a local pid), KEEL_EINVAL (unknown id),
 * KEEL_ESTATE (no node). Thread-safe. */
int keel_exit_hook_arm(keel_term pid, int id);

/* ------------------------------------------------------------------------ */
/* Pids of other nodes (for the distribution layer)                         */
/* ------------------------------------------------------------------------ */

/* keel_link and keel_monitor accept a pid of another node. The runtime
 * keeps the relation on the local side and tells the distribution layer
 * (the signal hook below); it fires with reason 'noconnection' when the
 * layer declares the connection to that node lost (keel_dist_nodedown),
 * as in OTP:
 *   - monitoring a pid of a node that is not up gives at once
 *     {'DOWN', Ref, process, Pid, noconnection};
 *   - linking to one gives the caller an exit signal from Pid with reason
 *     'noconnection' (a trapping caller gets {'EXIT', Pid, noconnection},
 *     another one dies with that reason);
 *   - when a node goes down, every local process linked to or monitoring a
 *     pid of that node gets the same, once per link or monitor.
 * keel_exit to a pid of another node goes to the layer too
 * (KEEL_DIST_EXIT2) when that node is up; to a node that is not up it
 * does nothing (OTP tries to connect first and drops it if it cannot). */

/* What the runtime asks the distribution layer to send to a remote pid. */
typedef enum keel_dist_signal {
  KEEL_DIST_LINK = 1,  /* from links to `to` */
  KEEL_DIST_UNLINK,    /* from drops its link to `to` */
  KEEL_DIST_MONITOR,   /* from monitors `to` with `ref` */
  KEEL_DIST_DEMONITOR, /* from ends its monitor `ref` of `to` */
  KEEL_DIST_EXIT,      /* from died with `reason`, linked to `to` */
  KEEL_DIST_EXIT2      /* from calls exit(to, reason) (keel_exit) */
} keel_dist_signal;

/* Called on the calling process's thread; the terms live until it
 * returns (copy what is kept). ref and reason are KEEL_NONE when unused.
 * Must not block. */
typedef void (*keel_dist_signal_fn)(keel_dist_signal kind, keel_term from,
                                    keel_term to, keel_term ref,
                                    keel_term reason, void *arg);

/* Installs (or, with NULL, removes) the hook above. Thread-safe. */
void keel_set_dist_signal_hook(keel_dist_signal_fn fn, void *arg);

/* Declares the connection to `node` (an atom, not this node's name) up:
 * links and monitors to its pids are kept from now on, until
 * keel_dist_nodedown. Up already: nothing changes.
 * Errors: KEEL_EBADARG (not an atom, or the local node's name),
 * KEEL_ESTATE (no node running), KEEL_ENOMEM. Thread-safe. */
int keel_dist_nodeup(keel_term node);

/* Declares the connection to `node` lost: every link and monitor that a
 * local process made to a pid of that node while it was up fires with
 * reason 'noconnection' (the process handles it like any signal; later
 * relations go to the next connection). Returns the number of processes
 * told (0 when the node was not up), or KEEL_EBADARG, KEEL_ESTATE,
 * KEEL_ENOMEM (nobody was told; the node stays up). Thread-safe. */
int keel_dist_nodedown(keel_term node);

/* Whether the connection to `node` is up. Thread-safe. */
bool keel_dist_is_up(keel_term node);

/* Delivers to the local process `to` an exit signal that the process
 * `from` of another node sent: through their link (link true: it acts
 * only while `to` still has its link to `from`, and ends it, as a local
 * link exit does) or by exit(To, Reason) (link false: 'kill' is
 * untrappable and becomes 'killed'). The reason is copied. A dead `to`:
 * nothing happens. Errors: KEEL_EBADARG (from is not a pid of another
 * node, to not a local pid), KEEL_EINVAL (reason is KEEL_NONE),
 * KEEL_ESTATE (no node), KEEL_ENOMEM. Thread-safe. */
int keel_dist_exit(keel_term from, keel_term to, keel_term reason, bool link);

/* Delivers {'DOWN', Ref, process, From, Reason} to the local process `to`
 * for its monitor `ref` of `from`, a pid of another node that died: only
 * while that monitor is active (it ends it); a demonitored one gets
 * nothing. Errors as keel_dist_exit, and KEEL_EBADARG when ref is not a
 * local ref. Thread-safe. */
int keel_dist_down(keel_term from, keel_term to, keel_term ref,
                   keel_term reason);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_SIGNALS_H */
