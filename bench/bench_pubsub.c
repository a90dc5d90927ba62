/*
 * bench_pubsub.c - broadcast to 10,000 subscribers on Keel and on Elixir.
 *
 * Keel side: a node of 2 schedulers, 10,000 handler processes that each
 * subscribe to one topic, and a publisher process that broadcasts one
 * message per round (then sends itself the next round, as the runtime
 * suite's fan-out does). Each subscriber counts what it receives; the
 * last one to receive its last message ends the run. Then, with the
 * 10,000 still subscribed, one fiber subscribes to and unsubscribes from
 * the same topic in a loop (the hot-topic churn of elixir#15128; 200,000
 * cycles here, 500 on BEAM where each costs O(subscribers)). Elixir
 * side: bench/erl/bench_pubsub.exs, the same shape over Registry.dispatch
 * and Registry.register/unregister.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_erl.h"
#include "bench_pubsub.h"
#include "keel/clock.h"
#include "keel/pubsub.h"

#define SUBS 10000
#define NMETRICS 2

static const char *const metric_names[NMETRICS] = {"pubsub_deliveries_per_s",
                                                   "pubsub_sub_unsub_per_s"};

typedef struct run {
  keel_pubsub ps;
  keel_term topic;
  long rounds, cycles;
  _Atomic long subscribed, finished;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
} run;

typedef struct sub {
  run *r;
  long left;
} sub;

static void finish(run *r) {
  pthread_mutex_lock(&r->mu);
  r->done = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static keel_handler_status subscriber(keel_proc *self, keel_term msg,
                                      void *state) {
  (void)self;
  sub *s = state;
  if (msg == KEEL_NIL) {
    if (keel_pubsub_subscribe(s->r->ps, s->r->topic, KEEL_NONE) == KEEL_OK &&
        atomic_fetch_add(&s->r->subscribed, 1) + 1 == SUBS)
      finish(s->r);
  } else if (--s->left == 0 &&
             atomic_fetch_add(&s->r->finished, 1) + 1 == SUBS) {
    finish(s->r);
  }
  return KEEL_CONTINUE;
}

typedef struct pub {
  run *r;
  long left;
} pub;

static keel_handler_status publisher(keel_proc *self, keel_term msg,
                                     void *state) {
  (void)msg;
  pub *p = state;
  (void)keel_pubsub_broadcast(p->r->ps, p->r->topic, keel_small(p->left), NULL);
  if (--p->left > 0)
    (void)keel_send(keel_self(self), KEEL_NIL);
  return KEEL_CONTINUE;
}

/* Subscribes to and unsubscribes from the hot topic r->cycles times. */
static void churner(keel_proc *self, void *arg) {
  (void)self;
  run *r = arg;
  for (long i = 0; i < r->cycles; i++)
    if (keel_pubsub_subscribe(r->ps, r->topic, KEEL_NONE) != KEEL_OK ||
        keel_pubsub_unsubscribe(r->ps, r->topic) != KEEL_OK)
      return;
  finish(r);
}

/* Waits for r->done (at most 120 s); resets it. */
static bool wait_done(run *r) {
  uint64_t limit = keel_monotonic_ns() + UINT64_C(120000000000);
  pthread_mutex_lock(&r->mu);
  while (!r->done && keel_monotonic_ns() < limit) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 1;
    pthread_cond_timedwait(&r->cv, &r->mu, &dl);
  }
  bool ok = r->done;
  r->done = false;
  pthread_mutex_unlock(&r->mu);
  return ok;
}

/* Broadcast deliveries per second into out[0], then subscribe +
 * unsubscribe cycles per second on the same topic (10k subscribers
 * resident) into out[1]. */
static int measure(run *r, sub *subs, double *out) {
  for (int i = 0; i < SUBS; i++) {
    subs[i] = (sub){r, r->rounds};
    keel_term pid;
    if (keel_spawn(subscriber, &subs[i], NULL, &pid) != KEEL_OK ||
        keel_send(pid, KEEL_NIL) != KEEL_OK)
      return -1;
  }
  if (!wait_done(r))
    return -1;
  pub p = {r, r->rounds};
  keel_term pid;
  if (keel_spawn(publisher, &p, NULL, &pid) != KEEL_OK)
    return -1;
  uint64_t t0 = keel_monotonic_ns();
  (void)keel_send(pid, KEEL_NIL);
  if (!wait_done(r))
    return -1;
  uint64_t t1 = keel_monotonic_ns();
  out[0] = (double)r->rounds * SUBS / ((double)(t1 - t0) / 1e9);
  t0 = keel_monotonic_ns();
  if (keel_spawn_fiber(churner, r, NULL, NULL) != KEEL_OK || !wait_done(r))
    return -1;
  t1 = keel_monotonic_ns();
  out[1] = (double)r->cycles / ((double)(t1 - t0) / 1e9);
  return 0;
}

static int run_keel(bool quick, double *out) {
  keel_node_opts o = {.schedulers = 2, .max_processes = SUBS + 64};
  if (keel_node_start(&o) != KEEL_OK)
    return -1;
  run *r = calloc(1, sizeof *r);
  sub *subs = malloc(SUBS * sizeof *subs);
  int rc = -1;
  if (r != NULL && subs != NULL) {
    r->topic = keel_atom("bench_topic");
    r->rounds = quick ? 20 : 200;
    r->cycles = quick ? 20000 : 200000;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (keel_pubsub_start(NULL, &r->ps) == KEEL_OK) {
      rc = measure(r, subs, out);
      (void)keel_pubsub_stop(r->ps);
    }
  }
  (void)keel_node_stop();
  if (r != NULL) {
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
  }
  free(r);
  free(subs);
  return rc;
}

int keel_bench_pubsub(int argc, char **argv) {
  static const keel_bench_suite suite = {.name = "pubsub",
                                         .module = "bench_pubsub",
                                         .metrics = metric_names,
                                         .nmetrics = NMETRICS,
                                         .unit = "per_s",
                                         .run_keel = run_keel,
                                         .elixir = true};
  return keel_bench_suite_main(&suite, argc, argv);
}
