/*
 * keel/application.h - OTP's application: a supervision tree and its
 * configuration, declared as one unit, started after the applications it
 * depends on and stopped as one unit (layer 5, otp).
 *
 * An application is a const descriptor (keel_application): its name,
 * version, the applications it needs, its environment with defaults, and
 * the start callback that starts its top supervisor. The application
 * controller (this module: one table per OS process) loads descriptors,
 * starts them, stops them and answers which_applications and get_env.
 *
 * Each running application has an application master: a fiber process
 * (a gen_server trapping exits) that runs the start callback, so the top
 * supervisor started there with keel_sup_start_link is linked to it. When
 * the top supervisor dies, the master runs the stop callback and reports
 * the exit by the start type (as OTP's application controller):
 *   KEEL_APP_PERMANENT  any exit stops the node;
 *   KEEL_APP_TRANSIENT  an exit with reason normal is only reported, any
 *                       other reason stops the node;
 *   KEEL_APP_TEMPORARY  the exit is only reported.
 * "Stops the node" here means: the node-stop flag is set (once, with the
 * application and the reason), the handler set with
 * keel_application_set_exit_handler is called, and keel_application_wait
 * returns. The embedding program then decides, typically by calling
 * keel_application_stop_all and keel_node_stop (Keel does not exit the
 * OS process for it).
 *
 * Events (keel/telemetry.h), each with measurement count = 1:
 *   [keel, application, start]  metadata application, type
 *   [keel, application, stop]   metadata application, type, reason
 *                               ('stopped' for keel_application_stop, else
 *                               the top supervisor's exit reason) and
 *                               node_stop (true | false)
 *
 * Environment. get_env looks a key up in these layers, first found wins:
 *   1. set_env / unset_env at run time (an unset key is absent, also when
 *      a lower layer has it);
 *   2. environment variables KEEL_<APP>_<KEY>, read when the application
 *      is loaded;
 *   3. the config file read with keel_application_read_config
 *      ([{App, [{Key, Value}]}], as sys.config);
 *   4. the descriptor's defaults.
 * This is OTP's order: the .app file's env < sys.config < command-line
 * flags (-App Key Value, here environment variables) < set_env.
 * Environment variable names: KEEL_, the application's name upper-cased,
 * '_', then the key upper-cased (every character that is not a letter or
 * digit in the application's name becomes '_'); the key is the rest of
 * the variable's name, lower-cased (so keys with capitals cannot be set
 * this way). The value is parsed as one Erlang term (keel_parse: 8080,
 * true, {a, 1}, [x, y], <<"text">>, "charlist"); a value that is not a
 * valid term is taken as the binary of its bytes (/var/lib/x and
 * "hello world" without quotes become binaries). To get a binary for a
 * text that parses as a term (localhost is the atom localhost), write it
 * as <<"localhost">>.
 *
 * Thread-safety: every function may be called from any thread or process.
 * Functions that wait (start, ensure_all_started, stop, stop_all) must be
 * called from a fiber process or a plain thread (a handler process gets
 * KEEL_ESTATE); keel_application_wait from a plain thread only. Callbacks
 * of the descriptor run in the application master.
 */
#ifndef KEEL_APPLICATION_H
#define KEEL_APPLICATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/runtime.h"
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Layout versions of keel_application: V2 adds start phases and included
 * applications (the fields after `stop`); a V1 descriptor has neither. */
#define KEEL_APPLICATION_V1 1u
#define KEEL_APPLICATION_V2 2u

/* Most applications loaded at once. */
#define KEEL_APPLICATION_MAX 64u

/* Largest config file keel_application_read_config accepts. */
#define KEEL_APPLICATION_CONFIG_MAX (1u << 20)

typedef enum keel_app_type {
  KEEL_APP_TEMPORARY = 0, /* OTP's default */
  KEEL_APP_TRANSIENT = 1,
  KEEL_APP_PERMANENT = 2
} keel_app_type;

/* One default of the environment: key (an atom's name) and value written
 * in Erlang syntax ("4000", "<<\"localhost\">>", "[{pool, 10}]"). */
typedef struct keel_app_env_default {
  const char *key;
  const char *value;
} keel_app_env_default;

/* One start phase (OTP's {Phase, PhaseArgs} of start_phases): the phase's
 * atom name and its argument in Erlang syntax (NULL: []). */
typedef struct keel_app_phase {
  const char *name;
  const char *arg;
} keel_app_phase;

/* An application (OTP's .app file and callback module). Static storage:
 * it must outlive its use (until keel_application_unload). */
typedef struct keel_application {
  unsigned version;        /* KEEL_APPLICATION_V1 */
  const char *name;        /* an atom's name, unique among loaded apps */
  const char *vsn;         /* may be NULL */
  const char *description; /* may be NULL */
  /* Names of the applications that must run before this one, in the
   * order ensure_all_started starts them; NULL-terminated, or NULL. */
  const char *const *applications;
  const keel_app_env_default *env; /* defaults; nenv of them */
  size_t nenv;
  /* Starts the top supervisor (keel_sup_start_link) inside the
   * application master and stores its pid in *sup; may set *state (given
   * to prep_stop and stop). Returns KEEL_OK or a negative KEEL_E* (the
   * start fails with it; nothing must be left running). Required. */
  int (*start)(const struct keel_application *app, keel_app_type type,
               keel_term *sup, void **state);
  /* Called before the tree is stopped by keel_application_stop (not when
   * the tree died by itself). May be NULL. */
  void (*prep_stop)(const struct keel_application *app, void *state);
  /* Called once the tree is gone, however it ended. May be NULL. */
  void (*stop)(const struct keel_application *app, void *state);
  /* ---- KEEL_APPLICATION_V2 ----
   * Start phases (OTP's start_phases and Module:start_phase/3): once the
   * top supervisor has started, start_phase runs in the application
   * master for each phase in order, with the phase's atom, the start
   * type, the parsed argument and start's *state. A code other than
   * KEEL_OK fails the start with that code: the tree is stopped and stop
   * is called. The application is listed as running only after its last
   * phase. start_phase is required when nphases > 0. */
  const keel_app_phase *start_phases;
  size_t nphases;
  int (*start_phase)(const struct keel_application *app, keel_term phase,
                     keel_app_type type, keel_term arg, void *state);
  /* Included applications (OTP's included_applications): descriptors,
   * NULL-terminated, or NULL. Loading this application loads them (an
   * application is included by at most one other); they are never
   * started on their own: the including application's tree starts each
   * one's top supervisor with keel_application_start_included as a
   * supervisor child. They are not listed by which_applications; their
   * start phases run within the including application's (see
   * keel_application_start_included); ensure_all_started also starts
   * the applications they depend on. Their stop and prep_stop are not
   * called (as OTP's: only the including application's module is). */
  const struct keel_application *const *included_applications;
} keel_application;

/* Loads app (application:load): checks the descriptor, parses its
 * defaults and reads its environment variables. Errors: KEEL_EINVAL (app
 * NULL, wrong version, no name or start, a default with a NULL key or a
 * value that does not parse), KEEL_EEXIST (an application of that name is
 * loaded), KEEL_ESYSLIMIT (KEEL_APPLICATION_MAX loaded), KEEL_ENOMEM. */
int keel_application_load(const keel_application *app);

/* V2: also KEEL_EINVAL for a phase without a name or an argument that
 * does not parse, phases without start_phase, or a bad included
 * descriptor; KEEL_EEXIST when an included application is already
 * included by another one; KEEL_ESTATE when it is running. Included
 * applications not loaded yet are loaded first (they stay loaded if this
 * load then fails). */

/* Unloads a loaded application that is not running, forgetting its
 * set_env values (its included applications stay loaded, no longer
 * included). Errors: KEEL_ENOENT (not loaded), KEEL_ESTATE (running or
 * starting, or included in an application that is). */
int keel_application_unload(keel_term name);

/* Starts the loaded application name (an atom) with type: spawns its
 * master, runs start and returns once it has returned. Every application
 * it depends on must be running. Returns KEEL_OK; KEEL_ENOENT (not
 * loaded); KEEL_EEXIST (already running); KEEL_EBUSY (being started or
 * stopped by another caller); KEEL_ESTATE (a dependency is not running,
 * an included application (its includer starts it), or called from a
 * handler process); KEEL_EINVAL (bad type); the start
 * callback's negative code; KEEL_ENOPROC (the master died during start). */
int keel_application_start(keel_term name, keel_app_type type);

/* application:ensure_all_started: starts the applications name depends
 * on (recursively, each with type, in the order of their descriptors'
 * dependency lists), then name; those already running are left alone.
 * When h and started are not NULL, *started is the list of the names it
 * started, in start order, built in h. On failure the applications this
 * call started are stopped again (in reverse order) and the error is
 * returned: keel_application_start's, KEEL_ENOENT for a dependency that
 * is not loaded, KEEL_ELIMIT for a dependency cycle. */
int keel_application_ensure_all_started(keel_term name, keel_app_type type,
                                        keel_heap *h, keel_term *started);

/* application:stop: calls prep_stop, stops the top supervisor (its
 * children in reverse start order), calls stop; returns once the master
 * is gone. Applications depending on it keep running (as in OTP). The
 * exit is reported with reason 'stopped' and never stops the node.
 * Errors: KEEL_ENOENT (not loaded), KEEL_ESTATE (not running, or called
 * from a handler process), KEEL_EBUSY (being started or stopped). */
int keel_application_stop(keel_term name);

/* Starts the top supervisor of an included application, as a child of
 * the including application's tree: a keel_sup_start_fn (keel/supervisor.h)
 * whose arg is the included application's descriptor, e.g.
 *   {.id = keel_atom("billing"), .start = keel_application_start_included,
 *    .arg = (void *)&billing_app, .type = KEEL_SUP_SUPERVISOR,
 *    .shutdown = KEEL_INFINITY}
 * It runs the included application's start callback in the calling
 * supervisor (its top supervisor is linked to that one) with the
 * including application's start type, and returns its code (*pid the
 * top supervisor). Start phases: for each phase of the including
 * application, after its own start_phase, each included application
 * that lists a phase of that name runs its start_phase with its own
 * argument and start state, in the order of included_applications, and
 * recursively for the applications it includes (OTP's
 * application_starter rule, here for every application). A phase an
 * included application lists and its includer does not never runs.
 * Errors: KEEL_ENOENT (not loaded), KEEL_ESTATE (not included in an
 * application being started or running), KEEL_EINVAL (arg NULL or pid
 * NULL), the start callback's code, KEEL_EBADARG (it returned no pid). */
int keel_application_start_included(keel_proc *sup, void *arg, keel_term extra,
                                    keel_term *pid);

/* Stops every running application, the last started first. Returns
 * KEEL_OK or the first error of keel_application_stop. */
int keel_application_stop_all(void);

/* application:which_applications: the running applications as a list of
 * {Name, Description, Vsn} (binaries; <<>> when NULL), the last started
 * first, built in h. Errors: KEEL_EINVAL (NULL argument), KEEL_ENOMEM. */
int keel_application_which(keel_heap *h, keel_term *out);

/* application:get_env: the value of key (an atom) of application name,
 * by the layers described above, copied into h. KEEL_OK, KEEL_ENOENT (no
 * such key, or the application is not loaded), KEEL_EINVAL, KEEL_ENOMEM. */
int keel_application_get_env(keel_term name, keel_term key, keel_heap *h,
                             keel_term *value);

/* application:set_env / unset_env on a loaded application (value copied).
 * Errors: KEEL_ENOENT (not loaded), KEEL_EINVAL (key not an atom, value
 * KEEL_NONE), KEEL_ENOMEM. */
int keel_application_set_env(keel_term name, keel_term key, keel_term value);
int keel_application_unset_env(keel_term name, keel_term key);

/* Reads a config file: one Erlang term [{App, [{Key, Value}]}] (a final
 * '.' and %-comments allowed), the layer 3 of every application's
 * environment (replacing the file read before, for loaded applications
 * too). On error nothing changes and, when why is not NULL, a message
 * (with the line for a syntax error) is written to why[0..whylen).
 * Errors: KEEL_EIO (cannot open or read), KEEL_ELIMIT (larger than
 * KEEL_APPLICATION_CONFIG_MAX, or nested too deep), KEEL_EPARSE (not one
 * term), KEEL_EBADARG (not a list of {Atom, [{Atom, Value}]}),
 * KEEL_EINVAL (path NULL), KEEL_ENOMEM. */
int keel_application_read_config(const char *path, char *why, size_t whylen);

/* ---- node stop --------------------------------------------------------- */

/* Called (once, from the exiting application's master) when an exit
 * stops the node: app is its name, reason the top supervisor's exit
 * reason (valid during the call). Must not block. */
typedef void (*keel_app_exit_fn)(keel_term app, keel_term reason, void *arg);

/* Sets the handler (NULL: none). arg is the caller's. */
void keel_application_set_exit_handler(keel_app_exit_fn fn, void *arg);

/* Waits at most timeout_ms (KEEL_INFINITY: forever; 0: just looks) until
 * an application exit has stopped the node. KEEL_OK (*app and *reason,
 * which may be NULL, get the application and the reason, copied into h),
 * KEEL_ETIMEDOUT, KEEL_ESTATE (called from a process), KEEL_EINVAL
 * (reason without h). */
int keel_application_wait(int64_t timeout_ms, keel_heap *h, keel_term *app,
                          keel_term *reason);

/* Clears the node-stop flag, for a program that restarts its
 * applications after a node stop instead of exiting. */
void keel_application_clear_exit(void);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_APPLICATION_H */
