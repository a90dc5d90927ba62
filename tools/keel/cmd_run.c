/*
 * cmd_run.c - `keel run`: a small supervised demo node on plain pthreads.
 *
 * A supervisor (the main thread) starts N workers. Each worker pushes random
 * terms through ETF and JSON and checks the round-trips; worker 0 also
 * crashes on purpose every few seconds. The supervisor prints statistics
 * once a second and restarts crashed workers with OTP's restart intensity:
 * more than RESTART_MAX restarts within RESTART_PERIOD seconds and it gives
 * up (exit status 1). SIGINT/SIGTERM, or --duration running out, stop every
 * worker and exit with status 0. This stands in for the real runtime until
 * it exists.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "demo.h"
#include "keel/error.h"

#define MAX_WORKERS 64
#define RESTART_MAX 3
#define RESTART_PERIOD 5.0

struct node;

typedef struct worker {
  int id;
  pthread_t thread;
  bool running;    /* started and not yet joined */
  bool exited;     /* returned; set under node->lock */
  int reason;      /* its return code */
  const char *why; /* what failed, for the log */
  double crash_after;
  _Atomic unsigned long long roundtrips;
  struct node *node;
} worker;

typedef struct node {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* signalled on worker exit and on stop */
  atomic_bool stop;
  int signo; /* signal that stopped the node, 0 if none */
  int nworkers;
  double crash_every; /* seconds; 0: nobody crashes */
  double restarts[RESTART_MAX + 1];
  int nrestarts;
  worker workers[MAX_WORKERS];
} node;

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

static void *worker_main(void *arg) {
  worker *w = arg;
  uint64_t rng =
      0x9e3779b97f4a7c15ull ^ ((uint64_t)w->id << 32) ^ (uint64_t)(now() * 1e6);
  double crash_at = w->crash_after > 0 ? now() + w->crash_after : 0;
  const char *why = "stopped";
  int rc = KEEL_OK;
  while (rc == KEEL_OK && !atomic_load(&w->node->stop)) {
    rc = keel_demo_roundtrip(&rng, &why);
    if (rc == KEEL_OK)
      atomic_fetch_add(&w->roundtrips, 1);
    if (rc == KEEL_OK && crash_at > 0 && now() >= crash_at) {
      rc = KEEL_ESTATE;
      why = "simulated crash";
    }
  }
  pthread_mutex_lock(&w->node->lock);
  w->exited = true;
  w->reason = rc;
  w->why = why;
  pthread_cond_broadcast(&w->node->cond);
  pthread_mutex_unlock(&w->node->lock);
  return NULL;
}

/* Starts worker i; the first crash comes sooner than the later ones so a
 * short run sees one. */
static bool start_worker(node *n, int i, bool first) {
  worker *w = &n->workers[i];
  w->id = i;
  w->node = n;
  w->exited = false;
  w->crash_after = 0;
  if (i == 0 && n->crash_every > 0)
    w->crash_after = first ? n->crash_every / 2 : n->crash_every;
  int rc = pthread_create(&w->thread, NULL, worker_main, w);
  if (rc != 0) {
    keel_cli_error("run", "cannot start worker %d: %s", i, strerror(rc));
    return false;
  }
  w->running = true;
  return true;
}

/* OTP restart intensity: true if one more restart at time t stays within
 * RESTART_MAX restarts in the last RESTART_PERIOD seconds (and records it). */
static bool restart_allowed(node *n, double t) {
  int kept = 0;
  for (int i = 0; i < n->nrestarts; i++)
    if (t - n->restarts[i] < RESTART_PERIOD)
      n->restarts[kept++] = n->restarts[i];
  n->nrestarts = kept;
  if (kept >= RESTART_MAX)
    return false;
  n->restarts[n->nrestarts++] = t;
  return true;
}

/* Joins and restarts every worker that exited. Called with the lock held.
 * Returns false when the supervisor has to give up. */
static bool handle_exits(node *n) {
  for (int i = 0; i < n->nworkers; i++) {
    worker *w = &n->workers[i];
    if (!w->running || !w->exited)
      continue;
    pthread_join(w->thread, NULL);
    w->running = false;
    printf("supervisor: worker %d exited: %s (%s)\n", i, w->why,
           keel_err_name(w->reason));
    if (!restart_allowed(n, now())) {
      printf("supervisor: more than %d restarts in %.0f s, giving up\n",
             RESTART_MAX, RESTART_PERIOD);
      return false;
    }
    if (!start_worker(n, i, false))
      return false;
    printf("supervisor: restarted worker %d (%d restart%s in the last %.0f "
           "s)\n",
           i, n->nrestarts, n->nrestarts == 1 ? "" : "s", RESTART_PERIOD);
  }
  return true;
}

static void print_stats(node *n, double elapsed) {
  for (int i = 0; i < n->nworkers; i++)
    printf("[%3.0fs] worker %d: %llu round-trips\n", elapsed, i,
           (unsigned long long)atomic_load(&n->workers[i].roundtrips));
}

/* The supervisor loop. Returns false if it gave up. */
static bool supervise(node *n, double duration) {
  double start = now(), tick = start + 1;
  double deadline = duration > 0 ? start + duration : 0;
  bool ok = true;
  pthread_mutex_lock(&n->lock);
  while (ok && !atomic_load(&n->stop)) {
    ok = handle_exits(n);
    double t = now();
    if (t >= tick) {
      print_stats(n, t - start);
      tick += 1;
    }
    if (deadline > 0 && t >= deadline)
      break;
    double wake = deadline > 0 && deadline < tick ? deadline : tick;
    struct timespec ts = abstime(wake);
    if (ok)
      pthread_cond_timedwait(&n->cond, &n->lock, &ts);
  }
  atomic_store(&n->stop, true);
  pthread_mutex_unlock(&n->lock);
  return ok;
}

/* The signals the node handles in its signal thread: SIGINT and SIGTERM
 * stop it; SIGUSR1 only wakes the thread at shutdown. */
static void node_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGUSR1);
}

static void *signal_main(void *arg) {
  node *n = arg;
  sigset_t set;
  node_signals(&set);
  int sig = 0;
  do {
    if (sigwait(&set, &sig) != 0)
      return NULL;
  } while (sig == SIGUSR1 && !atomic_load(&n->stop));
  pthread_mutex_lock(&n->lock);
  if (!atomic_load(&n->stop))
    n->signo = sig;
  atomic_store(&n->stop, true);
  pthread_cond_broadcast(&n->cond);
  pthread_mutex_unlock(&n->lock);
  return NULL;
}

static bool parse_run_args(node *n, double *duration, int argc, char **argv) {
  long v;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    bool good = val != NULL;
    if (strcmp(o, "--duration") == 0)
      good = good && keel_cli_parse_seconds(val, duration);
    else if (strcmp(o, "--crash-every") == 0)
      good = good && keel_cli_parse_seconds(val, &n->crash_every);
    else if (strcmp(o, "--workers") == 0) {
      good = good && keel_cli_parse_long(val, 1, MAX_WORKERS, &v);
      n->nworkers = good ? (int)v : n->nworkers;
    } else {
      keel_cli_error("run", "unknown option '%s'", o);
      return false;
    }
    if (!good) {
      keel_cli_error("run", "%s needs a valid value (workers: 1..%d)", o,
                     MAX_WORKERS);
      return false;
    }
    i++;
  }
  return true;
}

/* Creates the lock and the monotonic-clock condition variable. */
static void node_init(node *n) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&n->cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&n->lock, NULL);
}

/* Stops and joins every thread still running. */
static void node_shutdown(node *n, pthread_t sigthr) {
  atomic_store(&n->stop, true);
  for (int i = 0; i < n->nworkers; i++)
    if (n->workers[i].running)
      pthread_join(n->workers[i].thread, NULL);
  pthread_kill(sigthr, SIGUSR1); /* wakes its sigwait if still waiting */
  pthread_join(sigthr, NULL);
  pthread_cond_destroy(&n->cond);
  pthread_mutex_destroy(&n->lock);
}

int keel_cmd_run(int argc, char **argv) {
  static node n; /* large; zero-initialised */
  n.nworkers = 4;
  n.crash_every = 2.0;
  double duration = 0;
  if (!parse_run_args(&n, &duration, argc, argv))
    return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  sigset_t set;
  node_signals(&set);
  /* Background jobs may inherit SIGINT ignored; POSIX lets an ignored
   * signal be discarded even while blocked, so sigwait would miss it. */
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  node_init(&n);
  pthread_t sigthr;
  if (pthread_create(&sigthr, NULL, signal_main, &n) != 0) {
    keel_cli_error("run", "cannot start the signal thread");
    return 1;
  }
  printf("keel: node started: %d workers, restart intensity %d in %.0f s\n",
         n.nworkers, RESTART_MAX, RESTART_PERIOD);
  bool ok = true;
  for (int i = 0; ok && i < n.nworkers; i++)
    ok = start_worker(&n, i, true);
  ok = ok && supervise(&n, duration);
  node_shutdown(&n, sigthr);
  if (n.signo != 0)
    printf("keel: received %s\n", n.signo == SIGINT ? "SIGINT" : "SIGTERM");
  printf(ok ? "keel: stopped\n" : "keel: supervisor gave up\n");
  return ok ? 0 : 1;
}
