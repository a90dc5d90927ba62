/*
 * keel/supervisor.h - supervisors (OTP's supervisor behaviour): a process
 * that starts child processes in order, watches them through links and
 * restarts them by a strategy, within a restart intensity.
 *
 * A supervisor is a fiber process that traps exits. Its children are
 * started through the start function of their child spec (OTP's
 * {M, F, A}): it runs inside the supervisor, must spawn a process linked
 * to the supervisor (keel_spawn_opts.link, or keel_link) and return its
 * pid; it may wait in keel_receive for the child to finish its own
 * initialisation (a synchronous start, as proc_lib's). Nested supervisors
 * are started by a start function that calls keel_sup_start_link.
 *
 * Every function of this header that talks to a running supervisor is a
 * synchronous request handled inside the supervisor, in arrival order.
 * They may be called from a fiber process (it waits in keel_receive, with
 * a receive mark, through a monitor alias, so a late reply is dropped),
 * or from a thread that is not a process (a temporary proxy fiber makes
 * the request and the thread waits on a condition variable; on a simulated
 * node the driving thread steps the simulation until the answer comes).
 * A handler process cannot wait: it gets KEEL_ESTATE.
 *
 * Reports are telemetry events (keel/telemetry.h), with metadata
 * supervisor (pid), id, pid, reason where they apply:
 *   [keel, supervisor, child_terminated]  a child exited by itself
 *   [keel, supervisor, child_restart]     a child was restarted
 *   [keel, supervisor, start_error]       a child's start failed
 *   [keel, supervisor, shutdown_error]    a child did not end with the
 *                                         expected reason when shut down
 *   [keel, supervisor, shutdown]          the supervisor gives up: reason
 *                                         reached_max_restart_intensity
 *                                         or auto_shutdown
 */
#ifndef KEEL_SUPERVISOR_H
#define KEEL_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the descriptor layouts of this header (for code reload). */
#define KEEL_SUP_VERSION 1u

/* Returned by a start function (and by start calls) when the child chose
 * not to start (OTP's ignore): a static child is kept with no pid. */
#define KEEL_SUP_IGNORE 1

/* Special shutdown values of keel_sup_child_spec.shutdown. */
#define KEEL_SUP_SHUTDOWN_DEFAULT                                              \
  ((int64_t)0)                             /* 5000 ms, infinity for            \
                                              supervisors */
#define KEEL_SUP_BRUTAL_KILL ((int64_t)-2) /* exit(Child, kill) */
/* KEEL_INFINITY (keel/runtime.h): wait for the child forever. */

typedef enum keel_sup_restart {
  KEEL_SUP_PERMANENT = 0, /* always restarted */
  KEEL_SUP_TRANSIENT = 1, /* restarted unless it exits with normal,
                             shutdown or {shutdown, _} */
  KEEL_SUP_TEMPORARY = 2  /* never restarted; removed when it exits */
} keel_sup_restart;

typedef enum keel_sup_child_type {
  KEEL_SUP_WORKER = 0,
  KEEL_SUP_SUPERVISOR = 1
} keel_sup_child_type;

typedef enum keel_sup_strategy {
  KEEL_SUP_ONE_FOR_ONE = 0,
  KEEL_SUP_ONE_FOR_ALL = 1,
  KEEL_SUP_REST_FOR_ONE = 2
} keel_sup_strategy;

typedef enum keel_sup_auto_shutdown {
  KEEL_SUP_AUTO_NEVER = 0,
  KEEL_SUP_AUTO_ANY_SIGNIFICANT = 1,
  KEEL_SUP_AUTO_ALL_SIGNIFICANT = 2
} keel_sup_auto_shutdown;

/* Starts one child, inside the supervisor process `sup` (a fiber). arg is
 * the child spec's; extra is [] for a supervisor and a dynamic
 * supervisor's extra arguments (a list) for keel_dynsup children. On
 * KEEL_OK *pid must be a live local pid linked to sup. May return
 * KEEL_SUP_IGNORE, or a negative KEEL_E* code (the start failed). */
typedef int (*keel_sup_start_fn)(keel_proc *sup, void *arg, keel_term extra,
                                 keel_term *pid);

/* A child spec. Zero-initialise, then set id and start (the rest defaults
 * to a permanent worker with shutdown 5000 ms). */
typedef struct keel_sup_child_spec {
  keel_term id; /* any term, unique in its supervisor; copied */
  keel_sup_start_fn start;
  void *arg; /* owned by the caller; must outlive the child spec's use */
  keel_sup_restart restart;
  /* Milliseconds to wait after exit(Child, shutdown) before killing it;
   * KEEL_SUP_SHUTDOWN_DEFAULT, KEEL_SUP_BRUTAL_KILL or KEEL_INFINITY. */
  int64_t shutdown;
  keel_sup_child_type type;
  /* A significant child's own exit may stop the supervisor (see
   * auto_shutdown). Not allowed for permanent children. */
  bool significant;
} keel_sup_child_spec;

/* A supervisor's description (its init/1 result). Use KEEL_SUP_SPEC_INIT
 * for OTP/Elixir's defaults (one_for_one, 3 restarts in 5 s). */
typedef struct keel_sup_spec {
  unsigned version; /* KEEL_SUP_VERSION */
  keel_sup_strategy strategy;
  unsigned intensity; /* most restarts within period_ms */
  uint64_t period_ms; /* > 0 */
  keel_sup_auto_shutdown auto_shutdown;
  const keel_sup_child_spec *children; /* started in this order */
  size_t nchildren;
  keel_term name; /* KEEL_NONE, or an atom to register the supervisor */
} keel_sup_spec;

#define KEEL_SUP_SPEC_INIT                                                     \
  {                                                                            \
    .version = KEEL_SUP_VERSION, .strategy = KEEL_SUP_ONE_FOR_ONE,             \
    .intensity = 3, .period_ms = 5000, .auto_shutdown = KEEL_SUP_AUTO_NEVER,   \
    .name = KEEL_NONE                                                          \
  }

/* Starts a supervisor and returns once every child has started (in
 * order). Called from a fiber process, the supervisor is linked to it
 * (its parent: the parent's exit signal makes the supervisor stop its
 * children in reverse order and exit with the same reason). Called from a
 * thread that is not a process it has no parent; stop it with
 * keel_sup_stop. spec and its children array are copied.
 * On success stores the supervisor's pid in *pid (may be NULL).
 * Errors: KEEL_EINVAL (a bad spec: unknown version, strategy, restart,
 * type or shutdown, period 0, a duplicate id, no start function, a
 * significant permanent child, significant children with auto_shutdown
 * never), KEEL_EBADARG (name not an atom), KEEL_EEXIST (name taken),
 * KEEL_ESTATE (called from a handler process, no node), spawn's errors,
 * or the negative code a child's start function returned: the children
 * already started were stopped in reverse order and the supervisor exited
 * with {shutdown, {failed_to_start_child, Id, Code}} (Code an atom such
 * as 'KEEL_ENOMEM'), after unlinking from the caller. */
int keel_sup_start_link(const keel_sup_spec *spec, keel_term *pid);

/* Adds a child to a running supervisor and starts it. Returns KEEL_OK
 * (stores its pid in *pid, may be NULL), KEEL_SUP_IGNORE (kept with no
 * pid), KEEL_EEXIST (the id is taken), KEEL_EINVAL (a bad spec), the
 * start function's negative code (nothing added), KEEL_ENOPROC (no such
 * supervisor), KEEL_ESTATE (called from a handler process). */
int keel_sup_start_child(keel_term sup, const keel_sup_child_spec *spec,
                         keel_term *pid);

/* Stops the child `id` (its shutdown protocol); the spec is kept (a
 * temporary child's is removed). For a dynamic supervisor id is the
 * child's pid. KEEL_OK, KEEL_ENOENT (no such child), KEEL_ENOPROC,
 * KEEL_ESTATE. */
int keel_sup_terminate_child(keel_term sup, keel_term id);

/* Starts again a stopped child. KEEL_OK (pid in *pid, may be NULL),
 * KEEL_SUP_IGNORE, KEEL_ENOENT, KEEL_ESTATE (it is running, or the
 * supervisor is dynamic), the start function's code, KEEL_ENOPROC. */
int keel_sup_restart_child(keel_term sup, keel_term id, keel_term *pid);

/* Removes a stopped child's spec. KEEL_OK, KEEL_ENOENT, KEEL_ESTATE (it is
 * running, or the supervisor is dynamic), KEEL_ENOPROC. */
int keel_sup_delete_child(keel_term sup, keel_term id);

/* The children, in start order, as a list built in h of {Id, Child, Type}
 * tuples: Child is a pid, 'undefined' (not running) or 'restarting'; Type
 * is worker or supervisor; Id is 'undefined' for dynamic children.
 * KEEL_OK, KEEL_EINVAL (h or out NULL), KEEL_ENOPROC, KEEL_ESTATE,
 * KEEL_ENOMEM. */
int keel_sup_which_children(keel_term sup, keel_heap *h, keel_term *out);

/* get_childspec: the spec of child `id` (a dynamic supervisor's child:
 * its pid) into *out, its id copied into h; shutdown as the supervisor
 * resolved it (KEEL_SUP_SHUTDOWN_DEFAULT is 5000, or infinity for a
 * supervisor child). KEEL_OK, KEEL_ENOENT (no such child), KEEL_EINVAL
 * (h or out NULL), KEEL_ENOPROC, KEEL_ESTATE. */
int keel_sup_get_childspec(keel_term sup, keel_term id, keel_heap *h,
                           keel_sup_child_spec *out);

/* check_childspecs: whether specs (n of them) would be accepted by a
 * supervisor with auto_shutdown: KEEL_OK or KEEL_EINVAL (see
 * keel_sup_start_link's checks, duplicate ids included). Pure; any
 * thread. */
int keel_sup_check_childspecs(const keel_sup_child_spec *specs, size_t n,
                              keel_sup_auto_shutdown auto_shutdown);

/* Counts of count_children. */
typedef struct keel_sup_counts {
  size_t specs, active, supervisors, workers;
} keel_sup_counts;

/* Fills *out. KEEL_OK, KEEL_EINVAL, KEEL_ENOPROC, KEEL_ESTATE. */
int keel_sup_count_children(keel_term sup, keel_sup_counts *out);

/* Stops a supervisor (gen:stop): it stops its children (in reverse start
 * order; a dynamic supervisor all at once) and exits with reason normal;
 * returns once it is dead. KEEL_OK, KEEL_ENOPROC, KEEL_ESTATE. */
int keel_sup_stop(keel_term sup);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_SUPERVISOR_H */
