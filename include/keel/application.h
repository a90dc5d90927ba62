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
#include "keel/term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Layout version of keel_application. */
#define KEEL_APPLICATION_V1 1u

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
} keel_application;

/* Loads app (application:load): checks the descriptor, parses its
 * defaults and reads its environment variables. Errors: KEEL_EINVAL (app
 * NULL, wrong version, no name or start, a default with a NULL key or a
 * value that does not parse), KEEL_EEXIST (an application of that name is
 * loaded), KEEL_ESYSLIMIT (KEEL_APPLICATION_MAX loaded), KEEL_ENOMEM. */
int keel_application_load(const keel_application *app);

/* Unloads a loaded application that is not running, forgetting its
 * set_env values. Errors: KEEL_ENOENT (not loaded), KEEL_ESTATE (running
 * or starting). */
int keel_application_unload(keel_term name);

/* Starts the loaded application name (an atom) with type: spawns its
 * master, runs start and returns once it has returned. Every application
 * it depends on must be running. Returns KEEL_OK; KEEL_ENOENT (not
 * loaded); KEEL_EEXIST (already running); KEEL_EBUSY (being started or
 * stopped by another caller); KEEL_ESTATE (a dependency is not running,
 * or called from a handler process); KEEL_EINVAL (bad type); the start
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
