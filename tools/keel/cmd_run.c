/*
 * cmd_run.c - `keel run`: a Keel node running the demo pipeline of
 * demo_node.h under supervisors, serving its live dashboard over HTTP.
 *
 * The main thread starts the node, the supervision tree and the HTTP
 * server, then prints each worker's progress once a second. Supervisor
 * reports (telemetry events) are printed as they happen: worker 0 crashes
 * on purpose every --crash-every seconds and is restarted; a supervisor
 * that exceeds its restart intensity gives up and its parent restarts it;
 * if the root supervisor gives up, the permanent application `demo`
 * exits and the node stops with status 1. SIGINT/SIGTERM, or --duration
 * running out, stop the application (ordered shutdown: its servers print
 * their stop in reverse start order), then the node (status 0).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "demo_node.h"
#include "keel/application.h"
#include "keel/error.h"
#include "keel/http.h"
#include "keel/runtime.h"
#include "keel/telemetry.h"
#include "web.h"

#define RESTART_MAX 3
#define RESTART_PERIOD 5.0
#define MAX_SUPS 4

typedef struct sup_window {
  keel_term sup;
  double at[RESTART_MAX + 1]; /* restart times in the window */
  int n;
} sup_window;

typedef struct run_node {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* signalled on stop and when the root gives up */
  bool stop, gave_up;
  int signo; /* signal that stopped the node, 0 if none */
  keel_demo *demo;
  keel_demo_opts o;
  sup_window win[MAX_SUPS];
  keel_tel_event *ev_terminated, *ev_restart, *ev_shutdown;
} run_node;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timespec abstime(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  return ts;
}

/* ---- supervisor reports ----------------------------------------------- */

static keel_term meta(const keel_tel_meta *md, size_t n, const char *key) {
  keel_term k = keel_atom(key);
  for (size_t i = 0; i < n; i++)
    if (md[i].key == k)
      return md[i].value;
  return KEEL_NONE;
}

/* "worker 3" for demo_worker_3, else the id as printed. */
static void child_name(keel_term id, char *buf, size_t size) {
  char text[64];
  if (keel_print(text, sizeof text, id, NULL) < 0)
    snprintf(text, sizeof text, "?");
  unsigned i;
  if (sscanf(text, "demo_worker_%u", &i) == 1)
    snprintf(buf, size, "worker %u", i);
  else
    snprintf(buf, size, "%s", text);
}

/* Records a restart by sup; returns restarts in the last period. */
static int count_restart(run_node *n, keel_term sup, double t) {
  sup_window *w = NULL, *oldest = &n->win[0];
  for (int i = 0; i < MAX_SUPS && w == NULL; i++) {
    sup_window *x = &n->win[i];
    if (x->sup == sup)
      w = x;
    else if (x->n == 0 ||
             (oldest->n > 0 && x->at[x->n - 1] < oldest->at[oldest->n - 1]))
      oldest = x;
  }
  if (w == NULL) { /* a new supervisor (or a restarted one: a new pid) */
    w = oldest;
    w->n = 0;
  }
  w->sup = sup;
  int k = 0;
  for (int i = 0; i < w->n; i++)
    if (t - w->at[i] <= RESTART_PERIOD && k < RESTART_MAX)
      w->at[k++] = w->at[i];
  w->at[k++] = t;
  w->n = k;
  return k;
}

static int on_sup_event(const keel_tel_event *ev, const keel_tel_measure *m,
                        size_t nm, const keel_tel_meta *md, size_t nmd,
                        void *config) {
  (void)m;
  (void)nm;
  run_node *n = config;
  char who[64], why[128];
  child_name(meta(md, nmd, "id"), who, sizeof who);
  keel_term reason = meta(md, nmd, "reason");
  if (reason == KEEL_NONE || keel_print(why, sizeof why, reason, NULL) < 0)
    snprintf(why, sizeof why, "?");
  keel_term sup = meta(md, nmd, "supervisor");
  pthread_mutex_lock(&n->lock);
  if (ev == n->ev_terminated) {
    printf("supervisor: %s exited: %s\n", who, why);
  } else if (ev == n->ev_restart) {
    int k = count_restart(n, sup, now());
    printf("supervisor: restarted %s (%d restart%s in the last %.0f s)\n", who,
           k, k == 1 ? "" : "s", RESTART_PERIOD);
  } else if (ev == n->ev_shutdown) {
    bool root = n->demo != NULL && sup == keel_demo_root(n->demo);
    printf("supervisor: %s: more than %d restarts in %.0f s, giving up\n",
           root ? "demo_sup" : "demo_workers", RESTART_MAX, RESTART_PERIOD);
  }
  pthread_mutex_unlock(&n->lock);
  return 0;
}

static int attach_reports(run_node *n) {
  int rc = keel_tel_event_parse("keel.supervisor.child_terminated",
                                &n->ev_terminated);
  if (rc == KEEL_OK)
    rc = keel_tel_event_parse("keel.supervisor.child_restart", &n->ev_restart);
  if (rc == KEEL_OK)
    rc = keel_tel_event_parse("keel.supervisor.shutdown", &n->ev_shutdown);
  if (rc != KEEL_OK)
    return rc;
  keel_tel_event *evs[] = {n->ev_terminated, n->ev_restart, n->ev_shutdown};
  return keel_tel_attach(keel_atom("keel_run_reports"), evs, 3, on_sup_event,
                         n);
}

/* The permanent application `demo` exited by itself (its root supervisor
 * gave up): the node stops. */
static void on_app_exit(keel_term app, keel_term reason, void *arg) {
  (void)app;
  (void)reason;
  run_node *n = arg;
  pthread_mutex_lock(&n->lock);
  n->gave_up = true;
  pthread_cond_broadcast(&n->cond);
  pthread_mutex_unlock(&n->lock);
}

/* ---- the main loop ---------------------------------------------------- */

static void print_stats(run_node *n, double elapsed) {
  for (unsigned i = 0; i < n->o.workers; i++)
    printf("[%3.0fs] worker %u: %llu round-trips\n", elapsed, i,
           (unsigned long long)keel_demo_done(n->demo, i));
}

/* Prints stats each second until stop, the deadline or the root giving
 * up. Returns false if the root gave up. */
static bool watch(run_node *n, double duration) {
  double start = now(), tick = start + 1;
  double deadline = duration > 0 ? start + duration : 0;
  pthread_mutex_lock(&n->lock);
  while (!n->stop && !n->gave_up) {
    double t = now();
    if (t >= tick) {
      pthread_mutex_unlock(&n->lock);
      print_stats(n, t - start);
      pthread_mutex_lock(&n->lock);
      tick += 1;
    }
    if (deadline > 0 && t >= deadline)
      break;
    double wake = deadline > 0 && deadline < tick ? deadline : tick;
    struct timespec ts = abstime(wake);
    pthread_cond_timedwait(&n->cond, &n->lock, &ts);
  }
  n->stop = true;
  bool ok = !n->gave_up;
  pthread_mutex_unlock(&n->lock);
  return ok;
}

/* SIGINT and SIGTERM stop the node; SIGUSR1 only wakes the signal thread
 * at shutdown. */
static void node_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGUSR1);
}

static void *signal_main(void *arg) {
  run_node *n = arg;
  sigset_t set;
  node_signals(&set);
  int sig = 0;
  for (;;) {
    if (sigwait(&set, &sig) != 0)
      return NULL;
    pthread_mutex_lock(&n->lock);
    bool done = n->stop;
    if (!done && sig != SIGUSR1) {
      n->signo = sig;
      n->stop = true;
      pthread_cond_broadcast(&n->cond);
      done = true;
    }
    pthread_mutex_unlock(&n->lock);
    if (done)
      return NULL;
  }
}

typedef struct run_args {
  double duration;
  long port;
  const char *bind;
  bool http;
} run_args;

static bool parse_run_args(run_node *n, run_args *a, int argc, char **argv) {
  long v;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    bool good = val != NULL;
    if (strcmp(o, "--no-http") == 0) {
      a->http = false;
      continue;
    } else if (strcmp(o, "--duration") == 0) {
      good = good && keel_cli_parse_seconds(val, &a->duration);
    } else if (strcmp(o, "--crash-every") == 0) {
      good = good && keel_cli_parse_seconds(val, &n->o.crash_every);
    } else if (strcmp(o, "--workers") == 0) {
      good = good && keel_cli_parse_long(val, 1, KEEL_DEMO_MAX_WORKERS, &v);
      n->o.workers = good ? (unsigned)v : n->o.workers;
    } else if (strcmp(o, "--rate") == 0) {
      good = good && keel_cli_parse_long(val, 100, 1000000, &v);
      n->o.rate = good ? (unsigned)v : n->o.rate;
    } else if (strcmp(o, "--port") == 0) {
      good = good && keel_cli_parse_long(val, 0, 65535, &a->port);
    } else if (strcmp(o, "--bind") == 0) {
      a->bind = val;
    } else {
      keel_cli_error("run", "unknown option '%s'", o);
      return false;
    }
    if (!good) {
      keel_cli_error("run", "%s needs a valid value (workers: 1..%d)", o,
                     KEEL_DEMO_MAX_WORKERS);
      return false;
    }
    i++;
  }
  return true;
}

static void node_init(run_node *n) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&n->cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&n->lock, NULL);
}

/* Starts the node, the tree and the web server. 0 or an exit status. */
static int node_up(run_node *n, const run_args *a, keel_web **web) {
  if (keel_node_start(NULL) != KEEL_OK) {
    keel_cli_error("run", "cannot start the node");
    return 1;
  }
  int rc = attach_reports(n);
  keel_application_set_exit_handler(on_app_exit, n);
  if (rc == KEEL_OK)
    rc = keel_demo_start(&n->o, &n->demo);
  if (rc != KEEL_OK) {
    keel_cli_error("run", "cannot start the demo: %s", keel_strerror(rc));
    return 1;
  }
  printf("keel: node started: %u workers, restart intensity %d in %.0f s\n",
         n->o.workers, RESTART_MAX, RESTART_PERIOD);
  if (!a->http)
    return 0;
  keel_web_opts wo = {.bind = a->bind,
                      .port = (uint16_t)a->port,
                      .root_sup = keel_atom("demo_sup")};
  rc = keel_web_start(&wo, web);
  if (rc == KEEL_OK)
    printf("keel: dashboard at http://%s:%u/\n",
           a->bind != NULL ? a->bind : "127.0.0.1", keel_web_port(*web));
  else
    printf("keel: no dashboard: %s (port %ld)\n", keel_strerror(rc), a->port);
  return 0;
}

int keel_cmd_run(int argc, char **argv) {
  static run_node n;
  n.o = (keel_demo_opts){.workers = 4, .crash_every = 2.0};
  run_args a = {.port = 4000, .http = true};
  if (!parse_run_args(&n, &a, argc, argv))
    return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  sigset_t set;
  node_signals(&set);
  /* Background jobs may inherit SIGINT ignored; POSIX lets an ignored
   * signal be discarded even while blocked, so sigwait would miss it. The
   * mask is set before any thread starts, so every thread inherits it. */
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  node_init(&n);
  pthread_t sigthr;
  if (pthread_create(&sigthr, NULL, signal_main, &n) != 0) {
    keel_cli_error("run", "cannot start the signal thread");
    return 1;
  }
  keel_web *web = NULL;
  int status = node_up(&n, &a, &web);
  bool ok = status == 0 && watch(&n, a.duration);
  keel_web_stop(web);
  keel_demo_stop(n.demo); /* the ordered shutdown */
  keel_application_set_exit_handler(NULL, NULL);
  keel_application_clear_exit();
  (void)keel_tel_detach(keel_atom("keel_run_reports"));
  (void)keel_node_stop();
  pthread_mutex_lock(&n.lock);
  n.stop = true;
  pthread_mutex_unlock(&n.lock);
  pthread_kill(sigthr, SIGUSR1); /* wakes its sigwait if still waiting */
  pthread_join(sigthr, NULL);
  if (n.signo != 0)
    printf("keel: received %s\n", n.signo == SIGINT ? "SIGINT" : "SIGTERM");
  if (status != 0)
    return status;
  printf(ok ? "keel: stopped\n" : "keel: supervisor gave up\n");
  return ok ? 0 : 1;
}
