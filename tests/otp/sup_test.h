/*
 * sup_test.h - helpers of the supervisor tests: configurable worker
 * children (fibers linked to their supervisor), a log of starts ('+'),
 * start failures ('!') and deaths ('-') per child tag, and a telemetry
 * handler counting supervisor reports. Header-only; include once per test
 * file, after runtime/rt_test.h.
 */
#ifndef KEEL_SUP_TEST_H
#define KEEL_SUP_TEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "keel/signals.h"
#include "keel/supervisor.h"
#include "keel/telemetry.h"
#include "runtime/rt_test.h"

typedef struct wcfg {
  char tag;
  bool trap;       /* traps exits */
  bool deaf;       /* (trapping) ignores exit signals: must be killed */
  bool ignore;     /* the start function answers KEEL_SUP_IGNORE */
  atomic_int fail; /* the next `fail` starts fail with KEEL_EIO */
  atomic_int starts;
  atomic_int got_shutdown;
  long want;
  keel_term expect_extra; /* KEEL_NONE: not checked */
} wcfg;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[4096], log_copy[4096];
static size_t log_len;

static inline void log_reset(void) {
  pthread_mutex_lock(&log_mu);
  log_len = 0;
  log_buf[0] = '\0';
  pthread_mutex_unlock(&log_mu);
}

static inline void log_add(char op, char tag) {
  pthread_mutex_lock(&log_mu);
  if (log_len + 3 < sizeof log_buf) {
    log_buf[log_len++] = op;
    log_buf[log_len++] = tag;
    log_buf[log_len] = '\0';
  }
  pthread_mutex_unlock(&log_mu);
}

/* A copy of the log (test thread only). */
static inline const char *log_get(void) {
  pthread_mutex_lock(&log_mu);
  memcpy(log_copy, log_buf, log_len + 1);
  pthread_mutex_unlock(&log_mu);
  return log_copy;
}

static inline bool log_is(void *arg) {
  pthread_mutex_lock(&log_mu);
  bool eq = strcmp(log_buf, arg) == 0;
  pthread_mutex_unlock(&log_mu);
  return eq;
}

static inline bool wait_log(const char *expect) {
  return wait_until(log_is, (void *)expect);
}

/* A running worker: its config and its supervisor. */
typedef struct winst {
  wcfg *w;
  keel_term parent;
} winst;

static inline void worker_end(keel_proc *self, keel_term reason, void *st) {
  (void)self;
  (void)reason;
  winst *wi = st;
  log_add('-', wi->w->tag);
  free(wi);
}

static inline bool is_shutdown_exit(keel_term m) {
  return keel_is_tuple(m) && keel_tuple_arity(m) == 3 &&
         keel_tuple_get(m, 0) == KEEL_ATOM(EXIT) &&
         keel_tuple_get(m, 2) == KEEL_ATOM(SHUTDOWN);
}

/* Exits with 'crash' or 'normal' on those messages. */
static inline void worker_main(keel_proc *self, void *arg) {
  winst *wi = arg;
  wcfg *w = wi->w;
  if (w->trap)
    keel_trap_exit(self, true);
  keel_send(wi->parent, keel_self(self)); /* initialised */
  for (;;) {
    keel_term m;
    if (keel_receive(self, NULL, NULL, KEEL_INFINITY, &m) != KEEL_OK)
      continue;
    if (m == keel_atom("crash")) {
      keel_stop(self, keel_atom("crash"));
      return;
    }
    if (m == keel_atom("normal"))
      return;
    if (is_shutdown_exit(m)) {
      atomic_fetch_add(&w->got_shutdown, 1);
      if (!w->deaf) {
        keel_stop(self, KEEL_ATOM(SHUTDOWN));
        return;
      }
    }
  }
}

static inline bool is_pid(keel_term m, void *arg) {
  return m == *(keel_term *)arg;
}

static inline int start_worker(keel_proc *sup, void *arg, keel_term extra,
                               keel_term *pid) {
  (void)sup;
  wcfg *w = arg;
  if (w->expect_extra != KEEL_NONE && !keel_eq(extra, w->expect_extra))
    return KEEL_EBADARG;
  if (atomic_load(&w->fail) > 0) {
    atomic_fetch_sub(&w->fail, 1);
    log_add('!', w->tag);
    return KEEL_EIO;
  }
  if (w->ignore)
    return KEEL_SUP_IGNORE;
  winst *wi = malloc(sizeof *wi);
  if (wi == NULL)
    return KEEL_ENOMEM;
  wi->w = w;
  wi->parent = keel_self(sup);
  keel_spawn_opts o = {.link = true, .terminate = worker_end};
  int rc = keel_spawn_fiber(worker_main, wi, &o, pid);
  if (rc != KEEL_OK)
    free(wi);
  keel_term m; /* a synchronous start: wait for its init */
  if (rc == KEEL_OK)
    rc = keel_receive(sup, is_pid, pid, KEEL_INFINITY, &m);
  if (rc == KEEL_OK) {
    atomic_fetch_add(&w->starts, 1);
    log_add('+', w->tag);
  }
  return rc;
}

static inline keel_sup_child_spec worker_spec(wcfg *w) {
  char name[2] = {w->tag, '\0'};
  keel_sup_child_spec cs = {
      .id = keel_atom(name), .start = start_worker, .arg = w};
  return cs;
}

/* ---- telemetry ------------------------------------------------------------
 */

enum {
  TEL_TERMINATED,
  TEL_RESTART,
  TEL_START_ERROR,
  TEL_SHUTDOWN_ERROR,
  TEL_SHUTDOWN,
  TEL_N
};
static const char *const tel_event_names[TEL_N] = {
    "keel.supervisor.child_terminated", "keel.supervisor.child_restart",
    "keel.supervisor.start_error", "keel.supervisor.shutdown_error",
    "keel.supervisor.shutdown"};
static keel_tel_event *tel_events[TEL_N];
static atomic_long tel_counts[TEL_N];
static _Atomic keel_term tel_reason;

static inline int tel_handler(const keel_tel_event *ev,
                              const keel_tel_measure *m, size_t nm,
                              const keel_tel_meta *md, size_t nmd,
                              void *config) {
  (void)m;
  (void)nm;
  (void)config;
  for (int i = 0; i < TEL_N; i++)
    if (ev == tel_events[i])
      atomic_fetch_add(&tel_counts[i], 1);
  for (size_t i = 0; i < nmd; i++)
    if (md[i].key == keel_atom("reason") && keel_is_atom(md[i].value))
      atomic_store(&tel_reason, md[i].value);
  return 0;
}

static inline void tel_attach(void) {
  for (int i = 0; i < TEL_N; i++) {
    cr_assert_eq(keel_tel_event_parse(tel_event_names[i], &tel_events[i]),
                 KEEL_OK);
    atomic_store(&tel_counts[i], 0);
  }
  atomic_store(&tel_reason, KEEL_NONE);
  cr_assert_eq(keel_tel_attach(keel_atom("sup_test"), tel_events, TEL_N,
                               tel_handler, NULL),
               KEEL_OK);
}

static inline void tel_detach(void) {
  cr_assert_eq(keel_tel_detach(keel_atom("sup_test")), KEEL_OK);
}

static inline long tel_count(int i) {
  return atomic_load(&tel_counts[i]);
}

static inline keel_term tel_last_reason(void) {
  return atomic_load(&tel_reason);
}

#endif /* KEEL_SUP_TEST_H */
