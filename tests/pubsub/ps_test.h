/*
 * ps_test.h - a scriptable subscriber process for the pubsub and presence
 * tests: the test thread sends it commands ({cmd, subscribe, Topic, Value},
 * {cmd, unsubscribe, Topic}, {cmd, broadcast_from, Topic, Msg}, {cmd,
 * exit}); each command's result is kept and counted as an event. Any
 * other message is logged (copied under a mutex) and counted as an event.
 */
#ifndef KEEL_PS_TEST_H
#define KEEL_PS_TEST_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "keel/pubsub.h"
#include "keel/runtime.h"
#include "keel/signals.h"
#include "runtime/rt_test.h"

#define LOG_MAX 4096

typedef struct sub_state {
  keel_pubsub ps;
  keel_term pid;
  pthread_mutex_t mu;
  keel_heap h;
  keel_term log[LOG_MAX];
  size_t n;
  int last_rc;
  _Atomic long received, cmds;
} sub_state;

static keel_handler_status sub_handle(keel_proc *self, keel_term msg,
                                      void *state) {
  sub_state *s = state;
  if (keel_is_tuple(msg) && keel_tuple_arity(msg) >= 2 &&
      keel_tuple_get(msg, 0) == keel_atom("cmd")) {
    keel_term op = keel_tuple_get(msg, 1);
    int rc = KEEL_OK;
    if (op == keel_atom("subscribe"))
      rc = keel_pubsub_subscribe(s->ps, keel_tuple_get(msg, 2),
                                 keel_tuple_get(msg, 3));
    else if (op == keel_atom("unsubscribe"))
      rc = keel_pubsub_unsubscribe(s->ps, keel_tuple_get(msg, 2));
    else if (op == keel_atom("broadcast_from"))
      rc = (int)keel_pubsub_broadcast_from(s->ps, keel_self(self),
                                           keel_tuple_get(msg, 2),
                                           keel_tuple_get(msg, 3), NULL);
    else if (op == keel_atom("exit"))
      return KEEL_EXIT;
    pthread_mutex_lock(&s->mu);
    s->last_rc = rc;
    pthread_mutex_unlock(&s->mu);
    signal_event(); /* before cmds: sub_cmd returns after this event */
    atomic_fetch_add(&s->cmds, 1);
    return KEEL_CONTINUE;
  }
  pthread_mutex_lock(&s->mu);
  if (s->n < LOG_MAX)
    s->log[s->n++] = keel_term_copy(&s->h, msg);
  pthread_mutex_unlock(&s->mu);
  atomic_fetch_add(&s->received, 1);
  signal_event();
  return KEEL_CONTINUE;
}

static inline sub_state *sub_new(keel_pubsub ps) {
  sub_state *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  s->ps = ps;
  pthread_mutex_init(&s->mu, NULL);
  keel_heap_init(&s->h);
  cr_assert_eq(keel_spawn(sub_handle, s, NULL, &s->pid), KEEL_OK);
  return s;
}

/* Frees the state (call after the node stopped or the process exited). */
static inline void sub_free(sub_state *s) {
  keel_heap_destroy(&s->h);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static inline bool cmds_reached(void *arg) {
  void **a = arg;
  return atomic_load(&((sub_state *)a[0])->cmds) >= *(long *)a[1];
}

/* Runs one command and waits for it; returns its result. */
static inline int sub_cmd(sub_state *s, keel_term cmd) {
  long target = atomic_load(&s->cmds) + 1;
  cr_assert_eq(keel_send(s->pid, cmd), KEEL_OK);
  void *a[2] = {s, &target};
  cr_assert(wait_until(cmds_reached, a), "command timed out");
  pthread_mutex_lock(&s->mu);
  int rc = s->last_rc;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static inline int sub_subscribe(sub_state *s, keel_term topic,
                                keel_term value) {
  keel_heap h;
  keel_heap_init(&h);
  keel_term c =
      keel_tuple(&h, 4, keel_atom("cmd"), keel_atom("subscribe"), topic,
                 value == KEEL_NONE ? keel_atom("nil") : value);
  int rc = sub_cmd(s, c);
  keel_heap_destroy(&h);
  return rc;
}

static inline int sub_unsubscribe(sub_state *s, keel_term topic) {
  keel_heap h;
  keel_heap_init(&h);
  int rc = sub_cmd(
      s, keel_tuple(&h, 3, keel_atom("cmd"), keel_atom("unsubscribe"), topic));
  keel_heap_destroy(&h);
  return rc;
}

static inline bool received_reached(void *arg) {
  void **a = arg;
  return atomic_load(&((sub_state *)a[0])->received) >= *(long *)a[1];
}

/* Waits until s has logged at least n messages. */
static inline bool sub_wait(sub_state *s, long n) {
  void *a[2] = {s, &n};
  return wait_until(received_reached, a);
}

/* The i-th logged message (valid until sub_free). */
static inline keel_term sub_log(sub_state *s, size_t i) {
  pthread_mutex_lock(&s->mu);
  keel_term t = i < s->n ? s->log[i] : KEEL_NONE;
  pthread_mutex_unlock(&s->mu);
  return t;
}

static inline size_t sub_nlog(sub_state *s) {
  pthread_mutex_lock(&s->mu);
  size_t n = s->n;
  pthread_mutex_unlock(&s->mu);
  return n;
}

#endif /* KEEL_PS_TEST_H */
