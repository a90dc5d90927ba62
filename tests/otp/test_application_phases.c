/* Applications of KEEL_APPLICATION_V2: start phases (in order, after the
 * top supervisor, listed as running only after the last; a failing phase
 * fails the start and stops the tree) and included applications (loaded
 * with their includer, started by its tree, their phases within the
 * includer's, not listed by which_applications, not startable on their
 * own, stopped with the includer's tree). Process scenarios run with 1, 2
 * and 8 schedulers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "keel/application.h"
#include "keel/gen_server.h"
#include "keel/signals.h"
#include "keel/supervisor.h"
#include "runtime/rt_test.h"

/* ---- a log of callbacks: "+a" start, "1a".."3a" phases, "Pa" prep_stop,
 * "Ta" a worker's terminate, "Sa" stop, "Xa" a phase with a wrong
 * argument or seen while listed as running ------------------------------ */

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

static keel_term A(const char *s) {
  return keel_atom(s);
}

/* ---- the worker under each top supervisor -------------------------------- */

static keel_gs_ret w_init(keel_gen_server *gs, keel_term arg, keel_term *s) {
  *s = arg;
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

static const keel_application app_i;

/* A top supervisor with a worker; t's also starts the included i. */
static int app_start(const keel_application *app, keel_app_type type,
                     keel_term *sup, void **st) {
  (void)type;
  log_add('+', app->name[0]);
  keel_sup_child_spec ch[2] = {
      {.id = A("w"), .start = start_w, .arg = (void *)app, .shutdown = 5000},
      {.id = A("inc"),
       .start = keel_application_start_included,
       .arg = (void *)&app_i,
       .type = KEEL_SUP_SUPERVISOR,
       .shutdown = KEEL_INFINITY}};
  keel_sup_spec s = KEEL_SUP_SPEC_INIT;
  s.children = ch;
  s.nchildren = app->name[0] == 't' ? 2 : 1;
  *st = (void *)app;
  return keel_sup_start_link(&s, sup);
}

static void app_prep_stop(const keel_application *app, void *st) {
  cr_assert_eq(st, app);
  log_add('P', app->name[0]);
}

static void app_stop(const keel_application *app, void *st) {
  cr_assert_eq(st, app);
  log_add('S', app->name[0]);
}

static bool listed(keel_term name) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term w;
  bool found = false;
  cr_assert_eq(keel_application_which(&h, &w), KEEL_OK);
  for (; keel_is_cons(w); w = keel_tl(w))
    found = found || keel_tuple_get(keel_hd(w), 0) == name;
  keel_heap_destroy(&h);
  return found;
}

/* Phase pN logs N; the argument must be the one the descriptor gives
 * ({Name, N}, or [] when none), and the application not listed yet. */
static int app_phase(const keel_application *app, keel_term phase,
                     keel_app_type type, keel_term arg, void *st) {
  (void)type;
  cr_assert_eq(st, app);
  const char *p = keel_atom_name(phase, NULL);
  if (strcmp(p, "boom") == 0)
    return KEEL_EIO;
  char n = p[strlen(p) - 1];
  bool ok =
      arg == KEEL_NIL || (keel_is_tuple(arg) && keel_tuple_arity(arg) == 2 &&
                          keel_tuple_get(arg, 0) == A(app->name));
  if (listed(A(app->name)))
    ok = false;
  log_add(ok ? n : 'X', app->name[0]);
  return KEEL_OK;
}

#define APP2(n, deps, ph, nph, inc)                                            \
  {                                                                            \
    .version = KEEL_APPLICATION_V2, .name = n, .vsn = "1", .description = n,   \
    .applications = deps, .start = app_start, .prep_stop = app_prep_stop,      \
    .stop = app_stop, .start_phases = ph, .nphases = nph,                      \
    .start_phase = app_phase, .included_applications = inc                     \
  }

static const keel_app_phase ph_ph[] = {{"p1", NULL}, {"p2", "{ph, 2}"}};
static const keel_app_phase ph_fail[] = {{"p1", NULL}, {"boom", NULL}};
static const keel_app_phase ph_t[] = {{"p1", NULL}, {"p2", "{t, 2}"}};
static const keel_app_phase ph_i[] = {{"p3", NULL}, {"p2", "{i, 2}"}};
static const char *const deps_i[] = {"dep", NULL};
static const keel_application *const inc_t[] = {&app_i, NULL};

static const keel_application app_ph = APP2("ph", NULL, ph_ph, 2, NULL);
static const keel_application app_fail = APP2("fail", NULL, ph_fail, 2, NULL);
static const keel_application app_t = APP2("t", NULL, ph_t, 2, inc_t);
static const keel_application app_i = APP2("i", deps_i, ph_i, 2, NULL);
static const keel_application app_dep = {.version = KEEL_APPLICATION_V1,
                                         .name = "dep",
                                         .start = app_start,
                                         .prep_stop = app_prep_stop,
                                         .stop = app_stop};
/* Another application including i: refused. */
static const keel_application app_u = APP2("u", NULL, NULL, 0, inc_t);

Test(application_phases, start_phases_in_order_after_the_top_supervisor) {
  cr_assert_eq(keel_application_load(&app_ph), KEEL_OK);
  cr_assert_eq(keel_application_load(&app_fail), KEEL_OK);
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    log_reset();
    cr_assert_eq(keel_application_start(A("ph"), KEEL_APP_TEMPORARY), KEEL_OK);
    cr_assert_str_eq(log_get(), "+p1p2p");
    cr_assert(listed(A("ph")));
    cr_assert_eq(keel_application_stop(A("ph")), KEEL_OK);
    cr_assert_str_eq(log_get(), "+p1p2pPpTpSp");
    /* a failing phase fails the start: the tree stops, then stop runs */
    log_reset();
    cr_assert_eq(keel_application_start(A("fail"), KEEL_APP_TEMPORARY),
                 KEEL_EIO);
    cr_assert_str_eq(log_get(), "+f1fTfSf");
    cr_assert(!listed(A("fail")));
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  /* bad descriptors */
  static const keel_app_phase noname[] = {{NULL, NULL}};
  static const keel_app_phase badarg[] = {{"p", "{"}};
  keel_application b1 = APP2("b1", NULL, noname, 1, NULL);
  keel_application b2 = APP2("b2", NULL, badarg, 1, NULL);
  keel_application b3 = APP2("b3", NULL, ph_ph, 2, NULL);
  b3.start_phase = NULL;
  cr_assert_eq(keel_application_load(&b1), KEEL_EINVAL);
  cr_assert_eq(keel_application_load(&b2), KEEL_EINVAL);
  cr_assert_eq(keel_application_load(&b3), KEEL_EINVAL);
  cr_assert_eq(keel_application_unload(A("b2")), KEEL_ENOENT);
}

Test(application_phases, included_application_started_by_its_includer) {
  cr_assert_eq(keel_application_load(&app_dep), KEEL_OK);
  cr_assert_eq(keel_application_load(&app_t), KEEL_OK); /* loads i too */
  cr_assert_eq(keel_application_load(&app_i), KEEL_EEXIST);
  cr_assert_eq(keel_application_load(&app_u), KEEL_EEXIST);
  for (size_t c = 0; c < NCONF; c++) {
    start_node(sched_counts[c], 0);
    log_reset();
    cr_assert_eq(keel_application_start(A("i"), KEEL_APP_TEMPORARY),
                 KEEL_ESTATE);
    keel_heap h;
    keel_heap_init(&h);
    keel_term started;
    /* i's dependency first, then t, whose tree starts i's top supervisor;
     * i's phase p2 after t's, p3 (not t's) never */
    cr_assert_eq(keel_application_ensure_all_started(A("t"), KEEL_APP_TEMPORARY,
                                                     &h, &started),
                 KEEL_OK);
    cr_assert(keel_eq_exact(started, keel_build(&h, "[dep, t]")));
    cr_assert_str_eq(log_get(), "+d+t+i1t2t2i");
    cr_assert(listed(A("t")));
    cr_assert(!listed(A("i")));
    cr_assert_eq(keel_application_start(A("i"), KEEL_APP_TEMPORARY),
                 KEEL_ESTATE);
    cr_assert_eq(keel_application_unload(A("i")), KEEL_ESTATE);
    cr_assert_eq(keel_application_start_included(NULL, (void *)&app_dep,
                                                 KEEL_NIL, &started),
                 KEEL_ESTATE);
    /* stop: t's tree in reverse start order (i's tree, then t's worker),
     * t's stop; i's stop is not called */
    log_reset();
    cr_assert_eq(keel_application_stop_all(), KEEL_OK);
    cr_assert_str_eq(log_get(), "PtTiTtStPdTdSd");
    keel_heap_destroy(&h);
    cr_assert_eq(keel_node_stop(), KEEL_OK);
  }
  /* unloading t leaves i loaded, no longer included: it may start alone */
  cr_assert_eq(keel_application_unload(A("t")), KEEL_OK);
  start_node(2, 0);
  log_reset();
  cr_assert_eq(keel_application_ensure_all_started(A("i"), KEEL_APP_TEMPORARY,
                                                   NULL, NULL),
               KEEL_OK);
  cr_assert_str_eq(log_get(), "+d+i3i2i");
  cr_assert_eq(keel_application_stop_all(), KEEL_OK);
  cr_assert_eq(keel_node_stop(), KEEL_OK);
}
