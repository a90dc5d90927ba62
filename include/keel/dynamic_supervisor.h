/*
 * keel/dynamic_supervisor.h - dynamic supervisors (Elixir's
 * DynamicSupervisor): a one_for_one supervisor that starts with no
 * children; each start_child brings its own child spec, whose start
 * function also receives the supervisor's extra arguments. Children are
 * named by their pids; stopping the supervisor shuts them all down at
 * once (exit signals to all, then each is waited for with its own
 * shutdown timeout).
 *
 * keel_sup_which_children, keel_sup_count_children, keel_sup_terminate_child
 * (with a pid) and keel_sup_stop of keel/supervisor.h work on dynamic
 * supervisors too; the calling rules are those of keel/supervisor.h.
 */
#ifndef KEEL_DYNAMIC_SUPERVISOR_H
#define KEEL_DYNAMIC_SUPERVISOR_H

#include "keel/supervisor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A dynamic supervisor's description. KEEL_DYNSUP_SPEC_INIT gives
 * Elixir's defaults (3 restarts in 5 s, no limit, no extra arguments). */
typedef struct keel_dynsup_spec {
  unsigned version; /* KEEL_SUP_VERSION */
  unsigned intensity;
  uint64_t period_ms;   /* > 0 */
  size_t max_children;  /* 0: no limit */
  keel_term extra_args; /* a proper list, copied; passed to every start */
  keel_term name;       /* KEEL_NONE or an atom */
} keel_dynsup_spec;

#define KEEL_DYNSUP_SPEC_INIT                                                  \
  {                                                                            \
    .version = KEEL_SUP_VERSION, .intensity = 3, .period_ms = 5000,            \
    .max_children = 0, .extra_args = KEEL_NIL, .name = KEEL_NONE               \
  }

/* Starts a dynamic supervisor (linked to the calling fiber, as
 * keel_sup_start_link). Errors as keel_sup_start_link (KEEL_EINVAL also
 * for extra_args that is not a proper list). */
int keel_dynsup_start_link(const keel_dynsup_spec *spec, keel_term *pid);

/* Starts a child from spec (its id is ignored; its start function gets
 * the extra arguments). KEEL_OK (pid in *pid, may be NULL),
 * KEEL_SUP_IGNORE (nothing added), KEEL_ELIMIT (max_children children
 * exist), KEEL_EINVAL, the start function's code, KEEL_ENOPROC,
 * KEEL_ESTATE. */
int keel_dynsup_start_child(keel_term sup, const keel_sup_child_spec *spec,
                            keel_term *pid);

/* ---- partition supervisors (Elixir's PartitionSupervisor) -------------- */

/* A partition supervisor: a one_for_one supervisor registered as `name`
 * whose children are `partitions` dynamic supervisors built from `child`
 * (child.name is ignored), registered as the atoms "<name>_0",
 * "<name>_1"...; a key picks one by keel_hash(key) % partitions, so
 * start_child traffic is spread over several processes. */
typedef struct keel_partsup_spec {
  unsigned version;    /* KEEL_SUP_VERSION */
  keel_term name;      /* an atom (required: partitions are found by it) */
  unsigned partitions; /* 0: one per scheduler */
  keel_dynsup_spec child;
} keel_partsup_spec;

/* Starts a partition supervisor (linked to the calling fiber, as
 * keel_sup_start_link) and its partitions. Stop it with keel_sup_stop.
 * Errors as keel_sup_start_link; KEEL_EINVAL also for a missing name, a
 * bad child spec or more than 4096 partitions. */
int keel_partsup_start_link(const keel_partsup_spec *spec, keel_term *pid);

/* How many partitions the partition supervisor `name` has (a request to
 * it; callers may keep the answer). Negative: as keel_sup_count_children. */
int keel_partsup_partitions(keel_term name);

/* The dynamic supervisor of key's partition (for keel_dynsup_start_child
 * and the other requests), given the count from keel_partsup_partitions.
 * Lock-free (a name lookup). KEEL_OK, KEEL_ENOPROC (that partition is not
 * running, e.g. being restarted), KEEL_EINVAL (partitions 0, pid NULL),
 * KEEL_EBADARG (name not an atom). Thread-safe. */
int keel_partsup_whereis(keel_term name, keel_term key, unsigned partitions,
                         keel_term *pid);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_DYNAMIC_SUPERVISOR_H */
