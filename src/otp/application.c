/*
 * application.c - the application controller: loading descriptors,
 * starting each application through its master (a fiber gen_server that
 * traps exits and is the parent of the top supervisor), stopping them,
 * which_applications, and the node-stop report of permanent and transient
 * applications.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "keel/gen_server.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "keel/supervisor.h"
#include "keel/telemetry.h"
#include "otp/application_internal.h"

pthread_mutex_t keel__app_lock = PTHREAD_MUTEX_INITIALIZER;
app_rec keel__apps[KEEL_APPLICATION_MAX];
static uint64_t start_seq;

/* Node stop: set once by an exit that stops the node. */
static pthread_cond_t exit_cv = PTHREAD_COND_INITIALIZER;
static bool exit_set;
static keel_heap exit_heap;
static bool exit_heap_ready;
static keel_term exit_app, exit_reason;
static keel_app_exit_fn exit_fn;
static void *exit_arg;

app_rec *keel__app_find(keel_term name) {
  if (!keel_is_atom(name))
    return NULL;
  for (size_t i = 0; i < KEEL_APPLICATION_MAX; i++)
    if (keel__apps[i].state != APP_FREE && keel__apps[i].name == name)
      return &keel__apps[i];
  return NULL;
}

/* ---- telemetry ---------------------------------------------------------- */

static keel_tel_event *event(_Atomic(keel_tel_event *) *slot,
                             const char *last) {
  keel_tel_event *e = atomic_load_explicit(slot, memory_order_acquire);
  if (e == NULL) {
    keel_term a[3] = {keel_atom("keel"), keel_atom("application"),
                      keel_atom(last)};
    if (keel_tel_event_get(a, 3, &e) != KEEL_OK)
      return NULL;
    atomic_store_explicit(slot, e, memory_order_release);
  }
  return e;
}

static _Atomic(keel_tel_event *) ev_start, ev_stop;

static keel_term type_atom(keel_app_type t) {
  return keel_atom(t == KEEL_APP_PERMANENT   ? "permanent"
                   : t == KEEL_APP_TRANSIENT ? "transient"
                                             : "temporary");
}

static void report_start(keel_term name, keel_app_type type) {
  keel_tel_meta md[2] = {{keel_atom("application"), name},
                         {keel_atom("type"), type_atom(type)}};
  keel_tel_measure m = {keel_atom("count"), 1.0};
  keel_tel_execute(event(&ev_start, "start"), &m, 1, md, 2);
}

static void report_stop(keel_term name, keel_app_type type, keel_term reason,
                        bool node_stop) {
  keel_tel_meta md[4] = {
      {keel_atom("application"), name},
      {keel_atom("type"), type_atom(type)},
      {keel_atom("reason"), reason},
      {keel_atom("node_stop"), node_stop ? KEEL_ATOM(TRUE) : KEEL_ATOM(FALSE)}};
  keel_tel_measure m = {keel_atom("count"), 1.0};
  keel_tel_execute(event(&ev_stop, "stop"), &m, 1, md, 4);
}

/* ---- node stop ---------------------------------------------------------- */

static void node_stop(keel_term name, keel_term reason) {
  pthread_mutex_lock(&keel__app_lock);
  bool first = !exit_set;
  keel_app_exit_fn fn = exit_fn;
  void *arg = exit_arg;
  if (first) {
    if (!exit_heap_ready)
      keel_heap_init(&exit_heap);
    exit_heap_ready = true;
    exit_app = name;
    exit_reason = keel_term_copy(&exit_heap, reason);
    if (exit_reason == KEEL_NONE)
      exit_reason = KEEL_ATOM(SYSTEM_LIMIT);
    exit_set = true;
    pthread_cond_broadcast(&exit_cv);
  }
  pthread_mutex_unlock(&keel__app_lock);
  if (first && fn != NULL)
    fn(name, reason, arg);
}

void keel_application_set_exit_handler(keel_app_exit_fn fn, void *arg) {
  pthread_mutex_lock(&keel__app_lock);
  exit_fn = fn;
  exit_arg = arg;
  pthread_mutex_unlock(&keel__app_lock);
}

void keel_application_clear_exit(void) {
  pthread_mutex_lock(&keel__app_lock);
  exit_set = false;
  if (exit_heap_ready)
    keel_heap_destroy(&exit_heap);
  exit_heap_ready = false;
  pthread_mutex_unlock(&keel__app_lock);
}

static struct timespec deadline(int64_t ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += (time_t)(ms / 1000);
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

int keel_application_wait(int64_t timeout_ms, keel_heap *h, keel_term *app,
                          keel_term *reason) {
  if (keel_current() != NULL)
    return KEEL_ESTATE;
  if ((reason != NULL && h == NULL) || timeout_ms < KEEL_INFINITY)
    return KEEL_EINVAL;
  struct timespec dl = deadline(timeout_ms > 0 ? timeout_ms : 0);
  pthread_mutex_lock(&keel__app_lock);
  int w = 0;
  while (!exit_set && w == 0 && timeout_ms != 0)
    w = timeout_ms == KEEL_INFINITY
            ? pthread_cond_wait(&exit_cv, &keel__app_lock)
            : pthread_cond_timedwait(&exit_cv, &keel__app_lock, &dl);
  int rc = exit_set ? KEEL_OK : KEEL_ETIMEDOUT;
  if (rc == KEEL_OK) {
    if (app != NULL)
      *app = exit_app;
    if (reason != NULL) {
      *reason = keel_term_copy(h, exit_reason);
      rc = *reason != KEEL_NONE ? KEEL_OK : KEEL_ENOMEM;
    }
  }
  pthread_mutex_unlock(&keel__app_lock);
  return rc;
}

/* ---- the application master --------------------------------------------- */

static app_rec *rec_of_master(keel_term self) {
  for (size_t i = 0; i < KEEL_APPLICATION_MAX; i++)
    if (keel__apps[i].state != APP_FREE && keel__apps[i].master == self)
      return &keel__apps[i];
  return NULL;
}

static keel_gs_ret m_init(keel_gen_server *gs, keel_term name,
                          keel_term *state) {
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  const keel_application *app = r->app;
  keel_app_type type = r->type;
  pthread_mutex_unlock(&keel__app_lock);
  keel_term sup = KEEL_NONE;
  void *cb = NULL;
  int rc = app->start(app, type, &sup, &cb);
  if (rc == KEEL_OK && !keel_is_local_pid(sup))
    rc = KEEL_EBADARG;
  if (rc == KEEL_OK)
    rc = keel_link(keel_gs_proc(gs), sup);
  bool started = rc == KEEL_OK;
  if (started)
    rc = keel__app_run_phases(name, type, cb);
  if (rc != KEEL_OK) {
    if (started) { /* a phase failed: the tree goes in order, then stop */
      (void)keel_sup_stop(sup);
      if (app->stop != NULL)
        app->stop(app, cb);
    } else if (keel_is_local_pid(sup)) {
      (void)keel_exit(sup, KEEL_ATOM(KILL));
    }
    pthread_mutex_lock(&keel__app_lock);
    r->start_rc = rc;
    keel__app_included_stopped(name);
    pthread_mutex_unlock(&keel__app_lock);
    return keel_gs_stop(gs, keel_atom("start_failed"));
  }
  pthread_mutex_lock(&keel__app_lock);
  r->sup = sup;
  r->cb_state = cb;
  r->master = keel_gs_self(gs);
  r->seq = ++start_seq;
  r->state = APP_RUNNING;
  pthread_mutex_unlock(&keel__app_lock);
  *state = sup;
  report_start(name, type);
  return keel_gs_ok(gs);
}

/* {'EXIT', Sup, Reason} from the top supervisor: the application ends. */
static keel_gs_ret m_info(keel_gen_server *gs, keel_term msg,
                          keel_term *state) {
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) == 3 &&
      keel_tuple_get(msg, 0) == KEEL_ATOM(EXIT) &&
      keel_tuple_get(msg, 1) == *state)
    return keel_gs_stop(gs, keel_tuple_get(msg, 2));
  return keel_gs_ok(gs);
}

static void m_terminate(keel_gen_server *gs, keel_term reason,
                        keel_term state) {
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = rec_of_master(keel_gs_self(gs));
  if (r == NULL) {
    pthread_mutex_unlock(&keel__app_lock);
    return;
  }
  const keel_application *app = r->app;
  bool requested = r->stopping;
  keel_app_type type = r->type;
  keel_term name = r->name;
  void *cb = r->cb_state;
  r->state = APP_STOPPING;
  pthread_mutex_unlock(&keel__app_lock);
  if (requested && app->prep_stop != NULL)
    app->prep_stop(app, cb);
  (void)keel_sup_stop(state); /* KEEL_ENOPROC when it died by itself */
  if (app->stop != NULL)
    app->stop(app, cb);
  pthread_mutex_lock(&keel__app_lock);
  r->state = APP_LOADED;
  r->master = r->sup = KEEL_NONE;
  r->cb_state = NULL;
  r->stopping = false;
  keel__app_included_stopped(name);
  pthread_mutex_unlock(&keel__app_lock);
  bool stops_node =
      !requested &&
      (type == KEEL_APP_PERMANENT ||
       (type == KEEL_APP_TRANSIENT && reason != KEEL_ATOM(NORMAL)));
  report_stop(name, type, requested ? keel_atom("stopped") : reason,
              stops_node);
  if (stops_node)
    node_stop(name, reason);
}

static const keel_gen_server_module master_mod = {.version =
                                                      KEEL_GEN_SERVER_MODULE_V1,
                                                  .name = "application_master",
                                                  .init = m_init,
                                                  .handle_info = m_info,
                                                  .terminate = m_terminate};

/* ---- load / start / stop ------------------------------------------------ */

static bool can_wait(void) {
  keel_proc *p = keel_current();
  return p == NULL || keel_proc_is_fiber(p);
}

int keel__app_load_locked(const keel_application *app) {
  if (app == NULL ||
      (app->version != KEEL_APPLICATION_V1 &&
       app->version != KEEL_APPLICATION_V2) ||
      app->name == NULL || app->start == NULL ||
      (app->nenv > 0 && app->env == NULL) || keel__app_check_v2(app) != KEEL_OK)
    return KEEL_EINVAL;
  keel_term name = keel_atom(app->name);
  if (name == KEEL_NONE)
    return KEEL_EINVAL;
  app_rec *r = NULL;
  int rc = keel__app_find(name) != NULL ? KEEL_EEXIST : KEEL_ESYSLIMIT;
  for (size_t i = 0; rc == KEEL_ESYSLIMIT && i < KEEL_APPLICATION_MAX; i++)
    if (keel__apps[i].state == APP_FREE) {
      r = &keel__apps[i];
      rc = KEEL_OK;
    }
  if (rc != KEEL_OK)
    return rc;
  memset(r, 0, sizeof *r);
  r->app = app;
  r->name = name;
  r->master = r->sup = KEEL_NONE;
  r->included_by = KEEL_NONE;
  rc = keel__app_env_load(r);
  if (rc != KEEL_OK)
    return rc;
  /* Loaded before its included applications: a cycle finds it. */
  r->state = APP_LOADED;
  rc = keel__app_load_v2(r);
  if (rc != KEEL_OK) {
    keel__app_env_free(r);
    r->state = APP_FREE;
  }
  return rc;
}

int keel_application_load(const keel_application *app) {
  pthread_mutex_lock(&keel__app_lock);
  int rc = keel__app_load_locked(app);
  pthread_mutex_unlock(&keel__app_lock);
  return rc;
}

int keel_application_unload(keel_term name) {
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  int rc = r == NULL                                           ? KEEL_ENOENT
           : r->state != APP_LOADED || !keel__app_unload_ok(r) ? KEEL_ESTATE
                                                               : KEEL_OK;
  if (rc == KEEL_OK) {
    keel__app_unload_v2(r->name);
    keel__app_env_free(r);
    r->state = APP_FREE;
  }
  pthread_mutex_unlock(&keel__app_lock);
  return rc;
}

/* Whether every dependency of r runs (lock held). */
static bool deps_running(const app_rec *r) {
  const char *const *d = r->app->applications;
  for (; d != NULL && *d != NULL; d++) {
    app_rec *dr = keel__app_find(keel_atom(*d));
    if (dr == NULL || dr->state != APP_RUNNING)
      return false;
  }
  return true;
}

/* Moves r from LOADED to STARTING (lock held). */
static int claim_start(app_rec *r, keel_app_type type) {
  if (r == NULL)
    return KEEL_ENOENT;
  if (r->state == APP_RUNNING)
    return KEEL_EEXIST;
  if (r->state != APP_LOADED)
    return KEEL_EBUSY;
  if (!deps_running(r) || !keel__app_startable(r))
    return KEEL_ESTATE;
  r->state = APP_STARTING;
  r->type = type;
  r->start_rc = KEEL_OK;
  r->stopping = false;
  return KEEL_OK;
}

int keel_application_start(keel_term name, keel_app_type type) {
  if (type != KEEL_APP_PERMANENT && type != KEEL_APP_TRANSIENT &&
      type != KEEL_APP_TEMPORARY)
    return KEEL_EINVAL;
  if (!can_wait())
    return KEEL_ESTATE;
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  int rc = claim_start(r, type);
  pthread_mutex_unlock(&keel__app_lock);
  if (rc != KEEL_OK)
    return rc;
  keel_gen_server_opts o = {
      .fiber = true, .trap_exit = true, .timeout_ms = KEEL_INFINITY};
  keel_term pid;
  rc = keel_gen_server_start(&master_mod, name, &o, &pid);
  if (rc != KEEL_OK) {
    pthread_mutex_lock(&keel__app_lock);
    if (r->start_rc != KEEL_OK)
      rc = r->start_rc;
    if (r->state == APP_STARTING)
      r->state = APP_LOADED;
    pthread_mutex_unlock(&keel__app_lock);
  }
  return rc;
}

/* Marks r stopped when its master died without its terminate (killed). */
static void forget_master(app_rec *r, keel_term master) {
  pthread_mutex_lock(&keel__app_lock);
  if (r->master == master && r->state != APP_LOADED) {
    r->state = APP_LOADED;
    r->master = r->sup = KEEL_NONE;
    r->cb_state = NULL;
    r->stopping = false;
  }
  pthread_mutex_unlock(&keel__app_lock);
}

int keel_application_stop(keel_term name) {
  if (!can_wait())
    return KEEL_ESTATE;
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  int rc = r == NULL                 ? KEEL_ENOENT
           : r->state == APP_LOADED  ? KEEL_ESTATE
           : r->state != APP_RUNNING ? KEEL_EBUSY
           : r->stopping             ? KEEL_EBUSY
                                     : KEEL_OK;
  keel_term master = KEEL_NONE;
  if (rc == KEEL_OK) {
    r->stopping = true;
    master = r->master;
  }
  pthread_mutex_unlock(&keel__app_lock);
  if (rc != KEEL_OK)
    return rc;
  keel_term why = keel_atom("stopped");
  keel_term reason = KEEL_NONE;
  uint64_t buf[4];
  keel_heap h;
  keel_heap_init_fixed(&h, buf, 4);
  reason = keel_tuple(&h, 2, KEEL_ATOM(SHUTDOWN), why);
  rc = keel_gen_server_stop(master, reason, KEEL_INFINITY);
  keel_heap_destroy(&h);
  if (rc == KEEL_ENOPROC) /* a master killed from outside ran no terminate */
    forget_master(r, master);
  return rc == KEEL_ENOPROC ? KEEL_OK : rc;
}

/* The running applications' names, the last started first (lock held). */
static size_t running_by_seq(keel_term *names) {
  size_t n = 0;
  uint64_t seqs[KEEL_APPLICATION_MAX] = {0};
  for (size_t i = 0; i < KEEL_APPLICATION_MAX; i++) {
    if (keel__apps[i].state != APP_RUNNING)
      continue;
    size_t j = n++;
    for (; j > 0 && seqs[j - 1] < keel__apps[i].seq; j--) {
      seqs[j] = seqs[j - 1];
      names[j] = names[j - 1];
    }
    seqs[j] = keel__apps[i].seq;
    names[j] = keel__apps[i].name;
  }
  return n;
}

int keel_application_stop_all(void) {
  keel_term names[KEEL_APPLICATION_MAX];
  pthread_mutex_lock(&keel__app_lock);
  size_t n = running_by_seq(names);
  pthread_mutex_unlock(&keel__app_lock);
  int first = KEEL_OK;
  for (size_t i = 0; i < n; i++) {
    int rc = keel_application_stop(names[i]);
    if (rc != KEEL_OK && rc != KEEL_ESTATE && first == KEEL_OK)
      first = rc;
  }
  return first;
}

static keel_term bin_of(keel_heap *h, const char *s) {
  return keel_binary(h, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int keel_application_which(keel_heap *h, keel_term *out) {
  if (h == NULL || out == NULL)
    return KEEL_EINVAL;
  keel_term names[KEEL_APPLICATION_MAX];
  pthread_mutex_lock(&keel__app_lock);
  size_t n = running_by_seq(names);
  keel_term list = KEEL_NIL;
  for (size_t i = n; i-- > 0 && list != KEEL_NONE;) {
    const keel_application *a = keel__app_find(names[i])->app;
    keel_term d = bin_of(h, a->description), v = bin_of(h, a->vsn);
    keel_term t = d != KEEL_NONE && v != KEEL_NONE
                      ? keel_tuple(h, 3, names[i], d, v)
                      : KEEL_NONE;
    list = t != KEEL_NONE ? keel_cons(h, t, list) : KEEL_NONE;
  }
  pthread_mutex_unlock(&keel__app_lock);
  *out = list;
  return list != KEEL_NONE ? KEEL_OK : KEEL_ENOMEM;
}

/* ---- ensure_all_started ------------------------------------------------- */

typedef struct ensure_ctx {
  keel_app_type type;
  keel_term started[KEEL_APPLICATION_MAX];
  size_t n;
} ensure_ctx;

static int ensure(ensure_ctx *c, keel_term name, unsigned depth);

/* The dependencies of app and of the applications it includes. */
static int ensure_deps(ensure_ctx *c, const keel_application *app,
                       unsigned depth) {
  if (depth > KEEL_APPLICATION_MAX)
    return KEEL_ELIMIT;
  for (const char *const *d = app->applications; d != NULL && *d != NULL; d++) {
    int rc = ensure(c, keel_atom(*d), depth + 1);
    if (rc != KEEL_OK)
      return rc;
  }
  const keel_application *const *inc = keel__app_included(app);
  for (; inc != NULL && *inc != NULL; inc++) {
    int rc = ensure_deps(c, *inc, depth + 1);
    if (rc != KEEL_OK)
      return rc;
  }
  return KEEL_OK;
}

static int ensure(ensure_ctx *c, keel_term name, unsigned depth) {
  if (depth > KEEL_APPLICATION_MAX)
    return KEEL_ELIMIT;
  pthread_mutex_lock(&keel__app_lock);
  app_rec *r = keel__app_find(name);
  const keel_application *app = r != NULL ? r->app : NULL;
  bool running = r != NULL && r->state == APP_RUNNING;
  pthread_mutex_unlock(&keel__app_lock);
  if (app == NULL)
    return KEEL_ENOENT;
  if (running)
    return KEEL_OK;
  int rc = ensure_deps(c, app, depth);
  if (rc != KEEL_OK)
    return rc;
  rc = keel_application_start(name, c->type);
  if (rc == KEEL_OK && c->n < KEEL_APPLICATION_MAX)
    c->started[c->n++] = name;
  return rc == KEEL_EEXIST ? KEEL_OK : rc;
}

int keel_application_ensure_all_started(keel_term name, keel_app_type type,
                                        keel_heap *h, keel_term *started) {
  if (!can_wait())
    return KEEL_ESTATE;
  ensure_ctx c = {.type = type};
  int rc = ensure(&c, name, 0);
  if (rc != KEEL_OK) {
    for (size_t i = c.n; i-- > 0;)
      (void)keel_application_stop(c.started[i]);
    return rc;
  }
  if (h != NULL && started != NULL) {
    *started = keel_list_from(h, c.n, c.started);
    if (*started == KEEL_NONE)
      return KEEL_ENOMEM;
  }
  return KEEL_OK;
}
