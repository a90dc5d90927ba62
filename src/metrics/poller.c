/*
 * poller.c - telemetry_poller: a thread that runs measurements every
 * period, sleeping on a condition variable (CLOCK_MONOTONIC) that stop
 * signals.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/metrics.h"
#include "keel/runtime.h"

#define MS_MAX UINT64_C(4294967295)

struct keel_poller {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;
  uint64_t period_ms, delay_ms;
  bool node_stats;
  keel_poller_fn *fns;
  void **args;
  size_t nfns;
  keel_tel_event *ev_counts;
  keel_term keys[5];
};

static void emit_node_stats(const keel_poller *p) {
  keel_node_stats st;
  if (keel_node_stats_get(&st) != KEEL_OK)
    return;
  keel_tel_measure m[5] = {{p->keys[0], (double)st.processes},
                           {p->keys[1], (double)st.spawned},
                           {p->keys[2], (double)st.messages_live},
                           {p->keys[3], (double)st.messages_sent},
                           {p->keys[4], (double)st.timers}};
  keel_tel_execute(p->ev_counts, m, 5, NULL, 0);
}

static struct timespec deadline_after(uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

/* Waits ms or until stop; returns true when stopping. */
static bool wait_or_stop(keel_poller *p, uint64_t ms) {
  struct timespec dl = deadline_after(ms);
  pthread_mutex_lock(&p->mu);
  int rc = 0;
  while (!p->stop && rc == 0)
    rc = pthread_cond_timedwait(&p->cv, &p->mu, &dl);
  bool stop = p->stop;
  pthread_mutex_unlock(&p->mu);
  return stop;
}

static void *poller_main(void *arg) {
  keel_poller *p = arg;
  if (p->delay_ms > 0 && wait_or_stop(p, p->delay_ms))
    return NULL;
  do {
    if (p->node_stats)
      emit_node_stats(p);
    for (size_t i = 0; i < p->nfns; i++)
      p->fns[i](p->args[i]);
  } while (!wait_or_stop(p, p->period_ms));
  return NULL;
}

static void poller_free(keel_poller *p) {
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->fns);
  free(p->args);
  free(p);
}

static int poller_init(keel_poller *p, const keel_poller_opts *o) {
  p->period_ms = o->period_ms ? o->period_ms : 5000;
  p->delay_ms = o->init_delay_ms;
  p->node_stats = o->node_stats;
  p->nfns = o->nfns;
  const char *keys[5] = {"process_count", "spawned", "messages_live",
                         "messages_sent", "timer_count"};
  for (int i = 0; i < 5; i++)
    p->keys[i] = keel_atom(keys[i]);
  int rc = keel_tel_event_parse("keel.vm.system_counts", &p->ev_counts);
  if (rc != KEEL_OK || o->nfns == 0)
    return rc;
  p->fns = malloc(o->nfns * sizeof *p->fns);
  p->args = malloc(o->nfns * sizeof *p->args);
  if (p->fns == NULL || p->args == NULL)
    return KEEL_ENOMEM;
  memcpy(p->fns, o->fns, o->nfns * sizeof *p->fns);
  for (size_t i = 0; i < o->nfns; i++)
    p->args[i] = o->args ? o->args[i] : NULL;
  return KEEL_OK;
}

static int check_opts(const keel_poller_opts *o) {
  if (o == NULL || o->period_ms > MS_MAX || o->init_delay_ms > MS_MAX ||
      (o->nfns > 0 && o->fns == NULL) || (o->nfns == 0 && !o->node_stats))
    return KEEL_EINVAL;
  for (size_t i = 0; i < o->nfns; i++)
    if (o->fns[i] == NULL)
      return KEEL_EINVAL;
  return KEEL_OK;
}

int keel_poller_start(const keel_poller_opts *opts, keel_poller **out) {
  if (out == NULL || check_opts(opts) != KEEL_OK)
    return KEEL_EINVAL;
  keel_poller *p = calloc(1, sizeof *p);
  if (p == NULL)
    return KEEL_ENOMEM;
  pthread_mutex_init(&p->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  int rc = poller_init(p, opts);
  if (rc == KEEL_OK && pthread_create(&p->thread, NULL, poller_main, p) != 0)
    rc = KEEL_EIO;
  if (rc != KEEL_OK) {
    poller_free(p);
    return rc;
  }
  *out = p;
  return KEEL_OK;
}

void keel_poller_stop(keel_poller *p) {
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  poller_free(p);
}
