/* Applications: start and stop order with dependencies, ensure_all_started
 * and its rollback, permanent / transient / temporary exits of the top
 * supervisor (node stop flag, handler, wait), the environment's layers
 * and config file errors. The process scenarios run with 1, 2 and 8
 * schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/application.h"
#include "keel/gen_server.h"
#include "keel/signals.h"
#include "keel/supervisor.h"
#include "keel/telemetry.h"
#include "runtime/rt_test.h"

#define TMO 30000

/* ---- a log of callbacks: "+a" start, "Pa" prep_stop, "Ta" the worker's
 * terminate, "Sa" stop ------------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1024], log_copy[1024];
static size_t log_len;

static void log_reset(void) {
  pthread_mutex_lock(&log_mu);
  log_len = 0;
  log_buf[0] = '\0';
  pthread_mutex_unlock(&log_mu);
}

static void log_add(char op, char tag) {
  pthread_mutex_lock(&log_mu);
  if (log_len + 3 < sizeof log_buf) {
    log_buf[log_len++] = op;
    log_buf[log_len++] = tag;
    log_buf[log_len] = '\0';
  }
  pthread_mutex_unlock(&log_mu);
}

static const char *log_get(void) {
  pthread_mutex_lock(&log_mu);
  memcpy(log_copy, log_buf, log_len + 1);
  pthread_mutex_unlock(&log_mu);
  return log_copy;
}

/* ---- the worker under each top supervisor -------------------------------- */

static keel_gs_ret w_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  *s = arg; /* the application's name */
  return keel_gs_ok(gs);
}

static void w_terminate(keel_gen_server *gs, keel_term reason, keel_term s) {
  (void)gs;
  (void)reason;
  log_add('T', keel_atom_name(s, NULL)[0]);
}

static const keel_gen_server_module wmod = {.version =
                                                KEEL_GEN_SERVER_MODULE_V1,
                                            .name = "app_worker",
                                            .init = w_init,
                                            .terminate = w_terminate};

static int start_w(keel_proc *sup, void *arg, keel_term extra, keel_term *pid) {
  (void)sup;
  (void)extra;
  const keel_application *app = arg;
  keel_gen_server_opts o = {.link = true, .trap_exit = true};
  return keel_gen_server_start(&wmod, keel_atom(app->name), &o, pid);
}

/* ---- the applications ---------------------------------------------------- */

static _Atomic keel_term last_sup;    /* the top supervisor last started */
static _Atomic keel_term last_master; /* the process start ran in */

static int app_start(const keel_application *app, keel_app_type type,
                     keel_term *sup, void **st) {
  (void)type;
  log_add('+', app->name[0]);
  if (app->name[0] == 'x')
    return KEEL_EIO;
  keel_sup_child_spec ch = {.id = keel_atom("w"),
                            .start = start_w,
                            .arg = (void *)app,
                            .shutdown = 5000};
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  s.children = &ch;
  s.nchildren = 1;
  int rc = keel_sup_start_link(&s, sup);
  if (rc == KEEL_OK)
    atomic_store(&last_sup, *sup);
  atomic_store(&last_master, keel_self(keel_current()));
  *st = (void *)app;
  return rc;
}

static void app_prep_stop(const keel_application *app, void *st) {
  cr_assert_eq(st, app);
  log_add('P', app->name[0]);
}

static void app_stop(const keel_application *app, void *st) {
  cr_assert_eq(st, app);
  log_add('S', app->name[0]);
}

#define APP(n, deps)                                                           \
  {                                                                            \
    .version = KEEL_APPLICATION_V1, .name = n, .vsn = "1.0." n,                \
    .description = "app " n, .applications = deps, .start = app_start,         \
    .prep_stop = app_prep_stop, .stop = app_stop                               \
  }

static const char *const deps_b[] = {"a", NULL};
static const char *const deps_c[] = {"a", "b", NULL};
static const char *const deps_x[] = {"a", NULL};
static const char *const deps_y[] = {"nope", NULL};
static const char *const deps_m[] = {"n", NULL};
static const char *const deps_n[] = {"m", NULL};
static const keel_application app_a = APP("a", NULL);
static const keel_application app_b = APP("b", deps_b);
static const keel_application app_c = APP("c", deps_c);
static const keel_application app_x = APP("x", deps_x); /* start fails */
static const keel_application app_y = APP("y", deps_y);
static const keel_application app_m = APP("m", deps_m);
static const keel_application app_n = APP("n", deps_n);
static const keel_application app_p = APP("p", NULL);

static keel_term A(const char *s) {
  return keel_atom(s);
}

static void load_all(void) {
  const keel_application *all[] = {&app_a, &app_b, &app_c, &app_x,
                                   &app_y, &app_m, &app_n, &app_p};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    cr_assert_eq(keel_application_load(all[i]), KEEL_OK, "load %s",
                 all[i]->name);
  cr_assert_eq(keel_application_load(&app_a), KEEL_EEXIST);
}

static keel_term which(keel_heap *h) {
  keel_term w;
  cr_assert_eq(keel_application_which(h, &w), KEEL_OK);
  return w;
}

/* ---- start and stop order ------------------------------------------------ */

Test(application, start_stop_order_with_dependencies) {
  load_all();
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    log_reset();
    keel_heap h;
    keel_heap_init(&h);
    keel_term started;
    cr_assert_eq(keel_application_start(A("c"), KEEL_APP_TEMPORARY),
                 KEEL_ESTATE, "dependencies not running");
    cr_assert_eq(keel_application_ensure_all_started(A("c"), KEEL_APP_TEMPORARY,
                                                     &h, &started),
                 KEEL_OK);
    cr_assert(keel_eq_exact(started, keel_build(&h, "[a, b, c]")));
    cr_assert_str_eq(log_get(), "+a+b+c");
    cr_assert_eq(keel_application_ensure_all_started(A("c"), KEEL_APP_TEMPORARY,
                                                     &h, &started),
                 KEEL_OK);
    cr_assert_eq(started, KEEL_NIL, "nothing more to start");
    cr_assert_eq(keel_application_start(A("a"), KEEL_APP_TEMPORARY),
                 KEEL_EEXIST);
    cr_assert(keel_eq_exact(
        which(&h), keel_build(&h, "[{c, <<\"app c\">>, <<\"1.0.c\">>}, "
                                  "{b, <<\"app b\">>, <<\"1.0.b\">>}, "
                                  "{a, <<\"app a\">>, <<\"1.0.a\">>}]")));
    cr_assert_eq(keel_application_unload(A("a")), KEEL_ESTATE);
    /* Stopping one application leaves its dependents running. */
    cr_assert_eq(keel_application_stop(A("b")), KEEL_OK);
    cr_assert_str_eq(log_get(), "+a+b+cPbTbSb");
    cr_assert_eq(keel_application_stop(A("b")), KEEL_ESTATE);
    cr_assert_eq(keel_application_start(A("b"), KEEL_APP_TEMPORARY), KEEL_OK);
    log_reset();
    cr_assert_eq(keel_application_stop_all(), KEEL_OK);
    cr_assert_str_eq(log_get(), "PbTbSbPcTcScPaTaSa", "last started first");
    cr_assert_eq(which(&h), KEEL_NIL);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

Test(application, start_failures_and_rollback) {
  load_all();
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    log_reset();
    keel_heap h;
    keel_heap_init(&h);
    keel_term started = KEEL_NONE;
    cr_assert_eq(keel_application_ensure_all_started(A("x"), KEEL_APP_PERMANENT,
                                                     &h, &started),
                 KEEL_EIO, "the start callback's code");
    cr_assert_eq(started, KEEL_NONE);
    cr_assert_str_eq(log_get(), "+a+xPaTaSa", "a is stopped again");
    cr_assert_eq(which(&h), KEEL_NIL);
    cr_assert_eq(keel_application_wait(0, NULL, NULL, NULL), KEEL_ETIMEDOUT,
                 "a failed start does not stop the node");
    cr_assert_eq(keel_application_start(A("a"), KEEL_APP_TEMPORARY), KEEL_OK);
    cr_assert_eq(keel_application_start(A("x"), KEEL_APP_TEMPORARY), KEEL_EIO);
    cr_assert_eq(keel_application_start(A("x"), KEEL_APP_TEMPORARY), KEEL_EIO,
                 "still loaded, may be tried again");
    cr_assert_eq(keel_application_ensure_all_started(A("y"), KEEL_APP_TEMPORARY,
                                                     NULL, NULL),
                 KEEL_ENOENT, "a dependency not loaded");
    cr_assert_eq(keel_application_ensure_all_started(A("m"), KEEL_APP_TEMPORARY,
                                                     NULL, NULL),
                 KEEL_ELIMIT, "a dependency cycle");
    cr_assert_eq(keel_application_start(A("zz"), KEEL_APP_TEMPORARY),
                 KEEL_ENOENT);
    cr_assert_eq(keel_application_start(A("a"), (keel_app_type)7), KEEL_EINVAL);
    cr_assert(keel_eq_exact(
        which(&h), keel_build(&h, "[{a, <<\"app a\">>, <<\"1.0.a\">>}]")));
    cr_assert_eq(keel_application_stop_all(), KEEL_OK);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  cr_assert_eq(keel_application_unload(A("zz")), KEEL_ENOENT);
  cr_assert_eq(keel_application_unload(A("x")), KEEL_OK);
  cr_assert_eq(keel_application_start(A("x"), KEEL_APP_TEMPORARY), KEEL_ENOENT);
}

/* ---- permanent, transient, temporary --------------------------------------
 */

static atomic_long stops, node_stops, handler_calls;
static _Atomic keel_term stop_reason;

static int on_stop(const keel_tel_event *ev, const keel_tel_measure *m,
                   size_t nm, const keel_tel_meta *md, size_t nmd, void *cfg) {
  (void)ev;
  (void)m;
  (void)nm;
  (void)cfg;
  keel_term r = KEEL_NONE, ns = KEEL_NONE;
  (void)keel_tel_meta_get(md, nmd, A("reason"), &r);
  (void)keel_tel_meta_get(md, nmd, A("node_stop"), &ns);
  atomic_store(&stop_reason, keel_is_atom(r) ? r : KEEL_NONE);
  if (ns == KEEL_ATOM(TRUE))
    atomic_fetch_add(&node_stops, 1);
  atomic_fetch_add(&stops, 1);
  return 0;
}

static void on_exit_cb(keel_term app, keel_term reason, void *arg) {
  cr_assert_eq(app, A("p"));
  cr_assert(keel_is_atom(reason));
  atomic_fetch_add((atomic_long *)arg, 1);
}

static bool stops_reached(void *arg) {
  return atomic_load(&stops) >= *(long *)arg;
}

static bool log_has_t(void *arg) {
  (void)arg;
  return strchr(log_get(), 'T') != NULL;
}

/* Starts p with type, ends its top supervisor (kill, or a normal stop),
 * waits for the stop report and tells whether the node was stopped. */
static bool end_tree(keel_app_type type, bool kill, keel_term *reason) {
  long want = atomic_load(&stops) + 1;
  log_reset();
  cr_assert_eq(keel_application_start(A("p"), type), KEEL_OK);
  keel_term sup = atomic_load(&last_sup);
  if (kill)
    cr_assert_eq(keel_exit(sup, KEEL_ATOM(KILL)), KEEL_OK);
  else
    cr_assert_eq(keel_sup_stop(sup), KEEL_OK);
  cr_assert(wait_until(stops_reached, &want));
  if (kill) { /* the worker's terminate may come before or after stop */
    cr_assert(wait_until(log_has_t, NULL));
    cr_assert(strcmp(log_get(), "+pTpSp") == 0 ||
                  strcmp(log_get(), "+pSpTp") == 0,
              "%s", log_get());
  } else {
    cr_assert_str_eq(log_get(), "+pTpSp", "stop runs, prep_stop does not");
  }
  keel_heap h;
  keel_heap_init(&h);
  cr_assert_eq(which(&h), KEEL_NIL);
  keel_heap_destroy(&h);
  cr_assert_eq(atomic_load(&stop_reason), kill ? A("killed") : A("normal"));
  keel_heap rh;
  keel_heap_init(&rh);
  keel_term app = KEEL_NONE, r = KEEL_NONE;
  int rc = keel_application_wait(0, &rh, &app, &r);
  if (rc == KEEL_OK) {
    cr_assert_eq(app, A("p"));
    *reason = r; /* an atom: valid after the heap goes */
    keel_application_clear_exit();
  }
  keel_heap_destroy(&rh);
  return rc == KEEL_OK;
}

Test(application, permanent_transient_temporary_exits) {
  load_all();
  keel_tel_event *ev;
  cr_assert_eq(keel_tel_event_parse("keel.application.stop", &ev), KEEL_OK);
  cr_assert_eq(keel_tel_attach(A("t"), &ev, 1, on_stop, NULL), KEEL_OK);
  keel_application_set_exit_handler(on_exit_cb, &handler_calls);
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    keel_term r = KEEL_NONE;
    long ns = atomic_load(&node_stops), hc = atomic_load(&handler_calls);
    cr_assert(!end_tree(KEEL_APP_TEMPORARY, true, &r), "temporary, killed");
    cr_assert(!end_tree(KEEL_APP_TRANSIENT, false, &r), "transient, normal");
    cr_assert_eq(atomic_load(&node_stops), ns);
    cr_assert(end_tree(KEEL_APP_TRANSIENT, true, &r), "transient, killed");
    cr_assert_eq(r, A("killed"));
    cr_assert(end_tree(KEEL_APP_PERMANENT, false, &r), "permanent, normal");
    cr_assert_eq(r, A("normal"));
    cr_assert(end_tree(KEEL_APP_PERMANENT, true, &r), "permanent, killed");
    cr_assert_eq(atomic_load(&node_stops), ns + 3);
    cr_assert_eq(atomic_load(&handler_calls), hc + 3);
    /* A requested stop never stops the node, whatever the type. */
    cr_assert_eq(keel_application_start(A("p"), KEEL_APP_PERMANENT), KEEL_OK);
    cr_assert_eq(keel_application_stop(A("p")), KEEL_OK);
    cr_assert_eq(atomic_load(&stop_reason), A("stopped"));
    cr_assert_eq(keel_application_wait(0, NULL, NULL, NULL), KEEL_ETIMEDOUT);
    cr_assert_eq(atomic_load(&node_stops), ns + 3);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  keel_application_set_exit_handler(NULL, NULL);
  cr_assert_eq(keel_tel_detach(A("t")), KEEL_OK);
}

/* keel_application_wait from a process is refused; a blocked plain thread
 * wakes when a permanent application's tree dies. */
static atomic_int waited_rc = 1;

static void *waiter(void *arg) {
  (void)arg;
  atomic_store(&waited_rc, keel_application_wait(TMO, NULL, NULL, NULL));
  return NULL;
}

static void proc_wait(keel_proc *self, void *arg) {
  (void)self;
  atomic_store((atomic_int *)arg, keel_application_wait(0, NULL, NULL, NULL));
  signal_event();
}

static bool waited(void *arg) {
  (void)arg;
  return atomic_load(&waited_rc) != 1;
}

Test(application, wait_wakes_on_node_stop) {
  load_all();
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    atomic_int prc = 1;
    cr_assert_eq(keel_spawn_fiber(proc_wait, &prc, NULL, NULL), KEEL_OK);
    cr_assert(wait_events(1));
    cr_assert_eq(atomic_load(&prc), KEEL_ESTATE);
    atomic_store(&waited_rc, 1);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, waiter, NULL), 0);
    cr_assert_eq(keel_application_start(A("p"), KEEL_APP_PERMANENT), KEEL_OK);
    cr_assert_eq(keel_exit(atomic_load(&last_sup), KEEL_ATOM(KILL)), KEEL_OK);
    cr_assert(wait_until(waited, NULL));
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&waited_rc), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    keel_term r;
    cr_assert_eq(keel_application_wait(TMO, &h, NULL, &r), KEEL_OK,
                 "the flag stays set");
    cr_assert_eq(r, A("killed"));
    keel_heap_destroy(&h);
    keel_application_clear_exit();
    cr_assert_eq(keel_application_wait(0, NULL, NULL, NULL), KEEL_ETIMEDOUT);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}

/* ---- environment ----------------------------------------------------------
 */

static const keel_app_env_default env_defaults[] = {
    {"port", "4000"},
    {"host", "<<\"localhost\">>"},
    {"level", "info"},
    {"pool", "[{size, 10}]"}};

static const keel_application app_env = {.version = KEEL_APPLICATION_V1,
                                         .name = "my_env",
                                         .start = app_start,
                                         .env = env_defaults,
                                         .nenv = 4};

static char cfg_path[64];

static void write_cfg(const char *text) {
  strcpy(cfg_path, "/tmp/keel_app_cfg_XXXXXX");
  int fd = mkstemp(cfg_path);
  cr_assert(fd >= 0);
  size_t n = strlen(text);
  cr_assert_eq(write(fd, text, n), (ssize_t)n);
  close(fd);
}

static keel_term get(keel_heap *h, const char *key) {
  keel_term v = KEEL_NONE;
  int rc = keel_application_get_env(A("my_env"), A(key), h, &v);
  return rc == KEEL_OK ? v : KEEL_NONE;
}

static bool env_is(keel_heap *h, const char *key, const char *expect) {
  keel_term v = get(h, key);
  return v != KEEL_NONE && keel_eq_exact(v, keel_build(h, expect));
}

Test(application, env_layers_and_precedence) {
  write_cfg("%% the config file\n"
            "[{my_env, [{port, 5000}, {level, debug}, {file_only, 1}]},\n"
            " {other, [{port, 1}]}].\n");
  char why[256] = "";
  cr_assert_eq(keel_application_read_config(cfg_path, why, sizeof why), KEEL_OK,
               "%s", why);
  unlink(cfg_path);
  setenv("KEEL_MY_ENV_LEVEL", "warning", 1);
  setenv("KEEL_MY_ENV_PATH", "/var/lib/x", 1);
  setenv("KEEL_MY_ENV_LIST", "[1, {a, \"b\"}]", 1);
  setenv("KEEL_MY_ENVX_PORT", "1", 1); /* another application's */
  cr_assert_eq(keel_application_load(&app_env), KEEL_OK);
  keel_heap h;
  keel_heap_init(&h);
  cr_assert(env_is(&h, "port", "5000"), "file over default");
  cr_assert(env_is(&h, "host", "<<\"localhost\">>"), "default");
  cr_assert(env_is(&h, "pool", "[{size, 10}]"));
  cr_assert(env_is(&h, "file_only", "1"));
  cr_assert(env_is(&h, "level", "warning"), "variable over file");
  cr_assert(env_is(&h, "path", "<<\"/var/lib/x\">>"), "not a term: binary");
  cr_assert(env_is(&h, "list", "[1, {a, \"b\"}]"));
  cr_assert_eq(get(&h, "missing"), KEEL_NONE);
  cr_assert_eq(keel_application_set_env(A("my_env"), A("level"), A("error")),
               KEEL_OK);
  cr_assert(env_is(&h, "level", "error"), "set_env over variable");
  cr_assert_eq(keel_application_set_env(A("my_env"), A("port"),
                                        keel_build(&h, "{p, 1}")),
               KEEL_OK);
  cr_assert_eq(keel_application_set_env(A("my_env"), A("port"),
                                        keel_build(&h, "{p, 2}")),
               KEEL_OK);
  cr_assert(env_is(&h, "port", "{p, 2}"), "the last set wins");
  cr_assert_eq(keel_application_unset_env(A("my_env"), A("level")), KEEL_OK);
  cr_assert_eq(get(&h, "level"), KEEL_NONE, "unset hides every layer");
  cr_assert_eq(keel_application_set_env(A("my_env"), A("level"), A("info")),
               KEEL_OK);
  cr_assert(env_is(&h, "level", "info"));
  /* A new file replaces the old one for loaded applications. */
  write_cfg("[{my_env, [{host, <<\"h2\">>}]}]");
  cr_assert_eq(keel_application_read_config(cfg_path, why, sizeof why), KEEL_OK,
               "%s", why);
  unlink(cfg_path);
  cr_assert(env_is(&h, "host", "<<\"h2\">>"));
  cr_assert_eq(get(&h, "file_only"), KEEL_NONE);
  /* Errors. */
  keel_term v;
  cr_assert_eq(keel_application_get_env(A("nope"), A("port"), &h, &v),
               KEEL_ENOENT);
  cr_assert_eq(keel_application_get_env(A("my_env"), keel_small(1), &h, &v),
               KEEL_EINVAL);
  cr_assert_eq(keel_application_set_env(A("nope"), A("a"), A("b")),
               KEEL_ENOENT);
  cr_assert_eq(keel_application_set_env(A("my_env"), A("a"), KEEL_NONE),
               KEEL_EINVAL);
  static const keel_app_env_default bad_def[] = {{"k", "{unclosed"}};
  static const keel_application app_bad = {.version = KEEL_APPLICATION_V1,
                                           .name = "bad_env",
                                           .start = app_start,
                                           .env = bad_def,
                                           .nenv = 1};
  cr_assert_eq(keel_application_load(&app_bad), KEEL_EINVAL);
  static const keel_application app_nostart = {.version = KEEL_APPLICATION_V1,
                                               .name = "nostart"};
  cr_assert_eq(keel_application_load(&app_nostart), KEEL_EINVAL);
  keel_heap_destroy(&h);
  unsetenv("KEEL_MY_ENV_LEVEL");
  unsetenv("KEEL_MY_ENV_PATH");
  unsetenv("KEEL_MY_ENV_LIST");
  unsetenv("KEEL_MY_ENVX_PORT");
}

/* A bad config file gives a clear error and changes nothing. */
static int read_bad(const char *text, size_t len, char *why, size_t n) {
  strcpy(cfg_path, "/tmp/keel_app_cfg_XXXXXX");
  int fd = mkstemp(cfg_path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, text, len), (ssize_t)len);
  close(fd);
  int rc = keel_application_read_config(cfg_path, why, n);
  unlink(cfg_path);
  return rc;
}

Test(application, config_file_errors) {
  cr_assert_eq(keel_application_load(&app_env), KEEL_OK);
  write_cfg("[{my_env, [{port, 7}]}].");
  cr_assert_eq(keel_application_read_config(cfg_path, NULL, 0), KEEL_OK);
  unlink(cfg_path);
  char why[256];
  cr_assert_eq(
      keel_application_read_config("/nonexistent/keel.config", why, sizeof why),
      KEEL_EIO);
  cr_assert(strstr(why, "cannot open") != NULL, "%s", why);
  const char *syntax = "[{my_env,\n  [{port, 1}]},\n  {oops, [}].\n";
  cr_assert_eq(read_bad(syntax, strlen(syntax), why, sizeof why), KEEL_EPARSE);
  cr_assert(strstr(why, "line 3") != NULL, "%s", why);
  const char *junk = "[]. trailing";
  cr_assert_eq(read_bad(junk, strlen(junk), why, sizeof why), KEEL_EPARSE);
  cr_assert(strstr(why, "after the term") != NULL, "%s", why);
  const char *shape1 = "{my_env, [{port, 1}]}";
  cr_assert_eq(read_bad(shape1, strlen(shape1), why, sizeof why), KEEL_EBADARG);
  const char *shape2 = "[{my_env, [{port, 1}]}, {other, 3}]";
  cr_assert_eq(read_bad(shape2, strlen(shape2), why, sizeof why), KEEL_EBADARG);
  cr_assert(strstr(why, "element 2") != NULL, "%s", why);
  const char *shape3 = "[{my_env, [{port, 1}, {\"key\", 2}]}]";
  cr_assert_eq(read_bad(shape3, strlen(shape3), why, sizeof why), KEEL_EBADARG);
  cr_assert(strstr(why, "my_env") != NULL && strstr(why, "entry 2") != NULL,
            "%s", why);
  /* Hostile bytes: an error, never a crash. */
  unsigned char bytes[512];
  uint32_t x = 12345;
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < sizeof bytes; i++) {
      x = x * 1103515245u + 12345u;
      bytes[i] = (unsigned char)(x >> 16);
    }
    int rc = read_bad((const char *)bytes, sizeof bytes, why, sizeof why);
    cr_assert(rc == KEEL_EPARSE || rc == KEEL_EBADARG || rc == KEEL_ELIMIT,
              "rc %d", rc);
  }
  cr_assert_eq(keel_application_read_config(NULL, why, sizeof why),
               KEEL_EINVAL);
  keel_heap h;
  keel_heap_init(&h);
  cr_assert(env_is(&h, "port", "7"), "the good file still counts");
  keel_heap_destroy(&h);
}

/* A master killed from outside: its tree goes by the link; stop then finds
 * the master gone and marks the application stopped. */
static bool gone(void *arg) {
  keel_process_info_t pi;
  return keel_process_info(*(keel_term *)arg, &pi) == KEEL_ENOPROC;
}

Test(application, killed_master) {
  load_all();
  for (size_t i = 0; i < NCONF; i++) {
    start_node(sched_counts[i], 0);
    cr_assert_eq(keel_application_start(A("p"), KEEL_APP_PERMANENT), KEEL_OK);
    keel_term m = atomic_load(&last_master), sup = atomic_load(&last_sup);
    cr_assert(keel_is_local_pid(m));
    cr_assert_eq(keel_exit(m, KEEL_ATOM(KILL)), KEEL_OK);
    cr_assert(wait_until(gone, &sup), "the tree follows its parent");
    cr_assert_eq(keel_application_stop(A("p")), KEEL_OK);
    keel_heap h;
    keel_heap_init(&h);
    cr_assert_eq(which(&h), KEEL_NIL);
    cr_assert_eq(keel_application_start(A("p"), KEEL_APP_PERMANENT), KEEL_OK);
    cr_assert_eq(keel_application_stop(A("p")), KEEL_OK);
    cr_assert_eq(which(&h), KEEL_NIL);
    keel_heap_destroy(&h);
    cr_assert_eq(keel_application_wait(0, NULL, NULL, NULL), KEEL_ETIMEDOUT);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
}
