/*
 * application_internal.h - the application controller's table, shared by
 * the controller (application.c) and the environment (application_env.c).
 */
#ifndef KEEL_APPLICATION_INTERNAL_H
#define KEEL_APPLICATION_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/application.h"

typedef enum app_state {
  APP_FREE = 0, /* slot unused */
  APP_LOADED,
  APP_STARTING,
  APP_RUNNING,
  APP_STOPPING
} app_state;

/* One loaded application. Every field is guarded by keel__app_lock. */
typedef struct app_rec {
  const keel_application *app;
  keel_term name; /* atom */
  app_state state;
  keel_app_type type;
  keel_term master; /* pid of the master while running, else KEEL_NONE */
  keel_term sup;    /* top supervisor while running */
  void *cb_state;   /* the start callback's state */
  bool stopping;    /* keel_application_stop asked the master to stop */
  /* Included applications: while its includer's tree runs it, with its
   * top supervisor in sup and the start state in cb_state. */
  bool inc_running;
  int start_rc; /* the start callback's code when it failed */
  uint64_t seq; /* start order */
  /* Environment layers: lists of {Key, Value}; overrides also holds {Key}
   * for an unset key. defaults and envvars live in env_heap, overrides in
   * ov_heap (rebuilt at each set/unset). */
  keel_heap env_heap, ov_heap;
  keel_term defaults, envvars, overrides;
  /* V2: the start phases, a list of {Phase, Arg} in order (env_heap). */
  keel_term phases;
  /* Included applications: the including one's name (KEEL_NONE: not
   * included). */
  keel_term included_by;
} app_rec;

extern pthread_mutex_t keel__app_lock;
extern app_rec keel__apps[KEEL_APPLICATION_MAX];

/* The record of name (lock held), or NULL. */
app_rec *keel__app_find(keel_term name);

/* Fills the environment layers of a record being loaded (lock held):
 * parses the defaults and reads the environment variables. KEEL_OK,
 * KEEL_EINVAL (a bad default), KEEL_ENOMEM. */
int keel__app_env_load(app_rec *r);

/* application_incl.c: V2 descriptor checks and the loading of its phases
 * and included applications (lock held): KEEL_OK or the load's error. */
int keel__app_check_v2(const keel_application *app);
/* application.c: keel_application_load with the lock held. */
int keel__app_load_locked(const keel_application *app);
/* The included applications of a descriptor (NULL for V1). */
const keel_application *const *keel__app_included(const keel_application *a);
int keel__app_load_v2(app_rec *r);
/* Whether r may be started on its own (not included), lock held. */
bool keel__app_startable(const app_rec *r);
/* Runs the start phases of the application r (in its master): its own
 * and its included applications'. KEEL_OK or the first failing code. */
int keel__app_run_phases(keel_term name, keel_app_type type, void *cb);
/* Forgets the included applications' running state once the tree of
 * name is gone (lock held). */
void keel__app_included_stopped(keel_term name);
/* Unload: clears included_by of those name includes (lock held); false
 * when r is included in an application that is not just loaded. */
bool keel__app_unload_ok(const app_rec *r);
void keel__app_unload_v2(keel_term name);

/* Frees a record's environment (lock held). */
void keel__app_env_free(app_rec *r);

#endif /* KEEL_APPLICATION_INTERNAL_H */
