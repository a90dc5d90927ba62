/*
 * supervisor_internal.h - shared between the supervisor process
 * (supervisor.c), its request and start machinery (supervisor_call.c) and
 * the dynamic supervisor entry points (dynsup.c).
 */
#ifndef KEEL_OTP_SUPERVISOR_INTERNAL_H
#define KEEL_OTP_SUPERVISOR_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/supervisor.h"
#include "keel/telemetry.h"

/* A thread that is not a process waiting for an answer. */
typedef struct keel__sup_sync {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int rc;
} keel__sup_sync;

typedef struct keel__sup_child {
  uint64_t key; /* unique in its supervisor (try-again messages) */
  keel_heap idh;
  keel_term id;
  keel_sup_start_fn start;
  void *arg;
  keel_sup_restart restart;
  int64_t shutdown; /* resolved: > 0 ms, KEEL_INFINITY or brutal kill */
  keel_sup_child_type type;
  bool significant;
  keel_term pid;   /* KEEL_NONE when not running */
  bool restarting; /* a failed restart waits for its retry */
  bool doomed;     /* temporary, stopped by a group restart */
} keel__sup_child;

enum { KEEL__SUP_TEL_N = 5 };

typedef struct keel__sup {
  bool dynamic;
  keel_sup_strategy strategy;
  unsigned intensity;
  uint64_t period_ms;
  keel_sup_auto_shutdown auto_shutdown;
  size_t max_children; /* dynamic; 0: no limit */
  keel_heap xh;        /* extra args and the start alias */
  keel_term extra;
  keel_term name;
  keel__sup_child **kids; /* start order */
  size_t n, cap;
  uint64_t next_key;
  uint64_t *times;      /* restart times (ms): a ring of intensity + 1 */
  size_t ntimes, thead; /* how many, where the oldest is */
  keel_term parent;     /* pid of the starter, or KEEL_NONE */
  keel_term ack_alias;  /* where to report the start (fiber starter) */
  keel__sup_sync *sync; /* or this (thread starter) */
  keel_term self;
  keel_tel_event *ev[KEEL__SUP_TEL_N];
} keel__sup;

/* A new supervisor description (no children, nothing started). */
keel__sup *keel__sup_new(bool dynamic);
/* Frees s and its children (not their processes). */
void keel__sup_free(keel__sup *s);
/* Appends a child made from cs; KEEL_ENOMEM. */
int keel__sup_add_spec(keel__sup *s, const keel_sup_child_spec *cs);
/* Checks a child spec. KEEL_OK or KEEL_EINVAL. */
int keel__sup_check_child(const keel_sup_child_spec *cs,
                          keel_sup_auto_shutdown auto_shutdown);
/* Spawns the supervisor process for s (which it then owns) and waits for
 * its start to end. */
int keel__sup_launch(keel__sup *s, keel_term *pid);
/* The supervisor's body and terminate callback. */
void keel__sup_main(keel_proc *self, void *arg);
void keel__sup_terminate(keel_proc *self, keel_term reason, void *arg);

/* Child spec <-> term (passed by value in requests). */
keel_term keel__sup_spec_term(keel_heap *h, const keel_sup_child_spec *cs);
int keel__sup_spec_of(keel_term t, keel_sup_child_spec *cs);

/* A synchronous request {'$sup_call', Alias, req} to sup. The answer is a
 * {Code, Value} term copied into h (*code gets Code). until_down: the
 * supervisor answers by dying (stop). */
int keel__sup_request(keel_term sup, keel_term req, keel_heap *h,
                      keel_term *value, bool until_down);

#define KEEL__SUP_CALL "$sup_call"
#define KEEL__SUP_RETRY "$sup_try_again"

#endif /* KEEL_OTP_SUPERVISOR_INTERNAL_H */
