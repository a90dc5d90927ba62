/*
 * keel/pg.h - OTP's pg: named process groups in scopes (layer 5, otp).
 *
 * A scope is an independent set of groups; a group is any term; a member
 * is a local pid. A pid may join a group many times (and must then leave
 * as many times), and be in any number of groups of any number of scopes.
 * An empty group and a group that never existed are the same thing.
 *
 * Storage: per scope, ETS tables ({Group, Members} with Members a list
 * holding a pid once per join, as pg's own table; {Pid, Group} for the
 * groups of a pid; the monitors). Reads (get_members, which_groups) go
 * straight to ETS without a lock or a message. Writes (join, leave,
 * monitor, demonitor, and the cleanup at death) hold the scope's mutex for
 * a few table operations, which serialises them as pg's scope server
 * does: a monitor's snapshot and the notifications that follow it never
 * miss or repeat a change. Notifications are sent by the scope's own
 * process (a handler process started by keel_pg_scope_new), in the order
 * of the changes; they arrive shortly after the call that caused them.
 *
 * Death: joining arms a runtime exit hook for the member (and monitoring
 * one for the monitoring process); when it dies, the hook removes it from
 * every group of every scope (sending the leave notifications) and ends
 * its monitors, on the dying process's thread before its links and
 * monitors are told: whoever sees its 'DOWN' no longer sees it in a group.
 *
 * Local only: the design keeps what a cluster-wide pg needs (per-scope
 * state that a scope process could exchange with its peers); see
 * docs/behaviours/registry.md for what is left.
 *
 * Thread-safety: every function may be called from any thread and any
 * process concurrently, except that a scope must not be used while or
 * after keel_pg_scope_delete runs on it; a keel_heap passed in belongs to
 * the calling thread.
 */
#ifndef KEEL_PG_H
#define KEEL_PG_H

#include "keel/error.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_pg_scope keel_pg_scope;

/* Creates a scope named by the atom name (KEEL_NONE: unnamed) and starts
 * its process; needs a running node, and the scope sends no notification
 * once that node stops (delete it then). *out is owned by the caller
 * until keel_pg_scope_delete. A scope created from a process has its
 * tables owned by that process and unusable once it dies (calls then
 * return KEEL_EBADARG). Errors: KEEL_EINVAL (name not an atom, out NULL),
 * KEEL_EEXIST (name taken), KEEL_ESTATE (no node), KEEL_ESYSLIMIT (no
 * exit hook or process left), KEEL_ENOMEM. */
int keel_pg_scope_new(keel_term name, keel_pg_scope **out);

/* Deletes a scope and its groups and monitors (nobody is told; what was
 * already queued is still sent) and ends its process. Waits for writers
 * and cleanups in progress. NULL is a no-op. KEEL_OK. */
int keel_pg_scope_delete(keel_pg_scope *scope);

/* The scope named name, or NULL. */
keel_pg_scope *keel_pg_scope_find(keel_term name);

/* pg:join/3: pids (a local pid or a non-empty proper list of local pids)
 * join group, once more each. Monitors of the scope and the group get
 * {Ref, join, Group, Pids}. Errors: KEEL_EBADARG (not local pids, group
 * KEEL_NONE), KEEL_ENOPROC (a pid is dead: nobody joins), KEEL_EINVAL
 * (scope NULL), KEEL_ENOMEM. */
int keel_pg_join(keel_pg_scope *scope, keel_term group, keel_term pids);

/* pg:leave/3: each of pids leaves group once (those that are not in it
 * are skipped). Monitors get {Ref, leave, Group, Left} with the pids that
 * left. KEEL_OK, or KEEL_ENOENT when none of them was in the group (OTP's
 * not_joined), KEEL_EBADARG, KEEL_EINVAL, KEEL_ENOMEM. */
int keel_pg_leave(keel_pg_scope *scope, keel_term group, keel_term pids);

/* pg:get_members/2: the members of group (a pid once per join), as a list
 * built in h; [] for an empty or unknown group. get_local_members is the
 * same while pg is local only. Errors: KEEL_EINVAL, KEEL_EBADARG (scope's
 * tables gone), KEEL_ENOMEM. */
int keel_pg_get_members(keel_pg_scope *scope, keel_term group, keel_heap *h,
                        keel_term *out);
int keel_pg_get_local_members(keel_pg_scope *scope, keel_term group,
                              keel_heap *h, keel_term *out);

/* pg:which_groups/1: every non-empty group, as a list built in h. */
int keel_pg_which_groups(keel_pg_scope *scope, keel_heap *h, keel_term *out);

/* pg:monitor_scope/1: the calling process (KEEL_ESTATE if none) is sent
 * {Ref, join, Group, Pids} and {Ref, leave, Group, Pids} for every change
 * of every group after this call. Stores Ref in *ref and the current
 * groups, a map Group => Members, in *groups (may be NULL), built in h.
 * Errors: KEEL_EINVAL, KEEL_ESTATE, KEEL_EBADARG, KEEL_ENOMEM. */
int keel_pg_monitor_scope(keel_pg_scope *scope, keel_heap *h, keel_term *ref,
                          keel_term *groups);

/* pg:monitor/2: as monitor_scope, for one group; *members (may be NULL)
 * receives its current members. */
int keel_pg_monitor(keel_pg_scope *scope, keel_term group, keel_heap *h,
                    keel_term *ref, keel_term *members);

/* pg:demonitor/2: ends a monitor of either kind; no notification is sent
 * for it after this returns. KEEL_OK, or KEEL_ENOENT (not an active
 * monitor of this scope), KEEL_EINVAL. A monitor also ends when its
 * process dies. */
int keel_pg_demonitor(keel_pg_scope *scope, keel_term ref);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_PG_H */
