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

#ifdef __cplusplus
}
#endif

#endif /* KEEL_DYNAMIC_SUPERVISOR_H */
